#!/usr/bin/env python3
"""A tiny Alertmanager webhook receiver for tests (standard library only).

POST <any path>   stores the JSON body (Alertmanager's webhook payload)
GET  /alerts      returns every alert received so far: [{"status", "labels", "annotations", ...}]
GET  /health      200
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALERTS = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": "invalid JSON"})
            return
        with LOCK:
            ALERTS.extend(payload.get("alerts", []))
        self._send(200, {"received": len(payload.get("alerts", []))})

    def do_GET(self):
        if self.path.startswith("/alerts"):
            with LOCK:
                self._send(200, list(ALERTS))
        else:
            self._send(200, {"status": "ok"})

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook: " + (fmt % args) + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104 - inside its own container
