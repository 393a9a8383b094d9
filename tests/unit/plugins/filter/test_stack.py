"""Unit tests of the stack description filters (dependency order, schema problems)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.tradeops.stack.plugins.filter.stack import (
    active_paper_block,
    broker_kind,
    container_name,
    dependency_order,
    stack_containers,
    stack_problems,
    stack_waivers,
)

ROOT = Path(__file__).resolve().parents[4]
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
        (svc("Bad-Name"), "service 'Bad-Name': field 'name' is invalid: expected 1-40 lower-case"),
        (svc("nl\n"), "service 'nl\\n': field 'name' is invalid"),
        (
            svc("w", env={"BROKER_BASE_URL": "https://api-capital.backend-capital.com/api/v1"}),
            "service 'w': field 'env.BROKER_BASE_URL' names the LIVE broker host api-capital.backend-capital.com",
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
    assert stack_containers({"name": "paper_execution", "strategy": "exclusive"}, "cdb") == [
        "cdb-paper-execution",
        "cdb-paper-execution-prev",
    ]
    assert stack_containers({"name": "signal_engine"}, "cdb") == [
        "cdb-signal-engine",
        "cdb-signal-engine-next",
        "cdb-signal-engine-prev",
    ]
    assert stack_containers({"name": "api", "strategy": "blue_green"}, "cdb") == [
        "cdb-api-blue",
        "cdb-api-green",
        "cdb-api-proxy",
    ]
    assert container_name("db_writer", "cdb") == "cdb-db-writer"
    assert container_name("db_writer", "cdb", slot="proxy") == "cdb-db-writer-proxy"


def test_local_inventory_description_is_valid():
    raw = (ROOT / "inventories" / "local" / "group_vars" / "tradeops" / "stack.yml").read_text()
    data = yaml.safe_load(raw)
    # templated values are resolved by Ansible; give them plausible stand-ins here
    services = yaml.safe_load(
        raw.replace('"{{ tradeops_proxy_port }}"', "18080")
        .replace('"{{ tradeops_proxy_kind }}"', data["tradeops_proxy_kind"])
        .replace('"{{ tradeops_broker_port }}:8080"', '"18081:8080"')
        .replace('"{{ tradeops_broker_emulator }}"', "true")
        .replace(
            "\"{{ 'http://capital-emulator:8080/api/v1' if tradeops_broker_emulator else '' }}\"",
            "http://capital-emulator:8080/api/v1",
        )
    )["tradeops_stack_services"]
    emulators = data["tradeops_broker_emulator_hosts"]
    assert stack_problems(services, SPECS, flags=data["tradeops_feature_flags"], emulator_hosts=emulators) == []
    # the same description without the emulator named: its broker URL is the live broker
    problems = stack_problems(services, SPECS, flags=data["tradeops_feature_flags"])
    assert any("env.BROKER_BASE_URL' 'http://capital-emulator:8080/api/v1' is not a paper" in p for p in problems)
    assert names(dependency_order(services))[:3] == ["postgres", "redis", "capital_emulator"]


def test_stack_role_defaults_and_argument_specs_are_in_sync():
    defaults = yaml.safe_load((ROOT / "roles" / "stack" / "defaults" / "main.yml").read_text())
    options = SPECS["argument_specs"]["main"]["options"]
    assert sorted(k for k in defaults if k not in options) == []
    assert sorted(k for k in options if not k.startswith("tradeops_") and k not in defaults) == []
    for entry, spec in SPECS["argument_specs"].items():
        assert spec.get("short_description"), entry


@pytest.mark.parametrize(
    "env",
    [
        {"BROKER_BASE_URL": "https://API-CAPITAL.BACKEND-CAPITAL.COM/api/v1"},
        {"BROKER_BASE_URL": "https://demo-x@api-capital.backend-capital.com/api/v1"},
        {"BROKER_BASE_URL": "https://api-capital.backend-capital.com/api/v1?demo-"},
        {"BROKER_BASE_URL": "https://api-capital.backend-capital.com./api/v1"},
        {"MARKET_FEED": "https://api-capital.backend-capital.com/api/v1"},  # any other variable
        {"UPSTREAMS": "https://demo-api-capital.backend-capital.com,https://api-capital.backend-capital.com"},
    ],
)
def test_a_live_broker_url_anywhere_in_env_is_refused_in_a_paper_stack(env):
    problems = stack_problems([svc("w", env=env)], SPECS)
    assert any("names the LIVE broker host api-capital.backend-capital.com" in p for p in problems), problems
    assert stack_problems([svc("w", env=env)], SPECS, trading_mode="live", live_approved=True) == []


@pytest.mark.parametrize(
    "field",
    [
        {"command": ["bot", "--broker", "https://api-capital.backend-capital.com/api/v1"]},
        {"healthcheck": {"test": ["CMD", "curl", "https://api-capital.backend-capital.com/api/v1/ping"]}},
    ],
)
def test_a_live_broker_host_in_any_field_is_refused(field):
    problems = stack_problems([svc("w", **field)], SPECS)
    assert any("names the LIVE broker host" in p for p in problems), problems


def test_broker_url_variables_must_be_paper_and_well_formed():
    good = svc("w", env={"BROKER_BASE_URL": "https://demo-api-capital.backend-capital.com/api/v1"})
    assert stack_problems([good], SPECS) == []
    for url, fragment in [
        ("http://10.1.2.3/api/v1", "is not a paper broker host"),
        (" https://demo-api-capital.backend-capital.com/api/v1", "white space"),
        ("https://x@demo-api-capital.backend-capital.com/api/v1", "user info"),
    ]:
        problems = stack_problems([svc("w", env={"BROKER_BASE_URL": url})], SPECS)
        assert any(fragment in p and "env.BROKER_BASE_URL" in p for p in problems), (url, problems)
    named = stack_problems(
        [svc("w", env={"BROKER_BASE_URL": "http://10.1.2.3/api/v1"})], SPECS, emulator_hosts=["10.1.2.3"]
    )
    assert named == []


@pytest.mark.parametrize(
    "field, where",
    [
        ({"env": {"CAPITAL_API": "http://10.0.0.5/api/v1"}}, "env.CAPITAL_API"),
        ({"env": {"MARKET_FEED": "wss://203.0.113.7/connect"}}, "env.MARKET_FEED"),
        ({"command": ["bot", "--rest", "https://[2001:db8::1]/api/v1"]}, "command[2]"),
    ],
)
def test_an_ip_literal_broker_endpoint_in_any_variable_is_live(field, where):
    problems = stack_problems([svc("w", **field)], SPECS)
    assert any("is not a paper broker host" in p and where in p for p in problems), problems
    assert stack_problems([svc("w", **field)], SPECS, trading_mode="live", live_approved=True) == []


def test_a_secret_name_is_a_whole_file_name():
    problems = stack_problems([svc("w", secrets=["db_pass\n", "ok"])], SPECS)
    assert any("field 'secrets[0]' 'db_pass\\n' is invalid" in p for p in problems), problems
    assert not any("secrets[1]" in p for p in problems)


def test_stack_level_broker_urls_and_stack_name_are_checked():
    problems = stack_problems(
        [svc("w")],
        SPECS,
        broker_urls={"stack_broker_base_url": "https://api-capital.backend-capital.com/api/v1", "unused": ""},
        stack_name="cdb\n",
    )
    assert any(p.startswith("stack_broker_base_url 'https://api-capital") for p in problems), problems
    assert any(p.startswith("tradeops_stack_name 'cdb\\n' is invalid") for p in problems), problems


@pytest.mark.parametrize(
    "value, kind",
    [
        ("https://demo-api-capital.backend-capital.com/api/v1", "paper"),
        ("demo-api-capital.backend-capital.com", "paper"),
        ("https://api-capital.backend-capital.com/api/v1", "live"),
        ("api-capital.backend-capital.com.", "live"),
        ("https://demo-x@api-capital.backend-capital.com/api/v1", "live"),
        ("https://x@demo-api-capital.backend-capital.com/api/v1", "invalid"),
        ("", "invalid"),
    ],
)
def test_broker_kind_for_the_secrets_role(value, kind):
    assert broker_kind(value) == kind


def test_active_paper_block_from_file_text():
    record = {"id": "b1", "status": "active", "started_at": 1.0}
    assert active_paper_block("") == {}
    assert active_paper_block(json.dumps(record))["id"] == "b1"
    assert active_paper_block(json.dumps(dict(record, status="completed"))) == {}
    for text in ("{}", "null", "[1]", "{half"):
        with pytest.raises(AnsibleFilterError, match="active.json"):
            active_paper_block(text, "/var/lib/tradeops/cdb/blocks/active.json")


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the validation must refuse

HARDENING_CASES = [
    ("docker_socket", {"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "volumes[0]"),
    ("docker_socket", {"volumes": ["/run//containerd/containerd.sock:/c.sock:ro"]}, "volumes[0]"),
    ("host_root", {"volumes": ["/:/host"]}, "volumes[0]"),
    ("host_root", {"volumes": ["/etc/:/host-etc:ro"]}, "volumes[0]"),
    ("host_port", {"strategy": "exclusive", "published_ports": ["0.0.0.0:5432:5432"]}, "published_ports[0]"),
    ("host_port", {"strategy": "exclusive", "published_ports": ["10.0.0.5:5432:5432/tcp"]}, "published_ports[0]"),
    ("cap_add", {"cap_add": ["SYS_ADMIN", "NET_ADMIN"]}, "cap_add"),
    ("unconfined", {"security_opt": ["seccomp=unconfined"]}, "security_opt[0]"),
    ("unconfined", {"security_opt": ["no-new-privileges:true", "apparmor:unconfined"]}, "security_opt[1]"),
    ("unconfined", {"security_opt": ["no-new-privileges=false"]}, "security_opt[0]"),
    ("writable_root", {"read_only": False}, "read_only"),
    ("unlimited", {"resources": {"memory": "0", "cpus": 0.5, "pids": 64}}, "resources.memory"),
    ("unlimited", {"resources": {"memory": "64m", "cpus": 0, "pids": 64}}, "resources.cpus"),
    ("unlimited", {"resources": {"memory": "64m", "cpus": 0.5, "pids": -1}}, "resources.pids"),
]


@pytest.mark.parametrize("rule, fields, field", HARDENING_CASES)
def test_hardening_is_refused_naming_the_field_unless_waived(rule, fields, field):
    problems = stack_problems([svc("w", **fields)], SPECS)
    assert any(p.startswith("service 'w': field '%s'" % field) and "rule: %s" % rule in p for p in problems), problems
    waived = svc("w", waivers=[{"rule": rule, "reason": "needed for the test"}], **fields)
    assert stack_problems([waived], SPECS) == []
    [entry] = stack_waivers([waived])
    assert entry["service"] == "w" and entry["rule"] == rule and entry["field"] == field
    assert entry["reason"] == "needed for the test"


def test_ports_follow_the_publish_address_and_loopback_passes():
    ports = svc("w", strategy="exclusive", published_ports=["5432:5432", "127.0.0.1:6379:6379", "[::1]:80:80"])
    assert stack_problems([ports], SPECS) == []
    problems = stack_problems([ports], SPECS, publish_address=ALL_INTERFACES)
    assert [p.split("'")[3] for p in problems] == ["published_ports[0]"], problems
    proxied = svc("w", strategy="blue_green", proxy={"listen": 18080, "port": 8000, "bind": ALL_INTERFACES})
    assert any("field 'proxy.listen'" in p for p in stack_problems([proxied], SPECS))


def test_named_volumes_and_ordinary_binds_pass():
    ok = svc("w", volumes=["pgdata:/var/lib/postgresql/data", "/var/lib/tradeops/cdb/config/w:/run/config:ro"])
    assert stack_problems([ok], SPECS) == []


def test_waivers_must_say_why_and_waive_something():
    empty = svc("w", read_only=False, waivers=[{"rule": "writable_root", "reason": " "}])
    assert any("waiver of rule writable_root needs a non-empty reason" in p for p in stack_problems([empty], SPECS))
    idle = svc("w", waivers=[{"rule": "cap_add", "reason": "left over"}])
    assert any("waiver of rule cap_add waives nothing" in p for p in stack_problems([idle], SPECS))
    unknown = svc("w", waivers=[{"rule": "everything", "reason": "please"}])
    assert any("waivers" in p and "everything" in p for p in stack_problems([unknown], SPECS))


def test_multihost_inventory_waives_its_cross_host_ports():
    raw = (ROOT / "inventories" / "multihost" / "group_vars" / "tradeops" / "stack.yml").read_text()
    services = yaml.safe_load(raw)["tradeops_multihost_data_services"]
    problems = [p for p in stack_problems(services, SPECS) if "hardening" in p or "waiver" in p]
    assert problems == []
    assert {w["service"] for w in stack_waivers(services)} == {"postgres", "redis"}


def test_daemon_settings_turned_off_need_a_waiver():
    from ansible_collections.tradeops.stack.plugins.filter.stack import daemon_problems

    base = {
        "icc": False,
        "no-new-privileges": True,
        "live-restore": True,
        "userland-proxy": False,
        "log-driver": "local",
    }
    assert daemon_problems(base) == []
    off = dict(base, icc=True, **{"live-restore": False})
    problems = daemon_problems(off)
    assert len(problems) == 2
    assert problems[0].startswith("daemon.json icc is true, CIS 2.2 requires false")
    assert "docker_host_cis_waivers: [{option: icc" in problems[0]
    assert (
        daemon_problems(off, [{"option": "icc", "reason": "legacy"}, {"option": "live-restore", "reason": "lab"}]) == []
    )
    assert any("needs a non-empty reason" in p for p in daemon_problems(off, [{"option": "icc", "reason": ""}]))
    # a value that is not the boolean (a string "false") is not the setting either
    assert daemon_problems(dict(base, icc="false"))[0].startswith('daemon.json icc is "false"')


def test_feature_flag_names_follow_the_rule():
    problems = stack_problems([svc("w")], SPECS, flags={"pause_new_orders": False, "Bad-Flag": True})
    assert problems == [
        "tradeops_feature_flags: flag name 'Bad-Flag' is invalid: expected 1-63 lower-case letters, "
        "digits or '_', starting with a letter"
    ]


# the monitoring role's host ports as roles/monitoring/tasks/host_ports.yml hands them over
MONITORING = [
    {"name": "cadvisor", "var": "monitoring_cadvisor_port", "bind": "127.0.0.1", "port": 8080, "container_port": 8080},
    {"name": "prometheus", "var": "monitoring_prometheus_port", "bind": "127.0.0.1", "port": 9090},
]
PROXIED = {"strategy": "blue_green", "proxy": {"listen": 8080, "port": 8000}}


def port_problems(services, monitoring=MONITORING, **kw):
    problems = stack_problems(services, SPECS, host_ports={"monitoring": monitoring}, **kw)
    return [p for p in problems if "host port" in p or "host_ports" in p]


def test_a_service_on_a_monitoring_host_port_is_refused_naming_both_sides():
    assert port_problems([svc("db_writer", **PROXIED)]) == [
        "service 'db_writer': field 'proxy.listen' publishes host port 127.0.0.1:8080, which the monitoring role "
        "publishes too (cadvisor, monitoring_cadvisor_port): change one of them"
    ]
    # without the monitoring ports (stack_monitoring_enabled false) the same stack is valid
    assert stack_problems([svc("db_writer", **PROXIED)], SPECS) == []
    # a published port without an address binds the stack's publish address
    [problem] = port_problems([svc("prom", strategy="exclusive", published_ports=["9090:9090"])])
    assert problem.startswith("service 'prom': field 'published_ports[0]' publishes host port 127.0.0.1:9090,")
    assert "(prometheus, monitoring_prometheus_port)" in problem


def test_a_wildcard_bind_on_either_side_clashes_with_any_address():
    wildcard = [dict(MONITORING[0], bind=ALL_INTERFACES)]
    [problem] = port_problems([svc("db_writer", **PROXIED)], wildcard)
    assert "host port 127.0.0.1:8080, which the monitoring role publishes too on 0.0.0.0:8080 (cadvisor," in problem
    everywhere = svc("api", strategy="exclusive", published_ports=["0.0.0.0:8080:80"])
    [problem] = port_problems([everywhere])
    assert problem.startswith("service 'api': field 'published_ports[0]' publishes host port 0.0.0.0:8080, ")
    assert "monitoring role publishes too on 127.0.0.1:8080 (cadvisor, monitoring_cadvisor_port)" in problem


def test_other_ports_addresses_and_protocols_do_not_clash():
    moved = svc("db_writer", strategy="blue_green", proxy={"listen": 18080, "port": 8000})
    assert port_problems([moved]) == []
    elsewhere = svc("db_writer", strategy="blue_green", proxy={"listen": 8080, "port": 8000, "bind": "10.0.0.5"})
    assert port_problems([elsewhere]) == []
    udp = svc("dns", strategy="exclusive", published_ports=["8080:53/udp"])
    assert port_problems([udp]) == []
    # a disabled component (port 0, or left out by host_ports.yml) publishes nothing
    assert port_problems([svc("db_writer", **PROXIED)], [dict(MONITORING[0], port=0)]) == []


def test_the_monitoring_role_publishing_a_port_twice_and_malformed_entries():
    twice = [*MONITORING, {"name": "grafana", "var": "monitoring_grafana_port", "bind": "127.0.0.1", "port": "9090"}]
    assert port_problems([svc("a")], twice) == [
        "the monitoring role publishes host port 127.0.0.1:9090 twice (grafana, monitoring_grafana_port; "
        "prometheus, monitoring_prometheus_port): change one of them"
    ]
    assert port_problems([svc("a")], [{"name": "cadvisor", "port": "lots"}]) == [
        "host_ports.monitoring[0] must be {name, bind, port}, got {'name': 'cadvisor', 'port': 'lots'}"
    ]


def test_two_services_on_one_host_port_still_name_the_first():
    services = [
        svc("a", strategy="exclusive", published_ports=["9000:80"]),
        svc("b", strategy="blue_green", proxy={"listen": 9000, "port": 8000}),
        svc("c", strategy="exclusive", published_ports=["10.0.0.5:9000:80"]),
    ]
    assert port_problems(services, []) == ["service 'b': host port 9000 is already published by service 'a'"]


def monitoring_host_ports(overrides=None):
    """The monitoring role's host ports from its literal defaults, the way vars/main.yml builds them."""
    role = ROOT / "roles" / "monitoring"
    values = {**yaml.safe_load((role / "defaults" / "main.yml").read_text()), **(overrides or {})}
    listed = yaml.safe_load((role / "vars" / "main.yml").read_text())["_monitoring_host_ports_all"]
    enabled = {c["name"]: c["var"].replace("_port", "_enabled") for c in listed}
    out = []
    for component in listed:
        on = values[enabled[component["name"]]] and (
            component["name"] != "grafana" or values["monitoring_grafana_container"]
        )
        if on and int(values[component["var"]]) > 0:
            out.append(dict(component, bind=values["monitoring_publish_address"], port=values[component["var"]]))
    return out


