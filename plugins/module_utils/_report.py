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
# events drawn across every panel: (stroke, dash, legend)
MARKERS = {
    "deploy": ("#333333", "", "deploy or rollback"),
    "restart": ("#9467bd", "4,3", "container restart"),
}
ZAI_FILL, BROKER_FILL = "#d62728", "#7f7f7f"
# time-axis steps: the smallest giving at most 8 ticks, each tick on a multiple of it (UTC)
TICK_STEPS = (60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
# the dashboards a block report links to, for the block's time window
DASHBOARDS = (
    ("tradeops-market-data", "Market Data"),
    ("tradeops-signal-engine", "Signal Engine"),
    ("tradeops-paper-execution", "Paper Execution"),
    ("tradeops-system-connectivity", "System & Connectivity"),
)


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


def time_ticks(start, end, most=8):
    """Round UTC times for the axis: every tick a multiple of one step, at most ``most`` of them."""
    span = max(end - start, 1)
    step = next((s for s in TICK_STEPS if span / s <= most), TICK_STEPS[-1] * math.ceil(span / (most * 86400.0)))
    first = math.ceil(start / step) * step
    return [first + i * step for i in range(int((end - first) // step) + 1)], step


def _tick_label(ts, step, first):
    """``HH:MM``; with the date at midnight and on the first tick (a block runs for days)."""
    if first or step >= 86400 or ts % 86400 == 0:
        return time.strftime("%m-%d %H:%M", time.gmtime(ts))
    return time.strftime("%H:%M", time.gmtime(ts))


def render_svg(series, start, end, episodes=(), title="", width=900, panel_height=120, markers=(), broker_down=()):
    """One panel per series (``{"ticks": [(ts, value), ...], ...}``), a shared time axis on round UTC times,
    shaded ZAI episodes and broker outages (``[{"start", "end"}]``), and ``markers`` (``[{"kind": "deploy" or
    "restart", "ts", "label"}]``) drawn across every panel, with a legend above the panels.

    A timestamp missing from a series is drawn as a gap (no data), never as zero. Panel labels sit above their
    panel, clear of the data.
    """
    names = [n for n in ("ticks", "signals", "trades") if n in series] + sorted(
        n for n in series if n not in ("ticks", "signals", "trades")
    )
    left, right, top = 70, 20, 56
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
    out += _legend(left, 36, bool(episodes), bool(broker_down), sorted({m["kind"] for m in markers}))
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
                '<rect class="zai" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.15"/>'
                % (ex0, y0, max(ex1 - ex0, 1.0), panel_height, ZAI_FILL)
            )
        for down in broker_down:
            bx0, bx1 = x(down["start"]), x(down["end"] if down.get("end") is not None else end)
            out.append(
                '<rect class="broker-down" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.25"/>'
                % (bx0, y0, max(bx1 - bx0, 1.0), panel_height, BROKER_FILL)
            )
        out.append(
            '<text class="panel-label" x="%d" y="%d" fill="%s">%s</text>'
            % (left, y0 - 5, COLOURS.get(name, "#333"), escape(TITLES.get(name, name)))
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
    bottom = top + len(names) * (panel_height + gap) - gap
    for marker in sorted(markers, key=lambda m: m["ts"]):
        if not start <= marker["ts"] <= end:
            continue
        stroke, dashed, _words = _marker_style(marker["kind"])
        mx = x(marker["ts"])
        tip = escape("%s %s" % (_iso(marker["ts"]), marker.get("label", "")))
        out.append(
            '<line class="marker-%s" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1.2"%s>'
            "<title>%s</title></line>" % (escape(marker["kind"]), mx, top, mx, bottom, stroke, dashed, tip)
        )
    ticks, step = time_ticks(start, end)
    for i, ts in enumerate(ticks):
        out.append(
            '<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>'
            % (x(ts), bottom, x(ts), bottom + 4)
        )
        out.append(
            '<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>'
            % (x(ts), bottom + 16, _tick_label(ts, step, i == 0))
        )
    out.append('<text x="%d" y="%d" text-anchor="end" fill="#666">UTC</text>' % (width - right, bottom + 30))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _marker_style(kind):
    """(stroke, the dash attribute or "", legend words) of a marker kind; an unknown kind is dotted."""
    stroke, dash, words = MARKERS.get(kind, ("#333333", "1,2", kind))
    return stroke, ' stroke-dasharray="%s"' % dash if dash else "", words


def _legend(x0, y, zai, broker, kinds):
    """Legend entries (swatch + words) for what the chart shades and marks, left to right."""
    out, x = [], x0
    entries = []
    if zai:
        entries.append(("rect", ZAI_FILL, "0.15", "", "zero-activity incident (no signals and no paper trades)"))
    if broker:
        entries.append(("rect", BROKER_FILL, "0.25", "", "broker down (capital_com_up 0)"))
    for kind in kinds:
        stroke, dashed, words = _marker_style(kind)
        entries.append(("line", stroke, "", dashed, words))
    for shape, colour, opacity, dashed, words in entries:
        if shape == "rect":
            out.append(
                '<rect class="legend" x="%d" y="%d" width="14" height="10" fill="%s" fill-opacity="%s"/>'
                % (x, y - 9, colour, opacity)
            )
        else:
            out.append(
                '<line class="legend" x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5"%s/>'
                % (x + 7, y - 10, x + 7, y + 1, colour, dashed)
            )
        out.append('<text class="legend" x="%d" y="%d">%s</text>' % (x + 18, y, escape(words)))
        x += 18 + 6 * len(words) + 16
    return out


def grafana_links(grafana_url, start, end):
    """Markdown links to the stack's dashboards for [start, end] (Grafana takes epoch milliseconds)."""
    if not grafana_url:
        return []
    base = grafana_url.rstrip("/")
    window = "from=%d&to=%d" % (int(start * 1000), math.ceil(end * 1000))
    return ["- [%s](%s/d/%s?%s)" % (title, base, uid, window) for uid, title in DASHBOARDS]


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
    lines += ["", "![activity](report.svg)", ""]
    links = grafana_links(
        report.get("grafana_url"), b.get("started_at") or 0, b.get("ended_at") or report.get("generated_at") or 0
    )
    if links:
        lines += ["Grafana, for the block's window:", "", *links, ""]
    lines += [
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
