# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of a paper block: start, status, complete or abort, and the records they keep.

Private to the collection; ``tradeops.stack.paper_block`` is its only user. ``BlockOptions`` validates
the options, ``PaperBlock`` runs one state against the stack's state directory on the Docker host:

    blocks/active.json        the active block (the freeze rollout reads), written first on a start
    blocks/<id>.json          every block ever opened, closed before the freeze is lifted
    reports/<id>/report.*     the report of a closed block (data: ``_block_report``, rendering: ``_report``)
    metrics/paper_block.prom  the block's gauges (``_textfile``)
    audit.log                 one line per start, completion, abort and recovery

Each write is atomic and ordered so that a crash between two writes is finished by running the same
state again. The ZAI verdict is ``_zai``'s.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import time
from contextlib import contextmanager

from ansible_collections.tradeops.stack.plugins.module_utils import _block_report, _rules, _textfile, _zai
from ansible_collections.tradeops.stack.plugins.module_utils._docker import get_client, stack_manifest
from ansible_collections.tradeops.stack.plugins.module_utils._prometheus import client_from_params
from ansible_collections.tradeops.stack.plugins.module_utils._report import render_markdown
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    LABEL_STACK,
    DeployLock,
    StackState,
    StateError,
    atomic_write_json,
    atomic_write_text,
    caller_identity,
    iso,
    read_json,
    undone_on_error,
    utcnow,
)

MAX_SECONDS = 30 * 86400  # the longest duration and zai_window


class BlockError(Exception):
    """A refusal or failure; the message says what was expected, what was found and what to do."""


class BlockOptions:
    """Validated options: every error names its option and comes before anything is read or written.

    A refusal is a ``BlockError``, or a ``_rules.RuleError`` for an id or a duration (the collection's rules).
    """

    def __init__(self, params):
        self.module_params = params
        self.wanted_state = params["state"]
        self.id = None if params["id"] is None else _rules.check_name("block", params["id"], option="id")
        self.operator = caller_identity(params["operator"])["user"]
        self.reason = params["reason"]
        self.duration = _rules.parse_duration(params["duration"], "duration", minimum=1, maximum=MAX_SECONDS)
        self.zai_window = _rules.parse_duration(params["zai_window"], "zai_window", minimum=1, maximum=MAX_SECONDS)
        self.trading_mode = params["trading_mode"]
        if self.wanted_state == "started":
            if not self.id:
                raise BlockError("id is required to start a block")
            if not (self.reason or "").strip():
                raise BlockError("reason is required to start a block: say why this block is run")
        if self.wanted_state == "aborted" and not (self.reason or "").strip():
            raise BlockError("reason is required to abort a block: say why it is aborted")
        if params["scrape_interval"] <= 0:
            raise BlockError("scrape_interval must be a positive number of seconds, got %r" % params["scrape_interval"])
        for option in ("ticks_metric", "signals_metric", "trades_metric", "broker_up_metric"):
            if not (params[option] or "").strip():
                raise BlockError("%s must be a metric name or selector, got an empty string" % option)


