"""End to end on the local inventory, with a stack of its own (t-pl<random>), its own
state root and ports, so it never touches `make demo`'s stack (cdb).

site from nothing; a no-op re-run reports zero changes; a broken bot version rolls the
stack back and exits non-zero; rollback to a named manifest; a wrong description is
rejected naming the service and field; an active paper block blocks a deploy; a flag
flip reaches the bot without a restart. Tests run in file order and share one stack.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest
from conftest import run_playbook
from playbook_support import BOTS, BROKEN, GOOD, OLDER, PLAYBOOKS, Stack, changed_count, docker, image_id, remove_stack

pytestmark = pytest.mark.slow
HEALTH = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/health').read().decode())"


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    s.root.mkdir(parents=True, exist_ok=True)
    yield s
    remove_stack(s.name, s.root)


def test_site_from_nothing(stack):
    t0 = time.monotonic()
    run = stack.play("site", tradeops_host_roles=[])
    assert run.rc == 0, run.output[-4000:]
    assert "OK   " + stack.name in run.output or "VERIFY OK" in run.output
    running = stack.running()
    for svc in ("postgres", "redis", *BOTS):
        assert svc in running, (svc, running)
    for svc in BOTS:
        assert running[svc]["image"] == image_id(GOOD)
    manifest = stack.manifest()
    assert manifest["known_good"] is True
    assert set(manifest["services"]) >= {"postgres", "redis", *BOTS}
    assert manifest["flags"] == {"pause_new_orders": False}
    said = " ".join(run.output.split())  # the YAML callback folds long lines
    # the gate is a visible wait: the rollout job's step and health state while the play waits for it
    assert re.search(r"\w+: health gate t-pl\S+: starting, \d+ s of \d+ s", said), said[-8000:]
    for svc in BOTS:
        assert re.search(r"%s: create done in [\d.]+ s" % svc, said), said[-8000:]
    assert said.count(f"DEPLOY ok: {stack.name} on localhost") == 1, said[-3000:]
    print(f"site from nothing: {time.monotonic() - t0:.1f} s")


def networks_of(container: str) -> set[str]:
    return set(json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container) or "{}"))


def reach(container: str, host: str, port: int) -> str:
    """From inside ``container``: "ok", or why a TCP connection to host:port failed (name or connection)."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=3).close(); print('ok')\n"
        "except socket.gaierror: print('no such name')\n"
        "except OSError as e: print('refused: %s' % e)\n"
    )
    return docker("exec", container, "python3", "-c", code)


def test_each_container_reaches_only_what_it_uses(stack):
    """PostgreSQL and Redis sit on internal networks of their own that only their users join."""
    running = {svc: info["name"] for svc, info in stack.running().items()}
    n = stack.name
    inspected = json.loads(docker("network", "inspect", f"{n}-postgres", f"{n}-redis"))
    internal = {net["Name"]: net["Internal"] for net in inspected}
    assert internal == {f"{n}-postgres": True, f"{n}-redis": True}
    assert networks_of(running["postgres"]) == {f"{n}-postgres"}
    assert networks_of(running["redis"]) == {f"{n}-redis"}
    assert networks_of(running["market_data"]) == {n, f"{n}-metrics", f"{n}-redis"}
    assert f"{n}-postgres" in networks_of(running["paper_execution"])
    # the proxy, not the colours, is on the metrics network (Prometheus scrapes through it)
    assert f"{n}-metrics" in networks_of(f"{n}-db-writer-proxy")
    assert f"{n}-metrics" not in networks_of(running["db_writer"])
    # reachability, from inside: a bot that does not use PostgreSQL cannot even resolve it
    assert reach(running["paper_execution"], "postgres", 5432) == "ok"
    assert reach(running["market_data"], "postgres", 5432) == "no such name"
    assert reach(running["market_data"], "redis", 6379) == "ok"


