"""The network layout: who can reach whom follows depends_on and internal."""

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _networks

SERVICES = [
    {"name": "postgres", "internal": True},
    {"name": "redis", "internal": True},
    {"name": "capital_emulator", "published_ports": ["18081:8080"]},
    {"name": "market_data", "depends_on": ["redis", "capital_emulator"], "metrics": {"port": 8000}},
    {"name": "paper_execution", "depends_on": ["postgres", "redis"], "metrics": {"port": 8000}},
    {
        "name": "db_writer",
        "depends_on": ["postgres", "redis"],
        "metrics": {"port": 8080, "host": "cdb-db-writer-proxy"},
        "proxy": {"listen": 18080, "port": 8000},
    },
    {"name": "old_cache", "internal": True, "enabled": False},
    {"name": "uses_old", "depends_on": ["old_cache"]},
]


def by_name(name):
    return next(s for s in SERVICES if s["name"] == name)


def names(service):
    return [n["name"] for n in _networks.service_networks(by_name(service), SERVICES, "cdb")]


def test_an_internal_service_is_only_on_its_own_internal_network():
    assert _networks.service_networks(by_name("postgres"), SERVICES, "cdb") == [
        {"name": "cdb-postgres", "aliases": ["postgres"], "internal": True}
    ]


def test_a_client_joins_the_internal_networks_of_what_it_uses_without_aliases():
    nets = _networks.service_networks(by_name("market_data"), SERVICES, "cdb")
    assert nets[0] == {"name": "cdb", "aliases": ["market-data", "market_data"], "internal": False}
    assert [n["name"] for n in nets] == ["cdb", "cdb-metrics", "cdb-redis"]
    assert nets[2] == {"name": "cdb-redis", "aliases": [], "internal": True}


def test_a_bot_that_does_not_use_postgres_cannot_reach_it():
    assert "cdb-postgres" not in names("market_data")
    assert names("paper_execution") == ["cdb", "cdb-metrics", "cdb-postgres", "cdb-redis"]


def test_a_proxied_service_is_scraped_through_its_proxy():
    assert names("db_writer") == ["cdb", "cdb-postgres", "cdb-redis"]
    assert _networks.proxy_networks(by_name("db_writer"), "cdb") == ["cdb-metrics"]
    assert _networks.proxy_networks(by_name("market_data"), "cdb") == []


def test_the_stack_network_can_be_renamed_and_a_disabled_dependency_makes_no_network():
    assert names("uses_old") == ["cdb"]
    nets = _networks.service_networks(by_name("capital_emulator"), SERVICES, "cdb", network="shared")
    assert [n["name"] for n in nets] == ["shared"]


def test_own_networks_are_kept_as_given():
    svc = {"name": "x", "internal": False, "networks": [{"name": "edge", "aliases": ["x"]}], "depends_on": ["redis"]}
    assert _networks.service_networks(svc, SERVICES, "cdb") == [{"name": "edge", "aliases": ["x"], "internal": False}]


@pytest.mark.parametrize(
    "svc, expected",
    [
        ({"name": "p", "internal": True, "published_ports": ["5432:5432"]}, "excludes 'published_ports'"),
        ({"name": "p", "internal": True, "proxy": {"listen": 1, "port": 2}}, "excludes 'proxy'"),
        ({"name": "p", "internal": True, "networks": [{"name": "n"}]}, "excludes 'networks'"),
        ({"name": "p", "internal": "yes"}, "field 'internal' must be true or false"),
    ],
)
def test_what_the_layout_cannot_honour_is_named(svc, expected):
    problems = _networks.service_problems(svc)
    assert len(problems) == 1 and expected in problems[0]


def test_a_plain_service_has_no_network_problem():
    assert _networks.service_problems({"name": "p", "published_ports": ["5432:5432"]}) == []
    assert _networks.service_problems({"name": "p", "internal": True}) == []
