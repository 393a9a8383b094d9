"""blue_green against the fake engine: every step, every failure point, the rollback paths."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import DryEngine

from . import fake_engine
from .fake_engine import CONF_DIR, FakeEngine, container, strategy_for

CONFS = {"haproxy": CONF_DIR + "/haproxy.cfg", "nginx": CONF_DIR + "/upstream.conf"}


@pytest.fixture(params=["haproxy", "nginx"])
def kind(request):
    return request.param


@pytest.fixture
def conf(kind):
    return CONFS[kind]


@pytest.fixture
def deploy(kind):
    return lambda name, engine, release: fake_engine.deploy(name, engine, release, kind=kind)


def served(engine, kind):
    """The colours the proxy sends requests to (the backup too)."""
    if kind == "nginx":
        text = engine.files[CONFS[kind]]
        return sorted(c for c in ("blue", "green") if "t-app-%s:8000" % c in text)
    proxy = engine.model["t-app-proxy"]
    return sorted(engine.haproxy[proxy.id].weights())


def _live_blue(engine, deploy):
    """Deploy r1 (blue) on an empty model; returns the engine with its actions cleared."""
    assert deploy("blue_green", engine, "r1")[1] is None
    engine.actions.clear()
    return engine


def test_first_deploy_starts_blue_and_the_proxy(kind, conf, deploy):
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
    assert engine.files[conf].startswith("# colour: blue\n") and "t-app-blue:8000" in engine.files[conf]
    assert served(engine, kind) == ["blue"]
    assert strategy.attempt.target == "blue" and strategy.attempt.previous_colour is None
    assert strategy.is_noop("hash-r1") and not strategy.is_noop("hash-r2")


def test_upgrade_drains_with_the_old_colour_as_backup(kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), deploy)
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
    assert served(engine, kind) == ["green"]
    assert strategy.attempt.previous_colour == "blue" and strategy.attempt.previous_hash == "hash-r1"


def test_failed_gate_keeps_blue_serving_and_removes_green(kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}, unhealthy={"r2"}), deploy)
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc.stage == "gate"
    engine.actions.clear()
    assert strategy.rollback() == "hash-r1"
    # the proxy never switched and still points at blue: only the gate of blue and the removal of green
    assert engine.actions == ["health gate t-app-blue (timeout 5s)", "remove t-app-green"]
    assert engine.live() == ["t-app-blue", "t-app-proxy"]


def test_a_rejected_config_keeps_the_old_file(kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), deploy)
    before = engine.files[conf]
    checked = engine.exec
    engine.exec = lambda container, argv: (1, "bad config") if argv[1] in ("-t", "-c") else checked(container, argv)
    _strategy, exc = deploy("blue_green", engine, "r2")
    assert exc.stage == "switch" and "%s rejected the new configuration" % kind in exc.reason
    assert served(engine, kind) == ["blue"]
    assert engine.files[conf] == before


def test_the_kept_colour_is_reused_for_an_instant_rollback(kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), deploy)
    assert deploy("blue_green", engine, "r2")[1] is None
    engine.actions.clear()
    assert deploy("blue_green", engine, "r1")[1] is None
    assert engine.actions[:2] == ["start t-app-blue", "health gate t-app-blue (timeout 5s)"]
    assert engine.live() == ["t-app-blue", "t-app-proxy"]


def _points():
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), fake_engine.deploy)
    fake_engine.deploy("blue_green", engine, "r2")
    return range(len(engine.actions))


@pytest.mark.parametrize("point", _points())
def test_every_failure_point_rolls_back_to_blue(point, kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), deploy)
    engine.fail_at = point
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc is not None and "injected failure" in exc.reason
    assert strategy.rollback() == "hash-r1"
    assert engine.live() == ["t-app-blue", "t-app-proxy"]
    assert engine.files[conf].startswith("# colour: blue\n")
    assert served(engine, kind) == ["blue"]


def test_a_failing_rollback_raises(kind, conf, deploy):
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}, unhealthy={"r2"}), deploy)
    strategy, exc = deploy("blue_green", engine, "r2")
    assert exc is not None
    engine.unhealthy.add("r1")  # the old colour does not come back either
    with pytest.raises(Exception, match="unhealthy"):
        strategy.rollback()


def test_active_colour_comes_from_the_proxy_file_then_the_history(kind, conf, deploy):
    engine = FakeEngine([container("t-app-green", "r1", colour="green")])
    strategy = strategy_for("blue_green", engine, kind=kind)
    assert strategy.active() == (None, None)
    strategy.recorded_colour = lambda: "green"
    assert strategy.active()[0] == "green"
    engine.files[conf] = "# colour: blue\n"
    assert strategy.active()[0] == "blue"


def test_the_nginx_proxy_spec_comes_from_the_table_and_kept_its_hash():
    engine = FakeEngine(images={"tradeops/proxy:1.0": "sha256:p"})
    strategy = strategy_for("blue_green", engine, kind="nginx")
    strategy.proxy.cfg = dict(strategy.proxy.cfg, image="tradeops/proxy:1.0", memory="128m")
    strategy.proxy.conf_dir, strategy.proxy.network = "/var/lib/x/proxy/app", "stk"
    spec, spec_hash = strategy.proxy.spec()
    assert spec_hash == "c56b1139fb0de1ad415b33be"  # as before the table: no proxy is recreated
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"] and spec["tmpfs"] == ["/tmp"]


def test_a_run_killed_during_the_drain_is_converged(kind, conf, deploy):
    """Killed between the two switches: both colours run and the backup is still in the proxy. The next run
    with the same release is no no-op: it switches to the new colour alone and stops the other one."""
    engine = _live_blue(FakeEngine(images={"p:1": "sha256:p"}), deploy)
    strategy = strategy_for("blue_green", engine, kind=kind)
    engine.fail_at = 5  # the second switch
    assert fake_engine.deploy("blue_green", engine, "r2", kind=kind)[1] is not None
    assert engine.live() == ["t-app-blue", "t-app-green", "t-app-proxy"] and served(engine, kind) == ["blue", "green"]
    assert not strategy.is_noop("hash-r2")
    engine.actions.clear()
    assert deploy("blue_green", engine, "r2")[1] is None
    assert engine.actions[-2:] == ["switch t-app-proxy upstream -> t-app-green", "stop t-app-blue (kept for rollback)"]
    assert engine.live() == ["t-app-green", "t-app-proxy"] and served(engine, kind) == ["green"]
    assert strategy.is_noop("hash-r2")


def test_haproxy_serves_only_what_the_running_process_says():
    """The runtime state is read back on every run: a restarted process (servers from its file) or a server
    changed behind the module's back is no no-op; the switch sets every server, the serving ones first."""
    engine = FakeEngine(images={"p:1": "sha256:p"})
    assert fake_engine.deploy("blue_green", engine, "r1")[1] is None
    strategy = strategy_for("blue_green", engine)
    runtime = engine.haproxy[engine.model["t-app-proxy"].id]
    assert strategy.is_noop("hash-r1")
    assert runtime.commands[:4] == [
        "set server tradeops_backend/blue addr model-ip-of-t-app-blue port 8000",
        "set server tradeops_backend/blue weight 256",
        "set server tradeops_backend/blue state ready",
        "set server tradeops_backend/green state maint",
    ]
    runtime("set server tradeops_backend/blue weight 1")
    assert not strategy.is_noop("hash-r1")
    runtime("set server tradeops_backend/blue weight 256; set server tradeops_backend/blue addr 10.0.0.9 port 8000")
    assert not strategy.is_noop("hash-r1")  # not the address of the blue container
    runtime("set server tradeops_backend/blue addr model-ip-of-t-app-blue port 8000")
    assert strategy.is_noop("hash-r1")


