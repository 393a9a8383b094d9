# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""exclusive: the old instance stops before the new one starts; before and after every step never two
instances of the service run. If the new one fails the old one is started again."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import LIVE, spec_hash_of
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.strategy import SingleSlot, assert_at_most_one


class Exclusive(SingleSlot):
    name = "exclusive"

    def __init__(self, engine, slots, gate, settings, warn=None):
        super().__init__(engine, slots, gate, settings)
        self.warn = warn or (lambda msg: None)

    def assert_exclusive(self, step):
        assert_at_most_one(self.engine, self.slots.service, step)

    def expected_pause(self):
        first = self.settings.health_budget / 3 if self.settings.health_budget else 1
        return {
            "expected_pause": "exclusive: stop (<= %ss) + start + first healthy check (~%.0fs, <= %ss)"
            % (self.settings.stop_timeout, first, self.settings.health_timeout),
            "expected_pause_max_seconds": self.settings.stop_timeout + self.settings.health_timeout,
        }

    def execute(self, spec, spec_hash, release_id):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        live = [c for c in engine.containers().values() if c.status in LIVE]
        # a killed earlier run may have left two instances: the one not named <name> stops first
        for c in list(live):
            if c.name != slots.main and len(live) > 1:
                self.warn("exclusive invariant repaired: %s was running beside %s" % (c.name, slots.main))
                engine.remove(c)
                live.remove(c)
        self.assert_exclusive("before the rollout")
        reuse = self.find_reusable(spec_hash)
        for name in (slots.next,) + (() if reuse else (slots.prev,)):
            engine.remove_if(name)
        active = engine.containers().get(slots.main)
        t_down = None
        if active is not None:
            attempt.previous_hash = spec_hash_of(active)
            attempt.previous_id = active.id
            if active.status == "running":
                engine.stop(active, self.settings.stop_timeout)
            t_down = time.monotonic()
            # rollback to the kept instance: swap names
            engine.rename(active, slots.next if reuse is not None else slots.prev)
        self.assert_exclusive("after stopping the old instance")
        if reuse is not None:
            engine.rename(reuse, slots.main)
            engine.start(reuse, self.settings.restart_policy)
            new = reuse
        else:
            new = engine.create(spec, spec_hash, slots.main, "main", release_id)
        attempt.new_id = new.id
        t_start = time.monotonic()
        self.assert_exclusive("after starting the new instance")
        self.gate.gate(new)
        self.assert_exclusive("after the health gate")
        attempt.timings["switch_gap"] = round(time.monotonic() - (t_down or t_start), 2)
        self.gate.pre_promotion(new)
        attempt.promoted = True
        self.gate.post_promotion(new)
        self.assert_exclusive("after promotion")
        if reuse is not None:  # the release we rolled back from stays as <name>-prev
            engine.remove_if(slots.prev)
            old = engine.containers().get(slots.next)
            if old is not None:
                engine.rename(old, slots.prev)
        return "main"

    def undo(self):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        found = engine.containers()
        main = found.get(slots.main)
        if main is not None and main.id != attempt.previous_id:
            # the new instance (created, maybe never started): keep its evidence in the result, then remove it
            # before anything else starts
            engine.remove(main)
            main = None
        if slots.next in found and slots.prev not in found:
            engine.rename(found[slots.next], slots.prev)
        self.assert_exclusive("after removing the failed instance")
        if main is not None:
            # the old instance never left its name (its stop or its rename failed): it serves again
            return self.serve_again(main)
        restored = self.restore_previous() if attempt.previous_hash else None
        return restored
