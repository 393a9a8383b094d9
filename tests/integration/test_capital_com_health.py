"""tradeops.stack.capital_com_health through ansible-playbook against the Capital.com emulator.

The emulator runs as a real process on a free port (and, in the last test, as the
tradeops/capital-emulator:1.0 container). Every fault asserts the specific reason and that
no traceback reaches the user.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import requests
from conftest import ROOT, run_playbook

CREDS = {"api_key": "emulator-api-key", "identifier": "trader@example.com", "password": "emulator-password"}
TASK = "capital_com_health under test"


@pytest.fixture
def emu(emulator):  # the emulator process of tests/emulators/capital_com/emulator_fixtures.py
    emulator.reset()
    # deterministic markets whatever the weekday: oil open around the clock (BTCUSD is), and the status
    # follows the hours; tests that want a closed market give it hours that say so
    emulator.control(hours={"OIL_CRUDE": ALWAYS})
    yield emulator
    emulator.reset()


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = {**{day: ["00:00 - 00:00"] for day in DAYS}, "zone": "UTC"}


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def health(emu, check=False, env=None, verbosity=0, creds=True, **args):
    """Run the module once; returns (result dict, PlaybookRun)."""
    # the emulator listens on 127.0.0.1, which is live unless named as an emulator host
    task_args = {"base_url": emu.base_url if emu else None, "timeout": 2, "emulator_hosts": ["127.0.0.1"]}
    if creds:
        task_args.update(CREDS)
    task_args.update(args)
    task_args = {k: v for k, v in task_args.items() if v is not None}
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "tasks": [
                {
                    "name": TASK,
                    "tradeops.stack.capital_com_health": task_args,
                    "ignore_errors": True,
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            ],
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    try:
        run = run_playbook(
            handle.name, inventory="localhost,", check=check, json_output=verbosity == 0, env=env, verbosity=verbosity
        )
    finally:
        os.unlink(handle.name)
    result = run.task(TASK) if run.results else {}
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "Traceback" not in json.dumps(result)
    return result, run


def assert_fails_with(result, check, needle):
    assert result.get("failed") is True, result
    assert result["healthy"] is False
    assert result["changed"] is False
    assert needle in result["msg"], result["msg"]
    assert any(line.startswith(check + ": ") and needle in line for line in result["failures"]), result["failures"]
    assert result["checks"][check]["ok"] is False
    assert "\n" not in result["msg"]


# -- healthy --------------------------------------------------------------------------------------
def test_healthy_broker(emu, tmp_path):
    prom = tmp_path / "capital_com.prom"
    result, _ = health(emu, metrics_file=str(prom), require_tradeable=["BTCUSD"])
    assert result.get("failed") is not True, result.get("msg")
    assert result["healthy"] is True
    assert result["changed"] is False
    assert result["failures"] == []
    assert result["environment"] == "demo"
    assert result["base_url"] == emu.base_url
    names = {"time", "clock_skew", "login", "ping", "account", "market:BTCUSD", "market:OIL_CRUDE", "latency"}
    assert set(result["checks"]) == names
    assert all(c["ok"] and not c["skipped"] for c in result["checks"].values())
    assert result["checks"]["market:BTCUSD"]["market_status"] == "TRADEABLE"
    assert len(result["latency"]["samples_ms"]) == 5
    assert result["latency"]["p50_ms"] <= result["latency"]["p95_ms"] <= result["latency"]["max_ms"]
    assert result["logged_out"] is True
    assert emu.state()["active_sessions"] == 0
    assert emu.state()["counters"]["logouts"] == 1
    text = prom.read_text()
    for line in (
        "capital_com_up 1",
        'capital_com_check_ok{check="login"} 1',
        'capital_com_market_tradeable{epic="OIL_CRUDE"} 1',
        "capital_com_rate_limited_total 0",
    ):
        assert line in text.splitlines(), text
    for name in (
        'capital_com_latency_seconds{quantile="0.5"}',
        'capital_com_latency_seconds{quantile="0.95"}',
        'capital_com_latency_seconds{quantile="1"}',
        "capital_com_clock_skew_seconds ",
        "capital_com_last_check_timestamp_seconds ",
    ):
        assert name in text
    # each metric family is one contiguous group (the text format requires it)
    families = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    groups = [name for name, _ in itertools.groupby(families)]
    assert len(groups) == len(set(groups)), groups
    assert oct(prom.stat().st_mode & 0o777) == "0o644"


def test_check_mode_queries_but_writes_nothing(emu, tmp_path):
    prom = tmp_path / "capital_com.prom"
    result, _ = health(emu, check=True, metrics_file=str(prom))
    assert result["healthy"] is True
    assert result["changed"] is False
    assert result["metrics_file"] is None
    assert not prom.exists()


def test_a_market_closed_by_its_own_hours_is_reported_not_an_outage(emu, tmp_path):
    """Oil open only tomorrow (UTC): CLOSED now is the market's schedule, not an outage."""
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    emu.control(hours={"OIL_CRUDE": {DAYS[tomorrow.weekday()]: ["00:00 - 00:00"], "zone": "UTC"}})
    prom = tmp_path / "m.prom"
    result, _ = health(emu, require_tradeable=["BTCUSD"], metrics_file=str(prom))
    assert result["healthy"] is True, result.get("msg")
    oil = result["checks"]["market:OIL_CRUDE"]
    opens = iso(dt.datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=dt.UTC))
    assert (oil["ok"], oil["market_status"], oil["tradeable"], oil["should_be_open"]) == (True, "CLOSED", False, False)
    assert oil["next_open"] == opens and oil["detail"] == "CLOSED: closed by its opening hours, opens %s" % opens
    text = prom.read_text()
    assert 'capital_com_market_tradeable{epic="OIL_CRUDE"} 0' in text
    assert 'capital_com_market_should_be_open{epic="OIL_CRUDE"} 0' in text
    assert 'capital_com_market_should_be_open{epic="BTCUSD"} 1' in text


