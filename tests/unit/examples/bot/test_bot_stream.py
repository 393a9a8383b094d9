"""The reference bot's price-stream frames and its quiet-epic rule (pure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "examples" / "bot"))

from tradeops_bot.feed import quiet_epics
from tradeops_bot.stream import StreamError, read_frame, stream_url


def frame(**message) -> str:
    return json.dumps(message)


def test_a_quote_frame_becomes_a_tick_in_the_rest_poll_shape():
    raw = frame(
        status="OK",
        destination="quote",
        payload={"epic": "BTCUSD", "product": "CFD", "bid": 67000.5, "bidQty": 1, "ofr": 67030.5, "timestamp": 1},
    )
    assert read_frame(raw, now=12.5) == (
        "quote",
        {"epic": "BTCUSD", "bid": 67000.5, "offer": 67030.5, "status": "TRADEABLE", "ts": 12.5},
    )


def test_subscription_answers_and_other_frames():
    raw = frame(
        status="OK",
        destination="marketData.subscribe",
        correlationId="1",
        payload={"subscriptions": {"BTCUSD": "PROCESSED", "NOPE": "ERROR: invalid.epic"}},
    )
    assert read_frame(raw, 0) == ("subscriptions", {"BTCUSD": "PROCESSED", "NOPE": "ERROR: invalid.epic"})
    assert read_frame(frame(status="OK", destination="ping", payload={}), 0) == ("other", None)
    for junk in ("not json", "[1, 2]", frame(status="OK", destination="quote", payload={"epic": "X", "bid": "?"})):
        assert read_frame(junk, 0) == ("other", None)


def test_an_error_frame_raises_and_says_whether_to_log_in_again():
    raw = frame(status="UNAUTHORIZED", destination="ping", payload={"errorCode": "error.invalid.session.token"})
    with pytest.raises(StreamError, match="UNAUTHORIZED to ping: error.invalid.session.token") as err:
        read_frame(raw, 0)
    assert err.value.relogin
    with pytest.raises(StreamError) as err:
        read_frame(frame(status="ERROR", destination="x", payload={}), 0)
    assert not err.value.relogin


def test_stream_url():
    assert stream_url("wss://api-streaming-capital.backend-capital.com/") == (
        "wss://api-streaming-capital.backend-capital.com/connect"
    )


@pytest.mark.parametrize(
    ("last_quote", "since", "now", "quiet"),
    [
        ({}, 100.0, 104.0, []),  # a fresh connection's grace period
        ({}, 100.0, 105.0, ["A", "B"]),  # nothing at all for 5 s
        ({"A": 104.0}, 100.0, 106.0, ["B"]),
        ({"A": 90.0, "B": 99.0}, 100.0, 104.9, []),  # quotes of an older connection count from the new one
        ({"A": 101.0, "B": 110.0}, 100.0, 111.0, ["A"]),
    ],
)
def test_quiet_epics(last_quote, since, now, quiet):
    assert quiet_epics(["A", "B"], last_quote, since, now, stale_after=5.0) == quiet
