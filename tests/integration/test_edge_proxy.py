"""The HAProxy edge proxy on the real engine: the drain with the old colour as a backup, keep-alive clients
through switches and rollbacks, convergence after a controller killed mid-switch or a restarted proxy, and the
migration from the nginx proxy."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from rollout_support import Load, docker, http_get, rollout, wait_for

pytestmark = pytest.mark.slow

RUNTIME = 'exec 3<>/dev/tcp/127.0.0.1/9999 && printf "%s\\n" "$1" >&3 && cat <&3'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runtime(stack, command: str) -> str:
    return docker("exec", f"{stack.name}-app-proxy", "bash", "-c", RUNTIME, "runtime", command)


def weights(stack) -> dict[str, int]:
    """Server -> weight of the servers in service, read from the running HAProxy (maintenance: left out)."""
    out = {}
    for line in runtime(stack, "show servers state tradeops_backend").splitlines():
        fields = line.split()
        # srv_name, srv_admin_state (0x01 forced, 0x02 inherited, 0x20 resolution maintenance), srv_uweight
        if len(fields) > 8 and not line.startswith("#") and not int(fields[6]) & 0x23:
            out[fields[3]] = int(fields[7])
    return out


def args_for(stack, port, drain=2, kind="haproxy"):
    proxy = {"listen": port, "port": 8000, "drain": drain, "kind": kind}
    return lambda image, **kw: stack.args(
        "app",
        image=image,
        strategy="blue_green",
        proxy=proxy,
        health={"timeout": 60, "http": {"port": 8000}},
        resources={"memory": "64m", "cpus": 0.5, "pids": 64},
        **kw,
    )


def test_haproxy_drain_keeps_the_old_colour_as_backup(stack, app_images):
    """During the drain the old colour is a backup server (weight 1) of the running process: a new colour
    that stops then still serves through it and the rollout rolls back. No reload: one process throughout."""
    port = free_port()
    args = args_for(stack, port, drain=10)
    url = f"http://127.0.0.1:{port}/"
    blue, green = f"{stack.name}-app-blue", f"{stack.name}-app-green"
    assert not rollout(args(app_images["1"])).get("failed")
    assert weights(stack) == {"blue": 256}
    started = docker("inspect", "-f", "{{.State.StartedAt}}", f"{stack.name}-app-proxy")

    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(rollout, args(app_images["2"]))
        assert wait_for(lambda: weights(stack) == {"green": 256, "blue": 1}, timeout=120, interval=0.05)
        assert stack.running("app") == [blue, green]
        up = run.result()
    assert not up.get("failed"), up.get("msg")
    assert weights(stack) == {"green": 256} and stack.running("app") == [green]
    steps = up["plan"]["steps"]
    assert f"switch {stack.name}-app-proxy upstream -> {green} (backup {blue})" in steps, steps

    # the new colour (a new blue) stops during the drain: requests still succeed through the backup (green)
    # and the rollout notices and rolls back to green
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(rollout, args(app_images["3"]))
        assert wait_for(lambda: weights(stack) == {"blue": 256, "green": 1}, timeout=120, interval=0.05)
        docker("stop", "-t", "1", blue)
        answers = [http_get(url, timeout=10) for _ in range(10)]
        back = run.result()
    assert answers == [(200, "2")] * 10, answers
    assert back.get("failed") and back["rolled_back"] is True, back
    assert weights(stack) == {"green": 256} and stack.running("app") == [green]
    assert rollout(args(app_images["2"]))["changed"] is False
    assert rollout(args(app_images["2"]), check=True)["changed"] is False  # check mode reads the real process
    # every switch was made on the process started by the first deploy
    assert docker("inspect", "-f", "{{.State.StartedAt}}", f"{stack.name}-app-proxy") == started


def test_keep_alive_clients_see_no_failed_request(stack, keepalive_images):
    """Persistent connections through two upgrades and a rollback: no request fails (nginx's reload resets
    some of them: tests/bench/bench_rollout.py measures both)."""
    port = free_port()
    args = args_for(stack, port)
    assert not rollout(args(keepalive_images["1"])).get("failed")
    with Load(port, rate=100, keep_alive=True, threads=8) as load:
        for image in ("2", "1"):
            done = rollout(args(keepalive_images[image]))
            assert not done.get("failed") and done["changed"], done.get("msg")
        back = rollout(args(None, state="rolled_back"))
        assert not back.get("failed") and back["changed"], back.get("msg")
    summary = load.summary()
    assert summary["total"] > 500 and summary["failed"] == 0, summary
    assert http_get(f"http://127.0.0.1:{port}/") == (200, "2")


def test_the_runtime_state_is_derived_on_every_run(stack, app_images):
    """A controller killed mid-switch leaves the old colour in service: the next run sees it and converges. A
    restarted proxy process starts from its file, serving the right colour, and the next run is a no-op."""
    port = free_port()
    args = args_for(stack, port)
    assert not rollout(args(app_images["1"])).get("failed")
    assert not rollout(args(app_images["2"])).get("failed")
    assert weights(stack) == {"green": 256}

    # what a kill between the two switches leaves: blue running again and still in service at weight 1
    docker("start", f"{stack.name}-app-blue")
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", f"{stack.name}-app-blue")
    runtime(stack, f"set server tradeops_backend/blue addr {ip} port 8000; set server tradeops_backend/blue weight 1")
    runtime(stack, "set server tradeops_backend/blue state ready")
    assert weights(stack) == {"green": 256, "blue": 1}
    again = rollout(args(app_images["2"]))
    assert not again.get("failed") and again["changed"], again.get("msg")
    assert weights(stack) == {"green": 256} and stack.running("app") == [f"{stack.name}-app-green"]

    docker("restart", "-t", "2", f"{stack.name}-app-proxy")
    assert wait_for(lambda: http_get(f"http://127.0.0.1:{port}/") == (200, "2"), timeout=30)
    assert weights(stack) == {"green": 256}
    assert rollout(args(app_images["2"]))["changed"] is False


def test_migration_from_the_nginx_proxy(stack, keepalive_images):
    """A stack on the nginx proxy moves to HAProxy with a deploy: the proxy container is recreated (one
    container per host port; the gap is measured in docs/rollout.md), then serves the active colour."""
    port = free_port()
    assert not rollout(args_for(stack, port, kind="nginx")(keepalive_images["1"])).get("failed")
    moved = rollout(args_for(stack, port)(keepalive_images["1"]))
    assert not moved.get("failed") and moved["changed"], moved.get("msg")
    assert any("recreated" in w for w in moved.get("warnings", [])), moved.get("warnings")
    command = docker("inspect", "-f", "{{index .Config.Cmd 0}}", f"{stack.name}-app-proxy")
    assert command == "haproxy" and weights(stack) == {"blue": 256}
    assert http_get(f"http://127.0.0.1:{port}/") == (200, "1")
    assert rollout(args_for(stack, port)(keepalive_images["1"]))["changed"] is False
