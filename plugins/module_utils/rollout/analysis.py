# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metric analysis of a rollout: every check must hold for every returned sample; no data is
inconclusive, never a silent pass."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time

from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed

_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def prometheus_samples(url, query, timeout=5.0):
    """Sample values of an instant query: [] means no data (distinct from 0); NaN samples count as no data.
    Raises _prometheus.PrometheusError on HTTP/API errors."""
    from ansible_collections.tradeops.stack.plugins.module_utils import _prometheus

    client = _prometheus.Prometheus(url, timeout=timeout)
    return [value for _labels, value in client.query(query) if not math.isnan(value)]


def measure(checks, url):
    """One measurement of every check: ('pass'|'fail'|'inconclusive', details)."""
    details, outcome = [], "pass"
    for check in checks:
        try:
            values = prometheus_samples(url, check["query"])
        except Exception as exc:  # an unreachable Prometheus is inconclusive, and says why
            details.append({"check": check["name"], "result": "inconclusive", "error": str(exc)[:300]})
            outcome = "inconclusive" if outcome == "pass" else outcome
            continue
        if not values:
            details.append({"check": check["name"], "result": "inconclusive", "error": "no data"})
            outcome = "inconclusive" if outcome == "pass" else outcome
            continue
        bad = [v for v in values if not _OPS[check["condition"]](v, check["threshold"])]
        res = "fail" if bad else "pass"
        details.append({"check": check["name"], "result": res, "values": values[:10]})
        if bad:
            outcome = "fail"
    return outcome, details


class Analysis:
    def __init__(self, cfg, warn):
        self.cfg = cfg
        self.warn = warn
        self.report = {}

    def run(self, phase, duration, watch=None):
        """Measure every interval: before promotion until min_samples conclusive passes, after it for ``duration``.

        ``watch`` is called between measurements and raises RolloutFailed if the instance dies.
        """
        cfg = self.cfg
        start = time.monotonic()
        passes = fails = 0
        inconclusive_since = None
        history = []
        while True:
            outcome, details = measure(cfg["checks"], cfg["prometheus_url"])
            history.append({"t": round(time.monotonic() - start, 1), "result": outcome, "checks": details})
            if outcome == "inconclusive":
                if cfg["inconclusive"] == "pass":
                    self.warn("analysis %s: no data treated as a pass (inconclusive=pass): %s" % (phase, details))
                    outcome = "pass"
                elif cfg["inconclusive"] == "fail":
                    self._done(phase, "inconclusive", history)
                    raise RolloutFailed("metric analysis (%s) inconclusive: %s" % (phase, _brief(details)))
                else:
                    inconclusive_since = inconclusive_since or time.monotonic()
                    if time.monotonic() - inconclusive_since >= cfg["inconclusive_timeout"]:
                        self._done(phase, "inconclusive", history)
                        raise RolloutFailed(
                            "metric analysis (%s) inconclusive for %ss: %s"
                            % (phase, cfg["inconclusive_timeout"], _brief(details))
                        )
            if outcome != "inconclusive":
                inconclusive_since = None
            if outcome == "pass":
                passes += 1
            elif outcome == "fail":
                fails += 1
                if fails > cfg["failure_limit"]:
                    self._done(phase, "fail", history)
                    raise RolloutFailed("metric analysis (%s) failed: %s" % (phase, _brief(details)))
            elapsed = time.monotonic() - start
            if duration is None and passes >= cfg["min_samples"]:
                break
            if duration is not None and elapsed >= duration and passes >= 1:
                break
            end = time.monotonic() + cfg["interval"]
            while time.monotonic() < end:
                if watch:
                    watch()
                time.sleep(0.25)
        self._done(phase, "pass", history)

    def _done(self, phase, result, history):
        self.report[phase] = {"result": result, "measurements": len(history), "last": history[-1]["checks"]}


def _brief(details):
    return "; ".join(
        "%s: %s%s"
        % (d["check"], d["result"], " (%s)" % d.get("error") if d.get("error") else " %s" % d.get("values", ""))
        for d in details
    )
