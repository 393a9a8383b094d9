#!/usr/bin/env python3
"""Rollout benchmarks on the real engine. Prints numbers; asserts nothing about time.

    .venv/bin/python tests/bench/bench_rollout.py [--rate 250] [--only zero_downtime,switch,noop,proxy] [--repeat N]
        [--switches 10] [--proxy-parts kinds,migration,baseline]

1. zero downtime: a separate process sends a steady load through the blue/green proxy while an upgrade and
   then a rollback run; the same upgrade is then done with community.docker.docker_container recreating a
   container that publishes the port directly. Total and failed requests, p99 latency, longest gap between
   two successful responses.
2. switch gap and rollback time per strategy: exclusive switch gap (no instance serving), automatic rollback
   (unhealthy image) and manual rollback wall time for exclusive, start_first and blue_green.
3. no-op re-run of 10 services: one playbook with tradeops.stack.rollout vs one with
   community.docker.docker_container over the same number of containers.
4. proxy: keep-alive and ``Connection: close`` clients at --rate through --switches upgrades and as many
   rollbacks, through the HAProxy proxy and the nginx one, a keep-alive app behind them and Prometheus
   scraping the app through the proxy every second; the same clients through community.docker.docker_container
   recreates (the baseline), and through a migration of the proxy from nginx to HAProxy.
Everything it creates is named t-ro-bench-*, under a temporary state root, and removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import run_playbook  # noqa: E402
from rollout_support import (  # noqa: E402
    LOCAL,
    Load,
    Stack,
    build_keepalive_images,
    build_test_images,
    docker,
    http_get,
    rollout,
    wait_for,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn, *a, **kw):
    t = time.monotonic()
    res = fn(*a, **kw)
    return res, round(time.monotonic() - t, 2)


# -- 1. zero downtime ------------------------------------------------------------------------
def bench_zero_downtime(images, rate, tmp):
    stack = Stack(tmp / "zd")
    stack.name = "t-ro-bench-" + secrets.token_hex(2)
    port = free_port()
    args = lambda image, **kw: stack.args(  # noqa: E731
        "api",
        image=image,
        strategy="blue_green",
        proxy={"listen": port, "port": 8000, "drain": 2},
        health={"timeout": 30, "http": {"port": 8000, "path": "/health"}},
        # sized for the load: a 0.2-CPU instance misses its 1 s health checks at 250 req/s (and is rolled back)
        resources={"memory": "64m", "cpus": 1.0, "pids": 64},
        healthcheck={
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/health"],
            "interval": "1s",
            "timeout": "3s",
            "retries": 3,
        },
        **kw,
    )
    out = {}
    try:
        first = rollout(args(images["1"]))
        assert not first.get("failed"), first.get("msg")
        # the same load with no change at all: what this host gives without any switch (noise floor)
        with Load(port, rate) as load:
            time.sleep(15)
        out["blue_green steady, no change (baseline)"] = load.summary()
        with Load(port, rate) as load:
            up, wall = timed(rollout, args(images["2"]))
        assert not up.get("failed"), up.get("msg")
        out["blue_green upgrade"] = {**load.summary(), "rollout_s": wall}
        with Load(port, rate) as load:
            back, wall = timed(rollout, args(None, state="rolled_back"))
        assert not back.get("failed"), back.get("msg")
        out["blue_green rollback"] = {**load.summary(), "rollout_s": wall}
    finally:
        stack.cleanup()

    # the same upgrade with community.docker.docker_container recreating a container that publishes the port
    name = "t-ro-bench-dc-" + secrets.token_hex(2)
    port2 = free_port()
    book = tmp / "dc.yml"

    def dc(image):
        _docker_container(book, name, image, port2)

    try:
        dc(images["1"])
        time.sleep(2)
        with Load(port2, rate) as load:
            _, wall = timed(dc, images["2"])
        out["docker_container recreate"] = {**load.summary(), "rollout_s": wall}
    finally:
        docker("rm", "-f", name, check=False)
    return out


# -- 4. the edge proxy under keep-alive load ------------------------------------------------------
SCRAPE_CONFIG = """global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: app
    static_configs: [{targets: ["%s:8080"]}]
