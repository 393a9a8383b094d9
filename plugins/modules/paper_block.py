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
author:
  - tradeops.stack contributors (@tradeops-stack)
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
  operator:
    description:
      - Person responsible for the block. Defaults to the caller (E(AWX_USER), E(TRADEOPS_OPERATOR), E(SUDO_USER) or
        the login name).
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
  - docker (Python SDK) >= 5.0
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

import math
import os
import time
from contextlib import contextmanager

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils import _rules, _textfile
from ansible_collections.tradeops.stack.plugins.module_utils._docker import (
    DOCKER_ARG_SPEC,
    DockerError,
    get_client,
    stack_manifest,
)
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import (
    PROMETHEUS_ARG_SPEC,
    PrometheusError,
    client_from_params,
)
from ansible_collections.tradeops.stack.plugins.module_utils._redact import guard
from ansible_collections.tradeops.stack.plugins.module_utils._report import render_markdown, render_svg
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    LABEL_STACK,
    STATE_ARG_SPEC,
    DeployLock,
    StackState,
    StateError,
    atomic_write_json,
    atomic_write_text,
    caller_identity,
    iso,
    read_json,
    utcnow,
)

MAX_SECONDS = 30 * 86400
MANIFEST_IDENTITY = ("service", "colour", "image_id", "spec_hash", "release")


class BlockError(Exception):
    """A refusal or failure; the message says what was expected, what was found and what to do."""


def parse_duration(option, value):
    """Seconds from '72h', '3d', '1h30m', '20s' or '259200' (1 s to 30 days); BlockError naming the option."""
    try:
        return _rules.parse_duration(value, option, minimum=1, maximum=MAX_SECONDS)
    except _rules.RuleError as exc:
        raise BlockError(str(exc))


def validate_id(block_id):
    if block_id is None:
        return None
    try:
        return _rules.check_name("block", block_id, option="id")
    except _rules.RuleError as exc:
        raise BlockError(str(exc))


def fmt(value):
    return "no data" if value is None else ("%g" % value)


class BlockParams:
    """Validated options: every error names its option and comes before anything is read or written."""

    def __init__(self, params):
        self.raw = params
        self.state = params["state"]
        self.id = validate_id(params["id"])
        self.operator = params["operator"] or caller_identity()["user"]
        self.reason = params["reason"]
        self.duration = parse_duration("duration", params["duration"])
        self.zai_window = parse_duration("zai_window", params["zai_window"])
        self.trading_mode = params["trading_mode"]
        if self.state == "started":
            if not self.id:
                raise BlockError("id is required to start a block")
            if not (self.reason or "").strip():
                raise BlockError("reason is required to start a block: say why this block is run")
        if self.state == "aborted" and not (self.reason or "").strip():
            raise BlockError("reason is required to abort a block: say why it is aborted")
        if params["scrape_interval"] <= 0:
            raise BlockError("scrape_interval must be a positive number of seconds, got %r" % params["scrape_interval"])
        for option in ("ticks_metric", "signals_metric", "trades_metric", "broker_up_metric"):
            if not (params[option] or "").strip():
                raise BlockError("%s must be a metric name or selector, got an empty string" % option)


