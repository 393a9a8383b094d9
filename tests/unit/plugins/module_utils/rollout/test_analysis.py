"""The metric analysis of a rollout: enough samples, failure limits, and no data never a silent pass."""

from __future__ import annotations

import pytest
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import analysis as A


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
