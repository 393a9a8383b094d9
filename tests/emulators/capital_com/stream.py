"""The emulator's price stream: Capital.com's WebSocket API at ``ws://<emulator>/connect``.

Standard library only (RFC 6455 by hand: the handshake, masked client frames, unmasked server frames).
The messages are the documented ones (CAPITAL-COM-API.md, capital.com/api-websocket):

- ``{"destination": "marketData.subscribe", "correlationId", "cst", "securityToken", "payload": {"epics": [...]}}``
  answered ``{"status": "OK", "destination": "marketData.subscribe", "correlationId",
  "payload": {"subscriptions": {"BTCUSD": "PROCESSED"}}}`` (an unknown epic: ``"ERROR: invalid.epic"``);
- ``marketData.unsubscribe`` the same way; ``ping`` answered with an empty payload;
- ``{"status": "OK", "destination": "quote", "payload": {"epic", "product", "bid", "bidQty", "ofr", "ofrQty",
  "timestamp"}}`` every ``interval_ms`` for each subscribed epic while its market is TRADEABLE;
- a message whose tokens are not a live session: ``{"status": "UNAUTHORIZED", "payload": {"errorCode":
  "error.invalid.session.token"}}``; no ping for ``ping_timeout_s`` (600): the server closes.

Faults (control key ``stream``): ``silent`` (epics that get no quotes: a quiet stream while REST answers),
``drop_after_s`` (the server closes the connection that long after the upgrade), ``first_quote_delay_ms``
(a slow first quote), ``interval_ms`` (the quote cadence).
"""

from __future__ import annotations

import base64
import hashlib
import json
import select
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
DEFAULTS = {"interval_ms": 250, "silent": [], "drop_after_s": None, "first_quote_delay_ms": 0, "ping_timeout_s": 600}
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # noqa: S324 - the protocol's


def handshake(handler) -> bool:
    """Answer the upgrade request of a BaseHTTPRequestHandler; False (400 sent) when it is not one."""
    key = handler.headers.get("Sec-WebSocket-Key")
    if "websocket" not in (handler.headers.get("Upgrade") or "").lower() or not key:
        handler.send_response(400)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return False
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept_key(key))
    handler.end_headers()
    handler.wfile.flush()
    return True


def send_frame(sock: socket.socket, payload: bytes, opcode: int = OP_TEXT) -> None:
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    sock.sendall(head + payload)


def _read_exact(rfile, count: int) -> bytes:
    data = rfile.read(count)
    if data is None or len(data) < count:
        raise ConnectionError("the client closed the stream")
    return data


def read_frame(rfile) -> tuple[int, bytes]:
    """(opcode, payload) of one client frame (clients always mask)."""
    first, second = _read_exact(rfile, 2)
    opcode, size = first & 0x0F, second & 0x7F
    if size == 126:
        size = struct.unpack("!H", _read_exact(rfile, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _read_exact(rfile, 8))[0]
    mask = _read_exact(rfile, 4) if second & 0x80 else b"\0\0\0\0"
    data = _read_exact(rfile, size)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class StreamSession:
    """One client connection: its subscriptions, its quote schedule and the faults in force."""

    def __init__(self, emulator, handler, markets):
        self.emu, self.handler, self.markets = emulator, handler, markets
        self.sock = handler.connection
        with emulator.lock:
            emulator.counters["stream_connections"] = emulator.counters.get("stream_connections", 0) + 1
        self.subscribed: dict[str, float] = {}  # epic -> when its next quote is due (monotonic)
        self.opened = time.monotonic()
        self.last_ping = self.opened

    @property
    def cfg(self) -> dict:
        """The faults in force now: a test can silence an epic of a connection that is already open."""
        with self.emu.lock:
            return dict(DEFAULTS, **self.emu.config.get("stream", {}))

    def send(self, message: dict) -> None:
        send_frame(self.sock, json.dumps(message).encode())

    def serve(self) -> None:
        try:
            while True:
                now, cfg = time.monotonic(), self.cfg  # the faults in force, read once per turn
                if cfg["drop_after_s"] is not None and now - self.opened >= float(cfg["drop_after_s"]):
                    return  # the fault: the server goes away without a close frame
                if now - self.last_ping > float(cfg["ping_timeout_s"]):
                    send_frame(self.sock, struct.pack("!H", 1000), OP_CLOSE)
                    return
                due = min(self.subscribed.values(), default=now + 0.5)
                ready, _, _ = select.select([self.sock], [], [], max(0.0, min(due - now, 0.5)))
                if ready and not self.receive():
                    return
                self.quote_due(time.monotonic())
        except (ConnectionError, OSError):
            return
        finally:
            self.handler.close_connection = True

    def receive(self) -> bool:
        opcode, data = read_frame(self.handler.rfile)
        if opcode == OP_CLOSE:
            send_frame(self.sock, data[:2], OP_CLOSE)
            return False
        if opcode == OP_PING:
            send_frame(self.sock, data, OP_PONG)
            return True
        if opcode != OP_TEXT:
            return True
        try:
            message = json.loads(data.decode())
        except ValueError:
            self.send({"status": "ERROR", "payload": {"errorCode": "error.malformed.json"}})
            return True
        self.handle(message if isinstance(message, dict) else {})
        return True

    def handle(self, message: dict) -> None:
        destination, correlation = message.get("destination"), message.get("correlationId")
        reply = {"destination": destination, "correlationId": correlation}
        with self.emu.lock:
            try:
                self.emu.auth({"CST": message.get("cst"), "X-SECURITY-TOKEN": message.get("securityToken")})
            except Exception as exc:  # the emulator's ApiError: the stream answers in its own shape
                code = getattr(exc, "code", "error.invalid.session.token")
                self.send(dict(reply, status="UNAUTHORIZED", payload={"errorCode": code}))
                return
        if destination == "ping":
            self.last_ping = time.monotonic()
            self.send(dict(reply, status="OK", payload={}))
        elif destination in ("marketData.subscribe", "marketData.unsubscribe"):
            epics = (message.get("payload") or {}).get("epics") or []
            result = {}
            first = time.monotonic() + float(self.cfg["first_quote_delay_ms"]) / 1000.0
            for epic in epics:
                if epic not in self.markets:
                    result[epic] = "ERROR: invalid.epic"
                    continue
                result[epic] = "PROCESSED"
                if destination == "marketData.subscribe":
                    self.subscribed.setdefault(epic, first)
                else:
                    self.subscribed.pop(epic, None)
            self.send(dict(reply, status="OK", payload={"subscriptions": result}))
        else:
            self.send(dict(reply, status="ERROR", payload={"errorCode": "error.invalid.destination"}))

    def quote_due(self, now: float) -> None:
        cfg = self.cfg
        interval = float(cfg["interval_ms"]) / 1000.0
        for epic, due in list(self.subscribed.items()):
            if now < due:
                continue
            self.subscribed[epic] = now + interval
            if epic in cfg["silent"]:
                continue
            with self.emu.lock:
                snap = self.emu.market_view(epic, time.time())["snapshot"]
            if snap["marketStatus"] != "TRADEABLE" or snap.get("bid") is None:
                continue  # a closed market streams nothing
            self.send(
                {
                    "status": "OK",
                    "destination": "quote",
                    "payload": {
                        "epic": epic,
                        "product": "CFD",
                        "bid": snap["bid"],
                        "bidQty": 5000.0,
                        "ofr": snap["offer"],
                        "ofrQty": 5000.0,
                        "timestamp": int(time.time() * 1000),
                    },
                }
            )