def test_the_monitoring_role_lists_every_container_it_runs_with_its_port_variable():
    run = yaml.safe_load((ROOT / "roles" / "monitoring" / "tasks" / "run.yml").read_text())
    [task] = [t for t in run if "_monitoring_containers" in (t.get("vars") or {})]
    listed = yaml.safe_load((ROOT / "roles" / "monitoring" / "vars" / "main.yml").read_text())
    assert sorted(c["key"] for c in task["vars"]["_monitoring_containers"]) == sorted(
        c["name"] for c in listed["_monitoring_host_ports_all"]
    )
    assert {p["var"]: p["port"] for p in monitoring_host_ports()} == {
        "monitoring_node_exporter_port": 9100,
        "monitoring_cadvisor_port": 8080,
        "monitoring_alertmanager_port": 9093,
        "monitoring_prometheus_port": 9090,
        "monitoring_grafana_port": 3000,
    }


def test_the_paper_inventory_publishes_no_host_port_twice():
    group_vars = ROOT / "inventories" / "paper" / "group_vars" / "tradeops"
    raw = (group_vars / "stack.yml").read_text()
    data = yaml.safe_load(raw)
    # the templated values the description reads are literals of the same file
    services = yaml.safe_load(
        raw.replace('"{{ tradeops_broker_base_url }}"', json.dumps(data["tradeops_broker_base_url"])).replace(
            '"{{ _tradeops_bot_image }}"', json.dumps("registry.example/cdb-core:1.4.2")
        )
    )["tradeops_stack_services"]
    overrides = {
        k: v
        for k, v in yaml.safe_load((group_vars / "monitoring.yml").read_text()).items()
        if k.startswith("monitoring_") and "{{" not in str(v)
    }
    ports = monitoring_host_ports(overrides)
    assert "cadvisor" in [p["name"] for p in ports]
    flags = data["tradeops_feature_flags"]
    assert stack_problems(services, SPECS, flags=flags, host_ports={"monitoring": ports}) == []
    # the collision the inventory had (issue 13): the edge proxy of db_writer on cAdvisor's 8080
    [db_writer] = [s for s in services if s["name"] == "db_writer"]
    db_writer["proxy"]["listen"] = 8080
    [problem] = stack_problems(services, SPECS, flags=flags, host_ports={"monitoring": ports})
    assert "service 'db_writer': field 'proxy.listen' publishes host port 127.0.0.1:8080" in problem
    assert "(cadvisor, monitoring_cadvisor_port)" in problem


