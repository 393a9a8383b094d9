#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: stack_state
short_description: The one writer of a stack's release manifests, flag overrides and audit log on the Docker host
version_added: 0.1.0
description:
  - Writes the stack release state under C(<state_root>/<stack>/) on the managed host,
    C(manifests/<id>.json), C(manifests/current.json), C(manifests/history.json) and C(config/overrides.json),
    renders the services' C(flags.json) from the overrides, and appends to C(audit.log). No task of the
    collection writes these files any other way.
  - Every write is atomic (temporary file, fsync, rename) and happens under the stack's C(manifests) mutex,
    from the files as they are on the host at that moment, never from a copy the play read earlier.
  - An action that changes the release (O(action=commit), O(action=known_good), O(action=activate),
    O(action=flags)) requires the deploy lock to be held by O(lock_holder) (taken with
    M(tradeops.stack.deploy_lock)) and keeps the lock's mutex while it writes, so the lock cannot change hands
    in the middle of a write.
  - O(action=commit) and O(action=activate) are a compare-and-swap on O(expected_current), the manifest id the
    caller read as current; when another run made another manifest current since, the module refuses, names
    that manifest, its kind, author and time, and writes nothing.
  - The history is merged, one record added or updated by id; the records of other runs are kept.
  - Each write is a line in the audit log (C(manifest_commit), C(manifest_known_good), C(manifest_activate),
    C(flags_overrides)) with the identity of the process on the Docker host.
extends_documentation_fragment:
  - tradeops.stack.state