def test_redis_refuses_an_unauthenticated_client(stack):
    bot = stack.running()["signal_engine"]["name"]
    code = (
        "import redis\n"
        "try:\n"
        "    redis.Redis(host='redis', socket_timeout=3).ping(); print('PONG without a password')\n"
        "except redis.exceptions.AuthenticationError as e: print('refused: %s' % e)\n"
        "except redis.exceptions.ResponseError as e: print('refused: %s' % e)\n"
        "pw = open('/run/secrets/redis_password').read().strip()\n"
        "print('with the secret:', redis.Redis(host='redis', password=pw, socket_timeout=3).ping())\n"
    )
    out = docker("exec", bot, "python3", "-c", code)
    assert "refused: " in out and "Authentication required" in out, out
    assert "with the secret: True" in out, out
    # the password is not in the container's configuration (no argument, no environment)
    config = docker("inspect", "-f", "{{json .Config}}", stack.running()["redis"]["name"])
    assert "local-demo-redis" not in config and "requirepass" not in config


def test_a_deploy_in_check_mode_plans_and_changes_nothing(stack):
    before = stack.manifest()["id"]
    started = {k: v["started"] for k, v in stack.running().items()}
    audit_before = (stack.home / "audit.log").read_text()
    run = run_playbook(
        PLAYBOOKS / "deploy.yml",
        extra_vars={**stack.vars, "tradeops_bot_image": OLDER, "tradeops_deploy_reason": "check 1.0.0"},
        check=True,
        timeout=900,
    )
    assert run.rc == 0, run.output[-4000:]
    said = " ".join(run.output.split())
    assert re.search(r"plan for %s \(5 to change\)" % stack.name, said), said[-3000:]
    assert {k: v["started"] for k, v in stack.running().items()} == started
    for svc in BOTS:
        assert stack.running()[svc]["image"] == image_id(GOOD)
    assert stack.manifest()["id"] == before
    assert (stack.home / "audit.log").read_text() == audit_before
    assert not (stack.home / "lock.json").exists()


def test_noop_rerun_reports_zero_changes(stack):
    before = stack.manifest()["id"]
    started = {k: v["started"] for k, v in stack.running().items()}
    run = stack.play("deploy")
    assert run.rc == 0, run.output[-4000:]
    assert changed_count(run.output) == 0, run.output[-4000:]
    assert stack.manifest()["id"] == before
    assert {k: v["started"] for k, v in stack.running().items()} == started


def test_wrong_description_is_rejected_before_any_change(stack):
    services = [
        {"name": "postgres", "image": "tradeops/postgres:15-bookworm", "strategy": "exclusive",
         "resources": {"memory": "256m", "cpus": 0.5, "pids": 64}},
        {"name": "risk_manager", "strategy": "start_first", "resources": {"memory": "256m", "cpus": "lots", "pids": 1}},
    ]  # fmt: skip
    audit_before = (stack.home / "audit.log").read_text()
    run = stack.play("deploy", tradeops_stack_services=services)
    assert run.rc != 0
    assert "service 'risk_manager': missing required arguments: image" in run.output
    assert "service 'risk_manager': argument 'cpus'" in run.output
    assert (stack.home / "audit.log").read_text() == audit_before


