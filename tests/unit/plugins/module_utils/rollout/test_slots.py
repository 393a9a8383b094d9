"""Container names of a service, in one place."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import Slots


def test_names():
    slots = Slots("cdb", "paper_execution")
    assert slots.main == "cdb-paper-execution"
    assert (slots.prev, slots.next, slots.proxy) == (
        "cdb-paper-execution-prev",
        "cdb-paper-execution-next",
        "cdb-paper-execution-proxy",
    )
    assert slots.colour("blue") == "cdb-paper-execution-blue"
    assert slots.other("blue") == "green" and slots.other("green") == "blue" and slots.other(None) == "blue"
    assert len(set(slots.all())) == 6
    with pytest.raises(ValueError, match="unknown colour"):
        slots.colour("red")
