"""blue_green against the fake engine: every step, every failure point, the rollback paths."""

from __future__ import annotations

import pytest

from .fake_engine import CONF_DIR, FakeEngine, container, deploy, strategy_for

CONF = CONF_DIR + "/upstream.conf"


def _live_blue(engine):
    """Deploy r1 (blue) on an empty model; returns the engine with its actions cleared."""
    assert deploy("blue_green", engine, "r1")[1] is None
    engine.actions.clear()
    return engine


def test_first_deploy_starts_blue_and_the_proxy():
    engine = FakeEngine(images={"p:1": "sha256:p"})
    strategy, exc = deploy("blue_green", engine, "r1")
    assert exc is None
    assert engine.actions == [
        "create t-app-blue",
        "start t-app-blue",
        "health gate t-app-blue (timeout 5s)",
        "switch t-app-proxy upstream -> t-app-blue",
        "create t-app-proxy",
    ]
    assert engine.live() == ["t-app-blue", "t-app-proxy"]
    assert engine.files[CONF].startswith("# colour: blue\n") and "t-app-blue:8000" in engine.files[CONF]
    assert strategy.attempt.target == "blue" and strategy.attempt.previous_colour is None
    assert strategy.is_noop("hash-r1") and not strategy.is_noop("hash-r2")


def test_upgrade_drains_with_the_old_colour_as_backup():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}))
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc is None
    assert engine.actions == [
        "create t-app-green",
        "start t-app-green",
        "health gate t-app-green (timeout 5s)",
        "switch t-app-proxy upstream -> t-app-green (backup t-app-blue)",
        "drain 5s",
        "switch t-app-proxy upstream -> t-app-green",
        "stop t-app-blue (kept for rollback)",
    ]
    assert engine.live() == ["t-app-green", "t-app-proxy"]
    assert "t-app-blue" not in engine.files[CONF]
    assert strategy.attempt.previous_colour == "blue" and strategy.attempt.previous_hash == "hash-r1"


def test_failed_gate_keeps_blue_serving_and_removes_green():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}, unhealthy={"r2"}))
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc.stage == "gate"
    engine.actions.clear()
    assert strategy.rollback() == "hash-r1"
    # the proxy never switched and still points at blue: only the gate of blue and the removal of green
    assert engine.actions == ["health gate t-app-blue (timeout 5s)", "remove t-app-green"]
    assert engine.live() == ["t-app-blue", "t-app-proxy"]


def test_rejected_nginx_config_keeps_the_old_file():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}))
    before = engine.files[CONF]
    engine.exec = lambda container, argv: (1, "bad config") if "-t" in argv else (0, "")
    _strategy, exc = deploy("blue_green", engine, "r2")
    assert exc.stage == "switch" and "nginx -t rejected" in exc.reason
    assert engine.files[CONF] == before


def test_the_kept_colour_is_reused_for_an_instant_rollback():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}))
    assert deploy("blue_green", engine, "r2")[1] is None
    engine.actions.clear()
    assert deploy("blue_green", engine, "r1")[1] is None
    assert engine.actions[:2] == ["start t-app-blue", "health gate t-app-blue (timeout 5s)"]
    assert engine.live() == ["t-app-blue", "t-app-proxy"]


def _points():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}))
    deploy("blue_green", engine, "r2")
    return range(len(engine.actions))


@pytest.mark.parametrize("point", _points())
def test_every_failure_point_rolls_back_to_blue(point):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}))
    engine.fail_at = point
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc is not None and "injected failure" in exc.reason
    assert strategy.rollback() == "hash-r1"
    assert engine.live() == ["t-app-blue", "t-app-proxy"]
    assert engine.files[CONF].startswith("# colour: blue\n")
    assert "t-app-green" not in engine.files[CONF]


def test_a_failing_rollback_raises():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}, unhealthy={"r2"}))
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc is not None
    engine.unhealthy.add("r1")  # the old colour does not come back either
    with pytest.raises(Exception, match="unhealthy"):
        strategy.rollback()


def test_active_colour_comes_from_the_proxy_file_then_the_history():
    engine = FakeEngine([container("t-app-green", "r1", colour="green")])
    strategy = strategy_for("blue_green", engine)
    assert strategy.active() == (None, None)
    strategy.recorded_colour = lambda: "green"
    assert strategy.active()[0] == "green"
    engine.files[CONF] = "# colour: blue\n"
    assert strategy.active()[0] == "blue"


def test_the_proxy_spec_comes_from_the_table_and_kept_its_hash():
    engine = FakeEngine(images={"tradeops/proxy:1.0": "sha256:p"})
    strategy = strategy_for("blue_green", engine)
    strategy.proxy.cfg = dict(strategy.proxy.cfg, image="tradeops/proxy:1.0", memory="128m")
    strategy.proxy.conf_dir, strategy.proxy.network = "/var/lib/x/proxy/app", "stk"
    spec, spec_hash = strategy.proxy.spec()
    assert spec_hash == "c56b1139fb0de1ad415b33be"  # as before the table: no proxy is recreated
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"] and spec["tmpfs"] == ["/tmp"]
