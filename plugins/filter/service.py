# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters derived from the service spec table (plugins/module_utils/_spec.py).

- ``hardened``: community.docker.docker_container options of the collection's hardening profile, with the
  caller's own options over them (one-shot jobs, monitoring containers; services get it through rollout).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.tradeops.stack.plugins.module_utils import _rules, _spec


def hardened(options=None):
    """The hardening profile as docker_container options, ``options`` over it (no-new-privileges is kept)."""
    if options is not None and not isinstance(options, dict):
        raise AnsibleFilterError("hardened expects a dict of docker_container options, got %r" % (options,))
    profile = _spec.HARDENING
    out = {
        "read_only": profile["read_only"],
        "tmpfs": list(profile["tmpfs"]),
        "cap_drop": list(profile["cap_drop"]),
        "security_opts": list(profile["security_opt"]),
        "log_driver": profile["log"]["driver"],
        "log_options": dict(profile["log"]["options"]),
    }
    out.update(options or {})
    out["security_opts"] = _rules.merged_security_opt(out["security_opts"])
    return out


class FilterModule(object):
    def filters(self):
        return {"hardened": hardened}