def test_check_mode_reads_the_running_haproxy_and_never_sets_a_server():
    """The dry engine reads the real process's servers (to decide the plan) but a planned switch sends
    nothing to it: a check-mode deploy once moved the live proxy's servers to the plan's colour."""
    real = FakeEngine(images={"p:1": "sha256:p"})
    assert fake_engine.deploy("blue_green", real, "r1")[1] is None
    runtime = real.haproxy[real.model["t-app-proxy"].id]
    sent = list(runtime.commands)
    dry = DryEngine(real)
    strategy = strategy_for("blue_green", dry)
    assert strategy.is_noop("hash-r1")
    strategy.execute(fake_engine.SPEC, "hash-r2", "r2")
    assert "switch t-app-proxy upstream -> t-app-green" in dry.actions
    assert [c for c in runtime.commands if not c.startswith("show ")] == [c for c in sent if not c.startswith("show ")]
    assert served(real, "haproxy") == ["blue"] and strategy_for("blue_green", real).is_noop("hash-r1")


def test_the_haproxy_spec_is_hardened_and_restarts_only_on_a_config_change():
    engine = FakeEngine(images={"tradeops/haproxy:2.6": "sha256:h"})
    proxy = strategy_for("blue_green", engine).proxy
    proxy.cfg = dict(proxy.cfg, image=None)
    spec, spec_hash = proxy.spec()
    assert spec["image_id"] == "sha256:h" and spec["user"] == "10081:10081" and spec["command"][0] == "haproxy"
    assert (
        spec["read_only"] is True and spec["cap_drop"] == ["ALL"] and spec["healthcheck"]["Test"][:2] == ["CMD", "bash"]
    )
    # the colour is runtime state: the same spec whichever colour the file names; a new port is a new config
    engine.files[proxy.conf_file] = proxy.render("green", "r9")
    assert proxy.spec()[1] == spec_hash
    proxy.cfg = dict(proxy.cfg, port=9000)
    assert proxy.spec()[1] != spec_hash


