"""_zai: the zero-activity incident verdict of a status and the episodes of a report (pure functions)."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _zai


@pytest.mark.parametrize(
    ("signals", "trades", "elapsed", "zai"),
    [
        (None, None, 100, True),  # no data is not activity
        (0, None, 100, True),
        (0, 0, 100, True),
        (1, None, 100, False),
        (None, 2, 100, False),
        (None, None, 10, False),  # the block is younger than the window: no verdict yet
    ],
)
def test_verdict(signals, trades, elapsed, zai):
    verdict, reason = _zai.verdict(elapsed, {"seconds": 20, "signals": signals, "trades": trades}, 20)
    assert verdict is zai
    if signals is None:
        assert "signals: no data" in reason


def test_verdict_reasons_are_the_ones_operators_read():
    window = {"seconds": 86400, "signals": None, "trades": 0}
    assert _zai.verdict(90000, window, 86400) == (
        True,
        "no signal and no paper trade in the last 86400s (signals: no data, trades: 0)",
    )
    assert _zai.verdict(60, window, 86400)[1] == (
        "no activity yet, but the block has run 60s, less than zai_window 86400s (signals: no data, trades: 0)"
    )
    assert _zai.verdict(90000, dict(window, signals=2.5), 86400)[1] == (
        "activity in the last 86400s (signals: 2.5, trades: 0)"
    )


def test_episodes_from_window_series():
    # window 20 s, evaluated every 5 s from t=120; silence from 140 to 160 inclusive, then again from 190 to the end
    sig = {120.0: 3, 125.0: 1, 130.0: 1, 135.0: 1, 165.0: 2, 170.0: 1, 175.0: 1, 180.0: 1, 185.0: 0}
    trd = {120.0: 1, 125.0: 0, 140.0: 0, 185.0: 1}
    episodes = _zai.episodes(120.0, 200.0, 5, 20, sig, trd)
    assert [(e["first_silent_step"], e["end"]) for e in episodes] == [(140.0, 165.0), (190.0, None)]
    assert episodes[0]["start"] == 120.0 and episodes[0]["seconds"] == 45.0
    assert episodes[1]["seconds"] == 30.0  # still silent at the end (200): from 170


def test_episodes_none_when_always_active():
    ts = {float(t): 1 for t in range(0, 101, 10)}
    assert _zai.episodes(0.0, 100.0, 10, 30, ts, {}) == []


def test_episodes_all_silent_without_data():
    assert _zai.episodes(0.0, 20.0, 10, 30, {}, {}) == [
        {"start": -30.0, "first_silent_step": 0.0, "end": None, "seconds": 50.0}
    ]


def test_increase_query_and_show():
    assert _zai.increase_query('tradeops_signals_total{stack="cdb"}', 86400) == (
        'sum(increase(tradeops_signals_total{stack="cdb"}[86400s]))'
    )
    assert _zai.show(None) == "no data" and _zai.show(3.0) == "3"
