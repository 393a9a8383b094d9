"""The collection as users get it: `ansible-galaxy collection build`, install, `ansible-doc`.

Runs outside the checkout's ansible.cfg so only the installed tarball is seen.
"""

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("artifact")
    (tmp / "ansible.cfg").write_text("[defaults]\n")  # not the checkout's config
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp), "ANSIBLE_CONFIG": str(tmp / "ansible.cfg")}
    build = subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", str(ROOT), "--output-path", str(tmp)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
    )
    assert build.returncode == 0, build.stderr
    (tarball,) = tmp.glob("tradeops-stack-*.tar.gz")
    inst = tmp / "collections"
    install = subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--force", "--no-deps", "-p", str(inst), str(tarball)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
    )
    assert install.returncode == 0, install.stderr
    env["ANSIBLE_COLLECTIONS_PATH"] = str(inst)
    return tarball, env, tmp


def test_tarball_leaves_out_tests_molecule_examples_and_ci(installed):
    tarball, _, _ = installed
    names = tarfile.open(tarball).getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    # test-only, demo-only and development files stay in the repository
    for excluded in (
        "tests/",
        "molecule/",
        "examples/",
        "inventories/",
        "changelogs/fragments/",
        ".ci/",
        ".venv/",
        ".cache/",
        "Makefile",
        "requirements-dev.txt",
        "roles/monitoring/vars/local_images.yml",
        "playbooks/reports/",
        "reports/",
    ):
        assert not [n for n in names if n.startswith(excluded)], f"{excluded} leaked into the artifact"
    # what a release ships: the licence text, the changelog, the runtime requirements
    for shipped in ("COPYING", "CHANGELOG.rst", "changelogs/changelog.yaml", "requirements.txt", "meta/runtime.yml"):
        assert shipped in names, f"{shipped} missing from the artifact"
    assert "GNU GENERAL PUBLIC LICENSE" in tarfile.open(tarball).extractfile("COPYING").read().decode()
    assert "plugins/module_utils/_state.py" in names


def test_ansible_doc_lists_every_module_of_the_installed_collection(installed):
    _, env, tmp = installed
    res = subprocess.run(
        [BIN / "ansible-doc", "-l", "tradeops.stack", "-j"], capture_output=True, text=True, env=env, cwd=tmp
    )
    assert res.returncode == 0, res.stderr
    assert MODULES, "plugins/modules/ holds no module"
    listed = {name.split(".")[-1] for name in json.loads(res.stdout)}
    assert set(MODULES) <= listed, f"not listed: {set(MODULES) - listed}"


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_each_module(installed, module):
    _, env, tmp = installed
    res = subprocess.run(
        [BIN / "ansible-doc", f"tradeops.stack.{module}"], capture_output=True, text=True, env=env, cwd=tmp
    )
    assert res.returncode == 0 and "ERROR" not in res.stderr, res.stderr
    assert "EXAMPLES" in res.stdout and "RETURN VALUES" in res.stdout


def test_lint_leaves_the_users_ansible_home_untouched(tmp_path):
    """ansible-lint installs the collection it lints into an Ansible home; in the user's ~/.ansible that copy
    would shadow the checkout for every later run. make's lint targets keep it under .cache/."""
    home = tmp_path / "home"
    home.mkdir()
    local = ROOT / ".ansible"  # where ansible-lint puts its copy when no Ansible home is set: shadows too
    had_local = local.exists()
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home)}
    # one playbook is enough: ansible-lint installs the collection into the Ansible home whatever it lints
    # (the lint stage lints everything with the same environment)
    lint = subprocess.run(
        ["make", "-s", "ansible-lint", "LINT_PATHS=playbooks/verify.yml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not [p for p in left if p.startswith(".ansible")], left[:20]
    assert had_local or not local.exists(), "ansible-lint installed a copy of the collection into %s" % local
