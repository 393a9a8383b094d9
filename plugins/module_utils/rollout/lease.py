# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock a rollout runs under: the play's (when ``lock.holder`` holds it) or its own, owned by the
module's process; its lease is renewed every third of its TTL while the rollout waits.

Under the play's lock the module records itself as the lock's worker: a rollout started as an async job
whose controller was killed keeps the lock live until it has finished (or rolled back)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import time

from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    DeployLock,
    LockLost,
    StateError,
    check_lock_ttl,
    machine_identity,
)
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed


class Lease:
    def __init__(self, state, service, cfg, reason, warn):
        self.state = state
        self.service = service
        self.cfg = cfg or {}
        self.reason = reason
        self.warn = warn
        self.own = False
        self.holder = None
        self.ttl = check_lock_ttl(self.cfg.get("ttl") or 900, "lock.ttl")
        self.renew_at = None  # time.monotonic() of the next lease renewal, None: no lock to renew
        self.worker = False  # recorded as the worker of the play's lock

    def acquire(self):
        """Run under the play's lock when lock.holder holds it; else take it, owned by this module process.

        The owner recorded is the process doing the work (this module, on the Docker host): a rollout whose
        controller was killed but whose module still runs keeps the lock; once the module is gone too the
        lock is stale, on remote hosts as well.
        """
        cfg = self.cfg
        ident = self.state.identity()
        pid, host = os.getpid(), socket.gethostname()
        holder = cfg.get("holder") or "rollout %s %s@%s pid %s" % (self.service, ident["user"], host, pid)
        self.holder = holder
        lock = DeployLock(self.state)
        current = lock.read()
        if current and current.get("holder") == holder and not lock.staleness(current):
            # the play holds the lock for all of its rollouts; renewed at the TTL it was taken with
            self.ttl = current.get("ttl") or self.ttl
            try:
                lock.renew(holder, ttl=self.ttl, worker=(pid, host, machine_identity()))
            except LockLost as exc:
                raise RolloutFailed("deploy lock lost before rolling out %s: %s" % (self.service, exc), stage="lock")
            self.worker = True
        else:
            lock.acquire(
                holder,
                self.reason or "rollout %s" % self.service,
                self.ttl,
                wait=cfg.get("wait") or 0,
                take_over_stale=bool(cfg.get("take_over_stale")),
                owner_pid=pid,
                owner_host=host,
                owner_machine=machine_identity(),
            )
            self.own = True
        self.renew_at = time.monotonic() + self.ttl / 3.0

    def keep(self):
        """Renew the lease of the lock this rollout runs under (its own or the play's), at most every ttl/3 s.

        Called by the waits (health gate, analysis, monitor, drains), so a rollout longer than the TTL is never
        taken over while it works. When someone else holds the lock now (taken over as stale, or force
        released), the rollout fails naming them and rolls back; it does not try to renew again.
        """
        if self.renew_at is None or time.monotonic() < self.renew_at:
            return False
        self.renew_at = None
        try:
            DeployLock(self.state).renew(self.holder, ttl=self.ttl)
        except LockLost as exc:
            self.own = False  # not ours any more: never release the new holder's lock
            raise RolloutFailed("lost the deploy lock while rolling out %s: %s" % (self.service, exc), stage="lock")
        except StateError as exc:  # could not write (full disk): the lease still runs, try again soon
            self.warn("could not renew the deploy lock (will retry): %s" % exc)
            self.renew_at = time.monotonic() + min(5.0, self.ttl / 10.0)
            return False
        self.renew_at = time.monotonic() + self.ttl / 3.0
        return False

    def release(self):
        self.renew_at = None
        if self.worker:  # the play's lock stays; this process no longer works under it
            self.worker = False
            try:
                DeployLock(self.state).renew(self.holder, ttl=self.ttl, worker=None)
            except LockLost:
                pass  # taken over or released meanwhile (keep() reported it): nothing of ours is left in it
            except StateError as exc:
                self.warn("could not clear this rollout from the deploy lock: %s" % exc)
        if self.own:
            try:
                DeployLock(self.state).release(self.holder)
            except StateError as exc:
                self.warn("could not release the deploy lock: %s" % exc)
            self.own = False
