"""Every playbook fails, naming the target and the inventory, when the target matches no host.

An AWX job or a bastion run pointed at the wrong inventory used to print "skipping: no hosts
matched" and exit 0. Real ansible-playbook runs; nothing reaches a Docker host.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml") if p.name != "target.yml")


@pytest.fixture(scope="module")
def inventories(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inventories")
    wrong = base / "wrong.yml"
    wrong.write_text("all:\n  children:\n    other:\n      hosts:\n        elsewhere: {ansible_connection: local}\n")
    empty = base / "empty.yml"
    empty.write_text("all: {}\n")
    return {"wrong": wrong, "empty": empty}


@pytest.mark.parametrize("kind", ["wrong", "empty"])
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_a_target_matching_no_host_fails(inventories, playbook, kind):
    run = run_playbook(ROOT / "playbooks" / playbook, inventory=inventories[kind], timeout=120)
    assert run.rc != 0, run.output[-2000:]
    assert "matches the target 'tradeops'" in run.output, run.output[-2000:]
    assert str(inventories[kind]) in run.output and "nothing was changed" in run.output


def test_a_named_target_is_checked_too(inventories):
    run = run_playbook(
        ROOT / "playbooks" / "verify.yml", inventory=inventories["wrong"], extra_vars={"tradeops_target": "paper"}
    )
    assert run.rc != 0 and "matches the target 'paper'" in run.output, run.output[-2000:]


def test_the_local_inventory_matches_its_host():
    run = run_playbook(ROOT / "playbooks" / "target.yml", timeout=120)
    assert run.rc == 0 and re.search(r"target '+tradeops'+: localhost", run.output), run.output[-2000:]
