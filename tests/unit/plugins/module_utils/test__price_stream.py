"""The price stream check over a real WebSocket to the emulator: quotes flowing, a silent epic, a slow first
quote, a dropped connection, a refused session, an unknown epic, nothing listening."""

from __future__ import annotations

import socket

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import CapitalComClient
from ansible_collections.tradeops.stack.plugins.module_utils._price_stream import StreamCheck, stream_url

KEY, LOGIN, PASSWORD = "emulator-api-key", "trader@example.com", "emulator-password"
ALWAYS = {**{day: ["00:00 - 00:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}, "zone": "UTC"}


@pytest.fixture
def session(emu):
    """(stream url, cst, security token) of a logged-in session; both markets open whatever the day."""
    emu.control(hours={"OIL_CRUDE": ALWAYS}, stream={"interval_ms": 50})
    client = CapitalComClient(emu.base_url, KEY, LOGIN, PASSWORD, timeout=2.0)
    client.login()
    host, cst, token = client.stream_login()
    yield stream_url(host), cst, token
    client.logout()


def test_the_login_names_the_emulators_own_stream(session, emu):
    assert session[0] == emu.base_url.split("/api/v1")[0].replace("http://", "ws://") + "/connect"


def test_quotes_flow_for_every_epic_and_the_ping_is_answered(session, emu):
    res = StreamCheck(*session, ["BTCUSD", "OIL_CRUDE"], timeout=3.0).run()
    assert res["connected"] and res["error"] is None and not res["dropped"], res
    assert res["subscriptions"] == {"BTCUSD": "PROCESSED", "OIL_CRUDE": "PROCESSED"}
    for epic in ("BTCUSD", "OIL_CRUDE"):
        entry = res["epics"][epic]
        assert entry["quotes"] >= 1 and 0 < entry["first_quote_ms"] < 1000, (epic, entry)
        assert entry["bid"] < entry["ofr"] and entry["timestamp"] > 0
    assert res["ping_ms"] is not None and res["ping_ms"] < 1000
    assert emu.state()["counters"]["stream_connections"] == 1


def test_a_silent_epic_gets_no_first_quote_while_the_other_streams(session, emu):
    emu.control(stream={"silent": ["BTCUSD"]})
    res = StreamCheck(*session, ["BTCUSD", "OIL_CRUDE"], timeout=0.8).run()
    assert res["error"] is None, res
    assert res["epics"]["BTCUSD"]["first_quote_ms"] is None and res["epics"]["BTCUSD"]["quotes"] == 0
    assert res["epics"]["OIL_CRUDE"]["quotes"] >= 1


def test_the_first_quote_is_timed_from_the_subscription(session, emu):
    emu.control(stream={"first_quote_delay_ms": 300})
    res = StreamCheck(*session, ["BTCUSD"], timeout=3.0).run()
    assert 300 <= res["epics"]["BTCUSD"]["first_quote_ms"] < 1500, res


def test_a_dropped_stream_is_reported(session, emu):
    emu.control(stream={"drop_after_s": 0.2, "first_quote_delay_ms": 5000})
    res = StreamCheck(*session, ["BTCUSD"], timeout=3.0).run()
    assert res["dropped"] and "closed the price stream" in res["error"], res
    assert res["epics"]["BTCUSD"]["first_quote_ms"] is None


def test_tokens_that_are_not_a_session_are_refused(session):
    url, _cst, _token = session
    res = StreamCheck(url, "not-a-cst", "not-a-token", ["BTCUSD"], timeout=2.0).run()
    assert res["connected"] and "UNAUTHORIZED" in res["error"] and "error.invalid.session.token" in res["error"]
    assert "not-a-cst" not in res["error"]


def test_an_unknown_epic_is_named_by_its_subscription(session):
    res = StreamCheck(*session, ["BTCUSD", "NOPE"], timeout=2.0).run()
    assert res["subscriptions"]["NOPE"].startswith("ERROR")
    assert res["epics"]["BTCUSD"]["quotes"] >= 1 and res["error"] is None


def test_nothing_listening_is_a_readable_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    res = StreamCheck("ws://127.0.0.1:%d/connect" % port, "c", "t", ["BTCUSD"], timeout=1.0, connect_timeout=1.0).run()
    assert not res["connected"] and res["error"].startswith("cannot connect to the price stream"), res
