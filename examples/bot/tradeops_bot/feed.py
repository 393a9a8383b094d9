"""market_data's quotes in broker mode: the price stream first, the REST poll where it is quiet.

Each ``MarketFeed.step()`` reads the stream for a short window and returns the quotes to publish with
how long the loop should wait before the next step. An epic whose stream has been quiet for
``stream_stale_after`` seconds (or the whole stream, down or not installed) is polled over REST every
``broker_poll_interval`` while the broker calls it TRADEABLE; the metrics say so per epic
(``tradeops_market_data_rest_fallback``), so a quiet stream never silently becomes a zero-activity
incident and never hides behind the fallback either. A market closed by the broker streams nothing and
is not a fallback: its status is refreshed over REST every ``broker_status_interval`` seconds.
"""

from __future__ import annotations

import time

from .broker import BrokerClient, BrokerError, parse_quotes
from .stream import QuoteStream, StreamError, stream_url

STREAM_READ_S = 0.25  # one loop step's window on the stream: the synthetic source's tick cadence
RECONNECT_FIRST_S, RECONNECT_CAP_S = 1.0, 30.0


def quiet_epics(epics, last_quote: dict[str, float], since: float, now: float, stale_after: float) -> list[str]:
    """The epics with no stream quote for ``stale_after`` seconds, counting from ``since`` for those that
    never had one (the stream's start: a fresh connection gets its grace period) (pure)."""
    return [e for e in epics if now - max(last_quote.get(e, since), since) >= stale_after]


class MarketFeed:
    def __init__(self, settings, secrets: dict[str, str], metrics, log, clock=time.monotonic):
        self.s = settings
        self.metrics = metrics
        self.log = log
        self.clock = clock
        self.broker = BrokerClient(
            settings.broker_base_url,
            secrets["capital_com_api_key"],
            secrets["capital_com_identifier"],
            secrets["capital_com_password"],
        )
        self.stream: QuoteStream | None = None
        self.stream_since = clock()  # when the current (or the next) connection started: the quiet clock
        self.reconnect_at = 0.0
        self.backoff = RECONNECT_FIRST_S
        self.last_quote: dict[str, float] = {}  # epic -> monotonic time of its last stream quote
        self.status: dict[str, str] = {}  # epic -> marketStatus from the last REST answer
        self.rest_at = float("-inf")
        self.falling_back: set[str] = set()
        metrics.dependency_up.set(0, dependency="broker")
        if settings.broker_stream:
            metrics.stream_up.set(0)
            for epic in settings.epics:
                metrics.stream_last_quote.init(epic=epic)
                metrics.rest_fallback.init(epic=epic)
                metrics.rest_fallbacks.init(epic=epic)

    # -- the stream -----------------------------------------------------------------------------
    def _open_stream(self, now: float) -> None:
        try:
            logins = self.broker.logins
            host, cst, token = self.broker.stream_session()
            self._session_opened(logins)
            stream = QuoteStream(stream_url(host), self.s.epics, cst, token)
            stream.open()
        except (BrokerError, StreamError) as exc:
            self._stream_lost(now, exc)
            return
        self.stream, self.stream_since, self.backoff = stream, now, RECONNECT_FIRST_S
        self.metrics.stream_up.set(1)
        self.log("stream_connected", url=stream.url, epics=list(self.s.epics))

    def _stream_lost(self, now: float, exc: Exception) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = None
        if getattr(exc, "relogin", False):
            self.broker.forget_session()
        self.metrics.stream_up.set(0)
        self.metrics.errors.inc(kind="stream")
        self.log("stream_error", level="warning", reason=str(exc), retry_in_s=round(self.backoff, 1))
        self.reconnect_at, self.backoff = now + self.backoff, min(self.backoff * 2, RECONNECT_CAP_S)

    def _read_stream(self) -> list[dict]:
        try:
            quotes = self.stream.read(STREAM_READ_S)
        except StreamError as exc:
            self._stream_lost(self.clock(), exc)
            return []
        now = self.clock()
        for q in quotes:
            self.last_quote[q["epic"]] = now
            self.metrics.stream_last_quote.set(q["ts"], epic=q["epic"])
            self.metrics.market_tradeable.set(1, epic=q["epic"])
            self.status[q["epic"]] = "TRADEABLE"
        return quotes

    # -- REST -----------------------------------------------------------------------------------
    def _session_opened(self, logins_before: int) -> None:
        if self.broker.logins != logins_before:
            self.log.add_secret(*self.broker.secrets)
            self.log("broker_session_opened", base_url=self.s.broker_base_url)

    def _poll_rest(self) -> list[dict] | None:
        """Every epic's quote over REST (TRADEABLE ones), or None when the broker failed."""
        try:
            logins = self.broker.logins
            details = self.broker.markets(self.s.epics)
            self._session_opened(logins)
        except BrokerError as exc:
            self.metrics.dependency_up.set(0, dependency="broker")
            self.metrics.errors.inc(kind="broker")
            self.log("broker_error", level="warning", reason=str(exc), status=exc.status)
            self.rest_at = self.clock() + max(exc.retry_after, 2.0) - self.s.broker_poll_interval
            return None
        self.metrics.dependency_up.set(1, dependency="broker")
        quotes = []
        for q in parse_quotes(details):
            tradeable = q["status"] == "TRADEABLE"
            self.status[q["epic"]] = q["status"]
            self.metrics.market_tradeable.set(1 if tradeable else 0, epic=q["epic"])
            if tradeable:
                quotes.append(q)
        return quotes

    def _mark_fallback(self, epics: set[str], reason: str) -> None:
        for epic in epics - self.falling_back:
            self.metrics.rest_fallback.set(1, epic=epic)
            self.metrics.rest_fallbacks.inc(epic=epic)
            self.log("market_data_fallback", level="warning", epic=epic, source="rest", reason=reason)
        for epic in self.falling_back - epics:
            self.metrics.rest_fallback.set(0, epic=epic)
            self.log("market_data_fallback_ended", epic=epic, source="stream")
        self.falling_back = epics

    # -- one step -------------------------------------------------------------------------------
    def step(self) -> tuple[list[dict], float]:
        """(quotes to publish, seconds to wait before the next step)."""
        streaming = self.s.broker_stream
        now = self.clock()
        if streaming and self.stream is None and now >= self.reconnect_at:
            self._open_stream(now)
        quotes = self._read_stream() if self.stream is not None else []
        now = self.clock()
        if self.stream is not None:
            quiet = quiet_epics(self.s.epics, self.last_quote, self.stream_since, now, self.s.stream_stale_after)
        else:
            quiet = list(self.s.epics)  # no stream (down, or switched off): REST carries every epic
        # a quiet epic the broker calls closed streams nothing by design: only its status is refreshed
        wanted = {e for e in quiet if self.status.get(e, "TRADEABLE") == "TRADEABLE"}
        every = self.s.broker_poll_interval if wanted else self.s.broker_status_interval
        if now - self.rest_at >= every:
            self.rest_at = now
            polled = self._poll_rest()
            if polled is not None:
                wanted = {e for e in wanted if self.status.get(e) == "TRADEABLE"}
                quotes += [q for q in polled if q["epic"] in wanted]
        if streaming:
            self._mark_fallback(wanted, "stream quiet" if self.stream is not None else "stream down")
        if self.stream is not None:
            return quotes, 0.0  # the next read waits on the stream itself
        due = self.rest_at + (self.s.broker_poll_interval if wanted else self.s.broker_status_interval)
        if streaming:
            due = min(due, self.reconnect_at)
        return quotes, min(max(due - self.clock(), 0.05), self.s.broker_poll_interval)
