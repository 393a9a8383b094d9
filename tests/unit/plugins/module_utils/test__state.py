"""_state.py: atomic writes, the deploy lock and the audit log (pure logic, temp dirs)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

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
    first = lock.read()
    lines = len(state.read_audit())
    renewed, changed, _ = lock.acquire("alice@bastion", "deploy 1.4.2", ttl=120)
    assert not changed and len(state.read_audit()) == lines  # a renewal, not an action: no audit line
    assert renewed["acquired_at"] == first["acquired_at"] and renewed["expires_at"] >= first["expires_at"] + 60
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
    lock.acquire("killed-run", "deploy", ttl=3600, owner_pid=dead.pid, owner_machine=_state.machine_identity())
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
        lock.acquire("killed-run", "deploy", ttl=3600, owner_pid=zombie.pid, owner_machine=_state.machine_identity())
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


def test_the_operator_option_is_the_user_of_every_audit_line_and_release(tmp_path, monkeypatch):
    """AWX passes its launching user as awx_user_name; the roles hand it to every module as `operator`.
    The managed host's side (SUDO_USER, the login) is the SSH user and decides only without it."""
    monkeypatch.setenv("AWX_USER", "mallory")
    monkeypatch.setenv("SUDO_USER", "deploy")
    state = _state.StackState("s", str(tmp_path), operator="alice")
    state.audit("rollout", "ok")
    _state.DeployLock(state).acquire("deploy alice@bastion", "r", ttl=60)
    assert {e["user"] for e in state.read_audit()} == {"alice"}
    assert {e["host"] for e in state.read_audit()} == {socket.gethostname()}
    anonymous = _state.StackState("s", str(tmp_path))
    anonymous.audit("rollout", "ok")
    assert anonymous.read_audit()[-1]["user"] == "deploy"


# -- complete or absent: writes that hit a file size limit behave as on a full disk ----------------------------
# RLIMIT_FSIZE makes the kernel cut a write short and then fail the rest with EFBIG, exactly what a full disk
# does with ENOSPC; in a child process, so the limit (and SIGXFSZ, ignored) stays there.
LIMITED = """
import json, resource, signal, sys
sys.path.insert(0, {collections!r})
from ansible_collections.tradeops.stack.plugins.module_utils import _state
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
state = _state.StackState("cdb", root={root!r})
try:
{body}
    print(json.dumps({{"ok": True}}))
except _state.StateError as exc:
    print(json.dumps({{"ok": False, "error": str(exc), "type": type(exc).__name__}}))
"""