"""


class Scraper:
    """Prometheus on the stack's network scraping the app through the proxy every second."""

    def __init__(self, stack_name: str, tmp: Path):
        self.name = "t-ro-bench-prom-" + secrets.token_hex(2)
        self.stack, self.dir, self.port = stack_name, tmp / self.name, free_port()

    def __enter__(self):
        self.dir.mkdir(mode=0o755)  # read by Prometheus's own user
        (self.dir / "prometheus.yml").write_text(SCRAPE_CONFIG % f"{self.stack}-app-proxy")
        (self.dir / "prometheus.yml").chmod(0o644)
        network = docker(
            "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", f"{self.stack}-app-proxy"
        )
        docker(
            "run",
            "-d",
            "--name",
            self.name,
            "--network",
            network,
            "-p",
            f"127.0.0.1:{self.port}:9090",
            "--tmpfs",
            # the image has its own /prometheus (root, 0755), whose mode a tmpfs mount inherits: own it instead
            "/prometheus:rw,uid=10090,gid=10090",
            "-v",
            f"{self.dir}:/etc/prometheus:ro",
            "tradeops/prometheus:2.42-bookworm",
        )
        if not wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, timeout=60):
            raise AssertionError("Prometheus did not start: %s" % docker("logs", "--tail", "20", self.name))
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        docker("rm", "-f", self.name, check=False)

    def scrapes(self) -> dict:
        """Scrapes since start and how many failed (up == 0), from the raw samples of ``up``."""
        span = max(1, int(time.time() - self.start))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/api/v1/query?query=up%5B" + str(span) + "s%5D")
        data = json.loads(conn.getresponse().read())
        values = [v for series in data["data"]["result"] for _t, v in series["values"]]
        return {"scrapes": len(values), "failed_scrapes": sum(1 for v in values if v != "1")}


def _keepalive_stack(tmp: Path, kind: str):
    """(stack, port, args): ``args(image, kind=<proxy kind>, **options)`` are the rollout's options."""
    stack = Stack(tmp)
    stack.name = "t-ro-bench-" + secrets.token_hex(2)
    port = free_port()

    def args(image, kind=kind, **kw):
        return stack.args(
            "app",
            image=image,
            strategy="blue_green",
            proxy={"listen": port, "port": 8000, "drain": 2, "kind": kind},
            health={"timeout": 30, "http": {"port": 8000, "path": "/health"}},
            resources={"memory": "64m", "cpus": 1.0, "pids": 64},
            **kw,
        )

    return stack, port, args


def _switches(args, images, n):
    """n upgrades, each followed by a rollback (2n switches)."""
    walls = []
    for i in range(n):
        up, wall = timed(rollout, args(images["2" if i % 2 == 0 else "1"]))
        assert not up.get("failed"), up.get("msg")
        back, wall2 = timed(rollout, args(None, state="rolled_back"))
        assert not back.get("failed"), back.get("msg")
        walls += [wall, wall2]
    return {"switches": 2 * n, "rollout_s_p50": round(statistics.median(walls), 1)}


PROXY_PARTS = ("kinds", "migration", "baseline")


