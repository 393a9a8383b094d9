"""The example delivery pipeline (examples/ci/) passes actionlint and zizmor, and the same check fails a
workflow that makes the classic mistakes (tests/tools/lint_workflows.sh, run by make lint)."""

from __future__ import annotations

import subprocess

from conftest import ROOT

LINT = ROOT / "tests" / "tools" / "lint_workflows.sh"
EXAMPLE = ROOT / "examples" / "ci" / "bot-release.yml"


def lint(*paths):
    return subprocess.run([str(LINT), *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_example_workflow_passes():
    run = lint(EXAMPLE)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_workflow_with_an_injection_and_an_unpinned_action_fails(tmp_path):
    text = EXAMPLE.read_text()
    text = text.replace(
        "uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2", "uses: actions/checkout@v4"
    )
    text = text.replace(
        "run: docker build --build-arg",
        'run: echo "${{ github.event.head_commit.message }}" && docker build --build-arg',
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    run = lint(bad)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "potentially untrusted" in out, "actionlint names the script injection"
    zizmor = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "zizmor"), "--offline", "--persona", "pedantic", "--no-progress", str(bad)],
        capture_output=True,
        text=True,
    )
    assert zizmor.returncode != 0 and "unpinned-uses" in zizmor.stdout + zizmor.stderr, zizmor.stdout
