"""_textfile: the collection's one Prometheus textfile writer and parser, and where the files live."""

from __future__ import annotations

import os
import stat

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _textfile
from ansible_collections.tradeops.stack.plugins.module_utils._state import StateError


def test_file_names_are_the_ones_alerts_and_roles_read():
    assert _textfile.path("/var/lib/tradeops", "cdb", _textfile.PAPER_BLOCK) == (
        "/var/lib/tradeops/cdb/metrics/paper_block.prom"
    )
    assert _textfile.path("/r", "cdb", _textfile.CAPITAL_COM) == "/r/cdb/metrics/capital_com.prom"
    assert [_textfile.file_name(n) for n in _textfile.BROKER_HEALTH] == ["capital_com.prom", "capital_com_health.prom"]


def test_sample_lines_escape_labels_and_spell_values():
    assert _textfile.sample_line("x_up", True, {"check": 'a"b\\c\nd'}) == 'x_up{check="a\\"b\\\\c\\nd"} 1'
    assert _textfile.sample_line("y", 1.5) == "y 1.5"
    assert _textfile.sample_line("y", None) == "y NaN"
    assert _textfile.sample_line("y", False) == "y 0"
    assert _textfile.sample_line("y", 3) == "y 3"
    assert _textfile.sample_line("z", 1, {"b": "2", "a": "1"}) == 'z{a="1",b="2"} 1'


def test_render_groups_each_family_once_with_help_and_type_in_first_seen_order():
    lines = _textfile.render(
        [
            ("capital_com_check_ok", True, {"check": "time"}),
            ("capital_com_rate_limited_total", 4, None),
            ("capital_com_check_ok", False, {"check": "login"}),
        ]
    )
    assert lines == [
        "# HELP capital_com_check_ok 1 when the named check passed in the last health check, else 0.",
        "# TYPE capital_com_check_ok gauge",
        'capital_com_check_ok{check="time"} 1',
        'capital_com_check_ok{check="login"} 0',
        "# HELP capital_com_rate_limited_total HTTP 429 answers received by all health checks writing this file.",
        "# TYPE capital_com_rate_limited_total counter",
        "capital_com_rate_limited_total 4",
    ]


def test_an_undeclared_family_is_a_bug_not_a_silent_file():
    with pytest.raises(KeyError):
        _textfile.render([("not_declared", 1, None)])


def test_write_for_stack_creates_the_directory_and_a_world_readable_file(stack_state):
    target = _textfile.write_for_stack(stack_state, _textfile.PAPER_BLOCK, [("tradeops_paper_block_zai", 0.0, None)])
    assert target == stack_state.sub("metrics", "paper_block.prom")
    assert open(target).read() == (
        "# HELP tradeops_paper_block_zai 1 when the zero-activity incident is declared for the active block\n"
        "# TYPE tradeops_paper_block_zai gauge\ntradeops_paper_block_zai 0.0\n"
    )
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert not [name for name in os.listdir(os.path.dirname(target)) if name.startswith(".")]  # no temp file


def test_write_into_a_missing_directory_is_a_state_error_naming_the_file(tmp_path):
    target = str(tmp_path / "nope" / "m.prom")
    with pytest.raises(StateError, match="m.prom"):
        _textfile.write(target, [("capital_com_up", True, None)])


def test_parse_reads_samples_with_sorted_labels_and_skips_the_rest(broker_textfile):
    parsed = _textfile.parse(str(broker_textfile))
    assert parsed[("capital_com_up", ())] == 0
    assert parsed[("capital_com_check_ok", (("check", "market:OIL_CRUDE"),))] == 0
    assert parsed[("capital_com_last_check_timestamp_seconds", ())] == 1795398165.5
    assert len(parsed) == 4
    assert _textfile.parse(str(broker_textfile.parent / "missing.prom")) is None


def test_parse_reads_back_what_write_wrote(tmp_path):
    samples = [
        ("capital_com_latency_seconds", 0.012, {"quantile": "0.95"}),
        ("capital_com_market_tradeable", True, {"epic": 'O"IL'}),
        ("capital_com_clock_skew_seconds", None, None),
    ]
    parsed = _textfile.parse(_textfile.write(str(tmp_path / "m.prom"), samples))
    assert parsed[("capital_com_latency_seconds", (("quantile", "0.95"),))] == 0.012
    assert parsed[("capital_com_market_tradeable", (("epic", 'O\\"IL'),))] == 1  # label values stay escaped
    assert str(parsed[("capital_com_clock_skew_seconds", ())]) == "nan"


def test_counters_keep_only_unlabelled_finite_counters(tmp_path):
    target = tmp_path / "m.prom"
    assert _textfile.counters(str(target)) == {}
    target.write_text("capital_com_rate_limited_total 7\ncapital_com_rate_limited_responses 2\ncapital_com_up 1\n")
    assert _textfile.counters(str(target)) == {"capital_com_rate_limited_total": 7}
    target.write_text("capital_com_rate_limited_total NaN\n")
    assert _textfile.counters(str(target)) == {}