def test_a_market_that_should_be_open_and_cannot_be_traded_is_unhealthy(emu):
    """BTCUSD trades around the clock: EDITS_ONLY (no new positions) is an outage, without require_tradeable."""
    emu.control(market_status={"BTCUSD": "EDITS_ONLY"})
    result, _ = health(emu, fail_on_unhealthy=False)
    assert result["healthy"] is False
    [line] = result["failures"]
    assert line.startswith(
        "market:BTCUSD: BTCUSD: market is EDITS_ONLY but its opening hours say it should be open: mon 00:00 - 00:00;"
    ), line
    assert line.endswith("sun 00:00 - 00:00 (UTC)"), line
    btc = result["checks"]["market:BTCUSD"]
    assert btc["should_be_open"] is True and btc["next_close"] is None  # never closes


def test_hours_in_another_zone_running_past_midnight(emu):
    """A zone where it is 01:xx now, and yesterday's 22:00 - 03:00 there: open, closing at 03:00 local."""
    now = dt.datetime.now(dt.UTC)
    offset = ((1 - now.hour + 12) % 24) - 12  # hours to add to UTC for a local 01:xx, within -12..+11
    zone = "Etc/GMT%+d" % -offset if offset else "UTC"  # the Etc names count the other way
    local = now + dt.timedelta(hours=offset)
    assert local.hour == 1
    yesterday = DAYS[(local.weekday() - 1) % 7]
    emu.control(hours={"OIL_CRUDE": {yesterday: ["22:00 - 03:00"], "zone": zone}})
    result, _ = health(emu)
    assert result["healthy"] is True, result.get("msg")
    oil = result["checks"]["market:OIL_CRUDE"]
    closes = local.replace(hour=3, minute=0, second=0, microsecond=0) - dt.timedelta(hours=offset)
    assert (oil["market_status"], oil["should_be_open"], oil["next_close"]) == ("TRADEABLE", True, iso(closes))
    assert oil["next_open"] == iso(closes - dt.timedelta(hours=5) + dt.timedelta(days=7))  # the same range next week


