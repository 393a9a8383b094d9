"""The HAProxy edge proxy's log line is one JSON object naming the stack, service and host (pure)."""

from __future__ import annotations

import json
import re

from ansible_collections.tradeops.stack.plugins.module_utils.rollout.edge_proxy import HaproxyProxy

from .fake_engine import SERVICE, STACK, Slots

# what HAProxy puts in place of each variable of the format (a sample request that was retried)
SAMPLE = {
    "%[date,utime(%Y-%m-%dT%H:%M:%SZ)]": "2026-12-08T01:02:03Z",
    "%HM": "GET",
    "%HU": "/health",
    "%ST": "503",
    "%s": "t-app-green",
    "%rc": "+2",
    "%ts": "SC",
    "%Ta": "1502",
    "%H": "trading-1",
}


def test_the_log_line_is_json_with_the_stack_service_and_host():
    proxy = HaproxyProxy(None, Slots(STACK, SERVICE), {"port": 8000}, "/conf", "net")
    text = proxy.render("green", "r-1", backup="blue")
    (fmt,) = re.findall(r'^    log-format "(.*)"$', text, re.M)
    line = fmt.replace('\\"', '"')
    for variable in sorted(SAMPLE, key=len, reverse=True):  # %HU before %H
        line = line.replace(variable, SAMPLE[variable])
    assert "%" not in line, "every variable of the format has a sample: %s" % line
    record = json.loads(line)
    assert record["stack"] == STACK and record["service"] == SERVICE and record["host"] == "trading-1"
    assert (record["role"], record["event"], record["status"], record["total_ms"]) == (
        "edge-proxy",
        "request",
        503,
        1502,
    )
