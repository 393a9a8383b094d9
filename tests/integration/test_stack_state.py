"""stack_state, the one writer of a stack's manifests, flag overrides and audit log.

Module level: each call is a real `ansible localhost -m` run of the module on a
temporary state root (the deploy lock is taken with the real DeployLock). Then
the issue's race: a deploy and a flag flip in two concurrent ansible-playbook
processes running the stack role's own task files on one state root.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _state
from conftest import ROOT, VENV_BIN, ansible_env, run_module

MODULE = "tradeops.stack.stack_state"
HOLDER = "deploy alice@ctl pid 1"
BODY = {
    "flags": {"pause_new_orders": False},
    "order": ["bot"],
    "services": {"bot": {"release": "r1", "spec_hash": "aa"}},
}


@pytest.fixture
def root(tmp_path):
    return tmp_path / "state"


def locked(root, holder=HOLDER):
    state = _state.StackState("cdb", str(root)).ensure()
    _state.DeployLock(state).acquire(holder, "test", ttl=600)
    return state


def call(root, check=False, **args):
    return run_module(MODULE, {"stack": "cdb", "state_root": str(root), **args}, check=check)


def commit(root, expected="", body=BODY, holder=HOLDER, check=False, **extra):
    return call(
        root, check=check, action="commit", lock_holder=holder, expected_current=expected, manifest=body, **extra
    )


def snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def manifests(root, name):
    return json.loads((root / "cdb" / "manifests" / f"{name}.json").read_text())


def test_commit_writes_manifest_current_history_and_an_audit_line_with_the_host_identity(root):
    state = locked(root)
    res = commit(root, kind="deploy", reason="bot 1.0.1", created_by="alice@ctl")
    assert res["changed"] and not res.get("failed"), res
    mid = res["manifest"]["id"]
    assert manifests(root, mid) == manifests(root, "current") == res["manifest"]
    assert manifests(root, "history") == [
        {
            "id": mid,
            "created_at": res["manifest"]["created_at"],
            "known_good": False,
            "kind": "deploy",
            "reason": "bot 1.0.1",
        }
    ]
    assert res["diff"] == {
        "before": {"current": "", "record": {}},
        "after": {"current": mid, "record": res["history"][0]},
    }
    event = state.read_audit()[-1]
    assert (event["action"], event["manifest"], event["holder"]) == ("manifest_commit", mid, HOLDER)
    assert (event["user"], event["host"]) == (getpass.getuser(), socket.gethostname())
    again = commit(root, expected=mid)
    assert not again["changed"] and again["manifest"]["id"] == mid  # same content: the current manifest is kept


def test_a_stale_read_is_refused_naming_the_run_that_committed_and_nothing_is_written(root):
    locked(root)
    first = commit(root)["manifest"]["id"]
    flipped = commit(
        root,
        expected=first,
        body={**BODY, "flags": {"pause_new_orders": True}},
        kind="flags",
        reason="flag pause_new_orders=true",
        created_by="bob@ctl",
    )["manifest"]["id"]
    before = snapshot(root)
    res = commit(root, expected=first, body={**BODY, "services": {"bot": {"release": "r2"}}})
    assert res.get("failed") and res["conflict"], res
    for part in (first, flipped, "flags by bob@ctl", "flag pause_new_orders=true", "Nothing was written"):
        assert part in res["msg"]
    assert snapshot(root) == before
    res = call(root, action="known_good", lock_holder=HOLDER, id=first)
    assert res.get("failed") and flipped in res["msg"], res
    assert snapshot(root) == before


def test_the_history_is_merged_so_both_runs_records_stay(root):
    locked(root)
    first = commit(root)["manifest"]["id"]
    second = commit(root, expected=first, body={**BODY, "flags": {"pause_new_orders": True}}, kind="flags")
    marked = call(root, action="known_good", lock_holder=HOLDER, id=second["manifest"]["id"])
    assert marked["changed"], marked
    history = manifests(root, "history")
    assert [r["id"] for r in history] == [first, second["manifest"]["id"]]
    assert [r["known_good"] for r in history] == [False, True]
    assert manifests(root, "current")["known_good"] is True
    assert manifests(root, second["manifest"]["id"])["verified_at"] == history[1]["verified_at"]
    back = call(root, action="activate", lock_holder=HOLDER, id=first, expected_current=second["manifest"]["id"])
    assert back["changed"] and manifests(root, "current")["id"] == first, back
    assert [r["id"] for r in manifests(root, "history")] == [first, second["manifest"]["id"]]


def test_check_mode_predicts_and_writes_nothing(root):
    locked(root)
    first = commit(root)["manifest"]["id"]
    before = snapshot(root)
    res = commit(root, expected=first, body={**BODY, "order": ["bot", "api"]}, check=True)
    assert res["changed"] and res["diff"]["before"]["current"] == first, res
    assert res["diff"]["after"]["current"] == res["manifest"]["id"] != first
    assert call(root, action="known_good", lock_holder=HOLDER, id=first, check=True)["changed"]
    assert call(root, action="flags", lock_holder=HOLDER, flags={"pause_new_orders": True}, check=True)["changed"]
    assert call(root, action="audit", event={"action": "backup"}, check=True)["changed"]
    stale = commit(root, expected="", check=True)
    assert stale.get("failed") and first in stale["msg"]  # check mode decides the refusal too
    assert snapshot(root) == before


def test_without_the_deploy_lock_every_release_change_is_refused(root):
    res = commit(root)
    assert res.get("failed") and "is not held" in res["msg"], res
    assert not (root / "cdb" / "manifests" / "current.json").exists()
    locked(root, holder="flags bob@ctl pid 2")
    before = snapshot(root)
    for args in (
        {"action": "commit", "expected_current": "", "manifest": BODY},
        {"action": "flags", "flags": {"pause_new_orders": True}},
    ):
        res = call(root, lock_holder=HOLDER, **args)
        assert res.get("failed") and "held by 'flags bob@ctl pid 2'" in res["msg"], res
    res = call(root, action="flags", flags={"pause_new_orders": True})
    assert res.get("failed") and "pass lock_holder" in res["msg"], res
    assert snapshot(root) == before


def test_flag_overrides_are_merged_or_replaced_under_the_lock(root):
    locked(root)
    assert call(root, action="flags", lock_holder=HOLDER, flags={"a": True})["overrides"] == {"a": True}
    res = call(root, action="flags", lock_holder=HOLDER, flags={"b": False})
    assert res["overrides"] == {"a": True, "b": False} and res["diff"]["before"] == {"a": True}
    assert not call(root, action="flags", lock_holder=HOLDER, flags={"b": False})["changed"]
    res = call(root, action="flags", lock_holder=HOLDER, flags={"c": True}, flags_mode="replace")
    assert json.loads((root / "cdb" / "config" / "overrides.json").read_text()) == {"c": True}
    res = call(root, action="flags", lock_holder=HOLDER, flags={"d": "yes"})
    assert res.get("failed") and "must be true or false" in res["msg"]


def test_flag_files_of_the_readers_are_rendered_from_the_overrides_and_left_alone_when_right(root):
    locked(root)
    render = {"flag_defaults": {"a": True, "b": True}, "flag_readers": {"bot": ["a", "b", "x"], "api": ["b"]}}
    res = call(root, action="flags", lock_holder=HOLDER, flags={"b": False}, **render)
    assert res["touched"] == ["api", "bot"] and res["effective"] == {"a": True, "b": False}, res
    config = root / "cdb" / "config"
    assert json.loads((config / "bot" / "flags.json").read_text()) == {"a": True, "b": False, "x": False}
    assert json.loads((config / "api" / "flags.json").read_text()) == {"b": False}
    before = snapshot(root)
    again = call(root, action="flags", lock_holder=HOLDER, flags={}, **render)
    assert not again["changed"] and again["touched"] == [], again
    assert snapshot(root) == before
    flip = call(root, action="flags", lock_holder=HOLDER, flags={"a": False}, check=True, **render)
    assert flip["changed"] and flip["touched"] == ["bot"], flip
    assert snapshot(root) == before
    bad = call(root, action="flags", lock_holder=HOLDER, flags={}, flag_readers={"../x": ["a"]})
    assert bad.get("failed") and "invalid" in bad["msg"], bad


def test_audit_line_is_written_with_the_host_identity_and_the_controller_apart(root):
    res = call(root, action="audit", event={"action": "backup", "backup": "cdb-x.dump", "controller": "alice@ctl"})
    assert res["changed"], res
    lines = (root / "cdb" / "audit.log").read_text().splitlines()
    event = json.loads(lines[-1])
    assert event["action"] == "backup" and event["result"] == "ok" and event["controller"] == "alice@ctl"
    assert (event["user"], event["host"], event["stack"]) == (getpass.getuser(), socket.gethostname(), "cdb")
    res = call(root, action="audit", event={"action": "backup", "user": "mallory"})
    assert res.get("failed") and "set by the module" in res["msg"], res
    assert len((root / "cdb" / "audit.log").read_text().splitlines()) == len(lines)


# -- the race of issue 12: a deploy and a flag flip at the same time -------------------------------
DEPLOY_SIDE = """
- name: A deploy's lock scope, with the role's own task files
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Deploy
      ansible.builtin.include_role:
        name: tradeops.stack.stack
        tasks_from: "{{ item }}"
      loop: [lock, state, manifest]
    - name: Stand in for verify (the containers of a real deploy), until the test says go
      ansible.builtin.wait_for:
        path: "{{ go_file }}"
        timeout: 300
    - name: Known-good, then unlock (what deploy.yml does after verify)
      ansible.builtin.include_role:
        name: tradeops.stack.stack
        tasks_from: "{{ item }}"
      loop: [known_good, unlock]
