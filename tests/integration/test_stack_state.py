"""stack_state, the one writer of a stack's manifests, flag overrides and audit log.

Module level: each call is a real `ansible localhost -m` run of the module on a
temporary state root (the deploy lock is taken with the real DeployLock).
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _state
from conftest import run_module

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