attributes:
  check_mode:
    support: full
    description: Decides every refusal and reports whether the action would change anything; writes nothing.
  diff_mode:
    support: full
    description:
      - Manifest actions show the current manifest id and the affected history record before and after.
      - O(action=flags) shows the overrides before and after. O(action=audit) shows no diff.
  idempotent:
    support: partial
    description: Manifest and flag actions converge; an audit line is appended every time.
    details:
      - O(action=commit) of the content of the current manifest keeps it and reports no change.
      - Marking a known-good manifest known-good, activating the current manifest and setting flags to their
        values are not changes.
      - O(action=audit) always appends a line (reported as changed).
      - O(action=backup) publishes a dump once; run again, the dump is already there and nothing changes.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  action:
    description:
      - V(commit) records O(manifest) as a new manifest and makes it current (no change when its content is the
        current manifest's).
      - V(known_good) marks manifest O(id) known-good; it must still be the current manifest.
      - V(activate) makes the existing manifest O(id) current again (a stack rollback).
      - V(flags) sets the flag overrides in C(config/overrides.json) to O(flags) (see O(flags_mode)) and renders
        C(<config_dir>/<service>/flags.json) of every service in O(flag_readers) from them and O(flag_defaults).
      - V(audit) appends O(event) to the audit log.
      - V(backup) publishes the finished dump C(<backup_dir>/<backup>.part) as C(<backup>) (a rename, so whole or
        absent), keeps the newest O(backup_keep) dumps of the stack and audits it; with O(backup_discard=true) it
        removes the partial dump of a failed backup instead.
    type: str
    required: true
    choices: [commit, known_good, activate, flags, audit, backup]
  lock_holder:
    description:
      - Holder of the deploy lock, as passed to M(tradeops.stack.deploy_lock)
        (O(tradeops.stack.deploy_lock#module:holder)).
      - Required for every action but O(action=audit). The action is refused when the lock is free, held by
        someone else or stale. In check mode a free lock is accepted (a check run does not take it).
    type: str
  expected_current:
    description:
      - The id of the manifest the caller read as current, an empty string when there was none.
      - Required with O(action=commit) and O(action=activate).
    type: str
  manifest:
    description:
      - With O(action=commit), the release content; keys C(flags), C(order) and C(services) (each service's release,
        spec hash, image, image id, digest, strategy). The module adds C(stack), C(id), C(content_hash),
        C(created_at), C(created_by), C(kind), C(reason) and C(known_good=false).
    type: dict
  kind:
    description: With O(action=commit), what made the manifest, for example V(deploy) or V(flags).
    type: str
    default: deploy
  reason:
    description: With O(action=commit), why (shown in the history and in conflict messages); with O(action=backup), why
      the backup was taken (audited).
    type: str
    default: ""
  created_by:
    description: With O(action=commit), who on the controller (C(user@host)).
    type: str
    default: ""
  id:
    description: With O(action=known_good) and O(action=activate), the manifest id.
    type: str
  flags:
    description: With O(action=flags), flag name to boolean.
    type: dict
  flags_mode:
    description:
      - V(merge) sets the flags named in O(flags) and keeps the other overrides as they are on the host.
      - V(replace) makes O(flags) the whole override set (a rollback restoring a manifest's flags).
    type: str
    choices: [merge, replace]
    default: merge
  flag_defaults:
    description:
      - With O(action=flags), the flags of the stack description; the overrides win over them. A flag neither
        names is V(false).
    type: dict
    default: {}
  flag_readers:
    description:
      - With O(action=flags), service name to the flags it reads. Each gets C(<config_dir>/<service>/flags.json)
        with exactly those flags, written atomically (a running container that mounts the directory sees the new
        file at once); a file whose content is already right is not touched.
    type: dict
    default: {}
  config_dir:
    description:
      - With O(action=flags), where the services' flag files live; default C(<state_root>/<stack>/config).
    type: path
  backup:
    description:
      - With O(action=backup), the dump's file name (C(<stack>-<label>-<time>.dump)); the dump tool writes
        C(<name>.part) first.
    type: str
  backup_dir:
    description: With O(action=backup), the directory of the dumps; default C(<state_root>/<stack>/backups).
    type: path
  backup_keep:
    description:
      - With O(action=backup), how many of the stack's dumps (C(<stack>-*.dump)) to keep, the newest first; the one
        just published is always kept.
    type: int
    default: 5
  backup_discard:
    description: With O(action=backup), remove C(<backup>.part) (the dump failed) instead of publishing it.
    type: bool
    default: false
  event:
    description:
      - With O(action=audit), the audit event; C(action) is required, C(result) defaults to V(ok), other keys
        are recorded as they are. Never pass secrets.
      - The module adds the time, the stack and the identity of the process on the Docker host
        (C(user), C(host)); put the controller side in a key of its own, such as C(controller).
    type: dict
seealso:
  - module: tradeops.stack.deploy_lock
  - module: tradeops.stack.rollout
"""

EXAMPLES = r"""
- name: Record the release manifest of this deploy (refused if another run made another manifest current)
  tradeops.stack.stack_state:
    stack: cdb
    action: commit
    lock_holder: "{{ _stack_lock_holder }}"
    expected_current: "{{ _stack_current_manifest.id | default('') }}"
    kind: deploy
    reason: bot 1.0.1
    created_by: alice@bastion
    manifest:
      flags: {pause_new_orders: false}
      order: [postgres, signal_engine]
      services:
        postgres: {release: 20251201T101500Z-4be1a2c3, spec_hash: 4be1a2c3d4, image: tradeops/postgres:15-bookworm}
        signal_engine: {release: 20251201T101530Z-9f00aa11, spec_hash: 9f00aa1122, image: tradeops/bot:1.0.1}
  register: commit

- name: After verify passed, under the same lock
  tradeops.stack.stack_state:
    stack: cdb
    action: known_good
    lock_holder: "{{ _stack_lock_holder }}"
    id: "{{ commit.manifest.id }}"

- name: Set one flag override, keeping the others as they are on the host
  tradeops.stack.stack_state:
    stack: cdb
    action: flags
    lock_holder: "{{ _stack_lock_holder }}"
    flags: {pause_new_orders: true}

- name: Publish the dump pg_dump wrote as cdb-manual-20251201T101500Z.dump.part, keep the newest 10, audit it
  tradeops.stack.stack_state:
    stack: cdb
    action: backup
    lock_holder: "{{ _stack_lock_holder }}"
    backup: cdb-manual-20251201T101500Z.dump
    backup_keep: 10

- name: Audit an event of the controller's
  tradeops.stack.stack_state:
    stack: cdb
    action: audit
    event: {action: restore, result: ok, backup: cdb-manual-20251201T101500Z.dump, controller: alice@bastion}
"""

RETURN = r"""
backup:
  description: With O(action=backup), the published dump's path (null when a partial dump was discarded).
  returned: with O(action=backup)
  type: str
  sample: /var/lib/tradeops/cdb/backups/cdb-pre-deploy-20261207T081500Z.dump
size:
  description: With O(action=backup), the dump's size in bytes.
  returned: when a dump was published or found
  type: int
  sample: 48213
pruned:
  description: With O(action=backup), the older dumps removed to keep O(backup_keep).
  returned: when a dump was published or found
  type: list
  elements: str
  sample: [cdb-manual-20261101T080000Z.dump]
discarded:
  description: With O(action=backup) and O(backup_discard=true), the partial dump removed.
  returned: when a partial dump was removed
  type: str
  sample: /var/lib/tradeops/cdb/backups/cdb-pre-deploy-20261207T081500Z.dump.part
manifest:
  description: The manifest the action committed, marked or activated (the current one after O(action=commit)).
  returned: with manifest actions
  type: dict
  sample: {id: 20251201T101530Z-0c1d2e3f, content_hash: 0c1d2e3f..., kind: deploy, known_good: false,
           created_at: "2025-12-01T10:15:30Z", created_by: alice@bastion, reason: bot 1.0.1, stack: cdb,
           flags: {pause_new_orders: false}, order: [postgres],
           services: {postgres: {release: 20251201T101500Z-4be1a2c3}}}
previous_current:
  description: The id of the current manifest before the action (empty when there was none).
  returned: with manifest actions
  type: str
  sample: 20251130T090000Z-aa11bb22
history:
  description: The manifest history after the action, oldest first.
  returned: with manifest actions
  type: list
  elements: dict
  sample: [{id: 20251201T101530Z-0c1d2e3f, created_at: "2025-12-01T10:15:30Z", known_good: false, kind: deploy,
            reason: bot 1.0.1}]
overrides:
  description: The flag overrides after the action.
  returned: with O(action=flags)
  type: dict
  sample: {pause_new_orders: true}
effective:
  description: The flag set the services get, O(flag_defaults) with the overrides over them.
  returned: with O(action=flags)
  type: dict
  sample: {pause_new_orders: true}
touched:
  description: The services of O(flag_readers) whose flags.json was (or in check mode would be) rewritten.
  returned: with O(action=flags)
  type: list
  elements: str
  sample: [paper_execution]
event:
  description: The audit line as written.
  returned: with O(action=audit), unless in check mode
  type: dict
  sample: {action: backup, result: ok, ts: "2025-12-01T10:15:30Z", stack: cdb, user: root, host: dockerhost1}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils._manifests import (
    ManifestConflict,
    check_current,
    find_record,
    merge_history,
    plan_commit,
    plan_known_good,
    valid_id,
)
from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    STATE_ARG_SPEC,
    DeployLock,
    StackState,
    StateError,
    atomic_write_json,
    iso,
    error_message,
    read_json,
    undone_on_error,
)

AUDIT_RESERVED = ("ts", "stack", "user", "host")


class StateWriter:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.state = StackState(self.p["stack"], self.p["state_root"], self.p["operator"])
        self.lock = DeployLock(self.state)

    # -- files --------------------------------------------------------------------------------
    def path(self, *parts):
        return self.state.sub(*parts)

    def read_current(self):
        return read_json(self.path("manifests", "current.json"), {}) or {}

    def read_history(self):
        path = self.path("manifests", "history.json")
        history = read_json(path, [])
        if not isinstance(history, list) or not all(isinstance(r, dict) and r.get("id") for r in history):
            raise StateError("%s is not a list of records with an id; inspect it (jq . %s)" % (path, path))
        return history

    def read_manifest(self, manifest_id):
        path = self.path("manifests", "%s.json" % manifest_id)
        manifest = read_json(path)
        if not manifest:
            raise StateError("manifest %s does not exist on this host (%s)" % (manifest_id, path))
        return manifest

    def write_manifest(self, manifest, history, event, **fields):
        """<id>.json, then the history, then current.json (current never names a file that is not there), then
        the audit line ``event``: all of it or, when a write or the audit line fails (full disk), none of it."""
        self.state.ensure()
        paths = [self.path("manifests", name) for name in ("%s.json" % manifest["id"], "history.json", "current.json")]
        with undone_on_error(*paths):
            atomic_write_json(paths[0], manifest)
            atomic_write_json(paths[1], history)
            atomic_write_json(paths[2], manifest)
            self.state.audit(event, "ok", manifest=manifest["id"], holder=self.p["lock_holder"], **fields)

    # -- guards -------------------------------------------------------------------------------
    def require_lock(self):
        holder = self.p["lock_holder"]
        if not holder:
            raise StateError(
                "action=%s changes the release of stack %r: pass lock_holder, the holder of its deploy lock"
                % (self.p["action"], self.state.stack)
            )
        status = self.lock.status()
        if not status.get("held"):
            if self.check:
                return  # a check run never takes the lock
            raise StateError(
                "action=%s refused: the deploy lock of stack %r is not held (expected holder %r); "
                "take it with tradeops.stack.deploy_lock first. Nothing was written"
                % (self.p["action"], self.state.stack, holder)
            )
        if status.get("holder") != holder:
            raise StateError(
                "action=%s refused: the deploy lock of stack %r is held by %r since %s (reason: %s), not by %r. "
                "Nothing was written"
                % (
                    self.p["action"],
                    self.state.stack,
                    status.get("holder"),
                    iso(status.get("acquired_at")),
                    status.get("reason"),
                    holder,
                )
            )
        if status.get("stale"):
            raise StateError(
                "action=%s refused: the deploy lock of %r on stack %r is stale (%s) and may be taken over "
                "at any moment. Nothing was written"
                % (self.p["action"], holder, self.state.stack, status.get("stale_reason"))
            )

    def require(self, *names):
        missing = [n for n in names if self.p[n] is None]
        if missing:
            raise StateError("action=%s requires %s" % (self.p["action"], ", ".join(missing)))
        if "id" in names and not valid_id(self.p["id"]):
            raise StateError("manifest id %r is invalid: expected <YYYYmmddTHHMMSSZ>-<8 hex>" % (self.p["id"],))

    # -- actions ------------------------------------------------------------------------------
    def run(self):
        action = self.p["action"]
        if action == "audit":
            return self.audit()
        if self.check:
            self.require_lock()
            return getattr(self, action)()
        # the lock's mutex keeps the lock from changing hands (release, take-over) while we write
        with self.state.mutex("lock"):
            self.require_lock()
            with self.state.mutex("manifests"):
                return getattr(self, action)()

    def manifest_result(self, changed, before_current, manifest, history, before_record):
        result = dict(
            changed=changed, manifest=manifest, previous_current=before_current.get("id") or "", history=history
        )
        after_current = before_current.get("id") or ""
        if changed and self.p["action"] != "known_good":
            after_current = manifest["id"]
        result["diff"] = dict(
            before={"current": before_current.get("id") or "", "record": before_record or {}},
            after={"current": after_current, "record": find_record(history, manifest["id"]) or {}},
        )
        return result

    def commit(self):
        self.require("expected_current", "manifest")
        p = self.p
        current, history = self.read_current(), self.read_history()
        check_current(p["expected_current"], current, self.state.stack, "commit of a new %s manifest" % p["kind"])
        body = dict(p["manifest"], stack=self.state.stack)
        manifest, new = plan_commit(current, history, body, p["kind"], p["reason"], p["created_by"])
        before_record = find_record(history, manifest["id"])
        if not new:
            return self.manifest_result(False, current, manifest, history, before_record)
        history = merge_history(history, manifest)
        if not self.check:
            self.write_manifest(
                manifest,
                history,
                "manifest_commit",
                previous=current.get("id"),
                kind=p["kind"],
                reason=p["reason"],
                created_by=p["created_by"],
            )
        return self.manifest_result(True, current, manifest, history, before_record)

    def known_good(self):
        self.require("id")
        current, history = self.read_current(), self.read_history()
        manifest_id = self.p["id"]
        on_disk = read_json(self.path("manifests", "%s.json" % manifest_id)) or current
        manifest, changed = plan_known_good(manifest_id, current, on_disk, self.state.stack)
        before_record = find_record(history, manifest_id)
        if not changed and before_record and before_record.get("known_good"):
            return self.manifest_result(False, current, manifest, history, before_record)
        history = merge_history(history, manifest)
        if not self.check:
            self.write_manifest(manifest, history, "manifest_known_good")
        return self.manifest_result(True, current, manifest, history, before_record)

    def activate(self):
        self.require("id", "expected_current")
        current, history = self.read_current(), self.read_history()
        manifest_id = self.p["id"]
        target = self.read_manifest(manifest_id)
        check_current(self.p["expected_current"], current, self.state.stack, "activating manifest %s" % manifest_id)
        before_record = find_record(history, manifest_id)
        if current.get("id") == manifest_id and before_record:
            return self.manifest_result(False, current, target, history, before_record)
        history = merge_history(history, target)
        if not self.check:
            self.write_manifest(target, history, "manifest_activate", previous=current.get("id"))
        return self.manifest_result(True, current, target, history, before_record)

    def flags(self):
        self.require("flags")
        wanted = {}
        for name, value in self.p["flags"].items():
            if not isinstance(value, bool):
                raise StateError("flag %r must be true or false, got %r" % (name, value))
            wanted[name] = value
        path = self.path("config", "overrides.json")
        before = read_json(path, {}) or {}
        if not isinstance(before, dict):
            raise StateError("%s is not a JSON object of flag overrides; inspect it (jq . %s)" % (path, path))
        after = dict(wanted) if self.p["flags_mode"] == "replace" else dict(before, **wanted)
        effective = dict(self.p["flag_defaults"], **after)
        renders = self.flag_files(effective)
        changed = after != before or bool(renders)
        if not self.check:
            self.make_dir(self.path("config"))
            for file, _content in renders.values():
                self.make_dir(os.path.dirname(file))
            # the overrides, their audit line and every render: all of it or, on a full disk, none of it
            with undone_on_error(path, *sorted(file for file, _content in renders.values())):
                if after != before:
                    atomic_write_json(path, after, mode=0o644)  # not secret: the flag set every render starts from
                    self.state.audit("flags_overrides", "ok", before=before, after=after, holder=self.p["lock_holder"])
                for file, content in sorted(renders.values()):
                    atomic_write_json(file, content, mode=0o644)  # mounted read-only into the service
        return dict(
            changed=changed,
            overrides=after,
            effective=effective,
            touched=sorted(renders),
            diff=dict(before=before, after=after),
        )

    def flag_files(self, effective):
        """service -> (path, content) of each flags.json whose content on the host is not what it must be."""
        config_dir = self.p["config_dir"] or self.path("config")
        out = {}
        for service, names in sorted(self.p["flag_readers"].items()):
            problem = _rules.name_problem("service", service)
            if problem:
                raise StateError("flag_readers: service name %r is invalid: %s" % (service, problem))
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise StateError("flag_readers.%s must be a list of flag names, got %r" % (service, names))
            file = os.path.join(config_dir, service, "flags.json")
            content = {name: effective.get(name) is True for name in names}
            try:
                current = read_json(file)
            except StateError:
                current = None  # a corrupt file is rewritten: it is derived from the overrides
            if current != content:
                out[service] = (file, content)
        return out

    def backup(self):
        """Publish (or discard) a finished dump, keep the newest ``backup_keep``, audit it: the backup directory
        is host state like the rest, written by this module only (the dump tool writes ``<name>.part``)."""
        self.require("backup")
        name = self.p["backup"]
        if name != os.path.basename(name) or not name.endswith(".dump") or name.startswith("."):
            raise StateError("backup %r is invalid: expected a file name ending in .dump, no directory" % (name,))
        directory = self.p["backup_dir"] or self.path("backups")
        final, part = os.path.join(directory, name), os.path.join(directory, name + ".part")
        if self.p["backup_discard"]:
            if not os.path.exists(part):
                return dict(changed=False, backup=None)
            if not self.check:
                os.unlink(part)
                self.state.audit("backup", "failed", backup=name, holder=self.p["lock_holder"])
            return dict(changed=True, backup=None, discarded=part)
        if os.path.exists(final) and not os.path.exists(part):
            return dict(changed=False, backup=final, size=os.path.getsize(final), pruned=[])
        if self.check and not os.path.exists(part):
            return dict(changed=True, backup=final, pruned=[])  # a check run never dumped: predict the publish
        if not os.path.exists(part) or os.path.getsize(part) == 0:
            raise StateError("backup %s is missing or empty: the dump did not finish; nothing was published" % part)
        size = os.path.getsize(part)
        others = [
            os.path.join(directory, n)
            for n in os.listdir(directory)
            if n.startswith(self.state.stack + "-") and n.endswith(".dump") and n != name
        ]
        others.sort(key=os.path.getmtime, reverse=True)
        pruned = others[max(0, self.p["backup_keep"] - 1) :]
        if not self.check:
            with undone_on_error(final, part):
                os.rename(part, final)
                self.state.audit(
                    "backup",
                    "ok",
                    backup=name,
                    size=size,
                    pruned=[os.path.basename(p) for p in pruned],
                    reason=self.p["reason"],
                    holder=self.p["lock_holder"],
                )
            for path in pruned:
                os.unlink(path)
        return dict(changed=True, backup=final, size=size, pruned=[os.path.basename(p) for p in pruned])

    @staticmethod
    def make_dir(path):
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o755)  # node and container users read the flag files

    def audit(self):
        event = dict(self.p["event"] or {})
        action = event.pop("action", None)
        if not action or not isinstance(action, str):
            raise StateError("action=audit requires event.action, the name of what happened")
        result = str(event.pop("result", "ok"))
        reserved = sorted(set(event) & set(AUDIT_RESERVED))
        if reserved:
            raise StateError(
                "event keys %s are set by the module (time, stack, identity on the Docker host); "
                "record the controller side under another key, such as controller" % ", ".join(reserved)
            )
        if self.check:
            return dict(changed=True)
        return dict(changed=True, event=self.state.audit(action, result, **event))


def main():
    argument_spec = dict(
        action=dict(
            type="str", required=True, choices=["commit", "known_good", "activate", "flags", "audit", "backup"]
        ),
        lock_holder=dict(type="str"),
        expected_current=dict(type="str"),
        manifest=dict(type="dict"),
        kind=dict(type="str", default="deploy"),
        reason=dict(type="str", default=""),
        created_by=dict(type="str", default=""),
        id=dict(type="str"),
        flags=dict(type="dict"),
        flags_mode=dict(type="str", default="merge", choices=["merge", "replace"]),
        flag_defaults=dict(type="dict", default={}),
        flag_readers=dict(type="dict", default={}),
        config_dir=dict(type="path"),
        backup=dict(type="str"),
        backup_dir=dict(type="path"),
        backup_keep=dict(type="int", default=5),
        backup_discard=dict(type="bool", default=False),
        event=dict(type="dict"),
    )
    argument_spec.update(STATE_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = StateWriter(module).run()
    except ManifestConflict as exc:
        module.fail_json(msg=str(exc), conflict=True)
    except (StateError, OSError) as exc:
        module.fail_json(msg=error_message(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
