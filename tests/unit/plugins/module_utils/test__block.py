"""_block: the options of paper_block, validated before anything is read or written."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils import _block
from ansible_collections.tradeops.stack.plugins.module_utils._rules import RuleError

DEFAULTS = {
    "state": "status",
    "id": None,
    "operator": "alice",
    "reason": None,
    "duration": "72h",
    "zai_window": "24h",
    "trading_mode": "paper",
    "scrape_interval": 15,
    "ticks_metric": "tradeops_ticks_total",
    "signals_metric": "tradeops_signals_total",
    "trades_metric": "tradeops_paper_trades_total",
    "broker_up_metric": "capital_com_up",
}


def params(**over):
    return _block.BlockOptions(dict(DEFAULTS, **over))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("72h", 259200), ("3d", 259200), ("1h30m", 5400), ("20s", 20), ("259200", 259200), ("1.5", 1.5), ("30d", 2592000)],
)
def test_durations_accept_units_and_seconds(text, seconds):
    assert params(duration=text).duration == seconds
    assert params(zai_window=text).zai_window == seconds


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
def test_durations_refused_name_the_option(text, message):
    with pytest.raises(RuleError, match="^" + message.replace("(", r"\(")):
        params(duration=text)
    with pytest.raises(RuleError, match="^zai_window "):
        params(zai_window=text)


def test_out_of_range_says_the_range():
    with pytest.raises(RuleError, match=r"expected between 1s and 30d"):
        params(duration="31d")


@pytest.mark.parametrize("good", ["b1", "2026-w48.momentum_v1", "A" * 64])
def test_valid_ids(good):
    assert params(id=good).id == good


@pytest.mark.parametrize("bad", ["", "-x", "../etc", "a/b", "active", "A" * 65, "spaces here", ".hidden"])
def test_invalid_ids(bad):
    with pytest.raises(RuleError, match="id .* is invalid"):
        params(id=bad)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"state": "started", "reason": "r"}, "id is required to start a block"),
        ({"state": "started", "id": "b1", "reason": " "}, "reason is required to start a block"),
        ({"state": "aborted"}, "reason is required to abort a block"),
        ({"scrape_interval": 0}, "scrape_interval must be a positive number of seconds, got 0"),
        ({"trades_metric": ""}, "trades_metric must be a metric name or selector"),
    ],
)
def test_refusals(over, message):
    with pytest.raises(_block.BlockError, match=message):
        params(**over)


def test_operator_is_the_option_and_only_without_it_the_host_side_user(monkeypatch):
    monkeypatch.setenv("AWX_USER", "mallory")  # AWX never sets it: the environment does not decide
    monkeypatch.setenv("SUDO_USER", "deploy")
    assert params(operator="alice").operator == "alice"
    assert params(operator=None).operator == "deploy"
