"""Risk rules of the reference bot: maximum position and orders per rolling minute (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "examples" / "bot"))

from tradeops_bot.risk import RiskManager


def test_position_limit_rejects_and_the_opposite_side_is_still_allowed():
    risk = RiskManager(max_position=2, max_orders_per_minute=100, order_size=1)
    assert risk.decide("BTCUSD", "buy", 0).approved
    assert risk.decide("BTCUSD", "buy", 1).approved
    third = risk.decide("BTCUSD", "buy", 2)
    assert not third.approved and "max position" in third.reason
    assert risk.positions["BTCUSD"] == 2, "a rejected order does not change the position"
    assert risk.decide("BTCUSD", "sell", 3).approved
    assert risk.positions["BTCUSD"] == 1


def test_positions_are_per_epic_and_short_positions_are_limited_too():
    risk = RiskManager(max_position=1, max_orders_per_minute=100)
    assert risk.decide("BTCUSD", "buy", 0).approved
    assert risk.decide("OIL_CRUDE", "sell", 0).approved
    assert not risk.decide("OIL_CRUDE", "sell", 1).approved
    assert risk.positions == {"BTCUSD": 1, "OIL_CRUDE": -1}


def test_rate_limit_is_a_rolling_minute():
    risk = RiskManager(max_position=1000, max_orders_per_minute=3)
    assert [risk.decide("X", "buy", t).approved for t in (0, 10, 20)] == [True, True, True]
    limited = risk.decide("X", "buy", 59.9)
    assert not limited.approved and "rate limit" in limited.reason
    assert risk.decide("X", "buy", 60.0).approved, "the order at t=0 left the window"
    assert not risk.decide("X", "buy", 60.5).approved


def test_rejected_orders_do_not_use_the_rate_budget():
    risk = RiskManager(max_position=1, max_orders_per_minute=2)
    assert risk.decide("X", "buy", 0).approved
    for t in range(1, 10):
        assert not risk.decide("X", "buy", t).approved  # position limit
    assert risk.decide("X", "sell", 10).approved


def test_unknown_side_and_bad_limits():
    assert not RiskManager().decide("X", "hold", 0).approved
    with pytest.raises(ValueError):
        RiskManager(max_position=0)
    with pytest.raises(ValueError):
        RiskManager(max_orders_per_minute=0)
