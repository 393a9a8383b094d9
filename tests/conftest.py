"""Shared pytest harness: import the collection's Python code and drive Ansible for real.

Every test area uses these helpers instead of its own subprocess wrapper:

- ``run_playbook(playbook, extra_vars=..., check=..., diff=..., verbosity=...)``
  runs ansible-playbook on the local inventory and returns a ``PlaybookRun``
  (rc, stdout, stderr, and the JSON callback's task results when ``json=True``);
- ``run_module(name, args)`` runs one module through ``ansible localhost -m``
  and returns its result dict (the module really executes, with its real
  argument spec, check mode and no_log handling).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"
VENV_BIN = ROOT / ".venv" / "bin"

# `from ansible_collections.tradeops.stack.plugins.module_utils import _state` works in tests
sys.path.insert(0, str(COLLECTIONS))

# the integration helpers (playbook_support, rollout_support) and the rollout fixtures, as a plugin: a
# tests/integration/conftest.py would replace this module as `conftest` (see rollout_fixtures.py)
sys.path.insert(0, str(ROOT / "tests" / "integration"))
# the Capital.com emulator's harness and its fixtures (emulator, emu), for unit and integration tests alike
sys.path.insert(0, str(ROOT / "tests" / "emulators" / "capital_com"))
pytest.register_assert_rewrite("playbook_support", "rollout_support")
pytest_plugins = ["rollout_fixtures", "emulator_fixtures"]


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: list[dict] = field(default_factory=list)  # with json=True: one dict per task and host

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def task(self, name: str) -> dict:
        """The result of the (last) task whose name is ``name``."""
        for res in reversed(self.results):
            if res["task"] == name:
                return res["result"]
        raise KeyError(f"no task named {name!r}; tasks: {[r['task'] for r in self.results]}")


def _json_results(stdout: str) -> list[dict]:
    data = json.loads(stdout[stdout.index("{") :])
    out = []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                out.append({"task": task["task"]["name"], "host": host, "result": result})
    return out


def run_playbook(
    playbook: str | Path,
    extra_vars: dict | None = None,
    inventory: str | Path | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    json_output: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    cmd = [str(VENV_BIN / "ansible-playbook"), str(playbook)]
    cmd += ["-i", str(inventory or ROOT / "inventories" / "local")]
    if extra_vars:
        # extra vars go through a file: a value on the command line would show in `ps`
        fd, path = tempfile.mkstemp(prefix="tradeops-vars-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(extra_vars, handle)
        cmd += ["-e", f"@{path}"]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    extra_env = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"} if json_output else {}
    extra_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(**extra_env), timeout=timeout, cwd=ROOT)
    if extra_vars:
        os.unlink(path)
    run = PlaybookRun(proc.returncode, proc.stdout, proc.stderr)
    if json_output and proc.stdout.strip():
        run.results = _json_results(proc.stdout)
    return run


def run_module(name: str, args: dict, check: bool = False, env: dict[str, str] | None = None) -> dict:
    """Run one module on localhost through a one-task playbook and return its result dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "connection": "local",
                    "tasks": [
                        {
                            "name": "module under test",
                            name: args,
                            "ignore_errors": True,
                            "vars": {"ansible_python_interpreter": sys.executable},
                        }
                    ],
                }
            ],
            handle,
        )
    try:
        run = run_playbook(handle.name, inventory="localhost,", check=check, json_output=True, env=env)
    finally:
        os.unlink(handle.name)
    if not run.results:
        raise AssertionError(f"ansible-playbook produced no result (rc={run.rc}):\n{run.output[-3000:]}")
    return run.task("module under test")


@pytest.fixture
def playbook():
    return run_playbook


@pytest.fixture
def module():
    return run_module
