"""Signal logic of the reference bot: the moving-average crossover (pure)."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "examples" / "bot"))

from tradeops_bot.strategy import MovingAverageCrossover, Strategies


def feed(strategy, prices):
    return [strategy.update(p) for p in prices]


def test_no_signal_until_the_long_window_is_full_and_a_cross_happens():
    strat = MovingAverageCrossover(short=2, long=4)
    assert feed(strat, [10, 10, 10, 10]) == [None] * 4  # flat: no direction at all
    assert feed(strat, [9, 8]) == [None, None]  # first direction (down) is a state, not a cross


def test_cross_up_is_buy_and_cross_down_is_sell():
    strat = MovingAverageCrossover(short=2, long=4)
    feed(strat, [10, 9, 8, 7])  # short below long
    out = feed(strat, [9, 12])
    assert "buy" in out and "sell" not in out
    out = feed(strat, [6, 3])
    assert "sell" in out and "buy" not in out


def test_signals_alternate_and_are_frequent_on_a_random_walk():
    rng = random.Random(7)  # noqa: S311 (a reproducible walk, not crypto)
    strat, price, signals = MovingAverageCrossover(3, 8), 100.0, []
    for _ in range(400):
        price *= 1 + rng.gauss(0, 0.001)
        side = strat.update(price)
        if side:
            signals.append(side)
    assert len(signals) >= 20, "the demo needs signals within seconds (4 ticks/s)"
    assert all(a != b for a, b in itertools.pairwise(signals)), "a crossover always flips the side"


def test_epics_are_independent():
    strategies = Strategies(2, 4)
    for p in (10, 9, 8, 7):
        strategies.update("A", p)
        strategies.update("B", 100 - p)  # B rises
    assert strategies.update("A", 20) == "buy"
    assert strategies.update("B", 0) == "sell"


@pytest.mark.parametrize(("short", "long"), [(0, 4), (4, 4), (5, 4)])
def test_bad_windows_are_rejected(short, long):
    with pytest.raises(ValueError, match="short < long"):
        MovingAverageCrossover(short, long)