def test_broken_bot_version_rolls_the_stack_back_and_fails(stack):
    before = stack.manifest()
    run = stack.play(
        "deploy",
        env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"},
        tradeops_bot_image=BROKEN,
        tradeops_deploy_reason="broken 1.1.0",
    )
    assert run.rc != 0, run.output[-4000:]
    assert "DEPLOY FAILED" in run.output
    assert "rolled back" in run.output
    # one closing summary, told apart from a failed rollback, and the same outcome for an AWX workflow
    assert run.output.count(f"DEPLOY FAILED, ROLLED BACK: {stack.name} on localhost") == 1, run.output[-4000:]
    assert "ROLLBACK FAILED" not in run.output
    said = " ".join(run.output.split())  # the YAML callback folds long lines
    assert re.search(r"market_data: \S+ -> tradeops/bot:1\.1\.0 \(upgrade, \w+(, [\d.]+ s)?\): FAILED", said), said[
        -3000:
    ]
    assert "outcome: failed, rolled back" in said, said[-2000:]
    # the failure is printed once (the summary's why), its repeated health lines counted once
    assert said.count("deliberately broken build 1.1.0") == 1, said[-6000:]
    assert "(x3)" in said or "(x2)" in said, said[-3000:]
    assert re.search(r"market_data: health gate \S+: (starting|unhealthy), \d+ s of 120 s", said), said[-6000:]
    assert "attempted_release" not in said  # no result dump
    running = stack.running()
    for svc in BOTS:
        assert running[svc]["image"] == image_id(GOOD), (svc, running[svc])
    assert stack.manifest()["id"] == before["id"]
    events = [json.loads(line) for line in (stack.home / "audit.log").read_text().splitlines()]
    assert any(e.get("result") in ("rolled_back", "failed") for e in events), events[-5:]


def test_rollback_to_a_named_manifest(stack):
    good = stack.manifest()
    run = stack.play("deploy", tradeops_bot_image=OLDER, tradeops_deploy_reason="1.0.0")
    assert run.rc == 0, run.output[-4000:]
    newer = stack.manifest()
    assert newer["id"] != good["id"] and newer["known_good"] is True
    said = " ".join(run.output.split())  # the YAML callback folds long lines
    assert said.count(f"DEPLOY ok: {stack.name} on localhost in ") == 1, said[-4000:]
    assert f"manifest {newer['id']} (known-good)" in said
    assert all(stack.running()[svc]["image"] == image_id(OLDER) for svc in BOTS)
    # known-good was recorded before the deploy let go of its lock (no run can commit in between)
    events = [json.loads(line) for line in (stack.home / "audit.log").read_text().splitlines()]
    steps = [e["action"] for e in events if e["action"] in ("manifest_known_good", "lock_release")]
    assert steps[-2:] == ["manifest_known_good", "lock_release"], steps
    run = stack.play("rollback", tradeops_rollback_manifest=good["id"])
    assert run.rc == 0, run.output[-4000:]
    assert run.output.count(f"ROLLBACK ok: {stack.name} on localhost in ") == 1, run.output[-4000:]
    said = " ".join(run.output.split())
    assert re.search(r"signal_engine: tradeops/bot:1\.0\.0 -> \S+ \(rollback, ", said), said[-3000:]
    assert stack.manifest()["id"] == good["id"]
    assert {good["id"], newer["id"]} <= {r["id"] for r in stack.manifest("history")}
    running = stack.running()
    for svc in BOTS:
        assert running[svc]["image"] == image_id(GOOD), (svc, running[svc])


def test_flag_flip_reaches_the_bot_without_a_restart(stack):
    started = stack.running()["paper_execution"]["started"]
    before = stack.manifest()
    lines_before = len((stack.home / "audit.log").read_text().splitlines())
    # as AWX launches it: the launching user is the extra var awx_user_name, not the SSH user
    run = stack.play("flags", tradeops_flag="pause_new_orders", tradeops_flag_value="true", awx_user_name="alice.awx")
    assert run.rc == 0, run.output[-4000:]
    flags = json.loads((stack.state / stack.name / "config" / "paper_execution" / "flags.json").read_text())
    assert flags == {"pause_new_orders": True}
    flipped = stack.manifest()
    assert flipped["flags"]["pause_new_orders"] is True and flipped["kind"] == "flags"
    assert flipped["services"] == before["services"]
    assert {before["id"], flipped["id"]} <= {r["id"] for r in stack.manifest("history")}
    name = stack.running()["paper_execution"]["name"]
    deadline = time.monotonic() + 30
    body = {}
    while time.monotonic() < deadline:
        raw = docker("exec", name, "python3", "-c", HEALTH)
        body = json.loads(raw) if raw.startswith("{") else {}
        if body.get("orders_paused") is True:
            break
        time.sleep(1)
    assert body.get("orders_paused") is True, body
    assert stack.running()["paper_execution"]["started"] == started
    events = [json.loads(line) for line in (stack.home / "audit.log").read_text().splitlines()]
    flip = [e for e in events if e.get("action") == "flag_flip" and e.get("flag") == "pause_new_orders"][-1]
    assert (flip["user"], flip["host"]) == ("alice.awx", socket.gethostname())
    assert flip["controller"].endswith("@" + socket.gethostname()), flip  # the controller's login, apart
    this_run = [json.loads(line) for line in (stack.home / "audit.log").read_text().splitlines()[lines_before:]]
    assert this_run and {e["user"] for e in this_run} == {"alice.awx"}, this_run  # lock, flip, manifest, unlock
    assert flipped["created_by"].startswith("alice.awx@"), flipped
    run = stack.play("flags", tradeops_flag="pause_new_orders", tradeops_flag_value="false")
    assert run.rc == 0, run.output[-4000:]


