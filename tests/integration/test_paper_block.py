"""paper_block on the real engine with a real Prometheus scraping the real reference bot.

One stack per module run: Redis, PostgreSQL and the five bot roles on a test
network, labelled as the collection labels its containers, and the locally
built Prometheus scraping every bot's /metrics each second. The module is run
through ansible-playbook (a fresh process each time), so every step also
proves that the block lives in the host state, not in the controller.

Needs the locally built images: run `make images` first. Everything created is
named t-pb-<random> and removed at the end; state roots are temporary folders.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import run_module, run_playbook

docker = pytest.importorskip("docker")

BOT_IMAGE = "tradeops/bot:1.0.0"
POSTGRES_IMAGE = "tradeops/postgres:15-bookworm"
REDIS_IMAGE = "tradeops/redis:7-bookworm"
PROM_IMAGE = "tradeops/prometheus:2.42-bookworm"
BUSYBOX_IMAGE = "tradeops/busybox:1.35"
ROLES = ("market_data", "signal_engine", "risk_manager", "paper_execution", "db_writer")
BOT_UID, DB_UID, PROM_UID = 10001, 999, 10090
RUN_LABEL = "tradeops.test.run"
MODULE = "tradeops.stack.paper_block"

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class Stack:
    def __init__(self, client):
        self.client = client
        self.prefix = "t-pb-" + secrets.token_hex(4)
        self.stack = self.prefix.replace("-", "")  # a valid stack name, unique per run
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix + "-"))
        self.state_root = self.workdir / "state"
        self.containers: dict[str, object] = {}
        self.network = None
        self.prom_url = None

    def run(self, name, image, labels=None, **kw):
        opts = {
            "cap_drop": ["ALL"],
            "read_only": True,
            "security_opt": ["no-new-privileges:true"],
            "mem_limit": "256m",
            "pids_limit": 128,
            "restart_policy": {"Name": "no"},
            "labels": {RUN_LABEL: self.prefix, **(labels or {})},
            "network": self.network.name,
            "detach": True,
        }
        opts.update(kw)
        container = self.client.containers.run(image, name=f"{self.prefix}-{name}", **opts)
        self.containers[name] = container
        return container

    def stack_labels(self, service):
        return {
            "tradeops.stack": self.stack,
            "tradeops.service": service,
            "tradeops.colour": "main",
            "tradeops.release": f"{service}-r1",
            "tradeops.spec-hash": secrets.token_hex(6),
        }

    def start(self):
        self.network = self.client.networks.create(f"{self.prefix}-net", labels={RUN_LABEL: self.prefix})
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir()
        (secrets_dir / "postgres_password").write_text("pw-" + secrets.token_hex(8))
        (secrets_dir / "redis_password").write_text("redispw-" + secrets.token_hex(8))
        secrets_dir.chmod(0o755)
        (secrets_dir / "postgres_password").chmod(0o444)
        (secrets_dir / "redis_password").chmod(0o444)
        flags = self.workdir / "flags"
        flags.mkdir()
        flags.chmod(0o755)
        self._postgres(secrets_dir)
        self.run(
            "redis",
            REDIS_IMAGE,
            labels=self.stack_labels("redis"),
            user=f"{DB_UID}:{DB_UID}",
            tmpfs={"/data": f"rw,size=32m,uid={DB_UID},gid={DB_UID}"},
            volumes={str(secrets_dir / "redis_password"): {"bind": "/run/secrets/redis_password", "mode": "ro"}},
            # a demo broker URL in a service's environment is fine (the live one is refused)
            environment={"BROKER_BASE_URL": "https://demo-api-capital.backend-capital.com/api/v1"},
        )
        for role in ROLES:
            self.run(
                role,
                BOT_IMAGE,
                labels=self.stack_labels(role),
                user=f"{BOT_UID}:{BOT_UID}",
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                environment={
                    "BOT_ROLE": role,
                    "REDIS_HOST": f"{self.prefix}-redis",
                    "POSTGRES_HOST": f"{self.prefix}-postgres",
                    "POSTGRES_DB": "tradeops",
                    "POSTGRES_USER": "tradeops",
                    "TRADING_MODE": "paper",
                    "EPICS": "BTCUSD,OIL_CRUDE",
                },
                volumes={
                    str(secrets_dir): {"bind": "/run/secrets", "mode": "ro"},
                    str(flags): {"bind": "/run/config", "mode": "ro"},
                },
            )
        self.start_prometheus()

    def _postgres(self, secrets_dir):
        return self.run(
            "postgres",
            POSTGRES_IMAGE,
            labels=self.stack_labels("postgres"),
            user=f"{DB_UID}:{DB_UID}",
            tmpfs={
                "/tmp": "rw,size=16m",
                "/var/run/postgresql": f"rw,size=1m,uid={DB_UID},gid={DB_UID}",
                "/var/lib/postgresql/data": f"rw,size=128m,uid={DB_UID},gid={DB_UID}",
            },
            environment={
                "POSTGRES_USER": "tradeops",
                "POSTGRES_DB": "tradeops",
                "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            },
            volumes={str(secrets_dir / "postgres_password"): {"bind": "/run/secrets/postgres_password", "mode": "ro"}},
        )

    def start_prometheus(self):
        conf = self.workdir / "prometheus"
        conf.mkdir()
        targets = [f"{self.prefix}-{role}:8000" for role in ROLES]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "bot", "scrape_timeout": "900ms", "static_configs": [{"targets": targets}]}
            ],
        }
        (conf / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        conf.chmod(0o755)
        (conf / "prometheus.yml").chmod(0o644)
        container = self.run(
            "prometheus",
            PROM_IMAGE,
            user=f"{PROM_UID}:{PROM_UID}",
            tmpfs={"/prometheus": f"rw,size=256m,uid={PROM_UID},gid={PROM_UID}"},
            volumes={str(conf): {"bind": "/etc/prometheus", "mode": "ro"}},
            ports={"9090/tcp": ("127.0.0.1", None)},
            mem_limit="512m",
        )
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["9090/tcp"][0]["HostPort"]
        self.prom_url = f"http://127.0.0.1:{port}"

        def ready():
            try:
                with urllib.request.urlopen(self.prom_url + "/-/ready", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                container.reload()
                if container.status == "exited":
                    pytest.fail("prometheus exited: " + container.logs(tail=20).decode(errors="replace"))
                return False

        wait_for(ready, 60, "prometheus to be ready")

    def remove(self):
        for container in self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={self.prefix}"}):
            container.remove(force=True, v=True)
        for network in self.client.networks.list(filters={"label": f"{RUN_LABEL}={self.prefix}"}):
            network.remove()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def args(self, **kw):
        base = {
            "stack": self.stack,
            "state_root": str(self.state_root),
            "prometheus_url": self.prom_url,
            "scrape_interval": 1,
            "zai_window": "20s",
        }
        base.update(kw)
        return base

    def pb(self, check=False, **kw):
        return run_module(MODULE, self.args(**kw), check=check)


@pytest.fixture(scope="module")
def stack():
    client = docker.from_env()
    missing = []
    for image in (BOT_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE, PROM_IMAGE, BUSYBOX_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.fail(f"image(s) {', '.join(missing)} not found: run `make images` first")
    s = Stack(client)
    try:
        s.start()
        yield s
    finally:
        s.remove()


def task(name, args, extra=None):
    extra = dict(extra or {})
    module = extra.pop("module", MODULE)
    return {"name": name, module: args, "ignore_errors": True, "register": "r", **extra}


def rollout_probe(s):
    """A rollout of a throw-away service of the stack: the freeze must refuse it while a block is active."""
    return {
        "stack": s.stack,
        "state_root": str(s.state_root),
        "service": "probe",
        "image": BUSYBOX_IMAGE,
        "pull": "never",
        "command": ["sleep", "600"],
        "user": "65534:65534",
        "strategy": "exclusive",
        "resources": {"memory": "32m", "cpus": 0.2, "pids": 32},
    }


def tasks_playbook(tasks):
    """Run several module tasks in one ansible-playbook (one process start) and return their results by name.

    Each task is ``(name, args)`` or ``(name, args, extra)`` where extra holds task keywords (check_mode, until...);
    the result of each task is registered as ``r`` so that ``until`` can poll it inside the same run.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "connection": "local",
                    "vars": {"ansible_python_interpreter": sys.executable},
                    "tasks": [task(*t) for t in tasks],
                }
            ],
            handle,
        )
    try:
        run = run_playbook(handle.name, inventory="localhost,", json_output=True)
    finally:
        os.unlink(handle.name)
    return {t[0]: run.task(t[0]) for t in tasks}


