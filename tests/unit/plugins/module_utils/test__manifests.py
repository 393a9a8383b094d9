"""_manifests.py: the compare-and-swap and the history merge behind stack_state (pure logic)."""

import calendar
import hashlib

import pytest
from ansible.plugins.filter.core import to_json
from ansible_collections.tradeops.stack.plugins.module_utils import _manifests as m

BODY = {"stack": "cdb", "flags": {"pause_new_orders": False}, "order": ["postgres"], "services": {"postgres": {}}}
NOW = calendar.timegm((2026, 12, 1, 10, 15, 30))


def manifest(mid, **extra):
    return {
        **BODY,
        "id": mid,
        "created_at": "2026-12-01T10:00:00Z",
        "created_by": "alice@ctl",
        "kind": "deploy",
        **extra,
    }


def test_content_hash_is_the_one_the_yaml_manifests_always_had():
    # manifests written before this module hashed to_json(sort_keys=true); a no-op deploy must still match them
    assert m.content_hash(BODY) == hashlib.sha256(to_json(BODY, sort_keys=True).encode()).hexdigest()


def test_a_new_manifest_is_named_by_time_and_content_and_is_not_known_good():
    new = m.new_manifest(BODY, "flags", "flag x=true", "bob@ctl", now=NOW)
    assert new["id"] == "20261201T101530Z-" + m.content_hash(BODY)[:8]
    assert m.valid_id(new["id"])
    assert (new["kind"], new["known_good"], new["created_at"]) == ("flags", False, "2026-12-01T10:15:30Z")
    clash = m.new_manifest(BODY, "flags", "", "", taken_ids={new["id"]}, now=NOW)
    assert clash["id"] == new["id"] + "x"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "20261201T101530Z-abcdef12\n", "current", "", None])
def test_invalid_ids_are_refused(bad):
    assert not m.valid_id(bad)


def test_merge_keeps_every_other_record_and_replaces_the_one_with_the_same_id():
    history = [
        m.history_record(manifest("20261201T100000Z-aaaaaaaa")),
        m.history_record(manifest("20261201T110000Z-cccccccc")),
    ]
    merged = m.merge_history(history, manifest("20261201T103000Z-bbbbbbbb", kind="flags"))
    assert [r["id"] for r in merged] == [
        "20261201T100000Z-aaaaaaaa",
        "20261201T103000Z-bbbbbbbb",
        "20261201T110000Z-cccccccc",
    ]
    marked = m.merge_history(merged, manifest("20261201T100000Z-aaaaaaaa", known_good=True, verified_at="t"))
    assert len(marked) == 3
    assert marked[0] == {
        "id": "20261201T100000Z-aaaaaaaa",
        "created_at": "2026-12-01T10:00:00Z",
        "known_good": True,
        "kind": "deploy",
        "reason": "",
        "verified_at": "t",
    }
    assert marked[1]["kind"] == "flags"
    assert history[0]["known_good"] is False  # the input is not modified


def test_compare_and_swap_names_what_changed_and_who():
    m.check_current("", {}, "cdb", "commit")
    m.check_current("20261201T100000Z-aaaaaaaa", manifest("20261201T100000Z-aaaaaaaa"), "cdb", "commit")
    other = manifest("20261201T103000Z-bbbbbbbb", kind="flags", reason="flag pause_new_orders=true")
    with pytest.raises(m.ManifestConflict) as exc:
        m.check_current("20261201T100000Z-aaaaaaaa", other, "cdb", "commit")
    msg = str(exc.value)
    for part in (
        "20261201T100000Z-aaaaaaaa",
        "20261201T103000Z-bbbbbbbb",
        "flags by alice@ctl",
        "flag pause_new_orders=true",
    ):
        assert part in msg
    with pytest.raises(m.ManifestConflict, match="read no manifest"):
        m.check_current("", other, "cdb", "commit")


def test_commit_of_the_current_content_keeps_the_current_manifest():
    current = m.new_manifest(BODY, "deploy", "", "", now=NOW)
    kept, new = m.plan_commit(current, [m.history_record(current)], BODY, "deploy", "again", "bob@ctl")
    assert (kept, new) == (current, False)
    changed = dict(BODY, flags={"pause_new_orders": True})
    made, new = m.plan_commit(current, [m.history_record(current)], changed, "flags", "flip", "bob@ctl", now=NOW)
    assert new and made["id"] != current["id"] and made["flags"] == {"pause_new_orders": True}


def test_known_good_only_for_the_current_manifest():
    mine, theirs = manifest("20261201T100000Z-aaaaaaaa"), manifest("20261201T103000Z-bbbbbbbb")
    with pytest.raises(m.ManifestConflict, match="known-good"):
        m.plan_known_good(mine["id"], theirs, mine, "cdb")
    marked, changed = m.plan_known_good(mine["id"], mine, mine, "cdb", now=NOW)
    assert changed and marked["known_good"] and marked["verified_at"] == "2026-12-01T10:15:30Z"
    assert m.plan_known_good(mine["id"], marked, marked, "cdb") == (marked, False)