def test_required_market_closed_fails(emu):
    emu.control(market_status={"OIL_CRUDE": "CLOSED"})
    result, _ = health(emu, require_tradeable=["BTCUSD", "OIL_CRUDE"])
    assert_fails_with(result, "market:OIL_CRUDE", "market is CLOSED but must be TRADEABLE (require_tradeable)")


def test_fail_on_unhealthy_false_reports_without_failing(emu, tmp_path):
    emu.control(market_status={"BTCUSD": "SUSPENDED"})
    prom = tmp_path / "m.prom"
    result, _ = health(emu, require_tradeable=["BTCUSD"], fail_on_unhealthy=False, metrics_file=str(prom))
    assert result.get("failed") is not True
    assert result["healthy"] is False
    assert result["failures"] == [
        "market:BTCUSD: BTCUSD: market is SUSPENDED but must be TRADEABLE (require_tradeable)"
    ]
    assert "capital_com_up 0" in prom.read_text().splitlines()


# -- faults -------------------------------------------------------------------------------------------
def test_bad_credentials(emu):
    result, _ = health(emu, password="not-the-password")  # noqa: S106 - a wrong test password
    assert_fails_with(result, "login", "POST /session: HTTP 401 error.invalid.details")
    assert result["checks"]["ping"]["skipped"] is True
    assert len(result["failures"]) == 1


def test_bad_api_key(emu):
    result, _ = health(emu, api_key="unknown-key")
    assert_fails_with(result, "login", "HTTP 401 error.invalid.api.key")


def test_server_error_on_ping_after_retries(emu):
    emu.control(faults={"GET /ping": {"status": 503}})
    result, _ = health(emu)
    assert_fails_with(result, "ping", "GET /ping: HTTP 503 error.internal: internal error on the broker side")
    assert "after 3 attempts" in result["checks"]["ping"]["detail"]


def test_forced_status_without_body(emu):
    emu.control(faults={"GET /accounts": {"status": 500, "body": "empty"}})
    result, _ = health(emu)
    assert_fails_with(
        result, "account", "GET /accounts: HTTP 500 internal server error (empty body): the broker failed"
    )


def test_rate_limited_is_reported_and_counted(emu, tmp_path):
    emu.control(faults={"GET /accounts": {"status": 429, "error_code": "error.too-many.requests"}})
    prom = tmp_path / "m.prom"
    prom.write_text("capital_com_rate_limited_total 4\n")
    result, _ = health(emu, metrics_file=str(prom))
    assert_fails_with(result, "account", "GET /accounts: HTTP 429 error.too-many.requests: rate limited by the broker")
    assert result["requests"]["rate_limited"] == 3
    lines = prom.read_text().splitlines()
    assert "capital_com_rate_limited_responses 3" in lines
    assert "capital_com_rate_limited_total 7" in lines


def test_garbage_body(emu):
    emu.control(faults={"GET /accounts": {"body": "garbage"}})
    result, _ = health(emu)
    assert_fails_with(result, "account", "GET /accounts: HTTP 200 with a body that is not JSON")


def test_truncated_json(emu):
    emu.control(faults={"GET /markets/{epic}": {"body": "truncated"}})
    result, _ = health(emu)
    assert_fails_with(result, "market:BTCUSD", "GET /markets/BTCUSD: HTTP 200 with a body that is not JSON")


def test_empty_body(emu):
    emu.control(faults={"GET /ping": {"body": "empty"}})
    result, _ = health(emu)
    assert_fails_with(result, "ping", "GET /ping: HTTP 200 with an empty body where JSON was expected")


