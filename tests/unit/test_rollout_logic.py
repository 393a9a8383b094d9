"""Pure logic of the rollout: release history and pruning, spec hashing and masking, parsing, analysis rules."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _docker as D
from ansible_collections.tradeops.stack.plugins.module_utils import _spec as S
from ansible_collections.tradeops.stack.plugins.module_utils._releases import ReleaseHistory
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import analysis as A
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import split_ref


def params(**kw):
    base = {
        "image": "t/app:1",
        "command": None,
        "entrypoint": None,
        "env": {"B": "2", "A": "1"},
        "volumes": [],
        "networks": [{"name": "net", "aliases": []}],
        "published_ports": ["8080:8000"],
        "publish_address": "127.0.0.1",
        "labels": {},
        "user": "10001",
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "cap_add": [],
        "security_opt": ["no-new-privileges:true"],
        "resources": {"memory": "64m", "cpus": 0.5, "pids": 64},
        "healthcheck": {
            "test": "wget -q localhost",
            "interval": "2s",
            "timeout": "1s",
            "retries": 3,
            "start_period": "5s",
        },
        "restart_policy": "unless-stopped",
        "stop_timeout": 10,
        "log": None,
    }
    base.update(kw)
    return base


def test_spec_hash_is_stable_and_sensitive():
    a = S.desired_spec(params(), "sha256:1", {"pw": "fp1"})
    b = S.desired_spec(params(env={"A": "1", "B": "2"}), "sha256:1", {"pw": "fp1"})
    assert S.spec_hash(a) == S.spec_hash(b)  # dict order does not matter
    assert S.spec_hash(a) != S.spec_hash(S.desired_spec(params(), "sha256:2", {"pw": "fp1"}))  # image id
    assert S.spec_hash(a) != S.spec_hash(S.desired_spec(params(), "sha256:1", {"pw": "fp2"}))  # secret content
    assert a["ports"] == {"8000/tcp": ["127.0.0.1", 8080]}
    assert a["healthcheck"]["StartPeriod"] == 5 * 10**9 and a["healthcheck"]["Test"] == [
        "CMD-SHELL",
        "wget -q localhost",
    ]
    assert a["log"] == {"driver": "json-file", "options": {"max-file": "3", "max-size": "10m"}}


def test_a_services_own_security_opt_keeps_no_new_privileges():
    spec = S.desired_spec(params(security_opt=["apparmor=tradeops-bot"]), "sha256:1", {})
    assert spec["security_opt"] == ["apparmor=tradeops-bot", "no-new-privileges:true"]
    assert S.desired_spec(params(), "sha256:1", {})["security_opt"] == ["no-new-privileges:true"]


def test_masked_spec_and_diff_never_show_fingerprints():
    spec = S.desired_spec(params(), "sha256:1", {"pw": "fp-new"})
    before = S.desired_spec(params(), "sha256:1", {"pw": "fp-old"})
    out = S.diff_spec(spec, before)
    assert out["secrets"] == {"pw": S.MASK + " (changed)"}
    assert "fp-new" not in repr(out) and "fp-new" in repr(spec)
    assert S.diff_spec(before, None)["secrets"] == {"pw": S.MASK}


def test_fingerprint_is_keyed():
    assert D.fingerprint(b"k1", b"secret") != D.fingerprint(b"k2", b"secret")
    assert D.fingerprint(b"k1", b"secret") == D.fingerprint(b"k1", b"secret")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("8000", ("8000/tcp", ("127.0.0.1", None))),
        ("18080:8000", ("8000/tcp", ("127.0.0.1", 18080))),
        ("0.0.0.0:53:53/udp", ("53/udp", ("0.0.0.0", 53))),  # noqa: S104 - explicit opt-in is kept
    ],
)
def test_parse_port(item, expected):
    assert D.parse_port(item, "127.0.0.1") == expected


def test_parse_port_rejects_garbage():
    with pytest.raises(ValueError, match="ports must be numbers"):
        D.parse_port("http:8000", "127.0.0.1")


def test_durations_and_health_budget():
    assert D.duration_ns("1m30s") == 90 * 10**9
    assert D.duration_ns("250ms") == 250 * 10**6
    assert D.duration_ns(3) == 3 * 10**9
    with pytest.raises(ValueError, match="healthcheck.interval '5 parsecs' is not a duration"):
        D.duration_ns("5 parsecs", "healthcheck.interval")
    hc = {"Test": ["CMD", "x"], "Interval": 2 * 10**9, "Retries": 3, "StartPeriod": 10 * 10**9}
    assert D.health_budget(hc) == 16
    assert D.health_budget({"Test": ["NONE"]}) is None
    assert D.health_budget(None) is None


def test_split_ref():
    assert split_ref("repo/app") == ("repo/app", "latest")
    assert split_ref("registry:5000/app:1.2") == ("registry:5000/app", "1.2")
    assert split_ref("app@sha256:abc") == ("app", "sha256:abc")


def _history(tmp_path):
    return ReleaseHistory(StackState("t-ro-unit", str(tmp_path)), "svc").load()


def _spec(n):
    return {"image": "app:%d" % n, "image_id": "sha256:%d" % n}


def test_prune_keeps_current_and_last_known_good(tmp_path):
    h = _history(tmp_path)
    good = h.add("a" * 24, _spec(1), "exclusive", now=1000)
    h.promote(good)
    # eight failed attempts after the last good one
    for i in range(8):
        rel = h.add("%024d" % i, _spec(i + 2), "exclusive", now=2000 + i)
        h.fail(rel, "rolled_back", "unhealthy")
    pruned = h.prune(3)
    ids = [r["id"] for r in h.releases]
    assert good["id"] in ids and len(ids) == 3
    assert good["id"] not in [r["id"] for r in pruned]
    assert h.data["last_known_good"] == good["id"]
    h.save()
    again = _history(tmp_path)
    assert [r["id"] for r in again.releases] == ids


def test_cycles_between_two_versions_keep_both_releases(tmp_path):
    # deploy B / roll back to A, many times: A must stay a rollback target whatever keep is
    h = _history(tmp_path)
    a = h.add("a" * 24, _spec(1), "blue_green", now=1000)
    h.promote(a)
    for cycle in range(10):
        b = h.add("b" * 24, _spec(2), "blue_green", now=2000 + cycle)
        assert b["result"] == "pending" and "reason" not in b
        h.promote(b)
        h.promote(h.get(a["id"]))
        h.prune(2)
    assert [r["spec_hash"][0] for r in h.releases] == ["a", "b"]
    assert h.get(a["id"]) is not None and b["redeployed_at"]
    failed = h.add("b" * 24, _spec(2), "blue_green", now=3000)
    h.fail(failed, "rolled_back", "unhealthy")
    again = h.add("b" * 24, _spec(2), "blue_green", now=3001)
    assert again is failed and again["result"] == "pending" and "reason" not in again
    assert h.releases[-1] is again and len(h.releases) == 2


def test_previous_good_find_and_promote(tmp_path):
    h = _history(tmp_path)
    r1 = h.add("1" * 24, _spec(1), "blue_green", now=1000)
    h.promote(r1, colour="blue")
    r2 = h.add("2" * 24, _spec(2), "blue_green", now=2000)
    h.promote(r2, colour="green")
    bad = h.add("3" * 24, _spec(3), "blue_green", now=3000)
    h.fail(bad, "rolled_back", "crash")
    assert r1["result"] == "superseded" and r2["result"] == "active"
    assert h.previous_good()["id"] == r1["id"]  # never the failed one, never the current one
    assert h.find(r1["id"][:12])["id"] == r1["id"]
    assert h.find("app:2")["id"] == r2["id"]
    assert h.find("333")["id"] == bad["id"]
    assert h.find("nope") is None
    assert h.data["active_colour"] == "green"
    assert h.summary()[0]["id"] == bad["id"] and "spec" not in h.summary()[0]


def test_invalid_service_name(tmp_path):
    with pytest.raises(ValueError, match="service name"):
        ReleaseHistory(StackState("t-ro-unit", str(tmp_path)), "../etc")


class FakeMeasure:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def __call__(self, checks, url):
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        return outcome, [{"check": "c", "result": outcome, "error": "no data" if outcome == "inconclusive" else None}]


def analysis(monkeypatch, outcomes, **cfg):
    monkeypatch.setattr(A, "measure", FakeMeasure(outcomes))
    monkeypatch.setattr(A.time, "sleep", lambda s: None)
    base = {
        "prometheus_url": "http://x",
        "checks": [],
        "interval": 0,
        "min_samples": 2,
        "failure_limit": 0,
        "bake": 0,
        "inconclusive": "wait",
        "inconclusive_timeout": 0,
    }
    base.update(cfg)
    warnings = []
    return A.Analysis(base, warnings.append), warnings


def test_analysis_needs_min_samples_and_fails_on_failure(monkeypatch):
    a, _ = analysis(monkeypatch, ["pass", "pass"])
    a.run("pre", None)
    assert a.report["pre"] == {
        "result": "pass",
        "measurements": 2,
        "last": [{"check": "c", "result": "pass", "error": None}],
    }
    a, _ = analysis(monkeypatch, ["pass", "fail"])
    with pytest.raises(RolloutFailed, match=r"analysis \(pre\) failed"):
        a.run("pre", None)
    a, _ = analysis(monkeypatch, ["fail", "pass", "pass"], failure_limit=1)
    a.run("pre", None)
    assert a.report["pre"]["measurements"] == 3


def test_no_data_is_never_a_silent_pass(monkeypatch):
    a, _ = analysis(monkeypatch, ["inconclusive"], inconclusive="wait", inconclusive_timeout=0)
    with pytest.raises(RolloutFailed, match="inconclusive"):
        a.run("pre", None)
    a, _ = analysis(monkeypatch, ["inconclusive"], inconclusive="fail")
    with pytest.raises(RolloutFailed, match="inconclusive: c: inconclusive"):
        a.run("pre", None)
    a, warnings = analysis(monkeypatch, ["inconclusive"], inconclusive="pass")
    a.run("pre", None)
    assert warnings and "treated as a pass" in warnings[0]
