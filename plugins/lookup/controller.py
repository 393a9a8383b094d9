# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: controller
short_description: The controller's ansible-playbook process id and host name, for deploy locks
version_added: 0.1.0
description:
  - Returns facts about the controller run that a deploy lock records so that a killed run's lock is detected as
    stale; V(pid) is the process id of the C(ansible-playbook) (or C(ansible)) process running this play, V(host)
    the controller's host name, V(user) the user running it.
  - When the managed host is the controller itself (local connection), M(tradeops.stack.deploy_lock) and
    M(tradeops.stack.rollout) report the lock stale as soon as that process is gone (C(kill -9), Ctrl-C).
    On a remote host the TTL is what makes the lock stale.
options:
  _terms:
    description: What to return, V(pid), V(host) or V(user).
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
            elif term == "user":
                out.append(os.environ.get("AWX_USER") or os.environ.get("TRADEOPS_OPERATOR") or getpass.getuser())
            else:
                raise AnsibleError("tradeops.stack.controller: unknown term %r, expected pid, host or user" % term)
        return out
