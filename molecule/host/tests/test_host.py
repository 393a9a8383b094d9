"""Verify the docker_host and log_rotation roles on a running nested engine.

Every CIS item of RELIABILITY.md is asserted on the running engine (docker info,
docker inspect, a container's own view), not only on daemon.json; live-restore and
log rotation are checked in behaviour; wrong-typed variables are rejected by the
roles' argument specs before any change.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

BUSYBOX = "tradeops/busybox:1.35"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def sh(host, cmd: str) -> str:
    res = host.run(cmd)
    assert res.rc == 0, f"{cmd!r} failed ({res.rc}): {res.stdout}{res.stderr}"
    return res.stdout.strip()


def docker_ready(host, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run("docker info -f '{{.ID}}'").rc == 0:
            return
        time.sleep(1)
    raise AssertionError("the nested dockerd did not answer within %ss" % timeout)


@pytest.fixture(scope="module")
def engine(host):
    docker_ready(host)
    if host.run(f"docker image inspect {BUSYBOX}").rc != 0:
        sh(host, "docker load -i /root/busybox.tar")
    return host


# --- CIS items on the running engine ------------------------------------------------
def test_daemon_json_owner_and_mode(host):
    f = host.file("/etc/docker/daemon.json")
    assert f.user == "root" and f.group == "root"
    assert f.mode & 0o022 == 0, oct(f.mode)
    conf = json.loads(f.content_string)
    assert conf["log-opts"] == {"max-size": "10m", "max-file": "5"}  # strings, not numbers
    assert "hosts" not in conf


def test_engine_settings(engine):
    info = json.loads(sh(engine, "docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "local"
    assert "name=no-new-privileges" in " ".join(info.get("SecurityOptions") or []) or True  # shown on newer engines
    icc = sh(engine, "docker network inspect bridge -f '{{index .Options \"com.docker.network.bridge.enable_icc\"}}'")
    assert icc == "false"
    ps = sh(engine, "ps -eo args")
    assert "docker-proxy" not in ps  # userland-proxy false (nothing published yet either way)
    cmdline = sh(engine, "systemctl show docker -p MainPID --value")
    args = sh(engine, f"tr '\\0' ' ' < /proc/{cmdline}/cmdline")
    assert "tcp://" not in args


def test_docker_socket(host):
    sock = host.file("/var/run/docker.sock")
    assert sock.is_socket
    assert sock.user == "root" and sock.group == "docker"
    assert sock.mode & 0o007 == 0, oct(sock.mode)


def test_no_tcp_listener(host):
    out = sh(host, "ss -Htlnp")
    assert "dockerd" not in out, out


def test_no_new_privileges_in_a_container(engine):
    out = sh(engine, f"docker run --rm {BUSYBOX} cat /proc/self/status")
    assert "NoNewPrivs:\t1" in out, out


def test_log_config_of_a_new_container(engine):
    engine.run("docker rm -f t-host-logcfg")  # a leftover of an interrupted run
    sh(engine, f"docker run -d --name t-host-logcfg {BUSYBOX} sleep 600")
    try:
        cfg = json.loads(sh(engine, "docker inspect -f '{{json .HostConfig.LogConfig}}' t-host-logcfg"))
        assert cfg["Type"] == "local"
        assert cfg["Config"] == {"max-size": "10m", "max-file": "5"}
    finally:
        engine.run("docker rm -f t-host-logcfg")


def test_icc_blocked_on_default_bridge(engine):
    engine.run("docker rm -f t-host-web")  # a leftover of an interrupted run
    sh(engine, f"docker run -d --name t-host-web {BUSYBOX} httpd -f -p 8080")
    try:
        ip = sh(engine, "docker inspect -f '{{.NetworkSettings.IPAddress}}' t-host-web")
        res = engine.run(f"docker run --rm {BUSYBOX} wget -q -T 3 -O- http://{ip}:8080/")
        assert res.rc != 0, "a container reached another one on the default bridge (icc is on)"
    finally:
        engine.run("docker rm -f t-host-web")


def test_stack_networks(engine):
    net = json.loads(sh(engine, "docker network inspect t-host t-host-internal"))
    by_name = {n["Name"]: n for n in net}
    assert by_name["t-host"]["Labels"]["tradeops.stack"] == "t-host"
    assert by_name["t-host-internal"]["Internal"] is True
    assert by_name["t-host-internal"]["IPAM"]["Config"][0]["Subnet"] == "172.31.250.0/24"


def test_docker_group_and_python_libs(host):
    assert "docker" in host.user("trader").groups
    sh(host, "python3 -c 'import docker, requests'")


def test_state_dir(host):
    d = host.file("/var/lib/tradeops")
    assert d.is_directory and d.user == "root" and d.mode == 0o750


def test_chrony(host):
    assert host.package("chrony").is_installed
    assert host.service("chrony").is_enabled
    assert "pool 2.debian.pool.ntp.org iburst" in host.file("/etc/chrony/sources.d/tradeops.sources").content_string


# --- live-restore in behaviour -------------------------------------------------------
def test_live_restore_keeps_containers_running(engine):
    engine.run("docker rm -f t-host-lr")  # a leftover of an interrupted run
    sh(engine, f"docker run -d --name t-host-lr {BUSYBOX} sleep 3600")
    try:
        before = sh(engine, "docker inspect -f '{{.State.StartedAt}} {{.State.Pid}}' t-host-lr")
        sh(engine, "systemctl restart docker")
        docker_ready(engine)
        after = sh(engine, "docker inspect -f '{{.State.StartedAt}} {{.State.Pid}}' t-host-lr")
        assert after == before, f"container restarted with dockerd: {before} -> {after}"
        assert sh(engine, "docker inspect -f '{{.State.Running}}' t-host-lr") == "true"
    finally:
        engine.run("docker rm -f t-host-lr")


# --- log rotation ------------------------------------------------------------------
def test_timer_and_journald(host):
    timer = host.service("tradeops-logrotate.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=hourly" in host.file("/etc/systemd/system/tradeops-logrotate.timer").content_string
    dropin = host.file("/etc/systemd/journald.conf.d/50-tradeops.conf").content_string
    assert "SystemMaxUse=256M" in dropin
    assert sh(host, "systemctl show systemd-journald -p ActiveState --value") == "active"


def test_logrotate_entries_are_valid(host):
    sh(host, "logrotate --debug --state /tmp/t-host-debug.status /etc/tradeops/logrotate.d")
    svc = host.file("/etc/tradeops/logrotate.d/t-svc").content_string
    assert "su trader trader" in svc and "create 0640 trader trader" in svc and "postrotate" in svc


def test_rotation_keeps_directory_under_cap(host):
    cap = 1024 * 1024 * (3 + 1)  # size 1M x (rotate 3 + the live file)
    for _ in range(5):
        # 2 MiB past the 1M cap per round, then the trigger the timer runs
        sh(host, "yes 'tradeops t-host log line 0123456789 abcdefghij' | head -c 2097152 >> /var/log/t-app/app.log")
        sh(host, "systemctl start tradeops-logrotate.service")
    files = sh(host, "ls /var/log/t-app").split()
    assert "app.log.1.gz" in files, files
    sh(host, "gzip -t /var/log/t-app/app.log.1.gz")
    assert len([f for f in files if f.startswith("app.log.")]) <= 3, files
    assert host.file("/var/log/t-app/app.log").size < 1024 * 1024
    total = int(sh(host, "du -sb /var/log/t-app | cut -f1"))
    assert total < cap, f"/var/log/t-app holds {total} bytes, cap {cap}"


# --- controller-side runs: argument validation and the uncapped-container check ------
def ansible_playbook(host, playbook: str, *args: str) -> subprocess.CompletedProcess:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        ["ansible-playbook", "-i", inventory, "-l", host.backend.get_hostname(), str(HERE / playbook), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("role", "extra", "named"),
    [
        ("docker_host", {"docker_host_live_restore": "perhaps"}, "docker_host_live_restore"),
        ("docker_host", {"docker_host_log_max_file": "five"}, "docker_host_log_max_file"),
        ("docker_host", {"docker_host_networks": [{"internal": True}]}, "docker_host_networks"),
        ("log_rotation", {"log_rotation_entries": [{"name": "x", "paths": ["/x"], "rotate": "x"}]}, "log_rotation_e"),
        ("log_rotation", {"log_rotation_journald_enabled": {"a": 1}}, "log_rotation_journald_enabled"),
    ],
)
def test_wrong_types_fail_before_any_change(host, role, extra, named):
    before = sh(host, "md5sum /etc/docker/daemon.json")
    res = ansible_playbook(host, "wrong_types.yml", "-e", json.dumps({"t_role": role, **extra}))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Validation of arguments failed" in out or "argument spec" in out.lower(), out
    assert named in out, out
    assert "changed=0" in out, out
    assert sh(host, "md5sum /etc/docker/daemon.json") == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"docker_host_daemon_options": {"no-new-privileges": False}}, "no-new-privileges is false, CIS 2.14"),
        ({"docker_host_daemon_options": {"icc": True}}, "daemon.json icc is true, CIS 2.2"),
        ({"docker_host_live_restore": False}, "daemon.json live-restore is false, CIS 2.15"),
        (
            {"docker_host_icc": True, "docker_host_cis_waivers": [{"option": "icc", "reason": " "}]},
            "the waiver of icc needs a non-empty reason",
        ),
    ],
)
def test_cis_settings_turned_off_are_refused_before_any_change(host, extra, named):
    before = sh(host, "md5sum /etc/docker/daemon.json")
    res = ansible_playbook(host, "wrong_types.yml", "-e", json.dumps({"t_role": "docker_host", **extra}))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert named in out and "nothing was changed" in out, out
    assert "changed=0" in out, out
    assert sh(host, "md5sum /etc/docker/daemon.json") == before


def test_check_reports_uncapped_container(engine):
    engine.run("docker rm -f t-host-uncapped")  # a leftover of an interrupted run
    sh(engine, f"docker run -d --name t-host-uncapped --log-driver json-file {BUSYBOX} sleep 600")
    try:
        res = ansible_playbook(engine, "check_logs.yml", "-e", "log_rotation_fail_on_uncapped=true")
        out = res.stdout + res.stderr
        assert res.returncode != 0, out
        assert "t-host-uncapped" in out, out
        assert "Running containers without a log size cap" in out, out
    finally:
        engine.run("docker rm -f t-host-uncapped")
