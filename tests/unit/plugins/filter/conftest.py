"""Fixtures of the stack role's decision filters (plugins/filter/deploy.py): a stack and its outcomes."""

from __future__ import annotations

import pytest


@pytest.fixture
def order():
    """A stack in dependency order: a stateful database, a cache, a bot with a migration, a blue/green API."""
    return [
        {"name": "postgres", "image": "tradeops/postgres:15", "strategy": "exclusive", "stateful": True},
        {"name": "redis", "image": "tradeops/redis:7", "strategy": "exclusive"},
        {
            "name": "bot",
            "image": "tradeops/bot:1.0.1",
            "depends_on": ["postgres", "redis"],
            "migration": {"command": ["bot", "migrate"]},
        },
        {"name": "api", "image": "tradeops/api:2", "strategy": "blue_green", "depends_on": ["bot"]},
    ]


@pytest.fixture
def planned(order):
    """The planned outcome per service, every one noop unless given: planned(bot='upgrade')."""

    def make(**operations):
        return {svc["name"]: {"operation": operations.get(svc["name"], "noop")} for svc in order}

    return make


@pytest.fixture
def applied():
    """Apply outcomes: applied(postgres=('r1', 'r0'), bot=('r2', None, 'failed')) -> release, previous, state."""

    def make(**services):
        out = {}
        for name, (release, previous, *state) in services.items():
            out[name] = {
                "operation": "upgrade" if previous else "create",
                "changed": "unchanged" not in state,
                "failed": "failed" in state,
                "release": release,
                "previous_release": previous,
                "spec_hash": "h-" + name,
                "image": "img/" + name,
                "image_id": "sha256:" + name,
                "image_digest": None,
                "strategy": "exclusive",
                "rolled_back": False,
                "reason": "boom" if "failed" in state else "",
                "containers": [name],
            }
        return out

    return make


def container(cid, name, service=None, role=None, state="running", status="Up 5 minutes (healthy)"):
    labels = {"tradeops.stack": "cdb"}
    if service is not None:
        labels["tradeops.service"] = service
    if role is not None:
        labels["tradeops.role"] = role
    return {"Id": cid, "Names": ["/" + name], "State": state, "Status": status, "Labels": labels}


@pytest.fixture
def healthy_stack(order):
    """(containers, healthy): every service and the monitoring running and exactly healthy."""
    containers = [container("c-" + svc["name"], "cdb-" + svc["name"], svc["name"]) for svc in order]
    containers.append(container("c-proxy", "cdb-api-proxy", "api", role="proxy"))
    containers.append(container("c-prom", "cdb-prometheus", None, role="monitoring"))
    return containers, [{"Id": c["Id"]} for c in containers]


@pytest.fixture
def make_container():
    return container
