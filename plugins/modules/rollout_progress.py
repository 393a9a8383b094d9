#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_progress
short_description: Wait for a rollout started as an async job, reporting its step and health state
version_added: 0.2.0
description:
  - The roles start a changing M(tradeops.stack.rollout) with C(async) and C(poll=0), then call this module in a
    loop (C(loop_control.break_when)) so that the operator sees, every few seconds, what the rollout does (the
    step, such as create, start, health gate, switch or drain), and during a health gate the new container's
    health state and how long it has waited.
  - Each call waits up to O(wait) seconds for the job to finish or its step or health state to change, then
    returns one line in RV(message). When the job has finished, RV(result) is the rollout's own result and the
    job's file is removed (as C(ansible.builtin.async_status) with C(mode=cleanup) does).
  - The rollout keeps all of its guarantees while it runs as a job. It holds the deploy lock (recorded as the
    lock's worker, so a controller killed meanwhile does not make the lock stale until the job has ended) and
    rolls back on failure by itself.
  - A job whose rollout process is gone without a result (killed) is reported as finished with a failed
    RV(result) naming the process.
extends_documentation_fragment:
  - tradeops.stack.state
attributes:
  check_mode:
    support: full
    description: Only reads; it reports the same in check mode.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: full
    description: Reads the job and the progress record; removes the job's file once it has been read.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  service:
    description: The service the rollout job rolls out (names its progress record).
    type: str
    required: true
  job:
    description:
      - The job's results file, C(results_file) in the registered result of the task started with C(async) and
        C(poll=0).
    type: path
    required: true
  wait:
    description: Seconds to wait, at most, for the job to finish or its step or health state to change.
    type: float
    default: 5
seealso:
  - module: tradeops.stack.rollout
  - module: ansible.builtin.async_status
"""

EXAMPLES = r"""
- name: Start the rollout of market_data
  tradeops.stack.rollout:
    stack: cdb
    service: market_data
    image: tradeops/bot:1.4.3
    resources: {memory: 256m, cpus: 0.5, pids: 128}
  async: 3600
  poll: 0
  register: job

- name: Wait for market_data
  tradeops.stack.rollout_progress:
    stack: cdb
    service: market_data
    job: "{{ job.results_file }}"
  loop: "{{ range(0, 800) | list }}"
  loop_control:
    label: "market_data: {{ wait.message }}"
    break_when: wait.finished
  register: wait
"""

RETURN = r"""
finished:
  description: Whether the rollout job has ended.
  returned: always
  type: bool
message:
  description: One line for the operator, the step and its elapsed time, or how the job ended.
  returned: always
  type: str
  sample: "health gate cdb-market-data-next: starting, 12 s of 120 s"
progress:
  description: The rollout's progress record (step, step_at, health with container, state and timeout, pid).
  returned: while the job runs
  type: dict
result:
  description: The rollout's result (as M(tradeops.stack.rollout) returns it), with C(failed) when it failed.
  returned: when RV(finished)
  type: dict
"""

import contextlib
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils._redact import guard
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    STATE_ARG_SPEC,
    StackState,
    StateError,
    error_message,
    pid_alive,
    read_json,
)
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.progress import describe, progress_path

POLL = 0.25
# a rollout process gone for this long without the job's result: killed, not just between exit and write
GONE_GRACE = 3.0


class Job:
    def __init__(self, path, progress_file):
        self.path, self.progress_file = path, progress_file
        self.gone_since = None

    def result(self):
        """The rollout's result once the job has ended, else None; a job file that is missing or not JSON
        is an ended job with a failed result saying so."""
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except (IOError, OSError) as exc:
            return {"failed": True, "msg": "rollout job file %s cannot be read: %s" % (self.path, exc)}
        except ValueError:
            return None  # async_wrapper renames complete files into place; a torn read is a retry
        return None if data.get("started") else data

    def progress(self):
        """The running rollout's progress record, or None before it has written one for this job."""
        record = read_json(self.progress_file, default=None)
        if not isinstance(record, dict):
            return None
        try:  # a record older than this job is a previous rollout's, left by a killed run
            if record.get("started_at", 0) < os.stat(self.path).st_mtime - 1:
                return None
        except OSError:
            return None
        return record

    def died(self, record):
        """The job's rollout process is gone (for GONE_GRACE seconds) while the job has no result."""
        if not record or pid_alive(record.get("pid") or 0):
            self.gone_since = None
            return False
        self.gone_since = self.gone_since or time.monotonic()
        return time.monotonic() - self.gone_since >= GONE_GRACE


def ended(job, result):
    with contextlib.suppress(OSError):
        os.unlink(job.path)
    if result.get("failed"):
        how = "FAILED" + (", rolled back" if result.get("rolled_back") else "")
    else:
        how = "%s done" % (result.get("operation") or "rollout")
    seconds = (result.get("timings") or {}).get("total")
    return {
        "changed": False,
        "finished": True,
        "message": how + ("" if seconds is None else " in %.1f s" % seconds),
        "result": result,
    }


def wait(job, seconds):
    deadline = time.monotonic() + seconds
    first = job.progress()
    seen = first and (first.get("step"), (first.get("health") or {}).get("state"))
    while True:
        result = job.result()
        if result is not None:
            return ended(job, result)
        record = job.progress()
        if job.died(record):
            return ended(
                job,
                {"failed": True, "msg": "the rollout process %s is gone without a result (killed?)" % record["pid"]},
            )
        now = (record.get("step"), (record.get("health") or {}).get("state")) if record else None
        if time.monotonic() >= deadline or (record and now != seen):
            return {
                "changed": False,
                "finished": False,
                "message": describe(record) if record else "starting",
                "progress": record or {},
            }
        time.sleep(POLL)


def main():
    argument_spec = dict(
        service=dict(type="str", required=True),
        job=dict(type="path", required=True),
        wait=dict(type="float", default=5),
    )
    argument_spec.update(STATE_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    guard(module)  # no URL user info nor credential in a message or result
    p = module.params
    if not 0 < p["wait"] <= 600:
        module.fail_json(msg="wait must be a number of seconds above 0 and at most 600, got %r" % p["wait"])
    try:
        state = StackState(p["stack"], p["state_root"], p["operator"])
        result = wait(Job(p["job"], progress_path(state, p["service"])), p["wait"])
    except (StateError, OSError) as exc:
        module.fail_json(msg=error_message(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
