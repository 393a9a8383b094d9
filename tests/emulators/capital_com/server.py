#!/usr/bin/env python3
"""A local emulator of the Capital.com REST API (demo host), for tests and the local stack.

Faithful to ../../../../shared/CAPITAL-COM-API.md and to the responses recorded in
Capital.com's official Postman collection: same paths under ``/api/v1``, same
headers (``CST`` / ``X-SECURITY-TOKEN`` on login and echoed on authenticated
responses), same bodies and ``{"errorCode": ...}`` errors, session expiry after
10 minutes of inactivity, the encryption-key login flow (RSA PKCS#1 v1.5),
10 requests/s per session and 1 ``POST /session``/s per API key (429
``error.too-many.requests``), trade requests at most one per 0.1 s and 1000/hour,
markets with opening hours, moving prices and a broker-local ``updateTime``.

Standard library + ``cryptography`` only, so it runs from the project's venv and
in a Debian container with ``python3-cryptography``:

    python3 tests/emulators/capital_com/server.py --host 127.0.0.1 --port 0
    # prints "capital-com-emulator listening on http://127.0.0.1:<port>/api/v1" and one
    # JSON line {"port": <port>, "base_url": ...} on stdout, then serves until SIGTERM/SIGINT.

Test credentials default to api key ``emulator-api-key``, identifier
``trader@example.com`` and password ``emulator-password`` (override with
--api-key/--identifier/--password, the CAPITAL_EMULATOR_* environment variables,
or at runtime with the control endpoint; the control endpoint keeps them out of
``ps``).

Runtime control (tests only; not part of the broker API): see README.md.

    POST /__emulator/control   JSON object, every key optional, merged into the state
    POST /__emulator/reset     back to the start-up configuration
    GET  /__emulator/state     counters (requests per endpoint, logins, 429s, sessions)
    GET  /__emulator/health    200 {"status": "ok"} (container HEALTHCHECK)
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import math
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import stream

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    HAS_CRYPTO = True
except ImportError:  # encrypted-password logins answer 500 then
    HAS_CRYPTO = False

_rng = random.Random()  # prices and quote ages: simulation, not security  # noqa: S311

API_PREFIX = "/api/v1"
SESSION_TTL_S = 600.0
MARKET_STATUSES = ("TRADEABLE", "CLOSED", "EDITS_ONLY", "OFFLINE", "ON_AUCTION", "ON_AUCTION_NO_EDITS", "SUSPENDED")

HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
GARBAGE = b"\x8b\x00\xffOK<<not json>>\x00\x17}{"

# Headers every recorded response carries (besides Date / Content-Type / Content-Length).
COMMON_HEADERS = (
    ("Vary", "Origin"),
    ("Vary", "Access-Control-Request-Method"),
    ("Vary", "Access-Control-Request-Headers"),
    ("Content-Security-Policy", "connect-src 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("X-Frame-Options", "DENY"),
)


def _hours(spec):
    return {day: list(spec.get(day, [])) for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


ALWAYS_OPEN = _hours({d: ["00:00 - 00:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
# WTI: daily break 21:00-22:00 UTC, closed from Friday 21:00 to Sunday 22:00 UTC.
OIL_HOURS = _hours(
    {
        "mon": ["00:00 - 21:00", "22:00 - 00:00"],
        "tue": ["00:00 - 21:00", "22:00 - 00:00"],
        "wed": ["00:00 - 21:00", "22:00 - 00:00"],
        "thu": ["00:00 - 21:00", "22:00 - 00:00"],
        "fri": ["00:00 - 21:00"],
        "sun": ["22:00 - 00:00"],
    }
)
INDEX_HOURS = _hours({d: ["13:30 - 20:00"] for d in ("mon", "tue", "wed", "thu", "fri")})


# epic -> instrument definition; prices move around `price` (deterministic in time + noise).
def _market(name, symbol, kind, price, spread, decimals, hours, min_size, margin):
    return {"name": name, "symbol": symbol, "type": kind, "price": price, "spread": spread,
            "decimals": decimals, "hours": hours, "min_size": min_size, "margin": margin}  # fmt: skip


GOLD_HOURS = _hours({d: ["00:00 - 21:00", "22:00 - 00:00"] for d in ("mon", "tue", "wed", "thu")})
MARKETS = {
    "BTCUSD": _market("Bitcoin/USD", "BTCUSD", "CRYPTOCURRENCIES", 67250.0, 30.0, 2, ALWAYS_OPEN, 0.001, 50),
    "ETHUSD": _market("Ethereum/USD", "ETHUSD", "CRYPTOCURRENCIES", 3450.0, 2.5, 2, ALWAYS_OPEN, 0.01, 50),
    "OIL_CRUDE": _market("US Crude Oil", "Oil - Crude", "COMMODITIES", 78.45, 0.03, 2, OIL_HOURS, 1.0, 10),
    "GOLD": _market("Gold", "Gold", "COMMODITIES", 2325.0, 0.3, 2, GOLD_HOURS, 0.01, 5),
    "US500": _market("US 500", "US500", "INDICES", 5230.0, 0.6, 1, INDEX_HOURS, 0.1, 5),
}


def now_ms():
    return int(time.time() * 1000)


def iso_ms(ts):
    """Broker timestamp format: 2022-04-06T13:17:42.113 (no zone)."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d" % (d.microsecond // 1000)


def market_open(hours, ts):
    """Whether the opening hours (in their ``zone``, default UTC) contain the instant ``ts``.

    An end of 00:00 is midnight at the end of the day; a range ending before it starts runs into the next
    day, so yesterday's ranges are looked at too. (The broker's model, written apart from the collection's
    _market_hours on purpose: a test compares two readings of the documented format, not one with itself.)
    """
    zone = hours.get("zone") or "UTC"
    d = dt.datetime.fromtimestamp(ts, dt.UTC if zone == "UTC" else ZoneInfo(zone))
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    minute = d.hour * 60 + d.minute
    for back in (0, 1):
        for span in hours.get(days[(d.weekday() - back) % 7], []):
            start, end = (int(x[:2]) * 60 + int(x[3:]) for x in span.split(" - "))
            end = end + 24 * 60 if end <= start else end
            if start <= minute + back * 24 * 60 < end:
                return True
    return False


class ApiError(Exception):
    def __init__(self, status, code):
        super().__init__(code)
        self.status = status
        self.code = code


class Emulator:
    """All state of the broker; every handler thread goes through ``lock``."""

    def __init__(self, api_key, identifier, password, account_id="12345678901234567"):
        self.lock = threading.RLock()
        self.initial = {"api_key": api_key, "identifier": identifier, "password": password}
        self.account_id = account_id
        self.private_key = None
        if HAS_CRYPTO:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.reset()

    # -- configuration -----------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.config = {
                "credentials": dict(self.initial),
                "latency_ms": 0.0,  # added to every API response
                "latency": {},  # "GET /ping" -> ms, per endpoint
                "faults": {},  # "GET /ping" | "*" -> fault (see README.md)
                "market_status": {},  # epic -> forced marketStatus (else opening hours)
                "hours": {},  # epic -> openingHours {"mon": [...], ..., "zone": ...} replacing the instrument's
                "quotes": {},  # epic -> {"bid": .., "offer": .., "age_s": ..}
                "reject": {},  # epic -> the reason every new position on it is REJECTED with
                "confirm_delay_ms": 0,  # a deal's confirmation is 404 for this long after the request
                "clock_offset_ms": 0,  # added to serverTime
                "tz_offset_hours": 2,  # broker-local updateTime = UTC + this (as recorded)
                "session_ttl_s": SESSION_TTL_S,
                "token_prefix": "",  # canary tokens: every CST / X-SECURITY-TOKEN starts with it
                "account": {"status": "ENABLED", "balance": 10000.0, "deposit": 10000.0, "available": 9850.5},
                "rate_limits": {"enabled": True, "per_second": 10, "login_per_second": 1},
                "stream": dict(stream.DEFAULTS),  # the WebSocket price stream (stream.py)
            }
            self.sessions = {}  # cst -> session dict
            self.enc_timestamps = deque(maxlen=64)
            self.login_times = {}  # api key -> deque of login times
            self.trade_times = deque()
            self.positions = {}
            self.orders = {}
            self.confirms = {}
            self.counters = {"requests": {}, "logins": 0, "logouts": 0, "rate_limited": 0, "faults_served": 0}

    def control(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, "control body must be a JSON object")
        with self.lock:
            cfg = self.config
            for key, value in body.items():
                if key == "expire_sessions":
                    if value:
                        for sess in self.sessions.values():
                            sess["last_used"] = -1e12
                elif key in ("faults", "latency", "market_status", "quotes", "hours", "reject"):
                    if value is None:
                        cfg[key] = {}
                        continue
                    for k, v in value.items():
                        if v is None:
                            cfg[key].pop(k, None)
                        else:
                            if key == "market_status" and v not in MARKET_STATUSES:
                                raise ApiError(400, "unknown marketStatus %r" % v)
                            if key == "faults":
                                v = dict(v)
                                v.setdefault("count", None)
                            cfg[key][k] = v
                elif key in ("credentials", "account", "rate_limits", "stream"):
                    cfg[key].update(value)
                elif key in cfg:
                    cfg[key] = value
                else:
                    raise ApiError(400, "unknown control key %r" % key)
            return self.snapshot()

    def snapshot(self):
        with self.lock:
            cfg = copy.deepcopy(self.config)
            cfg["credentials"] = dict.fromkeys(cfg["credentials"], "<set>")
            return {
                "config": cfg,
                "counters": copy.deepcopy(self.counters),
                "active_sessions": sum(1 for s in self.sessions.values() if self._alive(s)),
                "positions": len(self.positions),
            }

    # -- faults --------------------------------------------------------------------------
    def take_fault(self, key):
        with self.lock:
            for name in (key, "*"):
                fault = self.config["faults"].get(name)
                if fault is None:
                    continue
                if fault.get("count") is not None:
                    if fault["count"] <= 0:
                        self.config["faults"].pop(name, None)
                        continue
                    fault["count"] -= 1
                self.counters["faults_served"] += 1
                return dict(fault)
            return None

    def latency_for(self, key):
        with self.lock:
            return (float(self.config["latency_ms"]) + float(self.config["latency"].get(key, 0))) / 1000.0

    # -- sessions ------------------------------------------------------------------------
    def _alive(self, sess):
        return time.monotonic() - sess["last_used"] < float(self.config["session_ttl_s"])

    def _token(self):
        return self.config["token_prefix"] + secrets.token_hex(16)

    def new_session(self):
        cst, sec = self._token(), self._token()
        self.sessions[cst] = {"cst": cst, "sec": sec, "last_used": time.monotonic(), "hits": deque()}
        return self.sessions[cst]

    def auth(self, headers):
        cst, sec = headers.get("CST"), headers.get("X-SECURITY-TOKEN")
        if not cst:
            raise ApiError(400, "error.null.client.token")
        if not sec:
            raise ApiError(400, "error.null.security.token")
        sess = self.sessions.get(cst)
        if sess is None or sess["sec"] != sec or not self._alive(sess):
            if sess is not None:
                self.sessions.pop(cst, None)
            raise ApiError(401, "error.invalid.session.token")
        sess["last_used"] = time.monotonic()
        return sess

    def rate_check(self, window_hits, limit, now):
        """Sliding one-second window; raises 429 when ``limit`` is exceeded."""
        if not self.config["rate_limits"].get("enabled", True):
            return
        while window_hits and now - window_hits[0] >= 1.0:
            window_hits.popleft()
        if len(window_hits) >= limit:
            self.counters["rate_limited"] += 1
            raise ApiError(429, "error.too-many.requests")
        window_hits.append(now)

    def login(self, headers, body):
        key = headers.get("X-CAP-API-KEY")
        if not key:
            raise ApiError(400, "error.null.api.key")
        creds = self.config["credentials"]
        hits = self.login_times.setdefault(key, deque())
        self.rate_check(hits, int(self.config["rate_limits"].get("login_per_second", 1)), time.monotonic())
        if key != creds["api_key"]:
            raise ApiError(401, "error.invalid.api.key")
        if not isinstance(body, dict) or not body.get("identifier") or body.get("password") in (None, ""):
            raise ApiError(400, "error.invalid.details")
        password = body["password"]
        if body.get("encryptedPassword"):
            password = self.decrypt_password(password)
        if body["identifier"] != creds["identifier"] or password != creds["password"]:
            raise ApiError(401, "error.invalid.details")
        self.counters["logins"] += 1
        return self.new_session()

    def encryption_key(self, headers):
        if not headers.get("X-CAP-API-KEY"):
            raise ApiError(400, "error.null.api.key")
        if self.private_key is None:
            raise ApiError(500, "error.encryption.unavailable")
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        stamp = now_ms()
        self.enc_timestamps.append(stamp)
        return {"encryptionKey": base64.b64encode(der).decode(), "timeStamp": stamp}

    def decrypt_password(self, blob):
        if self.private_key is None:
            raise ApiError(500, "error.encryption.unavailable")
        try:
            plain = self.private_key.decrypt(base64.b64decode(blob), padding.PKCS1v15())
            text = base64.b64decode(plain).decode("utf-8")
            password, _, stamp = text.rpartition("|")
            stamp = int(stamp)
        except Exception:
            raise ApiError(401, "error.invalid.details") from None
        if stamp not in self.enc_timestamps:
            raise ApiError(401, "error.invalid.details")
        return password

    # -- markets ---------------------------------------------------------------------------
    def market_view(self, epic, now):
        inst = MARKETS.get(epic)
        if inst is None:
            raise ApiError(404, "error.not-found.epic")
        forced = self.config["market_status"].get(epic)
        status = forced or ("TRADEABLE" if market_open(self.hours(epic), now) else "CLOSED")
        quote = self.config["quotes"].get(epic, {})
        # a random walk that does not depend on call history: smooth waves plus a little noise
        wave = math.sin(now / 37.0) * 0.002 + math.sin(now / 5.3) * 0.0007
        mid = inst["price"] * (1 + wave + _rng.uniform(-0.0002, 0.0002))
        half = inst["spread"] / 2
        bid = round(mid - half, inst["decimals"])
        offer = round(mid + half, inst["decimals"])
        age = float(quote.get("age_s", _rng.uniform(0.05, 1.5) if status == "TRADEABLE" else 3600.0))
        update_ts = now - age
        snapshot = {
            "marketStatus": status,
            "netChange": round(mid * wave, inst["decimals"]),
            "percentageChange": round(wave * 100, 4),
            "updateTime": iso_ms(update_ts + 3600 * float(self.config["tz_offset_hours"])),
            "delayTime": 0,
            "bid": quote.get("bid", bid),
            "offer": quote.get("offer", offer),
            "high": round(inst["price"] * 1.01, inst["decimals"]),
            "low": round(inst["price"] * 0.99, inst["decimals"]),
            "decimalPlacesFactor": inst["decimals"],
            "scalingFactor": 1,
        }
        snapshot = {k: v for k, v in snapshot.items() if v is not None}
        instrument = {
            "epic": epic,
            "symbol": inst["symbol"],
            "expiry": "-",
            "name": inst["name"],
            "lotSize": 1,
            "type": inst["type"],
            "guaranteedStopAllowed": False,
            "streamingPricesAvailable": True,
            "currency": "USD",
            "marginFactor": inst["margin"],
            "marginFactorUnit": "PERCENTAGE",
            "openingHours": self.hours(epic),
            "country": "",
        }
        rules = {
            "minStepDistance": {"unit": "POINTS", "value": 10 ** -inst["decimals"]},
            "minDealSize": {"unit": "POINTS", "value": inst["min_size"]},
            "maxDealSize": {"unit": "POINTS", "value": 1000.0},
            "minSizeIncrement": {"unit": "POINTS", "value": inst["min_size"]},
            "minGuaranteedStopDistance": {"unit": "PERCENTAGE", "value": 1},
            "minStopOrProfitDistance": {"unit": "PERCENTAGE", "value": 0.1},
            "maxStopOrProfitDistance": {"unit": "PERCENTAGE", "value": 75},
            "marketOrderPreference": "AVAILABLE_DEFAULT_OFF",
            "trailingStopsPreference": "NOT_AVAILABLE",
        }
        return {"instrument": instrument, "dealingRules": rules, "snapshot": snapshot}

    def hours(self, epic):
        """The epic's openingHours: set through the control endpoint, else the instrument's (UTC)."""
        return self.config["hours"].get(epic) or dict(MARKETS[epic]["hours"], zone="UTC")

    def market_summary(self, epic, now):
        view = self.market_view(epic, now)
        snap, inst = view["snapshot"], view["instrument"]
        update_utc = iso_ms(now - float(self.config["quotes"].get(epic, {}).get("age_s", 0.5)))
        return {
            "delayTime": 0,
            "epic": epic,
            "netChange": snap["netChange"],
            "lotSize": 1,
            "expiry": "-",
            "instrumentType": inst["type"],
            "instrumentName": inst["name"],
            "high": snap["high"],
            "low": snap["low"],
            "percentageChange": snap["percentageChange"],
            "updateTime": snap["updateTime"],
            "updateTimeUTC": update_utc,
            "bid": snap.get("bid"),
            "offer": snap.get("offer"),
            "streamingPricesAvailable": True,
            "marketStatus": snap["marketStatus"],
            "scalingFactor": 1,
        }

    # -- trading ---------------------------------------------------------------------------
    def trade_gate(self):
        now = time.monotonic()
        if self.trade_times and now - self.trade_times[-1] < 0.1:
            self.counters["rate_limited"] += 1
            raise ApiError(429, "error.too-many.requests")
        while self.trade_times and now - self.trade_times[0] > 3600:
            self.trade_times.popleft()
        if len(self.trade_times) >= 1000:
            self.counters["rate_limited"] += 1
            raise ApiError(429, "error.too-many.requests")
        self.trade_times.append(now)

    def open_position(self, body, now):
        if not isinstance(body, dict):
            raise ApiError(400, "error.invalid.request")
        epic = body.get("epic")
        if epic not in MARKETS:
            raise ApiError(404, "error.not-found.epic")
        direction = body.get("direction")
        if direction not in ("BUY", "SELL"):
            raise ApiError(400, "error.invalid.direction")
        size = body.get("size")
        if not isinstance(size, (int, float)) or size < MARKETS[epic]["min_size"]:
            raise ApiError(400, "error.invalid.size.minvalue: %s" % MARKETS[epic]["min_size"])
        view = self.market_view(epic, now)
        self.trade_gate()
        ref = "o_" + secrets.token_hex(4) + "-" + secrets.token_hex(2) + "-" + secrets.token_hex(2)
        deal = "0000" + secrets.token_hex(6)
        snap = view["snapshot"]
        reason = self.config["reject"].get(epic) or ("MARKET_CLOSED" if snap["marketStatus"] != "TRADEABLE" else None)
        if reason:
            self.confirms[ref] = self._confirm(ref, deal, epic, direction, size, None, "REJECTED", reason)
            return ref
        level = snap["offer"] if direction == "BUY" else snap["bid"]
        self.positions[deal] = {
            "position": {
                "contractSize": 1,
                "createdDate": iso_ms(now + 3600 * float(self.config["tz_offset_hours"])),
                "createdDateUTC": iso_ms(now),
                "dealId": deal,
                "dealReference": ref,
                "size": size,
                "leverage": 2,
                "upl": 0.0,
                "direction": direction,
                "level": level,
                "currency": "USD",
                "guaranteedStop": False,
                "stopLevel": body.get("stopLevel"),
                "profitLevel": body.get("profitLevel"),
            },
            "epic": epic,
        }
        self.confirms[ref] = self._confirm(ref, deal, epic, direction, size, level, "ACCEPTED", "SUCCESS")
        return ref

    def _confirm(self, ref, deal, epic, direction, size, level, status, reason, affected="OPENED"):
        """The confirmation of a deal; as recorded, its own dealId differs from the position's (affectedDeals)."""
        return {
            "_visible_at": time.monotonic() + float(self.config["confirm_delay_ms"]) / 1000.0,
            "date": iso_ms(time.time()),
            "status": ("OPEN" if affected == "OPENED" else "CLOSED") if status == "ACCEPTED" else "DELETED",
            "reason": reason,
            "dealStatus": status,
            "epic": epic,
            "dealReference": ref,
            "dealId": "0000" + secrets.token_hex(6),
            "affectedDeals": [{"dealId": deal, "status": affected}] if status == "ACCEPTED" else [],
            "level": level,
            "size": size,
            "direction": direction,
            "guaranteedStop": False,
            "trailingStop": False,
        }

    def accounts(self):
        acc = self.config["account"]
        return {
            "accounts": [
                {
                    "accountId": self.account_id,
                    "accountName": "USD",
                    "status": acc["status"],
                    "accountType": "CFD",
                    "preferred": True,
                    "balance": {
                        "balance": acc["balance"],
                        "deposit": acc["deposit"],
                        "profitLoss": round(acc["balance"] - acc["deposit"], 2),
                        "available": acc["available"],
                    },
                    "currency": "USD",
                    "symbol": "$",
                }
            ]
        }

    def login_body(self, host=None):
        """As recorded; ``streamingHost`` is this emulator's own stream when the request named its host."""
        acc = self.config["account"]
        return {
            "accountType": "CFD",
            "accountInfo": {
                "balance": acc["balance"],
                "deposit": acc["deposit"],
                "profitLoss": round(acc["balance"] - acc["deposit"], 2),
                "available": acc["available"],
            },
            "currencyIsoCode": "USD",
            "currencySymbol": "$",
            "currentAccountId": self.account_id,
            "streamingHost": "ws://%s/" % host if host else "wss://api-streaming-capital.backend-capital.com/",
            "accounts": [{"accountId": self.account_id, "accountName": "USD", "preferred": True, "accountType": "CFD"}],
            "clientId": "12345678",
            "timezoneOffset": 3,
            "hasActiveDemoAccounts": True,
            "hasActiveLiveAccounts": False,
            "trailingStopsEnabled": False,
        }

    # -- dispatch ---------------------------------------------------------------------------
    def route(self, method, path, query, headers, body):
        """(status, json body, extra headers, endpoint key) for one API request."""
        now = time.time()
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path == "/time":
            return 200, {"serverTime": now_ms() + int(self.config["clock_offset_ms"])}, {}
        if path == "/session/encryptionKey" and method == "GET":
            return 200, self.encryption_key(headers), {}
        if path == "/session" and method == "POST":
            sess = self.login(headers, body)
            return 200, self.login_body(headers.get("Host")), {"CST": sess["cst"], "X-SECURITY-TOKEN": sess["sec"]}
        # everything else needs a session
        sess = self.auth(headers)
        self.rate_check(sess["hits"], int(self.config["rate_limits"].get("per_second", 10)), time.monotonic())
        echo = {"CST": sess["cst"], "X-SECURITY-TOKEN": sess["sec"]}
        if path == "/ping" and method == "GET":
            return 200, {"status": "OK"}, echo
        if path == "/session":
            if method == "GET":
                return (
                    200,
                    {
                        "clientId": "12345678",
                        "accountId": self.account_id,
                        "timezoneOffset": 3,
                        "locale": "en",
                        "currency": "USD",
                        "streamEndpoint": "wss://api-streaming-capital.backend-capital.com/",
                    },
                    echo,
                )
            if method == "DELETE":
                self.sessions.pop(sess["cst"], None)
                self.counters["logouts"] += 1
                return 200, {"status": "SUCCESS"}, echo
            if method == "PUT":
                if not isinstance(body, dict) or body.get("accountId") != self.account_id:
                    raise ApiError(400, "error.invalid.accountId")
                return 200, {"trailingStopsEnabled": False, "dealingEnabled": True,
                             "hasActiveDemoAccounts": True, "hasActiveLiveAccounts": False}, echo  # fmt: skip
        if path == "/accounts" and method == "GET":
            return 200, self.accounts(), echo
        if path == "/accounts/preferences" and method == "GET":
            return 200, {"hedgingMode": False, "leverages": {"COMMODITIES": {"current": 10, "available": [1, 2, 5, 10]},
                         "CRYPTOCURRENCIES": {"current": 2, "available": [1, 2]}}}, echo  # fmt: skip
        if parts[:1] == ["markets"] and method == "GET":
            if len(parts) == 2:
                return 200, self.market_view(parts[1], now), echo
            if "epics" in query:
                epics = [e for e in query["epics"][0].split(",") if e]
                if not epics:
                    raise ApiError(400, "error.null.epic")
                if len(epics) > 50:
                    raise ApiError(400, "error.invalid.epics.size")
                return 200, {"marketDetails": [self.market_view(e, now) for e in epics if e in MARKETS]}, echo
            if "searchTerm" in query:
                term = query["searchTerm"][0].lower()
                if not term:
                    raise ApiError(400, "error.invalid.searchterm")
                found = [e for e, m in MARKETS.items() if term in e.lower() or term in m["name"].lower()]
                return 200, {"markets": [self.market_summary(e, now) for e in found]}, echo
            return 200, {"markets": [self.market_summary(e, now) for e in MARKETS]}, echo
        if parts[:1] == ["positions"]:
            if len(parts) == 1 and method == "GET":
                items = []
                for p in self.positions.values():
                    items.append({"position": p["position"], "market": self.market_summary(p["epic"], now)})
                return 200, {"positions": items}, echo
            if len(parts) == 1 and method == "POST":
                return 200, {"dealReference": self.open_position(body, now)}, echo
            if len(parts) == 2:
                pos = self.positions.get(parts[1])
                if pos is None:
                    raise ApiError(404, "error.not-found.dealId")
                if method == "GET":
                    return 200, {"position": pos["position"], "market": self.market_summary(pos["epic"], now)}, echo
                if method == "DELETE":
                    self.trade_gate()
                    del self.positions[parts[1]]
                    ref = "p_" + secrets.token_hex(8)
                    p = pos["position"]
                    self.confirms[ref] = self._confirm(
                        ref,
                        parts[1],
                        pos["epic"],
                        p["direction"],
                        p["size"],
                        None,
                        "ACCEPTED",
                        "SUCCESS",
                        "FULLY_CLOSED",
                    )
                    return 200, {"dealReference": ref}, echo
                if method == "PUT":
                    self.trade_gate()
                    for key in ("stopLevel", "profitLevel"):
                        if isinstance(body, dict) and key in body:
                            pos["position"][key] = body[key]
                    return 200, {"dealReference": "p_" + secrets.token_hex(8)}, echo
        if parts[:1] == ["workingorders"]:
            if len(parts) == 1 and method == "GET":
                return 200, {"workingOrders": list(self.orders.values())}, echo
            if len(parts) == 1 and method == "POST":
                if not isinstance(body, dict) or body.get("epic") not in MARKETS:
                    raise ApiError(404, "error.not-found.epic")
                self.trade_gate()
                deal, ref = "0000" + secrets.token_hex(6), "o_" + secrets.token_hex(8)
                self.orders[deal] = {
                    "workingOrderData": dict(body, dealId=deal),
                    "marketData": self.market_summary(body["epic"], now),
                }
                return 200, {"dealReference": ref}, echo
            if len(parts) == 2 and method == "DELETE":
                if self.orders.pop(parts[1], None) is None:
                    raise ApiError(404, "error.not-found.dealId")
                return 200, {"dealReference": "o_" + secrets.token_hex(8)}, echo
        if parts[:1] == ["confirms"] and len(parts) == 2 and method == "GET":
            confirm = self.confirms.get(parts[1])
            if confirm is None or time.monotonic() < confirm["_visible_at"]:  # still being processed
                raise ApiError(404, "error.not-found.dealReference")
            return 200, {k: v for k, v in confirm.items() if not k.startswith("_")}, echo
        raise ApiError(404, "error.not-found.endpoint")


