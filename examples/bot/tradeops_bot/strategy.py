"""Signal logic: a short/long simple-moving-average crossover per epic (pure, unit-tested)."""

from __future__ import annotations

from collections import deque


class MovingAverageCrossover:
    """Emit "buy" when the short SMA crosses above the long SMA, "sell" when it crosses below.

    Tuned short (3/8 ticks by default) so that a random walk at a few ticks per
    second gives signals within seconds in the demo.
    """

    def __init__(self, short: int = 3, long: int = 8):
        if not 0 < short < long:
            raise ValueError(f"need 0 < short < long, got short={short} long={long}")
        self.short = short
        self.long = long
        self._prices: deque[float] = deque(maxlen=long)
        self._state = 0  # +1 short above long, -1 below, 0 unknown

    def update(self, price: float) -> str | None:
        self._prices.append(float(price))
        if len(self._prices) < self.long:
            return None
        prices = list(self._prices)
        short_ma = sum(prices[-self.short :]) / self.short
        long_ma = sum(prices) / self.long
        state = 1 if short_ma > long_ma else -1 if short_ma < long_ma else 0
        if state == 0:
            return None
        previous, self._state = self._state, state
        if previous == 0 or previous == state:
            return None
        return "buy" if state > 0 else "sell"


class Strategies:
    """One crossover per epic."""

    def __init__(self, short: int = 3, long: int = 8):
        self.short, self.long = short, long
        self._by_epic: dict[str, MovingAverageCrossover] = {}

    def update(self, epic: str, price: float) -> str | None:
        strat = self._by_epic.get(epic)
        if strat is None:
            strat = self._by_epic[epic] = MovingAverageCrossover(self.short, self.long)
        return strat.update(price)
