# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The waits of a rollout: the health gate, the metric analysis before promotion, the post-promotion watch
(monitor and bake) and the drains, each keeping the deploy lock's lease through ``keep_lock``.

Each wait is recorded as an action of the engine (not a change), so check mode's plan names it too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed


class Gate:
    """``health``: the module's health option (timeout, http, monitor); ``analysis``: an analysis.Analysis
    or None; ``bake``: seconds of analysis after promotion; ``keep_lock``: renews the lease, raises
    RolloutFailed when the lock is lost."""

    def __init__(self, engine, health, network, analysis=None, bake=0, keep_lock=None):
        self.engine = engine
        self.health = health
        self.network = network
        self.analysis = analysis
        self.bake = bake
        self.keep_lock = keep_lock or (lambda: False)
        self.timings = {}
        self.report = None  # the new instance's gate report

    def gate(self, container, label="gate"):
        """Wait until ``container`` is exactly healthy (and passes the HTTP probe); raise RolloutFailed if not."""
        self.engine.record("health gate %s (timeout %ss)" % (container.name, self.health["timeout"]), change=False)
        t = time.monotonic()
        res = self.engine.wait_healthy(
            container,
            self.health["timeout"],
            http=self.health.get("http"),
            network=self.network,
            stop_early=self.keep_lock,  # called every poll; never stops the gate, raises when the lock is lost
        )
        self.timings[label] = round(time.monotonic() - t, 2)
        report = res.as_dict()
        report["container"] = container.name
        if label == "gate":
            self.report = report
        if not res.ok:
            raise RolloutFailed(res.reason, gate=report, stage=label)
        return report

    def watch(self, container):
        """Post-promotion: the instance must keep running and not turn unhealthy."""
        self.keep_lock()
        attrs = self.engine.inspect(container)
        state = attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") != "running" or health == "unhealthy" or attrs.get("RestartCount", 0):
            raise RolloutFailed(
                "after promotion, container %s is %s (health %s, exit code %s%s)"
                % (
                    container.name,
                    state.get("Status"),
                    health,
                    state.get("ExitCode"),
                    ", OOMKilled" if state.get("OOMKilled") else "",
                ),
                gate=self.engine.failure_details(container, attrs),
                stage="monitor",
            )

    def pre_promotion(self, container):
        if self.analysis:
            self.engine.record("metric analysis before promotion", change=False)
            if not self.engine.dry:
                self.analysis.run("pre", None, watch=lambda: self.watch(container))

    def post_promotion(self, container):
        monitor = self.health["monitor"]
        if self.analysis and self.bake > 0:
            self.engine.record("metric analysis bake %ss" % self.bake, change=False)
        if monitor:
            self.engine.record("monitor %s for %ss" % (container.name, monitor), change=False)
        if self.engine.dry:
            return
        t = time.monotonic()
        if self.analysis and self.bake > 0:
            self.analysis.run("bake", self.bake, watch=lambda: self.watch(container))
        while time.monotonic() - t < monitor:
            self.watch(container)
            time.sleep(0.25)
        self.watch(container)
        if monitor or self.analysis:
            self.timings["post_promotion"] = round(time.monotonic() - t, 2)

    def pause(self, seconds, why="pause"):
        """Sleep ``seconds`` while keeping the lock."""
        self.engine.record("%s %ss" % (why, seconds), change=False)
        if self.engine.dry:
            return
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.keep_lock()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
