"""The safety invariants at their edges, through the real modules on localhost with temp state roots.

Each case is one a new user tried from the outside (issue 12): the freeze must hold under the
deploy lock, a damaged freeze file must stop everything rather than lift the freeze, and a name
with a trailing newline must never become a second, unfrozen state directory.
"""

from __future__ import annotations

import json
import secrets

import pytest
from conftest import ROOT, run_module, run_playbook

BUSYBOX = "tradeops/busybox:1.35"


@pytest.fixture
def stack(tmp_path):
    name = "tse" + secrets.token_hex(4)
    return {"stack": name, "state_root": str(tmp_path / "state")}


def audit(stack):
    path = "%s/%s/audit.log" % (stack["state_root"], stack["stack"])
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def block_args(stack, **kw):
    return dict(stack, state="started", id="b1", reason="edge test", write_metrics=False, **kw)


def test_a_block_cannot_open_or_close_while_a_deploy_holds_the_lock(stack):
    held = run_module("tradeops.stack.deploy_lock", dict(stack, holder="deploy alice@bastion", reason="bot 1.4.3"))
    assert not held.get("failed"), held
    refused = run_module("tradeops.stack.paper_block", block_args(stack))
    assert refused["failed"]
    assert "lock of stack %s is held by 'deploy alice@bastion'" % stack["stack"] in refused["msg"], refused["msg"]
    assert "bot 1.4.3" in refused["msg"]
    active = "%s/%s/blocks/active.json" % (stack["state_root"], stack["stack"])
    assert not __import__("os").path.exists(active), "a refused start wrote the freeze"

    run_module("tradeops.stack.deploy_lock", dict(stack, holder="deploy alice@bastion", state="released"))
    started = run_module("tradeops.stack.paper_block", block_args(stack))
    assert started["changed"] and not started.get("failed"), started

    run_module("tradeops.stack.deploy_lock", dict(stack, holder="flags bob@bastion", reason="flag flip"))
    close = run_module("tradeops.stack.paper_block", dict(stack, state="aborted", reason="done", write_metrics=False))
    assert close["failed"] and "held by 'flags bob@bastion'" in close["msg"], close
    run_module("tradeops.stack.deploy_lock", dict(stack, holder="flags bob@bastion", state="released"))
    close = run_module("tradeops.stack.paper_block", dict(stack, state="aborted", reason="done", write_metrics=False))
    assert close["changed"] and not close.get("failed"), close
    # both are in the audit log, the refusals are not; the lock is free again
    actions = [e["action"] for e in audit(stack) if e.get("block")]
    assert actions == ["paper_block_start", "paper_block_abort"]
    assert run_module("tradeops.stack.deploy_lock", dict(stack, state="status"))["lock"]["held"] is False


@pytest.mark.parametrize("content", ["{}", "null", "[1]", '{"id": "b1", "status": "paused", "started_at": 1}'])
def test_a_damaged_freeze_file_stops_paper_block_and_rollout(stack, content, tmp_path):
    blocks = tmp_path / "state" / stack["stack"] / "blocks"
    blocks.mkdir(parents=True)
    (blocks / "active.json").write_text(content)
    status = run_module("tradeops.stack.paper_block", dict(stack, state="status", write_metrics=False))
    assert status["failed"] and str(blocks / "active.json") in status["msg"], status
    assert "inspect it" in status["msg"] and "Traceback" not in status["msg"]
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    rollout = run_module(
        "tradeops.stack.rollout",
        dict(
            stack,
            service="svc",
            image=BUSYBOX,
            user="10001:10001",
            command=["sleep", "600"],
            pull="never",
            secrets_dir=str(secrets_dir),
            resources={"memory": "32m", "cpus": 0.2, "pids": 32},
        ),
        check=True,
    )
    assert rollout["failed"] and str(blocks / "active.json") in rollout["msg"], rollout


@pytest.mark.parametrize("bad", ["cdb\n", "CDB", "cdb/../x"])
def test_a_stack_name_with_a_newline_is_refused_everywhere(stack, bad):
    for module, args in [
        ("tradeops.stack.deploy_lock", dict(stack, stack=bad, holder="h")),
        ("tradeops.stack.paper_block", dict(stack, stack=bad, state="status", write_metrics=False)),
    ]:
        res = run_module(module, args)
        assert res["failed"] and "stack name %r is invalid" % bad in res["msg"], (module, res)


@pytest.mark.parametrize(
    "content, fragment",
    [("[1]", "holds list"), ('{"holder": "x", "acquired_at": 1, "expires_at": "soon"}', "field 'expires_at' is str")],
)
def test_a_damaged_lock_file_names_the_file_and_the_field(stack, tmp_path, content, fragment):
    state = tmp_path / "state" / stack["stack"]
    state.mkdir(parents=True)
    (state / "lock.json").write_text(content)
    for args in (dict(stack, state="status"), dict(stack, holder="deploy alice")):
        res = run_module("tradeops.stack.deploy_lock", args)
        assert res["failed"] and str(state / "lock.json") in res["msg"] and fragment in res["msg"], res
        assert "Traceback" not in res["msg"]


def test_state_directories_are_owner_and_group_only(stack, tmp_path):
    res = run_module("tradeops.stack.deploy_lock", dict(stack, state_root=str(tmp_path / "new" / "root"), holder="h"))
    assert not res.get("failed"), res
    for path in (tmp_path / "new" / "root", tmp_path / "new" / "root" / stack["stack"]):
        assert oct(path.stat().st_mode & 0o777) == "0o750", path


def test_a_stack_port_the_monitoring_role_publishes_is_refused_before_any_host_is_touched():
    # issue 13: the paper inventory's db_writer proxy (18080) on cAdvisor's port; the play
    # fails in validation, on the controller, before anything connects to the (example) host
    run = run_playbook(
        ROOT / "playbooks" / "deploy.yml",
        extra_vars={"monitoring_cadvisor_port": 18080},
        inventory=ROOT / "inventories" / "paper",
        timeout=120,
    )
    assert run.rc != 0, run.output[-3000:]
    assert (
        "service 'db_writer': field 'proxy.listen' publishes host port 127.0.0.1:18080, which the monitoring "
        "role publishes too (cadvisor, monitoring_cadvisor_port)" in run.output
    ), run.output[-3000:]
    assert "unreachable=0" in run.output and "changed=0" in run.output, run.output[-3000:]
