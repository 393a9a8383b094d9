"""The rollout action: a service's definition becomes the module's container options, through the table."""

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.tradeops.stack.plugins.action.rollout import module_args
from ansible_collections.tradeops.stack.plugins.module_utils import _spec


def test_every_table_field_of_the_definition_becomes_an_option_and_nothing_else_does():
    definition = {name: "value of %s" % name for name in _spec.BY_NAME}
    definition.update(name="db_writer", depends_on=["postgres"], metrics={"port": 8000}, internal=True)
    args = module_args({"service": "db_writer", "definition": definition})
    assert set(args) == set(_spec.BY_NAME) | {"service"}
    assert all(args[name] == "value of %s" % name for name in _spec.BY_NAME)


def test_the_task_s_own_options_win_over_the_definition():
    args = module_args({"pull": "never", "definition": {"image": "bot:1", "pull": "always", "env": {"A": "1"}}})
    assert args == {"pull": "never", "image": "bot:1", "env": {"A": "1"}}


def test_without_a_definition_the_options_pass_unchanged():
    assert module_args({"service": "x", "image": "bot:1"}) == {"service": "x", "image": "bot:1"}


def test_a_definition_that_is_not_a_mapping_is_refused_by_name():
    with pytest.raises(AnsibleActionFail, match="definition must be a service of the stack description"):
        module_args({"definition": ["image", "bot:1"]})
