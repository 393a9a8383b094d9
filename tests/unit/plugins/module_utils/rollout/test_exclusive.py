"""exclusive against the fake engine: every step, every failure point, the rollback paths."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import InvariantViolated

from .fake_engine import FakeEngine, container, deploy, strategy_for


def test_first_deploy_creates_main(slots):
    engine = FakeEngine()
    strategy, exc = deploy("exclusive", engine, "r1")
    assert exc is None
    assert engine.actions == [
        "create t-app",
        "start t-app",
        "health gate t-app (timeout 5s)",
    ]
    assert engine.live() == ["t-app"] and strategy.attempt.previous_hash is None


def test_upgrade_stops_the_old_one_first_and_keeps_it():
    engine = FakeEngine([container("t-app", "r1")])
    strategy, exc = deploy("exclusive", engine, "r2")
    assert exc is None
    assert engine.actions == [
        "stop t-app (kept for rollback)",
        "rename t-app -> t-app-prev",
        "create t-app",
        "start t-app",
        "health gate t-app (timeout 5s)",
    ]
    assert engine.live() == ["t-app"] and engine.release("t-app") == "r2"
    assert engine.model["t-app-prev"].status == "exited" and engine.release("t-app-prev") == "r1"
    assert engine.max_live == 1 and strategy.attempt.previous_hash == "hash-r1"
    assert "switch_gap" in strategy.attempt.timings


def test_rollback_to_the_kept_instance_swaps_names():
    engine = FakeEngine([container("t-app", "r2"), container("t-app-prev", "r1", status="exited")])
    _strategy, exc = deploy("exclusive", engine, "r1")
    assert exc is None
    assert engine.actions == [
        "stop t-app (kept for rollback)",
        "rename t-app -> t-app-next",
        "rename t-app-prev -> t-app",
        "start t-app",
        "health gate t-app (timeout 5s)",
        "rename t-app-next -> t-app-prev",
    ]
    assert engine.release("t-app") == "r1" and engine.release("t-app-prev") == "r2"
    assert engine.max_live == 1


def test_unhealthy_new_instance_is_removed_and_the_old_one_restored():
    engine = FakeEngine([container("t-app", "r1")], unhealthy={"r2"})
    strategy, exc = deploy("exclusive", engine, "r2")
    assert exc is not None and exc.stage == "gate"
    engine.actions.clear()
    assert strategy.rollback() == "hash-r1"
    assert engine.actions == [
        "remove t-app",
        "rename t-app-prev -> t-app",
        "start t-app",
        "health gate t-app (timeout 5s)",
    ]
    assert engine.live() == ["t-app"] and engine.release("t-app") == "r1"
    assert engine.max_live == 1


def test_a_stray_second_instance_is_repaired_with_a_warning():
    warnings = []
    engine = FakeEngine([container("t-app", "r1"), container("t-app-next", "r0")])

    strategy = strategy_for("exclusive", engine)
    strategy.warn = warnings.append
    strategy.execute({"labels": {}}, "hash-r2", "r2")
    assert warnings and "t-app-next was running beside t-app" in warnings[0]
    assert engine.live() == ["t-app"]


def test_the_invariant_is_checked_after_every_step():

    engine = FakeEngine([container("t-app", "r1")])
    strategy = strategy_for("exclusive", engine)
    original = engine.create

    def create_beside(*args, **kwargs):  # a container another actor started behind our back
        engine.model["t-app-other"] = container("t-app-other", "rx")
        return original(*args, **kwargs)

    engine.create = create_beside
    with pytest.raises(InvariantViolated, match="2 instances running after starting the new instance"):
        strategy.execute({"labels": {}}, "hash-r2", "r2")


def _successful_actions(initial):
    engine = FakeEngine(initial())
    assert deploy("exclusive", engine, "r2")[1] is None
    return engine.actions


def _initial():
    return [container("t-app", "r1")]


# A failure of the stop (point 0) or of the rename to -prev (point 1) leaves the old instance under <name>:
# the rollback finds it by its id (Attempt.previous_id) wherever it is, not as -prev only.
KNOWN_GAPS = set()


@pytest.mark.parametrize(
    "point",
    [
        pytest.param(i, marks=pytest.mark.xfail(strict=True, reason="rollback looks for the old one as -prev only"))
        if i in KNOWN_GAPS
        else i
        for i in range(len(_successful_actions(_initial)))
    ],
)
def test_every_failure_point_rolls_back_to_the_old_release(point):
    engine = FakeEngine(_initial(), fail_at=point)
    strategy, exc = deploy("exclusive", engine, "r2")
    assert exc is not None and "injected failure" in exc.reason
    assert strategy.rollback() == "hash-r1"
    assert engine.live() == ["t-app"] and engine.release("t-app") == "r1"
    assert engine.max_live <= 1  # never two (a failed stop leaves the old one running: no action at all)


@pytest.mark.parametrize("point", range(3))
def test_every_failure_point_of_a_first_deploy_leaves_nothing_running(point):
    engine = FakeEngine(fail_at=point)
    strategy, exc = deploy("exclusive", engine, "r1")
    assert exc is not None
    assert strategy.rollback() is None
    assert engine.live() == []
