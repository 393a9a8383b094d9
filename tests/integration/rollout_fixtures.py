"""The rollout tests' fixtures: ``app_images`` and ``keepalive_images`` (the test images of
rollout_support.py, built once per session) and ``stack`` (a throw-away rollout_support.Stack per test,
removed after it).

Why a plugin and not tests/integration/conftest.py: the test modules import the root harness with
``from conftest import ROOT, run_playbook``. Outside a package every conftest.py is imported under the one
module name ``conftest``, and pytest drops the cached module before it imports the next conftest.py, so a
tests/integration/conftest.py would become ``sys.modules["conftest"]`` and those imports (in the
integration tests, and in tests/faults, collected after tests/integration) would fail with
"cannot import name 'ROOT' from 'conftest'". So tests/conftest.py puts tests/integration on sys.path and
loads this module with ``pytest_plugins = ["rollout_fixtures"]`` (allowed there: it is loaded at start-up
for any run under tests/).

A plugin's fixtures are visible to every test; a fixture of the same name in a test module or in a deeper
conftest.py overrides them: the module-scoped ``stack`` of test_playbooks.py, test_playbooks_no_data_lost.py,
test_paper_block.py, test_reference_stack_smoke.py and test_safety_edges.py, and the session ``stack`` of
tests/faults/conftest.py.
"""

from __future__ import annotations

import pytest
from rollout_support import Stack, build_keepalive_images, build_test_images


@pytest.fixture(scope="session", name="keepalive_images")
def keepalive_images_fixture():
    return build_keepalive_images()


@pytest.fixture(scope="session", name="app_images")
def app_images_fixture():
    return build_test_images()


@pytest.fixture(name="stack")
def stack_fixture(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.cleanup()
