"""The reference bot's Capital.com market-data client against the project's emulator (real HTTP)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "examples" / "bot"))

from tradeops_bot.broker import BrokerClient, BrokerError, parse_quotes  # noqa: E402

KEY, LOGIN, PASSWORD = "emulator-api-key", "trader@example.com", "emulator-password"


def client(emu, password=PASSWORD):
    return BrokerClient(emu.base_url, KEY, LOGIN, password, timeout=2)


def test_login_then_markets_for_both_epics(emu):
    c = client(emu)
    details = c.markets(["BTCUSD", "OIL_CRUDE"])
    quotes = {q["epic"]: q for q in parse_quotes(details, now=1.0)}
    assert set(quotes) == {"BTCUSD", "OIL_CRUDE"}
    for q in quotes.values():
        assert 0 < q["bid"] <= q["offer"] and q["ts"] == 1.0 and q["status"]
    c.markets(["BTCUSD"])
    assert c.logins == 1, "the session is reused"


def test_expired_session_relogs_in_once(emu):
    emu.control(rate_limits={"login_per_second": 10})  # the real 1 login/s limit is the next test's subject
    c = client(emu)
    c.markets(["BTCUSD"])
    emu.control(expire_sessions=True)
    assert c.markets(["BTCUSD"])
    assert c.logins == 2


def test_a_relogin_within_the_login_rate_limit_is_a_readable_429(emu):
    c = client(emu)
    c.markets(["BTCUSD"])
    emu.control(expire_sessions=True)
    with pytest.raises(BrokerError, match="rate limited") as info:
        c.markets(["BTCUSD"])
    assert info.value.retry_after > 0


def test_market_status_is_passed_through(emu):
    emu.control(market_status={"OIL_CRUDE": "CLOSED"})
    quotes = {q["epic"]: q for q in parse_quotes(client(emu).markets(["BTCUSD", "OIL_CRUDE"]))}
    assert quotes["OIL_CRUDE"]["status"] == "CLOSED"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 500, "error_code": "error.internal"}, "HTTP 500 error.internal"),
        ({"status": 502, "body": "html502"}, "HTTP 502 non-JSON body"),
        ({"status": 200, "body": "garbage"}, "no marketDetails"),
        ({"status": 429, "error_code": "error.too-many.requests"}, "rate limited"),
    ],
)
def test_broker_failures_are_readable_errors_without_secrets(emu, fault, message):
    c = client(emu)
    c.login()
    tokens = list(c.secrets)
    emu.control(faults={"GET /markets": dict(fault, count=1)})
    with pytest.raises(BrokerError, match=message) as info:
        c.markets(["BTCUSD"])
    for value in tokens:
        assert value not in str(info.value)


def test_bad_credentials_and_unreachable_broker(emu):
    canary = "wrong-password-canary"
    with pytest.raises(BrokerError, match="POST /session: HTTP 401") as info:
        client(emu, canary).markets(["BTCUSD"])
    assert canary not in str(info.value)
    with pytest.raises(BrokerError, match="unreachable"):
        BrokerClient("http://127.0.0.1:9", KEY, LOGIN, PASSWORD, timeout=1).markets(["BTCUSD"])
    with pytest.raises(ValueError, match="http"):
        BrokerClient("file:///etc/passwd", KEY, LOGIN, PASSWORD)


def test_parse_quotes_skips_malformed_entries():
    details = [
        {"instrument": {"epic": "A"}, "snapshot": {"marketStatus": "TRADEABLE", "bid": 1, "offer": 2}},
        {"instrument": {"epic": "B"}, "snapshot": {"bid": None, "offer": 2}},
        {"snapshot": {}},
        "garbage",
    ]
    assert [q["epic"] for q in parse_quotes(details)] == ["A"]


def test_session_tokens_are_known_to_the_log_redactor(emu):
    prefix = "tok-canary-"
    emu.control(token_prefix=prefix)
    c = client(emu)
    c.markets(["BTCUSD"])
    tokens = [s for s in c.secrets if s.startswith(prefix)]
    assert len(tokens) == 2, "CST and X-SECURITY-TOKEN are handed to the redactor with the credentials"
    assert {KEY, LOGIN, PASSWORD} <= set(c.secrets)
