"""pytest fixtures of the Capital.com emulator, loaded by tests/conftest.py as a plugin.

- ``emulator``: a real emulator process (server.py through harness.py) on a free port, one per test module;
- ``emu``: the same emulator, reset to its start-up configuration before and after each test.

A test module that needs another starting state overrides ``emu`` (and asks for ``emulator``).
"""

from __future__ import annotations

import harness
import pytest


@pytest.fixture(scope="module")
def emulator():
    with harness.EmulatorProcess() as emu:
        yield emu


@pytest.fixture
def emu(emulator):
    emulator.reset()
    yield emulator
    emulator.reset()
