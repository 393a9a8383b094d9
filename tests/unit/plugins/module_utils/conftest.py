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


@pytest.fixture
def report_data():
    """A closed block's report as _block_report.build makes it (aborted, a changed image, a failing login)."""
    return {
        "stack": "cdb",
        "block": {
            "id": "b1",
            "status": "aborted",
            "operator": "alice",
            "reason": "r|x",
            "started_at": 0,
            "ended_at": 3600,
            "duration_seconds": 259200,
            "trading_mode": "paper",
            "close_reason": "outage",
        },
        "duration_seconds": 3600,
        "zai_window_seconds": 86400,
        "totals": {"ticks": 100, "signals": 0, "trades": None},
        "zai_episodes": [],
        "zai_note": "The block was shorter than the ZAI window (86400s): no verdict.",
        "containers": [{"name": "cdb-x", "service": "x", "restarts": 2, "health": "healthy", "state": "running"}],
        "restarts_total": 2,
        "manifest_changed": True,
        "manifest_changes": ["cdb-x image_id: a -> b"],
        "manifest_start": [{"name": "cdb-x", "image": "i", "image_id": "a", "spec_hash": "h", "release": "r"}],
        "broker_health": {
            "textfile": {"up": False, "failing_checks": ["login"], "last_check": 10},
            "down_steps": 3,
            "evaluated_steps": 10,
            "down_seconds": 90,
        },
        "prometheus_error": None,
    }
