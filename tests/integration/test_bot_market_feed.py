"""The reference bot's market feed (examples/bot: stream first, REST fallback) against the emulator process.

Real HTTP and a real WebSocket to tests/emulators/capital_com; the bot's own classes (MarketFeed, its
metrics and logger) run in this process. The whole bot in its image reads the stream in
test_reference_stack_smoke.py.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "bot"))

from tradeops_bot.app import Logger
from tradeops_bot.config import load_settings
from tradeops_bot.feed import MarketFeed
from tradeops_bot.metrics import BotMetrics

SECRETS = {
    "capital_com_api_key": "emulator-api-key",
    "capital_com_identifier": "trader@example.com",
    "capital_com_password": "emulator-password",
}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = {**{day: ["00:00 - 00:00"] for day in DAYS}, "zone": "UTC"}
CLOSED = {**{day: [] for day in DAYS}, "zone": "UTC"}


@pytest.fixture
def emu(emulator):
    emulator.reset()
    emulator.control(hours={"OIL_CRUDE": ALWAYS}, stream={"interval_ms": 50})  # whatever the weekday
    yield emulator
    emulator.reset()


class Feed:
    """A MarketFeed with its metrics and log lines at hand, run step by step as market_data does."""

    def __init__(self, emu, **env):
        settings = load_settings(
            {
                "BOT_ROLE": "market_data",
                "BROKER_BASE_URL": emu.base_url,
                "BROKER_POLL_INTERVAL": "0.2",
                "STREAM_STALE_AFTER": "0.6",
                "BROKER_STATUS_INTERVAL": "0.5",
                **env,
            }
        )
        self.out = io.StringIO()
        self.metrics = BotMetrics()
        self.feed = MarketFeed(settings, SECRETS, self.metrics, Logger("market_data", "test", self.out))
        self.ticks: list[dict] = []

    def run(self, seconds: float) -> list[dict]:
        """The quotes published over ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            quotes, wait = self.feed.step()
            got += quotes
            time.sleep(wait)
        self.ticks += got
        return got

    def gauge(self, name: str, **labels) -> float:
        return getattr(self.metrics, name).value(**labels)

    def events(self, name: str) -> list[dict]:
        return [r for r in map(json.loads, self.out.getvalue().splitlines()) if r["event"] == name]

    def close(self):
        if self.feed.stream is not None:
            self.feed.stream.close()


@pytest.fixture
def feed(emu):
    made = []

    def make(**env):
        made.append(Feed(emu, **env))
        return made[-1]

    yield make
    for f in made:
        f.close()


def count(quotes, epic):
    return sum(1 for q in quotes if q["epic"] == epic)


def test_quotes_come_from_the_stream_with_rest_only_for_status(emu, feed):
    f = feed()
    quotes = f.run(1.5)
    assert count(quotes, "BTCUSD") >= 10 and count(quotes, "OIL_CRUDE") >= 10, "50 ms cadence for 1.5 s"
    assert f.gauge("stream_up") == 1
    for epic in ("BTCUSD", "OIL_CRUDE"):
        assert f.gauge("rest_fallback", epic=epic) == 0
        assert f.gauge("stream_last_quote", epic=epic) > time.time() - 2
        assert f.gauge("market_tradeable", epic=epic) == 1
    state = emu.state()["counters"]
    assert state["stream_connections"] == 1 and state["logins"] == 1, state
    assert f.events("stream_connected") and not f.events("market_data_fallback")
    assert f.gauge("dependency_up", dependency="broker") == 1, "the status poll reached REST"


def test_a_quiet_epic_falls_back_to_rest_and_comes_back(emu, feed):
    f = feed()
    f.run(0.8)
    emu.control(stream={"silent": ["BTCUSD"], "interval_ms": 50})
    f.run(0.2)
    stream_ts = f.gauge("stream_last_quote", epic="BTCUSD")
    quiet = f.run(2.0)
    assert f.gauge("rest_fallback", epic="BTCUSD") == 1 and f.gauge("rest_fallback", epic="OIL_CRUDE") == 0
    assert f.gauge("rest_fallbacks", epic="BTCUSD") == 1
    assert f.gauge("stream_last_quote", epic="BTCUSD") == stream_ts, "freshness is the stream's, not REST's"
    assert count(quiet, "BTCUSD") >= 3, "REST (every 0.2 s) carries BTCUSD once it is 0.6 s quiet"
    assert count(quiet, "OIL_CRUDE") >= 20, "OIL_CRUDE stays on the stream"
    (event,) = f.events("market_data_fallback")
    assert event["epic"] == "BTCUSD" and event["reason"] == "stream quiet" and event["level"] == "warning"
    emu.control(stream={"silent": [], "interval_ms": 50})
    f.run(1.0)
    assert f.gauge("rest_fallback", epic="BTCUSD") == 0
    assert [e["epic"] for e in f.events("market_data_fallback_ended")] == ["BTCUSD"]


def test_a_dropped_stream_reconnects_and_rest_covers_the_gap(emu, feed):
    f = feed()
    f.run(0.5)
    emu.control(stream={"drop_after_s": 0.3, "interval_ms": 50})
    f.run(3.0)
    assert emu.state()["counters"]["stream_connections"] >= 2, "the feed reconnected"
    assert f.gauge("errors", kind="stream") >= 1
    assert {e["reason"] for e in f.events("market_data_fallback")} == {"stream down"}
    assert {e["epic"] for e in f.events("market_data_fallback")} == {"BTCUSD", "OIL_CRUDE"}
    emu.control(stream={"drop_after_s": None, "interval_ms": 50})
    f.run(2.5)  # the backoff doubled while drops continued; it reconnects and stays
    assert f.gauge("stream_up") == 1
    assert f.gauge("rest_fallback", epic="BTCUSD") == 0 and f.gauge("rest_fallback", epic="OIL_CRUDE") == 0


def test_a_market_closed_by_the_broker_streams_nothing_and_is_no_fallback(emu, feed):
    emu.control(hours={"OIL_CRUDE": CLOSED})
    f = feed()
    quotes = f.run(1.5)
    assert count(quotes, "OIL_CRUDE") == 0 and count(quotes, "BTCUSD") >= 10
    assert f.gauge("market_tradeable", epic="OIL_CRUDE") == 0
    assert f.gauge("rest_fallback", epic="OIL_CRUDE") == 0, "closed is not quiet"
    assert not f.events("market_data_fallback")


def test_stream_switched_off_polls_rest_only(emu, feed):
    f = feed(BROKER_STREAM="off")
    quotes = f.run(1.0)
    assert 3 <= count(quotes, "BTCUSD") <= 7, "one REST poll every 0.2 s"
    assert "stream_connections" not in emu.state()["counters"] or emu.state()["counters"]["stream_connections"] == 0
    samples = [line for line in f.metrics.render().splitlines() if not line.startswith("#")]
    assert not [line for line in samples if "stream" in line], "no stream, no stream metrics"


def test_the_session_tokens_never_reach_the_log(emu, feed):
    f = feed()
    f.run(0.5)
    emu.control(stream={"drop_after_s": 0.1, "interval_ms": 50})
    f.run(1.0)
    text = f.out.getvalue()
    assert f.feed.broker.secrets and not any(secret in text for secret in f.feed.broker.secrets)