def test_html_gateway_page(emu):
    emu.control(faults={"GET /markets/{epic}": {"body": "html502"}})
    result, _ = health(emu)
    assert_fails_with(
        result, "market:BTCUSD", "HTTP 502 bad gateway with an HTML page ('502 Bad Gateway'): a gateway or proxy"
    )


def test_hang_past_the_client_timeout(emu):
    emu.control(faults={"GET /ping": {"hang_s": 3}})
    result, _ = health(emu, timeout=1)
    assert_fails_with(result, "ping", "GET /ping: timed out after 1.0 s waiting to read the response")


def test_login_hang_is_a_timeout(emu):
    emu.control(faults={"POST /session": {"hang_s": 3}})
    result, _ = health(emu, timeout=1)
    assert_fails_with(result, "login", "POST /session: timed out after 1.0 s")


def test_expired_session_is_renewed_once(emu):
    emu.control(faults={"GET /accounts": {"expire_session": True, "count": 1}})
    result, _ = health(emu)
    assert result["healthy"] is True, result.get("msg")
    assert result["requests"]["relogins"] == 1
    assert emu.state()["counters"]["logins"] == 2


def test_sessions_that_always_expire(emu):
    emu.control(session_ttl_s=0)
    result, _ = health(emu)
    assert_fails_with(result, "ping", "HTTP 401 error.invalid.session.token: the session expired or was closed")
    assert "one re-login did not help" in result["checks"]["ping"]["detail"]


def test_unknown_epic(emu):
    result, _ = health(emu, epics=["BTCUSD", "NOPE"])
    assert_fails_with(result, "market:NOPE", "GET /markets/NOPE: HTTP 404 error.not-found.epic")


def test_stale_quote(emu):
    emu.control(quotes={"BTCUSD": {"age_s": 900}})
    result, _ = health(emu)
    assert_fails_with(result, "market:BTCUSD", "quote is stale: last update 900 s ago (max_quote_age 120 s)")


def test_missing_bid_offer(emu):
    emu.control(quotes={"OIL_CRUDE": {"bid": None, "offer": None}})
    result, _ = health(emu)
    assert_fails_with(result, "market:OIL_CRUDE", "no bid/offer in the snapshot")


def test_clock_skew(emu):
    emu.control(clock_offset_ms=5000)
    result, _ = health(emu)
    assert_fails_with(result, "clock_skew", "clock skew too large: broker clock ahead of host clock by")
    assert 4900 < result["checks"]["clock_skew"]["skew_ms"] < 5100


def test_latency_above_slo(emu):
    emu.control(latency={"GET /ping": 40})
    result, _ = health(emu, latency_slo_ms=20, latency_samples=3)
    assert_fails_with(result, "latency", "latency above the SLO: p95")
    assert result["latency"]["ok"] is False
    assert all(s >= 40 for s in result["latency"]["samples_ms"])


def test_account_disabled_and_low_balance(emu):
    emu.control(account={"status": "SUSPENDED", "available": 5.0})
    result, _ = health(emu, min_available_balance=100)
    assert_fails_with(result, "account", "account 12345678901234567 is SUSPENDED, expected ENABLED")
    assert "available balance 5.0 USD is below min_available_balance 100.0" in result["msg"]


def test_broker_unreachable(emu):
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result, _ = health(None, base_url="http://127.0.0.1:%d/api/v1" % port)
    assert_fails_with(result, "time", "GET /time: cannot connect to http://127.0.0.1:%d/api/v1" % port)
    assert result["checks"]["login"]["detail"] == "skipped: the broker is unreachable (see time)"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"environment": "live"}, "refusing to talk to the LIVE Capital.com broker"),
        ({"base_url": "https://api-capital.backend-capital.com/api/v1"}, "refusing to talk to the LIVE"),
        ({"base_url": "https://api-capital.backend-capital.com./api/v1"}, "refusing to talk to the LIVE"),
        ({"base_url": "https://API-CAPITAL.backend-capital.com/api/v1"}, "refusing to talk to the LIVE"),
        ({"base_url": "https://demo-x@api-capital.backend-capital.com/api/v1"}, "base_url must not carry user info"),
        ({"base_url": " https://api-capital.backend-capital.com/api/v1"}, "base_url must not contain white space"),
        # the emulator's own address is live unless the inventory names it as an emulator
        ({"emulator_hosts": []}, "refusing to talk to the LIVE"),
    ],
    ids=["environment-live", "live-url", "trailing-dot", "upper-case", "userinfo", "leading-space", "unnamed-ip"],
)
def test_live_guard(emu, args, message):
    result, _ = health(emu, **args)
    assert result["failed"] is True
    assert result["msg"].startswith(message), result["msg"]
    # refused before any connection: the emulator saw nothing
    assert emu.state()["counters"]["requests"] == {}


