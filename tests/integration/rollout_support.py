"""Shared helpers of the rollout tests and benchmarks (no tests, no fixtures here: those are in
rollout_fixtures.py).

Test images are tiny busybox images built once per session from ``tradeops/busybox:1.35``:
``t-ro-app:<tag>`` serving ``/health`` and ``/`` (its version) on port 8000 with a 1 s
HEALTHCHECK. Modes: ``good``, ``unhealthy`` (/health is 404 -> health check fails),
``crash`` (exits 3 at start). ``t-ro-ka:<tag>`` is the same app in Python with HTTP/1.1 keep-alive (busybox
httpd closes every connection, so it never shows what a proxy does to a persistent one). ``Load`` is the load
generator of the keep-alive tests and the benchmarks: a separate process, open loop at a fixed rate.
``Watcher`` counts the running instances of a service; ``descendants`` lists a process's descendants. Every
container, network and state root a test creates is named ``t-ro-<random>`` and removed by the test that
created it.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import docker as docker_sdk

APP_SH = r"""
busybox mkdir -p /tmp/www
echo "$APP_VERSION" > /tmp/www/index.html
echo "starting app $APP_VERSION mode $APP_MODE"
case "$APP_MODE" in
  crash) echo "fatal: cannot open /run/secrets/db_password" >&2; exit 3 ;;
  unhealthy) ;;
  *) echo ok > /tmp/www/health ;;
esac
httpd -f -p 8000 -h /tmp/www &
trap 'kill $!; exit 0' TERM INT
wait
"""

DOCKERFILE = """
FROM tradeops/busybox:1.35
ARG VERSION
ARG MODE=good
LABEL t-ro.test-image=1
ENV APP_VERSION=$VERSION APP_MODE=$MODE
COPY app.sh /app.sh
RUN busybox chmod 1777 /tmp
USER 65534:65534
HEALTHCHECK --interval=1s --timeout=5s --retries=3 --start-period=1s \\
  CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/health"]
