"""Prometheus text rendering of the reference bot and its contract of metric names (pure)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "examples" / "bot"))

from tradeops_bot.metrics import BotMetrics, Registry, format_value

# Alerts, dashboards and the ZAI detector are built on these exact names and labels.
CONTRACT = {
    "tradeops_ticks_total": ("counter", ("epic",)),
    "tradeops_last_tick_timestamp_seconds": ("gauge", ("epic",)),
    "tradeops_signals_total": ("counter", ("epic", "side")),
    "tradeops_risk_decisions_total": ("counter", ("decision",)),
    "tradeops_paper_trades_total": ("counter", ("epic", "side")),
    "tradeops_lease_conflicts_total": ("counter", ()),
    "tradeops_db_rows_written_total": ("counter", ("table",)),
    "tradeops_orders_paused": ("gauge", ()),
    "tradeops_bot_info": ("gauge", ("role", "version")),
    "tradeops_dependency_up": ("gauge", ("dependency",)),
    "tradeops_market_tradeable": ("gauge", ("epic",)),
    "tradeops_stream_up": ("gauge", ()),
    "tradeops_stream_last_quote_timestamp_seconds": ("gauge", ("epic",)),
    "tradeops_market_data_rest_fallback": ("gauge", ("epic",)),
    "tradeops_market_data_rest_fallbacks_total": ("counter", ("epic",)),
}
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? \S+$')


def test_the_metric_contract_is_kept():
    metrics = BotMetrics()
    found = {m.name: (m.kind, m.labelnames) for m in metrics.registry._metrics.values()}
    for name, spec in CONTRACT.items():
        assert found.get(name) == spec, f"{name}: expected {spec}, found {found.get(name)}"


def test_render_is_valid_text_format_with_help_and_type():
    metrics = BotMetrics()
    metrics.ticks.inc(epic="BTCUSD")
    metrics.ticks.inc(2, epic="BTCUSD")
    metrics.last_tick.set(1795397055.615, epic="BTCUSD")
    metrics.signals.inc(epic="OIL_CRUDE", side="sell")
    metrics.lease_conflicts.inc()
    metrics.bot_info.set(1, role="market_data", version="1.0.0")
    text = metrics.render()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), f"bad line: {line!r}"
    assert 'tradeops_ticks_total{epic="BTCUSD"} 3' in text.splitlines()
    assert 'tradeops_last_tick_timestamp_seconds{epic="BTCUSD"} 1795397055.615' in text
    assert 'tradeops_signals_total{epic="OIL_CRUDE",side="sell"} 1' in text
    assert "tradeops_lease_conflicts_total 1" in text.splitlines()
    assert "# TYPE tradeops_signals_total counter" in text


def test_only_initialised_or_updated_series_are_exposed():
    metrics = BotMetrics()
    assert "tradeops_lease_conflicts_total 0" not in metrics.render()
    metrics.lease_conflicts.init()
    metrics.risk_decisions.init(decision="rejected")
    text = metrics.render()
    assert "tradeops_lease_conflicts_total 0" in text.splitlines()
    assert 'tradeops_risk_decisions_total{decision="rejected"} 0' in text.splitlines()


def test_label_values_are_escaped_and_label_sets_checked():
    reg = Registry()
    gauge = reg.gauge("x_info", "doc with \\ and\nnewline", ("v",))
    gauge.set(1, v='a"b\\c\nd')
    text = reg.render()
    assert 'x_info{v="a\\"b\\\\c\\nd"} 1' in text
    assert "# HELP x_info doc with \\\\ and\\nnewline" in text
    with pytest.raises(ValueError, match="labels"):
        gauge.set(1, other="x")


def test_counters_only_go_up_and_names_are_unique():
    reg = Registry()
    counter = reg.counter("c_total", "doc")
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1)
    with pytest.raises(ValueError, match="twice"):
        reg.counter("c_total", "doc")


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0.25, "0.25"), (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf")],
)
def test_value_formatting(value, text):
    assert format_value(value) == text
