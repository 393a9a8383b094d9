"""_state.py: atomic writes, the deploy lock and the audit log (pure logic, temp dirs)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _state


@pytest.fixture
def state(tmp_path):
    return _state.StackState("cdb", root=str(tmp_path)).ensure()


def test_stack_name_is_validated(tmp_path):
    with pytest.raises(_state.StateError, match="stack name 'Bad Name' is invalid"):
        _state.StackState("Bad Name", root=str(tmp_path))


def test_atomic_write_leaves_no_temp_files_and_corrupt_json_is_an_error(state):
    path = state.sub("releases", "api.json")
    _state.atomic_write_json(path, {"a": 1})
    assert json.load(open(path)) == {"a": 1}
    assert os.listdir(state.sub("releases")) == ["api.json"]
    open(path, "w").write("{half")
    with pytest.raises(_state.StateError, match="not valid JSON"):
        _state.read_json(path)


def test_lock_is_exclusive_names_the_holder_and_renews_for_the_same_holder(state):
    lock = _state.DeployLock(state)
    _, changed, _ = lock.acquire("alice@bastion", "deploy 1.4.2", ttl=60)
    assert changed
    _, changed, _ = lock.acquire("alice@bastion", "deploy 1.4.2", ttl=60)
    assert not changed
    with pytest.raises(_state.StateError, match="held by 'alice@bastion'.*deploy 1.4.2"):
        lock.acquire("bob@bastion", "hotfix", ttl=60)
    with pytest.raises(_state.StateError, match="not by 'bob@bastion'"):
        lock.release("bob@bastion")
    assert lock.release("alice@bastion")
    assert not lock.release("alice@bastion")


def test_stale_lock_of_a_dead_process_is_reported_and_only_taken_over_on_request(state):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = _state.DeployLock(state)
    lock.acquire("killed-run", "deploy", ttl=3600, owner_pid=dead.pid, owner_host=os.uname().nodename)
    status = lock.status()
    assert status["stale"] and "is gone" in status["stale_reason"]
    with pytest.raises(_state.StateError, match="STALE"):
        lock.acquire("next-run", "deploy", ttl=60)
    _, changed, taken = lock.acquire("next-run", "deploy", ttl=60, take_over_stale=True)
    assert changed and taken["holder"] == "killed-run"
    actions = [e["action"] for e in state.read_audit()]
    assert actions[-2:] == ["lock_take_over", "lock_acquire"]


def test_a_zombie_owner_is_gone(state):
    # a killed controller's module is orphaned and stays a zombie until init reaps it
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):
            with open(f"/proc/{zombie.pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert _state.pid_alive(zombie.pid) is False
        assert _state.pid_alive(os.getpid()) is True
        lock = _state.DeployLock(state)
        lock.acquire("killed-run", "deploy", ttl=3600, owner_pid=zombie.pid, owner_host=socket.gethostname())
        assert "is gone" in lock.status()["stale_reason"]
    finally:
        zombie.wait()


def test_expired_ttl_makes_a_lock_stale(state):
    lock = _state.DeployLock(state)
    held, _, _ = lock.acquire("a", "r", ttl=1)
    assert lock.staleness(held, now=held["expires_at"] + 1).startswith("TTL expired")
    assert lock.staleness(held, now=held["expires_at"] - 0.5) is None


def test_audit_lines_are_json_with_identity(state):
    state.audit("rollout", "ok", service="api", from_release=1, to_release=2)
    (event,) = state.read_audit()
    assert event["service"] == "api" and event["result"] == "ok" and event["user"] and event["host"]


def test_textfile_is_valid_exposition(state):
    path = state.write_metrics("demo", [_state.prom_line("x_up", True, {"check": 'a"b'}), _state.prom_line("y", 1.5)])
    assert open(path).read() == 'x_up{check="a\\"b"} 1\ny 1.5\n'
