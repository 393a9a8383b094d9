"""A minimal Capital.com REST client for market data (stdlib only).

Login with POST /session (API key header, identifier and password from secret
files), then GET /markets?epics=... with the CST and X-SECURITY-TOKEN session
headers. The login's ``streamingHost`` and tokens open the price stream (stream.py).
Tokens live in memory only and never appear in logs, errors or metrics.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request


class BrokerError(Exception):
    """A readable broker failure (no secret, no token in the message)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _error_code(body: bytes) -> str:
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return "non-JSON body" if body.strip() else "empty body"
    if isinstance(data, dict) and isinstance(data.get("errorCode"), str):
        return data["errorCode"][:120]
    return "unexpected body"


class BrokerClient:
    def __init__(self, base_url: str, api_key: str, identifier: str, password: str, timeout: float = 5.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"BROKER_BASE_URL must start with http:// or https://, got {base_url[:40]!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._identifier = identifier
        self._password = password
        self.timeout = timeout
        self._tokens: dict[str, str] | None = None
        self.streaming_host = ""
        self.logins = 0

    def _request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BrokerError(f"{method} {path}: broker unreachable ({type(reason).__name__}: {reason})")

    def login(self) -> None:
        self._tokens = None
        status, headers, body = self._request(
            "POST",
            "/session",
            {"identifier": self._identifier, "password": self._password, "encryptedPassword": False},
            {"X-CAP-API-KEY": self._api_key},
        )
        if status == 429:
            raise BrokerError("POST /session: rate limited (429)", status, retry_after=1.0)
        if status != 200:
            raise BrokerError(f"POST /session: HTTP {status} {_error_code(body)}", status)
        cst, token = headers.get("CST"), headers.get("X-SECURITY-TOKEN")
        if not cst or not token:
            raise BrokerError("POST /session: 200 without CST/X-SECURITY-TOKEN headers", status)
        self._tokens = {"CST": cst, "X-SECURITY-TOKEN": token}
        try:
            self.streaming_host = str(json.loads(body).get("streamingHost") or "")
        except (ValueError, AttributeError):
            self.streaming_host = ""
        self.logins += 1

    def forget_session(self) -> None:
        """The next call logs in again (the broker no longer knows the tokens)."""
        self._tokens = None

    def stream_session(self) -> tuple[str, str, str]:
        """``(streamingHost, CST, X-SECURITY-TOKEN)`` for the price stream; logs in when there is no session."""
        if self._tokens is None:
            self.login()
        if not self.streaming_host:
            raise BrokerError("POST /session: the login named no streamingHost")
        return self.streaming_host, self._tokens["CST"], self._tokens["X-SECURITY-TOKEN"]

    @property
    def secrets(self) -> list[str]:
        """Values a log redactor must never let through (credentials and session tokens)."""
        values = [self._api_key, self._identifier, self._password]
        if self._tokens:
            values += list(self._tokens.values())
        return [v for v in values if v]

    def markets(self, epics: list[str] | tuple[str, ...]) -> list[dict]:
        """Market details for up to 50 epics; logs in (again, once) when the session is missing or expired."""
        path = "/markets?" + urllib.parse.urlencode({"epics": ",".join(epics)})
        for attempt in (1, 2):
            if self._tokens is None:
                self.login()
            status, _headers, body = self._request("GET", path, headers=dict(self._tokens or {}))
            if status == 401 and attempt == 1:
                self._tokens = None  # expired session: one re-login, then give up
                continue
            if status == 429:
                raise BrokerError(f"GET /markets: rate limited (429) {_error_code(body)}", status, retry_after=1.0)
            if status != 200:
                raise BrokerError(f"GET /markets: HTTP {status} {_error_code(body)}", status)
            try:
                data = json.loads(body)
                details = data["marketDetails"]
                assert isinstance(details, list)
            except (ValueError, KeyError, TypeError, AssertionError):
                raise BrokerError("GET /markets: 200 with a body that has no marketDetails list", status)
            return details
        raise BrokerError("GET /markets: session rejected twice (401)", 401)


def parse_quotes(details: list[dict], now: float | None = None) -> list[dict]:
    """Quotes (epic, bid, offer, marketStatus) from market details; malformed entries are skipped."""
    now = time.time() if now is None else now
    out = []
    for item in details:
        try:
            epic = item["instrument"]["epic"]
            snap = item["snapshot"]
            status = snap.get("marketStatus", "")
            bid, offer = float(snap["bid"]), float(snap["offer"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append({"epic": epic, "bid": bid, "offer": offer, "status": status, "ts": now})
    return out