def test_an_active_block_blocks_a_deploy(stack):
    run = stack.play(
        "paper_block",
        tradeops_block_action="start",
        tradeops_block_id="t-block-1",
        tradeops_block_reason="integration test",
    )
    assert run.rc == 0, run.output[-4000:]
    try:
        before = {k: v["started"] for k, v in stack.running().items()}
        run = stack.play("deploy", tradeops_bot_image=OLDER)
        assert run.rc != 0
        assert "Paper block t-block-1 is active" in run.output and "deploy is frozen" in run.output
        assert {k: v["started"] for k, v in stack.running().items()} == before
        # a flag flip and a restore are frozen too, decided under the lock; nothing changes
        overrides = stack.home / "config" / "overrides.json"
        overrides_before = overrides.read_text() if overrides.exists() else None
        run = stack.play("flags", tradeops_flag="pause_new_orders", tradeops_flag_value="true")
        assert run.rc != 0 and "flags is frozen, nothing was changed" in run.output, run.output[-4000:]
        assert (overrides.read_text() if overrides.exists() else None) == overrides_before
        backups = stack.home / "backups"
        backups.mkdir(parents=True, exist_ok=True)
        (backups / "t-fake.dump").write_bytes(b"not a dump: the freeze refuses before pg_restore reads it")
        dumps_before = sorted(p.name for p in backups.iterdir())
        run = stack.play("restore", tradeops_restore_backup="t-fake.dump", tradeops_restore_confirm=True)
        assert run.rc != 0 and "restore is frozen, nothing was changed" in run.output, run.output[-4000:]
        assert sorted(p.name for p in backups.iterdir()) == dumps_before  # no safety backup was taken either
        # a whole-stack rollback too: refused before it restores the manifest's flags
        manifest_before = stack.manifest()["id"]
        run = stack.play("rollback")
        assert run.rc != 0 and "rollback is frozen, nothing was changed" in run.output, run.output[-4000:]
        assert (overrides.read_text() if overrides.exists() else None) == overrides_before
        assert stack.manifest()["id"] == manifest_before
        assert {k: v["started"] for k, v in stack.running().items()} == before
        # forced: the flip happens and the override is audited with the block and the operation
        run = stack.play(
            "flags", tradeops_flag="pause_new_orders", tradeops_flag_value="true", tradeops_allow_during_block=True
        )
        assert run.rc == 0, run.output[-4000:]
        events = [json.loads(line) for line in (stack.home / "audit.log").read_text().splitlines()]
        assert any(
            e.get("action") == "freeze_override" and e.get("operation") == "flags" and e.get("block") == "t-block-1"
            for e in events
        ), events[-5:]
        run = stack.play(
            "flags", tradeops_flag="pause_new_orders", tradeops_flag_value="false", tradeops_allow_during_block=True
        )
        assert run.rc == 0, run.output[-4000:]
    finally:
        run = stack.play(
            "paper_block",
            env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"},
            tradeops_block_action="abort",
            tradeops_block_reason="integration test done",
            tradeops_block_report_dest=str(stack.root / "reports"),
        )
        assert run.rc == 0, run.output[-4000:]
    # the report comes to the controller (what an AWX user gets), and to set_stats as an artifact
    fetched = stack.root / "reports" / stack.name / "t-block-1" / "localhost"
    assert sorted(p.name for p in fetched.iterdir()) == ["report.json", "report.md", "report.svg"], run.output[-3000:]
    assert json.loads((fetched / "report.json").read_text())["block"]["id"] == "t-block-1"
    assert "tradeops_block_report:" in run.output, run.output[-2000:]


