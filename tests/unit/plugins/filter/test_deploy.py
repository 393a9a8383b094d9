"""Unit tests of the stack role's decisions (plugins/filter/deploy.py): plan, revert, manifest body, verify."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.filter.deploy import (
    FilterModule,
    deploy_plan,
    deploy_revert,
    flag_flip,
    release_manifest_body,
    rollback_target,
    rollout_outcome,
    run_summary,
    verify_verdict,
)


def names(services):
    return [svc["name"] for svc in services]


def test_every_filter_is_registered():
    assert set(FilterModule().filters()) == {
        "deploy_plan",
        "deploy_revert",
        "release_manifest_body",
        "verify_verdict",
        "rollback_target",
        "flag_flip",
        "run_summary",
        "rollout_outcome",
    }


# ------------------------------------------------------------------------------------------ deploy_plan
def test_plan_without_change_does_nothing(order, planned):
    plan = deploy_plan(planned(), order, stack="cdb")
    assert plan["changes"] == []
    assert plan["backup"] is False
    assert plan["migrations"] == [] and plan["migrations_at_create"] == []
    assert plan["message"] == "plan for cdb (0 to change): postgres: noop, redis: noop, bot: noop, api: noop"


def test_plan_lists_every_service_with_its_operation(order, planned):
    plan = deploy_plan(planned(bot="upgrade", api="create"), order, stack="cdb")
    assert plan["changes"] == ["bot", "api"]
    assert plan["summary"] == ["postgres: noop", "redis: noop", "bot: upgrade", "api: create"]
    assert plan["message"].startswith("plan for cdb (2 to change): ")


def test_plan_prints_the_waived_hardening_rules(order, planned):
    waivers = [
        {"service": "api", "rule": "host_port", "field": "published_ports[0]", "detail": "8080", "reason": "edge"},
        {"service": "bot", "rule": "cap_add", "field": "cap_add", "detail": "NET_ADMIN", "reason": "tc"},
    ]
    plan = deploy_plan(planned(api="upgrade"), order, stack="cdb", waivers=waivers)
    assert plan["message"].endswith(
        "; hardening waived: api host_port (published_ports[0]: 8080; edge), bot cap_add (cap_add: NET_ADMIN; tc)"
    )


def test_only_a_config_change_of_a_stateless_service_takes_no_backup_and_runs_no_migration(order, planned):
    plan = deploy_plan(planned(redis="restart", api="upgrade"), order)
    assert plan["changes"] == ["redis", "api"]
    assert plan["backup"] is False
    assert plan["migrations"] == []


def test_a_config_change_of_the_service_with_a_migration_backs_up_but_does_not_migrate(order, planned):
    plan = deploy_plan(planned(bot="restart"), order)
    assert plan["backup"] is True  # a changing service with a migration
    assert plan["migrations"] == []  # only an upgrade migrates


def test_an_upgrade_with_a_migration_backs_up_then_migrates_before_the_rollouts(order, planned):
    plan = deploy_plan(planned(bot="upgrade", api="upgrade"), order)
    assert plan["backup"] is True
    assert names(plan["migrations"]) == ["bot"]
    assert plan["migrations"][0]["migration"] == {"command": ["bot", "migrate"]}
    assert plan["migrations_at_create"] == []


def test_a_new_service_with_a_migration_migrates_right_before_its_own_rollout(order, planned):
    plan = deploy_plan(planned(bot="create"), order)
    assert plan["migrations"] == []
    assert plan["migrations_at_create"] == ["bot"]
    assert plan["backup"] is True  # postgres exists, a changing service has a migration


def test_a_stateful_change_backs_up(order, planned):
    assert deploy_plan(planned(postgres="upgrade"), order)["backup"] is True


@pytest.mark.parametrize(
    ("operations", "policy", "backup"),
    [
        ({"api": "upgrade"}, "auto", False),  # stateless, no migration
        ({"api": "upgrade"}, "always", True),  # always: any change
        ({}, "always", False),  # always, but nothing changes
        ({"postgres": "upgrade"}, "never", False),  # never wins over stateful
        ({"bot": "upgrade"}, "never", False),  # and over a migration
        ({"postgres": "create", "bot": "create"}, "always", False),  # no database to back up yet
    ],
)
def test_backup_policy(order, planned, operations, policy, backup):
    assert deploy_plan(planned(**operations), order, backup_policy=policy)["backup"] is backup


def test_no_backup_without_a_postgres_service(order, planned):
    plan = deploy_plan(planned(postgres="upgrade"), order, postgres_service="db", backup_policy="always")
    assert plan["backup"] is False


def test_revert_order_is_the_reverse_dependency_order(order, planned):
    assert deploy_plan(planned(), order)["revert_order"] == ["api", "bot", "redis", "postgres"]


def test_plan_reads_ansible_native_mappings(order, planned):
    """What ansible-core hands a filter (dict subclasses, tuples) is read like plain data."""

    class Tagged(dict):
        pass

    plan = deploy_plan(Tagged(planned(bot="upgrade")), tuple(order))
    assert names(plan["migrations"]) == ["bot"]


# ---------------------------------------------------------------------------------------- deploy_revert
def test_revert_goes_back_in_reverse_dependency_order(order, applied):
    revert = deploy_revert(applied(bot=("r2", "r1"), postgres=("p2", "p1"), api=("a2", "a1")), order)
    assert names(revert["services"]) == ["api", "bot", "postgres"]
    assert revert["releases"] == {"api": "a1", "bot": "r1", "postgres": "p1"}
    assert revert["created"] == []


def test_revert_leaves_out_the_failed_the_unchanged_and_the_new(order, applied):
    outcomes = applied(
        postgres=("p2", "p1"),
        redis=("x1", "x1", "unchanged"),
        bot=("r2", "r1", "failed"),
        api=("a1", None),
    )
    revert = deploy_revert(outcomes, order)
    assert names(revert["services"]) == ["postgres"]
    assert revert["created"] == ["api"]


def test_revert_of_a_run_that_changed_nothing(order):
    assert deploy_revert({}, order) == {"services": [], "releases": {}, "created": []}


# -------------------------------------------------------------------------------- release_manifest_body
def test_manifest_body_from_the_deploy_outcomes(applied):
    outcomes = applied(postgres=("p2", "p1"), bot=("r2", "r1"))
    body = release_manifest_body(outcomes, {"pause_new_orders": False}, ["postgres", "bot"])
    assert body == {
        "flags": {"pause_new_orders": False},
        "order": ["postgres", "bot"],
        "services": {
            name: {
                "release": release,
                "spec_hash": "h-" + name,
                "image": "img/" + name,
                "image_id": "sha256:" + name,
                "image_digest": None,
                "strategy": "exclusive",
            }
            for name, release in (("postgres", "p2"), ("bot", "r2"))
        },
    }
    assert list(body["services"]) == ["postgres", "bot"]


def test_manifest_body_of_a_flag_flip_keeps_the_services_and_changes_the_flags(applied):
    current = release_manifest_body(applied(bot=("r2", "r1")), {"f": False}, [{"name": "bot"}])
    flipped = release_manifest_body(current["services"], {"f": True}, current["order"])
    assert flipped == dict(current, flags={"f": True})


def test_manifest_body_follows_the_order_and_keeps_services_outside_it():
    services = {"b": {"release": "rb"}, "a": {"release": "ra"}, "z": {"release": "rz", "extra": 1}}
    body = release_manifest_body(services, {}, ["a", "b", "missing"])
    assert list(body["services"]) == ["a", "b", "z"]
    assert body["services"]["z"] == {"release": "rz"}
    assert body["order"] == ["a", "b", "missing"]


# ------------------------------------------------------------------------------------------- rollback
HISTORY = [
    {"id": "20261101T000000Z-a", "known_good": True},
    {"id": "20261102T000000Z-b", "known_good": True},
    {"id": "20261103T000000Z-c", "known_good": False},
    {"id": "20261104T000000Z-d", "known_good": True},
]


@pytest.mark.parametrize(
    ("current", "requested", "target"),
    [
        ({"id": "20261104T000000Z-d"}, "", "20261102T000000Z-b"),  # newest known-good older than current
        ({"id": "20261103T000000Z-c"}, "", "20261102T000000Z-b"),  # skips the one not known-good
        ({"id": "20261101T000000Z-a"}, "", ""),  # nothing older
        ({}, "", "20261104T000000Z-d"),  # no current manifest: the newest known-good
        ({"id": "20261104T000000Z-d"}, "20261101T000000Z-a", "20261101T000000Z-a"),  # named by the operator
    ],
)
def test_rollback_target(current, requested, target):
    assert rollback_target(HISTORY, current, requested) == target


# --------------------------------------------------------------------------------------------- verify
def verdict(order, containers, healthy, **kwargs):
    kwargs.setdefault("manifest", {"id": "m1", "known_good": True})
    return verify_verdict(order, stack="cdb", host="h1", containers=containers, healthy=healthy, **kwargs)


def test_verify_passes_on_a_healthy_stack(order, healthy_stack):
    result = verdict(order, *healthy_stack)
    assert result == {
        "lines": [
            "OK   cdb on h1: 0 problem(s)",
            "services   4/4 running and healthy (manifest m1, known-good)",
            "broker     not checked (no broker URL)",
            "prometheus not checked (monitoring disabled)",
            "paper block none active",
        ],
        "problems": [],
        "ok": True,
    }


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        ({"id": "m2"}, "(manifest m2, NOT yet known-good)"),
        ({"id": "m2", "known_good": False}, "(manifest m2, NOT yet known-good)"),
        ({}, "(no manifest yet)"),
    ],
)
def test_verify_says_which_manifest_runs(order, healthy_stack, manifest, said):
    assert verdict(order, *healthy_stack, manifest=manifest)["lines"][1].endswith(said)


def test_the_deploys_own_verify_does_not_call_its_new_manifest_not_known_good(order, healthy_stack):
    line = verdict(order, *healthy_stack, manifest={"id": "m2"}, marks_known_good=True)["lines"][1]
    assert line.endswith("(manifest m2, known-good once this verify passes)")


def test_verify_fails_a_service_without_a_running_container(order, healthy_stack, make_container):
    containers, healthy = healthy_stack
    containers = [c for c in containers if c["Id"] != "c-redis"]
    containers.append(make_container("c-redis", "cdb-redis", "redis", state="exited", status="Exited (1)"))
    result = verdict(order, containers, healthy)
    assert result["ok"] is False
    assert result["problems"] == ["redis: no running container"]
    assert result["lines"][0] == "FAIL cdb on h1: 1 problem(s)"
    assert result["lines"][1].startswith("services   3/4 running and healthy")
    assert result["lines"][-1] == "  ! redis: no running container"


def test_verify_fails_a_service_not_exactly_healthy(order, healthy_stack):
    containers, healthy = healthy_stack
    starting = [dict(c, Status="Up 3 seconds (health: starting)") if c["Id"] == "c-bot" else c for c in containers]
    result = verdict(order, starting, [h for h in healthy if h["Id"] != "c-bot"])
    assert result["problems"] == [
        "bot: cdb-bot is Up 3 seconds (health: starting) (Docker health is not exactly healthy)"
    ]


def test_verify_fails_two_instances_of_an_exclusive_service(order, healthy_stack, make_container):
    containers, healthy = healthy_stack
    containers = [*containers, make_container("c-pg2", "cdb-postgres-next", "postgres")]
    result = verdict(order, containers, [*healthy, {"Id": "c-pg2"}])
    assert result["problems"] == [
        "postgres: 2 instances running (cdb-postgres, cdb-postgres-next), exclusive allows one"
    ]


def test_two_instances_of_a_start_first_service_are_fine(order, healthy_stack, make_container):
    containers, healthy = healthy_stack
    containers = [*containers, make_container("c-bot2", "cdb-bot-next", "bot")]
    assert verdict(order, containers, [*healthy, {"Id": "c-bot2"}])["ok"] is True


def test_verify_fails_an_unhealthy_container_that_is_not_a_service(order, healthy_stack, make_container):
    containers, healthy = healthy_stack
    sick = [
        make_container("c-graf", "cdb-grafana", None, role="monitoring", status="Up 1 hour (unhealthy)"),
        make_container("c-odd", "cdb-odd", None, status="Up 1 hour (unhealthy)"),
        make_container("c-slow", "cdb-slow", None, role="monitoring", status="Up 1 hour (health: starting)"),
    ]
    result = verdict(order, containers + sick, healthy)
    assert result["problems"] == ["cdb-grafana is Up 1 hour (unhealthy)", "cdb-odd is Up 1 hour (unhealthy)"]


@pytest.mark.parametrize(
    ("broker", "line", "problems"),
    [
        (None, "broker     not checked (no broker URL)", []),
        ({"skipped": True}, "broker     not checked (no broker URL)", []),
        (
            {"healthy": True, "environment": "demo", "latency": {"p95_ms": 42.5}},
            "broker     healthy, demo, p95 42.5 ms",
            [],
        ),
        ({"healthy": True}, "broker     healthy, ?, p95 ? ms", []),
        (
            {"healthy": False, "failures": ["auth failed", "slow"]},
            "broker     UNHEALTHY: auth failed; slow",
            ["broker: auth failed; slow"],
        ),
        ({"healthy": False, "msg": "boom"}, "broker     UNHEALTHY: boom", ["broker: boom"]),
        ({"failed": True}, "broker     UNHEALTHY: check failed", ["broker: check failed"]),
    ],
)
def test_verify_broker(order, healthy_stack, broker, line, problems):
    result = verdict(order, *healthy_stack, broker=broker)
    assert result["lines"][2] == line
    assert result["problems"] == problems


TARGETS = {
    "status": 200,
    "json": {
        "data": {
            "activeTargets": [
                {"health": "up", "labels": {"job": "bot"}},
                {"health": "down", "labels": {"job": "api"}, "scrapeUrl": "http://api:9100", "lastError": "no host"},
            ]
        }
    },
}
ALERTS = {
    "status": 200,
    "json": {
        "data": {
            "alerts": [
                {
                    "state": "firing",
                    "labels": {"alertname": "BotDown", "severity": "critical"},
                    "annotations": {"summary": "s"},
                },
                {"state": "firing", "labels": {"alertname": "NoSummary", "severity": "critical"}},
                {"state": "pending", "labels": {"alertname": "Pending", "severity": "critical"}},
                {"state": "firing", "labels": {"alertname": "Warn", "severity": "warning"}},
                {"state": "firing", "labels": {"alertname": "NoSeverity"}},
            ]
        }
    },
}


def test_verify_prometheus_targets_down_and_critical_alerts(order, healthy_stack):
    result = verdict(order, *healthy_stack, targets=TARGETS, alerts=ALERTS, prometheus_url="http://prom:9090")
    assert result["lines"][3] == "prometheus 1/2 targets up, 2 critical alert(s) firing"
    assert result["problems"] == [
        "target down: api http://api:9100 (no host)",
        "critical alert firing: BotDown - s",
        "critical alert firing: NoSummary",
    ]


def test_verify_ignores_the_alerts_when_prometheus_did_not_answer_them(order, healthy_stack):
    result = verdict(order, *healthy_stack, targets=TARGETS, alerts={"status": 500}, prometheus_url="http://p")
    assert result["lines"][3] == "prometheus 1/2 targets up, 0 critical alert(s) firing"


def test_verify_fails_when_prometheus_is_unreachable(order, healthy_stack):
    result = verdict(order, *healthy_stack, targets={"status": -1, "msg": "refused"}, prometheus_url="http://p:9")
    assert result["lines"][3] == "prometheus UNREACHABLE at http://p:9: refused"
    assert result["problems"] == ["prometheus unreachable at http://p:9"]


def test_verify_prometheus_not_checked(order, healthy_stack):
    result = verdict(order, *healthy_stack, targets={"skipped": True}, alerts={"skipped": True})
    assert result["lines"][3] == "prometheus not checked (monitoring disabled)"


BLOCK = {
    "block": {"id": "b1"},
    "elapsed_seconds": 5400,
    "window": {"ticks": 10, "signals": 2, "trades": 1},
}


@pytest.mark.parametrize(
    ("block", "active", "url", "lines", "problems"),
    [
        (None, {}, "", ["paper block none active"], []),
        (None, {"id": "b9"}, "", ["paper block active: b9"], []),
        ({"skipped": True}, {"id": "b9"}, "", ["paper block active: b9"], []),
        ({"block": None}, {"id": "b9"}, "", ["paper block none active"], []),
        (BLOCK, {}, "", ["paper block b1 active, 1.5 h elapsed, window: 10 ticks, 2 signals, 1 trades"], []),
        (
            {"block": {"id": "b2"}, "overdue": True},
            {},
            "",
            ["paper block b2 active, 0.0 h elapsed, window: no data ticks, no data signals, no data trades, OVERDUE"],
            [],
        ),
        (
            dict(BLOCK, zai=True, zai_reason="no trades in 2h"),
            {},
            "http://prom:9090",
            ["paper block b1 active, 1.5 h elapsed, window: 10 ticks, 2 signals, 1 trades"],
            ["paper block b1: ZERO-ACTIVITY INCIDENT (no trades in 2h)"],
        ),
        (
            dict(BLOCK, zai=True),
            {},
            "",
            [
                "paper block b1 active, 1.5 h elapsed, window: 10 ticks, 2 signals, 1 trades",
                "            activity not measured (no Prometheus configured)",
            ],
            [],
        ),
        (
            {"failed": True, "msg": "permission denied"},
            {"id": "b1"},
            "",
            ["paper block status unavailable: permission denied"],
            ["paper block status unavailable: permission denied"],
        ),
    ],
)
def test_verify_paper_block(order, healthy_stack, block, active, url, lines, problems):
    targets = {"status": 200, "json": {"data": {"activeTargets": []}}} if url else None
    result = verdict(order, *healthy_stack, block=block, active_block=active, targets=targets, prometheus_url=url)
    assert result["lines"][4:] == lines + ["  ! " + p for p in problems]
    assert result["problems"] == problems


def test_verify_counts_and_lists_every_problem(order, healthy_stack):
    """Four services not exactly healthy (the others only count when "(unhealthy)") and the broker."""
    containers, _healthy = healthy_stack
    result = verdict(order, containers, [], broker={"healthy": False, "msg": "down"})
    assert result["lines"][0] == "FAIL cdb on h1: 5 problem(s)"
    assert len([line for line in result["lines"] if line.startswith("  ! ")]) == 5
    assert result["problems"][-1] == "broker: down"


# ------------------------------------------------------------------------------------------ flag flip
FLAG_ORDER = [{"name": "bot", "flags": ["pause_new_orders", "x"]}, {"name": "api", "flags": []}, {"name": "db"}]


@pytest.mark.parametrize(
    ("defaults", "overrides", "value", "before", "after"),
    [
        ({"pause_new_orders": False}, {}, "true", False, True),
        ({"pause_new_orders": False}, {"pause_new_orders": True}, "false", True, False),  # the override wins
        ({}, {}, True, False, True),  # undeclared: false; a native bool value reads as its text
        ({}, {}, "False", False, False),
    ],
)
def test_flag_flip_before_and_after(defaults, overrides, value, before, after):
    flip = flag_flip(FLAG_ORDER, "pause_new_orders", value, defaults=defaults, overrides=overrides)
    assert (flip["before"], flip["after"]) == (before, after)


def test_flag_flip_names_the_services_that_read_the_flag():
    assert flag_flip(FLAG_ORDER, "pause_new_orders", "true")["readers"] == ["bot"]
    assert flag_flip(FLAG_ORDER, "nobody_reads_me", "true")["readers"] == []


# ------------------------------------------------------------------------------------------ run_summary
ORDER = ["postgres", "bot", "api"]
BEFORE = {"id": "m1", "services": {"bot": {"image": "bot:1.0"}, "api": {"image": "api:1.0"}}}


def outcome(image, operation="upgrade", changed=True, failed=False, seconds=3.26, **extra):
    return dict(image=image, operation=operation, changed=changed, failed=failed, strategy="start_first",
                seconds=seconds, **extra)  # fmt: skip


def test_a_successful_deploy_names_each_change_the_manifest_and_the_time():
    outcomes = {"apply": {"postgres": outcome("pg:15", "noop", changed=False), "bot": outcome("bot:1.1")}}
    summary = run_summary(outcomes, order=ORDER, before=BEFORE, manifest={"id": "m2", "known_good": True},
                          seconds=41.6, stack="cdb", host="h1")  # fmt: skip
    assert summary["lines"] == [
        "DEPLOY ok: cdb on h1 in 42 s",
        "  bot: bot:1.0 -> bot:1.1 (upgrade, start_first, 3.3 s): ok",
        "  manifest m2 (known-good)",
    ]
    assert summary["stats"] == {"outcome": "ok", "kind": "deploy", "stack": "cdb", "host": "h1", "manifest": "m2",
                                "known_good": True, "changed": ["bot"], "seconds": 41.6}  # fmt: skip


def test_a_deploy_with_nothing_to_change_says_so():
    summary = run_summary({"apply": {"bot": outcome("bot:1.0", "noop", changed=False)}}, order=ORDER,
                          before=BEFORE, manifest={"id": "m1", "known_good": True}, stack="cdb", host="h1")  # fmt: skip
    assert summary["outcome"] == "nothing to change"
    assert summary["lines"][1] == "  no service changed" and summary["stats"]["changed"] == []


def test_a_failed_deploy_that_went_back_cleanly_is_told_apart_from_one_whose_rollback_failed():
    failure = "api unhealthy; last health checks: exit 1: refused; exit 1: refused; exit 1: refused"
    clean = {"apply": {"bot": outcome("bot:1.1"), "api": outcome("api:2.0", failed=True)},
             "revert": {"bot": outcome("bot:1.0", "rollback")}}  # fmt: skip
    summary = run_summary(clean, order=ORDER, before=BEFORE, manifest=BEFORE, failure=failure, stack="cdb", host="h1")
    assert (
        summary["outcome"] == "failed, rolled back" and summary["lines"][0] == "DEPLOY FAILED, ROLLED BACK: cdb on h1"
    )
    assert "  bot: bot:1.0 -> bot:1.1 (upgrade, start_first, 3.3 s): ok, reverted" in summary["lines"]
    assert "  api: api:1.0 -> api:2.0 (upgrade, start_first, 3.3 s): FAILED, rolled back" in summary["lines"]
    assert summary["lines"][-1] == "  why: api unhealthy; last health checks: exit 1: refused (x3)"
    assert "  manifest m1 (NOT known-good)" in summary["lines"]

    broken = dict(clean, revert={"bot": outcome("bot:1.0", "rollback", failed=True, reason="bot-prev gone")})
    summary = run_summary(broken, order=ORDER, before=BEFORE, failure=failure, stack="cdb", host="h1")
    assert summary["outcome"] == "failed, rollback failed"
    assert summary["lines"][0] == "DEPLOY FAILED, ROLLBACK FAILED: cdb on h1"
    assert "revert FAILED: bot-prev gone" in summary["lines"][1]
    auto = {"apply": {"api": outcome("api:2.0", failed=True, rollback_failed=True)}}
    assert run_summary(auto, order=ORDER, failure="x")["stats"]["outcome"] == "failed, rollback failed"


def test_a_failure_names_what_was_created_and_left_running_and_the_audit_log():
    outcomes = {"apply": {"api": outcome("api:2.0", "create"), "bot": outcome("bot:1.1", failed=True)}}
    summary = run_summary(outcomes, order=ORDER, before=BEFORE, failure="bot unhealthy", created=["api"],
                          audit_log="/var/lib/tradeops/cdb/audit.log")  # fmt: skip
    assert summary["lines"][-3:] == [
        "  why: bot unhealthy",
        "  left running (created by this run, nothing to go back to): api",
        "  audit log: /var/lib/tradeops/cdb/audit.log",
    ]
    ok = run_summary(outcomes, order=ORDER, created=["api"], audit_log="/x")
    assert not [line for line in ok["lines"] if "left running" in line or "audit log" in line]


def test_a_rollback_summary_reads_the_rollback_phase():
    outcomes = {"rollback": {"api": outcome("api:1.0", "rollback", seconds=None), "bot": outcome("bot:1.0", "noop",
                changed=False)}}  # fmt: skip
    after = {"services": {"api": {"image": "api:2.0"}}}
    good = {"id": "m1", "known_good": True}
    summary = run_summary(outcomes, kind="rollback", order=ORDER, before=after, manifest=good, stack="cdb", host="h1")
    assert summary["lines"] == ["ROLLBACK ok: cdb on h1", "  api: api:2.0 -> api:1.0 (rollback, start_first): ok",
                                "  manifest m1 (known-good)"]  # fmt: skip


SVC = {"name": "api", "image": "app:2", "strategy": "blue_green"}


def test_rollout_outcome_of_an_upgrade_names_the_serving_image():
    result = {
        "changed": True,
        "operation": "upgrade",
        "release": "r2",
        "previous_release": "r1",
        "spec_hash": "h2",
        "strategy": "blue_green",
        "timings": {"total": 7.8},
        "releases": [{"id": "r1", "image": "app:1"}, {"id": "r2", "image": "app:2"}],
        "containers": [
            {"name": "cdb-api-green", "release": "r2", "running": True, "image_id": "sha256:2", "image_digest": "d2"},
            {"name": "cdb-api-blue", "release": "r1", "running": False, "image_id": "sha256:1"},
            {"name": "cdb-api-proxy", "running": True},
        ],
    }
    out = rollout_outcome(result, SVC)
    assert out == {
        "operation": "upgrade",
        "changed": True,
        "failed": False,
        "release": "r2",
        "previous_release": "r1",
        "spec_hash": "h2",
        "rolled_back": False,
        "rollback_failed": False,
        "seconds": 7.8,
        "reason": "",
        "strategy": "blue_green",
        "containers": ["cdb-api-green", "cdb-api-proxy"],
        "image": "app:2",
        "image_id": "sha256:2",
        "image_digest": "d2",
    }


def test_rollout_outcome_of_a_failure_names_the_attempted_image_and_why():
    result = {
        "failed": True,
        "rolled_back": True,
        "operation": "upgrade",
        "release": "r1",
        "attempted_release": "r3",
        "reason": "health gate: unhealthy",
        "msg": "rolled back",
        "releases": [{"id": "r1", "image": "app:1"}, {"id": "r3", "image": "app:3"}],
        "containers": [{"name": "cdb-api-blue", "release": "r1", "running": True, "image_id": "sha256:1"}],
    }
    out = rollout_outcome(result, SVC)
    assert out["failed"] and out["rolled_back"] and out["reason"] == "health gate: unhealthy"
    assert out["image"] == "app:3" and out["image_id"] == "sha256:1"  # tried app:3, serves r1 again
    # a job that never reported: failed with its message; the description's image and strategy
    lost = rollout_outcome({"failed": True, "msg": "did not finish within stack_rollout_timeout (900 s)"}, SVC)
    assert lost["operation"] == "unknown" and lost["reason"].startswith("did not finish")
    assert lost["image"] == "app:2" and lost["strategy"] == "blue_green" and lost["containers"] == []
    assert rollout_outcome({}, {"name": "w", "image": "w:1"})["strategy"] == "start_first"