def run_limited(tmp_path, limit, body):
    code = LIMITED.format(
        collections=str(Path(__file__).resolve().parents[4] / ".cache" / "collections"),
        limit=limit,
        root=str(tmp_path),
        body="\n".join("    " + b for b in body),
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_write_that_does_not_fit_names_the_file_keeps_the_old_one_and_leaves_no_temp_file(state, tmp_path):
    path = state.sub("releases", "api.json")
    _state.atomic_write_json(path, {"old": True})
    res = run_limited(tmp_path, 1000, ["_state.atomic_write_json(%r, {'x': 'y' * 5000})" % path])
    assert res["ok"] is False and res["type"] == "StateError", res
    assert path in res["error"] and "File too large" in res["error"], res
    assert json.load(open(path)) == {"old": True}
    assert os.listdir(state.sub("releases")) == ["api.json"]


def test_an_audit_line_that_does_not_fit_is_removed_whole_and_the_error_names_the_log(state, tmp_path):
    state.audit("first", "ok")
    size = os.path.getsize(state.sub("audit.log"))
    # room for 60 more bytes: the old code wrote a 60-byte fragment and reported success
    res = run_limited(tmp_path, size + 60, ["state.audit('lock_acquire', 'ok', holder='x' * 200)"])
    assert res["ok"] is False, res
    assert state.sub("audit.log") in res["error"] and "File too large" in res["error"], res
    assert "lock_acquire not recorded" in res["error"]
    assert os.path.getsize(state.sub("audit.log")) == size
    state.audit("after", "ok")
    assert [e["action"] for e in state.read_audit()] == ["first", "after"]


def test_a_lock_change_whose_audit_line_does_not_fit_is_undone(state, tmp_path):
    lock = _state.DeployLock(state)
    lock.acquire("alice", "deploy", ttl=60)
    assert lock.release("alice")
    size = os.path.getsize(state.sub("audit.log"))
    res = run_limited(tmp_path, size + 10, ["_state.DeployLock(state).acquire('bob', 'deploy', ttl=60)"])
    assert res["ok"] is False and state.sub("audit.log") in res["error"], res
    assert "left as it was before" in res["error"]
    assert lock.read() is None  # no lock without its audit line
    lock.acquire("carol", "deploy", ttl=60)
    res = run_limited(tmp_path, size + 10, ["_state.DeployLock(state).release('carol')"])
    assert res["ok"] is False, res
    assert lock.read()["holder"] == "carol"  # the release is undone too: it was not audited


def test_changes_whose_audit_line_does_not_fit_are_undone_without_free_space(state, tmp_path):
    """undone_on_error: the manifest files a stack_state commit writes, then its audit line; when the line does
    not fit, every file is as before (the old content was kept by a hard link, put back by a rename)."""
    current, history, new = (state.sub("manifests", n) for n in ("current.json", "history.json", "m2.json"))
    os.makedirs(state.sub("manifests"), exist_ok=True)
    _state.atomic_write_json(current, {"id": "m1"})
    _state.atomic_write_json(history, [{"id": "m1"}])
    state.audit("first", "ok")
    size = os.path.getsize(state.sub("audit.log"))
    body = [
        "with _state.undone_on_error(%r, %r, %r):" % (new, history, current),
        "    _state.atomic_write_json(%r, {'id': 'm2'})" % new,
        "    _state.atomic_write_json(%r, [{'id': 'm1'}, {'id': 'm2'}])" % history,
        "    _state.atomic_write_json(%r, {'id': 'm2'})" % current,
        "    state.audit('manifest_commit', 'ok', manifest='m2', reason='x' * 300)",
    ]
    res = run_limited(tmp_path, size + 400, body)
    assert res["ok"] is False and "nothing was changed" in res["error"], res
    assert state.sub("audit.log") in res["error"], res
    assert json.load(open(current)) == {"id": "m1"} and json.load(open(history)) == [{"id": "m1"}]
    assert sorted(os.listdir(state.sub("manifests"))) == ["current.json", "history.json"]  # no m2, no .undo file
    assert [e["action"] for e in state.read_audit()] == ["first"]
    # the same block, room enough: everything stays and the kept links are gone
    res = run_limited(tmp_path, 10**6, body)
    assert res["ok"] is True, res
    assert json.load(open(current)) == {"id": "m2"} and json.load(open(history))[-1] == {"id": "m2"}
    assert sorted(os.listdir(state.sub("manifests"))) == ["current.json", "history.json", "m2.json"]


def test_a_torn_line_of_an_older_version_does_not_hide_the_rest_of_the_log(state):
    good = json.dumps({"action": "lock_acquire", "result": "ok", "ts": "2026-11-30T10:00:00Z"})
    glued = json.dumps({"action": "lock_release", "result": "ok", "ts": "2026-11-30T10:05:00Z"})
    later = json.dumps({"action": "rollout", "result": "ok", "ts": "2026-11-30T10:06:00Z"})
    torn = '{"action": "lock_acquire", "holder": {"name": "x"}, "reason": "dep'  # cut at 60-ish bytes
    with open(state.sub("audit.log"), "w") as handle:
        handle.write("\n".join([good, torn + glued, "[1]", later]) + "\n")
    events = state.read_audit()
    assert [e["action"] for e in events] == ["lock_acquire", "unreadable", "lock_release", "unreadable", "rollout"]
    assert events[1]["line"] == 2 and events[1]["path"] == state.sub("audit.log") and events[1]["raw"] == torn + glued
    assert events[3]["line"] == 3 and events[3]["raw"] == "[1]"
    assert state.read_audit(limit=1) == [json.loads(later)]


def test_state_directory_that_cannot_be_created_names_the_path(tmp_path):
    blocker = tmp_path / "root"
    blocker.write_text("a file where the state root should be")
    with pytest.raises(_state.StateError, match="cannot create state directory %s" % blocker):
        _state.StackState("cdb", root=str(blocker)).ensure()


# -- lock identity, TTL cap, lease renewal ----------------------------------------------------------------------
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_machine_identity_is_boot_id_and_pid_namespace():
    here = _state.machine_identity()
    with open("/proc/sys/kernel/random/boot_id") as handle:
        assert here == "%s/%s" % (handle.read().strip(), os.readlink("/proc/self/ns/pid"))


def test_a_dead_pid_makes_a_lock_stale_only_on_the_machine_it_was_recorded_on(state):
    lock = _state.DeployLock(state)
    here = _state.machine_identity()
    record = {"holder": "a", "expires_at": time.time() + 3600, "owner_pid": dead_pid(), "owner_host": "ctl1"}
    assert "owner process" in lock.staleness(dict(record, owner_machine=here))
    # the same host name, another machine (a bastion called like the Docker host, a container): not by pid
    other = "00000000-0000-0000-0000-000000000000/pid:[4026531836]"
    assert lock.staleness(dict(record, owner_host=socket.gethostname(), owner_machine=other)) is None
    assert lock.staleness(dict(record, owner_machine=here), here=other) is None
    # a live owner on this machine is not stale
    assert lock.staleness(dict(record, owner_pid=os.getpid(), owner_machine=here)) is None


def test_a_live_worker_keeps_a_lock_whose_owner_is_gone_until_it_finishes(state):
    # an async rollout job outliving its killed controller: the play's lock is live while the job works
    lock = _state.DeployLock(state)
    here = _state.machine_identity()
    lock.acquire("play", "deploy", ttl=600, owner_pid=dead_pid(), owner_host="ctl1", owner_machine=here)
    assert "owner process" in lock.status()["stale_reason"]
    working = lock.renew("play", worker=(os.getpid(), "docker1", here))
    assert (working["worker_pid"], working["worker_host"]) == (os.getpid(), "docker1")
    assert lock.status()["stale"] is False
    with pytest.raises(_state.StateError, match=r"rollout process %d on docker1 is working under it" % os.getpid()):
        lock.acquire("next-run", "deploy", ttl=60, take_over_stale=True)
    assert lock.renew("play")["worker_pid"] == os.getpid()  # a plain renewal keeps the worker
    # the worker gone too (killed), or finished (cleared): stale again
    assert "owner process" in lock.staleness(dict(working, worker_pid=dead_pid()))
    assert lock.renew("play", worker=None)["worker_pid"] is None
    assert "owner process" in lock.status()["stale_reason"]


def test_a_lock_without_a_machine_is_stale_by_ttl_only(state):
    lock = _state.DeployLock(state)
    # written by an older version: owner_host equal to ours, owner process gone, no machine identity
    old = {"holder": "a", "expires_at": time.time() + 60, "owner_pid": dead_pid(), "owner_host": socket.gethostname()}
    assert lock.staleness(old) is None
    assert lock.staleness(old, now=old["expires_at"]).startswith("TTL expired")


def test_ttl_is_capped_and_the_error_names_the_option(state):
    lock = _state.DeployLock(state)
    with pytest.raises(_state.StateError, match=r"^ttl must be a number of seconds between 1 and 21600 \(6 h\)"):
        lock.acquire("a", "r", ttl=_state.MAX_LOCK_TTL + 1)
    with pytest.raises(_state.StateError, match="^ttl must be"):
        lock.acquire("a", "r", ttl=0)
    with pytest.raises(_state.StateError, match=r"^lock\.ttl must be .* got 86400"):
        _state.check_lock_ttl(86400, "lock.ttl")
    held, _, _ = lock.acquire("a", "r", ttl=_state.MAX_LOCK_TTL)
    assert held["ttl"] == _state.MAX_LOCK_TTL


def test_renew_extends_the_lease_of_the_holder_only(state):
    lock = _state.DeployLock(state)
    held, _, _ = lock.acquire("alice", "deploy", ttl=60, owner_pid=os.getpid(), owner_machine="m")
    renewed = lock.renew("alice")
    assert renewed["expires_at"] >= held["expires_at"] and renewed["acquired_at"] == held["acquired_at"]
    assert {k: v for k, v in renewed.items() if k != "expires_at"} == {
        k: v for k, v in held.items() if k != "expires_at"
    }
    assert lock.read() == renewed
    longer = lock.renew("alice", ttl=600)
    assert longer["expires_at"] - renewed["expires_at"] > 500
    with pytest.raises(_state.LockLost, match="no longer held by 'bob': it is held by 'alice'"):
        lock.renew("bob")
    lock.release("alice")
    with pytest.raises(_state.LockLost, match="no longer held by 'alice': it was released"):
        lock.renew("alice")
    lock.acquire("alice", "deploy", ttl=60)
    with pytest.raises(_state.StateError, match="^ttl must be"):
        lock.renew("alice", ttl=_state.MAX_LOCK_TTL + 1)


def test_the_stale_refusal_names_the_variable_to_set(state):
    lock = _state.DeployLock(state)
    lock.acquire("killed-run", "deploy", ttl=60, owner_pid=dead_pid(), owner_machine=_state.machine_identity())
    with pytest.raises(_state.StateError, match="STALE.*-e tradeops_lock_take_over_stale=true.*take_over_stale: true"):
        lock.acquire("next-run", "deploy", ttl=60)


def test_create_once_is_whole_or_absent_and_never_replaces(state, tmp_path):
    path = state.sub(".key")
    assert _state.create_once(path, b"first") == b"first"
    assert _state.create_once(path, b"second") == b"first"  # a concurrent run's file wins, unchanged
    other = state.sub(".other")
    res = run_limited(tmp_path, 100, ["_state.create_once(%r, b'k' * 5000)" % other])
    assert res["ok"] is False and other in res["error"] and "File too large" in res["error"], res
    assert sorted(os.listdir(state.path)) == sorted([*_state.SUBDIRS, ".key"])  # no key, no temp file


def test_an_os_error_reads_as_the_path_and_the_reason():
    import errno

    error_message = _state.error_message
    full = OSError(errno.ENOSPC, "No space left on device", "/var/lib/tradeops/cdb/audit.log")
    assert error_message(full) == "cannot use /var/lib/tradeops/cdb/audit.log: No space left on device"
    moved = OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.part", None, "/b/x")
    assert error_message(moved) == "cannot use /a/x.part -> /b/x: Invalid cross-device link"
    assert error_message(OSError("bare")) == "file system error: bare"
    assert error_message(_state.StateError("lock.json: field 'expires_at' must be a time")) == (
        "lock.json: field 'expires_at' must be a time"
    )


def test_lock_file_waits_or_gives_up_and_is_released_by_the_close(tmp_path):
    path = str(tmp_path / "x.lock")
    first = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    second = os.open(path, os.O_RDWR)  # another open file description: flock conflicts as between processes
    waited = []
    try:
        assert _state.lock_file(first) is True
        assert _state.lock_file(second, wait=0.5, clock=lambda: len(waited) * 0.2, sleep=waited.append) is False
        assert len(waited) == 3, "polled every 0.2 s until the deadline"
        os.close(first)
        first = None
        assert _state.lock_file(second, wait=0) is True
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)
