# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a paper block's report holds: the data, computed from the engine, Prometheus and textfiles.

Private to the collection. ``_report`` renders this data as Markdown and SVG; ``_block`` (the
lifecycle) asks for it when a block is closed, and for the container part (``container_changes``)
on every status. Nothing here writes a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os

from ansible_collections.tradeops.stack.plugins.module_utils import _rules, _textfile, _zai
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import PrometheusError
from ansible_collections.tradeops.stack.plugins.module_utils._report import render_svg
from ansible_collections.tradeops.stack.plugins.module_utils._state import LABEL_STACK

# What makes a container's release: a change of one of these during a block is reported.
RELEASE_IDENTITY = ("service", "colour", "image_id", "spec_hash", "release")


def paths(state, block_id):
    """Where the report files of ``block_id`` live: ``reports/<id>/report.{json,md,svg}``."""
    base = state.sub("reports", block_id)
    return {
        "json": os.path.join(base, "report.json"),
        "markdown": os.path.join(base, "report.md"),
        "svg": os.path.join(base, "report.svg"),
    }


def manifest_changes(before, after):
    """Readable differences of release identity (image, spec hash, release, colour) between two manifests."""
    b = {c["name"]: c for c in before}
    a = {c["name"]: c for c in after}
    out = []
    for name in sorted(set(b) | set(a)):
        if name not in a:
            out.append("%s removed" % name)
        elif name not in b:
            out.append("%s added (image %s, spec %s)" % (name, a[name].get("image"), a[name].get("spec_hash")))
        else:
            for key in RELEASE_IDENTITY:
                if b[name].get(key) != a[name].get(key):
                    out.append("%s %s: %s -> %s" % (name, key, b[name].get(key), a[name].get(key)))
    return out


def engine_events(docker, stack, since, until):
    """``(starts, health_failures, start_events)``: container id (12 chars) -> 'start' events, and ->
    'health_status: unhealthy' events, the engine reports for the stack's containers in [since, until], and each
    start as ``(time, id, name)`` in order. Empty when the engine has no event history to give: RestartCount and
    StartedAt still count."""
    starts, health_failures, start_events = {}, {}, []
    try:
        events = docker.events(
            since=int(since),
            until=math.ceil(until),
            filters={"type": "container", "label": "%s=%s" % (LABEL_STACK, stack)},
            decode=True,
        )
        for event in events:
            cid = (event.get("id") or (event.get("Actor") or {}).get("ID") or "")[:12]
            action = event.get("Action") or event.get("status") or ""
            if action == "start":
                starts[cid] = starts.get(cid, 0) + 1
                name = ((event.get("Actor") or {}).get("Attributes") or {}).get("name") or cid
                start_events.append((event.get("timeNano", 0) / 1e9 or event.get("time") or 0, cid, name))
            elif action.startswith("health_status") and action.endswith("unhealthy"):
                health_failures[cid] = health_failures.get(cid, 0) + 1
    except Exception:  # the event history is a bonus
        return {}, health_failures, []
    return starts, health_failures, start_events


# audit actions that change what runs: drawn as deploy markers on the chart
DEPLOY_ACTIONS = ("rollout", "flag_flip", "restore")


def chart_markers(block, start_events, audit_events, until):
    """The chart's markers over [block start, until]: ``deploy`` for each audited change of what runs (a rollout,
    a flag flip, a restore), ``restart`` for each start of a container that was already there (one of the block's
    start manifest, or one started before in the window); a container a deploy created starts once, not a restart.
    """
    since = block["started_at"]
    known = {(c.get("id") or "")[:12] for c in block.get("manifest") or []}
    markers = []
    for ts, cid, name in start_events:
        if cid in known and since <= ts <= until:
            markers.append({"kind": "restart", "ts": ts, "label": name})
        known.add(cid)
    for event in audit_events:
        ts = _rules.from_iso(event.get("ts"))
        if event.get("action") in DEPLOY_ACTIONS and ts is not None and since <= ts <= until:
            what = event.get("service") or event.get("flag") or event.get("backup") or ""
            label = "%s %s (%s)" % (event.get("kind") or event["action"], what, event.get("result"))
            markers.append({"kind": "deploy", "ts": ts, "label": label})
    return sorted(markers, key=lambda m: m["ts"])


def outages(up_series, step):
    """Contiguous runs of ``capital_com_up`` below 1 as ``[{"start", "end"}]`` (each point covers one step)."""
    runs, open_run = [], False
    for ts, value in up_series:
        if value >= 1:
            open_run = False
        elif open_run and ts - runs[-1]["end"] <= step * 0.5:
            runs[-1]["end"] = ts + step
        else:
            runs.append({"start": ts, "end": ts + step})
            open_run = True
    return runs


