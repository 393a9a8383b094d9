"""tradeops.stack.kubernetes_manifests through ansible-playbook, and the validation make lint runs on its output."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from conftest import ROOT, run_playbook

sys.path.insert(0, str(ROOT / "tests" / "tools"))

import validate_k8s
from ansible_collections.tradeops.stack.plugins.module_utils._kubernetes import HEADER

PLAYBOOK = ROOT / "playbooks" / "kubernetes_manifests.yml"


def render(dest, **extra):
    return run_playbook(
        PLAYBOOK, {"tradeops_manifests_dir": str(dest), **extra}, inventory=ROOT / "inventories" / "paper"
    )


def test_writes_once_then_changes_nothing_and_removes_only_its_own_stale_files(tmp_path):
    dest = tmp_path / "cdb"
    run = render(dest)
    assert run.rc == 0, run.output[-3000:]
    names = sorted(p.name for p in dest.iterdir())
    assert names == [
        "_policies.yaml",
        "db-writer.yaml",
        "kustomization.yaml",
        "market-data.yaml",
        "paper-execution.yaml",
        "postgres.yaml",
        "redis.yaml",
        "risk-manager.yaml",
        "signal-engine.yaml",
    ]
    again = render(dest)
    assert again.rc == 0 and "changed=0" in again.output, again.output[-2000:]
    (dest / "old-service.yaml").write_text(HEADER + "---\nkind: Deployment\n")  # a service since removed
    (dest / "README.md").write_text("ours, not the module's\n")
    (dest / "hand-made.yaml").write_text("---\nkind: ConfigMap\n")
    run = run_playbook(
        PLAYBOOK, {"tradeops_manifests_dir": str(dest)}, inventory=ROOT / "inventories" / "paper", diff=True
    )
    assert run.rc == 0, run.output[-2000:]
    assert "-kind: Deployment" in run.output, "the diff shows what the removed file held"
    left = {p.name for p in dest.iterdir()}
    assert "old-service.yaml" not in left and {"README.md", "hand-made.yaml"} <= left


def test_check_mode_writes_nothing_and_bad_input_fails_before_any_file(tmp_path):
    dest = tmp_path / "cdb"
    run = run_playbook(
        PLAYBOOK, {"tradeops_manifests_dir": str(dest)}, inventory=ROOT / "inventories" / "paper", check=True
    )
    assert run.rc == 0 and not dest.exists(), run.output[-2000:]
    run = render(dest, tradeops_bot_image="registry.example/cdb-core:latest")
    assert run.rc != 0 and "image 'registry.example/cdb-core:latest' is not pinned" in run.output
    assert not dest.exists()
    run = run_playbook(PLAYBOOK, {}, inventory=ROOT / "inventories" / "paper")
    assert run.rc != 0 and "tradeops_manifests_dir is not set" in run.output, run.output[-2000:]


def test_the_crd_check_catches_what_the_schema_does_not_allow(tmp_path):
    dest = tmp_path / "a"
    run = render(dest, **yaml.safe_load((ROOT / "tests/fixtures/kubernetes/analysis.yml").read_text()))
    assert run.rc == 0, run.output[-3000:]
    validators = validate_k8s.crd_validators()
    objects = [o for o in yaml.safe_load_all((dest / "paper-execution.yaml").read_text()) if o]
    assert validate_k8s.crd_problems(objects, validators) == []
    rollout = next(o for o in objects if o["kind"] == "Rollout")
    rollout["spec"]["strategy"]["blueGreen"]["autoPromotionSeconds"] = "soon"  # a string where an int goes
    rollout["spec"]["strategy"]["blueGreen"]["previewServise"] = "typo"  # a field Argo does not know
    problems = validate_k8s.crd_problems([rollout], validators)
    assert any("autoPromotionSeconds" in p for p in problems), problems
    assert any("previewServise" in p for p in problems), problems
    count, problems = validate_k8s.validate(Path(dest), validators)
    assert count == 13 and problems == []
