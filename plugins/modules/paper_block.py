#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: paper_block
short_description: Open, watch and close a paper-trading block, detect zero activity and write the block report
version_added: 0.1.0
description:
  - A paper-trading block is a period (3 days by default) during which a strategy paper-trades against the broker's
    demo host while nothing changes in the stack. This module makes the block an audited object kept in the stack's
    state directory on the Docker host (C(<state_root>/<stack>/blocks/)), so it survives the controller.
  - O(state=started) opens a block with an id, an operator, a reason and a planned duration, and snapshots the stack's
    release manifest (image id and digest, spec hash, release of every container labelled C(tradeops.stack=<stack>))
    from the engine. It is refused while another block is active (naming it), when O(trading_mode) is not C(paper),
    when a container of the stack has C(TRADING_MODE) other than C(paper) in its environment, and when a container's
    environment or O(broker_urls) points at the live Capital.com host. Starting the active block's id again changes
    nothing. While a block is active, P(tradeops.stack.rollout#module) refuses changes unless forced.
  - O(state=status) is read-only. It reports elapsed and remaining time (C(overdue) once the planned end has passed),
    activity counts over O(zai_window) and since the block started from Prometheus, container restarts and health since
    the block started, and the zero-activity incident (ZAI) verdict, which is true when the block has run for at least
    O(zai_window) and Prometheus shows neither a signal nor a paper trade in that window. Prometheus having no data
    for a metric is reported as C(no data) and never counts as activity. O(fail_on_zai) makes the task fail.
  - O(state=completed) and O(state=aborted) close the block and write its report to
    C(<state_root>/<stack>/reports/<id>/report.json), C(report.md) and C(report.svg) (activity over the block), and
    return it.
  - Every start, completion and abort is appended to the stack's audit log. C(started), C(status) and the closing states
    also rewrite the Prometheus textfile C(<state_root>/<stack>/metrics/paper_block.prom) with
    C(tradeops_paper_block_active), C(tradeops_paper_block_elapsed_seconds), C(tradeops_paper_block_zai),
    C(tradeops_paper_block_window_signals) and C(tradeops_paper_block_window_trades) (C(NaN) when there is no data).
extends_documentation_fragment:
  - tradeops.stack.state
  - tradeops.stack.docker
  - tradeops.stack.prometheus
attributes:
  check_mode:
    support: full
    description:
      - Nothing is written (no block record, report, textfile or audit line); C(changed) and the diff are predicted and
        the report of a closing block is computed and returned.
  diff_mode:
    support: full
    description:
      - The active block record before and after.
  idempotent:
    support: full
    description:
      - Starting the active block again, or closing an already closed block with the same final state, changes nothing.
      - O(state=status) always reports C(changed=false), also when it rewrites the metrics textfile.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  state:
    description:
      - C(started) opens the block, C(status) reports on the active block, C(completed) and C(aborted) close it.
    type: str
    choices: [started, status, completed, aborted]
    default: status
  id:
    description:
      - Id of the block. Required for O(state=started).
      - 1 to 64 characters, letters, digits, C(.), C(_) or C(-), starting with a letter or digit; C(active) is reserved.
      - For O(state=completed), O(state=aborted) and O(state=status), defaults to the active block; when given it must
        name the active block (or an already closed block, which is then a no-op).
    type: str
  grafana_url:
    description:
      - Base URL of the stack's Grafana (for example V(http://127.0.0.1:3000)); the Markdown report then links the
        collection's dashboards for the block's time window.
    type: str
  reason:
    description:
      - Why the block is run (O(state=started)) or aborted (O(state=aborted)); required for both.
    type: str
  duration:
    description:
      - Planned duration of the block, as seconds (C(259200)) or with units C(d), C(h), C(m), C(s) (C(72h), C(3d),
        C(1h30m)). Between 1 second and 30 days.
    type: str
    default: 72h
  trading_mode:
    description:
      - Trading mode of the stack from the inventory (C(tradeops_trading_mode)). Only C(paper) may start a block.
    type: str
    default: paper
  broker_urls:
    description:
      - Broker base URLs the stack's services are configured with (from the inventory). Each must be Capital.com's
        demo host or a host in O(broker_emulator_hosts); any other host (IP literals included) counts as the live
        broker and refuses the start, as does a URL with user info, white space or a scheme other than http(s).
      - Container environments are checked as well, a value naming a live Capital.com host refuses the start.
    type: list
    elements: str
    default: []
  broker_emulator_hosts:
    description:
      - Hosts that run a broker emulator and count as paper in O(broker_urls), as the inventory names them
        (C(tradeops_broker_emulator_hosts)).
    type: list
    elements: str
    default: []
  zai_window:
    description:
      - Length of the zero-activity window, as for O(duration) (C(24h), C(20s)). Between 1 second and 30 days.
    type: str
    default: 24h
  fail_on_zai:
    description:
      - With O(state=status), fail the task when the zero-activity incident is declared.
    type: bool
    default: false
  ticks_metric:
    description:
      - Counter (a metric name or selector) of market-data ticks.
    type: str
    default: tradeops_ticks_total
  signals_metric:
    description:
      - Counter (a metric name or selector) of signals. Scope it with labels when one Prometheus watches several stacks.
    type: str
    default: tradeops_signals_total
  trades_metric:
    description:
      - Counter (a metric name or selector) of paper trades.
    type: str
    default: tradeops_paper_trades_total
  broker_up_metric:
    description:
      - Gauge (a metric name or selector) that is 1 while the broker health check passes, read over the block for the
        report.
    type: str
    default: capital_com_up
  broker_health_textfile:
    description:
      - Textfile written by P(tradeops.stack.capital_com_health#module) whose last outcome goes into the report.
      - Defaults to C(<state_root>/<stack>/metrics/capital_com.prom), then C(capital_com_health.prom) in the same
        folder. Missing files are reported as no data.
    type: path
  scrape_interval:
    description:
      - Scrape interval (seconds) of the bot targets in Prometheus. Rate windows of the report's chart are at least four
        times this so that every window holds enough samples.
    type: float
    default: 15
  write_metrics:
    description:
      - Rewrite the textfile C(metrics/paper_block.prom) (not in check mode).
    type: bool
    default: true
  lock_wait:
    description:
      - Opening and closing a block happen only while the stack's deploy lock (see M(tradeops.stack.deploy_lock)) is
        free, and keep it free meanwhile, so a block never starts in the middle of a deploy, a flag flip or a restore.
      - Seconds to wait for a deploy lock held by someone else before refusing, naming the holder.
    type: int
    default: 0
requirements:
  - docker (Python SDK) >= 5.0.3
notes:
  - Runs on the Docker host; Prometheus must be reachable from there for O(state=status). When it is not reachable
    while a block is closed, the block is closed anyway and the report says that activity is unknown.
seealso:
  - module: tradeops.stack.rollout
  - module: tradeops.stack.capital_com_health
"""

EXAMPLES = r"""
- name: Open a 3-day paper block
  tradeops.stack.paper_block:
    stack: cdb
    state: started
    id: "2026-w48-momentum"
    reason: momentum v1.4.2 on BTCUSD and OIL_CRUDE
    duration: 72h
    trading_mode: "{{ tradeops_trading_mode }}"

- name: Hourly status from AWX; the job turns red on a zero-activity incident
  tradeops.stack.paper_block:
    stack: cdb
    state: status
    prometheus_url: http://127.0.0.1:9090
    fail_on_zai: true

- name: Close the block and write its report
  tradeops.stack.paper_block:
    stack: cdb
    state: completed
  register: block

- name: Abort the block
  tradeops.stack.paper_block:
    stack: cdb
    state: aborted
    reason: broker demo outage
"""

RETURN = r"""
block:
  description: The block record (as stored in C(blocks/<id>.json)), or null when no block is active for O(state=status).
  returned: always
  type: dict
  sample:
    id: 2026-w48-momentum
    operator: alice
    reason: momentum v1.4.2
    started_at: 1795396800.0
    planned_end: 1795656000.0
    duration_seconds: 259200
    status: active
    trading_mode: paper
    manifest: [{name: cdb-signal_engine, image_id: "sha256:0622...", spec_hash: 9f2c1a, restart_count: 0}]
active:
  description: Whether a block is active after the task.
  returned: always
  type: bool
  sample: true
elapsed_seconds:
  description: Seconds since the block started.
  returned: when a block is active or closed by this task
  type: float
  sample: 3600.0
remaining_seconds:
  description: Seconds until the planned end (negative when overdue).
  returned: with O(state=status) and an active block
  type: float
  sample: 255600.0
overdue:
  description: The planned end has passed and the block is still active.
  returned: with O(state=status) and an active block
  type: bool
  sample: false
window:
  description:
    - Activity in the last O(zai_window) (C(ticks), C(signals), C(trades) counts, null for no data), C(seconds), and
      C(data) per counter (C(ok) or C(no data)).
  returned: with O(state=status) and an active block
  type: dict
  sample: {seconds: 86400, ticks: 120000, signals: 12, trades: 3, data: {ticks: ok, signals: ok, trades: ok}}
since_start:
  description: Activity since the block started, same shape as RV(window).
  returned: with O(state=status) and an active block
  type: dict
  sample: {seconds: 3600, ticks: 14000, signals: 2, trades: 1, data: {ticks: ok, signals: ok, trades: ok}}
zai:
  description: The zero-activity incident verdict.
  returned: always
  type: bool
  sample: false
zai_reason:
  description: Why ZAI is or is not declared.
  returned: always
  type: str
  sample: "no signal and no paper trade in the last 24h (signals: no data, trades: 0)"
containers:
  description:
    - Per container of the stack, restarts since the block started, health now, and C(health_failures) (transitions
      to unhealthy the engine reported since the start).
    - C(replaced), C(missing) and C(new) flag containers that are not the ones snapshotted at the start.
  returned: when a block is active or closed by this task
  type: list
  elements: dict
  sample: [{name: cdb-signal_engine, service: signal_engine, restarts: 1, health: healthy, state: running}]
restarts_total:
  description: Sum of the C(restarts) of RV(containers).
  returned: when a block is active or closed by this task
  type: int
  sample: 1
unhealthy:
  description: Names of containers that are not running or not healthy now.
  returned: when a block is active or closed by this task
  type: list
  elements: str
  sample: []
report:
  description: The block report (the content of C(report.json)).
  returned: with O(state=completed) or O(state=aborted)
  type: dict
  sample: {totals: {ticks: 1000, signals: 12, trades: 3}, zai_episodes: [], manifest_changed: false}
report_files:
  description: Paths of the report files on the host (not written in check mode).
  returned: with O(state=completed) or O(state=aborted)
  type: dict
  sample: {json: /var/lib/tradeops/cdb/reports/b1/report.json, markdown: ..., svg: ...}
metrics_file:
  description: The textfile written, or null.
  returned: always
  type: str
  sample: /var/lib/tradeops/cdb/metrics/paper_block.prom
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils._block import BlockError, BlockOptions, PaperBlock
from ansible_collections.tradeops.stack.plugins.module_utils._docker import DOCKER_ARG_SPEC, DockerError
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import PROMETHEUS_ARG_SPEC, PrometheusError
from ansible_collections.tradeops.stack.plugins.module_utils._redact import guard
from ansible_collections.tradeops.stack.plugins.module_utils._rules import RuleError
from ansible_collections.tradeops.stack.plugins.module_utils._state import STATE_ARG_SPEC, StateError, error_message


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["started", "status", "completed", "aborted"], default="status"),
        id=dict(type="str"),
        reason=dict(type="str"),
        duration=dict(type="str", default="72h"),
        trading_mode=dict(type="str", default="paper"),
        broker_urls=dict(type="list", elements="str", default=[]),
        broker_emulator_hosts=dict(type="list", elements="str", default=[]),
        zai_window=dict(type="str", default="24h"),
        fail_on_zai=dict(type="bool", default=False),
        ticks_metric=dict(type="str", default="tradeops_ticks_total"),
        signals_metric=dict(type="str", default="tradeops_signals_total"),
        trades_metric=dict(type="str", default="tradeops_paper_trades_total"),
        broker_up_metric=dict(type="str", default="capital_com_up"),
        broker_health_textfile=dict(type="path"),
        scrape_interval=dict(type="float", default=15),
        write_metrics=dict(type="bool", default=True),
        lock_wait=dict(type="int", default=0),
        grafana_url=dict(type="str"),
    )
    argument_spec.update(STATE_ARG_SPEC)
    argument_spec.update(DOCKER_ARG_SPEC)
    argument_spec.update(PROMETHEUS_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    guard(module)  # no URL user info (a Prometheus URL) nor credential in a message or result
    try:
        options = BlockOptions(module.params)
        block = PaperBlock(module, options)
        if options.wanted_state == "status":
            result = block.status()
        else:
            with block.deploy_lock():
                result = block.started() if options.wanted_state == "started" else block.close(options.wanted_state)
    except (BlockError, RuleError, StateError, DockerError, PrometheusError, OSError) as exc:
        module.fail_json(msg=error_message(exc))
    if not module._diff:
        result.pop("diff", None)
    if options.wanted_state == "status" and module.params["fail_on_zai"] and result.get("zai"):
        module.fail_json(
            msg="zero-activity incident: %s" % result["msg"], **{k: v for k, v in result.items() if k != "msg"}
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
