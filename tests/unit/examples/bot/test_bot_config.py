"""Configuration, secrets, feature flags, logging and health logic of the reference bot (pure)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "examples" / "bot"))

from tradeops_bot.app import Bot, Logger, bars_from_ticks, entry_problem, stream_id
from tradeops_bot.config import ConfigError, build_info, load_settings, read_flags, read_optional_secret, read_secret


def test_settings_defaults_and_overrides():
    s = load_settings({"BOT_ROLE": "paper_execution"})
    assert (s.redis_host, s.redis_port, s.postgres_host, s.trading_mode) == ("redis", 6379, "postgres", "paper")
    assert s.epics == ("BTCUSD", "OIL_CRUDE") and s.needs_postgres and not s.uses_broker
    s = load_settings(
        {
            "BOT_ROLE": "market_data",
            "EPICS": " OIL_CRUDE ,",
            "REDIS_PORT": "6380",
            "BROKER_BASE_URL": "http://e/api/v1/",
        }
    )
    assert s.epics == ("OIL_CRUDE",) and s.redis_port == 6380
    assert s.uses_broker and s.broker_base_url == "http://e/api/v1" and not s.needs_postgres
    assert s.broker_stream and s.stream_stale_after == 5.0, "the price stream is on by default"
    assert not load_settings({"BOT_ROLE": "market_data", "BROKER_STREAM": " OFF"}).broker_stream


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BOT_ROLE must be one of"),
        ({"BOT_ROLE": "trader"}, "BOT_ROLE must be one of"),
        ({"BOT_ROLE": "db_writer", "TRADING_MODE": "live"}, "LIVE_TRADING_APPROVED=yes"),
        ({"BOT_ROLE": "db_writer", "TRADING_MODE": "live", "LIVE_TRADING_APPROVED": "true"}, "LIVE_TRADING_APPROVED"),
        ({"BOT_ROLE": "db_writer", "REDIS_PORT": "abc"}, "REDIS_PORT must be an integer"),
        ({"BOT_ROLE": "db_writer", "EPICS": " , "}, "EPICS is empty"),
        ({"BOT_ROLE": "market_data", "BROKER_STREAM": "yes"}, "BROKER_STREAM must be on or off, got 'yes'"),
    ],
)
def test_wrong_settings_are_refused_with_the_reason(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_live_mode_needs_the_explicit_approval():
    s = load_settings({"BOT_ROLE": "db_writer", "TRADING_MODE": "live", "LIVE_TRADING_APPROVED": "yes"})
    assert s.trading_mode == "live"


def test_secrets_come_from_files_and_errors_never_show_values(tmp_path):
    s = load_settings({"BOT_ROLE": "db_writer", "SECRETS_DIR": str(tmp_path), "POSTGRES_PASSWORD": "from-env"})
    with pytest.raises(ConfigError, match="postgres_password is missing"):
        read_secret(s, "postgres_password")
    (tmp_path / "postgres_password").write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret(s, "postgres_password")
    (tmp_path / "postgres_password").write_text("s3cr3t-value\n")
    assert read_secret(s, "postgres_password") == "s3cr3t-value"
    with pytest.raises(ConfigError, match="unknown secret"):
        read_secret(s, "../etc/passwd")


def test_the_redis_password_is_used_when_its_file_is_there(tmp_path):
    s = load_settings({"BOT_ROLE": "signal_engine", "SECRETS_DIR": str(tmp_path)})
    assert read_optional_secret(s, "redis_password") is None
    (tmp_path / "redis_password").write_text("")
    with pytest.raises(ConfigError, match="redis_password is empty"):
        read_optional_secret(s, "redis_password")  # there but empty is a mistake, not "no password"
    (tmp_path / "redis_password").write_text("r3dis-value\n")
    assert read_optional_secret(s, "redis_password") == "r3dis-value"


def test_flags_missing_means_off_and_invalid_keeps_the_previous_flags(tmp_path):
    path = tmp_path / "flags.json"
    assert read_flags(path) == ({}, None)
    path.write_text('{"pause_new_orders": true}')
    flags, error = read_flags(path)
    assert flags == {"pause_new_orders": True} and error is None
    path.write_text('{"pause_new_orders": tru')
    kept, error = read_flags(path, flags)
    assert kept == flags and "not valid JSON" in error
    path.write_text("[1]")
    kept, error = read_flags(path, flags)
    assert kept == flags and "JSON object" in error
    path.write_text("")
    assert read_flags(path, flags) == ({}, None)


def test_build_info_is_baked_into_the_image(tmp_path):
    path = tmp_path / "BUILD.json"
    assert build_info(path) == {"version": "dev", "fault": "none"}
    path.write_text(json.dumps({"version": "1.1.0", "fault": "unhealthy"}))
    assert build_info(path) == {"version": "1.1.0", "fault": "unhealthy"}


def test_logger_writes_json_lines_and_redacts_secrets():
    out = io.StringIO()
    log = Logger("paper_execution", "1.0.0", stream=out)
    plain, quoted = "hunter2-secret", 'quo"te-secret'
    log.add_secret(plain, quoted, "ab")  # too short values are ignored, not redacted
    log("login", token=plain, nested={"x": quoted}, short="ab")
    record = json.loads(out.getvalue())
    assert record["event"] == "login" and record["role"] == "paper_execution" and record["version"] == "1.0.0"
    assert {record["token"], record["nested"]["x"]} == {"***"} and record["short"] == "ab"
    assert out.getvalue().count("\n") == 1


def test_one_minute_bars_from_ticks():
    ticks = [
        {"epic": "BTCUSD", "mid": "10", "ts": "120.5"},
        {"epic": "BTCUSD", "mid": "12", "ts": "130"},
        {"epic": "BTCUSD", "mid": "9", "ts": "150"},
        {"epic": "BTCUSD", "mid": "11", "ts": "179.9"},
        {"epic": "BTCUSD", "mid": "20", "ts": "180"},
        {"epic": "OIL_CRUDE", "mid": "75", "ts": "121"},
    ]
    bars = bars_from_ticks(ticks)
    assert bars[("BTCUSD", 120)] == {"open": 10, "high": 12, "low": 9, "close": 11, "ticks": 4}
    assert bars[("BTCUSD", 180)]["ticks"] == 1
    assert bars[("OIL_CRUDE", 120)]["close"] == 75


def test_stream_ids_compare_numerically():
    assert stream_id("1795397048758-10") > stream_id("1795397048758-9")
    assert stream_id("999-0") < stream_id("1000-0")


def health_of(role: str, fault: str = "none", deps: dict | None = None):
    log = Logger(role, "1.0.0", io.StringIO())
    bot = Bot(load_settings({"BOT_ROLE": role}), {"version": "1.0.0", "fault": fault}, log, {})
    for name, state in (deps or {}).items():
        bot.set_dep(name, *state)
    return bot.health()


def test_health_is_503_with_the_reason_when_a_dependency_is_down():
    status, body = health_of("paper_execution", deps={"redis": (True, "ok"), "postgres": (False, "pg down: refused")})
    assert status == 503 and body["status"] == "unhealthy" and "pg down: refused" in body["reasons"]
    assert body["role"] == "paper_execution" and body["version"] == "1.0.0"
    status, body = health_of("paper_execution", deps={"redis": (True, "ok"), "postgres": (True, "ok")})
    assert status == 200 and body["status"] == "ok" and body["lease_held"] is False


def test_roles_without_postgres_do_not_depend_on_it():
    status, body = health_of("signal_engine", deps={"redis": (True, "ok")})
    assert status == 200 and set(body["dependencies"]) == {"redis"}
    assert "lease_held" not in body and "orders_paused" not in body


def test_db_writer_reports_its_lease_but_no_order_pause():
    status, body = health_of("db_writer", deps={"redis": (True, "ok"), "postgres": (True, "ok")})
    assert status == 200 and body["lease_held"] is False and "orders_paused" not in body


def test_the_deliberately_broken_build_is_unhealthy():
    status, body = health_of("signal_engine", fault="unhealthy", deps={"redis": (True, "ok")})
    assert status == 503 and "deliberately broken build" in body["reasons"][0]


@pytest.mark.parametrize(
    ("stream", "fields", "problem"),
    [
        ("tradeops:ticks", {"epic": "BTCUSD", "mid": "1.5", "ts": "1"}, None),
        ("tradeops:ticks", None, "trimmed"),
        ("tradeops:ticks", {}, "trimmed"),
        ("tradeops:ticks", {"epic": "BTCUSD", "ts": "1"}, "missing fields ['mid']"),
        ("tradeops:signals", {"signal_id": "s", "epic": "E", "side": "hold", "price": "1", "ts": "1"}, "unknown side"),
        (
            "tradeops:orders",
            {"deal_id": "d", "signal_id": "s", "epic": "E", "side": "buy", "size": "x", "price": "1"},
            "size is not a number",
        ),
    ],
)
def test_stream_entries_that_cannot_be_processed_are_named(stream, fields, problem):
    found = entry_problem(stream, fields)
    assert found is None if problem is None else problem in found
