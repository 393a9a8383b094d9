# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container names of one service, in one place.

``<stack>-<service>`` serves (``_`` in the service becomes ``-``); ``-prev`` is the previous instance kept
stopped for an instant rollback, ``-next`` a start_first candidate, ``-blue``/``-green`` the colours of a
blue_green service and ``-proxy`` its edge proxy (``-proxy-next`` while a changed proxy replaces it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tradeops.stack.plugins.module_utils._docker import container_name

COLOURS = ("blue", "green")


class Slots:
    def __init__(self, stack, service):
        self.stack = stack
        self.service = service
        self.main = container_name(stack, service)
        self.prev = container_name(stack, service, slot="prev")
        self.next = container_name(stack, service, slot="next")
        self.proxy = container_name(stack, service, slot="proxy")
        self.proxy_next = container_name(stack, service, slot="proxy-next")  # a replacement proxy, briefly

    def colour(self, colour):
        """The container of a blue_green colour."""
        if colour not in COLOURS:
            raise ValueError("unknown colour %r (expected one of %s)" % (colour, ", ".join(COLOURS)))
        return container_name(self.stack, self.service, slot=colour)

    @staticmethod
    def other(colour):
        """The colour a blue_green rollout starts next to ``colour`` (blue when none is active)."""
        return "green" if colour == "blue" else "blue"

    def all(self):
        return [self.main, self.prev, self.next, self.colour("blue"), self.colour("green"), self.proxy]

    def of_strategy(self, strategy):
        """The containers a service of ``strategy`` can run as (serving, kept for rollback, candidate, proxy)."""
        if strategy == "blue_green":
            return [self.colour("blue"), self.colour("green"), self.proxy]
        if strategy == "start_first":
            return [self.main, self.next, self.prev]
        return [self.main, self.prev]
