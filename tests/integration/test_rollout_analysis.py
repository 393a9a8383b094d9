"""Metric analysis before and after promotion against a small Prometheus HTTP API emulator
(/api/v1/query answering from a table the test controls): pass, fail, no data, failure after promotion."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from rollout_support import rollout

pytestmark = pytest.mark.slow


class FakePrometheus(ThreadingHTTPServer):
    """Answers instant queries: ``answers[query]`` is a list of values (empty = no data) or a callable."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = {}
        self.calls = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer(parse_qs(urlparse(self.path).query))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer(parse_qs(body))

    def _answer(self, params):
        query = params.get("query", [""])[0]
        server = self.server
        server.calls[query] = server.calls.get(query, 0) + 1
        values = server.answers.get(query, [])
        if callable(values):
            values = values(server.calls[query])
        result = [{"metric": {"i": str(i)}, "value": [0, str(v)]} for i, v in enumerate(values)]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def prom():
    server = FakePrometheus()
    yield server
    server.shutdown()


def analysis(prom, query, **kw):
    cfg = {
        "prometheus_url": prom.url,
        "interval": 1,
        "checks": [{"name": "error rate", "query": query, "condition": "<", "threshold": 0.5}],
    }
    cfg.update(kw)
    return cfg


def test_metric_analysis(stack, app_images, prom):
    prom.answers = {"ok": [0.0, 0.1], "bad": [0.0, 3.0], "none": [], "flips": lambda n: [0.0] if n <= 2 else [9.0]}
    args = lambda image, **kw: stack.args("app", image=image, strategy="start_first", **kw)  # noqa: E731

    good = rollout(args(app_images["1"], analysis=analysis(prom, "ok", min_samples=2, bake=2)))
    assert not good.get("failed"), good.get("msg")
    assert good["analysis"]["pre"]["result"] == "pass" and good["analysis"]["pre"]["measurements"] >= 2
    assert good["analysis"]["bake"]["result"] == "pass"

    bad = rollout(args(app_images["2"], analysis=analysis(prom, "bad")))
    assert bad.get("failed") and bad["rolled_back"] and bad["restored_release"] == good["release"]
    assert "metric analysis (pre) failed" in bad["reason"] and "3.0" in bad["reason"]

    # no data is inconclusive: never a pass, and with inconclusive=fail never a silent wait either
    nodata = rollout(args(app_images["2"], analysis=analysis(prom, "none", inconclusive="fail")))
    assert nodata.get("failed") and nodata["rolled_back"] and "inconclusive" in nodata["reason"]
    assert "no data" in nodata["reason"]
    waited = rollout(args(app_images["2"], analysis=analysis(prom, "none", inconclusive_timeout=2)))
    assert waited.get("failed") and "inconclusive for 2s" in waited["reason"]
    passed = rollout(args(app_images["2"], analysis=analysis(prom, "none", inconclusive="pass")))
    assert not passed.get("failed") and any("no data treated as a pass" in w for w in passed["warnings"])

    # failure during the bake, after promotion: rolled back to the release before
    late = rollout(args(app_images["3"], analysis=analysis(prom, "flips", bake=5)))
    assert late.get("failed") and late["rolled_back"] and "metric analysis (bake) failed" in late["reason"]
    assert late["restored_release"] == passed["release"], late["reason"]
    assert stack.running("app") == [f"{stack.name}-app"]
    running = stack.containers("app", all_=False)
    assert running[0]["Config"]["Labels"]["tradeops.release"] == passed["release"]
