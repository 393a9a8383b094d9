# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""start_first: the new instance starts as <name>-next and passes the gate before the old one stops (short
overlap); the old one is kept stopped as <name>-prev."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import spec_hash_of
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.strategy import SingleSlot


class StartFirst(SingleSlot):
    name = "start_first"

    def execute(self, spec, spec_hash, release_id):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        reuse = self.find_reusable(spec_hash)
        engine.remove_if(slots.next)
        active = engine.containers().get(slots.main)
        attempt.previous_hash = spec_hash_of(active)
        attempt.previous_id = active.id if active is not None else None
        if reuse is not None:
            engine.rename(reuse, slots.next)
            engine.start(reuse, self.settings.restart_policy)
            new = reuse
        else:
            new = engine.create(spec, spec_hash, slots.next if active is not None else slots.main, "main", release_id)
        attempt.new_id = new.id
        self.gate.gate(new)
        self.gate.pre_promotion(new)
        if active is not None:
            if reuse is None:
                engine.remove_if(slots.prev)
            engine.rename(active, slots.prev)
            engine.rename(new, slots.main)
            engine.stop(active, self.settings.stop_timeout)
        attempt.promoted = True
        self.gate.post_promotion(new)
        return "main"

    def undo(self):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        found = engine.containers()
        nxt = found.get(slots.next)
        main = found.get(slots.main)
        prev = found.get(slots.prev)
        old = attempt.previous_id
        if nxt is not None and old is not None and nxt.id != old:  # the candidate never took the name
            engine.remove(nxt)
            nxt = None
        if main is not None and old is not None and main.id == old:
            # failed before the switch (the create, the gate, the first rename): the old one kept its name
            restored = self.serve_again(main)
        elif main is None and prev is not None and old is not None and prev.id == old:
            # failed between the two renames: the old one is already <name>-prev, still running
            restored = self.serve_again(prev, name=slots.main)
        elif nxt is not None:  # a leftover candidate of another attempt: the old one never stopped
            engine.remove(nxt)
            restored = attempt.previous_hash
        else:
            new = found.get(slots.main)
            prev = found.get(slots.prev)
            if prev is not None and attempt.previous_hash:
                # after promotion: start the old one first (start_first), then retire the new one
                engine.start(prev, self.settings.restart_policy)
                self.gate.gate(prev, label="rollback_gate")
                if new is not None:
                    engine.rename(new, slots.next)
                engine.rename(prev, slots.main)
                if new is not None:
                    engine.remove(new)
                restored = attempt.previous_hash
            else:
                if new is not None and new.id == attempt.new_id:
                    engine.remove(new)
                restored = None
        return restored
