"""The runner on the fake engine: decide, record the attempt, execute, settle; check mode's plan is what the
dry run recorded; a rollback starts from the stored spec."""

from __future__ import annotations

import os
import time

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.tradeops.stack.plugins.module_utils._state import atomic_write_json
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import split_ref
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.runner import Runner
from ansible_collections.tradeops.stack.plugins.modules import rollout

from .fake_engine import SERVICE, STACK, FakeEngine


class FakeModule:
    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff


def module_params(tmp_path, **options):
    args = {
        "stack": STACK,
        "service": SERVICE,
        "state_root": str(tmp_path),
        "image": "t/app:1",
        "user": "10001",
        "resources": {"memory": "64m", "cpus": 0.5, "pids": 64},
        "strategy": "exclusive",
    }
    args.update(options)
    result = ArgumentSpecValidator(rollout.argument_spec()).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def run(tmp_path, engine, check=False, diff=False, **options):
    return Runner(FakeModule(module_params(tmp_path, **options), check, diff), engine=engine).run()


@pytest.fixture
def images():
    return {"t/app:1": "sha256:1", "t/app:2": "sha256:2", "p:1": "sha256:p"}


def test_create_then_noop_then_upgrade(tmp_path, images):
    engine = FakeEngine(images=images)
    first = run(tmp_path, engine)
    assert first["changed"] and first["operation"] == "create" and not first.get("failed")
    assert first["plan"]["steps"] == [
        "create network t",
        "create t-app",
        "start t-app",
        "health gate t-app (timeout 120s)",
    ]
    assert first["releases"][0]["result"] == "active" and "gate" in first and "switch_gap" in first["timings"]
    again = run(tmp_path, FakeEngine(list(engine.model.values()), images=images, networks={"t"}))
    assert again["operation"] == "noop" and not again["changed"] and again["plan"]["steps"] == []
    up = run(tmp_path, engine, image="t/app:2")
    assert up["operation"] == "upgrade" and up["previous_release"] == first["release"]
    assert "stop t-app (kept for rollback)" in up["plan"]["steps"]


def test_check_mode_plan_is_what_the_dry_run_recorded(tmp_path, images):
    engine = FakeEngine(images=images)
    run(tmp_path, engine)
    engine.actions.clear()
    plan = run(tmp_path, engine, check=True, image="t/app:2")
    assert plan["changed"] and plan["operation"] == "upgrade"
    assert plan["plan"]["steps"] == engine.actions
    assert plan["plan"]["steps"][:2] == ["stop t-app (kept for rollback)", "rename t-app -> t-app-prev"]
    assert plan["plan"]["expected_pause"].startswith("exclusive") and "timings" not in plan and "gate" not in plan


def test_a_failed_gate_rolls_back_and_fails(tmp_path, images):
    engine = FakeEngine(images=images)
    first = run(tmp_path, engine)
    engine.wait_healthy = _failing_for(engine, "sha256:2")
    res = run(tmp_path, engine, image="t/app:2")
    assert res["failed"] and res["rolled_back"] and res["restored_release"] == first["release"]
    assert res["gate"]["passed"] is False and "rollback" in res["timings"]
    assert [r["result"] for r in res["releases"]][:2] == ["rolled_back", "active"]


def _failing_for(engine, image_id):
    original = engine.wait_healthy

    def wait_healthy(container, timeout, **kwargs):
        if container.labels.get("tradeops.spec-hash") == engine.failing_hash:
            from ansible_collections.tradeops.stack.plugins.module_utils._docker import GateResult

            return GateResult(False, "container %s is unhealthy" % container.name, {}, 0.0)
        return original(container, timeout, **kwargs)

    engine.failing_hash = None
    original_create = engine.create

    def create(spec, spec_hash, *args, **kwargs):
        if spec["image_id"] == image_id:
            engine.failing_hash = spec_hash
        return original_create(spec, spec_hash, *args, **kwargs)

    engine.create = create
    return wait_healthy


def test_rollback_starts_from_the_stored_spec(tmp_path, images):
    engine = FakeEngine(images=images)
    first = run(tmp_path, engine)
    second = run(tmp_path, engine, image="t/app:2")
    back = run(tmp_path, engine, state="rolled_back")
    assert back["operation"] == "rollback" and back["release"] == first["release"]
    assert back["spec_hash"] == first["spec_hash"] != second["spec_hash"]
    # the module's options are not what the rollback uses: a different image option changes nothing
    again = run(tmp_path, engine, state="rolled_back", to_release=second["release"], image="t/app:1")
    assert again["spec_hash"] == second["spec_hash"]


def test_absent_removes_everything_and_check_mode_only_says_so(tmp_path, images):
    engine = FakeEngine(images=images)
    run(tmp_path, engine)
    plan = run(tmp_path, FakeEngine(list(engine.model.values()), images=images), check=True, state="absent")
    assert plan["operation"] == "remove" and plan["plan"]["steps"] == ["remove t-app"]
    engine.actions.clear()
    gone = run(tmp_path, engine, state="absent")
    assert gone["changed"] and gone["plan"]["steps"] == ["remove t-app"]


def test_refusals(tmp_path, images):
    with pytest.raises(RolloutFailed, match="pull=never"):
        run(tmp_path, FakeEngine(images=images), image="t/app:9", pull="never")
    with pytest.raises(RolloutFailed, match="would run as root"):
        run(tmp_path, FakeEngine(images=images), user="0")
    with pytest.raises(RolloutFailed, match="needs proxy"):
        run(tmp_path, FakeEngine(images=images), strategy="blue_green")
    with pytest.raises(RolloutFailed, match="fixed host ports"):
        run(tmp_path, FakeEngine(images=images), strategy="start_first", published_ports=["8080:80"])


def test_blue_green_through_the_runner(tmp_path, images):
    engine = FakeEngine(images=images)
    proxy = {"listen": 18080, "port": 8000, "image": "p:1"}
    first = run(tmp_path, engine, strategy="blue_green", proxy=proxy)
    assert first["release"] and "switch t-app-proxy upstream -> t-app-blue" in first["plan"]["steps"]
    up = run(tmp_path, engine, strategy="blue_green", proxy=dict(proxy, drain=0), image="t/app:2")
    assert "switch t-app-proxy upstream -> t-app-green (backup t-app-blue)" in up["plan"]["steps"]
    assert engine.live() == ["t-app-green", "t-app-proxy"]


def test_split_ref():
    assert split_ref("registry:5000/app:1.2") == ("registry:5000/app", "1.2")


def test_a_block_opened_while_the_rollout_waited_for_the_lock_freezes_it(tmp_path, images):
    """The freeze is decided again once the rollout holds the lock: a paper block that opened while it waited
    (paper_block opens one only under the same lock) stops it before any change."""
    engine = FakeEngine(images=images)
    first = run(tmp_path, engine)
    engine.actions.clear()
    runner = Runner(FakeModule(module_params(tmp_path, image="t/app:2", reason="upgrade")), engine=engine)
    acquire = runner.lease.acquire

    def block_opens_first():
        os.makedirs(runner.state.sub("blocks"), exist_ok=True)
        record = {"id": "b1", "status": "active", "started_at": time.time(), "operator": "bob", "reason": "72h"}
        atomic_write_json(runner.state.sub("blocks", "active.json"), record)
        acquire()

    runner.lease.acquire = block_opens_first
    with pytest.raises(RolloutFailed, match="paper block b1 is active"):
        runner.run()
    assert engine.actions == [] and engine.release("t-app") == first["release"]
    assert not os.path.exists(runner.state.sub("lock.json"))  # released again
