"""The gate on the fake engine: the report, the failure, the post-promotion watch."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.gate import Gate

from .fake_engine import FakeEngine, container

HEALTH = {"timeout": 7, "http": None, "monitor": 0}


def test_a_passing_gate_reports_and_records():
    app = container("t-app", "r1")
    engine = FakeEngine([app])
    gate = Gate(engine, HEALTH, "t")
    report = gate.gate(app)
    assert report["passed"] and report["container"] == "t-app" and gate.report is report
    assert engine.actions == ["health gate t-app (timeout 7s)"] and "gate" in gate.timings
    gate.gate(app, label="rollback_gate")
    assert gate.report is report and "rollback_gate" in gate.timings  # only the new instance's is reported


def test_a_failing_gate_raises_with_its_evidence():
    app = container("t-app", "r2")
    gate = Gate(FakeEngine([app], unhealthy={"r2"}), HEALTH, "t")
    with pytest.raises(RolloutFailed, match="unhealthy") as info:
        gate.gate(app)
    assert info.value.stage == "gate" and info.value.gate["passed"] is False


def test_watch_fails_when_the_instance_died_or_restarted():
    app = container("t-app", "r1")
    lease = []
    gate = Gate(FakeEngine([app]), HEALTH, "t", keep_lock=lambda: lease.append(1))
    gate.watch(app)
    app.set_status("exited")
    with pytest.raises(RolloutFailed, match="after promotion, container t-app is exited") as info:
        gate.watch(app)
    assert info.value.stage == "monitor" and lease == [1, 1]
    app.set_status("running")
    app.attrs["RestartCount"] = 1
    with pytest.raises(RolloutFailed):
        gate.watch(app)


def test_waits_on_a_model_are_recorded_not_slept():
    app = container("t-app", "r1")
    engine = FakeEngine([app])
    gate = Gate(engine, dict(HEALTH, monitor=600), "t", analysis=object(), bake=600)
    gate.pre_promotion(app)
    gate.post_promotion(app)
    gate.pause(600, "drain")
    assert engine.actions == [
        "metric analysis before promotion",
        "metric analysis bake 600s",
        "monitor t-app for 600s",
        "drain 600s",
    ]
