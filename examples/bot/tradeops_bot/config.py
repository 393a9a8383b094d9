"""Configuration: non-secret settings from the environment, secrets from files only,
feature flags from a JSON file that is re-read while running."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("market_data", "signal_engine", "risk_manager", "paper_execution", "db_writer")
SECRET_NAMES = (
    "postgres_password",
    "redis_password",
    "capital_com_api_key",
    "capital_com_identifier",
    "capital_com_password",
)
BUILD_FILE = Path(os.environ.get("BOT_BUILD_FILE", "/app/BUILD.json"))


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def build_info(path: Path = BUILD_FILE) -> dict:
    """Version and deliberate fault baked into the image at build time (BUILD.json)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    return {"version": str(data.get("version", "dev")), "fault": str(data.get("fault", "none"))}


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}")


def _float(env: dict, name: str, default: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}")


def _switch(env: dict, name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


@dataclass
class Settings:
    role: str
    redis_host: str = "redis"
    redis_port: int = 6379
    postgres_host: str = "postgres"
    postgres_port: int = 5432
    postgres_db: str = "tradeops"
    postgres_user: str = "tradeops"
    broker_base_url: str = ""
    epics: tuple[str, ...] = ("BTCUSD", "OIL_CRUDE")
    trading_mode: str = "paper"
    secrets_dir: Path = Path("/run/secrets")
    flags_file: Path = Path("/run/config/flags.json")
    http_port: int = 8000
    tick_interval: float = 0.25
    broker_poll_interval: float = 1.0
    broker_stream: bool = True  # the WebSocket price stream first, REST where it is quiet
    stream_stale_after: float = 5.0
    broker_status_interval: float = 30.0
    sma_short: int = 3
    sma_long: int = 8
    max_position: float = 2.0
    max_orders_per_minute: int = 120
    order_size: float = 1.0
    lease_ttl_ms: int = 6000
    stream_maxlen: int = 10000
    instance: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "local") + f"-{os.getpid()}")

    @property
    def needs_postgres(self) -> bool:
        return self.role in ("paper_execution", "db_writer")

    @property
    def uses_broker(self) -> bool:
        return self.role == "market_data" and bool(self.broker_base_url)


def load_settings(env: dict | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    role = env.get("BOT_ROLE", "")
    if role not in ROLES:
        raise ConfigError(f"BOT_ROLE must be one of {', '.join(ROLES)}; got {role!r}")
    mode = env.get("TRADING_MODE", "paper")
    if mode != "paper" and env.get("LIVE_TRADING_APPROVED") != "yes":
        raise ConfigError(
            f"TRADING_MODE is {mode!r}: this bot only runs with TRADING_MODE=paper "
            "unless LIVE_TRADING_APPROVED=yes is set explicitly"
        )
    epics = tuple(e.strip() for e in env.get("EPICS", "BTCUSD,OIL_CRUDE").split(",") if e.strip())
    if not epics:
        raise ConfigError("EPICS is empty; give a comma-separated list such as BTCUSD,OIL_CRUDE")
    s = Settings(
        role=role,
        redis_host=env.get("REDIS_HOST", "redis"),
        redis_port=_int(env, "REDIS_PORT", 6379),
        postgres_host=env.get("POSTGRES_HOST", "postgres"),
        postgres_port=_int(env, "POSTGRES_PORT", 5432),
        postgres_db=env.get("POSTGRES_DB", "tradeops"),
        postgres_user=env.get("POSTGRES_USER", "tradeops"),
        broker_base_url=env.get("BROKER_BASE_URL", "").rstrip("/"),
        epics=epics,
        trading_mode=mode,
        secrets_dir=Path(env.get("SECRETS_DIR", "/run/secrets")),
        flags_file=Path(env.get("FLAGS_FILE", "/run/config/flags.json")),
        http_port=_int(env, "HTTP_PORT", 8000),
        tick_interval=_float(env, "TICK_INTERVAL", 0.25),
        broker_poll_interval=_float(env, "BROKER_POLL_INTERVAL", 1.0),
        broker_stream=_switch(env, "BROKER_STREAM", True),
        stream_stale_after=_float(env, "STREAM_STALE_AFTER", 5.0),
        broker_status_interval=_float(env, "BROKER_STATUS_INTERVAL", 30.0),
        sma_short=_int(env, "SMA_SHORT", 3),
        sma_long=_int(env, "SMA_LONG", 8),
        max_position=_float(env, "RISK_MAX_POSITION", 2.0),
        max_orders_per_minute=_int(env, "RISK_MAX_ORDERS_PER_MINUTE", 120),
        order_size=_float(env, "ORDER_SIZE", 1.0),
        lease_ttl_ms=_int(env, "LEASE_TTL_MS", 6000),
    )
    if env.get("HOSTNAME"):
        s.instance = f"{env['HOSTNAME']}-{os.getpid()}"
    return s


def read_secret(settings: Settings, name: str) -> str:
    """A secret from <SECRETS_DIR>/<name>; the error names the file, never a value."""
    if name not in SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}")
    path = settings.secrets_dir / name
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"secret file {path} is missing (mount it read-only at {path})")
    except PermissionError:
        raise ConfigError(f"secret file {path} is not readable by uid {os.getuid()}")
    if not value:
        raise ConfigError(f"secret file {path} is empty")
    return value


def read_optional_secret(settings: Settings, name: str) -> str | None:
    """A secret whose file may be absent (Redis without a password: a test's bare Redis); present means used."""
    if not (settings.secrets_dir / name).exists():
        return None
    return read_secret(settings, name)


def read_flags(path: Path, previous: dict | None = None) -> tuple[dict, str | None]:
    """(flags, error). Missing file: all flags off. Unreadable or invalid JSON: keep previous."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return dict(previous or {}), f"cannot read {path}: {exc.strerror}"
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return dict(previous or {}), f"{path} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return dict(previous or {}), f"{path} must hold a JSON object, found {type(data).__name__}"
    return data, None
