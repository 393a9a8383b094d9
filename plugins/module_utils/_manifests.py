# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stack release manifests: the pure rules behind <state>/manifests/ (private).

    manifests/<id>.json    one stack release: flags, order, services (release, image, digest, spec hash)
    manifests/current.json a copy of the manifest the stack runs
    manifests/history.json [{id, created_at, known_good, kind, reason, verified_at?}, ...] sorted by id

Only the stack_state module writes these files, under the state mutex. Everything
here is a function of what it is given (no I/O), so the compare-and-swap and the
history merge are unit-tested without a host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re
import time

# <UTC second>-<first 8 hex of the content hash>, an "x" per clash in the same second
MANIFEST_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}x*")
BODY_KEYS = ("stack", "flags", "order", "services")
RECORD_KEYS = ("id", "created_at", "known_good", "kind", "reason", "verified_at")


class ManifestConflict(Exception):
    """What the caller read is no longer what is on the host; nothing was written."""


def valid_id(manifest_id):
    return isinstance(manifest_id, str) and MANIFEST_ID_RE.fullmatch(manifest_id) is not None


def content_hash(body):
    """sha256 of the release content, as manifests have always been hashed (Jinja's to_json(sort_keys=true))."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def new_manifest(body, kind, reason, created_by, taken_ids=(), now=None):
    """A manifest record for ``body`` (stack, flags, order, services): id, hash, times, not known-good yet."""
    now = time.time() if now is None else now
    body = {k: body.get(k) for k in BODY_KEYS}
    digest = content_hash(body)
    manifest_id = "%s-%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)), digest[:8])
    while manifest_id in taken_ids:  # another content with the same hash prefix, in the same second
        manifest_id += "x"
    return dict(
        body,
        id=manifest_id,
        content_hash=digest,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        created_by=created_by,
        kind=kind,
        reason=reason,
        known_good=False,
    )


def history_record(manifest):
    """The history line of a manifest."""
    rec = {k: manifest.get(k) for k in RECORD_KEYS if manifest.get(k) is not None}
    rec.setdefault("known_good", False)
    rec.setdefault("kind", "deploy")
    rec.setdefault("reason", "")
    return rec


def merge_history(history, manifest):
    """``history`` with the record of ``manifest`` added, or replacing the record with its id; sorted by id.

    ``history`` is the file as it is now (read under the mutex): every other record is kept as it is.
    """
    rec = history_record(manifest)
    merged = [r for r in history if r.get("id") != rec["id"]] + [rec]
    return sorted(merged, key=lambda r: r.get("id") or "")


def find_record(history, manifest_id):
    for rec in history:
        if rec.get("id") == manifest_id:
            return rec
    return None


def describe(manifest):
    """Who committed ``manifest`` and when, for conflict messages."""
    if not manifest or not manifest.get("id"):
        return "no current manifest"
    return "%s (%s by %s at %s, reason: %s)" % (
        manifest["id"],
        manifest.get("kind", "deploy"),
        manifest.get("created_by") or "?",
        manifest.get("created_at") or "?",
        manifest.get("reason") or "-",
    )


def check_current(expected_id, current, stack, action):
    """Compare-and-swap guard: raise ManifestConflict unless ``current`` is the manifest the caller read.

    ``expected_id`` is the id the caller read as current ("" when there was none).
    """
    actual = (current or {}).get("id") or ""
    if actual != (expected_id or ""):
        raise ManifestConflict(
            "%s refused on stack %r: this run read %s as the current manifest, but current.json is now %s; "
            "another run changed the release since. Nothing was written: re-read the state and decide again"
            % (action, stack, expected_id or "no manifest", describe(current))
        )


def plan_commit(current, history, body, kind, reason, created_by, now=None):
    """The manifest a commit makes current, and whether it is new.

    Content equal to the current manifest's keeps the current one (a no-op deploy records nothing).
    """
    body = {k: body.get(k) for k in BODY_KEYS}
    if current and current.get("content_hash") == content_hash(body):
        return current, False
    taken = {r.get("id") for r in history}
    return new_manifest(body, kind, reason, created_by, taken_ids=taken, now=now), True


def plan_known_good(manifest_id, current, manifest, stack, now=None):
    """The manifest marked known-good, and whether that is a change. Only the current manifest can be.

    Verify checked the running stack; when another run made its manifest current since, the running
    stack is that run's and this one's verdict says nothing about ``manifest_id``.
    """
    check_current(manifest_id, current, stack, "marking %s known-good" % manifest_id)
    if manifest.get("known_good"):
        return manifest, False
    now = time.time() if now is None else now
    return dict(manifest, known_good=True, verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))), True