def container_changes(block, now_manifest, starts, health_failures):
    """Restarts, health and replacement per container since the block started (see ``engine_events``)."""
    start = {c["name"]: c for c in block.get("manifest") or []}
    out = []
    for c in now_manifest:
        before = start.get(c["name"])
        entry = {
            "name": c["name"],
            "service": c.get("service"),
            "state": c.get("state"),
            "health": c.get("health"),
            "restart_count": c.get("restart_count"),
            "started_at": c.get("started_at"),
        }
        events = starts.get(c["id"], 0)
        entry["health_failures"] = health_failures.get(c["id"], 0)
        if before is None:
            entry["new"] = True
            entry["restarts"] = events
        elif before.get("id") != c["id"]:
            entry["replaced"] = True
            entry["restarts"] = max(events, 1)
        else:
            delta = (c.get("restart_count") or 0) - (before.get("restart_count") or 0)
            moved = 1 if c.get("started_at") != before.get("started_at") else 0
            entry["restarts"] = max(events, delta, moved)
        out.append(entry)
    names = {c["name"] for c in now_manifest}
    for name, before in sorted(start.items()):
        if name not in names:
            out.append(
                {
                    "name": name,
                    "service": before.get("service"),
                    "state": "missing",
                    "health": None,
                    "missing": True,
                    "restarts": 0,
                }
            )
    return out


def unhealthy(containers):
    """Names of the containers that are not running, or running but not healthy."""
    return [c["name"] for c in containers if c.get("state") != "running" or c.get("health") not in (None, "healthy")]


def broker_health(candidates):
    """The last outcome of the broker health check from the first readable textfile of ``candidates``, or None."""
    for candidate in candidates:
        parsed = _textfile.parse(candidate)
        if parsed is not None:
            up = parsed.get(("capital_com_up", ()))
            failing = sorted(
                dict(labels).get("check", "?")
                for (name, labels), value in parsed.items()
                if name == "capital_com_check_ok" and value < 1
            )
            return {
                "path": candidate,
                "up": None if up is None else up >= 1,
                "failing_checks": failing,
                "last_check": parsed.get(("capital_com_last_check_timestamp_seconds", ())),
            }
    return None


def build(params, block, now, manifest_now, containers, zai_window, broker_textfile, prom, markers=()):
    """The report of ``block`` closed at ``now``; ``_svg`` holds the chart (popped before report.json is written).

    ``params`` are paper_block's options (stack, the metric names, scrape_interval). Prometheus failing is
    recorded in the report (``prometheus_error``), never raised.
    """
    start = block["started_at"]
    duration = max(now - start, 1.0)
    changes = manifest_changes(block.get("manifest") or [], manifest_now)
    report = {
        "stack": params["stack"],
        "block": {k: v for k, v in block.items() if k != "manifest"},
        "duration_seconds": round(duration, 3),
        "zai_window_seconds": zai_window,
        "manifest_start": block.get("manifest") or [],
        "manifest_end": manifest_now,
        "manifest_changed": bool(changes),
        "manifest_changes": changes,
        "containers": containers,
        "restarts_total": sum(c.get("restarts") or 0 for c in containers),
        "unhealthy": unhealthy(containers),
        "totals": {"ticks": None, "signals": None, "trades": None},
        "series": {},
        "zai_episodes": [],
        "zai_note": None,
        "broker_health": {"textfile": broker_textfile, "down_steps": None, "evaluated_steps": 0},
        "prometheus_error": None,
        "markers": list(markers),
        "grafana_url": params.get("grafana_url"),
        "generated_at": now,
    }
    try:
        _activity(report, params, prom, start, now, duration, zai_window)
    except PrometheusError as exc:
        report["prometheus_error"] = str(exc)
        report["zai_note"] = "Unknown: Prometheus could not be queried."
    report["_svg"] = render_svg(
        report["series"],
        start,
        now,
        episodes=report["zai_episodes"],
        markers=report["markers"],
        broker_down=report["broker_health"].get("outages") or [],
        title="Paper block %s (%s) on %s: activity per minute" % (block["id"], block["status"], params["stack"]),
    )
    return report


def _activity(report, params, prom, start, end, duration, zai_window):
    """Totals, per-minute series, ZAI episodes and broker downtime over the block, from Prometheus."""
    whole = math.ceil(duration)
    for key, option in _zai.COUNTERS:
        value = prom.total(_zai.increase_query(params[option], whole), at=end)
        report["totals"][key] = None if value is None else round(value)
    step = max(1, math.ceil(duration / 240.0))
    rate_window = int(max(step, 4 * params["scrape_interval"]))
    for key, option in _zai.COUNTERS:
        points = prom.series_total("sum(rate(%s[%ds])) * 60" % (params[option], rate_window), start, end, step)
        report["series"][key] = [(ts, round(v, 4)) for ts, v in points]
    # ZAI episodes: evaluate the window at each step once the block is older than the window
    window = math.ceil(zai_window)
    first = start + window
    if first > end:
        report["zai_note"] = "The block was shorter than the ZAI window (%ds): no verdict." % window
    else:
        signals, trades = (
            dict(prom.series_total(_zai.increase_query(params[option], window), first, end, step))
            for option in ("signals_metric", "trades_metric")
        )
        report["zai_episodes"] = _zai.episodes(first, end, step, window, signals, trades)
    # broker health over the block
    up = prom.series_total("min(%s)" % params["broker_up_metric"], start, end, step)
    if up:
        down = [ts for ts, v in up if v < 1]
        report["broker_health"].update(
            down_steps=len(down), evaluated_steps=len(up), down_seconds=len(down) * step, outages=outages(up, step)
        )