# -- the WebSocket price stream ---------------------------------------------------------------------------
def test_stream_quotes_flowing_are_timed_and_published(emu, tmp_path):
    emu.control(stream={"interval_ms": 50})
    prom = tmp_path / "capital_com.prom"
    result, _ = health(emu, stream=True, stream_timeout=3, metrics_file=str(prom))
    assert result.get("failed") is not True and result["healthy"], result.get("msg")
    check = result["checks"]["stream"]
    assert check["ok"] and check["detail"].startswith("quotes flowing: BTCUSD first quote after"), check
    assert result["stream"]["ping_ms"] is not None and not result["stream"]["dropped"]
    for epic in ("BTCUSD", "OIL_CRUDE"):
        assert result["stream"]["epics"][epic]["quotes"] >= 1
    text = prom.read_text()
    assert 'capital_com_stream_first_quote_seconds{epic="BTCUSD"}' in text
    assert 'capital_com_check_ok{check="stream"} 1' in text.splitlines()


def test_a_silent_stream_while_the_market_is_tradeable_is_unhealthy(emu):
    emu.control(stream={"silent": ["BTCUSD"]})
    result, _ = health(emu, stream=True, stream_timeout=1)
    assert result["failed"] is True and not result["checks"]["stream"]["ok"]
    assert "no quote for BTCUSD within stream_timeout 1 s while the market is TRADEABLE" in result["msg"]


def test_a_market_closed_by_its_hours_streams_nothing_and_is_healthy(emu):
    closed = {**{day: [] for day in DAYS}, "zone": "UTC"}
    emu.control(hours={"OIL_CRUDE": closed})
    result, _ = health(emu, stream=True, stream_timeout=1)
    assert result["healthy"] is True, result.get("msg")
    assert "OIL_CRUDE CLOSED (no quote expected)" in result["checks"]["stream"]["detail"]


def test_a_dropped_stream_is_unhealthy(emu):
    emu.control(stream={"drop_after_s": 0.2, "first_quote_delay_ms": 5000})
    result, _ = health(emu, stream=True, stream_timeout=3)
    assert result["failed"] is True and result["stream"]["dropped"] is True
    assert "price stream: the broker closed the price stream after" in result["msg"]


# -- order round trip on the demo account -------------------------------------------------------------
def test_order_round_trip_accepted_is_timed_closed_and_published(emu, tmp_path):
    emu.control(latency={"POST /positions": 30})
    result, _ = health(emu, stack="cdb", state_root=str(tmp_path), order_roundtrip=True)
    assert result.get("failed") is not True, result.get("msg")
    order = result["order_roundtrip"]
    assert order["ok"] and order["sent"] and order["closed"] and order["epic"] == "BTCUSD", order
    assert 30 <= order["open_ms"] <= order["slo_ms"] == 100
    assert result["checks"]["order_roundtrip"]["ok"] and result["healthy"]
    assert emu.state()["positions"] == 0
    text = (tmp_path / "cdb" / "metrics" / "capital_com_order.prom").read_text()
    assert 'capital_com_order_roundtrip_ok{epic="BTCUSD"} 1' in text.splitlines(), text
    assert 'capital_com_order_position_left_open{epic="BTCUSD"} 0' in text.splitlines(), text
    assert "capital_com_order_open_seconds{" in text and "capital_com_order_latency_slo_seconds 0.1" in text
    lock = tmp_path / "_broker" / "order-roundtrip-12345678901234567.lock"
    assert len(json.loads(lock.read_text())["trade_requests"]) == 2  # the open and the close, counted


