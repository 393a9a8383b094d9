"""Capital.com's WebSocket price stream for market_data (websocket-client: Debian's python3-websocket).

The stream is driven from the market_data loop, not from a thread of its own: ``QuoteStream.read(s)``
returns the quotes that arrived within ``s`` seconds. ``open()`` connects to ``<streamingHost>/connect``
and subscribes to the epics with the REST session's tokens; ``read`` pings every ``PING_EVERY_S`` (the
broker closes a connection that has not pinged for 10 minutes). A failure raises StreamError with a
reason that never holds a token; the caller closes, polls REST meanwhile and reconnects with backoff.

Frames (CAPITAL-COM-API.md): ``{"status": "OK", "destination": "quote", "payload": {"epic", "bid",
"ofr", "timestamp", ...}}``; the subscription answer ``{"destination": "marketData.subscribe",
"payload": {"subscriptions": {"BTCUSD": "PROCESSED"}}}``; an error ``{"status": "UNAUTHORIZED",
"payload": {"errorCode": ...}}``.
"""

from __future__ import annotations

import json
import time
from contextlib import suppress

try:
    import websocket
except ImportError:  # the image installs python3-websocket; without it market_data polls REST only
    websocket = None

PING_EVERY_S = 300.0  # half the broker's 10-minute limit


class StreamError(Exception):
    """The stream failed; ``relogin`` when the broker no longer knows the session's tokens."""

    def __init__(self, message: str, relogin: bool = False):
        super().__init__(message)
        self.relogin = relogin


def stream_url(streaming_host: str) -> str:
    """``wss://api-streaming-capital.backend-capital.com/`` -> ``.../connect``."""
    return streaming_host.rstrip("/") + "/connect"


def read_frame(raw, now: float) -> tuple[str, object]:
    """One frame as ``("quote", quote)``, ``("subscriptions", {epic: answer})`` or ``("other", None)`` (pure).

    A quote has the REST poll's shape (epic, bid, offer, status, ts) with ``ts`` the local receive time,
    so ticks from either source carry the same clock. An error frame raises StreamError.
    """
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return "other", None
    if not isinstance(message, dict):
        return "other", None
    status, destination = message.get("status"), message.get("destination")
    payload = message.get("payload") if isinstance(message.get("payload"), dict) else {}
    if status not in (None, "OK"):
        code = str(payload.get("errorCode") or "no errorCode")[:120]
        raise StreamError(f"the stream answered {status} to {destination}: {code}", relogin=status == "UNAUTHORIZED")
    if destination == "quote":
        try:
            quote = {"epic": str(payload["epic"]), "bid": float(payload["bid"]), "offer": float(payload["ofr"])}
        except (KeyError, TypeError, ValueError):
            return "other", None
        return "quote", dict(quote, status="TRADEABLE", ts=now)
    if destination == "marketData.subscribe":
        return "subscriptions", dict(payload.get("subscriptions") or {})
    return "other", None


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:200]


class QuoteStream:
    def __init__(
        self, url: str, epics, cst: str, security_token: str, connect_timeout: float = 5.0, clock=time.monotonic
    ):
        self.url = url
        self.epics = list(epics)
        self._tokens = {"cst": cst, "securityToken": security_token}
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.ws = None
        self.subscriptions: dict[str, str] = {}
        self._pinged_at = 0.0
        self._correlation = 0

    def _send(self, destination: str, payload: dict | None = None) -> None:
        self._correlation += 1
        message = dict(self._tokens, destination=destination, correlationId=str(self._correlation))
        if payload is not None:
            message["payload"] = payload
        try:
            self.ws.send(json.dumps(message))
        except Exception as exc:  # websocket-client raises socket and protocol errors alike
            raise StreamError(f"cannot send {destination} on the price stream: {_reason(exc)}")

    def open(self) -> None:
        if websocket is None:
            raise StreamError("websocket-client (python3-websocket) is not installed")
        try:
            self.ws = websocket.create_connection(self.url, timeout=self.connect_timeout)
        except Exception as exc:
            raise StreamError(f"cannot connect to the price stream {self.url}: {_reason(exc)}")
        self._send("marketData.subscribe", {"epics": self.epics})
        self._pinged_at = self.clock()

    def read(self, seconds: float) -> list[dict]:
        """The quotes that arrive within ``seconds``; pings when it is due."""
        deadline = self.clock() + seconds
        quotes = []
        while True:
            now = self.clock()
            if now - self._pinged_at >= PING_EVERY_S:
                self._send("ping")
                self._pinged_at = now
            if now >= deadline:
                return quotes
            self.ws.settimeout(deadline - now)
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                return quotes
            except Exception as exc:
                raise StreamError(f"the price stream closed: {_reason(exc)}")
            if raw in ("", b""):  # websocket-client's answer to a close frame
                raise StreamError("the broker closed the price stream")
            kind, value = read_frame(raw, time.time())
            if kind == "quote":
                quotes.append(value)
            elif kind == "subscriptions":
                self.subscriptions.update(value)

    def close(self) -> None:
        if self.ws is not None:
            with suppress(Exception):  # closing a dead socket must not hide why it died
                self.ws.close()
        self.ws = None