class PaperBlock:
    def __init__(self, module, params):
        self.module = module
        self.p = params
        self.raw = params.raw
        self.check = module.check_mode
        self.state = StackState(self.raw["stack"], self.raw["state_root"])
        self._docker = None
        self._prom = None
        self.health_failures = {}

    # -- helpers ----------------------------------------------------------------------------
    @property
    def docker(self):
        if self._docker is None:
            self._docker = get_client(self.raw)
        return self._docker

    @property
    def prom(self):
        if self._prom is None:
            self._prom = client_from_params(self.raw)
        return self._prom

    @contextmanager
    def deploy_lock(self):
        """Open or close a block only while no one holds the deploy lock, and keep it free meanwhile.

        Holds the lock's own mutex (the one every acquire of the deploy lock takes) across the
        decision and the write: a deploy, flag flip or restore either holds the lock already,
        and the block is refused naming it, or takes the lock afterwards and then sees the
        freeze, which it decides under the lock. Nothing is written to lock.json.
        """
        if self.check or not self.state.exists():
            # no state directory: no lock was ever taken here; a refusal must not create one
            yield
            return
        lock = DeployLock(self.state)
        deadline = time.monotonic() + max(0, self.raw["lock_wait"])
        while True:
            with self.state.mutex("lock"):
                holder = lock.status()
                if not holder.get("held"):
                    yield
                    return
            if time.monotonic() >= deadline:
                raise BlockError(
                    "the deploy lock of stack %s is held by %r since %s (reason: %s%s): a paper block opens and closes "
                    "only while no deploy, flag flip or restore runs; wait for it (lock_wait) or retry"
                    % (
                        self.raw["stack"],
                        holder.get("holder"),
                        iso(holder.get("acquired_at")),
                        holder.get("reason"),
                        "; the lock is STALE: %s" % holder["stale_reason"] if holder.get("stale") else "",
                    )
                )
            time.sleep(0.5)

    def block_path(self, block_id):
        return self.state.sub("blocks", "%s.json" % block_id)

    def read_block(self, block_id):
        return read_json(self.block_path(block_id)) if self.state.exists() else None

    def active(self):
        return self.state.active_block() if self.state.exists() else None

    def manifest(self):
        return stack_manifest(self.docker, self.raw["stack"])

    # -- started ----------------------------------------------------------------------------
    def paper_guard(self):
        """BlockError unless the stack is configured for paper trading on the demo host."""
        if self.p.trading_mode != "paper":
            raise BlockError(
                "trading_mode is %r: a paper block only runs on a stack in paper mode (tradeops_trading_mode: paper)"
                % self.p.trading_mode
            )
        for url in self.raw["broker_urls"]:
            try:
                _rules.refuse_live_broker(url, self.raw["broker_emulator_hosts"], option="broker_urls")
            except _rules.RuleError as exc:
                raise BlockError("%s; a paper block runs against the demo host only" % exc)
        containers = self.docker.containers.list(
            all=True, filters={"label": "%s=%s" % (LABEL_STACK, self.raw["stack"])}
        )
        for container in containers:
            for item in (container.attrs.get("Config") or {}).get("Env") or []:
                key, value = ([*item.split("=", 1), ""])[:2]
                if key == "TRADING_MODE" and value.strip().lower() != "paper":
                    raise BlockError(
                        "container %s runs with TRADING_MODE=%s: a paper block needs every service in paper mode"
                        % (container.name, value)
                    )
                live = _rules.live_broker_mentions(value)
                if live:
                    raise BlockError(
                        "container %s has %s naming the LIVE broker host %s: a paper block runs against the demo "
                        "host (%s)" % (container.name, key, ", ".join(live), _rules.DEMO_REST_HOST)
                    )

    def started(self):
        p = self.p
        current = self.active()
        if current and current.get("status", "active") == "active":
            if current.get("id") == p.id:
                recovered = self.read_block(p.id) is None
                if recovered and not self.check:
                    # interrupted between the freeze and the history record (see below): finish that start
                    with self.state.mutex("blocks"):
                        atomic_write_json(self.block_path(p.id), current)
                    self.state.audit("paper_block_recover", "ok", block=p.id, status="active")
                return {
                    "changed": recovered,
                    "msg": "block %s is already active (started %s)%s"
                    % (
                        p.id,
                        iso(current.get("started_at")),
                        "; wrote its missing history record (interrupted run)" if recovered else "",
                    ),
                    "block": current,
                    "active": True,
                    "elapsed_seconds": round(utcnow() - current["started_at"], 3),
                    "zai": False,
                    "zai_reason": "not evaluated by state=started; use state=status",
                    "metrics_file": None,
                }
            raise BlockError(
                "paper block %s is already active (operator %s, reason: %s, started %s, planned end %s): complete or "
                "abort it before starting %s"
                % (
                    current.get("id"),
                    current.get("operator"),
                    current.get("reason"),
                    iso(current.get("started_at")),
                    iso(current.get("planned_end")),
                    p.id,
                )
            )
        previous = self.read_block(p.id)
        if previous and previous.get("status") == "active":
            # a crash between the history record and active.json: finish that start instead of refusing the id
            self.paper_guard()
            metrics_file = None
            if not self.check:
                with self.state.mutex("blocks"):
                    atomic_write_json(self.state.sub("blocks", "active.json"), previous)
                self.state.audit("paper_block_recover", "ok", block=p.id, status="active")
                metrics_file = self.write_metrics(previous, utcnow(), zai=False, window=None)
            return {
                "changed": True,
                "msg": "block %s had been started but not marked active (interrupted run): marked active" % p.id,
                "block": previous,
                "active": True,
                "elapsed_seconds": round(utcnow() - previous["started_at"], 3),
                "zai": False,
                "zai_reason": "not evaluated by state=started; use state=status",
                "metrics_file": metrics_file,
                "diff": {"before": {}, "after": previous},
            }
        if previous:
            raise BlockError(
                "block id %s was already used (status %s, started %s): choose a new id"
                % (p.id, previous.get("status"), iso(previous.get("started_at")))
            )
        self.paper_guard()
        now = utcnow()
        record = {
            "id": p.id,
            "operator": p.operator,
            "reason": p.reason,
            "started_at": now,
            "planned_end": now + p.duration,
            "duration_seconds": p.duration,
            "status": "active",
            "trading_mode": p.trading_mode,
            "manifest": self.manifest(),
            "zai_window_seconds": p.zai_window,
            "started_by": caller_identity(),
        }
        metrics_file = None
        if not self.check:
            with self.state.mutex("blocks"):
                again = self.state.active_block()
                if again and again.get("status", "active") == "active":
                    raise BlockError("paper block %s became active while this one was starting" % again.get("id"))
                # The freeze first, then the history record and the audit line: whatever a full disk or a crash
                # leaves, status and rollout see the block (active.json holds the whole record). A failed history
                # or audit write removes both again, so the task fails with no block at all; a crash in between
                # is finished by starting the same id again (above) or by completing or aborting the block.
                active_path = self.state.sub("blocks", "active.json")
                atomic_write_json(active_path, record)
                try:
                    atomic_write_json(self.block_path(p.id), record)
                    self.state.audit(
                        "paper_block_start",
                        "ok",
                        block=p.id,
                        operator=p.operator,
                        reason=p.reason,
                        planned_end=iso(record["planned_end"]),
                        containers=len(record["manifest"]),
                    )
                except StateError as exc:
                    undone = "the block was not started"
                    for path in (active_path, self.block_path(p.id)):
                        try:
                            os.unlink(path)
                        except FileNotFoundError:
                            pass
                        except OSError as undo:
                            undone = "the block may be ACTIVE: %s could not be removed (%s)" % (path, undo.strerror)
                    raise StateError("%s; %s" % (exc, undone))
            metrics_file = self.write_metrics(record, now, zai=False, window=None)
        return {
            "changed": True,
            "msg": "paper block %s started; planned end %s" % (p.id, iso(record["planned_end"])),
            "block": record,
            "active": True,
            "elapsed_seconds": 0.0,
            "zai": False,
            "zai_reason": "block just started",
            "metrics_file": metrics_file,
            "diff": {"before": {}, "after": record},
        }

    # -- status -----------------------------------------------------------------------------
    def activity(self, seconds, at=None):
        window = math.ceil(seconds)
        out = {"seconds": window, "data": {}}
        for key, option in (("ticks", "ticks_metric"), ("signals", "signals_metric"), ("trades", "trades_metric")):
            value = self.prom.total("sum(increase(%s[%ds]))" % (self.raw[option], window), at=at)
            out[key] = None if value is None else round(value, 3)
            out["data"][key] = "no data" if value is None else "ok"
        return out

    def zai_verdict(self, elapsed, window):
        signals, trades = window["signals"], window["trades"]
        activity = (signals or 0) > 0 or (trades or 0) > 0
        human = "%ds" % window["seconds"]
        if activity:
            return False, "activity in the last %s (signals: %s, trades: %s)" % (human, fmt(signals), fmt(trades))
        if elapsed < self.p.zai_window:
            return False, (
                "no activity yet, but the block has run %ds, less than zai_window %s (signals: %s, trades: %s)"
                % (elapsed, human, fmt(signals), fmt(trades))
            )
        return True, "no signal and no paper trade in the last %s (signals: %s, trades: %s)" % (
            human,
            fmt(signals),
            fmt(trades),
        )

    def container_changes(self, block, now_manifest, until=None):
        """Restarts, health and replacement per container since the block started."""
        start = {c["name"]: c for c in block.get("manifest") or []}
        starts = self.engine_starts(block["started_at"], until or utcnow())
        out = []
        for c in now_manifest:
            before = start.get(c["name"])
            entry = {
                "name": c["name"],
                "service": c.get("service"),
                "state": c.get("state"),
                "health": c.get("health"),
                "restart_count": c.get("restart_count"),
                "started_at": c.get("started_at"),
            }
            events = starts.get(c["id"], 0)
            entry["health_failures"] = self.health_failures.get(c["id"], 0)
            if before is None:
                entry["new"] = True
                entry["restarts"] = events
            elif before.get("id") != c["id"]:
                entry["replaced"] = True
                entry["restarts"] = max(events, 1)
            else:
                delta = (c.get("restart_count") or 0) - (before.get("restart_count") or 0)
                moved = 1 if c.get("started_at") != before.get("started_at") else 0
                entry["restarts"] = max(events, delta, moved)
            out.append(entry)
        names = {c["name"] for c in now_manifest}
        for name, before in sorted(start.items()):
            if name not in names:
                out.append(
                    {
                        "name": name,
                        "service": before.get("service"),
                        "state": "missing",
                        "health": None,
                        "missing": True,
                        "restarts": 0,
                    }
                )
        return out

    def engine_starts(self, since, until):
        """Container id (12 chars) -> number of 'start' events the engine reports in [since, until].

        Also fills ``self.health_failures`` (id -> 'health_status: unhealthy' events in the same range).
        """
        counts = {}
        self.health_failures = {}
        try:
            events = self.docker.events(
                since=int(since),
                until=math.ceil(until),
                filters={"type": "container", "label": "%s=%s" % (LABEL_STACK, self.raw["stack"])},
                decode=True,
            )
            for event in events:
                cid = (event.get("id") or (event.get("Actor") or {}).get("ID") or "")[:12]
                action = event.get("Action") or event.get("status") or ""
                if action == "start":
                    counts[cid] = counts.get(cid, 0) + 1
                elif action.startswith("health_status") and action.endswith("unhealthy"):
                    self.health_failures[cid] = self.health_failures.get(cid, 0) + 1
        except Exception:  # the event history is a bonus; RestartCount and StartedAt still count
            return {}
        return counts

    def status_result(self, block, write=True):
        now = utcnow()
        elapsed = now - block["started_at"]
        manifest = self.manifest()
        containers = self.container_changes(block, manifest, now)
        window = self.activity(self.p.zai_window)
        since = self.activity(max(elapsed, 1))
        zai, reason = self.zai_verdict(elapsed, window)
        unhealthy = [
            c["name"] for c in containers if c.get("state") != "running" or c.get("health") not in (None, "healthy")
        ]
        metrics_file = None
        if write and not self.check:
            metrics_file = self.write_metrics(block, now, zai=zai, window=window)
        return {
            "changed": False,
            "block": block,
            "active": True,
            "elapsed_seconds": round(elapsed, 3),
            "remaining_seconds": round(block["planned_end"] - now, 3),
            "overdue": now > block["planned_end"],
            "window": window,
            "since_start": since,
            "zai": zai,
            "zai_reason": reason,
            "containers": containers,
            "restarts_total": sum(c.get("restarts") or 0 for c in containers),
            "unhealthy": unhealthy,
            "metrics_file": metrics_file,
        }

    def status(self):
        block = self.active()
        if not block or block.get("status", "active") != "active":
            metrics_file = None
            if not self.check and self.raw["write_metrics"] and self.state.exists():
                metrics_file = self.write_metrics(None, utcnow(), zai=False, window=None)
            return {
                "changed": False,
                "msg": "no paper block is active on stack %s" % self.raw["stack"],
                "block": None,
                "active": False,
                "zai": False,
                "zai_reason": "no active block",
                "metrics_file": metrics_file,
            }
        if self.p.id and self.p.id != block["id"]:
            raise BlockError("block %s is not active: the active block is %s" % (self.p.id, block["id"]))
        result = self.status_result(block)
        result["msg"] = "paper block %s: %s elapsed%s; ZAI %s" % (
            block["id"],
            "%ds" % result["elapsed_seconds"],
            " (OVERDUE)" if result["overdue"] else "",
            "DECLARED: " + result["zai_reason"] if result["zai"] else "no",
        )
        return result

    # -- completed / aborted -------------------------------------------------------------------
    def close(self, final):
        block = self.active()
        if block and self.p.id and block.get("id") != self.p.id:
            raise BlockError(
                "cannot %s block %s: the active block is %s"
                % ("complete" if final == "completed" else "abort", self.p.id, block.get("id"))
            )
        if not block:
            if self.p.id:
                stored = self.read_block(self.p.id)
                if stored and stored.get("status") == final:
                    return {
                        "changed": False,
                        "msg": "block %s is already %s" % (self.p.id, final),
                        "block": stored,
                        "active": False,
                        "zai": False,
                        "zai_reason": "block is closed",
                        "report": read_json(self.state.sub("reports", self.p.id, "report.json")),
                        "report_files": self.report_paths(self.p.id),
                        "metrics_file": None,
                    }
                if stored:
                    raise BlockError("block %s is already closed with status %s" % (self.p.id, stored.get("status")))
                raise BlockError("no paper block %s exists on stack %s" % (self.p.id, self.raw["stack"]))
            raise BlockError(
                "no paper block is active on stack %s: nothing to %s"
                % (self.raw["stack"], "complete" if final == "completed" else "abort")
            )
        # a crash after the history record was closed but before active.json was removed: finish the job
        stored = self.read_block(block["id"])
        if stored and stored.get("status") in ("completed", "aborted"):
            if not self.check:
                with self.state.mutex("blocks"):
                    os.unlink(self.state.sub("blocks", "active.json"))
                self.state.audit("paper_block_recover", "ok", block=block["id"], status=stored["status"])
                self.write_metrics(None, utcnow(), zai=False, window=None)
            return {
                "changed": True,
                "msg": "block %s was already %s; removed the stale active marker" % (block["id"], stored["status"]),
                "block": stored,
                "active": False,
                "zai": False,
                "zai_reason": "block is closed",
                "report": read_json(self.state.sub("reports", block["id"], "report.json")),
                "report_files": self.report_paths(block["id"]),
                "metrics_file": None,
                "diff": {"before": block, "after": {}},
            }
        now = utcnow()
        closed = dict(block, status=final, ended_at=now, closed_by=caller_identity())
        if final == "aborted" or self.p.reason:
            closed["close_reason"] = self.p.reason
        report = self.build_report(closed, now)
        closed["report_summary"] = {
            "totals": report["totals"],
            "zai_episodes": len(report["zai_episodes"]),
            "restarts_total": report["restarts_total"],
            "manifest_changed": report["manifest_changed"],
        }
        paths = self.report_paths(block["id"])
        metrics_file = None
        if not self.check:
            directory = self.state.sub("reports", block["id"])
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o750)
            atomic_write_text(paths["svg"], report.pop("_svg"))
            atomic_write_text(paths["markdown"], render_markdown(report))
            atomic_write_json(paths["json"], report)
            with self.state.mutex("blocks"):
                atomic_write_json(self.block_path(block["id"]), closed)  # history first, then lift the freeze
                os.unlink(self.state.sub("blocks", "active.json"))
            self.state.audit(
                "paper_block_%s" % ("complete" if final == "completed" else "abort"),
                "ok",
                block=block["id"],
                reason=self.p.reason,
                duration_seconds=round(report["duration_seconds"], 3),
                totals=report["totals"],
                zai_episodes=len(report["zai_episodes"]),
                manifest_changed=report["manifest_changed"],
            )
            metrics_file = self.write_metrics(None, now, zai=False, window=None)
        else:
            report.pop("_svg", None)
        return {
            "changed": True,
            "msg": "paper block %s %s after %ds; report in %s"
            % (block["id"], final, report["duration_seconds"], paths["markdown"]),
            "block": closed,
            "active": False,
            "elapsed_seconds": round(report["duration_seconds"], 3),
            "zai": False,
            "zai_reason": "block is closed",
            "containers": report["containers"],
            "restarts_total": report["restarts_total"],
            "unhealthy": report["unhealthy"],
            "report": report,
            "report_files": paths,
            "metrics_file": metrics_file,
            "diff": {"before": block, "after": {}},
        }

    def report_paths(self, block_id):
        base = self.state.sub("reports", block_id)
        return {
            "json": os.path.join(base, "report.json"),
            "markdown": os.path.join(base, "report.md"),
            "svg": os.path.join(base, "report.svg"),
        }

    def build_report(self, block, now):
        start = block["started_at"]
        duration = max(now - start, 1.0)
        manifest_now = self.manifest()
        containers = self.container_changes(block, manifest_now, now)
        changes = manifest_changes(block.get("manifest") or [], manifest_now)
        report = {
            "stack": self.raw["stack"],
            "block": {k: v for k, v in block.items() if k != "manifest"},
            "duration_seconds": round(duration, 3),
            "zai_window_seconds": self.p.zai_window,
            "manifest_start": block.get("manifest") or [],
            "manifest_end": manifest_now,
            "manifest_changed": bool(changes),
            "manifest_changes": changes,
            "containers": containers,
            "restarts_total": sum(c.get("restarts") or 0 for c in containers),
            "unhealthy": [
                c["name"] for c in containers if c.get("state") != "running" or c.get("health") not in (None, "healthy")
            ],
            "totals": {"ticks": None, "signals": None, "trades": None},
            "series": {},
            "zai_episodes": [],
            "zai_note": None,
            "broker_health": {"textfile": self.broker_textfile(), "down_steps": None, "evaluated_steps": 0},
            "prometheus_error": None,
            "generated_at": now,
        }
        try:
            self.report_activity(report, start, now, duration)
        except PrometheusError as exc:
            report["prometheus_error"] = str(exc)
            report["zai_note"] = "Unknown: Prometheus could not be queried."
        report["_svg"] = render_svg(
            report["series"],
            start,
            now,
            episodes=report["zai_episodes"],
            title="Paper block %s (%s) on %s: activity per minute" % (block["id"], block["status"], self.raw["stack"]),
        )
        return report

    def report_activity(self, report, start, end, duration):
        raw = self.raw
        whole = math.ceil(duration)
        for key, option in (("ticks", "ticks_metric"), ("signals", "signals_metric"), ("trades", "trades_metric")):
            value = self.prom.total("sum(increase(%s[%ds]))" % (raw[option], whole), at=end)
            report["totals"][key] = None if value is None else round(value)
        step = max(1, math.ceil(duration / 240.0))
        rate_window = int(max(step, 4 * raw["scrape_interval"]))
        for key, option in (("ticks", "ticks_metric"), ("signals", "signals_metric"), ("trades", "trades_metric")):
            points = self.prom.series_total("sum(rate(%s[%ds])) * 60" % (raw[option], rate_window), start, end, step)
            report["series"][key] = [(ts, round(v, 4)) for ts, v in points]
        # ZAI episodes: evaluate the window at each step once the block is older than the window
        window = math.ceil(self.p.zai_window)
        first = start + window
        if first > end:
            report["zai_note"] = "The block was shorter than the ZAI window (%ds): no verdict." % window
        else:
            sig = dict(
                self.prom.series_total("sum(increase(%s[%ds]))" % (raw["signals_metric"], window), first, end, step)
            )
            trd = dict(
                self.prom.series_total("sum(increase(%s[%ds]))" % (raw["trades_metric"], window), first, end, step)
            )
            report["zai_episodes"] = zai_episodes(first, end, step, window, sig, trd)
        # broker health over the block
        up = self.prom.series_total("min(%s)" % raw["broker_up_metric"], start, end, step)
        if up:
            down = [ts for ts, v in up if v < 1]
            report["broker_health"].update(down_steps=len(down), evaluated_steps=len(up), down_seconds=len(down) * step)

    def broker_textfile(self):
        path = self.raw["broker_health_textfile"]
        candidates = [path] if path else [_textfile.stack_path(self.state, name) for name in _textfile.BROKER_HEALTH]
        for candidate in candidates:
            parsed = _textfile.parse(candidate)
            if parsed is not None:
                up = parsed.get(("capital_com_up", ()))
                failing = sorted(
                    dict(labels).get("check", "?")
                    for (name, labels), value in parsed.items()
                    if name == "capital_com_check_ok" and value < 1
                )
                return {
                    "path": candidate,
                    "up": None if up is None else up >= 1,
                    "failing_checks": failing,
                    "last_check": parsed.get(("capital_com_last_check_timestamp_seconds", ())),
                }
        return None

    # -- textfile -----------------------------------------------------------------------------------
    def write_metrics(self, block, now, zai, window):
        if not self.raw["write_metrics"]:
            return None
        window = window or {}
        samples = [
            ("tradeops_paper_block_active", 1 if block else 0),
            ("tradeops_paper_block_elapsed_seconds", round(now - block["started_at"], 3) if block else 0),
            ("tradeops_paper_block_zai", 1 if zai else 0),
            ("tradeops_paper_block_window_signals", window.get("signals")),
            ("tradeops_paper_block_window_trades", window.get("trades")),
            ("tradeops_paper_block_zai_window_seconds", self.p.zai_window),
            ("tradeops_paper_block_last_update_timestamp_seconds", round(now, 3)),
        ]
        labels = {"block": block["id"]} if block else None
        samples = [
            (name, None if value is None else float(value), labels if name == "tradeops_paper_block_active" else None)
            for name, value in samples
        ]
        return _textfile.write_for_stack(self.state, _textfile.PAPER_BLOCK, samples)


