#!/usr/bin/env python3
"""Render the stack descriptions as Kubernetes manifests and validate every object (run by ``make lint``).

- The reference inventories (local, paper, multihost) and tests/fixtures/kubernetes/analysis.yml (a blue_green
  service with a metric analysis) go through ``tradeops.stack.kubernetes_manifests`` (ansible-playbook).
- Built-in kinds: ``kubernetes-validate -k 1.28 --strict`` (the schemas ship with it; EKS 1.28).
- ``Rollout`` and ``AnalysisTemplate``: their CRDs' ``openAPIV3Schema`` (tests/fixtures/argo-rollouts/, Argo
  Rollouts' own CRDs) with jsonschema, strict like ``--strict``: no property the schema does not name, except
  where the CRD preserves unknown fields.

Exit status 0 when every object passes; each failure is printed with its file and object.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CRD_DIR = ROOT / "tests" / "fixtures" / "argo-rollouts"
CRDS = {"Rollout": "rollout-crd.yaml", "AnalysisTemplate": "analysis-template-crd.yaml"}
KUBERNETES_VERSION = "1.28"
CASES = {  # name: (inventory, extra vars file or None)
    "local": ("inventories/local", None),
    "paper": ("inventories/paper", None),
    "multihost": ("inventories/multihost", None),
    "analysis": ("inventories/local", "tests/fixtures/kubernetes/analysis.yml"),
}


def strict(schema: dict) -> dict:
    """The schema with ``additionalProperties: false`` wherever it names properties and keeps no unknown ones."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        preserves = out.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in out and "additionalProperties" not in out and not preserves:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validators() -> dict:
    out = {}
    for kind, name in CRDS.items():
        crd = yaml.safe_load((CRD_DIR / name).read_text())
        version = next(v for v in crd["spec"]["versions"] if v.get("served"))
        schema = strict(version["schema"]["openAPIV3Schema"])
        out[kind] = jsonschema.Draft7Validator(schema)
    return out


def crd_problems(objects: list[dict], validators: dict) -> list[str]:
    problems = []
    for obj in objects:
        validator = validators.get(obj.get("kind"))
        if validator is None:
            continue
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append("%s %s: %s: %s" % (obj["kind"], obj["metadata"]["name"], where, error.message[:300]))
    return problems


def render(case: str, dest: Path) -> None:
    inventory, extra = CASES[case]
    cmd = [str(BIN / "ansible-playbook"), "playbooks/kubernetes_manifests.yml", "-i", inventory]
    cmd += ["-e", "tradeops_manifests_dir=%s" % dest]
    if extra:
        cmd += ["-e", "@" + extra]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("%s: rendering failed:\n%s%s" % (case, proc.stdout[-3000:], proc.stderr[-2000:]))


def validate(directory: Path, validators: dict) -> tuple[int, list[str]]:
    files = sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    problems, count = [], 0
    builtin = []
    for path in files:
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        count += len(objects)
        problems += ["%s: %s" % (path.name, p) for p in crd_problems(objects, validators)]
        if any(o["kind"] not in CRDS for o in objects):
            builtin.append(str(path))
    proc = subprocess.run(
        [str(BIN / "kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "--quiet", *builtin],
        capture_output=True,
        text=True,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(("ERROR", "FAIL")) or "failed" in line.lower():
            problems.append(line)
    if proc.returncode != 0 and not problems:
        problems.append("kubernetes-validate exited %d: %s" % (proc.returncode, proc.stderr[-500:]))
    return count, problems


def main() -> int:
    validators = crd_validators()
    failed = False
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="tradeops-k8s-") as tmp:
            render(case, Path(tmp))
            count, problems = validate(Path(tmp), validators)
        print("[k8s] %s: %d objects, %s" % (case, count, "%d problems" % len(problems) if problems else "all valid"))
        for problem in problems:
            print("  " + problem)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
