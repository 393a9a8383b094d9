"""AWX artefacts: the execution-environment build context and the configuration-as-code play.

Building the EE image needs a registry (not reachable here); `ansible-builder
create` producing a complete context is the part CI can prove.
"""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
AWX = ROOT / "examples" / "awx"


def test_ansible_builder_creates_a_context_with_the_collection_and_pinned_core(tmp_path):
    work = tmp_path / "ee"
    shutil.copytree(AWX, work, ignore=shutil.ignore_patterns("project"))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", str(ROOT), "--output-path", str(tmp_path)],
        check=True,
        capture_output=True,
        env=env,
    )
    (tarball,) = tmp_path.glob("tradeops-stack-*.tar.gz")
    shutil.copy(tarball, work / "tradeops-stack.tar.gz")
    res = subprocess.run(
        [
            BIN / "ansible-builder",
            "create",
            "-f",
            "execution-environment.yml",
            "-c",
            "context",
            "--output-filename",
            "Containerfile",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ctx = work / "context"
    containerfile = (ctx / "Containerfile").read_text()
    assert "ansible-core>=2.19.4,<2.20" in containerfile
    assert (ctx / "_build" / "collections" / "tradeops-stack.tar.gz").is_file()
    assert "/build/collections/tradeops-stack.tar.gz" in (ctx / "_build" / "requirements.yml").read_text()
    assert "docker>=7.0,<8" in (ctx / "_build" / "requirements.txt").read_text()


def test_awx_configuration_play_and_wrappers_pass_syntax_check():
    plays = [AWX / "configure.yml", *sorted((AWX / "project").glob("*.yml"))]
    for play in plays:
        res = subprocess.run(
            [BIN / "ansible-playbook", "--syntax-check", "-i", "localhost,", str(play)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert res.returncode == 0, f"{play.name}: {res.stdout[-1500:]}{res.stderr[-1500:]}"
