"""_report: the Markdown and SVG renderings of a paper block report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ansible_collections.tradeops.stack.plugins.module_utils import _report

SVG = "{http://www.w3.org/2000/svg}"


def test_svg_draws_gaps_as_gaps_and_shades_zai():
    series = {
        "ticks": [(0, 10), (10, 12), (20, 11), (60, 9), (70, 10)],  # 30..50 missing: no data
        "signals": [],
        "trades": [(0, 1), (10, 0)],
    }
    svg = _report.render_svg(series, 0, 80, episodes=[{"start": 20, "end": 50}], title="t <&> block")
    root = ET.fromstring(svg)  # noqa: S314 - well-formed, escaped
    assert len(root.findall(f"{SVG}polyline[@class='series-ticks']")) == 2
    assert len(root.findall(f"{SVG}polyline[@class='series-trades']")) == 1
    assert not root.findall(f"{SVG}polyline[@class='series-signals']")
    assert "no data" in [t.text for t in root.findall(f"{SVG}text")]
    assert len(root.findall(f"{SVG}rect[@class='zai']")) == 3  # one per panel
    assert "t &lt;&amp;&gt; block" in svg


def test_markdown_report_says_no_data_changes_and_broker_failures(report_data):
    md = _report.render_markdown(report_data)
    assert "# Paper block b1: aborted" in md
    assert "| Paper trades | no data |" in md and "| Signals | 0 |" in md
    assert "| Abort reason | outage |" in md and "r\\|x" in md
    assert "CHANGED during the block" in md and "- cdb-x image_id: a -> b" in md
    assert "capital_com_up was 0 at 3 of 10 evaluated steps (1m 30s)" in md and "failing checks: login" in md
    assert "shorter than the ZAI window" in md
    assert "| cdb-x | x | 2 | - | healthy | running |" in md


def test_human_duration():
    assert _report.human_duration(259200) == "3d"
    assert _report.human_duration(5400) == "1h 30m"
    assert _report.human_duration(0) == "0s"


# ---------------------------------------------------------------------------------- the block chart
DAY = 1764547200  # 2025-12-01T00:00:00Z


def chart(**extra):
    series = {"ticks": [(DAY + 600 + 60 * i, 5.0) for i in range(100)], "signals": [], "trades": []}
    return ET.fromstring(_report.render_svg(series, DAY + 600, DAY + 72 * 3600 + 600, **extra))  # noqa: S314


def test_time_ticks_fall_on_round_hours_and_stay_few():
    ticks, step = _report.time_ticks(DAY + 600, DAY + 72 * 3600 + 600)  # a 3-day block starting at 00:10
    assert step == 43200 and len(ticks) <= 8
    assert all(ts % 3600 == 0 for ts in ticks) and ticks[0] == DAY + 43200
    ticks, step = _report.time_ticks(DAY + 125, DAY + 3725)  # one hour
    assert step == 900 and ticks == [DAY + 900 * i for i in range(1, 5)]


def test_tick_labels_are_hours_with_the_date_where_a_day_starts():
    labels = [t.text for t in chart().findall(f"{SVG}text[@class='tick']")]
    assert labels[0] == "12-01 12:00" and labels[1] == "12-02 00:00" and labels[2] == "12:00"


def test_panel_labels_sit_above_their_panel_clear_of_the_data():
    root = chart()
    frames = [r for r in root.findall(f"{SVG}rect") if r.get("stroke") == "#ccc"]
    labels = root.findall(f"{SVG}text[@class='panel-label']")
    assert len(labels) == len(frames) == 3
    for label, frame in zip(labels, frames, strict=True):
        assert float(label.get("y")) < float(frame.get("y")), "a label inside the plot area covers the line"


def test_the_legend_names_the_zai_band_broker_outages_and_the_markers():
    root = chart(
        episodes=[{"start": DAY + 86400, "end": DAY + 90000}],
        broker_down=[{"start": DAY + 7200, "end": DAY + 9000}],
        markers=[
            {"kind": "deploy", "ts": DAY + 3600, "label": "rollout market_data"},
            {"kind": "restart", "ts": DAY + 5000, "label": "cdb-redis"},
            {"kind": "restart", "ts": DAY - 10, "label": "before the block"},
        ],
    )
    legend = [t.text for t in root.findall(f"{SVG}text[@class='legend']")]
    assert legend == [
        "zero-activity incident (no signals and no paper trades)",
        "broker down (capital_com_up 0)",
        "deploy or rollback",
        "container restart",
    ]
    assert len(root.findall(f"{SVG}rect[@class='broker-down']")) == 3  # one per panel
    assert len(root.findall(f"{SVG}line[@class='marker-deploy']")) == 1
    restarts = root.findall(f"{SVG}line[@class='marker-restart']")
    assert len(restarts) == 1 and restarts[0].find(f"{SVG}title").text.endswith("cdb-redis")  # outside: not drawn


def test_without_shading_or_markers_the_chart_has_no_legend():
    assert not chart().findall(f"{SVG}text[@class='legend']")


def test_markdown_links_the_dashboards_for_the_blocks_window(report_data):
    assert "Grafana" not in _report.render_markdown(report_data)
    md = _report.render_markdown(dict(report_data, grafana_url="http://grafana.example:3000/"))
    assert "- [Market Data](http://grafana.example:3000/d/tradeops-market-data?from=0&to=3600000)" in md
    assert md.count("](http://grafana.example:3000/d/") == len(_report.DASHBOARDS)


def test_the_linked_dashboards_are_the_ones_the_monitoring_role_provisions():
    root = Path(__file__).resolve().parents[4] / "roles" / "monitoring" / "files" / "dashboards"
    provisioned = {json.loads(p.read_text())["uid"]: json.loads(p.read_text())["title"] for p in root.glob("*.json")}
    for uid, title in _report.DASHBOARDS:
        assert provisioned.get(uid, "").endswith(title), (uid, title)
