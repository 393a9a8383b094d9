"""Unit tests of the Capital.com client: error taxonomy, retry policy, re-login, rate limits.

Transport is real HTTP against the emulator process (tests/emulators/capital_com); only the
client's ``sleep`` is replaced where a test checks the backoff it asked for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._capital_com import (
    CapitalComClient,
    CapitalComError,
    RateLimiter,
    classify_response,
    describe_error_code,
    encrypt_password,
    live_guard,
    parse_broker_time,
    percentile,
    quote_age,
)

KEY, LOGIN, PASSWORD = "emulator-api-key", "trader@example.com", "emulator-password"


class RecordingSleep:
    """Stands in for time.sleep in retry tests: records the backoff delays the client asked for."""

    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def client(emu, **kw):
    kw.setdefault("timeout", 2.0)
    return CapitalComClient(emu.base_url, KEY, LOGIN, PASSWORD, **kw)


# -- taxonomy ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "ctype", "body", "kind", "needle"),
    [
        (401, "application/json", b'{"errorCode":"error.invalid.details"}', "auth", "identifier or the API-key"),
        (400, "application/json", b'{"errorCode":"error.null.api.key"}', "auth", "no API key was sent"),
        (401, "application/json", b'{"errorCode":"error.invalid.session.token"}', "session", "session expired"),
        (400, "application/json", b'{"errorCode":"error.null.client.token"}', "session", "no session token"),
        (404, "application/json", b'{"errorCode":"error.not-found.epic"}', "not_found", "does not exist"),
        (429, "application/json", b'{"errorCode":"error.too-many.requests"}', "rate_limited", "rate limited"),
        (400, "application/json", b'{"errorCode":"error.invalid.stoploss.minvalue: 17.146"}', "http", "value 17.146"),
        (
            500,
            "application/json",
            b'{"errorCode":"java.lang.NullPointerException"}',
            "server_error",
            "failed internally",
        ),
        (503, "application/json", b"", "server_error", "HTTP 503 service unavailable (empty body)"),
        (502, "text/html", b"<html><head><title>502 Bad Gateway</title></head></html>", "gateway", "'502 Bad Gateway'"),
        (504, "text/plain", b"upstream timed out", "server_error", "body not JSON"),
        (418, "application/json", b"{}", "http", "HTTP 418 HTTP error (no errorCode in the body)"),
        (429, "", b"", "rate_limited", "HTTP 429 too many requests (empty body)"),
    ],
)
def test_every_error_becomes_one_reason(status, ctype, body, kind, needle):
    with pytest.raises(CapitalComError) as err:
        classify_response("GET", "/ping", status, ctype, body)
    assert err.value.kind == kind
    assert needle in err.value.reason
    assert err.value.reason.startswith("GET /ping: HTTP %d" % status)
    assert "\n" not in err.value.reason


@pytest.mark.parametrize(
    ("body", "kind", "needle"),
    [
        (b"", "empty_body", "empty body where JSON was expected"),
        (b"   ", "empty_body", "empty body"),
        (b'{"status": "O', "non_json", "not JSON"),
        (b"\x8b\x00\xffgarbage", "non_json", "starts with '?garbage'"),
    ],
)
def test_success_status_with_unusable_body(body, kind, needle):
    with pytest.raises(CapitalComError) as err:
        classify_response("GET", "/accounts", 200, "application/json", body)
    assert err.value.kind == kind
    assert needle in err.value.reason


def test_success_body_is_parsed():
    assert classify_response("GET", "/ping", 200, "application/json", b'{"status":"OK"}') == {"status": "OK"}


def test_error_code_with_value_and_unknown_codes():
    assert describe_error_code("error.invalid.takeprofit.maxvalue: 31.817")[:2] == (
        "error.invalid.takeprofit.maxvalue",
        "31.817",
    )
    assert "invalid takeprofit maxvalue" in describe_error_code("error.invalid.takeprofit.maxvalue: 31.817")[2]
    assert describe_error_code("whatever")[2] == "broker error"


# -- live guard ---------------------------------------------------------------------------------
def test_live_guard():
    assert live_guard({"environment": "demo", "base_url": None}, False)[0].startswith("https://demo-api-capital")
    with pytest.raises(CapitalComError, match="refusing to talk to the LIVE"):
        live_guard({"environment": "live", "base_url": None}, False)
    with pytest.raises(CapitalComError, match="refusing to talk to the LIVE"):
        live_guard({"environment": "demo", "base_url": "https://api-capital.backend-capital.com/api/v1"}, False)
    assert live_guard({"environment": "live", "base_url": None}, True) == (
        "https://api-capital.backend-capital.com/api/v1",
        True,
    )
    emulator = {"environment": "demo", "base_url": "http://127.0.0.1:8080/api/v1/", "emulator_hosts": ["127.0.0.1"]}
    assert live_guard(emulator, False) == ("http://127.0.0.1:8080/api/v1", False)
    # an address not named as an emulator is the live broker, refused before any connection
    with pytest.raises(CapitalComError, match="refusing to talk to the LIVE"):
        live_guard(dict(emulator, emulator_hosts=[]), False)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api-capital.backend-capital.com./api/v1",
        "https://demo-x@api-capital.backend-capital.com/api/v1",
        " https://api-capital.backend-capital.com/api/v1",
        "https://API-CAPITAL.backend-capital.com/api/v1",
    ],
)
def test_live_guard_refuses_the_edge_forms_of_the_live_host(base_url):
    with pytest.raises(CapitalComError) as err:
        live_guard({"environment": "demo", "base_url": base_url}, False)
    assert err.value.kind == "config" and "base_url" in str(err.value)


# -- rate limiter (logic, fake clock) ------------------------------------------------------------
class FakeClock:
    """A clock that only moves when the limiter sleeps (or the test sets ``now``); records each sleep."""

    def __init__(self, now=100.0):
        self.now, self.waits = now, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def test_rate_limiter_allows_ten_then_waits_for_the_window():
    clock = FakeClock()
    limiter = RateLimiter(10, window=1.05, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire()
    assert clock.waits == []
    limiter.acquire()
    assert clock.waits == [pytest.approx(1.05)]
    login = RateLimiter(1, window=1.05, clock=clock, sleep=clock.sleep)
    login.acquire()
    login.acquire()
    assert len(clock.waits) == 2


def test_rate_limiter_headroom_waits_until_a_whole_sequence_fits_without_taking_a_slot():
    clock = FakeClock()
    limiter = RateLimiter(10, window=1.0, clock=clock, sleep=clock.sleep)
    for step in range(8):  # eight requests, 0.1 s apart
        clock.now = 100.0 + step * 0.1
        limiter.acquire()
    limiter.headroom(2)
    assert clock.waits == []  # two more fit
    limiter.headroom(4)  # the two oldest must leave the window first
    assert clock.now == pytest.approx(101.1) and len(limiter.events) == 6
    limiter.headroom(50)  # more than the limit: the whole window, not forever
    assert len(limiter.events) == 0


def test_rate_limiter_restart_last_counts_the_window_from_the_answer():
    clock = FakeClock()
    trades = RateLimiter(1, window=0.105, clock=clock, sleep=clock.sleep)
    trades.acquire()
    clock.now += 0.08  # the broker answered 80 ms later
    trades.restart_last()
    trades.acquire()
    assert clock.waits == [pytest.approx(0.105)]  # 0.1 s from the answer, not from the send


# -- retries, re-login, rate limits over real HTTP ----------------------------------------------------
def test_get_is_retried_on_5xx_then_succeeds(emu):
    emu.control(faults={"GET /ping": {"status": 503, "count": 2}})
    sleep = RecordingSleep()
    c = client(emu, sleep=sleep)
    c.login()
    resp = c.ping()
    assert resp.data == {"status": "OK"}
    assert resp.attempts == 3
    assert c.stats["retries"] == 2
    assert len(sleep.delays) == 2
    assert emu.state()["counters"]["requests"]["GET /ping"] == 3


def test_get_retries_are_bounded(emu):
    emu.control(faults={"GET /ping": {"status": 502, "body": "html502"}})
    c = client(emu, sleep=RecordingSleep())
    c.login()
    with pytest.raises(CapitalComError) as err:
        c.ping()
    assert err.value.kind == "gateway"
    assert "after 3 attempts" in err.value.reason
    assert emu.state()["counters"]["requests"]["GET /ping"] == 3


def test_429_backs_off_at_least_one_second(emu):
    emu.control(faults={"GET /accounts": {"status": 429, "error_code": "error.too-many.requests", "count": 1}})
    sleep = RecordingSleep()
    c = client(emu, sleep=sleep)
    c.login()
    assert c.accounts().attempts == 2
    assert sleep.delays[-1] >= 1.0
    assert c.stats["rate_limited"] == 1


def test_order_post_is_never_retried(emu):
    emu.control(faults={"POST /positions": {"status": 503, "count": 5}})
    c = client(emu, sleep=RecordingSleep())
    c.login()
    with pytest.raises(CapitalComError) as err:
        c.open_position("BTCUSD", "BUY", 0.01)
    assert err.value.status == 503
    assert emu.state()["counters"]["requests"]["POST /positions"] == 1
    assert c.stats["retries"] == 0


def test_order_post_timeout_is_an_unknown_outcome_not_a_retry(emu):
    emu.control(faults={"POST /positions": {"hang_s": 2.5, "count": 1}})
    c = client(emu, timeout=0.5, sleep=RecordingSleep())
    c.login()
    with pytest.raises(CapitalComError) as err:
        c.open_position("BTCUSD", "BUY", 0.01)
    assert err.value.kind == "order_outcome_unknown"
    assert "NOT retried" in err.value.reason
    assert emu.state()["counters"]["requests"]["POST /positions"] == 1


def test_order_then_confirm(emu):
    emu.control(market_status={"BTCUSD": "TRADEABLE"})
    c = client(emu)
    c.login()
    ref = c.open_position("BTCUSD", "BUY", 0.01).data["dealReference"]
    assert c.confirm(ref).data["dealStatus"] == "ACCEPTED"
    assert len(c.positions().data["positions"]) == 1


def test_get_timeout_is_retried_and_reported(emu):
    emu.control(faults={"GET /ping": {"hang_s": 1.5}})
    c = client(emu, timeout=0.3, sleep=RecordingSleep())
    c.login()
    with pytest.raises(CapitalComError) as err:
        c.ping()
    assert err.value.kind == "timeout"
    assert "timed out after 0.3 s" in err.value.reason
    assert "(3 attempts)" in err.value.reason


def test_one_relogin_on_expired_session(emu):
    c = client(emu)
    c.login()
    emu.control(expire_sessions=True)
    assert c.ping().data == {"status": "OK"}
    assert c.stats["relogins"] == 1
    assert emu.state()["counters"]["logins"] == 2


def test_relogin_only_once(emu):
    c = client(emu)
    c.login()
    emu.control(session_ttl_s=0)
    with pytest.raises(CapitalComError) as err:
        c.ping()
    assert err.value.error_code == "error.invalid.session.token"
    assert "one re-login did not help" in err.value.reason
    assert c.stats["relogins"] == 1


def test_client_rate_limit_keeps_the_broker_from_saying_429(emu):
    c = client(emu)
    c.login()
    for _ in range(25):
        c.ping()
    assert emu.state()["counters"]["rate_limited"] == 0
    assert c.limiter.waited > 0


def test_emulator_enforces_the_broker_rate_limit(emu):
    c = client(emu, requests_per_second=1000, max_retries=0)
    c.login()
    with pytest.raises(CapitalComError) as err:
        for _ in range(30):
            c.ping()
    assert err.value.kind == "rate_limited"
    assert err.value.error_code == "error.too-many.requests"


def test_logins_are_spaced_by_the_client(emu):
    c = client(emu)
    c.login()
    c.login()
    assert emu.state()["counters"]["rate_limited"] == 0
    assert emu.state()["counters"]["logins"] == 2


def test_encrypted_password_login(emu):
    c = client(emu, encrypted_password=True)
    c.login()
    assert c.ping().data == {"status": "OK"}
    assert emu.state()["counters"]["requests"]["GET /session/encryptionKey"] == 1


def test_encrypted_password_with_wrong_password_is_rejected(emu):
    c = CapitalComClient(emu.base_url, KEY, LOGIN, "wrong-password", encrypted_password=True)
    with pytest.raises(CapitalComError, match="error.invalid.details"):
        c.login()


def test_encrypt_password_rejects_a_bad_key():
    with pytest.raises(CapitalComError, match="cannot be used"):
        encrypt_password("x", "bm90IGEga2V5", 1)


def test_logout_invalidates_tokens(emu):
    c = client(emu)
    c.login()
    assert c.logout() is True
    assert emu.state()["active_sessions"] == 0
    assert not c.logged_in


def test_missing_credentials_named():
    c = CapitalComClient("http://127.0.0.1:9/api/v1", None, "x", None)
    with pytest.raises(CapitalComError, match="missing Capital.com credentials: api_key, password"):
        c.login()


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = CapitalComClient("http://127.0.0.1:%d/api/v1" % port, KEY, LOGIN, PASSWORD, sleep=RecordingSleep())
    with pytest.raises(CapitalComError) as err:
        c.server_time()
    assert err.value.kind == "connection"
    assert "Connection refused" in err.value.reason
    assert "(3 attempts)" in err.value.reason


def test_redaction_of_secrets_in_reasons(emu):
    c = client(emu)
    c.login()
    assert c.redact("key %s pw %s cst %s" % (KEY, PASSWORD, c._cst)) == "key ******** pw ******** cst ********"


# -- TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    tmp = tmp_path_factory.mktemp("tls")
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"serverTime": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d/api/v1" % httpd.server_address[1]
    httpd.shutdown()


def test_tls_error_is_one_reason(tls_server):
    c = CapitalComClient(tls_server, KEY, LOGIN, PASSWORD, sleep=RecordingSleep())
    with pytest.raises(CapitalComError) as err:
        c.server_time()
    assert err.value.kind == "tls"
    assert "certificate verify failed" in err.value.reason
    assert "validate_certs" in err.value.reason
    c = CapitalComClient(tls_server, KEY, LOGIN, PASSWORD, validate_certs=False)
    assert c.server_time().data == {"serverTime": 1}


# -- module helpers -------------------------------------------------------------------------------------
def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert percentile([1, 2, 3, 4, 5], 0.95) == pytest.approx(4.8)


def test_quote_age_reads_utc_and_broker_local_times():
    now = parse_broker_time("2022-04-06T11:17:52.113")
    assert quote_age({"updateTimeUTC": "2022-04-06T11:17:42.113"}, now) == (pytest.approx(10.0), "updateTimeUTC")
    age, basis = quote_age({"updateTime": "2022-04-06T13:17:42.113"}, now)  # recorded: local = UTC+2
    assert age == pytest.approx(10.0)
    assert "UTC+2" in basis
    age, _ = quote_age({"updateTime": "2022-04-06T11:07:52.113"}, now)  # UTC+0 and 10 minutes old
    assert age == pytest.approx(600.0)
    assert quote_age({}, now) == (None, "no updateTime in the snapshot")


def test_emulator_requires_the_json_content_type(emu):
    import requests

    resp = requests.post(
        emu.base_url + "/session",
        data='{"identifier": "%s", "password": "%s"}' % (LOGIN, PASSWORD),
        headers={"X-CAP-API-KEY": KEY, "Content-Type": "text/plain"},
        timeout=5,
    )
    with pytest.raises(CapitalComError, match="HTTP 415 error.unsupported.media.type"):
        classify_response("POST", "/session", resp.status_code, resp.headers["Content-Type"], resp.content)
