"""Fixtures of the module_utils unit tests (tests/unit/plugins/module_utils/test__<name>.py)."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _state


@pytest.fixture
def stack_state(tmp_path):
    """A ``StackState`` for stack ``cdb`` under a temporary state root (nothing created yet)."""
    return _state.StackState("cdb", root=str(tmp_path / "state"))


@pytest.fixture
def broker_textfile(tmp_path):
    """A textfile as capital_com_health writes it: login passed, one market failed, plus a stray line."""
    path = tmp_path / "capital_com.prom"
    path.write_text(
        "# HELP capital_com_up x\n# TYPE capital_com_up gauge\ncapital_com_up 0\n"
        'capital_com_check_ok{check="login"} 1\ncapital_com_check_ok{check="market:OIL_CRUDE"} 0\n'
        "capital_com_last_check_timestamp_seconds 1795398165.5\ngarbage line\n"
    )
    return path
