"""paper_block: the module's main() in-process on real temporary state directories.

The pure parts have their own tests: tests/unit/plugins/module_utils/test__zai.py, test__block_report.py,
test__block.py (options), test__textfile.py and test__report.py.

The in-process runs use the real Docker engine (a stack name with no containers, so the manifest is empty)
and a Prometheus URL where nothing listens: they test argument refusals, check mode, diff and what an
interrupted run leaves behind, all of which happen before or without Prometheus.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.tradeops.stack.plugins.module_utils import _block
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState, StateError
from ansible_collections.tradeops.stack.plugins.modules import paper_block as pb


# --------------------------------------------------------------------------- main() in-process
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def env(tmp_path):
    docker = pytest.importorskip("docker")
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run `make bootstrap` (it starts one)")
    stack = "tpbunit" + secrets.token_hex(3)  # no container carries this stack label
    return {
        "stack": stack,
        "state_root": str(tmp_path / "state"),
        "prometheus_url": "http://127.0.0.1:%d" % closed_port(),
        "prometheus_timeout": 2,
    }


def run_main(args, check=False, diff=False):
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        pb.main()
    return json.loads(out.getvalue())


def files(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"state": "started", "reason": "r"}, "id is required to start a block"),
        ({"state": "started", "id": "b1"}, "reason is required to start a block"),
        ({"state": "started", "id": "b1", "reason": "  "}, "reason is required to start a block"),
        ({"state": "aborted"}, "reason is required to abort a block"),
        ({"state": "started", "id": "active", "reason": "r"}, "'active' is a reserved word"),
        ({"state": "started", "id": "b1", "reason": "r", "duration": "0s"}, "duration '0s' is out of range"),
        ({"state": "started", "id": "b1", "reason": "r", "duration": "90d"}, "duration '90d' is out of range"),
        ({"state": "status", "zai_window": "soon"}, "zai_window 'soon' is not a duration"),
        ({"state": "status", "scrape_interval": 0}, "scrape_interval must be a positive number"),
        ({"state": "status", "signals_metric": ""}, "signals_metric must be a metric name"),
        ({"state": "started", "id": "b1", "reason": "r", "trading_mode": "live"}, "trading_mode is 'live'"),
        ({"state": "completed"}, "no paper block is active on stack"),
        ({"state": "completed", "id": "nope"}, "no paper block nope exists"),
    ],
)
def test_refusals_name_the_option_and_write_nothing(env, args, message):
    res = run_main(dict(env, **args))
    assert res["failed"] and message in res["msg"], res
    assert files(env["state_root"]) == []


def test_check_mode_start_predicts_with_diff_and_writes_nothing(env):
    res = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"), check=True, diff=True)
    assert res["changed"] and res["diff"]["before"] == {} and res["diff"]["after"]["id"] == "b1"
    assert res["diff"]["after"]["planned_end"] - res["diff"]["after"]["started_at"] == 3600
    assert res["metrics_file"] is None
    assert files(env["state_root"]) == []


def test_status_without_a_block_is_quiet_and_read_only(env):
    res = run_main(dict(env, state="status", fail_on_zai=True))
    assert res["changed"] is False and res["active"] is False and not res.get("failed")


def test_block_survives_and_status_needs_prometheus(env):
    started = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"))
    assert started["changed"] and started["block"]["manifest"] == []
    again = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"))
    assert again["changed"] is False
    status = run_main(dict(env, state="status"))
    assert status["failed"] and "cannot reach Prometheus" in status["msg"]
    aborted = run_main(dict(env, state="aborted", reason="prometheus is down"), diff=True)
    assert aborted["changed"] and aborted["report"]["prometheus_error"].startswith("cannot reach Prometheus")
    assert aborted["report"]["totals"] == {"ticks": None, "signals": None, "trades": None}
    assert aborted["diff"]["before"]["id"] == "b1" and aborted["diff"]["after"] == {}
    stack = Path(env["state_root"]) / env["stack"]
    assert json.loads((stack / "blocks" / "b1.json").read_text())["close_reason"] == "prometheus is down"
    assert (stack / "reports" / "b1" / "report.md").read_text().startswith("# Paper block b1: aborted")


class Crash(BaseException):
    """A process killed between two writes (BaseException: nothing in the module may swallow it)."""


def crash_after(monkeypatch, writes):
    real = _block.atomic_write_json
    count = {"n": 0}

    def write(path, data, mode=0o640):
        if count["n"] == writes:
            raise Crash(path)
        count["n"] += 1
        real(path, data, mode=mode)

    monkeypatch.setattr(_block, "atomic_write_json", write)


def all_json_valid(root):
    for path in Path(root).rglob("*.json"):
        json.loads(path.read_text())  # raises on a half-written file
    return True


def test_crash_between_start_writes_leaves_a_block_status_sees_and_the_rerun_converges(env, monkeypatch):
    crash_after(monkeypatch, 1)  # the freeze (active.json) written, the history record not
    with pytest.raises(Crash):
        run_main(dict(env, state="started", id="b1", reason="unit"))
    stack = Path(env["state_root"]) / env["stack"]
    assert all_json_valid(stack) and not (stack / "blocks" / "b1.json").exists()
    assert not [p for p in (stack / "blocks").iterdir() if p.name.startswith(".")]  # no temp file left
    monkeypatch.undo()
    # what status and rollout's freeze read (status itself also needs Prometheus)
    assert StackState(env["stack"], env["state_root"]).active_block()["id"] == "b1"
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["changed"] and "interrupted run" in res["msg"]
    assert json.loads((stack / "blocks" / "b1.json").read_text())["status"] == "active"
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"] is False


def test_a_history_record_an_older_version_wrote_without_active_json_is_finished(env):
    # the order before this version wrote the history record first: a start cut there is finished by a re-run
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    (stack / "blocks" / "active.json").unlink()
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["changed"] and "not marked active" in res["msg"]
    assert json.loads((stack / "blocks" / "active.json").read_text())["id"] == "b1"


@pytest.mark.parametrize("failing", ["history", "audit"])
def test_a_start_whose_history_or_audit_write_fails_leaves_no_block(env, monkeypatch, failing):
    stack = Path(env["state_root"]) / env["stack"]
    if failing == "history":
        real = _block.atomic_write_json

        def write(path, data, mode=0o640):
            if path.endswith("b1.json"):
                raise StateError("cannot write state file %s: No space left on device" % path)
            real(path, data, mode=mode)

        monkeypatch.setattr(_block, "atomic_write_json", write)
    else:

        def audit(self, action, result, **fields):
            raise StateError("cannot append to the audit log %s: No space left on device" % self.sub("audit.log"))

        monkeypatch.setattr(StackState, "audit", audit)
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["failed"] and "No space left on device" in res["msg"] and "the block was not started" in res["msg"]
    assert ("b1.json" if failing == "history" else "audit.log") in res["msg"]
    assert not (stack / "blocks" / "active.json").exists() and not (stack / "blocks" / "b1.json").exists()
    monkeypatch.undo()
    assert StackState(env["stack"], env["state_root"]).active_block() is None


@pytest.mark.parametrize("writes", [0, 1])
def test_crash_between_close_writes_leaves_valid_json_and_the_rerun_converges(env, monkeypatch, writes):
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    crash_after(monkeypatch, writes)  # 0: before report.json; 1: report written, history not closed
    with pytest.raises(Crash):
        run_main(dict(env, state="completed"))
    assert all_json_valid(stack)
    assert json.loads((stack / "blocks" / "active.json").read_text())["status"] == "active"  # still frozen
    monkeypatch.undo()
    res = run_main(dict(env, state="completed"))
    assert res["changed"] and res["block"]["status"] == "completed"
    assert not (stack / "blocks" / "active.json").exists()
    assert json.loads((stack / "reports" / "b1" / "report.json").read_text())["block"]["status"] == "completed"


def test_crash_after_closing_history_before_lifting_the_freeze(env, monkeypatch):
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    real_unlink = _block.os.unlink

    def crash_on_active(path):
        if str(path).endswith("active.json"):
            raise Crash(path)
        real_unlink(path)

    monkeypatch.setattr(_block.os, "unlink", crash_on_active)
    with pytest.raises(Crash):
        run_main(dict(env, state="completed"))
    monkeypatch.undo()
    assert all_json_valid(stack)
    assert json.loads((stack / "blocks" / "b1.json").read_text())["status"] == "completed"
    res = run_main(dict(env, state="completed"))
    assert res["changed"] and "removed the stale active marker" in res["msg"]
    assert not (stack / "blocks" / "active.json").exists()
    assert run_main(dict(env, state="completed", id="b1"))["changed"] is False
    actions = [json.loads(line)["action"] for line in (stack / "audit.log").read_text().splitlines()]
    assert actions == ["paper_block_start", "paper_block_recover"]