def endpoint_key(method, path):
    """'GET /markets/{epic}' style key used by faults, latency and counters."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] in ("markets", "confirms", "positions", "workingorders", "prices"):
        parts[1] = {"markets": "{epic}", "confirms": "{dealReference}", "prices": "{epic}"}.get(parts[0], "{dealId}")
    return "%s /%s" % (method, "/".join(parts))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real host (clients reuse connections)
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall on small responses
    server_version = "capital-com-emulator"
    sys_version = ""
    emulator: Emulator = None  # set by serve()
    verbose = False

    def log_message(self, fmt, *args):  # request lines only; headers (tokens) are never logged
        if self.verbose:
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- plumbing --------------------------------------------------------------------------
    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json" and not self.path.startswith("/__emulator/"):
            # the API is documented with Content-Type: application/json; a Spring backend answers 415 otherwise
            raise ApiError(415, "error.unsupported.media.type")
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "error.malformed.json") from None

    def _send(self, status, payload=None, headers=None, raw=None, content_type="application/json"):
        body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in COMMON_HEADERS:
            self.send_header(name, value)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # headers and body in one write: one segment, so latency measurements measure the broker
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _handle(self, method):
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/__emulator/"):
                return self._control(method, url.path)
            if url.path.rstrip("/") == "/connect" and method == "GET":  # the WebSocket price stream
                if stream.handshake(self):
                    stream.StreamSession(self.emulator, self, MARKETS).serve()
                return None
            body = self._read_body()
            if not url.path.startswith(API_PREFIX + "/"):
                raise ApiError(404, "error.not-found.endpoint")
            path = url.path[len(API_PREFIX) :].rstrip("/") or "/"
            key = endpoint_key(method, path)
            emu = self.emulator
            with emu.lock:
                counters = emu.counters["requests"]
                counters[key] = counters.get(key, 0) + 1
            fault = emu.take_fault(key)
            delay = emu.latency_for(key)
            if delay > 0:
                time.sleep(delay)
            if fault and self._serve_fault(fault):
                return
            with emu.lock:
                status, payload, headers = emu.route(method, path, parse_qs(url.query), self.headers, body)
            if fault and fault.get("answer_lost_s"):  # done, but the answer never reaches the client
                time.sleep(float(fault["answer_lost_s"]))
                self.close_connection = True
                return
            self._send(status, payload, headers)
        except ApiError as exc:
            if exc.status == 429:
                pass  # counted where raised
            self._send(exc.status, {"errorCode": exc.code})
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug must look like a broker 500, not a dropped socket
            sys.stderr.write("emulator error: %r\n" % (exc,))
            self._send(500, {"errorCode": "java.lang.IllegalStateException"})

    def _serve_fault(self, fault):
        """Serve a configured fault. Returns False when the fault lets the real answer through."""
        if fault.get("hang_s"):
            time.sleep(float(fault["hang_s"]))  # past the client's read timeout
            if fault.get("then") != "answer":
                self.close_connection = True
                return True
        if fault.get("expire_session"):
            with self.emulator.lock:
                for sess in self.emulator.sessions.values():
                    sess["last_used"] = -1e12
            return False
        if fault.get("close"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        status = int(fault.get("status", 200))
        kind = fault.get("body")
        headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") else None
        if kind == "html502":
            self._send(
                status if "status" in fault else 502, raw=HTML_502.encode(), content_type="text/html", headers=headers
            )
        elif kind == "garbage":
            self._send(status, raw=GARBAGE, headers=headers)
        elif kind == "truncated":
            self._send(status, raw=b'{"status": "O', headers=headers)
        elif kind == "empty":
            self._send(status, raw=b"", headers=headers)
        elif kind == "json":
            self._send(status, fault.get("json"), headers=headers)
        elif fault.get("error_code") is not None or status >= 400:
            self._send(status, {"errorCode": fault.get("error_code") or "error.internal"}, headers=headers)
        else:
            return False
        return True

    def _control(self, method, path):
        emu = self.emulator
        try:
            if path == "/__emulator/health" and method == "GET":
                return self._send(200, {"status": "ok"})
            if path == "/__emulator/state" and method == "GET":
                return self._send(200, emu.snapshot())
            if path == "/__emulator/reset" and method == "POST":
                self._read_body()
                emu.reset()
                return self._send(200, emu.snapshot())
            if path == "/__emulator/control" and method == "POST":
                return self._send(200, emu.control(self._read_body() or {}))
            raise ApiError(404, "unknown emulator endpoint %s %s" % (method, path))
        except ApiError as exc:
            self._send(exc.status, {"error": exc.code})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve(host, port, emulator, verbose=False):
    handler = type("BoundHandler", (Handler,), {"emulator": emulator, "verbose": verbose})
    return Server((host, port), handler)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Capital.com REST API emulator (tests, local stack)")
    ap.add_argument("--host", default=os.environ.get("CAPITAL_EMULATOR_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("CAPITAL_EMULATOR_PORT", "8080")),
                    help="0 picks a free port (printed on stdout)")  # fmt: skip
    ap.add_argument("--api-key", default=os.environ.get("CAPITAL_EMULATOR_API_KEY", "emulator-api-key"))
    ap.add_argument("--identifier", default=os.environ.get("CAPITAL_EMULATOR_IDENTIFIER", "trader@example.com"))
    ap.add_argument("--password", default=os.environ.get("CAPITAL_EMULATOR_PASSWORD", "emulator-password"))
    ap.add_argument("--verbose", action="store_true", help="log request lines (never headers) to stderr")
    args = ap.parse_args(argv)
    emulator = Emulator(args.api_key, args.identifier, args.password)
    httpd = serve(args.host, args.port, emulator, args.verbose)
    port = httpd.server_address[1]
    shown = "[%s]" % args.host if ":" in args.host else args.host
    base = "http://%s:%d%s" % (shown, port, API_PREFIX)
    sys.stderr.write("capital-com-emulator listening on %s\n" % base)
    sys.stdout.write(json.dumps({"port": port, "base_url": base}) + "\n")
    sys.stdout.flush()

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    httpd.serve_forever(poll_interval=0.2)
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
