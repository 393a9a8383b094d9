"""_prometheus: the Prometheus HTTP API client against a tiny real HTTP server.

The server answers like Prometheus does (success with vector/scalar/matrix, empty
results, status=error with HTTP 400/422, garbage, a hang), so each branch of
the client is exercised over a real socket.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import Prometheus, PrometheusError

ROUTES: dict[str, tuple[int, bytes | None]] = {}
SEEN: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        SEEN.append(dict(params, path=url.path))
        key = params.get("query", url.path)
        status, body = ROUTES.get(key, (404, b"404 page not found"))
        if body is None:  # hang past the client's timeout
            time.sleep(1.5)
            body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def prom():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Prometheus("http://127.0.0.1:%d/" % server.server_port, timeout=0.5)
    server.shutdown()
    server.server_close()


def ok(data):
    return 200, json.dumps({"status": "success", "data": data}).encode()


def test_vector_samples_with_labels_and_values(prom):
    ROUTES["up"] = ok(
        {
            "resultType": "vector",
            "result": [
                {"metric": {"job": "a"}, "value": [1700000000.0, "1"]},
                {"metric": {"job": "b"}, "value": [1700000000.0, "0"]},
            ],
        }
    )
    assert prom.query("up") == [({"job": "a"}, 1.0), ({"job": "b"}, 0.0)]
    assert prom.total("up") == 1.0


def test_empty_result_is_no_data_not_zero(prom):
    ROUTES["absent_metric"] = ok({"resultType": "vector", "result": []})
    assert prom.query("absent_metric") == []
    assert prom.total("absent_metric") is None
    ROUTES["zero_metric"] = ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, "0"]}]})
    assert prom.total("zero_metric") == 0.0


def test_nan_samples_are_not_activity(prom):
    ROUTES["nan_metric"] = ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]})
    assert math.isnan(prom.query("nan_metric")[0][1])
    assert prom.total("nan_metric") is None


def test_scalar_result_and_time_parameter(prom):
    ROUTES["scalar(1)"] = ok({"resultType": "scalar", "result": [1700000000.0, "1"]})
    assert prom.query("scalar(1)", at=1700000000) == [({}, 1.0)]
    assert SEEN[-1]["time"] == "1700000000.000"


def test_range_query_points_and_missing_steps(prom):
    ROUTES["rate(x[1m])"] = ok(
        {
            "resultType": "matrix",
            "result": [
                {"metric": {"epic": "BTCUSD"}, "values": [[100, "1"], [110, "2"]]},
                {"metric": {"epic": "OIL_CRUDE"}, "values": [[100, "3"], [120, "4"]]},
            ],
        }
    )
    series = prom.query_range("rate(x[1m])", 100, 120, 10)
    assert series[0] == ({"epic": "BTCUSD"}, [(100.0, 1.0), (110.0, 2.0)])
    assert SEEN[-1]["step"] == "10" and SEEN[-1]["start"] == "100.000" and SEEN[-1]["end"] == "120.000"
    # per-timestamp sum; 110 has only BTCUSD, 120 only OIL_CRUDE: a missing point is not zero
    assert prom.series_total("rate(x[1m])", 100, 120, 10) == [(100.0, 4.0), (110.0, 2.0), (120.0, 4.0)]


def test_range_query_rejects_bad_step_before_any_request(prom):
    before = len(SEEN)
    with pytest.raises(PrometheusError, match="step must be positive"):
        prom.query_range("up", 0, 10, 0)
    assert len(SEEN) == before


def test_prometheus_error_payload_is_readable(prom):
    ROUTES["sum(("] = (
        400,
        json.dumps({"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "("'}).encode(),
    )
    with pytest.raises(PrometheusError) as err:
        prom.query("sum((")
    assert err.value.kind == "bad_data"
    assert "rejected query 'sum(('" in str(err.value) and "parse error" in str(err.value)


def test_http_error_without_json_names_status(prom):
    with pytest.raises(PrometheusError, match="HTTP 404"):
        prom.query("unknown_route_here")
    ROUTES["proxy_err"] = (502, b"<html>bad gateway</html>")
    with pytest.raises(PrometheusError, match="HTTP 502.*bad gateway") as err:
        prom.query("proxy_err")
    assert err.value.kind == "http"


def test_garbage_body_is_a_json_error(prom):
    ROUTES["garbage"] = (200, b"this is not json")
    with pytest.raises(PrometheusError, match="not JSON") as err:
        prom.query("garbage")
    assert err.value.kind == "json"


def test_range_vector_in_instant_query_explains_itself(prom):
    ROUTES["x[5m]"] = ok({"resultType": "matrix", "result": []})
    with pytest.raises(PrometheusError, match="range vector"):
        prom.query("x[5m]")


def test_timeout_is_named(prom):
    ROUTES["slow"] = (200, None)
    with pytest.raises(PrometheusError, match="did not answer.*prometheus_timeout") as err:
        prom.query("slow")
    assert err.value.kind == "timeout"


def test_connection_refused_is_named():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = Prometheus("http://127.0.0.1:%d" % port, timeout=1)
    with pytest.raises(PrometheusError, match="cannot reach Prometheus") as err:
        client.query("up")
    assert err.value.kind == "connection"
    assert client.ready() is False


def test_bad_url_is_a_config_error():
    with pytest.raises(PrometheusError, match="prometheus_url 'localhost:9090' is not a URL"):
        Prometheus("localhost:9090")
