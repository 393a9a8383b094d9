# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: controller
short_description: The controller's ansible-playbook process id, host name and machine identity, for deploy locks
version_added: 0.1.0
description:
  - Returns facts about the controller run that a deploy lock records so that a killed run's lock is detected as
    stale; V(pid) is the process id of the C(ansible-playbook) (or C(ansible)) process running this play, V(host)
    the controller's host name, V(user) the controller's login (E(TRADEOPS_OPERATOR) overrides it), V(machine)
    where that pid is meaningful, C(<kernel boot id>/<pid namespace>) (for example
    C(0b4c...e1/pid:[4026531836])), or V(null) when unknown.
  - M(tradeops.stack.deploy_lock) declares a lock stale because its process is gone only when the lock's
    machine equals the machine the module runs on (the managed host is the controller itself, same boot and
    pid namespace); then a killed run (C(kill -9), Ctrl-C) leaves a stale lock at once. Anywhere else, and for
    a lock without a recorded machine, only the TTL makes the lock stale; a shared host name never does.
options:
  _terms:
    description: What to return, V(pid), V(host), V(user) or V(machine).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Deploy under a lock that a killed run leaves stale, not stuck
  tradeops.stack.deploy_lock:
    stack: cdb
    holder: "deploy {{ lookup('tradeops.stack.controller', 'user') }} {{ lookup('tradeops.stack.controller', 'pid') }}"
    owner_pid: "{{ lookup('tradeops.stack.controller', 'pid') }}"
    owner_host: "{{ lookup('tradeops.stack.controller', 'host') }}"
    owner_machine: "{{ lookup('tradeops.stack.controller', 'machine') }}"
"""

RETURN = r"""
_raw:
  description: One value per term.
  type: list
  elements: raw
"""

import getpass
import os
import socket

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible_collections.tradeops.stack.plugins.module_utils._state import machine_identity


def _parent(pid):
    with open("/proc/%d/stat" % pid) as handle:
        data = handle.read()
    return int(data[data.rindex(")") + 2 :].split()[1])


def _cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        return handle.read().split(b"\0")


def _is_ansible(pid):
    args = _cmdline(pid)
    return any(os.path.basename(a.decode("utf-8", "replace")) in ("ansible-playbook", "ansible") for a in args[:2])


def controller_pid():
    """The topmost ansible-playbook process above this one (workers are forks with the same command line)."""
    pid, found = os.getpid(), None
    try:
        for _attempt in range(20):
            if _is_ansible(pid):
                found = pid
            elif found is not None:
                break
            pid = _parent(pid)
            if pid <= 1:
                break
    except (OSError, ValueError, IndexError):
        pass
    return found or os.getppid()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        out = []
        for term in terms:
            if term == "pid":
                out.append(controller_pid())
            elif term == "host":
                out.append(socket.gethostname())
            elif term == "machine":
                out.append(machine_identity())
            elif term == "user":
                out.append(os.environ.get("TRADEOPS_OPERATOR") or getpass.getuser())
            else:
                raise AnsibleError(
                    "tradeops.stack.controller: unknown term %r, expected pid, host, user or machine" % term
                )
        return out