def manifest_changes(before, after):
    """Readable differences of release identity (image, spec hash, release, colour) between two manifests."""
    b = {c["name"]: c for c in before}
    a = {c["name"]: c for c in after}
    out = []
    for name in sorted(set(b) | set(a)):
        if name not in a:
            out.append("%s removed" % name)
        elif name not in b:
            out.append("%s added (image %s, spec %s)" % (name, a[name].get("image"), a[name].get("spec_hash")))
        else:
            for key in MANIFEST_IDENTITY:
                if b[name].get(key) != a[name].get(key):
                    out.append("%s %s: %s -> %s" % (name, key, b[name].get(key), a[name].get(key)))
    return out


def zai_episodes(first, end, step, window, signals, trades):
    """Runs of evaluation steps with neither signals nor trades in the window before them.

    ``signals``/``trades`` map timestamp -> increase over the window; a missing timestamp is no data (not activity).
    Each episode starts ``window`` seconds before its first silent step (when the silence began).
    """
    episodes = []
    current = None
    ts = first
    while ts <= end + 1e-6:
        key = _nearest(signals, ts), _nearest(trades, ts)
        silent = not ((key[0] or 0) > 0 or (key[1] or 0) > 0)
        if silent and current is None:
            current = {"start": ts - window, "first_silent_step": ts, "end": None}
        elif not silent and current is not None:
            current["end"] = ts
            episodes.append(current)
            current = None
        ts += step
    if current is not None:
        current["end"] = None  # still silent when the block ended
        episodes.append(current)
    for ep in episodes:
        ep["seconds"] = round((ep["end"] if ep["end"] is not None else end) - ep["start"], 3)
    return episodes


def _nearest(mapping, ts):
    for key in mapping:
        if abs(key - ts) < 0.5:
            return mapping[key]
    return None


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["started", "status", "completed", "aborted"], default="status"),
        id=dict(type="str"),
        operator=dict(type="str"),
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
    )
    argument_spec.update(STATE_ARG_SPEC)
    argument_spec.update(DOCKER_ARG_SPEC)
    argument_spec.update(PROMETHEUS_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    guard(module)  # no URL user info (a Prometheus URL) nor credential in a message or result
    try:
        params = BlockParams(module.params)
        manager = PaperBlock(module, params)
        if params.state == "status":
            result = manager.status()
        else:
            with manager.deploy_lock():
                result = manager.started() if params.state == "started" else manager.close(params.state)
    except (BlockError, StateError, DockerError, PrometheusError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff", None)
    if params.state == "status" and module.params["fail_on_zai"] and result.get("zai"):
        module.fail_json(
            msg="zero-activity incident: %s" % result["msg"], **{k: v for k, v in result.items() if k != "msg"}
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
