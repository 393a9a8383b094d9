"""Start the Capital.com emulator as a real process and drive its control endpoint (tests, benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVER = Path(__file__).resolve().parent / "server.py"


class EmulatorProcess:
    """``with EmulatorProcess() as emu: emu.base_url ...``: a server.py process on a free port."""

    def __init__(self, python: str = sys.executable, host: str = "127.0.0.1"):
        self.python = python
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [self.python, str(SERVER), "--host", self.host, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("emulator did not start: %s" % self.proc.stderr.read())
        self.port = json.loads(line)["port"]
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def root(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    @property
    def base_url(self) -> str:
        return self.root + "/api/v1"

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.root + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def control(self, **settings) -> dict:
        return self._call("POST", "/__emulator/control", settings)

    def reset(self) -> dict:
        return self._call("POST", "/__emulator/reset", {})

    def state(self) -> dict:
        return self._call("GET", "/__emulator/state")

    def wait_sessions_closed(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            active = self.state()["active_sessions"]
            if active == 0 or time.monotonic() > deadline:
                return active
            time.sleep(0.05)