class PaperBlock:
    """The paper block of one stack: ``started``, ``status`` and ``close`` each return the module result."""

    def __init__(self, module, options):
        self.module = module
        self.options = options
        self.module_params = options.module_params
        self.check = module.check_mode
        self.stack_state = StackState(
            self.module_params["stack"], self.module_params["state_root"], self.module_params["operator"]
        )
        self._docker = None
        self._prom = None

    # -- helpers ----------------------------------------------------------------------------
    @property
    def docker(self):
        if self._docker is None:
            self._docker = get_client(self.module_params)
        return self._docker

    @property
    def prom(self):
        if self._prom is None:
            self._prom = client_from_params(self.module_params)
        return self._prom

    @contextmanager
    def deploy_lock(self):
        """Open or close a block only while no one holds the deploy lock, and keep it free meanwhile.

        Holds the lock's own mutex (the one every acquire of the deploy lock takes) across the
        decision and the write: a deploy, flag flip or restore either holds the lock already,
        and the block is refused naming it, or takes the lock afterwards and then sees the
        freeze, which it decides under the lock. Nothing is written to lock.json.
        """
        if self.check or not self.stack_state.exists():
            # no state directory: no lock was ever taken here; a refusal must not create one
            yield
            return
        lock = DeployLock(self.stack_state)
        deadline = time.monotonic() + max(0, self.module_params["lock_wait"])
        while True:
            with self.stack_state.mutex("lock"):
                holder = lock.status()
                if not holder.get("held"):
                    yield
                    return
            if time.monotonic() >= deadline:
                raise BlockError(
                    "the deploy lock of stack %s is held by %r since %s (reason: %s%s): a paper block opens and closes "
                    "only while no deploy, flag flip or restore runs; wait for it (lock_wait) or retry"
                    % (
                        self.module_params["stack"],
                        holder.get("holder"),
                        iso(holder.get("acquired_at")),
                        holder.get("reason"),
                        "; the lock is STALE: %s" % holder["stale_reason"] if holder.get("stale") else "",
                    )
                )
            time.sleep(0.5)

    def block_path(self, block_id):
        return self.stack_state.sub("blocks", "%s.json" % block_id)

    def read_block(self, block_id):
        return read_json(self.block_path(block_id)) if self.stack_state.exists() else None

    def read_report(self, block_id):
        return read_json(_block_report.paths(self.stack_state, block_id)["json"])

    def active(self):
        return self.stack_state.active_block() if self.stack_state.exists() else None

    def manifest(self):
        return stack_manifest(self.docker, self.module_params["stack"])

    def containers(self, block, manifest, until):
        """Per container, restarts and health since ``block`` started (``_block_report.container_changes``), and
        each container start in the window as ``(time, id, name)`` (the chart's restarts)."""
        starts, health_failures, start_events = _block_report.engine_events(
            self.docker, self.module_params["stack"], block["started_at"], until
        )
        return _block_report.container_changes(block, manifest, starts, health_failures), start_events

    def activity(self, seconds, at=None):
        """Counts of ticks, signals and trades over the last ``seconds`` (None and ``no data`` when Prometheus has
        none)."""
        window = math.ceil(seconds)
        out = {"seconds": window, "data": {}}
        for key, option in _zai.COUNTERS:
            value = self.prom.total(_zai.increase_query(self.module_params[option], window), at=at)
            out[key] = None if value is None else round(value, 3)
            out["data"][key] = "no data" if value is None else "ok"
        return out

    # -- started ----------------------------------------------------------------------------
    def paper_guard(self):
        """BlockError unless the stack is configured for paper trading on the demo host."""
        if self.options.trading_mode != "paper":
            raise BlockError(
                "trading_mode is %r: a paper block only runs on a stack in paper mode (tradeops_trading_mode: paper)"
                % self.options.trading_mode
            )
        for url in self.module_params["broker_urls"]:
            try:
                _rules.refuse_live_broker(url, self.module_params["broker_emulator_hosts"], option="broker_urls")
            except _rules.RuleError as exc:
                raise BlockError("%s; a paper block runs against the demo host only" % exc)
        containers = self.docker.containers.list(
            all=True, filters={"label": "%s=%s" % (LABEL_STACK, self.module_params["stack"])}
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
        current = self.active()
        if current and current.get("status", "active") == "active":
            if current.get("id") == self.options.id:
                recovered = self.read_block(self.options.id) is None
                if recovered and not self.check:
                    # interrupted between the freeze and the history record (see below): finish that start
                    with self.stack_state.mutex("blocks"):
                        atomic_write_json(self.block_path(self.options.id), current)
                    self.stack_state.audit("paper_block_recover", "ok", block=self.options.id, status="active")
                return {
                    "changed": recovered,
                    "msg": "block %s is already active (started %s)%s"
                    % (
                        self.options.id,
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
                    self.options.id,
                )
            )
        previous = self.read_block(self.options.id)
        if previous and previous.get("status") == "active":
            # a crash between the history record and active.json: finish that start instead of refusing the id
            self.paper_guard()
            metrics_file = None
            if not self.check:
                with self.stack_state.mutex("blocks"):
                    atomic_write_json(self.stack_state.sub("blocks", "active.json"), previous)
                self.stack_state.audit("paper_block_recover", "ok", block=self.options.id, status="active")
                metrics_file = self.write_metrics(previous, utcnow(), zai=False, window=None)
            return {
                "changed": True,
                "msg": "block %s had been started but not marked active (interrupted run): marked active"
                % self.options.id,
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
                % (self.options.id, previous.get("status"), iso(previous.get("started_at")))
            )
        self.paper_guard()
        now = utcnow()
        record = {
            "id": self.options.id,
            "operator": self.options.operator,
            "reason": self.options.reason,
            "started_at": now,
            "planned_end": now + self.options.duration,
            "duration_seconds": self.options.duration,
            "status": "active",
            "trading_mode": self.options.trading_mode,
            "manifest": self.manifest(),
            "zai_window_seconds": self.options.zai_window,
            "started_by": self.stack_state.identity(),
        }
        metrics_file = None
        if not self.check:
            with self.stack_state.mutex("blocks"):
                again = self.stack_state.active_block()
                if again and again.get("status", "active") == "active":
                    raise BlockError("paper block %s became active while this one was starting" % again.get("id"))
                # The freeze first, then the history record and the audit line: whatever a full disk or a crash
                # leaves, status and rollout see the block (active.json holds the whole record). A failed history
                # or audit write removes both again, so the task fails with no block at all; a crash in between
                # is finished by starting the same id again (above) or by completing or aborting the block.
                active_path = self.stack_state.sub("blocks", "active.json")
                atomic_write_json(active_path, record)
                try:
                    atomic_write_json(self.block_path(self.options.id), record)
                    self.stack_state.audit(
                        "paper_block_start",
                        "ok",
                        block=self.options.id,
                        operator=self.options.operator,
                        reason=self.options.reason,
                        planned_end=iso(record["planned_end"]),
                        containers=len(record["manifest"]),
                    )
                except StateError as exc:
                    undone = "the block was not started"
                    for path in (active_path, self.block_path(self.options.id)):
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
            "msg": "paper block %s started; planned end %s" % (self.options.id, iso(record["planned_end"])),
            "block": record,
            "active": True,
            "elapsed_seconds": 0.0,
            "zai": False,
            "zai_reason": "block just started",
            "metrics_file": metrics_file,
            "diff": {"before": {}, "after": record},
        }

    # -- status -----------------------------------------------------------------------------

    # -- status -----------------------------------------------------------------------------
    def status_result(self, block, write=True):
        now = utcnow()
        elapsed = now - block["started_at"]
        manifest = self.manifest()
        containers, _starts = self.containers(block, manifest, now)
        window = self.activity(self.options.zai_window)
        since = self.activity(max(elapsed, 1))
        zai, reason = _zai.verdict(elapsed, window, self.options.zai_window)
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
            "unhealthy": _block_report.unhealthy(containers),
            "metrics_file": metrics_file,
        }

    def status(self):
        block = self.active()
        if not block or block.get("status", "active") != "active":
            metrics_file = None
            if not self.check and self.module_params["write_metrics"] and self.stack_state.exists():
                metrics_file = self.write_metrics(None, utcnow(), zai=False, window=None)
            return {
                "changed": False,
                "msg": "no paper block is active on stack %s" % self.module_params["stack"],
                "block": None,
                "active": False,
                "zai": False,
                "zai_reason": "no active block",
                "metrics_file": metrics_file,
            }
        if self.options.id and self.options.id != block["id"]:
            raise BlockError("block %s is not active: the active block is %s" % (self.options.id, block["id"]))
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
        if block and self.options.id and block.get("id") != self.options.id:
            raise BlockError(
                "cannot %s block %s: the active block is %s"
                % ("complete" if final == "completed" else "abort", self.options.id, block.get("id"))
            )
        if not block:
            if self.options.id:
                stored = self.read_block(self.options.id)
                if stored and stored.get("status") == final:
                    return {
                        "changed": False,
                        "msg": "block %s is already %s" % (self.options.id, final),
                        "block": stored,
                        "active": False,
                        "zai": False,
                        "zai_reason": "block is closed",
                        "report": self.read_report(self.options.id),
                        "report_files": _block_report.paths(self.stack_state, self.options.id),
                        "metrics_file": None,
                    }
                if stored:
                    raise BlockError(
                        "block %s is already closed with status %s" % (self.options.id, stored.get("status"))
                    )
                raise BlockError(
                    "no paper block %s exists on stack %s" % (self.options.id, self.module_params["stack"])
                )
            raise BlockError(
                "no paper block is active on stack %s: nothing to %s"
                % (self.module_params["stack"], "complete" if final == "completed" else "abort")
            )
        # a crash after the history record was closed but before active.json was removed: finish the job
        stored = self.read_block(block["id"])
        if stored and stored.get("status") in ("completed", "aborted"):
            if not self.check:
                with self.stack_state.mutex("blocks"):
                    os.unlink(self.stack_state.sub("blocks", "active.json"))
                self.stack_state.audit("paper_block_recover", "ok", block=block["id"], status=stored["status"])
                self.write_metrics(None, utcnow(), zai=False, window=None)
            return {
                "changed": True,
                "msg": "block %s was already %s; removed the stale active marker" % (block["id"], stored["status"]),
                "block": stored,
                "active": False,
                "zai": False,
                "zai_reason": "block is closed",
                "report": self.read_report(block["id"]),
                "report_files": _block_report.paths(self.stack_state, block["id"]),
                "metrics_file": None,
                "diff": {"before": block, "after": {}},
            }
        now = utcnow()
        closed = dict(block, status=final, ended_at=now, closed_by=self.stack_state.identity())
        if final == "aborted" or self.options.reason:
            closed["close_reason"] = self.options.reason
        manifest = self.manifest()
        containers, start_events = self.containers(closed, manifest, now)
        # the last audit lines are enough: a block lasts days, the log keeps months
        markers = _block_report.chart_markers(closed, start_events, self.stack_state.read_audit(limit=5000), now)
        report = _block_report.build(
            self.module_params,
            closed,
            now,
            manifest,
            containers,
            self.options.zai_window,
            self.broker_textfile(),
            self.prom,
            markers=markers,
        )
        closed["report_summary"] = {
            "totals": report["totals"],
            "zai_episodes": len(report["zai_episodes"]),
            "restarts_total": report["restarts_total"],
            "manifest_changed": report["manifest_changed"],
        }
        paths = _block_report.paths(self.stack_state, block["id"])
        metrics_file = None
        if not self.check:
            directory = self.stack_state.sub("reports", block["id"])
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o750)
            atomic_write_text(paths["svg"], report.pop("_svg"))
            atomic_write_text(paths["markdown"], render_markdown(report))
            atomic_write_json(paths["json"], report)
            active = self.stack_state.sub("blocks", "active.json")
            # history first, then lift the freeze, then the audit line: all of it or, when the line does not
            # fit (full disk), none of it: the block stays active and frozen, as status shows
            with self.stack_state.mutex("blocks"), undone_on_error(self.block_path(block["id"]), active):
                atomic_write_json(self.block_path(block["id"]), closed)
                os.unlink(active)
                self.stack_state.audit(
                    "paper_block_%s" % ("complete" if final == "completed" else "abort"),
                    "ok",
                    block=block["id"],
                    reason=self.options.reason,
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

    def broker_textfile(self):
        """The broker health check's last outcome (``broker_health_textfile``, or the stack's capital_com textfile)."""
        path = self.module_params["broker_health_textfile"]
        candidates = (
            [path] if path else [_textfile.stack_path(self.stack_state, name) for name in _textfile.BROKER_HEALTH]
        )
        return _block_report.broker_health(candidates)

    # -- metrics textfile -----------------------------------------------------------------------------
    def write_metrics(self, block, now, zai, window):
        if not self.module_params["write_metrics"]:
            return None
        window = window or {}
        samples = [
            ("tradeops_paper_block_active", 1 if block else 0),
            ("tradeops_paper_block_elapsed_seconds", round(now - block["started_at"], 3) if block else 0),
            ("tradeops_paper_block_zai", 1 if zai else 0),
            ("tradeops_paper_block_window_signals", window.get("signals")),
            ("tradeops_paper_block_window_trades", window.get("trades")),
            ("tradeops_paper_block_zai_window_seconds", self.options.zai_window),
            ("tradeops_paper_block_last_update_timestamp_seconds", round(now, 3)),
        ]
        labels = {"block": block["id"]} if block else None
        samples = [
            (name, None if value is None else float(value), labels if name == "tradeops_paper_block_active" else None)
            for name, value in samples
        ]
        return _textfile.write_for_stack(self.stack_state, _textfile.PAPER_BLOCK, samples)
