"""The shipped alert rules, rendered by the real role template, checked and unit-tested by the real promtool.

promtool runs in the locally built Prometheus image (tradeops/prometheus:2.42-bookworm) with the
rendered rules mounted; every rule has a firing and a silent case in
roles/monitoring/tests/promtool/tradeops.rules.test.yml (the Watchdog fires by design).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_playbook

IMAGE = "tradeops/prometheus:2.42-bookworm"
DOCKER_RUN = ["docker", "run", "--rm", "--network", "none", "--user", "0:0"]
ROLE = ROOT / "roles" / "monitoring"
PROMTOOL_DIR = ROLE / "tests" / "promtool"


def docker_ok() -> bool:
    res = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    return res.returncode == 0


pytestmark = pytest.mark.skipif(not docker_ok(), reason=f"{IMAGE} missing: run `make images`")


def promtool(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DOCKER_RUN, "-v", f"{workdir}:/rules", "-w", "/rules", "--entrypoint", "promtool", IMAGE, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """tradeops.yml rendered from the role's template with the role defaults plus test-vars.yml."""
    work = tmp_path_factory.mktemp("rules")
    work.chmod(0o755)
    play = work / "render.yml"
    play.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults" / "main.yml"), str(PROMTOOL_DIR / "test-vars.yml")],
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                    "tasks": [
                        {
                            "name": "render the rules",
                            "ansible.builtin.template": {
                                "src": str(ROLE / "templates" / "rules" / "tradeops.yml.j2"),
                                "dest": str(work / "tradeops.yml"),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    run = run_playbook(play, inventory="localhost,")
    assert run.rc == 0, run.output[-3000:]
    shutil.copy(PROMTOOL_DIR / "tradeops.rules.test.yml", work / "tradeops.rules.test.yml")
    return work


def shipped_alerts(rules_file: Path) -> set[str]:
    return set(re.findall(r"^\s+- alert: (\w+)", rules_file.read_text(), re.M))


def test_promtool_check_rules(rendered):
    res = promtool(rendered, "check", "rules", "tradeops.yml")
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests(rendered):
    res = promtool(rendered, "test", "rules", "tradeops.rules.test.yml")
    print(res.stdout + res.stderr)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_shipped_rule_has_a_firing_and_a_silent_case(rendered):
    tests = (rendered / "tradeops.rules.test.yml").read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    silent = set(re.findall(r"alertname: (\w+), exp_alerts: \[\]", tests))
    alerts = shipped_alerts(rendered / "tradeops.yml")
    required = {
        "TargetDown", "TargetMissing", "Watchdog", "PrometheusConfigReloadFailed", "PrometheusRuleEvaluationFailures",
        "PrometheusNoAlertmanager", "HostDiskFreeLow", "HostDiskFillsSoon", "HostInodesLow", "HostMemoryLow",
        "HostOomKill", "HostClockSkew", "ContainerMemoryNearLimit", "ContainerMissing", "ZeroSignals",
        "ZeroPaperFills", "MarketDataStale", "PaperBlockZeroActivity", "BrokerDown", "BrokerCheckFailing",
        "BrokerHealthStale", "BrokerLatencyHigh", "BrokerRateLimited", "DemoTradeRequestsNearLimit",
        "MarketShouldBeOpenNotTradeable", "OrderRoundTripFailed", "OrderExecutionSlow", "OrderPositionLeftOpen",
        "PriceStreamSilent",
    }  # fmt: skip
    assert required <= alerts, f"RELIABILITY.md rules missing from the template: {sorted(required - alerts)}"
    assert alerts <= firing, f"rules without a firing test: {sorted(alerts - firing)}"
    assert alerts - {"Watchdog"} <= silent, f"rules without a silent test: {sorted(alerts - {'Watchdog'} - silent)}"
    print(f"{len(alerts)} rules, each with a firing case; {len(alerts) - 1} with a silent case (Watchdog never is)")


def test_promtool_rejects_an_invalid_rule(tmp_path):
    tmp_path.chmod(0o755)
    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m])\n"
    )
    res = promtool(tmp_path, "check", "rules", "bad.yml")
    assert res.returncode != 0
    assert "bad.yml" in res.stdout + res.stderr


def test_runbook_urls_point_at_runbook_sections(rendered):
    """Each runbook_url anchor is a section of docs/runbooks.md (GitHub heading anchors)."""
    headings = re.findall(r"^## (.+)$", (ROOT / "docs" / "runbooks.md").read_text(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    rules = (rendered / "tradeops.yml").read_text()
    urls = re.findall(r'runbook_url: "https://runbooks\.test/runbooks\.md#([^"]+)"', rules)
    assert len(urls) >= 15, urls
    missing = sorted(set(urls) - anchors)
    assert not missing, f"anchors with no section in docs/runbooks.md: {missing}; sections: {sorted(anchors)}"
    linked = {a for a in anchors if a in urls}
    print(f"{len(urls)} alerts link {len(linked)} runbook sections: {sorted(linked)}")
