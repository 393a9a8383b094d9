"""paper_block: pure logic (durations, ids, ZAI verdict and episodes, manifest diff, textfile parsing,
report rendering) and the module's main() in-process on real temporary state directories.

The in-process runs use the real Docker engine (a stack name with no containers, so the manifest is empty)
and a Prometheus URL where nothing listens: they test argument refusals, check mode, diff and what an
interrupted run leaves behind, all of which happen before or without Prometheus.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.tradeops.stack.plugins.module_utils import _report, _textfile
from ansible_collections.tradeops.stack.plugins.modules import paper_block as pb

SVG = "{http://www.w3.org/2000/svg}"


# --------------------------------------------------------------------------- pure logic
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("72h", 259200), ("3d", 259200), ("1h30m", 5400), ("20s", 20), ("259200", 259200), ("1.5", 1.5), ("30d", 2592000)],
)
def test_parse_duration_accepts_units_and_seconds(text, seconds):
    assert pb.parse_duration("duration", text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3 days", "duration '3 days' is not a duration"),
        ("", "duration '' is not a duration"),
        ("h", "duration 'h' is not a duration"),
        ("-5", "duration '-5' is not a duration"),
        ("0s", "duration '0s' is out of range"),
        ("31d", "duration '31d' is out of range"),
        ("0.5", "duration '0.5' is out of range"),
    ],
)
def test_parse_duration_rejects_with_the_option_named(text, message):
    with pytest.raises(pb.BlockError, match="^" + message.replace("(", r"\(")):
        pb.parse_duration("duration", text)


@pytest.mark.parametrize("good", ["b1", "2026-w48.momentum_v1", "A" * 64])
def test_valid_ids(good):
    assert pb.validate_id(good) == good


@pytest.mark.parametrize("bad", ["", "-x", "../etc", "a/b", "active", "A" * 65, "spaces here", ".hidden"])
def test_invalid_ids(bad):
    with pytest.raises(pb.BlockError, match="id .* is invalid"):
        pb.validate_id(bad)


class _Verdict(pb.PaperBlock):
    def __init__(self, window):  # only what zai_verdict needs
        self.p = type("P", (), {"zai_window": window})()


@pytest.mark.parametrize(
    ("signals", "trades", "elapsed", "zai"),
    [
        (None, None, 100, True),  # no data is not activity
        (0, None, 100, True),
        (0, 0, 100, True),
        (1, None, 100, False),
        (None, 2, 100, False),
        (None, None, 10, False),  # the block is younger than the window: no verdict yet
    ],
)
def test_zai_verdict(signals, trades, elapsed, zai):
    verdict, reason = _Verdict(20).zai_verdict(elapsed, {"seconds": 20, "signals": signals, "trades": trades})
    assert verdict is zai
    if signals is None:
        assert "signals: no data" in reason


def test_zai_episodes_from_window_series():
    # window 20 s, evaluated every 5 s from t=120; silence from 140 to 160 inclusive, then again from 190 to the end
    sig = {120.0: 3, 125.0: 1, 130.0: 1, 135.0: 1, 165.0: 2, 170.0: 1, 175.0: 1, 180.0: 1, 185.0: 0}
    trd = {120.0: 1, 125.0: 0, 140.0: 0, 185.0: 1}
    episodes = pb.zai_episodes(120.0, 200.0, 5, 20, sig, trd)
    assert [(e["first_silent_step"], e["end"]) for e in episodes] == [(140.0, 165.0), (190.0, None)]
    assert episodes[0]["start"] == 120.0 and episodes[0]["seconds"] == 45.0
    assert episodes[1]["seconds"] == 30.0  # still silent at the end (200): from 170


def test_zai_episodes_none_when_always_active():
    ts = {float(t): 1 for t in range(0, 101, 10)}
    assert pb.zai_episodes(0.0, 100.0, 10, 30, ts, {}) == []


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
    assert pb.manifest_changes(before, after) == [
        "b image_id: sha256:2 -> sha256:3",
        "b release: r1 -> r2",
        "c added (image img:1, spec z)",
    ]
    assert pb.manifest_changes(after, after) == []
    assert pb.manifest_changes(before, before[:1]) == ["b removed"]


def test_parse_textfile_of_capital_com_health(tmp_path):
    path = tmp_path / "capital_com.prom"
    path.write_text(
        "# HELP capital_com_up x\n# TYPE capital_com_up gauge\ncapital_com_up 0\n"
        'capital_com_check_ok{check="login"} 1\ncapital_com_check_ok{check="market:OIL_CRUDE"} 0\n'
        "capital_com_last_check_timestamp_seconds 1795398165.5\ngarbage line\n"
    )
    parsed = _textfile.parse(str(path))
    assert parsed[("capital_com_up", ())] == 0
    assert parsed[("capital_com_check_ok", (("check", "market:OIL_CRUDE"),))] == 0
    assert _textfile.parse(str(tmp_path / "missing.prom")) is None


def test_svg_draws_gaps_as_gaps_and_shades_zai():
    series = {
        "ticks": [(0, 10), (10, 12), (20, 11), (60, 9), (70, 10)],  # 30..50 missing: no data
        "signals": [],
        "trades": [(0, 1), (10, 0)],
    }
    svg = _report.render_svg(series, 0, 80, episodes=[{"start": 20, "end": 50}], title="t <&> block")
    root = ET.fromstring(svg)  # noqa: S314 - well-formed, escaped
    assert len(root.findall(f"{SVG}polyline[@class='series-ticks']")) == 2
    assert len(root.findall(f"{SVG}polyline[@class='series-trades']")) == 1
    assert not root.findall(f"{SVG}polyline[@class='series-signals']")
    assert "no data" in [t.text for t in root.findall(f"{SVG}text")]
    assert len(root.findall(f"{SVG}rect[@class='zai']")) == 3  # one per panel
    assert "t &lt;&amp;&gt; block" in svg


def _report_dict(**over):
    report = {
        "stack": "cdb",
        "block": {
            "id": "b1",
            "status": "aborted",
            "operator": "alice",
            "reason": "r|x",
            "started_at": 0,
            "ended_at": 3600,
            "duration_seconds": 259200,
            "trading_mode": "paper",
            "close_reason": "outage",
        },
        "duration_seconds": 3600,
        "zai_window_seconds": 86400,
        "totals": {"ticks": 100, "signals": 0, "trades": None},
        "zai_episodes": [],
        "zai_note": "The block was shorter than the ZAI window (86400s): no verdict.",
        "containers": [{"name": "cdb-x", "service": "x", "restarts": 2, "health": "healthy", "state": "running"}],
        "restarts_total": 2,
        "manifest_changed": True,
        "manifest_changes": ["cdb-x image_id: a -> b"],
        "manifest_start": [{"name": "cdb-x", "image": "i", "image_id": "a", "spec_hash": "h", "release": "r"}],
        "broker_health": {
            "textfile": {"up": False, "failing_checks": ["login"], "last_check": 10},
            "down_steps": 3,
            "evaluated_steps": 10,
            "down_seconds": 90,
        },
        "prometheus_error": None,
    }
    report.update(over)
    return report


def test_markdown_report_says_no_data_changes_and_broker_failures():
    md = _report.render_markdown(_report_dict())
    assert "# Paper block b1: aborted" in md
    assert "| Paper trades | no data |" in md and "| Signals | 0 |" in md
    assert "| Abort reason | outage |" in md and "r\\|x" in md
    assert "CHANGED during the block" in md and "- cdb-x image_id: a -> b" in md
    assert "capital_com_up was 0 at 3 of 10 evaluated steps (1m 30s)" in md and "failing checks: login" in md
    assert "shorter than the ZAI window" in md
    assert "| cdb-x | x | 2 | - | healthy | running |" in md


def test_human_duration():
    assert _report.human_duration(259200) == "3d"
    assert _report.human_duration(5400) == "1h 30m"
    assert _report.human_duration(0) == "0s"


# --------------------------------------------------------------------------- main() in-process
def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def env(tmp_path):
    docker = pytest.importorskip("docker")
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run `make bootstrap` (it starts one)")
    stack = "tpbunit" + secrets.token_hex(3)  # no container carries this stack label
    return {
        "stack": stack,
        "state_root": str(tmp_path / "state"),
        "prometheus_url": "http://127.0.0.1:%d" % closed_port(),
        "prometheus_timeout": 2,
    }


def run_main(args, check=False, diff=False):
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        pb.main()
    return json.loads(out.getvalue())


def files(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"state": "started", "reason": "r"}, "id is required to start a block"),
        ({"state": "started", "id": "b1"}, "reason is required to start a block"),
        ({"state": "started", "id": "b1", "reason": "  "}, "reason is required to start a block"),
        ({"state": "aborted"}, "reason is required to abort a block"),
        ({"state": "started", "id": "active", "reason": "r"}, "'active' is a reserved word"),
        ({"state": "started", "id": "b1", "reason": "r", "duration": "0s"}, "duration '0s' is out of range"),
        ({"state": "started", "id": "b1", "reason": "r", "duration": "90d"}, "duration '90d' is out of range"),
        ({"state": "status", "zai_window": "soon"}, "zai_window 'soon' is not a duration"),
        ({"state": "status", "scrape_interval": 0}, "scrape_interval must be a positive number"),
        ({"state": "status", "signals_metric": ""}, "signals_metric must be a metric name"),
        ({"state": "started", "id": "b1", "reason": "r", "trading_mode": "live"}, "trading_mode is 'live'"),
        ({"state": "completed"}, "no paper block is active on stack"),
        ({"state": "completed", "id": "nope"}, "no paper block nope exists"),
    ],
)
def test_refusals_name_the_option_and_write_nothing(env, args, message):
    res = run_main(dict(env, **args))
    assert res["failed"] and message in res["msg"], res
    assert files(env["state_root"]) == []


def test_check_mode_start_predicts_with_diff_and_writes_nothing(env):
    res = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"), check=True, diff=True)
    assert res["changed"] and res["diff"]["before"] == {} and res["diff"]["after"]["id"] == "b1"
    assert res["diff"]["after"]["planned_end"] - res["diff"]["after"]["started_at"] == 3600
    assert res["metrics_file"] is None
    assert files(env["state_root"]) == []


def test_status_without_a_block_is_quiet_and_read_only(env):
    res = run_main(dict(env, state="status", fail_on_zai=True))
    assert res["changed"] is False and res["active"] is False and not res.get("failed")


def test_block_survives_and_status_needs_prometheus(env):
    started = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"))
    assert started["changed"] and started["block"]["manifest"] == []
    again = run_main(dict(env, state="started", id="b1", reason="unit", duration="1h"))
    assert again["changed"] is False
    status = run_main(dict(env, state="status"))
    assert status["failed"] and "cannot reach Prometheus" in status["msg"]
    aborted = run_main(dict(env, state="aborted", reason="prometheus is down"), diff=True)
    assert aborted["changed"] and aborted["report"]["prometheus_error"].startswith("cannot reach Prometheus")
    assert aborted["report"]["totals"] == {"ticks": None, "signals": None, "trades": None}
    assert aborted["diff"]["before"]["id"] == "b1" and aborted["diff"]["after"] == {}
    stack = Path(env["state_root"]) / env["stack"]
    assert json.loads((stack / "blocks" / "b1.json").read_text())["close_reason"] == "prometheus is down"
    assert (stack / "reports" / "b1" / "report.md").read_text().startswith("# Paper block b1: aborted")


class Crash(BaseException):
    """A process killed between two writes (BaseException: nothing in the module may swallow it)."""


def crash_after(monkeypatch, writes):
    real = pb.atomic_write_json
    count = {"n": 0}

    def write(path, data, mode=0o640):
        if count["n"] == writes:
            raise Crash(path)
        count["n"] += 1
        real(path, data, mode=mode)

    monkeypatch.setattr(pb, "atomic_write_json", write)


def all_json_valid(root):
    for path in Path(root).rglob("*.json"):
        json.loads(path.read_text())  # raises on a half-written file
    return True


def test_crash_between_start_writes_leaves_a_block_status_sees_and_the_rerun_converges(env, monkeypatch):
    crash_after(monkeypatch, 1)  # the freeze (active.json) written, the history record not
    with pytest.raises(Crash):
        run_main(dict(env, state="started", id="b1", reason="unit"))
    stack = Path(env["state_root"]) / env["stack"]
    assert all_json_valid(stack) and not (stack / "blocks" / "b1.json").exists()
    assert not [p for p in (stack / "blocks").iterdir() if p.name.startswith(".")]  # no temp file left
    monkeypatch.undo()
    # what status and rollout's freeze read (status itself also needs Prometheus)
    assert pb.StackState(env["stack"], env["state_root"]).active_block()["id"] == "b1"
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["changed"] and "interrupted run" in res["msg"]
    assert json.loads((stack / "blocks" / "b1.json").read_text())["status"] == "active"
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"] is False


def test_a_history_record_an_older_version_wrote_without_active_json_is_finished(env):
    # the order before this version wrote the history record first: a start cut there is finished by a re-run
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    (stack / "blocks" / "active.json").unlink()
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["changed"] and "not marked active" in res["msg"]
    assert json.loads((stack / "blocks" / "active.json").read_text())["id"] == "b1"


@pytest.mark.parametrize("failing", ["history", "audit"])
def test_a_start_whose_history_or_audit_write_fails_leaves_no_block(env, monkeypatch, failing):
    stack = Path(env["state_root"]) / env["stack"]
    if failing == "history":
        real = pb.atomic_write_json

        def write(path, data, mode=0o640):
            if path.endswith("b1.json"):
                raise pb.StateError("cannot write state file %s: No space left on device" % path)
            real(path, data, mode=mode)

        monkeypatch.setattr(pb, "atomic_write_json", write)
    else:

        def audit(self, action, result, **fields):
            raise pb.StateError("cannot append to the audit log %s: No space left on device" % self.sub("audit.log"))

        monkeypatch.setattr(pb.StackState, "audit", audit)
    res = run_main(dict(env, state="started", id="b1", reason="unit"))
    assert res["failed"] and "No space left on device" in res["msg"] and "the block was not started" in res["msg"]
    assert ("b1.json" if failing == "history" else "audit.log") in res["msg"]
    assert not (stack / "blocks" / "active.json").exists() and not (stack / "blocks" / "b1.json").exists()
    monkeypatch.undo()
    assert pb.StackState(env["stack"], env["state_root"]).active_block() is None


@pytest.mark.parametrize("writes", [0, 1])
def test_crash_between_close_writes_leaves_valid_json_and_the_rerun_converges(env, monkeypatch, writes):
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    crash_after(monkeypatch, writes)  # 0: before report.json; 1: report written, history not closed
    with pytest.raises(Crash):
        run_main(dict(env, state="completed"))
    assert all_json_valid(stack)
    assert json.loads((stack / "blocks" / "active.json").read_text())["status"] == "active"  # still frozen
    monkeypatch.undo()
    res = run_main(dict(env, state="completed"))
    assert res["changed"] and res["block"]["status"] == "completed"
    assert not (stack / "blocks" / "active.json").exists()
    assert json.loads((stack / "reports" / "b1" / "report.json").read_text())["block"]["status"] == "completed"


def test_crash_after_closing_history_before_lifting_the_freeze(env, monkeypatch):
    assert run_main(dict(env, state="started", id="b1", reason="unit"))["changed"]
    stack = Path(env["state_root"]) / env["stack"]
    real_unlink = pb.os.unlink

    def crash_on_active(path):
        if str(path).endswith("active.json"):
            raise Crash(path)
        real_unlink(path)

    monkeypatch.setattr(pb.os, "unlink", crash_on_active)
    with pytest.raises(Crash):
        run_main(dict(env, state="completed"))
    monkeypatch.undo()
    assert all_json_valid(stack)
    assert json.loads((stack / "blocks" / "b1.json").read_text())["status"] == "completed"
    res = run_main(dict(env, state="completed"))
    assert res["changed"] and "removed the stale active marker" in res["msg"]
    assert not (stack / "blocks" / "active.json").exists()
    assert run_main(dict(env, state="completed", id="b1"))["changed"] is False
    actions = [json.loads(line)["action"] for line in (stack / "audit.log").read_text().splitlines()]
    assert actions == ["paper_block_start", "paper_block_recover"]
