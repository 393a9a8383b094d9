"""_report: the Markdown and SVG renderings of a paper block report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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
