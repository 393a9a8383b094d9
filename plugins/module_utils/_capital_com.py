# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Capital.com REST client every broker-facing plugin of the collection uses (private).

- ``CAPITAL_COM_ARG_SPEC`` + doc fragment ``tradeops.stack.capital_com``: how to reach
  the broker and log in (secrets ``no_log`` with environment fallbacks for AWX);
- ``live_guard(params, allow_live)``: refuses a live broker URL (``_rules``) unless explicitly allowed;
- ``CapitalComClient``: one ``requests.Session``; connect and read timeouts on every
  call; bounded jittered retries for idempotent calls on timeouts, connection errors,
  429 and 5xx (never for anything that places an order); one re-login on 401 for
  idempotent calls; client-side rate limits (10 requests/s, 1 login/s); tokens in
  memory only, never in a message;
- ``client_from_params(base_url, params)``: the client a module's ``CAPITAL_COM_ARG_SPEC`` options describe;
- ``parse_broker_time``, ``quote_age``, ``percentile``: reading the broker's times and latencies;
- ``CapitalComError``: the error taxonomy. Every HTTP status, ``errorCode``, timeout,
  TLS error, non-JSON body and empty body becomes one readable ``reason`` and a
  machine-readable ``kind``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import math
import random
import re
import threading
import time
from collections import deque
from contextlib import suppress

from ansible.module_utils.basic import env_fallback
from urllib.parse import quote

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._optional import optional_import

requests, REQUESTS_IMPORT_ERROR = optional_import("requests")
HAS_REQUESTS = requests is not None
rexc = requests.exceptions if HAS_REQUESTS else None
# RSA-encrypting the password (encrypted_password=true) is the only use of cryptography
serialization, CRYPTOGRAPHY_IMPORT_ERROR = optional_import("cryptography.hazmat.primitives.serialization")
padding = optional_import("cryptography.hazmat.primitives.asymmetric.padding")[0]
HAS_CRYPTOGRAPHY = serialization is not None and padding is not None

TRADE_INTERVAL_S = 0.105  # the broker's one trade request per 0.1 s, with a margin for jitter

LIVE_URL = "https://api-capital.backend-capital.com/api/v1"
DEMO_URL = "https://demo-api-capital.backend-capital.com/api/v1"
BASE_URLS = {"live": LIVE_URL, "demo": DEMO_URL}

# Paired with plugins/doc_fragments/capital_com.py.
CAPITAL_COM_ARG_SPEC = dict(
    base_url=dict(type="str"),
    emulator_hosts=dict(type="list", elements="str", default=[]),
    environment=dict(type="str", default="demo", choices=["demo", "live"]),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["CAPITAL_COM_API_KEY"])),
    identifier=dict(type="str", no_log=True, fallback=(env_fallback, ["CAPITAL_COM_IDENTIFIER"])),
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["CAPITAL_COM_PASSWORD"])),
    encrypted_password=dict(type="bool", default=False, no_log=False),
    timeout=dict(type="float", default=10.0),
    validate_certs=dict(type="bool", default=True),
)

