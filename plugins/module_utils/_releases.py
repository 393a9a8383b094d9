# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-service release history in <state>/releases/<service>.json (private).

One file per service, rewritten atomically under the stack's state mutex::

    {"service": "api", "current": "<id>", "last_known_good": "<id>",
     "active_colour": "blue", "releases": [ {release}, ... ]}   # newest last

A release: id, image, image_id, image_digest, spec_hash, spec (secrets masked),
strategy, created_at, finished_at, result (pending | active | superseded | failed |
rolled_back), known_good, who. ``prune(keep)`` keeps the newest ``keep`` releases and
ALWAYS the current and the last known-good one, whatever their age.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    atomic_write_json,
    iso,
    read_json,
)


def new_release_id(spec_hash, now=None):
    now = time.time() if now is None else now
    return "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)), spec_hash[:8])


class ReleaseHistory:
    def __init__(self, state, service):
        problem = _rules.name_problem("service", service)
        if problem:
            raise ValueError("service name %r is invalid: %s" % (service, problem))
        self.state = state
        self.service = service
        self.file = state.sub("releases", "%s.json" % service)
        self.data = None

    def load(self):
        self.data = read_json(self.file) or {
            "service": self.service,
            "current": None,
            "last_known_good": None,
            "active_colour": None,
            "releases": [],
        }
        return self

    def save(self):
        self.state.ensure()
        atomic_write_json(self.file, self.data)

    @property
    def releases(self):
        return self.data["releases"]

    def get(self, release_id):
        for rel in self.releases:
            if rel["id"] == release_id:
                return rel
        return None

    def find(self, ref):
        """A release by id, id prefix, spec hash prefix or image reference (newest match wins)."""
        if not ref:
            return None
        for rel in reversed(self.releases):
            if rel["id"] == ref:
                return rel
        for rel in reversed(self.releases):
            if rel["id"].startswith(ref) or rel["spec_hash"].startswith(ref) or rel["image"] == ref:
                return rel
        return None

    def by_hash(self, spec_hash):
        for rel in reversed(self.releases):
            if rel["spec_hash"] == spec_hash:
                return rel
        return None

    def current(self):
        return self.get(self.data.get("current"))

    def previous_good(self):
        """The newest known-good release other than the current one (the target of a plain rollback)."""
        cur = self.data.get("current")
        cur_hash = (self.get(cur) or {}).get("spec_hash")
        for rel in reversed(self.releases):
            if rel["id"] != cur and rel.get("known_good") and rel["spec_hash"] != cur_hash:
                return rel
        return None

    def add(self, spec_hash, spec, strategy, image_digest=None, now=None):
        """Record an attempt (result pending); an earlier record of the same spec is reused.

        Reuse keeps one record per spec: deploy/rollback cycles between two versions
        keep two records instead of pruning the older version's, which a stack
        release manifest may still name as its rollback target. The reused record
        moves to the newest end (what was deployed last is pruned last).
        """
        now = time.time() if now is None else now
        attempt = {
            "image": spec["image"],
            "image_id": spec["image_id"],
            "image_digest": image_digest,
            "spec": spec,
            "strategy": strategy,
            "finished_at": None,
            "result": "pending",
            "who": self.state.identity(),
        }
        rel = self.by_hash(spec_hash)
        if rel is not None:
            self.releases.remove(rel)
            rel.pop("reason", None)
            rel.update(attempt, image_digest=image_digest or rel.get("image_digest"), redeployed_at=iso(now))
        else:
            rel = dict(
                attempt,
                id=new_release_id(spec_hash, now),
                spec_hash=spec_hash,
                created_at=iso(now),
                known_good=False,
            )
            while self.get(rel["id"]):  # another spec whose hash starts alike, in the same second
                rel["id"] += "x"
        self.releases.append(rel)
        return rel

    def promote(self, rel, colour=None):
        """``rel`` is now the running, verified release: it becomes current and last known-good."""
        prev = self.current()
        if prev and prev["id"] != rel["id"] and prev.get("result") == "active":
            prev["result"] = "superseded"
        rel["result"] = "active"
        rel["known_good"] = True
        rel["finished_at"] = iso(time.time())
        self.data["current"] = rel["id"]
        self.data["last_known_good"] = rel["id"]
        if colour:
            self.data["active_colour"] = colour

    def fail(self, rel, result, reason):
        rel["result"] = result  # failed | rolled_back
        rel["reason"] = reason
        rel["finished_at"] = iso(time.time())

    def clear_current(self):
        cur = self.current()
        if cur and cur.get("result") == "active":
            cur["result"] = "removed"
        self.data["current"] = None
        self.data["active_colour"] = None

    def prune(self, keep):
        """Drop the oldest releases beyond ``keep``; never the current or the last known-good one.

        Returns the pruned records (their images may be removed by the caller if unused).
        """
        protected = {self.data.get("current"), self.data.get("last_known_good")}
        keep = max(1, int(keep))
        candidates = [r for r in self.releases if r["id"] not in protected]
        excess = len(self.releases) - keep
        pruned = []
        for rel in candidates:
            if excess <= 0:
                break
            pruned.append(rel)
            excess -= 1
        ids = {r["id"] for r in pruned}
        self.data["releases"] = [r for r in self.releases if r["id"] not in ids]
        return pruned

    def needed_images(self):
        return {r["image_id"] for r in self.releases if r.get("image_id")}

    def summary(self, limit=None):
        """What the module returns: newest first, without the full spec."""
        out = []
        for rel in reversed(self.releases):
            item = {k: rel.get(k) for k in ("id", "image", "image_id", "image_digest", "spec_hash", "strategy")}
            item.update({k: rel.get(k) for k in ("created_at", "finished_at", "result", "known_good", "reason")})
            item["who"] = (rel.get("who") or {}).get("user")
            out.append(item)
        return out[:limit] if limit else out
