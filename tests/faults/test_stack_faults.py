"""Every row of RELIABILITY.md's fault table, injected into one stack deployed by the collection's
own playbooks (session fixture ``stack`` in conftest.py) and observed through the playbooks.

Scenarios run in file order against the same stack; each one leaves it converged on the good
release (checked by ``back_on_good``), so the next one starts from a known state. Recovery
times are measured and printed in the table (conftest.py), never asserted.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict

import pytest
import yaml
from conftest import ROOT, run_module
from playbook_support import (
    BOTS,
    BROKEN,
    GOOD,
    OLDER,
    changed_count,
    checkpoint,
    docker,
    image_id,
    now,
    rows_after,
    rows_up_to,
)
from rollout_support import descendants, run_task, wait_for

CRASH = "tradeops/bot:1.2.0"
INVENTORY = ROOT / "inventories" / "local" / "group_vars" / "tradeops"
REVERSE = ["paper_execution", "risk_manager", "signal_engine", "market_data"]


# --------------------------------------------------------------------------- what the stack looks like
def containers(stack) -> list[dict]:
    ids = docker("ps", "-aq", "--filter", f"label=tradeops.stack={stack.name}").split()
    return json.loads(docker("inspect", *ids)) if ids else []


def convergence_problems(stack) -> list[str]:
    """No service with zero or several serving instances, no leftover candidate, no host port twice."""
    problems, serving, ports = [], defaultdict(list), defaultdict(list)
    for c in containers(stack):
        name, labels = c["Name"].lstrip("/"), c["Config"]["Labels"] or {}
        if name.endswith("-next"):
            problems.append(f"orphan candidate {name} ({c['State']['Status']})")
        if not c["State"]["Running"]:
            continue
        for bindings in (c["HostConfig"].get("PortBindings") or {}).values():
            for b in bindings or []:
                if b.get("HostPort") not in (None, "", "0"):
                    ports[b["HostPort"]].append(name)
        if labels.get("tradeops.service") and labels.get("tradeops.role", "service") == "service":
            serving[labels["tradeops.service"]].append(name)
    for svc in stack.manifest()["services"]:
        if len(serving[svc]) != 1:
            problems.append(f"{svc}: {len(serving[svc])} serving instances {serving[svc]}")
    problems += [f"host port {p} bound by {n}" for p, n in ports.items() if len(n) > 1]
    return problems


def back_on_good(stack) -> list[str]:
    """What keeps the stack from being converged on the good bot release with a known-good manifest."""
    problems = convergence_problems(stack)
    good, running = image_id(GOOD), stack.running()
    problems += [f"{svc} not on {GOOD}" for svc in BOTS if running.get(svc, {}).get("image") != good]
    if not stack.manifest().get("known_good"):
        problems.append("current manifest is not known-good")
    return problems


def started(stack) -> dict[str, str]:
    return {c["Name"]: c["State"]["StartedAt"] for c in containers(stack) if c["State"]["Running"]}


def services(**changes: dict) -> list[dict]:
    """The local inventory's stack description with per-service changes (None removes a field)."""
    desc = copy.deepcopy(yaml.safe_load((INVENTORY / "stack.yml").read_text())["tradeops_stack_services"])
    for svc in desc:
        for key, value in changes.get(svc["name"], {}).items():
            if value is None:
                svc.pop(key, None)
            else:
                svc[key] = value
    return desc


def failure_line(output: str) -> str:
    """The closing summary's ``why:`` (the one place a failure is printed), or the output's tail."""
    flat = " ".join(output.split())  # the YAML callback folds long lines
    if "why: " not in flat:
        return flat[-300:]
    why = re.split(r" (?:left running \(|audit log: )", flat.split("why: ", 1)[1])[0]
    return why.rstrip("'\" -")[:220]


def prometheus(stack, path: str) -> dict:
    with urllib.request.urlopen(stack.prometheus_url + path, timeout=5) as resp:
        return json.loads(resp.read())["data"]


