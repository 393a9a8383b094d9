# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of tradeops.stack.rollout: the ``definition`` option.

``definition`` is a service's entry of the stack description. Each of its fields that is a container
option of the service spec table (plugins/module_utils/_spec.py) and is not given as an option of the
task itself becomes that option; the rest of the entry (depends_on, metrics, migration, ...) is the
stack role's and never reaches the module. So a container option added to the table reaches the
containers from the description without any task file listing it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.tradeops.stack.plugins.module_utils import _spec


def module_args(args):
    """The module's arguments: the task's own, then the table's fields of ``definition`` it does not give."""
    args = dict(args)
    definition = args.pop("definition", None)
    if definition is None:
        return args
    if not isinstance(definition, dict):
        raise AnsibleActionFail(
            "definition must be a service of the stack description (a mapping), got %s" % type(definition).__name__
        )
    for name in _spec.BY_NAME:
        if name in definition and name not in args:
            args[name] = definition[name]
    return args


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(
            result,
            self._execute_module(
                module_name="tradeops.stack.rollout",
                module_args=module_args(self._task.args),
                task_vars=task_vars,
                wrap_async=wrap_async,
            ),
        )
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