def poll(until, retries=90, delay=1):
    """Task keywords that re-run the module inside the playbook until ``until`` holds (no playbook restart)."""
    return {"until": until, "retries": retries, "delay": delay}


# --------------------------------------------------------------------------- refusals
def test_refusals_are_clear_and_write_nothing(stack):
    s = stack
    live = s.run(
        "livecfg",
        BUSYBOX_IMAGE,
        labels={"tradeops.stack": s.stack + "live", "tradeops.service": "signal_engine"},
        command=["sleep", "600"],
        environment={"BROKER_BASE_URL": "https://api-capital.backend-capital.com/api/v1"},
    )
    s.run(
        "livemode",
        BUSYBOX_IMAGE,
        labels={"tradeops.stack": s.stack + "mode", "tradeops.service": "paper_execution"},
        command=["sleep", "600"],
        environment={"TRADING_MODE": "live"},
    )
    base = {"state": "started", "reason": "refusal test", "state_root": str(s.state_root)}
    cases = {
        "bad id": (dict(base, stack=s.stack, id="../etc"), "id '../etc' is invalid"),
        "bad duration": (dict(base, stack=s.stack, id="b1", duration="3 days"), "duration '3 days' is not a duration"),
        "live mode": (dict(base, stack=s.stack, id="b1", trading_mode="live"), "trading_mode is 'live'"),
        "live url option": (
            dict(base, stack=s.stack, id="b1", broker_urls=["https://api-capital.backend-capital.com/api/v1"]),
            "broker_urls 'https://api-capital.backend-capital.com/api/v1' is not a paper broker host",
        ),
        "live url, trailing dot": (
            dict(base, stack=s.stack, id="b1", broker_urls=["https://api-capital.backend-capital.com./api/v1"]),
            "is not a paper broker host",
        ),
        "live url behind user info": (
            dict(base, stack=s.stack, id="b1", broker_urls=["https://demo-x@api-capital.backend-capital.com/api/v1"]),
            "broker_urls must not carry user info",
        ),
        "live url, leading space": (
            dict(base, stack=s.stack, id="b1", broker_urls=[" https://api-capital.backend-capital.com/api/v1"]),
            "broker_urls must not contain white space",
        ),
        "emulator address not named": (
            dict(base, stack=s.stack, id="b1", broker_urls=["http://127.0.0.1:18081/api/v1"]),
            "is not a paper broker host",
        ),
        "block id with a newline": (dict(base, stack=s.stack, id="nl\n"), "id 'nl\\n' is invalid"),
        "stack name with a newline": (dict(base, stack="cdb\n", id="b1"), "stack name 'cdb\\n' is invalid"),
        "live url in a container": (
            dict(base, stack=s.stack + "live", id="b1"),
            f"container {live.name} has BROKER_BASE_URL naming the LIVE broker host api-capital.backend-capital.com",
        ),
        "live mode in a container": (
            dict(base, stack=s.stack + "mode", id="b1"),
            f"container {s.prefix}-livemode runs with TRADING_MODE=live",
        ),
    }
    # then, in the same run: the demo host is fine; a second block is refused naming the first; the same
    # start again is a no-op; an abort closes it; its id cannot be reused; aborting it again is a no-op
    demo = ["https://demo-api-capital.backend-capital.com/api/v1"]
    lifecycle = [
        ("first", dict(s.args(), state="started", id="refusal-1", reason="first", duration="1h", broker_urls=demo)),
        ("second", dict(s.args(), state="started", id="refusal-2", reason="second")),
        ("same again", dict(s.args(), state="started", id="refusal-1", reason="first", duration="1h")),
        ("complete other", dict(s.args(), state="completed", id="refusal-2")),
        ("abort", dict(s.args(), state="aborted", reason="refusal test done")),
        ("reuse", dict(s.args(), state="started", id="refusal-1", reason="again")),
        ("abort again", dict(s.args(), state="aborted", id="refusal-1", reason="again")),
    ]
    results = tasks_playbook([(name, args) for name, (args, _) in cases.items()] + lifecycle)
    for name, (_, expected) in cases.items():
        res = results[name]
        assert res.get("failed"), f"{name}: not refused: {res}"
        assert expected in res["msg"], f"{name}: {res['msg']!r} does not say {expected!r}"
        assert "Traceback" not in res["msg"]

    assert results["first"]["changed"] and not results["first"].get("failed"), results["first"]
    assert results["second"]["failed"]
    assert "paper block refusal-1 is already active" in results["second"]["msg"]
    assert "operator" in results["second"]["msg"] and "abort it before starting refusal-2" in results["second"]["msg"]
    assert results["same again"]["changed"] is False and not results["same again"].get("failed")
    assert results["complete other"]["failed"] and "the active block is refusal-1" in results["complete other"]["msg"]
    assert results["abort"]["changed"] and results["abort"]["block"]["status"] == "aborted", results["abort"]
    assert results["reuse"]["failed"]
    assert "block id refusal-1 was already used (status aborted" in results["reuse"]["msg"]
    assert results["abort again"]["changed"] is False and not results["abort again"].get("failed")

    # on disk: exactly what "first" and "abort" wrote; nothing from any refusal or no-op
    assert sorted(p.name for p in s.state_root.iterdir()) == [s.stack], "a refused start created a state dir"
    blocks = s.state_root / s.stack / "blocks"
    assert sorted(p.name for p in blocks.iterdir()) == ["refusal-1.json"]
    record = json.loads((blocks / "refusal-1.json").read_text())
    assert record == results["abort"]["block"] and record["started_at"] == results["first"]["block"]["started_at"]
    audit = [json.loads(line) for line in (s.state_root / s.stack / "audit.log").read_text().splitlines()]
    assert [(e["action"], e["block"]) for e in audit] == [
        ("paper_block_start", "refusal-1"),
        ("paper_block_abort", "refusal-1"),
    ]
    assert sorted(p.name for p in (s.state_root / s.stack / "reports").iterdir()) == ["refusal-1"]


