# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The price stream check: are quotes flowing over Capital.com's WebSocket API? (private)

``StreamCheck(url, cst, security_token, epics, timeout).run()`` connects to ``<streamingHost>/connect``
(the host the login returned), subscribes to the epics (``marketData.subscribe``), times the first
``quote`` of each from the subscription, pings as the protocol asks (``ping``, answered with an empty
payload), unsubscribes and closes. It never raises for what the stream does: the result says whether it
connected, what each subscription answered, the first-quote time and the quotes of each epic, and why it
ended early (``dropped``: the server closed the connection). Whether a missing quote is an outage is the
caller's verdict (a market closed by its hours streams nothing).

Uses websocket-client (Debian's ``python3-websocket``); ``HAS_WEBSOCKET`` says whether it is there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time
from contextlib import suppress

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._optional import optional_import

websocket, WEBSOCKET_IMPORT_ERROR = optional_import("websocket")
HAS_WEBSOCKET = websocket is not None and hasattr(websocket, "create_connection")

PING_TIMEOUT_S = 5.0


def stream_url(streaming_host):
    """``wss://api-streaming-capital.backend-capital.com/`` -> ``.../connect``."""
    return str(streaming_host).rstrip("/") + "/connect"


class StreamCheck(object):
    def __init__(self, url, cst, security_token, epics, timeout=10.0, connect_timeout=5.0, clock=time.perf_counter):
        self.url = url
        self._tokens = {"cst": cst, "securityToken": security_token}
        self.epics = list(epics)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.clock = clock
        self.correlation = 0
        quiet = dict(first_quote_ms=None, quotes=0, bid=None, ofr=None, timestamp=None)
        self.result = dict(url=url, connected=False, connect_ms=None, ping_ms=None, dropped=False, error=None)
        self.result.update(subscriptions={}, epics={epic: dict(quiet) for epic in epics})

    # -- protocol -------------------------------------------------------------------------------
    def _send(self, ws, destination, payload=None):
        self.correlation += 1
        message = dict(self._tokens, destination=destination, correlationId=str(self.correlation))
        if payload is not None:
            message["payload"] = payload
        ws.send(json.dumps(message))
        return str(self.correlation)

    def _receive(self, ws, deadline):
        """The next message, or None at the deadline."""
        remaining = deadline - self.clock()
        if remaining <= 0:
            return None
        ws.settimeout(remaining)
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            return {}
        return message if isinstance(message, dict) else {}

    def _take(self, message, started):
        """Book one message: a quote, a subscription answer or an error."""
        res = self.result
        destination, payload = message.get("destination"), message.get("payload") or {}
        if message.get("status") not in (None, "OK"):
            res["error"] = "the stream answered %s to %s: %s" % (
                message.get("status"),
                destination,
                payload.get("errorCode") or payload,
            )
        elif destination == "quote":
            entry = res["epics"].get(payload.get("epic"))
            if entry is not None:
                if entry["first_quote_ms"] is None:
                    entry["first_quote_ms"] = _rules.ms(self.clock() - started)
                entry["quotes"] += 1
                entry.update(bid=payload.get("bid"), ofr=payload.get("ofr"), timestamp=payload.get("timestamp"))
        elif destination == "marketData.subscribe":
            res["subscriptions"].update(payload.get("subscriptions") or {})

    # -- the run --------------------------------------------------------------------------------
    def run(self):
        res = self.result
        start = self.clock()
        try:
            ws = websocket.create_connection(self.url, timeout=self.connect_timeout)
        except Exception as exc:  # websocket-client raises socket, SSL and handshake errors alike
            res["error"] = "cannot connect to the price stream %s: %s" % (self.url, _reason(exc))
            return res
        res.update(connected=True, connect_ms=_rules.ms(self.clock() - start))
        try:
            self._watch(ws)
        except websocket.WebSocketConnectionClosedException:
            res["dropped"] = True
            res["error"] = "the broker closed the price stream after %.1f s" % (self.clock() - start)
        except Exception as exc:
            res["error"] = "price stream failed: %s" % _reason(exc)
        finally:
            with suppress(Exception):  # closing must never hide the outcome
                ws.close()
        return res

    def _watch(self, ws):
        res = self.result
        started = self.clock()
        self._send(ws, "marketData.subscribe", {"epics": self.epics})
        deadline = started + self.timeout
        waiting = set(self.epics)
        while waiting and res["error"] is None:
            message = self._receive(ws, deadline)
            if message is None:
                break
            self._take(message, started)
            waiting = {e for e, entry in res["epics"].items() if entry["first_quote_ms"] is None}
            rejected = {e for e, status in res["subscriptions"].items() if status != "PROCESSED"}
            waiting -= rejected
        if res["error"] is not None:
            return
        sent = self.clock()
        correlation = self._send(ws, "ping")
        ping_deadline = sent + PING_TIMEOUT_S
        while True:  # quotes keep arriving meanwhile: book them, wait for the ping's answer
            message = self._receive(ws, ping_deadline)
            if message is None:
                res["error"] = "no answer to ping within %g s" % PING_TIMEOUT_S
                return
            if message.get("destination") == "ping" and message.get("correlationId") == correlation:
                res["ping_ms"] = _rules.ms(self.clock() - sent)
                break
            self._take(message, started)
        self._send(ws, "marketData.unsubscribe", {"epics": self.epics})


def _reason(exc):
    text = str(exc) or type(exc).__name__
    return text[:200]