def test_an_internal_service_cannot_publish_a_port_nor_have_a_proxy():
    published = svc("db", strategy="exclusive", internal=True, published_ports=["5432:5432"])
    assert any(
        p.startswith("service 'db': field 'internal'") and "excludes 'published_ports'" in p
        for p in stack_problems([published], SPECS)
    )
    assert stack_problems([svc("db", strategy="exclusive", internal=True)], SPECS) == []
    wrong_type = stack_problems([svc("db", strategy="exclusive", internal="often")], SPECS)
    assert any("internal" in p for p in wrong_type), wrong_type


def test_every_inventory_keeps_postgres_and_redis_off_the_shared_networks_or_waives_their_ports():
    """local and paper: internal networks of their own; multihost publishes them (waived), so it cannot."""
    for inventory in ("local", "paper"):
        raw = (ROOT / "inventories" / inventory / "group_vars" / "tradeops" / "stack.yml").read_text()
        services = {s["name"]: s for s in yaml.safe_load(raw)["tradeops_stack_services"]}
        assert services["postgres"].get("internal") is True and services["redis"].get("internal") is True, inventory
        assert "redis_password" in services["redis"]["secrets"], inventory
        users = [s for s in services.values() if "redis" in (s.get("depends_on") or [])]
        assert users and all("redis_password" in s.get("secrets", []) for s in users), inventory
