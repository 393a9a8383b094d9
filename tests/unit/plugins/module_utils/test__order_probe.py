"""The order round trip over real HTTP against the emulator: accepted, rejected, slow, confirmation late,
answer lost after the order was placed, close failing, live refused, lock held, hourly budget spent."""

from __future__ import annotations

import fcntl
import os

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import (
    LIVE_URL,
    CapitalComClient,
    CapitalComError,
)
from ansible_collections.tradeops.stack.plugins.module_utils._order_probe import AccountLock, OrderRoundTrip

KEY, LOGIN, PASSWORD = "emulator-api-key", "trader@example.com", "emulator-password"
ACCOUNT = "12345678901234567"


def logged_in(emu, **kw):
    kw.setdefault("timeout", 2.0)
    client = CapitalComClient(emu.base_url, KEY, LOGIN, PASSWORD, **kw)
    client.login()
    return client


def probe(client, tmp_path, **kw):
    kw.setdefault("emulator_hosts", ["127.0.0.1"])
    kw.setdefault("confirm_timeout", 2.0)
    return OrderRoundTrip(client, kw.pop("epic", "BTCUSD"), str(tmp_path / "broker"), **kw)


def requests_to(emu, key):
    return emu.state()["counters"]["requests"].get(key, 0)


def test_an_accepted_round_trip_opens_the_smallest_position_and_closes_it(emu, tmp_path):
    client = logged_in(emu)
    res = probe(client, tmp_path).run(ACCOUNT)
    assert res["ok"] and res["sent"] and res["closed"], res
    assert res["deal_status"] == "ACCEPTED" and res["size"] == 0.001  # BTCUSD's minDealSize
    assert 0 < res["open_ms"] < 100 and 0 < res["close_ms"] < 100
    assert "opened and closed BUY 0.001 BTCUSD" in res["detail"]
    assert client.positions().data["positions"] == []
    # the position's id, not the confirmation's own dealId, is what was closed
    assert requests_to(emu, "DELETE /positions/{dealId}") == 1
    assert requests_to(emu, "POST /positions") == 1


def test_a_rejected_order_is_unhealthy_with_the_brokers_reason_and_nothing_to_close(emu, tmp_path):
    emu.control(reject={"BTCUSD": "INSUFFICIENT_FUNDS"})
    res = probe(logged_in(emu), tmp_path).run(ACCOUNT)
    assert not res["ok"] and res["sent"] and res["deal_status"] == "REJECTED"
    assert "REJECTED" in res["detail"] and "INSUFFICIENT_FUNDS" in res["detail"]
    assert requests_to(emu, "DELETE /positions/{dealId}") == 0


def test_an_order_slower_than_its_budget_fails_and_is_still_closed(emu, tmp_path):
    emu.control(latency={"POST /positions": 150})
    client = logged_in(emu)
    res = probe(client, tmp_path, slo_ms=100).run(ACCOUNT)
    assert not res["ok"] and res["closed"]
    assert res["open_ms"] >= 150 and "SLOWER than its budget" in res["detail"]
    assert client.positions().data["positions"] == []


def test_a_late_confirmation_is_waited_for_and_counted(emu, tmp_path):
    emu.control(confirm_delay_ms=200)
    res = probe(logged_in(emu), tmp_path, slo_ms=1000).run(ACCOUNT)
    assert res["ok"] and res["open_ms"] >= 200, res
    assert requests_to(emu, "GET /confirms/{dealReference}") > 2  # polled while the broker answered 404


def test_an_answer_lost_after_the_order_was_placed_is_resolved_and_the_position_closed(emu, tmp_path):
    emu.control(faults={"POST /positions": {"answer_lost_s": 1.5, "count": 1}})
    client = logged_in(emu, timeout=0.5)
    res = probe(client, tmp_path).run(ACCOUNT)
    assert not res["ok"] and res["sent"]
    assert "outcome is unknown" in res["detail"] and "WAS placed: found and closed position" in res["detail"]
    assert len(res["found"]) == 1 and res["closed"] is True
    assert requests_to(emu, "POST /positions") == 1  # never sent twice
    assert client.positions().data["positions"] == []


