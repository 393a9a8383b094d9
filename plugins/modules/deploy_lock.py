#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: deploy_lock
short_description: Acquire, release or inspect a stack's deploy lock on the Docker host
version_added: 0.1.0
description:
  - One lock per stack in C(<state_root>/<stack>/lock.json) with holder, reason, TTL and the controller process
    that holds it. M(tradeops.stack.rollout) runs under it.
  - A lock whose TTL passed, or whose O(owner_pid) no longer exists on O(owner_machine) when that is the machine
    the module runs on (a killed ansible-playbook on the Docker host itself), is reported as stale. A lock of
    another machine, or without a recorded machine (written by an older version), is stale by its TTL only.
    It is taken over only with O(take_over_stale=true) (V(tradeops_lock_take_over_stale=true) in the playbooks);
    every acquire, release, forced release and take-over is a line in the stack's audit log.
  - Re-acquiring one's own lock renews its TTL; M(tradeops.stack.rollout) renews the lock it runs under while
    it waits on health gates, analysis and drains.
  - Every change of the lock is written with its audit line or not at all; on a full disk the task fails
    naming the file and the lock is left as it was.
extends_documentation_fragment:
  - tradeops.stack.state
attributes:
  check_mode:
    support: full
    description: Reports whether the lock would be acquired or released, without writing.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: partial
    description: Acquire and release converge.
    details:
      - Acquiring a lock one already holds renews its TTL (reported as not changed).
      - Releasing a free lock is not a change.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  state:
    description:
      - V(acquired) takes the lock (waiting up to O(wait) seconds), V(released) releases it, V(status) only reports.
    type: str
    choices: [acquired, released, status]
    default: acquired
  holder:
    description:
      - Who holds the lock; pass the same value to M(tradeops.stack.rollout)
        (O(tradeops.stack.rollout#module:lock.holder)) so that its rollouts run under this lock.
      - Required unless O(state=status).
    type: str
  reason:
    description: Why the lock is taken (shown to whoever waits for it).
    type: str
    default: deploy
  ttl:
    description: Seconds after which the lock is stale; at most 21600 (6 h).
    type: int
    default: 1800
  wait:
    description: Seconds to wait for a lock held by someone else before failing.
    type: int
    default: 0
  take_over_stale:
    description: Take over a stale lock (TTL passed or owner process gone). Audited with the previous holder.
    type: bool
    default: false
  force:
    description: With O(state=released), release a lock held by someone else. Audited.
    type: bool
    default: false
  owner_pid:
    description:
      - PID of the controller process that holds the lock, normally the C(pid) term of the lookup
        P(tradeops.stack.controller#lookup). When that process is gone from O(owner_machine), the lock is stale.
    type: int
  owner_host:
    description:
      - Host name of O(owner_pid), normally the C(host) term of the lookup P(tradeops.stack.controller#lookup).
        Shown to people only; staleness never depends on it.
    type: str
  owner_machine:
    description:
      - Where O(owner_pid) is meaningful, normally the C(machine) term of the lookup P(tradeops.stack.controller#lookup)
        (kernel boot id and pid namespace). The owner process is checked only when this equals the machine the
        module runs on; without it the lock is stale by its TTL only.
    type: str
seealso:
  - module: tradeops.stack.rollout
"""

EXAMPLES = r"""
- name: Take the deploy lock for the whole play
  tradeops.stack.deploy_lock:
    stack: cdb
    holder: "deploy {{ lookup('ansible.builtin.env', 'USER') }} {{ lookup('tradeops.stack.controller', 'pid') }}"
    reason: release 1.4.2
    wait: 60
    owner_pid: "{{ lookup('tradeops.stack.controller', 'pid') }}"
    owner_host: "{{ lookup('tradeops.stack.controller', 'host') }}"
    owner_machine: "{{ lookup('tradeops.stack.controller', 'machine') }}"

- name: Who holds it?
  tradeops.stack.deploy_lock:
    stack: cdb
    state: status
  register: lock

- name: Release it
  tradeops.stack.deploy_lock:
    stack: cdb
    state: released
    holder: "deploy {{ lookup('ansible.builtin.env', 'USER') }} {{ lookup('tradeops.stack.controller', 'pid') }}"
"""

RETURN = r"""
lock:
  description: The lock after the task (C(held=false) when free), with C(stale) and C(stale_reason).
  returned: always
  type: dict
  sample: {held: true, holder: deploy alice 4242, reason: release 1.4.2, acquired_at: 1763859000.1,
           expires_at: 1763860800.1, ttl: 1800, owner_pid: 4242, owner_host: ctl1,
           owner_machine: "0b4c2a9e-8f1d-4c51-9a77-2d3f6b1e90e1/pid:[4026531836]", stale: false, stale_reason: null}
taken_over:
  description: The stale lock that was taken over, with the reason it was stale.
  returned: when a stale lock was taken over
  type: dict
  sample: {holder: deploy bob 977, stale_reason: owner process 977 on ctl1 is gone}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils._redact import guard
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    STATE_ARG_SPEC,
    DeployLock,
    StackState,
    StateError,
    check_lock_ttl,
    error_message,
)


class LockManager:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.lock = DeployLock(StackState(self.p["stack"], self.p["state_root"], self.p["operator"]))

    def status(self):
        return dict(changed=False, lock=self.lock.status())

    def acquired(self):
        p = self.p
        check_lock_ttl(p["ttl"])
        current = self.lock.status()
        mine = current.get("held") and current.get("holder") == p["holder"]
        if self.module.check_mode:
            if current.get("held") and not mine and not (current["stale"] and p["take_over_stale"]):
                self.module.fail_json(
                    msg="check mode: the deploy lock is held by %r (reason: %s)%s"
                    % (current.get("holder"), current.get("reason"), ", STALE" if current["stale"] else ""),
                    lock=current,
                )
            return dict(changed=not mine, lock=current)
        _lock, changed, taken_over = self.lock.acquire(
            p["holder"],
            p["reason"],
            p["ttl"],
            wait=p["wait"],
            take_over_stale=p["take_over_stale"],
            owner_pid=p["owner_pid"],
            owner_host=p["owner_host"],
            owner_machine=p["owner_machine"],
        )
        result = dict(changed=bool(changed), lock=self.lock.status())
        if taken_over:
            result["taken_over"] = taken_over
            self.module.warn(
                "took over a stale deploy lock of %r: %s" % (taken_over.get("holder"), taken_over.get("stale_reason"))
            )
        return result

    def released(self):
        current = self.lock.status()
        if not current.get("held"):
            return dict(changed=False, lock=current)
        if current.get("holder") != self.p["holder"] and not self.p["force"]:
            self.module.fail_json(
                msg="deploy lock is held by %r (reason: %s), not by %r; pass force: true to release it anyway"
                % (current.get("holder"), current.get("reason"), self.p["holder"]),
                lock=current,
            )
        if self.module.check_mode:
            return dict(changed=True, lock=current)
        self.lock.release(self.p["holder"], force=self.p["force"])
        return dict(changed=True, lock=self.lock.status())


def main():
    argument_spec = dict(
        state=dict(type="str", default="acquired", choices=["acquired", "released", "status"]),
        holder=dict(type="str"),
        reason=dict(type="str", default="deploy"),
        ttl=dict(type="int", default=1800),
        wait=dict(type="int", default=0),
        take_over_stale=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        owner_pid=dict(type="int"),
        owner_host=dict(type="str"),
        owner_machine=dict(type="str"),
    )
    argument_spec.update(STATE_ARG_SPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "acquired", ["holder"]), ("state", "released", ["holder"])],
    )
    guard(module)  # no URL user info nor credential in a message or result
    manager = None
    try:
        manager = LockManager(module)
        result = getattr(manager, module.params["state"])()
    except StateError as exc:
        lock = {}
        try:
            lock = manager.lock.status() if manager else {}
        except Exception:  # the state itself is unusable: the message already says why
            lock = {}
        module.fail_json(msg=str(exc), lock=lock)
    except OSError as exc:
        module.fail_json(msg=error_message(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
