"""The bot process: configuration, logging, HTTP (/health, /metrics), dependencies and the role loops."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import ConfigError, Settings, build_info, load_settings, read_flags, read_optional_secret, read_secret
from .feed import MarketFeed
from .metrics import CONTENT_TYPE, BotMetrics
from .risk import RiskManager
from .strategy import Strategies

try:  # Debian's python3-redis and python3-psycopg2 in the image; absent in unit tests
    import psycopg2
    import redis
except ImportError:  # pragma: no cover - the image always has them
    psycopg2 = redis = None

STREAM_TICKS = "tradeops:ticks"
STREAM_SIGNALS = "tradeops:signals"
STREAM_ORDERS = "tradeops:orders"
# Roles that must never work twice at the same time hold a Redis lease; a second instance stands by.
# paper_execution: placing orders; db_writer: aggregates with an offset (an overlap during a
# blue/green switch would otherwise let one instance skip entries the other had not written yet).
LEASE_KEYS = {"paper_execution": "tradeops:lease:paper_execution", "db_writer": "tradeops:lease:db_writer"}
EXECUTOR_CONSUMER = "executor"  # one consumer name: a new lease holder takes over the old holder's pending orders

SCHEMA = """
SELECT pg_advisory_xact_lock(727001);
CREATE TABLE IF NOT EXISTS paper_trades (
    deal_id     text PRIMARY KEY,
    signal_id   text NOT NULL,
    epic        text NOT NULL,
    side        text NOT NULL CHECK (side IN ('buy', 'sell')),
    size        numeric NOT NULL,
    price       numeric NOT NULL,
    instance    text NOT NULL,
    bot_version text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tick_bars (
    epic   text NOT NULL,
    bucket timestamptz NOT NULL,
    open   numeric NOT NULL,
    high   numeric NOT NULL,
    low    numeric NOT NULL,
    close  numeric NOT NULL,
    ticks  integer NOT NULL,
    PRIMARY KEY (epic, bucket)
);
CREATE TABLE IF NOT EXISTS signals (
    signal_id  text PRIMARY KEY,
    epic       text NOT NULL,
    side       text NOT NULL,
    price      numeric NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_offsets (
    stream  text PRIMARY KEY,
    last_id text NOT NULL
);
"""

RENEW_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
RELEASE_LUA = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Logger:
    """JSON lines on stdout, one per event; known secret values are replaced by *** as a last line of defence."""

    def __init__(self, role: str, version: str, stream=None):
        self.role, self.version = role, version
        self.stream = stream or sys.stdout
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add_secret(self, *values: str) -> None:
        self._secrets.update(v for v in values if v and len(v) >= 4)

    def __call__(self, event: str, level: str = "info", **fields) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "role": self.role,
            "version": self.version,
            "event": event,
            **fields,
        }
        line = json.dumps(record, default=str, sort_keys=False)
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "***")
            escaped = json.dumps(secret)[1:-1]
            if escaped in line:
                line = line.replace(escaped, "***")
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class Backoff:
    def __init__(self, base: float = 0.5, cap: float = 5.0):
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not crypto)

    def reset(self) -> None:
        self.attempt = 0


REQUIRED_FIELDS = {
    STREAM_TICKS: ("epic", "mid", "ts"),
    STREAM_SIGNALS: ("signal_id", "epic", "side", "price", "ts"),
    STREAM_ORDERS: ("deal_id", "signal_id", "epic", "side", "size", "price"),
}
NUMERIC_FIELDS = ("mid", "ts", "price", "size")


def entry_problem(stream: str, fields: dict | None) -> str | None:
    """Why a stream entry cannot be processed, or None (pure)."""
    if not fields:
        return "entry gone (trimmed by MAXLEN before it was processed)"
    missing = [k for k in REQUIRED_FIELDS.get(stream, ()) if not fields.get(k)]
    if missing:
        return f"missing fields {missing}"
    for key in NUMERIC_FIELDS:
        if key in fields:
            try:
                float(fields[key])
            except ValueError:
                return f"field {key} is not a number: {fields[key][:40]!r}"
    if "side" in fields and fields["side"] not in ("buy", "sell"):
        return f"unknown side {fields['side'][:20]!r}"
    return None


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def bars_from_ticks(ticks: list[dict], bucket_seconds: int = 60) -> dict[tuple[str, int], dict]:
    """One-minute OHLC bars (keyed by epic and bucket start) from ticks in stream order (pure)."""
    bars: dict[tuple[str, int], dict] = {}
    for tick in ticks:
        price = float(tick["mid"])
        key = (tick["epic"], int(float(tick["ts"])) // bucket_seconds * bucket_seconds)
        bar = bars.get(key)
        if bar is None:
            bars[key] = {"open": price, "high": price, "low": price, "close": price, "ticks": 1}
        else:
            bar["high"] = max(bar["high"], price)
            bar["low"] = min(bar["low"], price)
            bar["close"] = price
            bar["ticks"] += 1
    return bars


class Bot:
    def __init__(self, settings: Settings, build: dict, log: Logger, secrets: dict[str, str]):
        self.s = settings
        self.build = build
        self.version = build["version"]
        self.log = log
        self._secrets = secrets
        self.metrics = BotMetrics()
        self.stop = threading.Event()
        self.flags: dict = {}
        self.deps: dict[str, tuple[bool, str]] = {"redis": (False, "not checked yet")}
        if settings.needs_postgres:
            self.deps["postgres"] = (False, "not checked yet")
        self.heartbeat = time.monotonic()
        self.redis = None
        self.pg = None
        self._pg_schema_ready = False
        self.pending = True  # (re)read our pending stream entries before new ones
        self.lease_holder = False
        self.lease_renewed_at = 0.0
        self._last_conflict_log = 0.0
        self.feed = None  # market_data in broker mode: the price stream with the REST fallback
        self.strategies = Strategies(settings.sma_short, settings.sma_long)
        self.risk = RiskManager(settings.max_position, settings.max_orders_per_minute, settings.order_size)
        self._prices: dict[str, float] = {}
        self._tick_summary_at = time.monotonic()
        self._ticks_since_summary = 0

        m = self.metrics
        m.bot_info.set(1, role=settings.role, version=self.version)
        for dep in self.deps:
            m.dependency_up.set(0, dependency=dep)
        role = settings.role
        if role == "market_data":
            for epic in settings.epics:
                m.ticks.init(epic=epic)
            if settings.uses_broker:
                self.feed = MarketFeed(settings, secrets, m, log)
        elif role == "signal_engine":
            for epic in settings.epics:
                for side in ("buy", "sell"):
                    m.signals.init(epic=epic, side=side)
        elif role == "risk_manager":
            for decision in ("approved", "rejected"):
                m.risk_decisions.init(decision=decision)
        elif role == "paper_execution":
            for epic in settings.epics:
                for side in ("buy", "sell"):
                    m.paper_trades.init(epic=epic, side=side)
            m.db_rows.init(table="paper_trades")
            m.orders_skipped.init(reason="paused")
            m.lease_conflicts.init()
            m.orders_paused.init()
        elif role == "db_writer":
            for table in ("tick_bars", "signals"):
                m.db_rows.init(table=table)
        self.lease_key = LEASE_KEYS.get(role)
        if self.lease_key:
            m.lease_held.init()

    # ------------------------------------------------------------------ dependencies
    def connect_redis(self):
        if self.redis is None:
            self.redis = redis.Redis(
                host=self.s.redis_host,
                port=self.s.redis_port,
                password=self._secrets.get("redis_password"),
                socket_timeout=5,
                socket_connect_timeout=2,
                health_check_interval=5,
                decode_responses=True,
                client_name=f"tradeops-{self.s.role}",
            )
        return self.redis

    def connect_pg(self):
        if self.pg is not None and self.pg.closed:
            self.pg = None
        if self.pg is None:
            self.pg = psycopg2.connect(
                host=self.s.postgres_host,
                port=self.s.postgres_port,
                dbname=self.s.postgres_db,
                user=self.s.postgres_user,
                password=self._secrets["postgres_password"],
                connect_timeout=3,
                application_name=f"tradeops-{self.s.role}",
                options="-c statement_timeout=5000",
            )
            with self.pg, self.pg.cursor() as cur:
                cur.execute(SCHEMA)
            self.log("postgres_connected", host=self.s.postgres_host, db=self.s.postgres_db)
        return self.pg

    def drop_pg(self):
        if self.pg is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped either way
                self.pg.close()
        self.pg = None

    def set_dep(self, name: str, ok: bool, reason: str = "ok") -> None:
        previous = self.deps.get(name)
        self.deps[name] = (ok, reason)
        self.metrics.dependency_up.set(1 if ok else 0, dependency=name)
        if previous is None or previous[0] != ok:
            self.log(
                "dependency_up" if ok else "dependency_down",
                level="info" if ok else "warning",
                dependency=name,
                reason=reason,
            )

    def probe_loop(self) -> None:
        """Check Redis (and PostgreSQL) every second on connections of its own; /health reads the result."""
        r = redis.Redis(
            host=self.s.redis_host,
            port=self.s.redis_port,
            password=self._secrets.get("redis_password"),
            socket_timeout=1,
            socket_connect_timeout=1,
        )
        pg = None
        while not self.stop.is_set():
            try:
                r.ping()
                self.set_dep("redis", True)
            except Exception as exc:
                self.set_dep(
                    "redis", False, f"redis {self.s.redis_host}:{self.s.redis_port} unreachable: {type(exc).__name__}"
                )
            if self.s.needs_postgres:
                try:
                    if pg is None or pg.closed:
                        pg = psycopg2.connect(
                            host=self.s.postgres_host,
                            port=self.s.postgres_port,
                            dbname=self.s.postgres_db,
                            user=self.s.postgres_user,
                            password=self._secrets["postgres_password"],
                            connect_timeout=1,
                            application_name=f"tradeops-{self.s.role}-probe",
                        )
                        pg.autocommit = True
                    with pg.cursor() as cur:
                        cur.execute("SELECT 1")
                    self.set_dep("postgres", True)
                except Exception as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    self.set_dep("postgres", False, f"postgres {self.s.postgres_host} unreachable: {reason[:160]}")
                    if pg is not None:
                        with contextlib.suppress(Exception):
                            pg.close()
                    pg = None
            self.stop.wait(1.0)
        if pg is not None:
            pg.close()

    def flags_loop(self) -> None:
        last_error = None
        while not self.stop.is_set():
            flags, error = read_flags(self.s.flags_file, self.flags)
            if error and error != last_error:
                self.log("flags_invalid", level="warning", path=str(self.s.flags_file), reason=error)
            last_error = error
            if flags != self.flags:
                self.log("flags_changed", path=str(self.s.flags_file), flags=flags)
                self.flags = flags
            if self.s.role == "paper_execution":
                self.metrics.orders_paused.set(1 if self.paused else 0)
            self.stop.wait(2.0)

    @property
    def paused(self) -> bool:
        return self.flags.get("pause_new_orders") is True

    # ------------------------------------------------------------------ health
    def health(self) -> tuple[int, dict]:
        reasons = [reason for ok, reason in self.deps.values() if not ok]
        stalled = time.monotonic() - self.heartbeat
        if stalled > 20:
            reasons.append(f"worker loop stalled for {stalled:.0f} s")
        if self.build["fault"] == "unhealthy":
            reasons.append(f"deliberately broken build {self.version}: health always fails (rollback test image)")
        body = {
            "status": "unhealthy" if reasons else "ok",
            "role": self.s.role,
            "version": self.version,
            "instance": self.s.instance,
            "trading_mode": self.s.trading_mode,
            "dependencies": {name: {"ok": ok, "reason": reason} for name, (ok, reason) in self.deps.items()},
        }
        if self.s.uses_broker:
            up = self.metrics.dependency_up.value(dependency="broker")
            body["dependencies"]["broker"] = {"ok": bool(up), "required": False}
        if self.lease_key:
            body["lease_held"] = self.lease_holder
        if self.s.role == "paper_execution":
            body["orders_paused"] = self.paused
        if reasons:
            body["reasons"] = reasons
        return (503 if reasons else 200), body

    # ------------------------------------------------------------------ worker
    def run_worker(self) -> None:
        backoff = Backoff()
        step = getattr(self, f"step_{self.s.role}")
        errors = tuple(
            e
            for e in (
                getattr(redis, "exceptions", None) and redis.exceptions.ConnectionError,
                getattr(redis, "exceptions", None) and redis.exceptions.TimeoutError,
                psycopg2 and psycopg2.OperationalError,
                psycopg2 and psycopg2.InterfaceError,
            )
            if e
        )
        while not self.stop.is_set():
            try:
                step()
                backoff.reset()
            except errors as exc:
                kind = "postgres" if psycopg2 and isinstance(exc, psycopg2.Error) else "redis"
                if kind == "postgres":
                    self.drop_pg()
                self.pending = True
                self.metrics.errors.inc(kind=f"{kind}_reconnect")
                delay = backoff.next()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.log(
                    "dependency_error",
                    level="warning",
                    dependency=kind,
                    reason=reason[:200],
                    retry_in_s=round(delay, 2),
                )
                self.stop.wait(delay)
            except Exception as exc:  # a bug must not kill the loop silently: log it, back off, go on
                self.metrics.errors.inc(kind="unexpected")
                self.log("worker_error", level="error", error=f"{type(exc).__name__}: {exc}"[:300])
                self.pending = True
                self.drop_pg()
                self.stop.wait(backoff.next())
            self.heartbeat = time.monotonic()

    def ensure_group(self, r, stream: str, group: str) -> None:
        try:
            r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_group(self, r, group: str, consumer: str, streams: list[str], count: int = 100) -> list:
        """Our pending entries first (after a start or an error), then new ones."""
        for stream in streams:
            self.ensure_group(r, stream, group)
        if self.pending:
            result = r.xreadgroup(group, consumer, dict.fromkeys(streams, "0"), count=count)
            if any(entries for _name, entries in result or []):
                return self.valid_entries(r, group, result)
            self.pending = False
        result = r.xreadgroup(group, consumer, dict.fromkeys(streams, ">"), count=count, block=1000)
        return self.valid_entries(r, group, result)

    def valid_entries(self, r, group: str, result) -> list:
        """Drop (acknowledge and log) entries that cannot be processed, so one bad entry never blocks a stream:
        entries trimmed by MAXLEN while pending come back without fields."""
        out = []
        for stream, entries in result or []:
            good = []
            for entry_id, fields in entries:
                reason = entry_problem(stream, fields)
                if reason:
                    r.xack(stream, group, entry_id)
                    self.metrics.errors.inc(kind="bad_entry")
                    self.log("stream_entry_dropped", level="warning", stream=stream, entry_id=entry_id, reason=reason)
                    continue
                good.append((entry_id, fields))
            out.append((stream, good))
        return out

    # market_data ------------------------------------------------------
    def step_market_data(self) -> None:
        r = self.connect_redis()
        if self.s.uses_broker:
            quotes, interval = self.feed.step()
        else:
            quotes = self.synthetic_quotes()
            interval = self.s.tick_interval
        if quotes:
            pipe = r.pipeline(transaction=False)
            for q in quotes:
                mid = round((q["bid"] + q["offer"]) / 2, 5)
                pipe.xadd(
                    STREAM_TICKS,
                    {"epic": q["epic"], "bid": q["bid"], "offer": q["offer"], "mid": mid, "ts": q["ts"]},
                    maxlen=self.s.stream_maxlen,
                    approximate=True,
                )
            pipe.execute()
            for q in quotes:
                self.metrics.ticks.inc(epic=q["epic"])
                self.metrics.last_tick.set(q["ts"], epic=q["epic"])
                self._prices[q["epic"]] = (q["bid"] + q["offer"]) / 2
            self._ticks_since_summary += len(quotes)
        if time.monotonic() - self._tick_summary_at >= 10:
            self.log(
                "ticks_published",
                count=self._ticks_since_summary,
                source="broker" if self.s.uses_broker else "synthetic",
                rest_fallback=sorted(self.feed.falling_back) if self.feed else [],
                last={e: self._prices.get(e) for e in self.s.epics},
            )
            self._tick_summary_at, self._ticks_since_summary = time.monotonic(), 0
        self.stop.wait(interval)

    def synthetic_quotes(self) -> list[dict]:
        now = time.time()
        out = []
        for epic in self.s.epics:
            start = {"BTCUSD": 65000.0, "OIL_CRUDE": 75.0}.get(epic, 100.0)
            price = self._prices.get(epic, start)
            price = max(price * (1 + random.gauss(0, 0.0008)), 0.01)
            self._prices[epic] = price
            spread = price * 0.0002
            out.append(
                {"epic": epic, "bid": round(price - spread / 2, 5), "offer": round(price + spread / 2, 5), "ts": now}
            )
        return out

    # signal_engine ----------------------------------------------------
    def step_signal_engine(self) -> None:
        r = self.connect_redis()
        for _stream, entries in self.read_group(r, "signal_engine", "signal_engine", [STREAM_TICKS]):
            for entry_id, f in entries:
                side = self.strategies.update(f["epic"], float(f["mid"]))
                pipe = r.pipeline(transaction=True)
                if side:
                    signal_id = f"{f['epic']}:{entry_id}"
                    pipe.xadd(
                        STREAM_SIGNALS,
                        {"signal_id": signal_id, "epic": f["epic"], "side": side, "price": f["mid"], "ts": f["ts"]},
                        maxlen=self.s.stream_maxlen,
                        approximate=True,
                    )
                pipe.xack(STREAM_TICKS, "signal_engine", entry_id)
                pipe.execute()
                if side:
                    self.metrics.signals.inc(epic=f["epic"], side=side)
                    self.log("signal", signal_id=signal_id, epic=f["epic"], side=side, price=float(f["mid"]))

    # risk_manager -----------------------------------------------------
    def step_risk_manager(self) -> None:
        r = self.connect_redis()
        for _stream, entries in self.read_group(r, "risk_manager", "risk_manager", [STREAM_SIGNALS]):
            for entry_id, f in entries:
                decision = self.risk.decide(f["epic"], f["side"], time.time())
                pipe = r.pipeline(transaction=True)
                if decision.approved:
                    pipe.xadd(
                        STREAM_ORDERS,
                        {
                            "deal_id": f"P-{f['signal_id']}",
                            "signal_id": f["signal_id"],
                            "epic": f["epic"],
                            "side": f["side"],
                            "size": decision.size,
                            "price": f["price"],
                            "ts": time.time(),
                        },
                        maxlen=self.s.stream_maxlen,
                        approximate=True,
                    )
                pipe.xack(STREAM_SIGNALS, "risk_manager", entry_id)
                pipe.execute()
                label = "approved" if decision.approved else "rejected"
                self.metrics.risk_decisions.inc(decision=label)
                self.log(
                    "risk_decision",
                    decision=label,
                    reason=decision.reason,
                    signal_id=f["signal_id"],
                    epic=f["epic"],
                    side=f["side"],
                    position=self.risk.positions.get(f["epic"], 0.0),
                )

    # leases (paper_execution, db_writer) ---------------------------------
    def lease_valid(self) -> bool:
        # renewed less than half a TTL ago: nobody else can hold it yet
        return self.lease_holder and (time.monotonic() - self.lease_renewed_at) * 1000 < self.s.lease_ttl_ms / 2

    def ensure_lease(self, r) -> bool:
        now = time.monotonic()
        ttl = self.s.lease_ttl_ms
        if self.lease_holder:
            if (now - self.lease_renewed_at) * 1000 < ttl / 6:
                return True
            if r.eval(RENEW_LUA, 1, self.lease_key, self.s.instance, ttl) == 1:
                self.lease_renewed_at = now
                return True
            self.lease_holder = False
            self.pending = True
            self.metrics.lease_held.set(0)
            self.log("lease_lost", level="warning", key=self.lease_key, instance=self.s.instance)
        if r.set(self.lease_key, self.s.instance, nx=True, px=ttl):
            self.lease_holder, self.lease_renewed_at, self.pending = True, now, True
            self.metrics.lease_held.set(1)
            self.log("lease_acquired", key=self.lease_key, instance=self.s.instance, ttl_ms=ttl)
            return True
        holder = r.get(self.lease_key)
        if holder and holder != self.s.instance:
            executor = self.s.role == "paper_execution"
            if executor:  # two executors is an incident; a db_writer standby during a switch is normal
                self.metrics.lease_conflicts.inc()
            if now - self._last_conflict_log >= 30:
                self._last_conflict_log = now
                self.log(
                    "lease_conflict" if executor else "lease_standby",
                    level="warning" if executor else "info",
                    key=self.lease_key,
                    instance=self.s.instance,
                    holder=holder,
                    detail=f"another {self.s.role} instance holds the lease; standing by",
                )
        return False

    def release_lease(self) -> None:
        if not self.lease_holder or self.redis is None:
            return
        try:
            released = self.redis.eval(RELEASE_LUA, 1, self.lease_key, self.s.instance)
            self.log("lease_released", key=self.lease_key, instance=self.s.instance, released=bool(released))
        except Exception as exc:
            self.log("lease_release_failed", level="warning", reason=type(exc).__name__)
        self.lease_holder = False
        self.metrics.lease_held.set(0)

    def step_paper_execution(self) -> None:
        r = self.connect_redis()
        if not self.ensure_lease(r):
            self.stop.wait(self.s.lease_ttl_ms / 3000)
            return
        pg = self.connect_pg()
        for _stream, entries in self.read_group(r, "paper_execution", EXECUTOR_CONSUMER, [STREAM_ORDERS], count=50):
            for entry_id, f in entries:
                if self.stop.is_set():
                    return  # SIGTERM: the rest stays pending for the next lease holder
                if not self.lease_valid() and not self.ensure_lease(r):
                    return  # lost the lease mid-batch: leave the rest pending for the new holder
                if self.paused:
                    r.xack(STREAM_ORDERS, "paper_execution", entry_id)
                    self.metrics.orders_skipped.inc(reason="paused")
                    self.log("order_skipped", reason="pause_new_orders flag set", deal_id=f["deal_id"])
                    continue
                with pg, pg.cursor() as cur:
                    cur.execute(
                        "INSERT INTO paper_trades (deal_id, signal_id, epic, side, size, price, instance, bot_version)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (deal_id) DO NOTHING",
                        (
                            f["deal_id"],
                            f["signal_id"],
                            f["epic"],
                            f["side"],
                            f["size"],
                            f["price"],
                            self.s.instance,
                            self.version,
                        ),
                    )
                    inserted = cur.rowcount == 1
                r.xack(STREAM_ORDERS, "paper_execution", entry_id)  # only after the row is committed
                if inserted:
                    self.metrics.paper_trades.inc(epic=f["epic"], side=f["side"])
                    self.metrics.db_rows.inc(table="paper_trades")
                    self.log(
                        "paper_trade",
                        deal_id=f["deal_id"],
                        epic=f["epic"],
                        side=f["side"],
                        size=float(f["size"]),
                        price=float(f["price"]),
                    )
                else:
                    self.log("paper_trade_duplicate", deal_id=f["deal_id"], detail="already recorded; not placed again")

    # db_writer --------------------------------------------------------
    def step_db_writer(self) -> None:
        r = self.connect_redis()
        if not self.ensure_lease(r):
            self.stop.wait(self.s.lease_ttl_ms / 3000)
            return
        pg = self.connect_pg()
        for stream, entries in self.read_group(r, "db_writer", "db_writer", [STREAM_TICKS, STREAM_SIGNALS], 500):
            if not entries:
                continue
            if not self.lease_valid() and not self.ensure_lease(r):
                return  # lost the lease: the entries stay pending for the new holder
            with pg, pg.cursor() as cur:
                cur.execute("SELECT last_id FROM stream_offsets WHERE stream = %s FOR UPDATE", (stream,))
                row = cur.fetchone()
                last = stream_id(row[0]) if row else (0, 0)
                fresh = [(i, f) for i, f in entries if stream_id(i) > last]  # exactly once across redeliveries
                rows = 0
                if fresh and stream == STREAM_TICKS:
                    table = "tick_bars"
                    for (epic, bucket), bar in bars_from_ticks([f for _i, f in fresh]).items():
                        cur.execute(
                            "INSERT INTO tick_bars (epic, bucket, open, high, low, close, ticks)"
                            " VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, %s)"
                            " ON CONFLICT (epic, bucket) DO UPDATE SET high = GREATEST(tick_bars.high, EXCLUDED.high),"
                            " low = LEAST(tick_bars.low, EXCLUDED.low), close = EXCLUDED.close,"
                            " ticks = tick_bars.ticks + EXCLUDED.ticks",
                            (epic, bucket, bar["open"], bar["high"], bar["low"], bar["close"], bar["ticks"]),
                        )
                        rows += 1
                elif fresh:
                    table = "signals"
                    for _i, f in fresh:
                        cur.execute(
                            "INSERT INTO signals (signal_id, epic, side, price, created_at)"
                            " VALUES (%s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (signal_id) DO NOTHING",
                            (f["signal_id"], f["epic"], f["side"], f["price"], float(f["ts"])),
                        )
                        rows += cur.rowcount
                if fresh:
                    cur.execute(
                        "INSERT INTO stream_offsets (stream, last_id) VALUES (%s, %s)"
                        " ON CONFLICT (stream) DO UPDATE SET last_id = EXCLUDED.last_id",
                        (stream, fresh[-1][0]),
                    )
            r.xack(stream, "db_writer", *[i for i, _f in entries])
            if fresh and rows:
                self.metrics.db_rows.inc(rows, table=table)


class Handler(BaseHTTPRequestHandler):
    bot: Bot
    server_version = "tradeops-bot"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, body = self.bot.health()
            self._send(status, "application/json", json.dumps(body).encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, self.bot.metrics.render().encode())
        else:
            self._send(404, "application/json", b'{"error": "not found; try /health or /metrics"}')

    def _send(self, status: int, ctype: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args) -> None:
        pass  # health probes every 2 s would flood the log


def main() -> int:
    build = build_info()
    role = os.environ.get("BOT_ROLE", "?")
    log = Logger(role, build["version"])
    if build["fault"] == "crash":
        log(
            "startup_failed",
            level="error",
            reason=f"deliberately broken build {build['version']}: crashes at start (rollback test image)",
        )
        return 1
    try:
        settings = load_settings()
        secrets: dict[str, str] = {}
        redis_password = read_optional_secret(settings, "redis_password")
        if redis_password is not None:
            secrets["redis_password"] = redis_password
        if settings.needs_postgres:
            secrets["postgres_password"] = read_secret(settings, "postgres_password")
        if settings.uses_broker:
            for name in ("capital_com_api_key", "capital_com_identifier", "capital_com_password"):
                secrets[name] = read_secret(settings, name)
    except ConfigError as exc:
        log("startup_failed", level="error", reason=str(exc))
        return 2
    if redis is None or psycopg2 is None:
        log("startup_failed", level="error", reason="python3-redis and python3-psycopg2 are required")
        return 2
    log.add_secret(*secrets.values())
    bot = Bot(settings, build, log, secrets)

    received: list[str] = []

    def on_signal(signum, _frame):  # no logging here: the handler may interrupt a thread holding the log lock
        received.append(signal.Signals(signum).name)
        bot.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    Handler.bot = bot
    server = ThreadingHTTPServer(("0.0.0.0", settings.http_port), Handler)  # noqa: S104 (container port)
    server.daemon_threads = True
    threads = [
        threading.Thread(target=server.serve_forever, name="http", daemon=True),
        threading.Thread(target=bot.probe_loop, name="probe", daemon=True),
        threading.Thread(target=bot.flags_loop, name="flags", daemon=True),
    ]
    worker = threading.Thread(target=bot.run_worker, name="worker", daemon=True)
    for t in threads:
        t.start()
    log(
        "started",
        instance=settings.instance,
        trading_mode=settings.trading_mode,
        epics=list(settings.epics),
        redis=f"{settings.redis_host}:{settings.redis_port}",
        postgres=f"{settings.postgres_host}/{settings.postgres_db}" if settings.needs_postgres else None,
        market_source=("broker " + settings.broker_base_url) if settings.uses_broker else None,
        http_port=settings.http_port,
    )
    if settings.trading_mode != "paper":
        log("live_mode_approved", level="warning", detail="this reference bot still only simulates fills")
    worker.start()
    while not bot.stop.is_set():
        bot.stop.wait(1.0)
    log("stopping", signal=received[0] if received else None)
    worker.join(timeout=4.0)  # finish the in-flight entry (blocking reads wake up within 1 s)
    bot.release_lease()
    server.shutdown()
    bot.drop_pg()
    log("stopped", clean=not worker.is_alive())
    return 0