def bench_proxy(rate, tmp, n, parts=PROXY_PARTS):
    images = build_keepalive_images()
    out = {}
    for kind in ("haproxy", "nginx") if "kinds" in parts else ():
        for keep_alive in (True, False):
            label = "%s, %s" % (kind, "keep-alive" if keep_alive else "Connection: close")
            work = tmp / label.replace(",", "").replace(" ", "-").replace(":", "")
            work.mkdir()
            stack, port, args = _keepalive_stack(work, kind)
            try:
                assert not rollout(args(images["1"])).get("failed")
                with Scraper(stack.name, work) as scraper:
                    time.sleep(3)
                    with Load(port, rate, keep_alive=keep_alive) as load:
                        extra = _switches(args, images, n)
                    out[label] = {**load.summary(), **extra, **scraper.scrapes()}
            finally:
                stack.cleanup()
            print(json.dumps({label: out[label]}), flush=True)

    # the migration: a stack on the nginx proxy moved to HAProxy by a deploy
    for keep_alive in (True, False) if "migration" in parts else ():
        label = "migration nginx -> haproxy, %s" % ("keep-alive" if keep_alive else "Connection: close")
        work = tmp / ("migration-%s" % keep_alive)
        work.mkdir()
        stack, port, args = _keepalive_stack(work, "nginx")
        try:
            assert not rollout(args(images["1"])).get("failed")
            time.sleep(2)
            with Load(port, rate, keep_alive=keep_alive) as load:
                moved = rollout(args(images["1"], kind="haproxy"))
                assert not moved.get("failed"), moved.get("msg")
            out[label] = load.summary()
        finally:
            stack.cleanup()
        print(json.dumps({label: out[label]}), flush=True)

    # the baseline: community.docker.docker_container recreating a container that publishes the port
    for keep_alive in (True, False) if "baseline" in parts else ():
        label = "docker_container recreate, %s" % ("keep-alive" if keep_alive else "Connection: close")
        name = "t-ro-bench-dc-" + secrets.token_hex(2)
        port = free_port()
        try:
            _docker_container(tmp / f"{name}.yml", name, images["1"], port)
            time.sleep(2)
            with Load(port, rate, keep_alive=keep_alive) as load:
                for i in range(2 * n):
                    _docker_container(tmp / f"{name}.yml", name, images["2" if i % 2 == 0 else "1"], port)
            out[label] = {**load.summary(), "switches": 2 * n}
        finally:
            docker("rm", "-f", name, check=False)
        print(json.dumps({label: out[label]}), flush=True)
    return out


def local_play(*tasks: dict) -> list[dict]:
    """A play of ``tasks`` on localhost over the local connection, with this Python."""
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": list(tasks),
        }
    ]


def _docker_container(book: Path, name: str, image: str, port: int):
    play = local_play(
        {
            "name": "docker_container",
            "community.docker.docker_container": {
                "name": name,
                "image": image,
                "state": "started",
                "recreate": True,
                "published_ports": [f"127.0.0.1:{port}:8000"],
                "labels": {"tradeops.stack": name},
            },
        }
    )
    book.write_text(json.dumps(play))
    run = run_playbook(book, inventory="localhost,", env=LOCAL)
    assert run.rc == 0, run.output[-2000:]


# -- 2. switch gap and rollback time -----------------------------------------------------------
def bench_switch(images, tmp):
    out = {}
    for strategy in ("exclusive", "start_first", "blue_green"):
        stack = Stack(tmp / strategy)
        stack.name = "t-ro-bench-" + secrets.token_hex(2)
        extra = {"proxy": {"listen": free_port(), "port": 8000, "drain": 1}} if strategy == "blue_green" else {}
        args = lambda image, **kw: stack.args("svc", image=image, strategy=strategy, **{**extra, **kw})  # noqa: B023, E731
        try:
            assert not rollout(args(images["1"])).get("failed")
            up, up_wall = timed(rollout, args(images["2"]))
            bad, bad_wall = timed(rollout, args(images["unhealthy"]))
            crash, crash_wall = timed(rollout, args(images["crash"]))
            back, back_wall = timed(rollout, args(None, state="rolled_back"))
            out[strategy] = {
                "outcomes": {
                    "upgrade": up.get("msg") if up.get("failed") else "ok",
                    "unhealthy": "rolled back" if bad.get("rolled_back") else bad.get("msg"),
                    "crash": "rolled back" if crash.get("rolled_back") else crash.get("msg"),
                    "manual_rollback": back.get("msg") if back.get("failed") else "ok",
                },
                "upgrade_wall_s": up_wall,
                "switch_gap_s": (up.get("timings") or {}).get("switch_gap"),
                "gate_s": (up.get("timings") or {}).get("gate"),
                "auto_rollback_unhealthy_wall_s": bad_wall,
                "auto_rollback_unhealthy_restore_s": (bad.get("timings") or {}).get("rollback"),
                "auto_rollback_crash_wall_s": crash_wall,
                "auto_rollback_crash_restore_s": (crash.get("timings") or {}).get("rollback"),
                "manual_rollback_wall_s": back_wall,
                "manual_rollback_switch_gap_s": (back.get("timings") or {}).get("switch_gap"),
            }
        finally:
            stack.cleanup()
    return out


