# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Paired with STATE_ARG_SPEC in plugins/module_utils/_state.py.
    DOCUMENTATION = r"""
options:
  stack:
    description:
      - Name of the stack; prefix of container names and the name of its state directory
        C(<state_root>/<stack>/) on the managed host.
      - 1 to 40 characters, lower-case letters, digits, C(-) or C(_), starting with a letter.
    type: str
    required: true
  state_root:
    description:
      - Directory on the managed host under which each stack keeps its release history,
        manifests, paper blocks, deploy lock, audit log and Prometheus textfiles.
    type: path
    default: /var/lib/tradeops
  operator:
    description:
      - The person this run acts for, recorded as C(user) in every audit line the module writes (with the managed
        host as C(host)), and as the operator of a block that M(tradeops.stack.paper_block) starts.
      - The roles pass C(stack_operator), which is the AWX launching user (C(awx_user_name), C(tower_user_name) on
        older controllers) or the controller's login (E(TRADEOPS_OPERATOR) overrides it).
      - Without it, the managed host decides (E(SUDO_USER), else the login name), which is the SSH user, not the person.
    type: str
"""