def broker(stack, action: str, body: dict | None = None) -> None:
    req = urllib.request.Request(
        f"{stack.broker_url}/__emulator/{action}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def broker_healthy(stack) -> bool:
    creds = yaml.safe_load((INVENTORY / "secrets.yml").read_text())["secrets_values"]
    res = run_module(
        "tradeops.stack.capital_com_health",
        {
            "base_url": stack.broker_url + "/api/v1",
            "emulator_hosts": ["127.0.0.1"],
            "api_key": creds["capital_com_api_key"],
            "identifier": creds["capital_com_identifier"],
            "password": creds["capital_com_password"],
            "latency_slo_ms": 1000,
            "fail_on_unhealthy": False,
            # into the stack's textfile, as verify does: monitoring sees the recovery too
            "stack": stack.name,
            "state_root": str(stack.state),
        },
    )
    return res.get("healthy") is True


def kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 the controller and everything it started, as a lost bastion would."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def candidates(stack) -> list[str]:
    """Running start_first candidates (<name>-next): a new version under its health gate."""
    return [c["Name"].lstrip("/") for c in containers(stack) if c["Name"].endswith("-next") and c["State"]["Running"]]


class FirstSeen(threading.Thread):
    """Polls ``predicate`` until it holds, runs ``action`` on its value and records when (time.monotonic())."""

    def __init__(self, predicate, action=None, timeout: float = 600):
        super().__init__(daemon=True)
        self.predicate, self.action, self.timeout = predicate, action, timeout
        self.at: float | None = None
        self.value = None
        self.done = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.done.is_set() and time.monotonic() < deadline:
            value = self.predicate()
            if value:
                self.value = self.action(value) if self.action else value
                self.at = time.monotonic()
                return
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def audit(stack) -> list[dict]:
    path = stack.home / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def epoch(ts: str) -> float:
    return time.mktime(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


# --------------------------------------------------------------------------- wrong variables
WRONG = {
    "wrong-typed role variable": ({"stack_lock_wait": "forever"}, "stack_lock_wait"),
    "missing service field": (
        {"tradeops_stack_services": services(signal_engine={"image": None})},
        "service 'signal_engine': missing required arguments: image",
    ),
    "wrong-typed service field": (
        {"tradeops_stack_services": services(db_writer={"health": {"timeout": "soon"}})},
        "service 'db_writer'",
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_variables_rejected_before_any_change(stack, scenario, case):
    row = scenario(f"{case}", "rejected before any change, naming the variable")
    extra, named = WRONG[case]
    before, audit_before = started(stack), (stack.home / "audit.log").read_text()
    run = stack.play("deploy", **extra)
    assert run.rc != 0, run.output[-3000:]
    assert named in run.output, run.output[-3000:]
    assert changed_count(run.output) == 0
    assert (stack.home / "audit.log").read_text() == audit_before
    assert started(stack) == before
    line = next(ln for ln in run.output.splitlines() if named in ln)
    row.observed = f"rc {run.rc}, changed=0, audit and containers untouched: " + line[line.find(named) :][:150]


# --------------------------------------------------------------------------- invalid Prometheus rule
def test_invalid_prometheus_rule_rejected_before_apply(stack, scenario):
    row = scenario("invalid Prometheus rule pushed", "rejected before deploy (promtool check)")
    config = stack.root / "monitoring"
    digest = lambda: {  # noqa: E731
        str(p.relative_to(config)): hashlib.sha256(p.read_bytes()).hexdigest() for p in config.rglob("*") if p.is_file()
    }
    files, before = digest(), started(stack)
    manifest = stack.manifest()["id"]
    bad = [{"name": "faults-invalid", "rules": [{"alert": "FaultSuiteBroken", "expr": "sum(rate(up[5m])"}]}]
    run = stack.play("site", monitoring_extra_rule_groups=bad)
    assert run.rc != 0, run.output[-3000:]
    err = next((ln.strip() for ln in run.output.splitlines() if "FaultSuiteBroken" in ln and "parse error" in ln), "")
    assert "promtool" in run.output and err, run.output[-3000:]
    assert digest() == files, "the monitoring configuration on the host changed"
    assert started(stack) == before, "a container was restarted"
    assert stack.manifest()["id"] == manifest
    rules = json.dumps(prometheus(stack, "/api/v1/rules"))
    assert "FaultSuiteBroken" not in rules and "TargetDown" in rules
    row.observed = f"site failed at promtool, config, rules and containers unchanged: {err[err.find('rule 1') :][:130]}"


# --------------------------------------------------------------------------- broker faults
BROKER_FAULTS = {
    "5xx": ({"faults": {"GET /ping": {"status": 503}}}, "GET /ping: HTTP 503"),
    "429": (
        {"faults": {"GET /accounts": {"status": 429, "error_code": "error.too-many.requests"}}},
        "rate limited by the broker",
    ),
    "expired session": ({"session_ttl_s": 0}, "the session expired or was closed"),
    "garbage": ({"faults": {"GET /accounts": {"body": "garbage"}}}, "with a body that is not JSON"),
    "hang": ({"faults": {"GET /ping": {"hang_s": 12}}}, "timed out after"),
}


@pytest.mark.parametrize("fault", list(BROKER_FAULTS))
def test_broker_fault_reported_by_verify(stack, scenario, fault):
    row = scenario(f"broker {fault}", "verify: broker unhealthy with the reason, never a traceback")
    control, needle = BROKER_FAULTS[fault]
    broker(stack, "control", control)
    try:
        run = stack.play("verify")
    finally:
        broker(stack, "reset")
    t0 = time.monotonic()
    assert run.rc != 0, run.output[-3000:]
    assert "Traceback" not in run.output
    flat = " ".join(run.output.split())  # the YAML callback folds long lines
    line = flat[flat.find("broker UNHEALTHY") :].split("- prometheus")[0] if "broker UNHEALTHY" in flat else ""
    assert needle in line, run.output[-3000:]
    assert wait_for(lambda: broker_healthy(stack), timeout=120, interval=1), "the broker check never recovered"
    row.recovered(time.monotonic() - t0)
    row.observed = line.strip().rstrip("'\" ")[:220]


# --------------------------------------------------------------------------- broken new versions
def failed_deploy(stack, row, image: str, reason: str) -> str:
    """Deploy a broken bot version; recovery is timed from its first candidate start to the end of the run."""
    before, manifest = started(stack), stack.manifest()["id"]
    with FirstSeen(lambda: candidates(stack)) as fault:
        run = stack.play("deploy", tradeops_bot_image=image, tradeops_deploy_reason=f"faults: {image}")
        end = time.monotonic()
    assert fault.at, "no candidate of the new version was seen"
    assert run.rc != 0, run.output[-3000:]
    assert "DEPLOY FAILED, ROLLED BACK" in run.output, run.output[-3000:]
    assert reason in failure_line(run.output), failure_line(run.output)
    assert back_on_good(stack) == []
    assert stack.manifest()["id"] == manifest
    assert started(stack) == before, "an old instance stopped serving or restarted"
    row.recovered(end - fault.at)
    row.observed = f"failed, rolled back, old instances untouched: {failure_line(run.output)[:150]}"
    return run.output


def test_unhealthy_new_version(stack, scenario):
    """Detection waits out the bots' start_period (20 s in inventories/local) plus 5 failed checks."""
    row = scenario(f"unhealthy new image ({BROKEN})", "new removed, old keeps serving, fails rolled_back + reason")
    failed_deploy(stack, row, BROKEN, "unhealthy")


def test_crash_loop_and_rerun_is_idempotent(stack, scenario):
    row = scenario(f"crash loop ({CRASH})", "same; re-running the play is idempotent")
    failed_deploy(stack, row, CRASH, "exit")
    names = sorted(c["Name"] for c in containers(stack))
    observed, recovery = row.observed, row.recovery_s
    failed_deploy(stack, row, CRASH, "exit")  # the same play again: the same outcome, nothing left behind
    assert sorted(c["Name"] for c in containers(stack)) == names
    row.observed, row.recovery_s = observed + "; re-run: same outcome, same containers", recovery


def test_container_killed_during_health_wait(stack, scenario):
    row = scenario("container killed during health wait", "rollback; exactly one active instance/colour")
    manifest = stack.manifest()["id"]

    def kill(names):
        docker("kill", names[0])
        return names[0]

    with FirstSeen(lambda: candidates(stack), kill) as killed:
        run = stack.play("deploy", tradeops_bot_image=OLDER, tradeops_deploy_reason="faults: killed candidate")
        end = time.monotonic()
    assert killed.at, "no candidate container was seen to kill"
    assert run.rc != 0 and killed.value in failure_line(run.output), failure_line(run.output)
    assert back_on_good(stack) == []
    assert stack.manifest()["id"] == manifest
    row.recovered(end - killed.at)
    row.observed = f"killed {killed.value}; {failure_line(run.output)[:160]}"


# --------------------------------------------------------------------------- a stack deploy, two at once
def test_one_service_fails_and_a_concurrent_deploy(stack, scenario):
    row = scenario("one service of the stack fails (db_writer)", "changed services rolled back in reverse order")
    race = scenario("concurrent deploy", "second run waits or fails on the lock, holder named")
    events = len(audit(stack))
    first, log = stack.start(
        "deploy",
        tradeops_bot_image=OLDER,
        tradeops_stack_services=services(db_writer={"image": CRASH}),
        tradeops_deploy_reason="faults: one service fails",
    )
    try:
        assert wait_for(lambda: (stack.home / "lock.json").exists(), timeout=300, interval=0.1)
        t0 = time.monotonic()
        second = stack.play("deploy", tradeops_deploy_reason="faults: concurrent")
        race_s = time.monotonic() - t0
        assert second.rc != 0, second.output[-3000:]
        assert f"pid {first.pid}" in second.output and "faults: one service fails" in second.output
        assert f"pid {first.pid}" in json.loads((stack.home / "lock.json").read_text())["holder"]
        msg = next(ln for ln in second.output.splitlines() if f"pid {first.pid}" in ln)
        race.observed = f"second run failed after {race_s:.0f} s, nothing changed: " + msg.strip()[:150]
        first.wait(timeout=1500)
    finally:
        if first.poll() is None:
            kill_tree(first)
    output = log.read_text()
    assert first.returncode != 0, output[-3000:]
    # the closing summary: each service the run changed, and whether it went back
    said = " ".join(output.split("DEPLOY FAILED, ROLLED BACK")[-1].split())[:3000]
    rows = dict(re.findall(r"(\w+): \S+ -> \S+ \([^)]*\): (ok, reverted|ok, revert FAILED|FAILED[^,']*)", said))
    assert {name: rows.get(name) for name in REVERSE} == dict.fromkeys(REVERSE, "ok, reverted"), said
    assert rows.get("db_writer", "").startswith("FAILED"), said
    assert "db_writer" in failure_line(output)
    assert back_on_good(stack) == []
    run_events = audit(stack)[events:]
    failed = [e for e in run_events if e.get("service") == "db_writer" and e.get("result") in ("rolled_back", "failed")]
    reverts = [e for e in run_events if e.get("service") in REVERSE and e["ts"] >= failed[0]["ts"]]
    reverted = list(dict.fromkeys(e["service"] for e in reverts))  # the order the audit log recorded
    assert reverted == REVERSE, reverts
    row.recovered(epoch(reverts[-1]["ts"]) - epoch(failed[0]["ts"]))
    row.observed = f"db_writer failed; rolled back {' -> '.join(reverted)}; stack on the good release"


def test_controller_killed_mid_rollout(stack, scenario):
    row = scenario("controller kill -9 mid-rollout", "re-run converges, no orphans, lock detected stale")
    older = image_id(OLDER)
    proc, _ = stack.start("deploy", tradeops_bot_image=OLDER, tradeops_deploy_reason="faults: killed controller")
    try:

        def mid_rollout():
            market = stack.running().get("market_data", {}).get("image") == older
            return market and candidates(stack)

        assert wait_for(mid_rollout, timeout=600, interval=0.1), "the deploy never reached its second bot"
    finally:
        kill_tree(proc)
    t0 = time.monotonic()
    lock = json.loads((stack.home / "lock.json").read_text())
    assert f"pid {proc.pid}" in lock["holder"]

    # the rollout job the controller started keeps working under the lock (it finishes or rolls back by itself)
    # and keeps it live; once it is done and has cleared itself, the lock is stale
    def worker_done():
        return not json.loads((stack.home / "lock.json").read_text()).get("worker_pid")

    assert wait_for(worker_done, timeout=300, interval=0.5), "the rollout job never finished"
    refused = stack.play("deploy", tradeops_deploy_reason="faults: after the kill")
    assert refused.rc != 0 and "STALE" in refused.output, refused.output[-3000:]
    done = stack.play("deploy", tradeops_lock_take_over_stale=True, tradeops_deploy_reason="faults: take over")
    assert done.rc == 0, done.output[-3000:]
    row.recovered(time.monotonic() - t0)
    assert back_on_good(stack) == []
    assert not (stack.home / "lock.json").exists()
    assert any(e["action"] == "lock_take_over" for e in audit(stack))
    stack.good = stack.manifest()["id"]
    row.observed = "lock reported STALE, refused without take-over; take-over run converged: one instance each"


# --------------------------------------------------------------------------- dependencies stopped
@pytest.mark.parametrize("dependency", ["postgres", "redis"])
def test_dependency_stopped_and_started(stack, scenario, dependency):
    row = scenario(f"{dependency} stopped and started", "services reconnect; outage reported; no paper trade lost")
    assert wait_for(lambda: checkpoint(stack)[1] > 0, timeout=300, interval=2), "no paper trade written"
    ts, count, digest = checkpoint(stack)
    name = f"{stack.name}-{dependency}"
    docker("stop", name)
    try:
        outage = stack.play("verify")

        def seen_down():
            res = prometheus(stack, f"/api/v1/query?query=min(tradeops_dependency_up{{dependency=%22{dependency}%22}})")
            return res["result"] and float(res["result"][0]["value"][1]) == 0

        prom_down = wait_for(seen_down, timeout=60, interval=2)
        firing = sorted({a["labels"]["alertname"] for a in prometheus(stack, "/api/v1/alerts")["alerts"]})
    finally:
        docker("start", name)
    t0 = time.monotonic()
    restarted = None
    assert outage.rc != 0 and f"{dependency}: no running container" in outage.output, outage.output[-3000:]
    assert prom_down, f"Prometheus never saw tradeops_dependency_up{{dependency={dependency}}} == 0"

    def recovered():
        healthy = all(
            (c["State"].get("Health") or {}).get("Status", "healthy") == "healthy"
            for c in containers(stack)
            if c["State"]["Running"]
        )
        nonlocal restarted
        restarted = restarted or now(stack)  # PostgreSQL's clock, once it answers again
        return healthy and bool(restarted) and rows_after(stack, restarted) > 0

    assert wait_for(recovered, timeout=300, interval=1), "the stack did not reconnect within 5 minutes"
    row.recovered(time.monotonic() - t0)
    assert rows_up_to(stack, ts) == (count, digest), "paper trades written before the outage changed"
    row.observed = (
        f"verify named it, Prometheus saw dependency_up 0 (firing: {', '.join(firing) or 'none'}); "
        f"every container healthy, trades flow again, {count} earlier rows intact"
    )


# --------------------------------------------------------------------------- container logs
def test_disk_filling_with_logs_stays_under_cap(stack, scenario):
    row = scenario("disk filling with logs", "rotation keeps every log under its cap")
    flood = 50 * 1024 * 1024
    args = {
        "stack": stack.name,
        "state_root": str(stack.state),
        "service": "log_flood",
        "image": "tradeops/busybox:1.35",
        "pull": "never",
        "user": "65534:65534",
        "command": [
            "sh",
            "-c",
            f"yes 'fault suite log line 0123456789 abcdefghij' | head -c {flood}; echo flood-done; exec sleep 3600",
        ],
        "networks": [{"name": stack.name}],
        "resources": {"memory": "32m", "cpus": 0.5, "pids": 16},
        "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 1},
        "health": {"timeout": 60},
        "stop_timeout": 1,
    }
    res, _ = run_task("tradeops.stack.rollout", args)
    try:
        assert not res.get("failed"), res.get("msg")
        name = f"{stack.name}-log-flood"
        assert wait_for(lambda: "flood-done" in docker("logs", "--tail", "3", name), timeout=180, interval=1)
        info = json.loads(docker("inspect", name))[0]
        cfg = info["HostConfig"]["LogConfig"]
        size, count = cfg["Config"]["max-size"], int(cfg["Config"]["max-file"])
        cap = int(size.rstrip("m")) * 1024 * 1024 * count
        log = info["LogPath"]
        files = [p for p in os.listdir(os.path.dirname(log)) if p.startswith(os.path.basename(log))]
        total = sum(os.path.getsize(os.path.join(os.path.dirname(log), p)) for p in files)
        assert flood > cap, "the flood must exceed the cap to prove anything"
        assert total <= cap * 1.01, f"{total} bytes of logs, cap {cap}"
        uncapped = [
            c["Name"]
            for c in containers(stack)
            if c["State"]["Running"]
            and not {"max-size", "max-file"} <= set(c["HostConfig"]["LogConfig"].get("Config") or {})
        ]
        assert uncapped == [], f"containers without a log cap: {uncapped}"
    finally:
        for c in containers(stack):
            if c["Config"]["Labels"].get("tradeops.service") == "log_flood":
                docker("rm", "-f", c["Id"])
    row.observed = (
        f"{flood >> 20} MiB written, {total / 1048576:.1f} MiB kept in {len(files)} files "
        f"(cap {size} x {count}); every stack container capped"
    )
