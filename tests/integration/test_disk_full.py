"""A full disk loses nothing silently: on a 64 KiB tmpfs, deploy_lock (through ansible) and the state functions
fail naming the file, every audit line is whole, and the lock never changes without its audit line; the
diagnostics bundle leaves no partial archive. Needs root (mount); skipped, saying why, where mount is refused."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    DeployLock,
    StackState,
    StateError,
    atomic_write_json,
)
from conftest import run_module

STACK = "tfull"
NOSPACE = "No space left on device"


@pytest.fixture
def tmpfs(tmp_path):
    root = tmp_path / "full"
    root.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)]
    proc = subprocess.run(mount, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs here (needs root and CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


class Filler:
    """Takes every free byte of the file system, and gives some back on request."""

    def __init__(self, root: Path):
        self.path = root / "filler"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        for size in (1024, 256, 64, 16, 1):  # the last partial page too
            try:
                while True:
                    os.write(fd, b"x" * size)
            except OSError:
                pass
        os.close(fd)

    def free(self, nbytes: int):
        os.truncate(self.path, max(0, self.path.stat().st_size - nbytes))


def audit_lines(root: Path) -> list[dict]:
    """The audit log read back line by line: every line one whole JSON event (no cut, no glued lines)."""
    path = root / STACK / "audit.log"
    if not path.exists():
        return []
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"audit log ends in a partial line: {raw[-80:]!r}"
    events = []
    for number, line in enumerate(raw.decode().splitlines(), 1):
        event = json.loads(line)  # raises on a cut or glued line
        assert isinstance(event, dict) and event.get("action"), (number, line[:100])
        events.append(event)
    return events


def lock_matches_audit(root: Path):
    """A lock on disk was audited as acquired last; a free lock was audited as released last (or never taken)."""
    lock = DeployLock(StackState(STACK, str(root))).read()
    last = [e for e in audit_lines(root) if e["action"] in ("lock_acquire", "lock_release")]
    if lock:
        assert last and last[-1]["action"] == "lock_acquire" and last[-1]["holder"] == lock["holder"], (lock, last)
    else:
        assert not last or last[-1]["action"] == "lock_release", last[-1]


def deploy_lock(root: Path, **args) -> dict:
    return run_module("tradeops.stack.deploy_lock", {"stack": STACK, "state_root": str(root), **args})


def test_deploy_lock_on_a_full_disk_names_the_file_and_keeps_lock_and_log_consistent(tmpfs):
    # a holder long enough that its release line (holder twice) cannot fit in what one freed page gives back
    holder = "ops-" + "h" * 6000
    taken = deploy_lock(tmpfs, holder=holder, reason="before the disk fills")
    assert taken["changed"] and not taken.get("failed"), taken
    filler = Filler(tmpfs)

    # release: lock.json goes, its audit line is cut short by the full disk -> the line is removed, the lock put back
    res = deploy_lock(tmpfs, state="released", holder=holder)
    assert res.get("failed"), res
    assert str(tmpfs / STACK / "audit.log") in res["msg"] and NOSPACE in res["msg"], res["msg"]
    assert "partial line was removed" in res["msg"] and "left as it was before" in res["msg"], res["msg"]
    assert DeployLock(StackState(STACK, str(tmpfs))).read()["holder"] == holder
    lock_matches_audit(tmpfs)

    # then runs until the disk is full again, some space given back at the start: every run is whole or absent
    filler.free(16384)
    failures = []
    for i in range(40):
        mine = f"run-{i}-" + "r" * (300 * (i % 5))
        args = {"holder": mine, "reason": "x" * (200 * (i % 7)), "take_over_stale": False}
        if DeployLock(StackState(STACK, str(tmpfs))).read():  # release whoever holds it (forced)
            args = {"state": "released", "holder": mine, "force": True}
        res = deploy_lock(tmpfs, **args)
        if res.get("failed"):
            failures.append(res["msg"])
            assert NOSPACE in res["msg"] and str(tmpfs / STACK) in res["msg"], res["msg"]
        lock_matches_audit(tmpfs)
        if len(failures) >= 4:
            break
    assert failures, "the disk never filled up: the test proves nothing"
    print("failures:", *failures, sep="\n  ")

    # space again: the next run succeeds and the log is still whole
    filler.free(1 << 20)
    res = deploy_lock(tmpfs, state="released", holder="cleanup", force=True)
    assert not res.get("failed"), res
    assert DeployLock(StackState(STACK, str(tmpfs))).read() is None
    lock_matches_audit(tmpfs)


def test_state_writes_on_a_full_disk_name_the_file_and_leave_nothing_half_written(tmpfs):
    state = StackState(STACK, str(tmpfs)).ensure()
    Filler(tmpfs).free(8192)
    written = 0
    path = state.sub("releases", "svc.json")
    with pytest.raises(StateError) as failed:
        for i in range(100):
            atomic_write_json(path, {"n": i, "pad": "p" * (1000 * i)})
            written = i
    assert str(failed.value).startswith(f"cannot write state file {path}: {NOSPACE}"), failed.value
    assert json.loads(Path(path).read_text())["n"] == written  # the last complete write, not a torn one
    assert os.listdir(state.sub("releases")) == ["svc.json"]  # no temp file left

    with pytest.raises(StateError) as failed:
        for i in range(1000):
            state.audit("fill", "ok", i=i, pad="a" * 700)
    assert str(failed.value).startswith(f"cannot append to the audit log {state.sub('audit.log')}: {NOSPACE}")
    events = audit_lines(tmpfs)
    assert [e["i"] for e in events] == list(range(len(events)))
    assert state.read_audit() == events


def test_diagnostics_on_a_full_disk_leaves_no_partial_archive(tmpfs):
    StackState(STACK, str(tmpfs)).ensure()
    Filler(tmpfs).free(2048)
    dest = tmpfs / STACK / "reports" / f"diag-{uuid.uuid4().hex[:6]}.tar.gz"
    res = run_module(
        "tradeops.stack.diagnostics",
        {"stack": STACK, "state_root": str(tmpfs), "dest": str(dest), "extra": {"pad.txt": os.urandom(8192).hex()}},
    )
    assert res.get("failed") and str(dest) in res["msg"] and NOSPACE in res["msg"], res
    assert os.listdir(dest.parent) == []  # neither the archive nor a temp file of it


def test_the_secret_fingerprint_key_is_never_left_cut_short(tmpfs, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("s3cret\n")
    args = {
        "stack": STACK,
        "state_root": str(tmpfs),
        "service": "svc",
        "image": "tradeops/busybox:1.35",
        "pull": "never",
        "user": "65534:65534",
        "secrets": ["token"],
        "secrets_dir": str(secrets),
        "resources": {"memory": "16m", "cpus": 0.1, "pids": 16},
    }
    StackState(STACK, str(tmpfs)).ensure()
    filler = Filler(tmpfs)
    key = tmpfs / STACK / ".fingerprint-key"
    res = run_module("tradeops.stack.rollout", args)
    assert res.get("failed") and str(key) in res["msg"] and NOSPACE in res["msg"], res
    assert not key.exists() and not [p for p in key.parent.iterdir() if p.name.startswith(".fingerprint-key")]
    # a key an older version left cut short is refused, naming the file, not used
    filler.free(1 << 20)
    key.write_bytes(b"")
    res = run_module("tradeops.stack.rollout", args)
    assert res.get("failed") and f"secret fingerprint key {key} is damaged (0 bytes" in res["msg"], res


def stack_state(root: Path, **args) -> dict:
    return run_module("tradeops.stack.stack_state", {"stack": STACK, "state_root": str(root), **args})


def test_manifest_commits_on_a_full_disk_are_whole_and_audited_or_absent(tmpfs):
    """stack_state commit writes <id>.json, the history and current.json, then its audit line: on a full disk
    either all of it happens or none of it (no current or history entry without its manifest_commit line)."""
    holder = "deploy t@bastion"
    assert not deploy_lock(tmpfs, holder=holder, reason="fill").get("failed")
    home = tmpfs / STACK
    filler = Filler(tmpfs)
    filler.free(24576)
    failures, current = [], ""
    for i in range(60):
        res = stack_state(
            tmpfs,
            action="commit",
            lock_holder=holder,
            expected_current=current,
            manifest={"services": {"svc": {"image": f"app:{i}", "pad": "p" * (400 * (i % 6))}}},
            reason="r" * (300 * (i % 7)),
        )
        if res.get("failed"):
            failures.append(res["msg"])
            assert NOSPACE in res["msg"] and str(home) in res["msg"], res["msg"]
        else:
            current = res["manifest"]["id"]
        committed = {e["manifest"] for e in audit_lines(tmpfs) if e["action"] == "manifest_commit"}
        on_disk = json.loads((home / "manifests" / "current.json").read_text())["id"] if current else ""
        assert on_disk == current, (on_disk, current)
        history = json.loads((home / "manifests" / "history.json").read_text()) if current else []
        assert {r["id"] for r in history} <= committed, "a history entry without its audit line"
        left = [n for n in os.listdir(home / "manifests") if ".undo-" in n or n.startswith(".")]
        assert not left, (left, res.get("msg"))
        if len(failures) >= 4:
            break
    assert failures, "the disk never filled up: the test proves nothing"
    assert any("nothing was changed" in f for f in failures) or all("cannot write state file" in f for f in failures)
    print("failures:", *failures, sep="\n  ")
