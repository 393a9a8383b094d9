"""The stack description as Kubernetes objects (pure); the schemas themselves are checked by
tests/tools/validate_k8s.py in make lint (kubernetes-validate and the Argo Rollouts CRDs)."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._kubernetes import (
    HEADER,
    ManifestError,
    cpu_quantity,
    dump_files,
    memory_quantity,
    render,
)

BOT = {
    "name": "market_data",
    "image": "tradeops/bot:1.0.0",
    "strategy": "start_first",
    "user": "10001:10001",
    "depends_on": ["redis"],
    "env": {"BOT_ROLE": "market_data", "REDIS_HOST": "redis"},
    "secrets": ["redis_password", "capital_com_api_key"],
    "resources": {"memory": "512m", "cpus": 0.5, "pids": 256},
    "health": {"timeout": 60, "http": {"port": 8000, "path": "/health"}},
    "metrics": {"port": 8000},
}
REDIS = {
    "name": "redis",
    "image": "redis:7.4.1-bookworm",
    "strategy": "exclusive",
    "internal": True,
    "ports": [6379],
    "user": "999:999",
    "volumes": ["cdb-redisdata:/data"],
    "resources": {"memory": "1g", "cpus": 1.0, "pids": 128},
    "healthcheck": {"test": ["CMD-SHELL", "redis-cli ping | grep -q PONG"], "interval": "5s", "retries": 3},
}
POSTGRES = {
    "name": "postgres",
    "image": "postgres:15.8-bookworm",
    "strategy": "exclusive",
    "stateful": True,
    "ports": [5432],
    "user": "999:999",
    "volumes": ["cdb-pgdata:/var/lib/postgresql/data"],
    "resources": {"memory": "1g", "cpus": 1.0, "pids": 256},
    "healthcheck": {"test": ["CMD", "pg_isready", "-q"], "interval": "5s", "start_period": "60s", "retries": 5},
    "stop_timeout": 60,
}


def objects(services, **kw):
    files = render(copy.deepcopy(services), "cdb", **kw)
    return {(o["kind"], o["metadata"]["name"]): o for docs in files.values() for o in docs}


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_each_strategy_becomes_its_workload():
    green = dict(BOT, name="db_writer", strategy="blue_green", proxy={"listen": 18080, "port": 8000, "drain": 12})
    out = objects([BOT, REDIS, POSTGRES, green])
    assert out[("Deployment", "market-data")]["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert out[("Deployment", "redis")]["spec"]["strategy"] == {"type": "Recreate"}
    sts = out[("StatefulSet", "postgres")]["spec"]
    assert sts["serviceName"] == "postgres" and sts["replicas"] == 1
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "cdb-pgdata"
    assert out[("Service", "postgres")]["spec"]["clusterIP"] == "None"
    rollout = out[("Rollout", "db-writer")]["spec"]["strategy"]["blueGreen"]
    assert rollout == {
        "activeService": "db-writer",
        "previewService": "db-writer-preview",
        "autoPromotionEnabled": True,
        "scaleDownDelaySeconds": 12,
    }
    assert ("Service", "db-writer-preview") in out and ("Deployment", "db-writer") not in out


def test_the_container_is_hardened_limited_and_probed():
    c = container(objects([BOT, REDIS])[("Deployment", "market-data")])
    assert c["resources"] == {
        "requests": {"memory": "512Mi", "cpu": "500m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }
    ctx = c["securityContext"]
    assert ctx["runAsNonRoot"] and ctx["readOnlyRootFilesystem"] and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]} and (ctx["runAsUser"], ctx["runAsGroup"]) == (10001, 10001)
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert c["startupProbe"]["failureThreshold"] == 60 // 5 + 3, "the rollout gate's 60 s, every 5 s, plus retries"
    assert {"name": "tmpfs-0", "mountPath": "/tmp"} in c["volumeMounts"]
    redis = container(objects([REDIS])[("Deployment", "redis")])
    assert redis["livenessProbe"]["exec"]["command"] == ["sh", "-c", "redis-cli ping | grep -q PONG"]
    pg = container(objects([POSTGRES])[("StatefulSet", "postgres")])
    assert pg["startupProbe"]["exec"]["command"] == ["pg_isready", "-q"]
    assert pg["startupProbe"]["failureThreshold"] == 60 // 5 + 5


def test_secrets_are_files_by_reference_and_flags_a_configmap():
    svc = dict(BOT, flags=["pause_new_orders"])
    out = objects([svc, REDIS], feature_flags={"pause_new_orders": True, "other": False})
    pod = out[("Deployment", "market-data")]["spec"]["template"]["spec"]
    (secrets,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    names = [s["secret"]["name"] for s in secrets["projected"]["sources"]]
    assert names == ["cdb-redis-password", "cdb-capital-com-api-key"]
    assert {"name": "secrets", "mountPath": "/run/secrets", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert not [o for o in out.values() if o["kind"] == "Secret"], "no Secret object, no value"
    assert "env" in pod["containers"][0] and all("valueFrom" not in e for e in pod["containers"][0]["env"])
    flags = out[("ConfigMap", "cdb-market-data-flags")]["data"]["flags.json"]
    assert flags == '{"pause_new_orders": true}\n', "exactly the service's flags"


def test_network_policies_follow_depends_on_and_let_prometheus_scrape():
    out = objects([BOT, REDIS])
    redis = out[("NetworkPolicy", "redis-ingress")]["spec"]["ingress"]
    assert redis[0]["from"][0]["podSelector"]["matchExpressions"][0]["values"] == ["market-data"]
    assert redis[0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    bot = out[("NetworkPolicy", "market-data-ingress")]["spec"]["ingress"]
    assert len(bot) == 1 and bot[0]["ports"] == [{"port": 8000, "protocol": "TCP"}], "only Prometheus, nobody depends"
    assert out[("NetworkPolicy", "cdb-default-deny")]["spec"]["policyTypes"] == ["Ingress"]
    annotations = out[("Deployment", "market-data")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    assert out[("PodDisruptionBudget", "market-data")]["spec"]["maxUnavailable"] == 1


def test_analysis_becomes_a_pre_promotion_analysis_template():
    analysis = {
        "prometheus_url": "http://prometheus:9090",
        "interval": 10,
        "min_samples": 3,
        "checks": [{"name": "error rate", "query": "sum(rate(x[1m]))", "condition": "<", "threshold": 0.1}],
    }
    svc = dict(BOT, strategy="blue_green", analysis=analysis)
    out = objects([svc, REDIS])
    blue_green = out[("Rollout", "market-data")]["spec"]["strategy"]["blueGreen"]
    assert blue_green["prePromotionAnalysis"] == {"templates": [{"templateName": "market-data-analysis"}]}
    (metric,) = out[("AnalysisTemplate", "market-data-analysis")]["spec"]["metrics"]
    assert metric["successCondition"] == "all(result, {# < 0.1})"
    assert (metric["interval"], metric["count"], metric["failureLimit"]) == ("10s", 3, 0)
    assert metric["provider"]["prometheus"] == {"address": "http://prometheus:9090", "query": "sum(rate(x[1m]))"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "tradeops/bot"}, "service market_data: image 'tradeops/bot' is not pinned"),
        ({"image": "tradeops/bot:latest"}, "never latest"),
        ({"resources": None}, "service market_data: resources is required"),
        ({"health": None}, "health has neither http nor a healthcheck test"),
        ({"user": "0:0"}, "service market_data: user is root"),
        ({"user": "bot"}, "user 'bot' must be numeric"),
        ({"volumes": ["/srv/data:/data"]}, "is a host path"),
        ({"resources": {"memory": "1.5g", "cpus": 1, "pids": 1}}, "resources.memory '1.5g': give a whole number"),
        ({"depends_on": ["nope"]}, "depends_on names nope"),
        ({"flags": ["unknown_flag"]}, "flags names unknown_flag"),
    ],
)
def test_bad_descriptions_are_refused_naming_the_service_and_field(change, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        objects([dict(BOT, **change), REDIS])


def test_a_depended_on_service_needs_its_ports():
    with pytest.raises(ManifestError, match="service redis: ports is empty, and market_data depend on it"):
        objects([BOT, dict(REDIS, ports=[])])


def test_disabled_services_are_left_out_and_files_carry_the_header():
    files = dump_files(render([BOT, REDIS, dict(POSTGRES, enabled=False)], "cdb"))
    assert sorted(files) == ["_policies.yaml", "kustomization.yaml", "market-data.yaml", "redis.yaml"]
    assert all(text.startswith(HEADER) for text in files.values())
    assert "&id" not in files["market-data.yaml"], "no YAML anchors: each probe is written out"
    assert "- market-data.yaml" in files["kustomization.yaml"]


def test_quantities():
    assert [memory_quantity({}, v) for v in ("256m", "1g", "64k", "1048576")] == ["256Mi", "1Gi", "64Ki", "1048576"]
    assert [cpu_quantity(v) for v in (1.0, 0.5, 2, 0.125)] == ["1", "500m", "2", "125m"]