def test_order_round_trip_rejected_is_unhealthy_with_the_reason(emu, tmp_path):
    emu.control(reject={"OIL_CRUDE": "INSUFFICIENT_FUNDS"})
    result, _ = health(
        emu, stack="cdb", state_root=str(tmp_path), order_roundtrip=True, order_roundtrip_epic="OIL_CRUDE"
    )
    assert result["failed"] is True and result["healthy"] is False
    assert "order_roundtrip: OIL_CRUDE REJECTED the order" in result["msg"] and "INSUFFICIENT_FUNDS" in result["msg"]
    text = (tmp_path / "cdb" / "metrics" / "capital_com_order.prom").read_text()
    assert 'capital_com_order_roundtrip_ok{epic="OIL_CRUDE"} 0' in text.splitlines(), text


def test_order_round_trip_is_not_sent_on_a_market_closed_by_its_hours_or_in_check_mode(emu, tmp_path):
    closed = {**{day: [] for day in DAYS}, "zone": "UTC"}
    emu.control(hours={"BTCUSD": closed})
    result, _ = health(emu, state_root=str(tmp_path), order_roundtrip=True)
    assert result["healthy"] is True, result.get("msg")
    assert (
        result["order_roundtrip"]["sent"] is False
        and "not sent: BTCUSD is CLOSED" in result["order_roundtrip"]["detail"]
    )
    emu.control(hours={"BTCUSD": None})
    result, _ = health(emu, state_root=str(tmp_path), order_roundtrip=True, check=True)
    assert result["healthy"] is True and result["order_roundtrip"]["detail"] == "not sent in check mode"
    assert emu.state()["counters"]["requests"].get("POST /positions", 0) == 0


def test_order_round_trip_is_refused_on_live_even_with_allow_live(emu, tmp_path):
    result, _ = health(emu, emulator_hosts=[], allow_live=True, order_roundtrip=True, state_root=str(tmp_path))
    assert result["failed"] is True
    assert result["msg"].startswith("order_roundtrip is refused on the live broker"), result["msg"]
    assert emu.state()["counters"]["requests"] == {}  # before any request


def test_require_tradeable_must_be_in_epics(emu):
    result, _ = health(emu, epics=["BTCUSD"], require_tradeable=["GOLD"])
    assert result["failed"] is True
    assert "require_tradeable lists GOLD, which is not in epics" in result["msg"]


def test_missing_credentials(emu):
    result, _ = health(emu, creds=False, env={"CAPITAL_COM_API_KEY": "", "CAPITAL_COM_PASSWORD": ""})
    assert_fails_with(result, "login", "missing Capital.com credentials: api_key, identifier, password")


def test_credentials_from_environment_and_encrypted_password(emu):
    env = {
        "CAPITAL_COM_API_KEY": CREDS["api_key"],
        "CAPITAL_COM_IDENTIFIER": CREDS["identifier"],
        "CAPITAL_COM_PASSWORD": CREDS["password"],
    }
    result, _ = health(emu, creds=False, env=env, encrypted_password=True)
    assert result["healthy"] is True, result.get("msg")
    assert emu.state()["counters"]["requests"]["GET /session/encryptionKey"] == 1


def test_metrics_into_the_stack_state_dir(emu, tmp_path):
    result, _ = health(emu, stack="cdb", state_root=str(tmp_path))
    assert result["metrics_file"] == str(tmp_path / "cdb" / "metrics" / "capital_com.prom")
    assert "capital_com_up 1" in (tmp_path / "cdb" / "metrics" / "capital_com.prom").read_text()


