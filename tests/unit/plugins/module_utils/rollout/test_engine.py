"""The engine's twins: the model records the same actions as the real engine and changes only itself; the
dry engine is seeded from the real one and never writes to it."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import (
    DryEngine,
    ModelEngine,
    health_of,
    release_of,
    spec_hash_of,
    split_ref,
)

from .fake_engine import SERVICE, STACK, container


def test_model_actions_and_state():
    engine = ModelEngine(STACK, SERVICE, [container("t-app", "r1")], images={"a:1": "sha256:a"})
    old = engine.containers()["t-app"]
    engine.stop(old, 10)
    engine.rename(old, "t-app-prev")
    new = engine.create({"labels": {"x": "1"}}, "hash-r2", "t-app", "main", "r2")
    assert engine.actions == [
        "stop t-app (kept for rollback)",
        "rename t-app -> t-app-prev",
        "create t-app",
        "start t-app",
    ]
    assert engine.changed and sorted(engine.containers()) == ["t-app", "t-app-prev"]
    assert new.status == "running" and old.status == "exited"
    assert spec_hash_of(new) == "hash-r2" and release_of(new) == "r2" and new.labels["x"] == "1"
    assert health_of(new) is None and spec_hash_of(None) is None
    assert engine.remove_if("t-app-prev") and not engine.remove_if("t-app-prev")
    assert engine.resolve_image("a:1", "never")[0] == "sha256:a"
    assert engine.resolve_image("sha256:a", "never")[0] == "sha256:a"  # a stored release names the id


def test_waits_are_actions_without_change():
    engine = ModelEngine(STACK, SERVICE)
    engine.record("health gate t-app (timeout 5s)", change=False)
    assert not engine.changed and engine.actions


def test_pull_policy_on_the_model():
    engine = ModelEngine(STACK, SERVICE, images={"a:1": "sha256:a"})
    assert engine.resolve_image("b:1", "missing") == ("unknown-until-pulled", None)
    assert engine.actions == ["pull b:1"] and not engine.changed
    with pytest.raises(RolloutFailed, match="pull=never"):
        engine.resolve_image("b:1", "never")


class RealStandIn:
    """What DryEngine reads of the real engine; any write would fail the test."""

    stack, service = STACK, SERVICE

    def __init__(self):
        self.served = [container("t-app", "r1")]

    def containers(self):
        return {c.name: c for c in self.served}

    def proxies(self):
        return []

    def image(self, ref):
        return None

    def image_digest(self, image_id):
        return None

    def _network_missing(self, name):
        return name != "t"

    def read_text(self, path):
        return "real"

    def summaries(self):
        return [{"name": "t-app"}]


def test_dry_engine_is_seeded_from_the_real_one_and_never_writes_to_it():
    real = RealStandIn()
    dry = DryEngine(real)
    dry.remove(dry.containers()["t-app"])
    dry.write_text("/x", "dry")
    dry.ensure_network("t")
    dry.ensure_network("other")
    assert dry.actions == ["remove t-app", "create network other"]
    assert dry.containers() == {} and real.containers()["t-app"].status == "running"
    assert dry.read_text("/x") == "dry" and dry.read_text("/y") == "real"
    assert dry.summaries() == [{"name": "t-app"}]


def test_split_ref():
    assert split_ref("repo/app") == ("repo/app", "latest")
    assert split_ref("registry:5000/app:1.2") == ("registry:5000/app", "1.2")
    assert split_ref("app@sha256:abc") == ("app", "sha256:abc")
