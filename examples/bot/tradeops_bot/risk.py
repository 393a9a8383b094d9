"""Risk rules (pure, unit-tested): a maximum absolute position per epic and a maximum
number of approved orders per rolling minute."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str
    size: float = 0.0


class RiskManager:
    def __init__(self, max_position: float = 2.0, max_orders_per_minute: int = 120, order_size: float = 1.0):
        if max_position <= 0 or order_size <= 0 or max_orders_per_minute <= 0:
            raise ValueError("max_position, order_size and max_orders_per_minute must be positive")
        self.max_position = max_position
        self.max_orders_per_minute = max_orders_per_minute
        self.order_size = order_size
        self.positions: dict[str, float] = {}
        self._approved_at: deque[float] = deque()

    def decide(self, epic: str, side: str, now: float) -> Decision:
        if side not in ("buy", "sell"):
            return Decision(False, f"unknown side {side!r}")
        while self._approved_at and self._approved_at[0] <= now - 60.0:
            self._approved_at.popleft()
        if len(self._approved_at) >= self.max_orders_per_minute:
            return Decision(False, f"rate limit: {self.max_orders_per_minute} orders per minute reached")
        delta = self.order_size if side == "buy" else -self.order_size
        position = self.positions.get(epic, 0.0)
        if abs(position + delta) > self.max_position:
            return Decision(False, f"max position: {epic} at {position:g}, limit {self.max_position:g}")
        self.positions[epic] = position + delta
        self._approved_at.append(now)
        return Decision(True, "ok", self.order_size)