def test_restore_takes_the_dump_name_as_data_not_as_shell(stack):
    """A dump name is operator input: a name with shell syntax reaches pg_restore whole, nothing runs it."""
    backups = stack.home / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    crafted = 't-$(echo INJ""ECTED).dump'  # the shell would turn this into t-INJECTED.dump
    (backups / crafted).write_bytes(b"not a dump")
    os.chown(backups / crafted, 999, 999)
    try:
        run = stack.play("restore", tradeops_restore_backup=crafted, tradeops_restore_confirm=True)
        assert run.rc != 0, run.output[-3000:]  # not a valid archive: pg_restore refuses it, in one transaction
        assert "INJECTED" not in run.output.replace('INJ""ECTED', ""), run.output[-3000:]
        assert "does not appear to be a valid archive" in run.output or "input file" in run.output, run.output[-3000:]
    finally:
        (backups / crafted).unlink()


def test_teardown_takes_the_stack_down_and_nothing_else(stack):
    """The demo-down path: refused without the typed stack name, then everything of the stack goes and a
    neighbour named like it (container, volume, network) stays."""
    neighbour = stack.name + "x"
    try:
        docker("network", "create", "--label", f"tradeops.stack={neighbour}", neighbour)
        docker("volume", "create", f"{stack.name}-not-mounted")  # a prefix match would take it
        docker(
            "run", "-d", "--name", f"{neighbour}-app", "--label", f"tradeops.stack={neighbour}", "--network",
            neighbour, "-v", f"{neighbour}-data:/data", "--entrypoint", "sleep", "tradeops/bot:1.0.1", "600",
        )  # fmt: skip
        assert docker("ps", "-q", "--filter", f"name=^{neighbour}-app$"), "the neighbour did not start"
        assert stack.running(), "the stack should be up before its teardown"
        assert docker("volume", "ls", "-q", "--filter", f"name=^{stack.name}-pgdata$"), "no PostgreSQL volume to remove"

        run = stack.play("teardown")
        assert run.rc != 0 and f"tradeops_teardown_confirm={stack.name}" in run.output, run.output[-3000:]
        assert stack.running(), "an unconfirmed teardown changed something"

        run = stack.play("teardown", tradeops_teardown_confirm=stack.name)
        assert run.rc == 0, run.output[-4000:]
        assert f"{stack.name} on localhost is down" in run.output
        assert docker("ps", "-aq", "--filter", f"label=tradeops.stack={stack.name}") == ""
        assert docker("volume", "ls", "-q", "--filter", f"name=^{stack.name}-pgdata$") == ""
        assert not stack.home.exists()
        # nothing else: the neighbour's container, network and volume, and the unmounted look-alike
        assert docker("ps", "-q", "--filter", f"name=^{neighbour}-app$")
        assert docker("network", "ls", "-q", "--filter", f"name=^{neighbour}$")
        assert docker("volume", "ls", "-q", "--filter", f"name=^{neighbour}-data$")
        assert docker("volume", "ls", "-q", "--filter", f"name=^{stack.name}-not-mounted$")
    finally:
        docker("rm", "-f", f"{neighbour}-app")
        docker("network", "rm", neighbour)
        docker("volume", "rm", f"{neighbour}-data", f"{stack.name}-not-mounted")
