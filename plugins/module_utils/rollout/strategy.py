# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the strategies share: their settings, the explicit state of one attempt, and the single-slot base of
exclusive and start_first.

A strategy is built from an engine (engine.py), the slots (slots.py), a gate (gate.py) and its settings; it
never sees the runner. ``execute(spec, spec_hash, release_id)`` rolls out and returns the colour promoted;
``rollback()`` undoes a failed attempt and returns the spec hash restored (None: nothing ran before).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.tradeops.stack.plugins.module_utils.rollout import InvariantViolated
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import health_of, spec_hash_of


class Settings:
    """The module options a strategy acts on."""

    def __init__(self, restart_policy="unless-stopped", stop_timeout=10, health_timeout=120, health_budget=None):
        self.restart_policy = restart_policy
        self.stop_timeout = stop_timeout
        self.health_timeout = health_timeout
        self.health_budget = health_budget  # start_period + interval x retries of the healthcheck, or None


class Attempt:
    """The state of one rollout attempt, what a rollback needs to know."""

    def __init__(self):
        self.previous_hash = None  # spec hash of the instance that served before (None: first deploy)
        self.previous_id = None  # its container id: what a rollback looks for, wherever a failure left it
        self.previous_colour = None  # blue_green: the colour that served before
        self.target = None  # blue_green: the colour rolled out
        self.new_id = None  # id of the container this attempt created or started
        self.promoted = False
        self.timings = {}


class Strategy:
    name = None

    def __init__(self, engine, slots, gate, settings):
        self.engine = engine
        self.slots = slots
        self.gate = gate
        self.settings = settings
        self.attempt = Attempt()

    def expected_pause(self):
        return {"expected_pause": 0, "expected_pause_max_seconds": 0}

    def rollback(self):
        """Undo the attempt after a failure; returns the spec hash restored (None: nothing ran before)."""
        started = time.monotonic()
        restored = self.undo()
        self.attempt.timings["rollback"] = round(time.monotonic() - started, 2)
        return restored

    def undo(self):
        raise NotImplementedError


class SingleSlot(Strategy):
    """start_first and exclusive: one serving instance named <stack>-<service>, the previous one kept stopped
    as <name>-prev for an instant rollback, a start_first candidate as <name>-next."""

    def active(self):
        return self.engine.containers().get(self.slots.main)

    def active_spec_hash(self):
        return spec_hash_of(self.active())

    def is_noop(self, spec_hash):
        found = self.engine.containers()
        active = found.get(self.slots.main)
        if active is None or spec_hash_of(active) != spec_hash or active.status != "running":
            return False
        if health_of(active) not in (None, "healthy"):
            return False
        others = [c for n, c in found.items() if n != self.slots.main]
        return not any(c.status == "running" or c.name == self.slots.next for c in others)

    def find_reusable(self, spec_hash):
        prev = self.engine.containers().get(self.slots.prev)
        if prev is not None and spec_hash_of(prev) == spec_hash:
            return prev
        return None

    def assert_exclusive(self, step):
        """Only exclusive checks it: never two instances of the service running."""

    def serve_again(self, container, name=None):
        """The old instance serves again under ``name`` (default <name>): renamed if need be, started if it
        was stopped, gated; returns its spec hash."""
        if name is not None and container.name != name:
            self.engine.rename(container, name)
        if container.status != "running":
            self.assert_exclusive("before restarting the previous instance")
            self.engine.start(container, self.settings.restart_policy)
            self.gate.gate(container, label="rollback_gate")
        self.assert_exclusive("after restoring the previous instance")
        return spec_hash_of(container)

    def restore_previous(self):
        """Start <name>-prev again as <name> and gate it; returns its spec hash."""
        prev = self.engine.containers().get(self.slots.prev)
        if prev is None:
            return None
        self.assert_exclusive("before restoring the previous instance")
        self.engine.rename(prev, self.slots.main)
        if prev.status != "running":
            self.engine.start(prev, self.settings.restart_policy)
        self.gate.gate(prev, label="rollback_gate")
        self.assert_exclusive("after restoring the previous instance")
        return spec_hash_of(prev)


def assert_at_most_one(engine, service, step):
    live = engine.running()
    if len(live) > 1:
        raise InvariantViolated(
            "exclusive service %s: %d instances running %s (%s)"
            % (service, len(live), step, ", ".join(c.name for c in live))
        )