def test_metrics_dir_missing_is_one_clear_message(emu, tmp_path):
    result, _ = health(emu, metrics_file=str(tmp_path / "nope" / "m.prom"))
    assert result["failed"] is True
    assert "directory %s does not exist" % (tmp_path / "nope") in result["msg"]


# -- secrets ------------------------------------------------------------------------------------------
def test_canaries_never_leak_at_vvv(emu, tmp_path):
    canary = "CANARY" + secrets.token_hex(6)
    creds = {
        "api_key": canary + "-key",
        "identifier": canary + "-login@example.com",
        "password": canary + "-password",
    }
    emu.control(credentials=creds, token_prefix=canary + "TOKEN")
    # positive control: the emulator really hands out canary tokens for these credentials
    login = requests.post(
        emu.base_url + "/session",
        headers={"X-CAP-API-KEY": creds["api_key"]},
        json={"identifier": creds["identifier"], "password": creds["password"]},
        timeout=5,
    )
    assert login.headers["CST"].startswith(canary + "TOKEN")
    time.sleep(1.1)  # the login rate limit (1/s per key)
    prom = tmp_path / "m.prom"
    outputs = []
    # healthy, failing (garbage, forced 401 with a re-login) and check mode, all at -vvv
    for faults, check in ((None, False), ({"GET /accounts": {"body": "garbage"}}, False), (None, True)):
        emu.control(faults=faults)
        _, run = health(
            emu, verbosity=3, metrics_file=str(prom), creds=False, check=check, fail_on_unhealthy=False, **creds
        )
        assert run.rc == 0, run.output[-2000:]
        outputs.append(run.output)
    emu.control(faults=None)
    _, run = health(emu, verbosity=3, creds=False, **dict(creds, password=canary + "-wrong"))
    outputs.append(run.output)
    everything = "\n".join(outputs) + prom.read_text()
    assert "capital_com_up" in everything
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in everything  # -vvv did show the module arguments
    count = everything.count(canary)
    print("canary occurrences in stdout/stderr/textfile at -vvv: %d" % count)
    assert count == 0, [m.start() for m in re.finditer(canary, everything)][:5]


# -- the container image ----------------------------------------------------------------------------
@pytest.mark.slow
def test_module_against_the_emulator_container():
    build = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "examples" / "images" / "build.py"), "capital-emulator"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    name = "t-cap-" + secrets.token_hex(4)
    docker_run = ["docker", "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL"]
    docker_run += ["--security-opt", "no-new-privileges", "--memory", "128m", "--pids-limit", "64"]
    docker_run += ["-p", "127.0.0.1::8080", "tradeops/capital-emulator:1.0"]
    run = subprocess.run(docker_run, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    try:
        inspect = json.loads(subprocess.check_output(["docker", "inspect", name]))[0]
        assert inspect["Config"]["User"] not in ("", "0", "root")
        assert inspect["Config"]["Healthcheck"]["Test"]
        health_state = None
        for _ in range(60):
            health_state = subprocess.check_output(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name], text=True
            ).strip()
            if health_state == "healthy":
                break
            time.sleep(0.5)
        assert health_state == "healthy", subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        port = subprocess.check_output(["docker", "port", name, "8080/tcp"], text=True).split(":")[-1].strip()
        root = "http://127.0.0.1:%s" % port
        urllib.request.urlopen(
            urllib.request.Request(
                root + "/__emulator/control",
                data=json.dumps({"hours": {"OIL_CRUDE": {"zone": "UTC"}}}).encode(),  # no hours: closed
                method="POST",
            ),
            timeout=5,
        ).read()

        class Target:
            base_url = root + "/api/v1"

        result, _ = health(Target, require_tradeable=["BTCUSD"])
        assert result["healthy"] is True, result.get("msg")
        assert result["checks"]["market:OIL_CRUDE"]["market_status"] == "CLOSED"
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        assert "emulator-password" not in logs.stdout + logs.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