def test_an_unanswered_order_that_was_not_placed_is_reported_as_such(emu, tmp_path):
    emu.control(faults={"POST /positions": {"hang_s": 1.0, "count": 1}})  # dropped before the broker acted
    res = probe(logged_in(emu, timeout=0.3), tmp_path, confirm_timeout=1.0).run(ACCOUNT)
    assert not res["ok"] and res["found"] == [] and "no position opened by this probe appeared" in res["detail"]


def test_a_failed_close_is_retried_while_the_position_is_still_open(emu, tmp_path):
    emu.control(faults={"DELETE /positions/{dealId}": {"status": 503, "count": 1}})
    client = logged_in(emu)
    res = probe(client, tmp_path, sleep=lambda s: None).run(ACCOUNT)
    assert res["closed"] and res["ok"], res
    assert requests_to(emu, "DELETE /positions/{dealId}") == 2
    assert client.positions().data["positions"] == []


def test_a_close_whose_answer_was_lost_is_not_sent_again_once_the_position_is_gone(emu, tmp_path):
    emu.control(faults={"DELETE /positions/{dealId}": {"answer_lost_s": 1.0, "count": 1}})
    client = logged_in(emu, timeout=0.5)
    res = probe(client, tmp_path, sleep=lambda s: None).run(ACCOUNT)
    assert res["closed"] and res["close_ms"] is None, res
    assert "close untimed (an earlier attempt closed it)" in res["detail"]
    assert requests_to(emu, "DELETE /positions/{dealId}") == 1
    assert client.positions().data["positions"] == []


def test_a_position_that_cannot_be_closed_is_named(emu, tmp_path):
    emu.control(faults={"DELETE /positions/{dealId}": {"status": 503}})
    client = logged_in(emu)
    check = probe(client, tmp_path, sleep=lambda s: None)
    with pytest.raises(CapitalComError) as err:
        check.run(ACCOUNT)
    assert err.value.kind == "position_left_open"
    assert "POSITION LEFT OPEN" in err.value.reason and check.result["deal_id"] in err.value.reason
    assert check.result["closed"] is False


@pytest.mark.parametrize("url", [LIVE_URL, None])
def test_the_live_broker_is_refused_before_any_request(emu, tmp_path, url):
    """A live URL, and the emulator itself when it is not named as an emulator host, count as live."""
    client = CapitalComClient(url or emu.base_url, KEY, LOGIN, PASSWORD, timeout=1.0)
    with pytest.raises(CapitalComError, match="refused on the live broker"):
        probe(client, tmp_path, emulator_hosts=[]).run(ACCOUNT)
    assert client.stats["requests"] == 0


def test_a_closed_market_sends_nothing(emu, tmp_path):
    emu.control(market_status={"BTCUSD": "CLOSED"})
    res = probe(logged_in(emu), tmp_path).run(ACCOUNT)
    assert not res["sent"] and res["detail"] == "not sent: BTCUSD is CLOSED"
    assert requests_to(emu, "POST /positions") == 0


def test_a_second_round_trip_on_the_same_account_waits_for_the_first(emu, tmp_path):
    held = AccountLock(str(tmp_path / "broker"), ACCOUNT, budget=100)
    os.makedirs(os.path.dirname(held.path))
    fd = os.open(held.path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's round trip
    try:
        res = probe(logged_in(emu), tmp_path, lock_wait=0.5).run(ACCOUNT)
    finally:
        os.close(fd)
    assert not res["sent"] and "another order round trip is running on this account" in res["detail"]
    assert requests_to(emu, "POST /positions") == 0


def test_the_hourly_budget_of_trade_requests_is_kept_across_runs(emu, tmp_path):
    client = logged_in(emu)
    assert probe(client, tmp_path, trades_per_hour=3).run(ACCOUNT)["ok"]
    res = probe(client, tmp_path, trades_per_hour=3).run(ACCOUNT)
    assert not res["sent"] and "hourly budget of trade requests is spent: 2 in the last hour" in res["detail"]
    assert requests_to(emu, "POST /positions") == 1