"""
FLAGS_SIDE = """
- name: The real flag flip
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Flip
      ansible.builtin.include_role:
        name: tradeops.stack.stack
        tasks_from: flags_flip
"""


def test_a_backup_is_published_whole_pruned_and_audited_or_discarded(root):
    state = locked(root)
    backups = Path(state.sub("backups"))
    backups.mkdir()
    for i in range(3):  # older dumps of this stack, and one of another stack that is never pruned
        (backups / f"cdb-manual-2026120{i}T000000Z.dump").write_bytes(b"old")
        os.utime(backups / f"cdb-manual-2026120{i}T000000Z.dump", (1000 + i, 1000 + i))
    (backups / "other-manual-20261201T000000Z.dump").write_bytes(b"not ours")
    name = "cdb-pre-deploy-20261207T080000Z.dump"
    args = {"action": "backup", "lock_holder": HOLDER, "backup": name, "backup_keep": 2, "reason": "pre-deploy: 1.0.1"}

    assert call(root, check=True, **args)["changed"]  # check mode: the dump never ran, the publish is predicted
    missing = call(root, **args)
    assert missing.get("failed") and "did not finish" in missing["msg"] and f"{name}.part" in missing["msg"]
    (backups / f"{name}.part").write_bytes(b"PGDMP" + b"x" * 100)
    res = call(root, **args)
    assert res["changed"] and res["backup"] == str(backups / name) and res["size"] == 105, res
    assert res["pruned"] == ["cdb-manual-20261201T000000Z.dump", "cdb-manual-20261200T000000Z.dump"], res
    assert sorted(p.name for p in backups.iterdir()) == [
        "cdb-manual-20261202T000000Z.dump",
        name,
        "other-manual-20261201T000000Z.dump",
    ]
    event = state.read_audit()[-1]
    assert event["action"] == "backup" and event["backup"] == name and event["reason"] == "pre-deploy: 1.0.1"
    assert not call(root, **args)["changed"]  # published already

    # a failed dump: its partial file goes, audited as failed; no lock, no write
    (backups / "cdb-x-1.dump.part").write_bytes(b"cut")
    free = call(root, action="backup", lock_holder="someone else", backup="cdb-x-1.dump", backup_discard=True)
    assert free.get("failed") and (backups / "cdb-x-1.dump.part").exists()
    gone = call(root, action="backup", lock_holder=HOLDER, backup="cdb-x-1.dump", backup_discard=True)
    assert gone["changed"] and not (backups / "cdb-x-1.dump.part").exists()
    assert state.read_audit()[-1]["result"] == "failed"
    bad = call(root, action="backup", lock_holder=HOLDER, backup="../cdb.dump")
    assert bad.get("failed") and "no directory" in bad["msg"]


def test_a_deploy_and_a_flag_flip_at_once_keep_both_manifests(tmp_path):
    root = tmp_path / "state"
    go = tmp_path / "go"
    common = {
        "tradeops_stack_name": "cdb",
        "tradeops_stack_services": [],
        "tradeops_state_root": str(root),
        "tradeops_feature_flags": {"pause_new_orders": False},
        "stack_lock_wait": 300,
        "_stack_order": [{"name": "bot", "flags": ["pause_new_orders"]}],
        "go_file": str(go),
        "ansible_python_interpreter": str(VENV_BIN / "python"),
    }
    deploy_vars = {
        **common,
        "_stack_outcomes": {
            "apply": {
                "bot": {
                    "release": "r-new",
                    "spec_hash": "bb",
                    "image": "tradeops/bot:1.0.1",
                    "image_id": "sha256:b",
                    "image_digest": None,
                    "strategy": "recreate",
                }
            }
        },
    }
    flags_vars = {**common, "stack_flag_name": "pause_new_orders", "stack_flag_value": "true", "stack_reason": "flip"}

    def start(name, text, extra):
        (tmp_path / f"{name}.yml").write_text(text)
        (tmp_path / f"{name}.json").write_text(json.dumps(extra))
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            str(tmp_path / f"{name}.yml"),
            "-e",
            f"@{tmp_path / f'{name}.json'}",
        ]
        out = open(tmp_path / f"{name}.log", "w")  # closed after wait
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ansible_env(), cwd=ROOT), out

    def wait_until(cond, what, procs):
        deadline = time.monotonic() + 300
        while not cond():
            assert all(p.poll() is None for p in procs), what + ": a run ended early"
            assert time.monotonic() < deadline, "timed out waiting for " + what
            time.sleep(0.2)

    deploy, dlog = start("deploy", DEPLOY_SIDE, deploy_vars)
    current = root / "cdb" / "manifests" / "current.json"
    wait_until(current.exists, "the deploy's manifest", [deploy])
    deploy_id = json.loads(current.read_text())["id"]
    flags, flog = start("flags", FLAGS_SIDE, flags_vars)
    # let the flip reach the lock while the deploy still verifies: before this change, the deploy's
    # known-good ran after the unlock and rewrote the history from its own copy, losing the flip
    wait_until(
        lambda: "Deploy lock, take" in (tmp_path / "flags.log").read_text(), "the flip at the lock", [deploy, flags]
    )
    go.touch()
    for proc, log in ((deploy, dlog), (flags, flog)):
        proc.wait(timeout=600)
        log.close()
    logs = {n: (tmp_path / f"{n}.log").read_text() for n in ("deploy", "flags")}
    assert deploy.returncode == 0, logs["deploy"][-3000:]
    assert flags.returncode == 0, logs["flags"][-3000:]

    history = json.loads((root / "cdb" / "manifests" / "history.json").read_text())
    kinds = {r["id"]: (r["kind"], r["known_good"]) for r in history}
    flip = json.loads(current.read_text())
    assert kinds == {deploy_id: ("deploy", True), flip["id"]: ("flags", False)}, history
    assert flip["kind"] == "flags" and flip["flags"] == {"pause_new_orders": True}
    assert flip["services"] == json.loads((root / "cdb" / "manifests" / f"{deploy_id}.json").read_text())["services"]
    actions = [json.loads(line)["action"] for line in (root / "cdb" / "audit.log").read_text().splitlines()]
    # the flip took the lock only after the deploy had marked its manifest known-good and let go
    steps = ("lock_acquire", "manifest_commit", "manifest_known_good", "lock_release", "flag_flip")
    assert [a for a in actions if a in steps] == [
        "lock_acquire",
        "manifest_commit",
        "manifest_known_good",
        "lock_release",
        "lock_acquire",
        "flag_flip",
        "manifest_commit",
        "lock_release",
    ], actions
    assert os.path.exists(root / "cdb" / "config" / "bot" / "flags.json")
