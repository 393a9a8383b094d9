# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the Prometheus HTTP API (stdlib only).

Private to the collection; used by paper_block (activity, ZAI, report charts)
and by rollout's metric analysis. Two rules every caller relies on:

- "no data" is an empty list, never a zero: ``query()`` returns ``[]`` when
  the expression matched nothing, and ``total()`` returns ``None``;
- every failure (connection, HTTP status, non-JSON body, a Prometheus
  ``status: error``) is one ``PrometheusError`` whose message names the URL,
  the query and what to do, never a traceback.

Shared options (PROMETHEUS_ARG_SPEC) are documented by the doc fragment
``tradeops.stack.prometheus`` (plugins/doc_fragments/prometheus.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import socket

from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

# Paired with plugins/doc_fragments/prometheus.py.
PROMETHEUS_ARG_SPEC = dict(
    prometheus_url=dict(type="str", default="http://127.0.0.1:9090", fallback=(env_fallback, ["PROMETHEUS_URL"])),
    prometheus_timeout=dict(type="float", default=10.0),
)


class PrometheusError(Exception):
    """The Prometheus API could not answer a query; the message says why and what to check."""

    def __init__(self, msg, kind="error", query=None):
        super(PrometheusError, self).__init__(msg)
        self.kind = kind  # connection | http | json | bad_data | execution | timeout | ...
        self.query = query


def _float(text):
    """Prometheus sends sample values as strings ("1", "NaN", "+Inf")."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusError("Prometheus returned a sample value that is not a number: %r" % (text,), "json")


class Prometheus:
    """Client for one Prometheus server (``url`` is its base, e.g. http://127.0.0.1:9090)."""

    def __init__(self, url, timeout=10.0, headers=None):
        if not url or not isinstance(url, str) or "://" not in url:
            raise PrometheusError(
                "prometheus_url %r is not a URL: expected something like http://127.0.0.1:9090" % (url,), "config"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})

    # -- transport -------------------------------------------------------------------
    def _get(self, path, params, promql=None):
        url = "%s%s?%s" % (self.url, path, urlencode(params))
        what = "query %r" % promql if promql is not None else path
        try:
            with open_url(
                url, headers=dict(self.headers, Accept="application/json"), timeout=self.timeout, method="GET"
            ) as resp:
                body = resp.read()
                status = resp.status
        except HTTPError as exc:
            body = exc.read() if hasattr(exc, "read") else b""
            status = exc.code
            payload = self._decode(body, None)
            if isinstance(payload, dict) and payload.get("status") == "error":
                raise PrometheusError(
                    "Prometheus at %s rejected %s: %s (%s, HTTP %s)"
                    % (self.url, what, payload.get("error"), payload.get("errorType"), status),
                    payload.get("errorType") or "http",
                    promql,
                )
            raise PrometheusError(
                "Prometheus at %s answered HTTP %s to %s: %s (is prometheus_url the Prometheus server itself, "
                "not a proxy or Grafana?)" % (self.url, status, what, body[:200].decode("utf-8", "replace").strip()),
                "http",
                promql,
            )
        except (socket.timeout, TimeoutError):
            raise PrometheusError(
                "Prometheus at %s did not answer %s within %ss (prometheus_timeout)" % (self.url, what, self.timeout),
                "timeout",
                promql,
            )
        except (URLError, OSError, ValueError, UrlsConnectionError, SSLValidationError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(
                "cannot reach Prometheus at %s for %s: %s (is it running and is prometheus_url right?)"
                % (self.url, what, reason),
                "connection",
                promql,
            )
        payload = self._decode(body, what)
        if not isinstance(payload, dict) or payload.get("status") != "success":
            err = payload.get("error") if isinstance(payload, dict) else None
            kind = payload.get("errorType") if isinstance(payload, dict) else None
            raise PrometheusError(
                "Prometheus at %s failed %s: %s (%s, HTTP %s)" % (self.url, what, err, kind or "unexpected", status),
                kind or "json",
                promql,
            )
        return payload.get("data") or {}

    def _decode(self, body, what):
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            if what is None:
                return None
            raise PrometheusError(
                "Prometheus at %s answered %s with something that is not JSON: %r (is prometheus_url the "
                "Prometheus API?)" % (self.url, what, body[:120]),
                "json",
            )

    # -- API -------------------------------------------------------------------------------
    def query(self, promql, at=None):
        """Instant query: a list of ``(labels, value)``; ``[]`` means no data (not zero).

        ``at`` is a Unix timestamp (seconds), default now. A scalar result is one sample with empty labels.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = "%.3f" % float(at)
        data = self._get("/api/v1/query", params, promql)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [(dict(item.get("metric") or {}), _float(item["value"][1])) for item in result or []]
        if kind == "scalar":
            return [({}, _float(result[1]))]
        if kind == "matrix":
            raise PrometheusError(
                "query %r returned a range vector; instant queries need an instant vector or a scalar "
                "(wrap it in a function such as increase() or last_over_time())" % promql,
                "bad_data",
                promql,
            )
        raise PrometheusError("query %r returned an unsupported result type %r" % (promql, kind), "json", promql)

    def query_range(self, promql, start, end, step):
        """Range query: a list of ``(labels, [(ts, value), ...])``; ``[]`` means no data.

        Timestamps where the expression had no value are missing from the points (not zero).
        """
        if step <= 0:
            raise PrometheusError("query_range step must be positive, got %r" % (step,), "config", promql)
        if end < start:
            raise PrometheusError("query_range end %s is before start %s" % (end, start), "config", promql)
        params = {"query": promql, "start": "%.3f" % start, "end": "%.3f" % end, "step": "%g" % step}
        data = self._get("/api/v1/query_range", params, promql)
        if data.get("resultType") != "matrix":
            raise PrometheusError(
                "range query %r returned %r instead of a matrix" % (promql, data.get("resultType")), "json", promql
            )
        out = []
        for item in data.get("result") or []:
            points = [(float(ts), _float(val)) for ts, val in item.get("values") or []]
            out.append((dict(item.get("metric") or {}), points))
        return out

    def total(self, promql, at=None):
        """Sum of the values of an instant query, or None when there is no data (NaN samples are ignored)."""
        samples = [sample[1] for sample in self.query(promql, at=at) if not math.isnan(sample[1])]
        if not samples:
            return None
        return sum(samples)

    def series_total(self, promql, start, end, step):
        """One ``[(ts, value)]`` list: the sum over all series per timestamp; missing timestamps = no data."""
        sums = {}
        for series in self.query_range(promql, start, end, step):
            for ts, value in series[1]:
                if not math.isnan(value):
                    sums[ts] = sums.get(ts, 0.0) + value
        return sorted(sums.items())

    def ready(self):
        """True when /-/ready answers 200; never raises."""
        try:
            with open_url(self.url + "/-/ready", timeout=self.timeout, method="GET") as resp:
                return resp.status == 200
        except Exception:
            return False


def client_from_params(params):
    return Prometheus(params["prometheus_url"], timeout=params["prometheus_timeout"])