# Readable meaning of the broker's error codes (the part before an optional ": value").
ERROR_CODES = {
    "error.null.api.key": "no API key was sent (set api_key or CAPITAL_COM_API_KEY)",
    "error.invalid.api.key": "the API key was rejected (wrong key, disabled key, or a live key on the demo host)",
    "error.invalid.details": "the identifier or the API-key password was rejected "
    "(check identifier/password or CAPITAL_COM_IDENTIFIER/CAPITAL_COM_PASSWORD)",
    "error.too-many.requests": "rate limited by the broker (10 requests/s per user, 1 login/s per API key)",
    "error.invalid.session.token": "the session expired or was closed",
    "error.null.client.token": "the request carried no session token (CST)",
    "error.null.security.token": "the request carried no X-SECURITY-TOKEN",
    "error.not-found.epic": "the market (epic) does not exist",
    "error.null.epic": "no epic was given",
    "error.not-found.dealReference": "no deal confirmation with that reference",
    "error.not-found.dealId": "no position or order with that deal id",
    "error.invalid.accountId": "the account id does not belong to this login",
    "error.internal": "internal error on the broker side",
}
AUTH_FAILURE_CODES = ("error.invalid.session.token", "error.null.client.token", "error.null.security.token")
STATUS_TEXT = {
    400: "bad request",
    401: "unauthorised",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    409: "conflict",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

_HTML_TITLE = re.compile(r"<title>\s*([^<]{1,80}?)\s*</title>", re.I)


class CapitalComError(Exception):
    """One readable reason for anything that went wrong talking to the broker.

    ``kind`` is one of: config, timeout, connection, tls, http, rate_limited, auth,
    session, not_found, server_error, gateway, non_json, empty_body, invalid_response,
    order_outcome_unknown, position_left_open, missing_library.
    """

    def __init__(self, reason, kind, status=None, error_code=None, method=None, path=None, attempts=1):
        super(CapitalComError, self).__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status
        self.error_code = error_code
        self.method = method
        self.path = path
        self.attempts = attempts

    def __str__(self):
        return self.reason

    def as_dict(self):
        return dict(
            reason=self.reason,
            kind=self.kind,
            status=self.status,
            error_code=self.error_code,
            endpoint=("%s %s" % (self.method, self.path)) if self.method else None,
            attempts=self.attempts,
        )


def live_guard(params, allow_live):
    """The base URL to use and whether it is live; CapitalComError before any connection otherwise.

    The decision is the collection's one broker rule (``_rules.broker_url_kind``): an
    allow-list of the demo host and the emulator hosts the inventory names.
    """
    environment = params.get("environment") or "demo"
    base_url = params.get("base_url") or BASE_URLS[environment]
    try:
        live = _rules.broker_url_kind(base_url, params.get("emulator_hosts"), "base_url") == "live"
    except _rules.RuleError as exc:
        raise CapitalComError(str(exc), "config")
    if (live or environment == "live") and not allow_live:
        raise CapitalComError(
            "refusing to talk to the LIVE Capital.com broker (base_url %s, environment=%s): this collection runs "
            "paper trading on the demo host (%s) or on a broker emulator named in emulator_hosts. Use environment: "
            "demo, or set allow_live: true if real money is intended." % (base_url, environment, DEMO_URL),
            "config",
        )
    return base_url.rstrip("/"), live or environment == "live"


def describe_error_code(code):
    """'error.invalid.stoploss.minvalue: 17.146' -> ('error.invalid.stoploss.minvalue', '17.146', meaning)."""
    code = str(code).strip()
    base, _sep, value = code.partition(":")
    base, value = base.strip(), value.strip() or None
    meaning = ERROR_CODES.get(base)
    if meaning is None:
        if re.match(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+(Exception|Error)$", base):
            meaning = "the broker failed internally (%s)" % base.rsplit(".", 1)[-1]
        elif base.startswith("error."):
            meaning = base[len("error.") :].replace(".", " ").replace("-", " ")
        else:
            meaning = "broker error"
    if value:
        meaning = "%s (value %s)" % (meaning, value)
    return base, value, meaning


def _printable(text, limit=60):
    text = re.sub(r"[^\x20-\x7e]+", "?", text or "")
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def classify_response(method, path, status, content_type, body_bytes, attempts=1):
    """Parse a broker response: the JSON document for 2xx, CapitalComError otherwise."""
    endpoint = "%s %s" % (method, path)
    ctype = (content_type or "").lower()
    text = body_bytes.decode("utf-8", "replace") if body_bytes else ""
    data = None
    parse_error = None
    if text.strip():
        try:
            data = json.loads(text)
        except ValueError as exc:
            parse_error = exc
    tries = "; after %d attempts" % attempts if attempts > 1 else ""
    kw = dict(status=status, method=method, path=path, attempts=attempts)
    if 200 <= status < 300:
        if not text.strip():
            raise CapitalComError(
                "%s: HTTP %d with an empty body where JSON was expected%s" % (endpoint, status, tries),
                "empty_body",
                **kw,
            )
        if parse_error is not None:
            raise CapitalComError(
                "%s: HTTP %d with a body that is not JSON (%s; starts with %r)%s"
                % (endpoint, status, ctype or "no content type", _printable(text, 40), tries),
                "non_json",
                **kw,
            )
        return data
    status_text = STATUS_TEXT.get(status, "HTTP error")
    code = data.get("errorCode") if isinstance(data, dict) else None
    if code:
        base, _value, meaning = describe_error_code(code)
        kind = "http"
        if status == 429 or base == "error.too-many.requests":
            kind = "rate_limited"
        elif base in AUTH_FAILURE_CODES:
            kind = "session"
        elif status in (401, 403) or base in ("error.invalid.details", "error.invalid.api.key", "error.null.api.key"):
            kind = "auth"
        elif status == 404:
            kind = "not_found"
        elif status >= 500:
            kind = "server_error"
        raise CapitalComError(
            "%s: HTTP %d %s: %s%s" % (endpoint, status, base, meaning, tries),
            kind,
            error_code=base,
            **kw,
        )
    if "html" in ctype or text.lstrip().lower().startswith(("<!doctype", "<html")):
        match = _HTML_TITLE.search(text)
        title = _printable(match.group(1)) if match else "no title"
        raise CapitalComError(
            "%s: HTTP %d %s with an HTML page (%r): a gateway or proxy answered, not the API%s"
            % (endpoint, status, status_text, title, tries),
            "gateway",
            **kw,
        )
    if status == 429:
        kind, what = "rate_limited", "rate limited by the broker (10 requests/s per user, 1 login/s per API key)"
    elif status >= 500:
        kind, what = "server_error", "the broker failed"
    elif status in (401, 403):
        kind, what = "auth", "not authorised"
    elif status == 404:
        kind, what = "not_found", "no such endpoint or object"
    else:
        kind, what = "http", "unexpected status"
    if not text.strip():
        detail = "empty body"
    elif parse_error is not None:
        detail = "body not JSON, starts with %r" % _printable(text, 40)
    else:
        detail = "no errorCode in the body"
    raise CapitalComError(
        "%s: HTTP %d %s (%s): %s%s" % (endpoint, status, status_text, detail, what, tries), kind, **kw
    )


def encrypt_password(password, encryption_key_b64, timestamp):
    """base64(RSA_PKCS1v15(base64(utf8(password + "|" + timeStamp)))) as Capital.com expects."""
    if not HAS_CRYPTOGRAPHY:
        raise CapitalComError(
            "encrypted_password needs the Python library cryptography on the host running the module: %s"
            % CRYPTOGRAPHY_IMPORT_ERROR,
            "missing_library",
        )
    try:
        key = serialization.load_der_public_key(base64.b64decode(encryption_key_b64))
        plain = base64.b64encode(("%s|%s" % (password, timestamp)).encode("utf-8"))
        return base64.b64encode(key.encrypt(plain, padding.PKCS1v15())).decode("ascii")
    except Exception as exc:
        raise CapitalComError(
            "GET /session/encryptionKey returned a key that cannot be used (%s)" % type(exc).__name__,
            "invalid_response",
        )


class RateLimiter(object):
    """At most ``limit`` events in any ``window`` seconds; ``acquire()`` sleeps until allowed.

    The window carries a small margin over the broker's one second so that network jitter
    never turns a compliant burst into a 429.
    """

    def __init__(self, limit, window=1.05, clock=time.monotonic, sleep=time.sleep):
        self.limit = int(limit)
        self.window = float(window)
        self.clock = clock
        self.sleep = sleep
        self.events = deque()
        self.waited = 0.0
        self._lock = threading.Lock()

    def _wait_for_room(self, count):
        """Sleep until ``count`` more events fit in the window (the caller holds the lock); returns now."""
        while True:
            now = self.clock()
            while self.events and now - self.events[0] >= self.window - 1e-6:  # float-safe
                self.events.popleft()
            if len(self.events) + count <= self.limit:
                return now
            pause = self.window - (now - self.events[0])
            self.waited += pause
            self.sleep(pause)

    def headroom(self, count):
        """Sleep until ``count`` events are allowed at once: a timed sequence must not wait in its middle."""
        with self._lock:
            self._wait_for_room(min(int(count), self.limit))

    def acquire(self):
        with self._lock:
            self.events.append(self._wait_for_room(1))

    def restart_last(self):
        """Move the last event to now (its window starts when the request was answered, not sent)."""
        with self._lock:
            if self.events:
                self.events[-1] = self.clock()


class Response(object):
    def __init__(self, status, data, elapsed, attempts):
        self.status = status
        self.data = data
        self.elapsed = elapsed  # seconds, of the attempt that succeeded
        self.attempts = attempts


class CapitalComClient(object):
    """One logged-in session to Capital.com. Not thread-safe beyond the rate limiters."""

    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(
        self,
        base_url,
        api_key,
        identifier,
        password,
        encrypted_password=False,
        timeout=10.0,
        validate_certs=True,
        max_retries=2,
        backoff=0.25,
        requests_per_second=10,
        logins_per_second=1,
        session=None,
        sleep=time.sleep,
        clock=time.monotonic,
    ):
        if not HAS_REQUESTS:
            raise CapitalComError(
                "the Python library requests is required on the host running the module: %s" % REQUESTS_IMPORT_ERROR,
                "missing_library",
            )
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._identifier = identifier
        self._password = password
        self.encrypted_password = encrypted_password
        self.timeout = float(timeout)
        self.validate_certs = validate_certs
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.sleep = sleep
        self.clock = clock
        self.http = session or requests.Session()
        if not validate_certs:  # the option already says it; no per-request warning on stderr
            with suppress(Exception):
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.http.headers.update({"Accept": "application/json", "User-Agent": "tradeops.stack/capital_com"})
        self._cst = None
        self._security_token = None
        self.account = None  # the POST /session body (no tokens in it)
        self.limiter = RateLimiter(requests_per_second, clock=clock, sleep=sleep)
        self.login_limiter = RateLimiter(logins_per_second, clock=clock, sleep=sleep)
        # trade requests (opening or closing a position): at most one per 0.1 s, on top of the 10/s
        self.trade_limiter = RateLimiter(1, window=TRADE_INTERVAL_S, clock=clock, sleep=sleep)
        self.stats = dict(requests=0, retries=0, rate_limited=0, relogins=0, logins=0)

    # -- secrets hygiene ------------------------------------------------------------------
    def redact(self, text):
        """``text`` with every secret this client knows replaced by ********."""
        for secret in (self._api_key, self._password, self._identifier, self._cst, self._security_token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "********")
        return text

    @property
    def logged_in(self):
        return bool(self._cst and self._security_token)

    # -- transport --------------------------------------------------------------------------
    def _headers(self, auth):
        headers = {"X-CAP-API-KEY": self._api_key or "", "Content-Type": "application/json"}
        if auth:
            headers["CST"] = self._cst or ""
            headers["X-SECURITY-TOKEN"] = self._security_token or ""
        return headers

    def _delay(self, attempt, status=None):
        """Full-jitter exponential backoff; a 429 waits at least for the broker's one-second window."""
        base = self.backoff * (2**attempt)
        delay = random.uniform(base / 2.0, base)  # noqa: S311 - jitter, not security
        if status == 429:
            delay = max(delay, 1.0 + random.uniform(0, 0.2))  # noqa: S311
        return delay

    def _send_once(self, method, path, auth, body):
        url = self.base_url + path
        if auth:  # the broker's 10 requests/s are per user (session); logins have their own limiter
            self.limiter.acquire()
        self.stats["requests"] += 1
        start = time.perf_counter()
        try:
            resp = self.http.request(
                method,
                url,
                headers=self._headers(auth),
                data=json.dumps(body) if body is not None else None,
                timeout=(min(self.timeout, 5.0), self.timeout) if self.timeout > 5.0 else (self.timeout, self.timeout),
                verify=self.validate_certs,
                allow_redirects=False,
            )
            content = resp.content
        except rexc.SSLError as exc:
            raise CapitalComError(
                "%s %s: TLS error talking to %s: %s (the certificate could not be verified; set validate_certs: "
                "false only for a test broker)" % (method, path, self.base_url, self._exc_text(exc)),
                "tls",
                method=method,
                path=path,
            )
        except (rexc.ConnectTimeout, rexc.ReadTimeout, rexc.Timeout) as exc:
            phase = "connect" if isinstance(exc, rexc.ConnectTimeout) else "read"
            raise CapitalComError(
                "%s %s: timed out after %.1f s waiting to %s (the broker did not answer in time)"
                % (method, path, self.timeout, "connect" if phase == "connect" else "read the response"),
                "timeout",
                method=method,
                path=path,
            )
        except rexc.ConnectionError as exc:
            raise CapitalComError(
                "%s %s: cannot connect to %s: %s" % (method, path, self.base_url, self._exc_text(exc)),
                "connection",
                method=method,
                path=path,
            )
        except rexc.RequestException as exc:
            raise CapitalComError(
                "%s %s: request failed: %s" % (method, path, self._exc_text(exc)),
                "connection",
                method=method,
                path=path,
            )
        finally:
            if auth:
                # the broker counts a request when it arrives, after our send by an unknown delay; counted from
                # the answer instead, ten requests are always more than a window apart when they arrive
                self.limiter.restart_last()
        elapsed = time.perf_counter() - start
        if resp.status_code == 429:
            self.stats["rate_limited"] += 1
        return resp, content, elapsed

    def _exc_text(self, exc):
        """The innermost readable cause of a requests exception, without object reprs."""
        text = str(exc)
        for pattern in (
            r"\[SSL: [A-Z_]+\] ([^(]+?)(?: \(_ssl.c|\)|'|$)",
            r"\[Errno -?\d+\] ([^'\")]+)",
            r"(Connection refused|Name or service not known|No route to host|Connection reset by peer"
            r"|Remote end closed connection without response|timed out)",
        ):
            match = re.search(pattern, text)
            if match:
                return self.redact(match.group(1).strip())
        return self.redact(_printable(text, 160))

    def request(self, method, path, auth=True, body=None, idempotent=None, relogin=True):
        """One API call with the client's retry, re-login and rate-limit policy. Returns a Response.

        ``idempotent`` defaults to True for GET only. Non-idempotent calls are sent exactly once:
        a timeout on them is reported as an unknown outcome, never retried.
        """
        if idempotent is None:
            idempotent = method == "GET"
        attempt = 0
        relogged = False
        while True:
            attempt += 1
            try:
                resp, content, elapsed = self._send_once(method, path, auth, body)
            except CapitalComError as exc:
                exc.attempts = attempt
                if idempotent and exc.kind in ("timeout", "connection") and attempt <= self.max_retries:
                    self.stats["retries"] += 1
                    self.sleep(self._delay(attempt - 1))
                    continue
                if not idempotent and exc.kind == "timeout":
                    exc.kind = (
                        "order_outcome_unknown" if path.startswith(("/positions", "/workingorders")) else exc.kind
                    )
                    exc.reason += "; the request was sent once and NOT retried: its outcome is unknown"
                elif attempt > 1:
                    exc.reason += " (%d attempts)" % attempt
                exc.reason = self.redact(exc.reason)
                raise
            status = resp.status_code
            if idempotent and status in self.RETRY_STATUSES and attempt <= self.max_retries:
                self.stats["retries"] += 1
                self.sleep(self._delay(attempt - 1, status))
                continue
            try:
                data = classify_response(method, path, status, resp.headers.get("Content-Type"), content, attempt)
            except CapitalComError as exc:
                if (
                    exc.kind == "session"
                    and auth
                    and relogin
                    and idempotent
                    and not relogged
                    and self._identifier is not None
                ):
                    relogged = True
                    self.stats["relogins"] += 1
                    self._forget_tokens()
                    self.login()
                    continue
                if exc.kind == "session" and relogged:
                    exc.reason += "; one re-login did not help"
                exc.reason = self.redact(exc.reason)
                raise
            return Response(status, data, elapsed, attempt)

    def _forget_tokens(self):
        self._cst = None
        self._security_token = None

    # -- session ----------------------------------------------------------------------------
    def login(self):
        """POST /session (optionally with the encrypted password). Tokens stay in this object only."""
        missing = [
            name
            for name, value in (
                ("api_key", self._api_key),
                ("identifier", self._identifier),
                ("password", self._password),
            )
            if not value
        ]
        if missing:
            raise CapitalComError(
                "missing Capital.com credentials: %s (set the option(s), or CAPITAL_COM_API_KEY, "
                "CAPITAL_COM_IDENTIFIER and CAPITAL_COM_PASSWORD in the environment)" % ", ".join(missing),
                "config",
            )
        password, encrypted = self._password, False
        if self.encrypted_password:
            if not HAS_CRYPTOGRAPHY:
                encrypt_password(password, "", 0)  # raises the missing-library error
            key = self.request("GET", "/session/encryptionKey", auth=False).data
            if not isinstance(key, dict) or not key.get("encryptionKey") or key.get("timeStamp") is None:
                raise CapitalComError(
                    "GET /session/encryptionKey: the answer has no encryptionKey/timeStamp", "invalid_response"
                )
            password, encrypted = encrypt_password(self._password, key["encryptionKey"], key["timeStamp"]), True
        self.login_limiter.acquire()
        body = {"identifier": self._identifier, "password": password, "encryptedPassword": encrypted}
        attempt = 0
        while True:
            attempt += 1
            try:
                resp, content, elapsed = self._send_once("POST", "/session", False, body)
            except CapitalComError as exc:
                # a login places no order: a connection failure may be retried like a GET
                if exc.kind == "connection" and attempt <= self.max_retries:
                    self.sleep(self._delay(attempt - 1))
                    continue
                exc.reason = self.redact(exc.reason)
                raise
            if resp.status_code in self.RETRY_STATUSES and attempt <= self.max_retries:
                self.stats["retries"] += 1
                self.sleep(self._delay(attempt - 1, resp.status_code))
                self.login_limiter.acquire()
                continue
            try:
                data = classify_response(
                    "POST", "/session", resp.status_code, resp.headers.get("Content-Type"), content, attempt
                )
            except CapitalComError as exc:
                exc.reason = self.redact(exc.reason)
                raise
            cst, sec = resp.headers.get("CST"), resp.headers.get("X-SECURITY-TOKEN")
            if not cst or not sec:
                raise CapitalComError(
                    "POST /session: HTTP %d without the CST and X-SECURITY-TOKEN headers: "
                    "cannot authenticate later calls" % resp.status_code,
                    "invalid_response",
                    status=resp.status_code,
                    method="POST",
                    path="/session",
                )
            self._cst, self._security_token = cst, sec
            self.account = data if isinstance(data, dict) else {}
            self.stats["logins"] += 1
            return Response(resp.status_code, self.account, elapsed, attempt)

    def stream_login(self):
        """``(streamingHost, cst, securityToken)`` of this session, for the WebSocket price stream (which carries
        the tokens in each message); None before a login."""
        if not self.logged_in:
            return None
        return (self.account or {}).get("streamingHost"), self._cst, self._security_token

    def logout(self):
        """DELETE /session; True when the broker confirmed. Tokens are forgotten either way."""
        if not self.logged_in:
            return False
        try:
            self.request("DELETE", "/session", idempotent=False, relogin=False)
            return True
        finally:
            self._forget_tokens()
            with suppress(Exception):  # closing a pool must never mask the real outcome
                self.http.close()

    # -- read-only API --------------------------------------------------------------------
    def server_time(self):
        return self.request("GET", "/time", auth=False)

    def ping(self):
        return self.request("GET", "/ping")

    def accounts(self):
        return self.request("GET", "/accounts")

    def market(self, epic):
        # an epic is a path segment: "../session" or "a/b" must not reach another endpoint
        return self.request("GET", "/markets/%s" % quote(str(epic), safe=""))

    def markets(self, epics):
        return self.request("GET", "/markets?epics=%s" % ",".join(quote(str(e), safe="") for e in epics))

    def positions(self):
        return self.request("GET", "/positions")

    def working_orders(self):
        return self.request("GET", "/workingorders")

    def confirm(self, deal_reference):
        return self.request("GET", "/confirms/%s" % deal_reference)

    # -- trading (never retried) ----------------------------------------------------------------
    def open_position(self, epic, direction, size, **extra):
        """POST /positions, sent exactly once. Returns the Response (data: ``{"dealReference"}``); the outcome
        comes from confirm(). A timeout is an ``order_outcome_unknown`` error: the position may exist."""
        return self._trade("POST", "/positions", dict(extra, epic=epic, direction=direction, size=size))

    def close_position(self, deal_id):
        """DELETE /positions/{dealId}, sent exactly once. Returns the Response (data: ``{"dealReference"}``)."""
        return self._trade("DELETE", "/positions/%s" % quote(str(deal_id), safe=""))

    def _trade(self, method, path, body=None):
        self.trade_limiter.acquire()
        try:
            return self.request(method, path, body=body, idempotent=False, relogin=False)
        finally:  # the broker spaces trade requests by when it handled them: count the 0.1 s from the answer
            self.trade_limiter.restart_last()


# the options of CAPITAL_COM_ARG_SPEC that are CapitalComClient's keywords of the same name
CLIENT_OPTIONS = ("api_key", "identifier", "password", "encrypted_password", "timeout", "validate_certs")


def client_from_params(base_url, params):
    """A ``CapitalComClient`` for ``base_url`` (see ``live_guard``) with the login and timeouts of ``params``."""
    return CapitalComClient(base_url, **{name: params[name] for name in CLIENT_OPTIONS})


# -- reading the broker's answers -------------------------------------------------------------------
def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def parse_broker_time(text):
    """'2022-04-06T13:17:42.113' (no zone) -> seconds since the epoch, read as UTC; None if unparsable."""
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not match:
        return None
    base = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + float(match.group(2) or 0)


def quote_age(snapshot, broker_now):
    """(age in seconds, basis) of a market snapshot's last update, or (None, reason)."""
    utc = parse_broker_time(snapshot.get("updateTimeUTC"))
    if utc is not None:
        return max(0.0, broker_now - utc), "updateTimeUTC"
    local = parse_broker_time(snapshot.get("updateTime"))
    if local is None:
        return None, "no updateTime in the snapshot"
    raw = broker_now - local
    # updateTime is broker-local, a whole number of hours ahead of UTC (observed +2 and +3)
    for hours in range(0, 15):
        if raw + hours * 3600 >= -60:
            return max(0.0, raw + hours * 3600), "updateTime (broker local, UTC+%d h assumed)" % hours
    return None, "updateTime lies more than 14 h in the future"