def _proxy_with_old_spec(kind="haproxy"):
    engine = FakeEngine(images={"p:1": "sha256:p"})
    assert fake_engine.deploy("blue_green", engine, "r1", kind=kind)[1] is None
    engine.model["t-app-proxy"].labels[fake_engine.docker_utils.LABEL_SPEC_HASH] = "old-spec"
    engine.actions.clear()
    return engine, strategy_for("blue_green", engine, kind=kind).proxy


def test_a_changed_proxy_spec_replaces_the_proxy_created_before_the_old_one_stops():
    engine, proxy = _proxy_with_old_spec()
    old_id = engine.model["t-app-proxy"].id
    new = proxy.ensure()
    assert engine.actions == [
        "create t-app-proxy-next",
        "stop t-app-proxy (kept for rollback)",
        "start t-app-proxy-next",
        "remove t-app-proxy",
        "rename t-app-proxy-next -> t-app-proxy",
    ]
    assert new.id != old_id and engine.live() == ["t-app-blue", "t-app-proxy"]


def test_a_replacement_that_does_not_start_gives_the_port_back_to_the_old_proxy():
    engine, proxy = _proxy_with_old_spec()
    healthy = engine.wait_healthy
    engine.wait_healthy = lambda c, *a, **kw: (
        fake_engine.docker_utils.GateResult(False, "no", {}, 0.0) if c.name.endswith("-next") else healthy(c, *a, **kw)
    )
    with pytest.raises(fake_engine.RolloutFailed, match="did not start"):
        proxy.ensure()
    assert engine.actions[-2:] == ["remove t-app-proxy-next", "start t-app-proxy"]
    assert engine.live() == ["t-app-blue", "t-app-proxy"] and engine.model["t-app-proxy"].labels
    assert sorted(engine.model) == ["t-app-blue", "t-app-proxy"]


def test_an_interrupted_replacement_is_finished_on_the_next_run():
    engine, proxy = _proxy_with_old_spec()
    engine.fail_at = 3  # killed after the old proxy stopped and the new one started, before the removal
    with pytest.raises(fake_engine.RolloutFailed):
        proxy.ensure()
    engine.actions.clear()
    engine.remove(engine.model["t-app-proxy"])  # ... or after the removal, before the rename
    engine.actions.clear()
    proxy.ensure()
    assert engine.actions == ["rename t-app-proxy-next -> t-app-proxy"]
    assert sorted(engine.model) == ["t-app-blue", "t-app-proxy"]
