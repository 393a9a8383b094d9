"""Fixtures of the rollout package tests; the fake engine itself is in fake_engine.py."""

from __future__ import annotations

import pytest

from .fake_engine import SERVICE, STACK, FakeEngine, Slots


@pytest.fixture
def slots():
    return Slots(STACK, SERVICE)


@pytest.fixture
def engine():
    """An empty fake engine that knows the proxy image."""
    return FakeEngine(images={"p:1": "sha256:p"})