CMD ["sh", "/app.sh"]
"""

IMAGES = {"1": "good", "2": "good", "3": "good", "unhealthy": "unhealthy", "crash": "crash"}


KEEPALIVE_APP = r"""
import http.server, os, signal, sys
VERSION = os.environ["APP_VERSION"].encode() + b"\n"
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # persistent connections, as the reference bot's HTTP face
    def do_GET(self):
        if self.path == "/metrics":  # what Prometheus scrapes through the proxy in the benchmark
            body = b'app_info{version="' + VERSION.strip() + b'"} 1\n'
        else:
            body = b"ok\n" if self.path == "/health" else VERSION
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("", 8000), App)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("starting keep-alive app", os.environ["APP_VERSION"], flush=True)
server.serve_forever()
"""

KEEPALIVE_DOCKERFILE = """
FROM tradeops/base:bookworm
ARG VERSION
LABEL t-ro.test-image=1
ENV APP_VERSION=$VERSION
COPY app.py /app.py
USER 65534:65534
HEALTHCHECK --interval=1s --timeout=5s --retries=3 --start-period=1s \\
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python3", "/app.py"]
"""


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def build_test_images() -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="t-ro-img-") as ctx:
        Path(ctx, "Dockerfile").write_text(DOCKERFILE)
        Path(ctx, "app.sh").write_text(APP_SH)
        for tag, mode in IMAGES.items():
            docker(
                "build",
                "-q",
                "-t",
                f"t-ro-app:{tag}",
                "--build-arg",
                f"VERSION={tag}",
                "--build-arg",
                f"MODE={mode}",
                ctx,
            )
    return {tag: f"t-ro-app:{tag}" for tag in IMAGES}


def build_keepalive_images(tags=("1", "2")) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="t-ro-img-") as ctx:
        Path(ctx, "Dockerfile").write_text(KEEPALIVE_DOCKERFILE)
        Path(ctx, "app.py").write_text(KEEPALIVE_APP)
        for tag in tags:
            docker("build", "-q", "-t", f"t-ro-ka:{tag}", "--build-arg", f"VERSION={tag}", ctx)
    return {tag: f"t-ro-ka:{tag}" for tag in tags}


class Stack:
    """A throw-away stack: unique name, state root in a tmp dir, cleanup of what it created."""

    def __init__(self, tmp_path: Path):
        self.name = "t-ro-" + secrets.token_hex(3)
        self.root = tmp_path / "state"
        self.root.mkdir()
        self.secrets = tmp_path / "secrets"
        self.secrets.mkdir()

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def args(self, service: str, **kw) -> dict:
        base = {
            "stack": self.name,
            "state_root": str(self.root),
            "service": service,
            "pull": "never",
            "secrets_dir": str(self.secrets),
            "resources": {"memory": "32m", "cpus": 0.2, "pids": 32},
            "health": {"timeout": 60},
            "stop_timeout": 2,
        }
        base.update(kw)
        return base

    def containers(self, service: str | None = None, all_: bool = True) -> list[dict]:
        flt = ["--filter", f"label=tradeops.stack={self.name}"]
        if service:
            flt += ["--filter", f"label=tradeops.service={service}"]
        ids = docker("ps", "-q", *(["-a"] if all_ else []), *flt).split()
        if not ids:
            return []
        # a container removed between ps and inspect is skipped (inspect still prints the others)
        return json.loads(docker("inspect", *ids, check=False) or "[]")

    def running(self, service: str) -> list[str]:
        return sorted(
            c["Name"].lstrip("/")
            for c in self.containers(service)
            if c["State"]["Running"] and c["Config"]["Labels"].get("tradeops.role") == "service"
        )

    def audit(self) -> list[dict]:
        path = self.dir / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def write_block(self):
        (self.dir / "blocks").mkdir(parents=True, exist_ok=True)
        # the record paper_block writes (epoch seconds): a malformed one stops rollouts with its own error
        started = time.time()
        block = {
            "id": "blk-" + secrets.token_hex(2),
            "operator": "alice",
            "reason": "paper week 47",
            "started_at": started,
            "planned_end": started + 3 * 86400,
            "status": "active",
        }
        (self.dir / "blocks" / "active.json").write_text(json.dumps(block))
        return block

    def cleanup(self):
        ids = docker("ps", "-aq", "--filter", f"label=tradeops.stack={self.name}").split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        for net in docker("network", "ls", "-q", "--filter", f"name={self.name}").split():
            docker("network", "rm", net, check=False)


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return None, str(exc)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


LOCAL = {"ANSIBLE_TRANSPORT": "local"}


def run_task(module: str, args: dict, check: bool = False, diff: bool = False, verbosity: int = 0, env=None):
    """Run one task on localhost (local connection) and return (result dict, PlaybookRun)."""
    import sys

    from conftest import run_playbook

    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "tasks": [
                {
                    "name": "under test",
                    module: args,
                    "ignore_errors": True,
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            ],
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="t-ro-", delete=False) as handle:
        json.dump(play, handle)
    try:
        run = run_playbook(
            handle.name,
            inventory="localhost,",
            check=check,
            diff=diff,
            verbosity=verbosity,
            json_output=verbosity == 0,
            env={**LOCAL, **(env or {})},
        )
    finally:
        Path(handle.name).unlink()
    if verbosity:
        return None, run
    if not run.results:
        raise AssertionError(f"ansible-playbook produced no result (rc={run.rc}):\n{run.output[-3000:]}")
    return run.task("under test"), run


def rollout(args: dict, **kw) -> dict:
    return run_task("tradeops.stack.rollout", args, **kw)[0]


def docker_events(since: float, until: float, stack: str) -> list[str]:
    out = docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--filter",
        f"label=tradeops.stack={stack}",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    )
    # the engine's own healthcheck execs and the HAProxy proxy's state read are not writes; anything else is
    own = (
        "exec_create: wget",
        "exec_start: wget",
        "exec_die",
        "health_status",
        "exec_create: curl",
        "exec_start: curl",
        "/dev/tcp/127.0.0.1/8081",  # the HAProxy proxy's healthcheck
        "runtime show servers state tradeops_backend",
    )
    return [line for line in out.splitlines() if line.strip() and not any(o in line for o in own)]


# -- watching the engine and the controller's processes (test_rollout_bot, test_rollout_faults, tests/faults) --
class Watcher(threading.Thread):
    """Polls the engine every 50 ms and records the largest number of running instances of a service."""

    def __init__(self, stack: str, service: str):
        super().__init__(daemon=True)
        self.client = docker_sdk.from_env()
        self.filters = {"label": [f"tradeops.stack={stack}", f"tradeops.service={service}", "tradeops.role=service"]}
        self.max_running = 0
        self.samples = 0
        self.overlaps = []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            names = [c.name for c in self.client.containers.list(filters=self.filters)]
            self.samples += 1
            if len(names) > self.max_running:
                self.max_running = len(names)
            if len(names) > 1:
                self.overlaps.append(names)
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.join()


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    out, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        out += children
        frontier = children
    return out


# -- load generator (separate process) ------------------------------------------------------
def _load(port: int, rate: float, stop, out_path: str, threads: int, keep_alive: bool, path: str = "/"):
    records = []
    lock = threading.Lock()
    period = threads / rate
    headers = {} if keep_alive else {"Connection": "close"}

    def worker(offset):
        nxt = time.monotonic() + offset
        conn = None
        while not stop.is_set():
            now = time.monotonic()
            if now < nxt:
                time.sleep(nxt - now)
            nxt = max(nxt + period, time.monotonic())  # open loop at the target rate, no catch-up bursts
            t0 = time.monotonic()
            ok, err = False, None
            try:
                # keep-alive: one connection per thread, reused until it fails (like a requests.Session, which
                # does not retry a request whose reused connection was closed under it)
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=3)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                err = None if ok else "HTTP %d" % resp.status
                if not keep_alive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                err = type(exc).__name__
                conn.close()
                conn = None
            t1 = time.monotonic()
            with lock:
                records.append((t0, t1 - t0, ok, err))

    pool = [threading.Thread(target=worker, args=(i * period / threads,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    Path(out_path).write_text(json.dumps(records))


class Load:
    """``with Load(port, rate, keep_alive=True) as load: ...`` then ``load.summary()``. ``path``: what each
    request GETs (a 200 is a success, anything else a failure)."""

    def __init__(self, port: int, rate: float, keep_alive: bool = False, threads: int = 16, path: str = "/"):
        self.stop = mp.Event()
        fd, self.path = tempfile.mkstemp(prefix="t-ro-load-", suffix=".json")
        os.close(fd)
        args = (port, rate, self.stop, self.path, threads, keep_alive, path)
        self.proc = mp.Process(target=_load, args=args, daemon=True)

    def __enter__(self):
        self.proc.start()
        time.sleep(1.0)  # steady state before the change
        return self

    def __exit__(self, *exc):
        time.sleep(1.0)
        self.stop.set()
        self.proc.join(30)
        self.records = json.loads(Path(self.path).read_text())
        os.unlink(self.path)

    def summary(self) -> dict:
        rec = sorted(self.records)
        if not rec:
            return {"total": 0}
        lat = sorted(r[1] for r in rec)
        ok_ends = [r[0] + r[1] for r in rec if r[2]]
        gaps = [b - a for a, b in itertools.pairwise(ok_ends)]
        span = rec[-1][0] - rec[0][0]
        errors = {}
        for r in rec:
            if not r[2]:
                errors[r[3]] = errors.get(r[3], 0) + 1
        return {
            "total": len(rec),
            "failed": sum(1 for r in rec if not r[2]),
            "rate": round(len(rec) / span, 1) if span else None,
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
            "max_gap_between_successes_s": round(max(gaps), 3) if gaps else None,
            "errors": errors,
            "failed_at_s": [round(r[0] - rec[0][0], 2) for r in rec if not r[2]][:10],
            "loadavg_1m": round(os.getloadavg()[0], 1),  # the host is shared: read every figure with it
        }
