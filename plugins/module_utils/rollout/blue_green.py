# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""blue_green: start the other colour, gate it, switch the edge proxy, drain with the old colour as a backup
upstream, remove it (second switch), stop the old colour and keep it for an instant rollback."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import (
    health_of,
    release_of,
    spec_hash_of,
)
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import COLOURS
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.strategy import Strategy


class BlueGreen(Strategy):
    """``proxy``: an edge proxy (edge_proxy.NginxProxy's interface); ``drain``: seconds of drain;
    ``recorded_colour``: returns the colour the release history says is active (when the proxy has no
    config)."""

    name = "blue_green"

    def __init__(self, engine, slots, gate, settings, proxy, drain, recorded_colour=None):
        super().__init__(engine, slots, gate, settings)
        self.proxy = proxy
        self.drain = drain
        self.recorded_colour = recorded_colour or (lambda: None)

    def active(self):
        colour = self.proxy.upstream_colour() or self.recorded_colour()
        if colour not in COLOURS:
            return None, None
        return colour, self.engine.containers().get(self.slots.colour(colour))

    def active_spec_hash(self):
        return spec_hash_of(self.active()[1])

    def is_noop(self, spec_hash):
        colour, active = self.active()
        if active is None or active.status != "running" or spec_hash_of(active) != spec_hash:
            return False
        if health_of(active) not in (None, "healthy"):
            return False
        other = self.engine.containers().get(self.slots.colour(self.slots.other(colour)))
        if other is not None and other.status == "running":
            return False
        return self.proxy.serves(colour, release_of(active))

    def execute(self, spec, spec_hash, release_id):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        colour, active = self.active()
        if active is not None and active.status != "running":
            active = None if spec_hash_of(active) != spec_hash else active
        attempt.previous_colour = colour if active is not None else None
        attempt.previous_hash = spec_hash_of(active)
        if active is not None and spec_hash_of(active) == spec_hash:
            target = colour  # same spec, not running or unhealthy: restart it in place
            new = active
            if new.status != "running":
                engine.start(new, self.settings.restart_policy)
            attempt.previous_colour = None
        else:
            target = slots.other(colour)
            new = engine.containers().get(slots.colour(target))
            if new is not None and spec_hash_of(new) == spec_hash:
                if new.status != "running":
                    engine.start(new, self.settings.restart_policy)  # instant rollback to the kept colour
            else:
                if new is not None:
                    engine.remove(new)
                new = engine.create(spec, spec_hash, slots.colour(target), target, release_id)
        attempt.target = target
        attempt.new_id = new.id
        self.gate.gate(new)
        self.gate.pre_promotion(new)
        previous = attempt.previous_colour
        old = engine.containers().get(slots.colour(previous)) if previous else None
        if old is not None and old.status == "running":
            # the old colour stays in the upstream as a backup until the drain ends: a new colour that
            # refuses or drops connections in its first seconds under full load falls back to it
            self.proxy.switch(target, release_id, backup=previous)
            self.gate.pause(self.drain, "drain")
            self.gate.watch(new)  # died during the drain: roll back while the old colour still runs
            self.proxy.switch(target, release_id)  # second validated reload, without the backup
            engine.stop(old, self.settings.stop_timeout)
        else:
            self.proxy.switch(target, release_id)
            # the other colour still running (a run killed during its drain): out of the proxy now, stop it
            stray = engine.containers().get(slots.colour(slots.other(target)))
            if stray is not None and stray.status == "running":
                engine.stop(stray, self.settings.stop_timeout)
        attempt.promoted = True
        self.gate.post_promotion(new)
        return target

    def undo(self):
        engine, slots, attempt = self.engine, self.slots, self.attempt
        target = attempt.target
        if attempt.previous_colour and target:
            old = engine.containers().get(slots.colour(attempt.previous_colour))
            if old is not None:
                if old.status != "running":
                    engine.start(old, self.settings.restart_policy)
                self.gate.gate(old, label="rollback_gate")
                if self.proxy.switched or self.proxy.upstream_colour() != attempt.previous_colour:
                    self.proxy.switch(attempt.previous_colour, release_of(old))
                    self.gate.pause(min(self.drain, 2), "drain")
        new = engine.containers().get(slots.colour(target)) if target else None
        if new is not None and new.id == attempt.new_id:
            engine.remove(new)
        return attempt.previous_hash if attempt.previous_colour else None
