"""dockerd restarted with live-restore: in a nested engine, never the shared one.

The shared engine runs other people's containers and is not configured with live-restore,
so this scenario boots a systemd test host (tradeops/test-host:bookworm, the platform of
molecule/host, with the same container options), lets the collection's docker_host role
configure its engine (live-restore among the CIS settings), starts a container in it and
restarts dockerd (about 15 s: the image has the packages the role installs).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest
import yaml
from conftest import ROOT, run_playbook
from playbook_support import docker
from rollout_support import wait_for

BUSYBOX = "tradeops/busybox:1.35"
PLATFORM = yaml.safe_load((ROOT / "molecule" / "host" / "molecule.yml").read_text())["platforms"][0]


def host_run_args(name: str) -> list[str]:
    """docker run options of molecule/host's bookworm platform (read from its molecule.yml)."""
    args = ["-d", "--name", name, "--hostname", name, f"--cgroupns={PLATFORM['cgroupns_mode']}"]
    args += [f"--cap-add={cap}" for cap in PLATFORM["capabilities"]]
    args += [f"--security-opt={opt}" for opt in PLATFORM["security_opts"]]
    args += [f"-v={vol}" for vol in PLATFORM["volumes"]]
    args += [f"--tmpfs={path}" for path in PLATFORM["tmpfs"]]
    args += [f"--sysctl={k}={v}" for k, v in PLATFORM["sysctls"].items()]
    return [*args, PLATFORM["image"], PLATFORM["command"]]


def inner(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} in {name} failed: {proc.stdout}{proc.stderr}")
    return proc


@pytest.fixture
def nested_host(tmp_path):
    name = "faults-lr-" + secrets.token_hex(3)
    try:
        assert docker("run", *host_run_args(name)), f"could not start {name}"
        booted = wait_for(
            lambda: inner(name, "systemctl", "is-active", "multi-user.target", check=False).stdout.strip() == "active",
            timeout=180,
            interval=1,
        )
        assert booted, "the test host's systemd did not boot"
        book = tmp_path / "docker_host.yml"
        book.write_text(json.dumps([{"hosts": "all", "gather_facts": True, "roles": ["tradeops.stack.docker_host"]}]))
        run = run_playbook(
            book,
            inventory=f"{name},",
            extra_vars={
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
                "tradeops_stack_name": name,
                "docker_host_chrony_enabled": False,  # time sync is not under test here
            },
        )
        assert run.rc == 0, run.output[-3000:]
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


def test_dockerd_restart_keeps_containers_running(nested_host, scenario):
    row = scenario("dockerd restarted (nested engine)", "with live-restore, containers keep running")
    assert inner(nested_host, "docker", "info", "-f", "{{.LiveRestoreEnabled}}").stdout.strip() == "true"
    save = subprocess.Popen(["docker", "save", BUSYBOX], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["docker", "exec", "-i", nested_host, "docker", "load"], stdin=save.stdout, capture_output=True
    )
    save.wait()
    assert load.returncode == 0, load.stderr
    inner(
        nested_host,
        "docker",
        "run",
        "-d",
        "--name",
        "lr-probe",
        "--restart",
        "unless-stopped",
        BUSYBOX,
        "sleep",
        "3600",
    )
    state = ["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Pid}} {{.State.Running}}", "lr-probe"]
    before = inner(nested_host, *state).stdout.strip()
    t0 = time.monotonic()
    inner(nested_host, "systemctl", "restart", "docker")
    assert wait_for(
        lambda: inner(nested_host, "docker", "info", check=False).returncode == 0, timeout=120, interval=0.2
    )
    row.recovered(time.monotonic() - t0)
    after = inner(nested_host, *state).stdout.strip()
    assert after == before and after.endswith("true"), f"the container restarted with dockerd: {before} -> {after}"
    row.observed = f"LiveRestoreEnabled true (docker_host role); StartedAt, pid unchanged ({after.split()[1]})"
