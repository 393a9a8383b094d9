# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a running rollout is doing, for the operator: its current step and, in a health gate, the new
container's health state, in ``<state>/<stack>/progress/<service>.json``.

The play starts a changing rollout as an async job and shows this record while it waits
(tradeops.stack.rollout_progress), so a 35 s health gate is a visible wait, not a silent task. Best effort:
a progress write that fails never fails the rollout, and the record is removed when the rollout ends.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import time

from ansible_collections.tradeops.stack.plugins.module_utils._state import StateError, atomic_write_json


def progress_path(state, service):
    return state.sub("progress", "%s.json" % service)


def describe(record, now=None):
    """One line for the operator: the step and its elapsed time; in a health gate, the container's state."""
    now = time.time() if now is None else now
    elapsed = max(0.0, now - (record.get("step_at") or now))
    health = record.get("health")
    if health:
        return "health gate %s: %s, %.0f s of %s s" % (
            health.get("container"),
            health.get("state") or "?",
            elapsed,
            health.get("timeout"),
        )
    return "%s (%.0f s)" % (record.get("step") or "starting", elapsed)


class Progress:
    """Writes the record; ``min_interval`` spaces out writes that only repeat the same health state."""

    def __init__(self, state, service, min_interval=1.0):
        self.path = progress_path(state, service)
        self.min_interval = min_interval
        now = time.time()
        self.record = {
            "service": service,
            "pid": os.getpid(),
            "started_at": now,
            "step": "starting",
            "step_at": now,
            "health": None,
        }
        self.written_at = 0.0
        self.broken = False
        self.write()

    def step(self, action):
        self.record.update(step=action, step_at=time.time(), health=None)
        self.write()

    def health(self, container, state, timeout):
        """Called on every poll of a health gate; written when the state changes, else every min_interval."""
        before = (self.record.get("health") or {}).get("state")
        self.record["health"] = {"container": container, "state": state, "timeout": timeout}
        if state != before or time.monotonic() - self.written_at >= self.min_interval:
            self.write()

    def write(self):
        if self.broken:
            return
        try:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o750)
            atomic_write_json(self.path, self.record)
            self.written_at = time.monotonic()
        except (OSError, StateError):
            self.broken = True  # a full disk: the rollout goes on, the operator sees less

    def close(self):
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.broken = True
