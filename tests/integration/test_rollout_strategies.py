"""Every strategy through its whole life on the real engine: first deploy, no-op re-run without a single
Docker event, upgrade, automatic rollback (unhealthy image, crash at start), manual rollback to a named
release, absent."""

from __future__ import annotations

import json
import socket
import time

import pytest
from rollout_support import docker, docker_events, http_get, rollout

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def extra_for(strategy: str) -> dict:
    if strategy == "blue_green":
        return {
            "proxy": {"listen": free_port(), "port": 8000, "drain": 1},
            "health": {"timeout": 60, "http": {"port": 8000}},
        }
    return {}


def served_version(stack, strategy, extra) -> str | None:
    """What the service answers: through the proxy (blue_green) or at the serving container's IP."""
    if strategy == "blue_green":
        return http_get(f"http://127.0.0.1:{extra['proxy']['listen']}/")[1]
    running = stack.running("app")
    assert len(running) == 1, running
    ip = next(iter(json.loads(docker("inspect", running[0]))[0]["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return http_get(f"http://{ip}:8000/")[1]


@pytest.mark.parametrize("strategy", ["exclusive", "start_first", "blue_green"])
def test_lifecycle(strategy, stack, app_images):
    extra = extra_for(strategy)
    args = lambda image, **kw: stack.args("app", image=image, strategy=strategy, **{**extra, **kw})  # noqa: E731

    # first deploy
    first = rollout(args(app_images["1"]))
    assert first["changed"] and not first.get("failed"), first.get("msg")
    assert first["operation"] == "create"
    assert served_version(stack, strategy, extra) == "1"
    inspect = json.loads(docker("inspect", stack.running("app")[0]))[0]
    host = inspect["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] and host["Memory"] > 0 and host["PidsLimit"] > 0
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["LogConfig"]["Config"]["max-size"] == "10m"
    assert inspect["Config"]["User"] == "65534:65534"
    assert inspect["Config"]["Labels"]["tradeops.release"] == first["release"]

    # no-op: changed=false and not a single Docker event for the stack
    before = time.time()
    again = rollout(args(app_images["1"]))
    after = time.time()
    assert again["changed"] is False and again["operation"] == "noop", again
    assert docker_events(before, after, stack.name) == []

    # upgrade
    up = rollout(args(app_images["2"]))
    assert up["changed"] and not up.get("failed"), up.get("msg")
    assert up["operation"] == "upgrade" and up["previous_release"] == first["release"]
    assert served_version(stack, strategy, extra) == "2"
    assert len(stack.running("app")) == 1

    # automatic rollback: unhealthy image, then an image that crashes at start
    for broken, why in (
        (app_images["unhealthy"], "unhealthy; last health checks: exit 1"),
        (app_images["crash"], "exit code 3"),
    ):
        bad = rollout(args(broken))
        assert bad.get("failed") is True and bad["rolled_back"] is True, bad
        assert bad["restored_release"] == up["release"] and bad["release"] == up["release"]
        assert why in bad["reason"], bad["reason"]
        assert bad["gate"]["passed"] is False
        assert served_version(stack, strategy, extra) == "2"
        assert len(stack.running("app")) == 1
        # and re-running the good spec afterwards is a no-op
        assert rollout(args(app_images["2"]))["changed"] is False
    crash_logs = " ".join(bad["gate"]["logs"])
    assert "fatal: cannot open" in crash_logs

    # manual rollback to a named release
    back = rollout(args(None, state="rolled_back", to_release=first["release"]))
    assert back["changed"] and not back.get("failed"), back.get("msg")
    assert back["release"] == first["release"] and back["operation"] == "rollback"
    assert served_version(stack, strategy, extra) == "1"
    history = {r["id"]: r for r in back["releases"]}
    assert history[first["release"]]["result"] == "active"
    assert {r["result"] for r in back["releases"]} >= {"active", "superseded", "rolled_back"}

    # audit trail: one line per rollout, with from/to releases and the reason of the rollbacks
    events = [e for e in stack.audit() if e["action"] == "rollout"]
    assert [e["result"] for e in events] == ["ok", "ok", "rolled_back", "rolled_back", "ok"]
    assert events[1]["from_release"] == first["release"] and events[1]["to_release"] == up["release"]
    assert "unhealthy" in events[2]["reason"]

    # absent
    gone = rollout(args(None, state="absent"))
    assert gone["changed"] and not gone.get("failed")
    assert stack.containers() == []
    assert rollout(args(None, state="absent"))["changed"] is False
