# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering of a paper-block report: Markdown and an SVG activity chart (stdlib only).

Private to the collection. The report itself is a plain dict built by
paper_block; this file only turns it into something a person reads. Pure
functions, no I/O, so they are unit-tested directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time
from xml.sax.saxutils import escape
import itertools

COLOURS = {"ticks": "#1f77b4", "signals": "#ff7f0e", "trades": "#2ca02c"}
TITLES = {"ticks": "ticks / min", "signals": "signals / min", "trades": "paper trades / min"}


def _iso(ts):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts is not None else "-"


def human_duration(seconds):
    if seconds is None:
        return "-"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append("%dd" % days)
    if hours:
        parts.append("%dh" % hours)
    if minutes:
        parts.append("%dm" % minutes)
    if secs or not parts:
        parts.append("%ds" % secs)
    return " ".join(parts)


def _num(value):
    if value is None:
        return "no data"
    if float(value).is_integer():
        return "%d" % value
    return "%.1f" % value


def _nice_max(value):
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for mult in (1, 2, 2.5, 5, 10):
        top = mult * 10**exp
        if top >= value:
            return float(top)
    return float(10 ** (exp + 1))  # pragma: no cover


def render_svg(series, start, end, episodes=(), title="", width=900, panel_height=120):
    """One panel per series (``{"ticks": [(ts, value), ...], ...}``), a shared time axis and shaded ZAI episodes.

    A timestamp missing from a series is drawn as a gap (no data), never as zero.
    """
    names = [n for n in ("ticks", "signals", "trades") if n in series] + sorted(
        n for n in series if n not in ("ticks", "signals", "trades")
    )
    left, right, top = 70, 20, 40
    gap = 30
    height = top + len(names) * (panel_height + gap) + 30
    span = max(end - start, 1e-9)
    plot_w = width - left - right

    def x(ts):
        return left + (min(max(ts, start), end) - start) / span * plot_w

    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
        'font-family="sans-serif" font-size="11">' % (width, height, width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>' % (left, escape(title)),
    ]
    for index, name in enumerate(names):
        y0 = top + index * (panel_height + gap)
        points = series.get(name) or []
        vmax = _nice_max(max([point[1] for point in points] or [0]))
        out.append(
            '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>' % (left, y0, plot_w, panel_height)
        )
        for ep in episodes:
            ex0, ex1 = x(ep["start"]), x(ep["end"] if ep.get("end") is not None else end)
            out.append(
                '<rect class="zai" x="%.1f" y="%d" width="%.1f" height="%d" fill="#d62728" fill-opacity="0.15"/>'
                % (ex0, y0, max(ex1 - ex0, 1.0), panel_height)
            )
        out.append(
            '<text x="%d" y="%d" fill="%s">%s</text>'
            % (left + 4, y0 + 12, COLOURS.get(name, "#333"), escape(TITLES.get(name, name)))
        )
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 4, y0 + 10, _num(vmax)))
        out.append('<text x="%d" y="%d" text-anchor="end">0</text>' % (left - 4, y0 + panel_height))
        if not points:
            out.append(
                '<text x="%d" y="%d" text-anchor="middle" fill="#999">no data</text>'
                % (left + plot_w // 2, y0 + panel_height // 2)
            )
            continue
        # split into segments at gaps (missing steps = no data)
        steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
        step = steps[len(steps) // 2] if steps else span
        segment, segments = [], []
        for i, (ts, value) in enumerate(points):
            if segment and ts - points[i - 1][0] > 1.5 * step:
                segments.append(segment)
                segment = []
            segment.append((ts, value))
        segments.append(segment)
        for seg in segments:
            coords = " ".join(
                "%.1f,%.1f" % (x(ts), y0 + panel_height - (max(v, 0) / vmax) * panel_height) for ts, v in seg
            )
            out.append(
                '<polyline class="series-%s" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'
                % (escape(name), COLOURS.get(name, "#333"), coords)
            )
    axis_y = top + len(names) * (panel_height + gap) - gap + 14
    for i in range(5):
        ts = start + span * i / 4.0
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        out.append('<text x="%.1f" y="%d" text-anchor="%s">%s</text>' % (x(ts), axis_y, anchor, _iso(ts)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_markdown(report):
    """The report as Markdown for people (the JSON next to it is for machines)."""
    b = report["block"]
    lines = [
        "# Paper block %s: %s" % (b["id"], b["status"]),
        "",
        "| | |",
        "|---|---|",
        "| Stack | %s |" % report["stack"],
        "| Operator | %s |" % b.get("operator"),
        "| Reason | %s |" % (b.get("reason") or "").replace("|", "\\|"),
        "| Started | %s |" % _iso(b.get("started_at")),
        "| Ended | %s |" % _iso(b.get("ended_at")),
        "| Duration | %s (planned %s) |"
        % (human_duration(report["duration_seconds"]), human_duration(b.get("duration_seconds"))),
        "| Trading mode | %s |" % b.get("trading_mode"),
    ]
    if b["status"] == "aborted":
        lines.append("| Abort reason | %s |" % (b.get("close_reason") or "").replace("|", "\\|"))
    lines += ["", "## Activity", ""]
    totals = report["totals"]
    if report.get("prometheus_error"):
        lines.append("Prometheus could not be queried: %s" % report["prometheus_error"])
        lines.append("")
    lines += ["| Metric | Total over the block |", "|---|---|"]
    for key, label in (("ticks", "Ticks"), ("signals", "Signals"), ("trades", "Paper trades")):
        lines.append("| %s | %s |" % (label, _num(totals.get(key))))
    lines += [
        "",
        "![activity](report.svg)",
        "",
        "## Zero-activity incidents (window %s)" % human_duration(report["zai_window_seconds"]),
        "",
    ]
    if report["zai_episodes"]:
        lines += ["| From | To | Length |", "|---|---|---|"]
        for ep in report["zai_episodes"]:
            lines.append(
                "| %s | %s | %s |"
                % (
                    _iso(ep["start"]),
                    _iso(ep["end"]) if ep.get("end") else "still silent at the end",
                    human_duration(ep["seconds"]),
                )
            )
    else:
        lines.append(report.get("zai_note") or "None.")
    lines += [
        "",
        "## Containers",
        "",
        "| Container | Service | Restarts | Unhealthy events | Health at end | State |",
        "|---|---|---|---|---|---|",
    ]
    for c in report["containers"]:
        lines.append(
            "| %s | %s | %s | %s | %s | %s |"
            % (
                c["name"],
                c.get("service"),
                c.get("restarts"),
                c.get("health_failures", "-"),
                c.get("health") or "-",
                c.get("state"),
            )
        )
    lines.append("")
    lines.append("Restarts in total: %s" % report["restarts_total"])
    lines += ["", "## Release manifest", ""]
    if report["manifest_changed"]:
        lines.append("The release manifest CHANGED during the block:")
        lines.append("")
        for change in report["manifest_changes"]:
            lines.append("- %s" % change)
    else:
        lines.append("Unchanged during the block (%d containers)." % len(report["manifest_start"]))
    lines += ["", "| Container | Image | Image id | Spec hash | Release |", "|---|---|---|---|---|"]
    for c in report["manifest_start"]:
        lines.append(
            "| %s | %s | %s | %s | %s |"
            % (c["name"], c.get("image"), (c.get("image_id") or "")[:19], c.get("spec_hash"), c.get("release"))
        )
    broker = report["broker_health"]
    lines += ["", "## Broker health", ""]
    if broker.get("down_steps") is None and not broker.get("textfile"):
        lines.append("No broker health data (no capital_com_health textfile and no capital_com_up series).")
    else:
        if broker.get("down_steps") is not None:
            lines.append(
                "capital_com_up was 0 at %d of %d evaluated steps (%s)."
                % (broker["down_steps"], broker["evaluated_steps"], human_duration(broker.get("down_seconds")))
            )
        if broker.get("textfile"):
            tf = broker["textfile"]
            lines.append(
                "Last check (%s): %s; failing checks: %s."
                % (
                    _iso(tf.get("last_check")),
                    "up" if tf.get("up") else "DOWN",
                    ", ".join(tf.get("failing_checks") or []) or "none",
                )
            )
    lines.append("")
    return "\n".join(lines)
