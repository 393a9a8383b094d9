"""rollout_progress: the wait on an async rollout job, over real files (a job file as async_wrapper writes it,
the progress record as the rollout writes it), and the one-line description of a progress record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.progress import Progress, describe, progress_path
from ansible_collections.tradeops.stack.plugins.modules import rollout_progress as rp


@pytest.fixture
def job(tmp_path):
    state = StackState("cdb", str(tmp_path / "state"))
    state.ensure()
    path = tmp_path / "async" / "j123.456"
    path.parent.mkdir()
    path.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "j123.456"}))
    return rp.Job(str(path), progress_path(state, "bot")), state, path


def finish_later(path, result, after):
    def write():
        time.sleep(after)
        tmp = str(path) + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(result, handle)
        os.rename(tmp, path)  # as async_wrapper's jwrite does

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_running_job_reports_its_step_and_the_health_state_of_its_gate(job):
    waiter, state, _path = job
    progress = Progress(state, "bot", min_interval=0)
    progress.step("health gate cdb-bot-next (timeout 120s)")
    progress.health("cdb-bot-next", "starting", 120)
    out = rp.wait(waiter, 0.3)
    assert out["finished"] is False and out["changed"] is False
    assert out["message"].startswith("health gate cdb-bot-next: starting, ") and out["message"].endswith(" s of 120 s")
    assert out["progress"]["pid"] == os.getpid()


def test_a_change_of_step_ends_the_wait_early(job):
    waiter, state, _path = job
    progress = Progress(state, "bot", min_interval=0)
    progress.step("create cdb-bot-next")

    def later():
        time.sleep(0.3)
        progress.step("start cdb-bot-next")

    thread = threading.Thread(target=later)
    thread.start()
    t0 = time.monotonic()
    out = rp.wait(waiter, 20)
    thread.join()
    assert time.monotonic() - t0 < 5, "waited for the timeout instead of the change"
    assert out["message"].startswith("start cdb-bot-next (")


def test_a_finished_job_returns_the_rollout_result_and_its_file_is_removed(job):
    waiter, state, path = job
    Progress(state, "bot").step("health gate cdb-bot-next (timeout 120s)")
    result = {"changed": True, "operation": "upgrade", "release": "r2", "timings": {"total": 4.61}}
    thread = finish_later(path, result, 0.3)
    out = rp.wait(waiter, 20)
    thread.join()
    assert out == {"changed": False, "finished": True, "message": "upgrade done in 4.6 s", "result": result}
    assert not path.exists()


def test_a_failed_job_says_so_and_whether_it_rolled_back(job):
    waiter, _state, path = job
    path.write_text(json.dumps({"failed": True, "rolled_back": True, "msg": "bot unhealthy"}))
    out = rp.wait(waiter, 1)
    assert out["finished"] and out["message"] == "FAILED, rolled back" and out["result"]["msg"] == "bot unhealthy"


def test_a_rollout_process_gone_without_a_result_ends_the_wait_as_a_failure(job, monkeypatch):
    waiter, state, _path = job
    Progress(state, "bot").step("health gate cdb-bot-next (timeout 120s)")
    record = json.loads(open(waiter.progress_file).read())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    record["pid"] = proc.pid  # killed: it will never write the job's result
    open(waiter.progress_file, "w").write(json.dumps(record))
    monkeypatch.setattr(rp, "GONE_GRACE", 0.2)
    out = rp.wait(waiter, 20)
    assert out["finished"] and out["result"]["failed"]
    assert "rollout process %d is gone without a result" % proc.pid in out["result"]["msg"]


def test_a_progress_record_older_than_the_job_is_not_shown(job):
    waiter, state, path = job
    Progress(state, "bot").step("health gate cdb-old-next (timeout 120s)")  # a killed earlier run's
    later = time.time() + 10
    os.utime(path, (later, later))
    out = rp.wait(waiter, 0.2)
    assert out["message"] == "starting" and out["progress"] == {}


def test_a_missing_job_file_is_a_finished_failure_naming_it(tmp_path):
    waiter = rp.Job(str(tmp_path / "nope"), str(tmp_path / "progress.json"))
    out = rp.wait(waiter, 1)
    assert out["finished"] and "rollout job file %s cannot be read" % (tmp_path / "nope") in out["result"]["msg"]


def test_the_progress_record_is_removed_when_the_rollout_ends(tmp_path):
    state = StackState("cdb", str(tmp_path))
    state.ensure()
    progress = Progress(state, "bot")
    assert os.path.exists(progress.path)
    progress.close()
    progress.step("after the end")  # a late step writes nothing
    assert not os.path.exists(progress.path)


def test_describe_without_a_gate_names_the_step_and_its_time():
    assert describe({"step": "drain cdb-bot-blue", "step_at": 100.0}, now=112.4) == "drain cdb-bot-blue (12 s)"
    assert describe({}, now=5) == "starting (0 s)"