# --------------------------------------------------------------------------- the block
ACTIVE = "r.window is defined and (r.window.signals or 0) > 0 and (r.window.trades or 0) > 0"


def test_block_lifecycle_zai_and_report(stack):
    s = stack
    client = s.client
    blocks = s.state_root / s.stack / "blocks"
    textfile = s.state_root / s.stack / "metrics" / "paper_block.prom"

    # each task is a fresh module process: the block is always read back from the host state
    results = tasks_playbook(
        [
            (
                "predict",
                dict(s.args(), state="started", id="blk-1", reason="integration", duration="10m"),
                {"check_mode": True},
            ),
            ("start", dict(s.args(), state="started", id="blk-1", reason="integration", duration="10m")),
            ("activity", dict(s.args(), state="status"), poll(ACTIVE)),
        ]
    )
    predicted, started, res = results["predict"], results["start"], results["activity"]
    assert predicted["changed"] and not predicted.get("failed") and predicted["metrics_file"] is None, predicted
    assert started["changed"], started
    block = started["block"]
    assert block["status"] == "active" and block["trading_mode"] == "paper"
    active = json.loads((blocks / "active.json").read_text())
    assert active == json.loads((blocks / "blk-1.json").read_text()) == block
    assert set(active) >= {
        "id",
        "operator",
        "reason",
        "started_at",
        "planned_end",
        "duration_seconds",
        "status",
        "trading_mode",
        "manifest",
    }
    assert active["planned_end"] - active["started_at"] == 600
    audit = [json.loads(line) for line in (s.state_root / s.stack / "audit.log").read_text().splitlines()]
    assert [e["action"] for e in audit if e.get("block") == "blk-1"] == ["paper_block_start"]  # check mode: none

    # the manifest is what the engine says, container by container
    manifest = {c["name"]: c for c in block["manifest"]}
    assert set(manifest) == {f"{s.prefix}-{n}" for n in ("postgres", "redis", *ROLES)}
    for name, entry in manifest.items():
        attrs = client.api.inspect_container(name)
        assert entry["image_id"] == attrs["Image"]
        assert entry["spec_hash"] == attrs["Config"]["Labels"]["tradeops.spec-hash"]
        assert entry["release"] == attrs["Config"]["Labels"]["tradeops.release"]
        assert entry["restart_count"] == attrs["RestartCount"]
        assert entry["id"] == attrs["Id"][:12]

    # activity is seen
    assert not res.get("failed"), res
    assert res["zai"] is False and res["block"]["id"] == "blk-1"
    assert res["window"]["signals"] > 0 and res["window"]["trades"] > 0
    assert res["window"]["data"] == {"ticks": "ok", "signals": "ok", "trades": "ok"}
    assert res["changed"] is False and res["overdue"] is False and 0 < res["remaining_seconds"] < 600
    prom_text = textfile.read_text()
    assert 'tradeops_paper_block_active{block="blk-1"} 1' in prom_text
    assert "tradeops_paper_block_zai 0" in prom_text

    # stop the signal engine and the execution service: ZAI after the short window
    for role in ("signal_engine", "paper_execution"):
        s.containers[role].stop(timeout=5)
    results = tasks_playbook(
        [
            ("zai", dict(s.args(), state="status"), poll("r.zai is defined and r.zai")),
            ("red", dict(s.args(), state="status", fail_on_zai=True)),
            ("frozen", rollout_probe(s), {"module": "tradeops.stack.rollout"}),
        ]
    )
    res, red = results["zai"], results["red"]
    # the freeze: rollout reads the block this module wrote and refuses, naming it
    frozen = results["frozen"]
    assert frozen["failed"] and "paper block blk-1 is active" in frozen["msg"] and "allow_during_block" in frozen["msg"]
    assert res["zai"] is True and not res.get("failed"), res
    assert "no signal and no paper trade in the last 20s" in res["zai_reason"]
    # no data is reported as such, never as activity
    assert res["window"]["signals"] in (None, 0) and res["window"]["trades"] in (None, 0)
    for key in ("signals", "trades"):
        assert res["window"]["data"][key] == ("no data" if res["window"][key] is None else "ok")
    assert res["window"]["ticks"] and res["window"]["ticks"] > 0  # market data still flows
    assert {f"{s.prefix}-signal_engine", f"{s.prefix}-paper_execution"} <= set(res["unhealthy"])
    assert red["failed"] and red["msg"].startswith("zero-activity incident") and red["zai"] is True
    assert "tradeops_paper_block_zai 1" in textfile.read_text()

    # restart them: ZAI clears; the engine's restarts are counted; then complete (check mode first)
    for role in ("signal_engine", "paper_execution"):
        s.containers[role].start()
    results = tasks_playbook(
        [
            ("cleared", dict(s.args(), state="status"), poll("r.zai is defined and not r.zai and " + ACTIVE, 120)),
            ("dry", dict(s.args(), state="completed"), {"check_mode": True}),
            ("done", dict(s.args(), state="completed", reason="integration finished")),
            ("done again", dict(s.args(), state="completed", id="blk-1")),
            ("quiet", dict(s.args(), state="status", fail_on_zai=True)),
            ("thawed", rollout_probe(s), {"module": "tradeops.stack.rollout", "check_mode": True}),
        ]
    )
    res = results["cleared"]
    assert res["zai"] is False and not res.get("failed"), res
    restarts = {c["name"]: c["restarts"] for c in res["containers"]}
    assert restarts[f"{s.prefix}-signal_engine"] >= 1 and restarts[f"{s.prefix}-paper_execution"] >= 1
    assert restarts[f"{s.prefix}-market_data"] == 0 and restarts[f"{s.prefix}-redis"] == 0
    assert res["restarts_total"] == sum(restarts.values())
    assert all(isinstance(c["health_failures"], int) for c in res["containers"])

    dry = results["dry"]
    assert dry["changed"] and dry["report"]["block"]["status"] == "completed" and dry["metrics_file"] is None, dry

    done = results["done"]
    assert done["changed"] and not done.get("failed"), done
    report = done["report"]
    assert report["totals"]["ticks"] > 0 and report["totals"]["signals"] > 0 and report["totals"]["trades"] > 0
    assert len(report["zai_episodes"]) >= 1, report["zai_episodes"]
    episode = report["zai_episodes"][0]
    assert block["started_at"] <= episode["start"] and episode["end"] is not None and episode["seconds"] >= 20
    assert report["manifest_changed"] is False and report["manifest_changes"] == []
    assert report["restarts_total"] >= 2
    assert report["series"]["signals"] and report["series"]["trades"]
    assert report["broker_health"]["down_steps"] is None  # no capital_com_up series in this Prometheus

    files = done["report_files"]
    on_disk = json.loads(Path(files["json"]).read_text())
    assert on_disk["totals"] == report["totals"] and on_disk["block"]["status"] == "completed"
    md = Path(files["markdown"]).read_text()
    assert "# Paper block blk-1: completed" in md and "Unchanged during the block" in md
    svg = ET.fromstring(Path(files["svg"]).read_text())  # noqa: S314
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.findall(f"{ns}polyline") and svg.findall(f"{ns}rect[@class='zai']")

    assert not (blocks / "active.json").exists()
    assert json.loads((blocks / "blk-1.json").read_text())["status"] == "completed"
    assert "tradeops_paper_block_active 0" in textfile.read_text()
    audit = [json.loads(line) for line in (s.state_root / s.stack / "audit.log").read_text().splitlines()]
    # exactly one completion: the check-mode run wrote nothing, the second completion was a no-op
    assert [e["action"] for e in audit if e.get("block") == "blk-1"] == ["paper_block_start", "paper_block_complete"]

    again = results["done again"]
    assert again["changed"] is False and not again.get("failed"), again
    quiet = results["quiet"]
    assert quiet["active"] is False and quiet["zai"] is False and not quiet.get("failed")
    thawed = results["thawed"]
    assert not thawed.get("failed") and thawed["changed"], thawed  # the freeze is lifted: the rollout would run
