"""Per-service release history: pruning keeps the current and the last known-good release."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils._releases import ReleaseHistory
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState


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
