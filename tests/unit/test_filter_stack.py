"""Unit tests of the stack description filters (dependency order, schema problems)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.tradeops.stack.plugins.filter.stack import (
    dependency_order,
    stack_container_names,
    stack_problems,
)

ROOT = Path(__file__).resolve().parents[2]
SPECS = yaml.safe_load((ROOT / "roles" / "stack" / "meta" / "argument_specs.yml").read_text())
RES = {"memory": "256m", "cpus": 0.5, "pids": 64}


def svc(name, deps=None, **extra):
    out = {"name": name, "image": "tradeops/bot:1.0.1", "resources": dict(RES)}
    if deps is not None:
        out["depends_on"] = deps
    out.update(extra)
    return out


def names(services):
    return [s["name"] for s in services]


def test_order_puts_dependencies_first_and_keeps_declaration_order():
    services = [
        svc("paper_execution", ["postgres", "redis", "risk_manager"]),
        svc("market_data", ["redis"]),
        svc("risk_manager", ["signal_engine"]),
        svc("signal_engine", ["market_data"]),
        svc("postgres"),
        svc("redis"),
    ]
    order = names(dependency_order(services))
    assert order == ["postgres", "redis", "market_data", "signal_engine", "risk_manager", "paper_execution"]
    for s in services:
        for dep in s.get("depends_on", []):
            assert order.index(dep) < order.index(s["name"])


def test_order_without_dependencies_is_declaration_order():
    assert names(dependency_order([svc("b"), svc("a"), svc("c")])) == ["b", "a", "c"]


def test_reverse_order_is_the_rollback_order():
    services = [svc("app", ["db"]), svc("db")]
    assert names(list(reversed(dependency_order(services)))) == ["app", "db"]


def test_cycle_is_named():
    services = [svc("a", ["c"]), svc("b", ["a"]), svc("c", ["b"]), svc("d")]
    cycles = r"dependency cycle: (a -> c -> b -> a|b -> a -> c -> b|c -> b -> a -> c)"
    with pytest.raises(AnsibleFilterError, match=cycles):
        dependency_order(services)


def test_two_node_cycle():
    with pytest.raises(AnsibleFilterError, match="cycle: a -> b -> a"):
        dependency_order([svc("a", ["b"]), svc("b", ["a"])])


def test_unknown_dependency_names_service_and_dependency():
    with pytest.raises(AnsibleFilterError, match=r"service 'app': depends_on names 'dbx'"):
        dependency_order([svc("app", ["dbx"]), svc("db")])


def test_self_dependency_and_duplicates():
    with pytest.raises(AnsibleFilterError, match="names itself"):
        dependency_order([svc("a", ["a"])])
    with pytest.raises(AnsibleFilterError, match="declared twice"):
        dependency_order([svc("a"), svc("a")])


def test_missing_name_and_bad_depends_on():
    with pytest.raises(AnsibleFilterError, match="#1 has no name"):
        dependency_order([svc("a"), {"image": "x"}])
    with pytest.raises(AnsibleFilterError, match="depends_on must be a list"):
        dependency_order([svc("a", "b"), svc("b")])


def test_enabled_only_drops_disabled_after_ordering():
    services = [svc("app", ["emu"]), svc("emu", enabled=False), svc("db", enabled="false")]
    assert names(dependency_order(services, enabled_only=True)) == ["app"]
    assert names(dependency_order(services)) == ["emu", "app", "db"]


def test_large_graph_is_fast_and_correct():
    services = [svc("s%03d" % i, ["s%03d" % (i - 1)] if i else []) for i in range(300)][::-1]
    order = names(dependency_order(services))
    assert order == ["s%03d" % i for i in range(300)]


def test_valid_description_has_no_problems():
    services = [
        svc("postgres", strategy="exclusive", stateful=True, published_ports=["5432:5432"]),
        svc("api", ["postgres"], strategy="blue_green", proxy={"listen": 8080, "port": 8000}),
        svc("worker", ["postgres"], env={"POSTGRES_PASSWORD_FILE": "/run/secrets/pg"}, flags=["pause_new_orders"]),
    ]
    assert stack_problems(services, SPECS, flags={"pause_new_orders": False}) == []


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ({"name": "risk_manager", "resources": RES}, "service 'risk_manager': missing required arguments: image"),
        (
            svc("risk_manager", resources={"memory": "1g", "cpus": "lots", "pids": 1}),
            "service 'risk_manager': argument 'cpus'",
        ),
        (svc("risk_manager", strategy="rolling"), "service 'risk_manager': value of strategy must be one of"),
        (svc("risk_manager", colour="blue"), "service 'risk_manager': unknown field(s) 'colour'"),
        (svc("api", strategy="blue_green"), "service 'api': strategy blue_green needs field 'proxy'"),
        (svc("w", proxy={"listen": 1, "port": 2}), "service 'w': field 'proxy' is only used with strategy blue_green"),
        (svc("w", published_ports=["8080:80"]), "service 'w': field 'published_ports' fixes a host port"),
        (svc("db", stateful=True), "service 'db': a stateful service must use strategy exclusive"),
        (svc("w", env={"DB_PASSWORD": "x"}), "service 'w': field 'env.DB_PASSWORD' looks like a secret"),
        (svc("Bad-Name"), "service 'Bad-Name': field 'name' must be"),
        (
            svc("w", env={"BROKER_BASE_URL": "https://api-capital.backend-capital.com/api/v1"}),
            "service 'w': field 'env.BROKER_BASE_URL' is the LIVE broker host",
        ),
    ],
)
def test_problem_names_service_and_field(service, expected):
    problems = stack_problems([service], SPECS)
    assert any(p.startswith(expected) for p in problems), problems


def test_problems_cover_graph_ports_mode_and_flags():
    services = [
        svc("a", ["b"], strategy="exclusive", published_ports=["9000:80"]),
        svc("b", ["a"], strategy="exclusive", published_ports=["127.0.0.1:9000:81"]),
    ]
    problems = stack_problems(services, SPECS, trading_mode="live", flags={"x": "yes"})
    text = "\n".join(problems)
    assert "dependency cycle" in text
    assert "host port 9000 is already published by service 'a'" in text
    assert "live but tradeops_live_trading_approved is not true" in text
    assert "tradeops_feature_flags.x must be true or false" in text
    assert stack_problems([svc("a")], SPECS, trading_mode="live", live_approved=True) == []


def test_problems_of_wrong_shapes():
    assert stack_problems([], SPECS) == ["tradeops_stack_services is empty: describe at least one service"]
    assert "must be a list" in stack_problems({"a": 1}, SPECS)[0]
    assert "must be a mapping" in stack_problems(["postgres"], SPECS)[0]
    assert "declared twice" in "\n".join(stack_problems([svc("a"), svc("a")], SPECS))


def test_container_names():
    assert stack_container_names({"name": "paper_execution"}, "cdb") == ["cdb-paper-execution"]
    assert stack_container_names({"name": "api", "strategy": "blue_green"}, "cdb") == [
        "cdb-api-blue",
        "cdb-api-green",
        "cdb-api-proxy",
    ]


def test_local_inventory_description_is_valid():
    raw = (ROOT / "inventories" / "local" / "group_vars" / "tradeops" / "stack.yml").read_text()
    data = yaml.safe_load(raw)
    # templated values are resolved by Ansible; give them plausible stand-ins here
    services = yaml.safe_load(
        raw.replace('"{{ tradeops_proxy_port }}"', "18080")
        .replace('"{{ tradeops_broker_port }}:8080"', '"18081:8080"')
        .replace('"{{ tradeops_broker_emulator }}"', "true")
    )["tradeops_stack_services"]
    assert stack_problems(services, SPECS, flags=data["tradeops_feature_flags"]) == []
    assert names(dependency_order(services))[:3] == ["postgres", "redis", "capital_emulator"]


def test_stack_role_defaults_and_argument_specs_are_in_sync():
    defaults = yaml.safe_load((ROOT / "roles" / "stack" / "defaults" / "main.yml").read_text())
    options = SPECS["argument_specs"]["main"]["options"]
    assert sorted(k for k in defaults if k not in options) == []
    assert sorted(k for k in options if not k.startswith("tradeops_") and k not in defaults) == []
    for entry, spec in SPECS["argument_specs"].items():
        assert spec.get("short_description"), entry
