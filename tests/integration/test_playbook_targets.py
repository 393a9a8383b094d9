"""Every playbook fails, naming the target and the inventory, when the target matches no host.

An AWX job or a bastion run pointed at the wrong inventory used to print "skipping: no hosts
matched" and exit 0. Real ansible-playbook runs; nothing reaches a Docker host.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
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


# --------------------------------------------------------------------------- run inputs
INPUTS = yaml.safe_load((ROOT / "roles" / "inputs" / "meta" / "argument_specs.yml").read_text())["argument_specs"]
RENAMED = yaml.safe_load((ROOT / "roles" / "inputs" / "vars" / "main.yml").read_text())["inputs_renamed"]


def test_every_playbook_has_an_entry_point_of_inputs_and_names_it():
    for playbook in ROOT.glob("playbooks/*.yml"):
        assert playbook.stem in INPUTS, f"no entry point {playbook.stem} in roles/inputs"
        if playbook.stem != "target":
            assert f"_tradeops_playbook: {playbook.stem}\n" in playbook.read_text(), playbook.name


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_a_first_version_input_is_refused_with_its_new_name(playbook):
    """manifest, flag, since...: an unprefixed extra var overrides any variable of that name, so
    the old names are refused before anything runs, with the name that replaced them."""
    old = "since" if playbook != "diagnose.yml" else "manifest"
    run = run_playbook(ROOT / "playbooks" / playbook, extra_vars={old: "x"}, timeout=120)
    assert run.rc != 0, run.output[-2000:]
    assert f"the input '{old}' is now '{RENAMED[old]}'" in run.output, run.output[-2000:]
    assert "Nothing was changed" in run.output and "PLAY [Check the inputs" in run.output
    assert run.output.count("PLAY [") == 1, "a play after the check ran"


def test_every_renamed_input_is_named_at_once():
    run = run_playbook(ROOT / "playbooks" / "verify.yml", extra_vars=dict.fromkeys(RENAMED, "x"), timeout=120)
    assert run.rc != 0
    for old, new in RENAMED.items():
        assert f"the input '{old}' is now '{new}'" in run.output, (old, run.output[-3000:])
        assert any(new in entry["options"] for entry in INPUTS.values()), f"{new} is declared nowhere"


@pytest.mark.parametrize(
    ("playbook", "extra", "message"),
    [
        ("paper_block.yml", {"tradeops_block_action": "begin"}, "tradeops_block_action must be one of: start, status"),
        ("flags.yml", {"tradeops_flag": "pause_new_orders", "tradeops_flag_value": "maybe"}, "tradeops_flag_value"),
        ("deploy.yml", {"tradeops_lock_wait": "soon"}, "tradeops_lock_wait"),
        ("site.yml", {"tradeops_host_roles": ["docker_host", "kernel"]}, "tradeops_host_roles"),
        ("rollback.yml", {"tradeops_allow_during_block": "perhaps"}, "tradeops_allow_during_block"),
    ],
)
def test_a_wrong_input_fails_naming_it_before_anything_runs(playbook, extra, message):
    run = run_playbook(ROOT / "playbooks" / playbook, extra_vars=extra, timeout=120)
    assert run.rc != 0 and message in run.output, run.output[-2000:]
    assert "Validating arguments against arg spec" in run.output and run.output.count("PLAY [") == 1
