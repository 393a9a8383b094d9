# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout module's machinery (private), one job per file.

- ``runner``: decide, record the attempt, execute, settle; the lock lease, the freeze guard, the audit;
- ``engine``: every Docker call, recorded as an action; ``ModelEngine``/``DryEngine`` are its twins
  (check mode records the same actions on a model of the containers);
- ``slots``: the container names of a service;
- ``gate``: the health gate, the post-promotion watch, the metric analysis phases and the waits;
- ``exclusive``, ``start_first``, ``blue_green``: the strategies, built from an engine, the slots, a gate
  and their settings;
- ``edge_proxy``: the blue/green edge proxy (HAProxy over its runtime API, or nginx) behind a small interface;
- ``analysis``: the Prometheus metric analysis.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class RolloutFailed(Exception):
    """The rollout cannot go on; ``stage`` says where, ``gate`` carries the health gate's evidence."""

    def __init__(self, reason, gate=None, stage=None):
        super().__init__(reason)
        self.reason = reason
        self.gate = gate
        self.stage = stage
        self.rollback_failed = False


class InvariantViolated(Exception):
    """Two instances of an exclusive service ran: never expected, always reported."""
