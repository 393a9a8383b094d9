"""A tiny Prometheus registry rendering the text exposition format (0.0.4), stdlib only."""

from __future__ import annotations

import math
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metric:
    kind = "untyped"

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()):
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def init(self, **labels: str) -> None:
        """Make a label set visible at 0 before its first event (absent() alerts stay meaningful).

        A metric renders only the label sets that were initialised or updated, so each
        role exposes the families it owns and nothing that would read as a false zero.
        """
        with self._lock:
            self._values.setdefault(self._key(labels), 0.0)

    def render(self) -> list[str]:
        doc = self.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {doc}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            if key:
                labels = ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(self.labelnames, key, strict=True))
                lines.append(f"{self.name}{{{labels}}} {format_value(value)}")
            else:
                lines.append(f"{self.name} {format_value(value)}")
        return lines


class Counter(Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        with self._lock:
            key = self._key(labels)
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = float(value)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def register(self, metric: Metric) -> Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Counter:
        return self.register(Counter(name, documentation, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        return self.register(Gauge(name, documentation, labelnames))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class BotMetrics:
    """The metric names other parts of tradeops.stack (alerts, dashboards, ZAI) rely on."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.ticks = r.counter("tradeops_ticks_total", "Market-data ticks published, per epic.", ("epic",))
        self.last_tick = r.gauge(
            "tradeops_last_tick_timestamp_seconds", "Unix time of the last tick published, per epic.", ("epic",)
        )
        self.signals = r.counter("tradeops_signals_total", "Trading signals emitted.", ("epic", "side"))
        self.risk_decisions = r.counter(
            "tradeops_risk_decisions_total", "Risk decisions on signals (approved|rejected).", ("decision",)
        )
        self.paper_trades = r.counter(
            "tradeops_paper_trades_total", "Simulated fills written to paper_trades.", ("epic", "side")
        )
        self.lease_conflicts = r.counter(
            "tradeops_lease_conflicts_total",
            "Times this paper_execution instance found the execution lease held by another instance.",
        )
        self.db_rows = r.counter("tradeops_db_rows_written_total", "Rows written to PostgreSQL, per table.", ("table",))
        self.orders_paused = r.gauge(
            "tradeops_orders_paused", "1 while the pause_new_orders flag stops new paper orders, else 0."
        )
        self.bot_info = r.gauge(
            "tradeops_bot_info", "Always 1; labels carry the role and version.", ("role", "version")
        )
        self.dependency_up = r.gauge(
            "tradeops_dependency_up", "1 when the dependency (redis|postgres|broker) answers, else 0.", ("dependency",)
        )
        self.orders_skipped = r.counter(
            "tradeops_orders_skipped_total", "Approved orders not executed, per reason.", ("reason",)
        )
        self.market_tradeable = r.gauge(
            "tradeops_market_tradeable", "1 when the broker reports the market TRADEABLE (broker mode).", ("epic",)
        )
        self.lease_held = r.gauge("tradeops_lease_held", "1 while this instance holds the execution lease.")
        # market_data in broker mode: the price stream, and the REST poll that stands in when it is quiet
        self.stream_up = r.gauge("tradeops_stream_up", "1 while the WebSocket price stream is connected, else 0.")
        self.stream_last_quote = r.gauge(
            "tradeops_stream_last_quote_timestamp_seconds",
            "Unix time of the last quote received over the price stream, per epic (0: none yet).",
            ("epic",),
        )
        self.rest_fallback = r.gauge(
            "tradeops_market_data_rest_fallback",
            "1 while market_data polls REST for this epic because its price stream is quiet or down.",
            ("epic",),
        )
        self.rest_fallbacks = r.counter(
            "tradeops_market_data_rest_fallbacks_total",
            "Times the REST poll took over from the price stream.",
            ("epic",),
        )
        self.errors = r.counter("tradeops_errors_total", "Errors by kind (reconnects, broker errors, ...).", ("kind",))

    def render(self) -> str:
        return self.registry.render()
