"""_block_report: the data of a paper block report (manifest diff, container changes, broker health, build)."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _block_report
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import PrometheusError

PARAMS = {
    "stack": "cdb",
    "ticks_metric": "tradeops_ticks_total",
    "signals_metric": "tradeops_signals_total",
    "trades_metric": "tradeops_paper_trades_total",
    "broker_up_metric": "capital_com_up",
    "scrape_interval": 15,
}


class FakePrometheus:
    """Answers every total with ``total`` and every series with ``points``; records the queries."""

    def __init__(self, total=5.0, points=(), error=None):
        self._total, self._points, self.error, self.queries = total, list(points), error, []

    def total(self, query, at=None):
        self.queries.append(query)
        if self.error:
            raise PrometheusError(self.error)
        return self._total

    def series_total(self, query, start, end, step):
        self.queries.append(query)
        return self._points


class FakeDocker:
    def __init__(self, events=(), error=None):
        self._events, self.error = list(events), error

    def events(self, **kwargs):
        self.kwargs = kwargs
        if self.error:
            raise self.error
        return iter(self._events)


def test_manifest_changes_report_identity_only():
    before = [
        {"name": "a", "image_id": "sha256:1", "spec_hash": "x", "release": "r1", "restart_count": 0},
        {"name": "b", "image_id": "sha256:2", "spec_hash": "y", "release": "r1"},
    ]
    after = [
        {"name": "a", "image_id": "sha256:1", "spec_hash": "x", "release": "r1", "restart_count": 5, "state": "x"},
        {"name": "b", "image_id": "sha256:3", "spec_hash": "y", "release": "r2"},
        {"name": "c", "image": "img:1", "spec_hash": "z"},
    ]
    assert _block_report.manifest_changes(before, after) == [
        "b image_id: sha256:2 -> sha256:3",
        "b release: r1 -> r2",
        "c added (image img:1, spec z)",
    ]
    assert _block_report.manifest_changes(after, after) == []
    assert _block_report.manifest_changes(before, before[:1]) == ["b removed"]


def test_engine_events_count_starts_and_health_failures_of_the_stack():
    docker = FakeDocker(
        [
            {"id": "aaaaaaaaaaaa1234", "Action": "start", "time": 11, "Actor": {"Attributes": {"name": "cdb-a"}}},
            {"Actor": {"ID": "aaaaaaaaaaaa1234"}, "status": "start", "timeNano": 12_500_000_000},
            {"id": "bbbbbbbbbbbb", "Action": "health_status: unhealthy"},
            {"id": "bbbbbbbbbbbb", "Action": "health_status: healthy"},
        ]
    )
    starts, failures, start_events = _block_report.engine_events(docker, "cdb", 10.2, 20.1)
    assert starts == {"aaaaaaaaaaaa": 2} and failures == {"bbbbbbbbbbbb": 1}
    assert start_events == [(11, "aaaaaaaaaaaa", "cdb-a"), (12.5, "aaaaaaaaaaaa", "aaaaaaaaaaaa")]
    assert docker.kwargs["since"] == 10 and docker.kwargs["until"] == 21
    assert docker.kwargs["filters"] == {"type": "container", "label": "tradeops.stack=cdb"}
    assert _block_report.engine_events(FakeDocker(error=RuntimeError("no events")), "cdb", 0, 1) == ({}, {}, [])


def test_chart_markers_are_restarts_of_existing_containers_and_audited_deploys():
    block = {"started_at": 1000.0, "manifest": [{"name": "cdb-redis", "id": "aaaaaaaaaaaa1234"}]}
    starts = [
        (1100.0, "aaaaaaaaaaaa", "cdb-redis"),  # there at the start: a restart
        (1200.0, "cccccccccccc", "cdb-bot-green"),  # created by a deploy: not a restart
        (1300.0, "cccccccccccc", "cdb-bot-green"),  # but its second start is
    ]
    audit = [
        {"ts": "1970-01-01T00:20:00Z", "action": "rollout", "kind": "upgrade", "service": "bot", "result": "ok"},
        {"ts": "1970-01-01T00:21:00Z", "action": "lock_acquire", "result": "ok"},  # not a change of what runs
        {"ts": "1970-01-01T00:10:00Z", "action": "rollout", "kind": "create", "service": "old", "result": "ok"},
        {"ts": "garbage", "action": "flag_flip", "flag": "x", "result": "ok"},
    ]
    assert _block_report.chart_markers(block, starts, audit, until=2000.0) == [
        {"kind": "restart", "ts": 1100.0, "label": "cdb-redis"},
        {"kind": "deploy", "ts": 1200.0, "label": "upgrade bot (ok)"},
        {"kind": "restart", "ts": 1300.0, "label": "cdb-bot-green"},
    ]
    assert _block_report.chart_markers(block, starts, audit, until=1150.0) == [
        {"kind": "restart", "ts": 1100.0, "label": "cdb-redis"}
    ]


def test_outages_merge_consecutive_down_steps():
    up = [(0, 1), (10, 0), (20, 0), (30, 1), (40, 0)]
    assert _block_report.outages(up, 10) == [{"start": 10, "end": 30}, {"start": 40, "end": 50}]


def test_container_changes_flag_restarts_replacements_new_and_missing():
    block = {
        "manifest": [
            {"name": "cdb-a", "id": "a1", "service": "a", "restart_count": 1, "started_at": "t0"},
            {"name": "cdb-b", "id": "b1", "service": "b", "restart_count": 0, "started_at": "t0"},
            {"name": "cdb-gone", "id": "g1", "service": "gone"},
        ]
    }
    now = [
        {"name": "cdb-a", "id": "a1", "service": "a", "restart_count": 3, "started_at": "t0", "state": "running"},
        {"name": "cdb-b", "id": "b2", "service": "b", "restart_count": 0, "started_at": "t1", "state": "running"},
        {"name": "cdb-new", "id": "n1", "service": "new", "state": "exited", "health": None},
    ]
    out = {c["name"]: c for c in _block_report.container_changes(block, now, {"n1": 1}, {"a1": 2})}
    assert out["cdb-a"]["restarts"] == 2 and out["cdb-a"]["health_failures"] == 2
    assert out["cdb-b"]["replaced"] and out["cdb-b"]["restarts"] == 1
    assert out["cdb-new"]["new"] and out["cdb-new"]["restarts"] == 1
    assert out["cdb-gone"] == {
        "name": "cdb-gone",
        "service": "gone",
        "state": "missing",
        "health": None,
        "missing": True,
        "restarts": 0,
    }
    assert _block_report.unhealthy(list(out.values())) == ["cdb-new", "cdb-gone"]


def test_broker_health_reads_the_first_textfile_there_is(broker_textfile, tmp_path):
    health = _block_report.broker_health([str(tmp_path / "missing.prom"), str(broker_textfile)])
    assert health == {
        "path": str(broker_textfile),
        "up": False,
        "failing_checks": ["market:OIL_CRUDE"],
        "last_check": 1795398165.5,
    }
    assert _block_report.broker_health([str(tmp_path / "missing.prom")]) is None


def test_paths(stack_state):
    paths = _block_report.paths(stack_state, "b1")
    assert paths["json"] == stack_state.sub("reports", "b1", "report.json")
    assert paths["markdown"].endswith("/reports/b1/report.md") and paths["svg"].endswith("/reports/b1/report.svg")


BLOCK = {"id": "b1", "status": "completed", "started_at": 1000.0, "manifest": []}


def test_build_a_block_shorter_than_the_window_has_totals_and_no_verdict():
    prom = FakePrometheus(total=4.4, points=[(1000.0, 1.0)])
    report = _block_report.build(PARAMS, BLOCK, 4600.0, [], [], 86400, None, prom)
    assert report["totals"] == {"ticks": 4, "signals": 4, "trades": 4}
    assert report["zai_note"] == "The block was shorter than the ZAI window (86400s): no verdict."
    assert report["zai_episodes"] == [] and report["duration_seconds"] == 3600
    assert report["broker_health"]["evaluated_steps"] == 1 and report["broker_health"]["down_steps"] == 0
    assert "sum(increase(tradeops_ticks_total[3600s]))" in prom.queries
    assert "sum(rate(tradeops_ticks_total[60s])) * 60" in prom.queries  # 4 x scrape_interval
    assert report["_svg"].startswith("<svg") and "Paper block b1 (completed) on cdb" in report["_svg"]
    assert "manifest" not in report["block"]


def test_build_finds_zai_episodes_once_the_block_is_older_than_the_window():
    prom = FakePrometheus(points=[])  # no data over the window: silent
    report = _block_report.build(PARAMS, BLOCK, 1100.0, [], [], 20, None, prom)
    assert report["zai_note"] is None and report["zai_episodes"][0]["first_silent_step"] == 1020.0
    assert report["broker_health"]["down_steps"] is None  # no broker series: unknown


def test_build_records_prometheus_failing_instead_of_raising():
    prom = FakePrometheus(error="cannot reach Prometheus at http://127.0.0.1:1")
    report = _block_report.build(PARAMS, BLOCK, 2000.0, [], [], 20, {"up": True}, prom)
    assert report["prometheus_error"] == "cannot reach Prometheus at http://127.0.0.1:1"
    assert report["zai_note"] == "Unknown: Prometheus could not be queried."
    assert report["totals"] == {"ticks": None, "signals": None, "trades": None}
    assert report["broker_health"]["textfile"] == {"up": True}


@pytest.mark.parametrize("until", [1001.0, 1000.0])
def test_build_counts_a_block_of_under_a_second_as_one_second(until):
    report = _block_report.build(PARAMS, BLOCK, until, [], [], 20, None, FakePrometheus())
    assert report["duration_seconds"] == 1.0