# -- 3. no-op re-run of 10 services ----------------------------------------------------------
def bench_noop(images, tmp, n=10):
    stack = Stack(tmp / "noop")
    stack.name = "t-ro-bench-" + secrets.token_hex(2)
    book = tmp / "noop.yml"
    services = [f"s{i}" for i in range(n)]
    rollout_play = local_play(
        {
            "name": "rollout",
            "tradeops.stack.rollout": {**stack.args("{{ item }}", image=images["1"], strategy="start_first")},
            "loop": services,
        }
    )
    dc_names = [f"{stack.name}-dc{i}" for i in range(n)]
    dc_play = local_play(
        {
            "name": "docker_container",
            "community.docker.docker_container": {
                "name": "{{ item }}",
                "image": images["1"],
                "state": "started",
                "user": "65534:65534",
                "read_only": True,
                "tmpfs": ["/tmp"],
                "cap_drop": ["ALL"],
                "memory": "32m",
                "labels": {"tradeops.stack": stack.name},
            },
            "loop": dc_names,
        }
    )
    out = {}
    try:
        for label, play in (("tradeops.stack.rollout", rollout_play), ("community.docker.docker_container", dc_play)):
            book.write_text(json.dumps(play))
            run, first = timed(run_playbook, book, inventory="localhost,", env=LOCAL)
            assert run.rc == 0, run.output[-2000:]
            run, again = timed(run_playbook, book, inventory="localhost,", env=LOCAL)
            assert run.rc == 0 and "changed=0" in run.stdout, run.stdout[-1500:]
            out[label] = {"first_run_s": first, "noop_rerun_s": again}
    finally:
        stack.cleanup()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--only", default="zero_downtime,switch,noop")
    parser.add_argument("--repeat", type=int, default=1, help="run the selected phases this many times")
    parser.add_argument("--switches", type=int, default=10, help="proxy phase: upgrades (and as many rollbacks)")
    parser.add_argument(
        "--proxy-parts", default=",".join(PROXY_PARTS), help="proxy phase: kinds, migration, baseline (default all)"
    )
    opts = parser.parse_args()
    images = build_test_images()
    results = {}
    with tempfile.TemporaryDirectory(prefix="t-ro-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for run in range(opts.repeat):
            for name in opts.only.split(","):
                work = Path(tempfile.mkdtemp(prefix="%s-%d-" % (name, run), dir=tmp))  # fresh state per run
                for sub in ("zd", "exclusive", "start_first", "blue_green", "noop"):
                    (work / sub).mkdir()
                if name == "zero_downtime":
                    results[name] = bench_zero_downtime(images, opts.rate, work)
                elif name == "switch":
                    results[name] = bench_switch(images, work)
                elif name == "noop":
                    results[name] = bench_noop(images, work)
                elif name == "proxy":
                    results[name] = bench_proxy(opts.rate, work, opts.switches, opts.proxy_parts.split(","))
                print(json.dumps({name: results[name], "run": run + 1}, indent=2), flush=True)
    load = os.getloadavg()
    print(json.dumps({"host": {"cpus": os.cpu_count(), "loadavg": load}}))


if __name__ == "__main__":
    main()
