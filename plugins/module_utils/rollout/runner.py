# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout of one service: decide, record the attempt, execute the strategy, settle (promote or roll
back), under the deploy lock and the paper-block freeze, with an audit record.

Check mode runs the same path on a dry engine (engine.DryEngine): the plan it returns is the list of
actions the dry engine recorded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as docker_utils
from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.module_utils._releases import ReleaseHistory, new_release_id
from ansible_collections.tradeops.stack.plugins.module_utils._state import StackState, StateError, create_once
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import InvariantViolated, RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.analysis import Analysis
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.blue_green import BlueGreen
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.edge_proxy import edge_proxy
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import DryEngine, Engine
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.exclusive import Exclusive
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.gate import Gate
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.lease import Lease
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.progress import Progress
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import Slots
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.start_first import StartFirst
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.strategy import Settings


def default_secrets_dir(params):
    return params["secrets_dir"] or "/etc/tradeops/%s/secrets" % params["stack"]


class Runner:
    def __init__(self, module, engine=None, clean=None):
        params = module.params
        self.module = module
        self.params = params
        self.check = module.check_mode
        self.warnings = []
        self.timings = {}
        self.t0 = time.monotonic()
        self.stack = params["stack"]
        self.service = params["service"]
        self.strategy_name = params["strategy"]
        self.state = StackState(self.stack, params["state_root"], params.get("operator"))
        self.history = ReleaseHistory(self.state, self.service).load()
        self.slots = Slots(self.stack, self.service)
        self.secrets_dir = default_secrets_dir(params)
        if engine is None:
            engine = Engine(docker_utils.get_client(params), self.stack, self.service, self.secrets_dir)
            engine = DryEngine(engine) if self.check else engine
        self.engine = engine
        engine.clean = clean  # the module's redaction: log and health lines are redacted, then cut
        self.networks = [
            {"name": n["name"], "aliases": n.get("aliases") or [], "internal": bool(n.get("internal"))}
            for n in params["networks"] or [{"name": self.stack}]
        ]
        self.lease = Lease(self.state, self.service, params["lock"], params["reason"], self.warn)
        self.analysis = Analysis(params["analysis"], self.warn) if params["analysis"] else None
        self.health_budget = None
        self.strategy = None

    def warn(self, msg):
        self.warnings.append(msg)

    # -- the desired spec ----------------------------------------------------------------
    def fingerprint_key(self):
        path = self.state.sub(".fingerprint-key")
        try:
            with open(path, "rb") as handle:
                key = handle.read()
        except IOError:
            if self.check:
                return None
            self.state.ensure()
            key = create_once(path, os.urandom(32))  # whole or absent, even on a full disk
        if len(key) != 32:  # an older version cut by a full disk: fingerprints under it would be weak
            raise StateError(
                "secret fingerprint key %s is damaged (%d bytes, expected 32); remove it: the next rollout of "
                "each service with secrets then restarts it once" % (path, len(key))
            )
        return key

    def secret_fingerprints(self, names):
        key = self.fingerprint_key()
        out = {}
        for name in names or []:
            if "/" in name or name.startswith("."):
                raise RolloutFailed(
                    "secret name %r is invalid: expected a file name under %s" % (name, self.secrets_dir)
                )
            path = os.path.join(self.secrets_dir, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except IOError as exc:
                raise RolloutFailed(
                    "secret %r: cannot read %s (%s); write it first (tradeops.stack secrets role)"
                    % (name, path, exc.strerror)
                )
            out[name] = docker_utils.fingerprint(key, data) if key else "unknown-until-first-run"
        return out

    def build_spec(self):
        """The spec the module's options describe, and its hash."""
        params = self.params
        for key in ("image", "resources"):
            if not params.get(key):
                raise RolloutFailed("%s is required with state=present" % key)
        image_id, image = self.engine.resolve_image(params["image"], params["pull"])
        fps = self.secret_fingerprints(params.get("secrets"))
        spec = _spec.desired_spec(dict(params, networks=self.networks), image_id, fps)
        self.check_spec(spec, image)
        return spec, _spec.spec_hash(spec)

    def release_spec(self, rel):
        """A rollback starts from the release's stored spec (never from re-built module options)."""
        spec = dict(rel["spec"])
        _image_id, image = self.engine.resolve_image(rel["image_id"], "never")
        self.secret_fingerprints(sorted(spec.get("secrets") or {}))  # the files must still be readable
        self.check_spec(spec, image)
        return spec, rel["spec_hash"]

    def check_spec(self, spec, image):
        cfg = (image.attrs.get("Config") or {}) if image is not None else {}
        user = spec["user"] if spec["user"] is not None else cfg.get("User") or ""
        if user.split(":")[0] in ("", "root", "0"):
            if not self.params["allow_root"]:
                raise RolloutFailed(
                    "service %s would run as root (image %s has no USER and no user option is set); set user "
                    "(e.g. '10001:10001') or allow_root: true" % (self.service, spec["image"])
                )
            self.warn("service %s runs as root (allow_root: true)" % self.service)
        if self.strategy_name == "start_first" and any(b[1] for b in spec["ports"].values()):
            raise RolloutFailed(
                "strategy start_first cannot publish fixed host ports (%s): old and new instances overlap; use "
                "blue_green with a proxy or exclusive" % ", ".join(sorted(spec["ports"]))
            )
        hc = spec["healthcheck"] or cfg.get("Healthcheck")
        budget = docker_utils.health_budget(hc)
        health = self.params["health"]
        if budget is None:
            self.warn(
                "service %s has no healthcheck (image %s): the gate only checks that it keeps running%s"
                % (self.service, spec["image"], " and the HTTP probe" if health.get("http") else "")
            )
        elif health["timeout"] < budget:
            self.warn(
                "health.timeout %ss is shorter than the healthcheck's start_period + interval x retries (%.0fs): "
                "a slow but healthy start will be rolled back" % (health["timeout"], budget)
            )
        self.health_budget = budget

    # -- the strategy ----------------------------------------------------------------------
    def build_strategy(self, primary_net):
        params, engine, slots = self.params, self.engine, self.slots
        settings = Settings(
            restart_policy=params["restart_policy"],
            stop_timeout=params["stop_timeout"],
            health_timeout=params["health"]["timeout"],
            health_budget=self.health_budget,
        )
        gate = Gate(
            engine,
            params["health"],
            primary_net,
            analysis=self.analysis,
            bake=(params["analysis"] or {}).get("bake") or 0,
            keep_lock=self.lease.keep,
        )
        if self.strategy_name == "blue_green":
            proxy = edge_proxy(
                engine,
                slots,
                params["proxy"],
                self.state.sub("proxy", self.service),
                primary_net,
                timings=self.timings,
                warn=self.warn,
            )
            return BlueGreen(
                engine,
                slots,
                gate,
                settings,
                proxy,
                params["proxy"]["drain"],
                recorded_colour=lambda: self.history.data.get("active_colour"),
            )
        if self.strategy_name == "exclusive":
            return Exclusive(engine, slots, gate, settings, warn=self.warn)
        return StartFirst(engine, slots, gate, settings)

    # -- freeze ----------------------------------------------------------------------------
    def check_freeze(self):
        block = self.state.active_block() if self.state.exists() else None
        if block and block.get("status", "active") == "active":
            if not self.params["allow_during_block"]:
                raise RolloutFailed(
                    "paper block %s is active (operator %s, reason: %s, planned end %s): rollouts are frozen; "
                    "wait for the block to end or set allow_during_block: true (audited)"
                    % (block.get("id"), block.get("operator"), block.get("reason"), block.get("planned_end")),
                    stage="freeze",
                )
            return block
        return None

    # -- entry ---------------------------------------------------------------------------
    def run(self):
        result = dict(changed=False, strategy=self.strategy_name, rolled_back=False)
        state = self.params["state"]
        if state == "absent":
            return self.absent(result)
        if self.strategy_name == "blue_green" and not self.params["proxy"]:
            raise RolloutFailed("strategy blue_green needs proxy (listen, port)")
        if state == "rolled_back":
            spec, spec_hash = self.release_spec(self.rollback_target())
            return self.present(result, spec, spec_hash, action_hint="rollback")
        spec, spec_hash = self.build_spec()
        return self.present(result, spec, spec_hash)

    def rollback_target(self):
        ref = self.params["to_release"]
        if ref:
            target = self.history.find(ref)
            if not target:
                raise RolloutFailed(
                    "release %r of %s is not in the history; known releases: %s"
                    % (ref, self.service, ", ".join(r["id"] for r in self.history.releases) or "none")
                )
            return target
        target = self.history.previous_good()
        if not target:
            raise RolloutFailed(
                "no known-good release of %s other than the current one to roll back to (history: %s)"
                % (self.service, ", ".join("%s=%s" % (r["id"], r["result"]) for r in self.history.releases) or "empty")
            )
        return target

    def decide(self, result, strategy, spec, spec_hash, action_hint):
        """The operation (None: nothing to do), with the diff and the expected pause in ``result``."""
        current_rel = self.history.current()
        result["previous_release"] = current_rel["id"] if current_rel else None
        before = strategy.active_spec_hash()
        if self.module._diff:
            before_rel = self.history.by_hash(before) if before else None
            result["diff"] = {
                "before": _spec.diff_spec(
                    before_rel["spec"] if before_rel else ({"spec_hash": before} if before else {}), None
                ),
                "after": _spec.diff_spec(spec, before_rel["spec"] if before_rel else None),
            }
        if strategy.is_noop(spec_hash):
            result.update(operation="noop", release=result["previous_release"], plan={"steps": [], "expected_pause": 0})
            return None
        action = action_hint or ("upgrade" if before else "create")
        if before == spec_hash:
            action = action_hint or "restart"
        result["operation"] = action
        result["plan"] = strategy.expected_pause()
        return action

    def present(self, result, spec, spec_hash, action_hint=None):
        networks = spec["networks"]
        result["spec_hash"] = spec_hash
        strategy = self.strategy = self.build_strategy(networks[0]["name"])
        action = self.decide(result, strategy, spec, spec_hash, action_hint)
        if action is None:
            return self.finish(result)
        block = self.check_freeze()
        if self.check:
            result["changed"] = True
            result["release"] = result["previous_release"]
            self.execute_dry(strategy, networks, spec, spec_hash)
            return self.finish(result)
        self.lease.acquire()
        self.engine.progress = Progress(self.state, self.service)
        try:
            # whoever held the lock before us may have changed the service or opened a paper block
            # (paper_block opens one only under this lock): decide both again under the lock
            block = self.check_freeze()
            self.history.load()
            action = self.decide(result, strategy, spec, spec_hash, action_hint)
            if action is None:
                self.lease.release()
                return self.finish(result)
            if block:
                self.state.audit(
                    "freeze_override",
                    "ok",
                    service=self.service,
                    block=block.get("id"),
                    reason=self.params["reason"],
                    strategy=self.strategy_name,
                )
            self.ensure_networks(networks)
            rel = self.record_attempt(spec, spec_hash, rollback=action_hint == "rollback")
            prev_rel = self.history.current()
            try:
                colour = strategy.execute(spec, spec_hash, rel["id"])
            except Exception as exc:  # any failure after the first change rolls back, then fails the task
                self.settle_failure(result, strategy, action, spec, prev_rel, rel, as_failure(exc))
                return self.finish(result)
            with self.state.mutex("releases"):
                self.history.load()
                self.history.promote(self.history.get(rel["id"]), colour=colour)
                self.history.prune(self.params["keep_releases"])
                self.history.save()
            result.update(changed=True, release=rel["id"])
            self.audit(action, "ok", prev_rel, rel, None)
        finally:
            self.engine.progress.close()
            self.engine.progress = None
            self.lease.release()
        return self.finish(result)

    def execute_dry(self, strategy, networks, spec, spec_hash):
        """Check mode: the strategy on the dry engine; what it records is the plan."""
        self.ensure_networks(networks)
        rel = self.history.by_hash(spec_hash)
        try:
            strategy.execute(spec, spec_hash, rel["id"] if rel else new_release_id(spec_hash))
        except (RolloutFailed, InvariantViolated) as exc:
            self.warn("the rollout would stop: %s" % getattr(exc, "reason", exc))

    def ensure_networks(self, networks):
        """The service's networks (as stored in its spec) and its edge proxy's, created when missing."""
        for net in networks:
            self.engine.ensure_network(net["name"], internal=bool(net.get("internal")))
        for name in (self.params["proxy"] or {}).get("networks") or [] if self.strategy_name == "blue_green" else []:
            self.engine.ensure_network(name)

    def record_attempt(self, spec, spec_hash, rollback):
        with self.state.mutex("releases"):
            self.history.load()
            rel = self.history.by_hash(spec_hash) if rollback else None
            if rel is None:
                rel = self.history.add(
                    spec_hash, spec, self.strategy_name, image_digest=self.engine.image_digest(spec["image_id"])
                )
            self.history.save()
        return rel

    def settle_failure(self, result, strategy, action, spec, prev_rel, rel, failure):
        restored = self.recover(strategy, failure)
        with self.state.mutex("releases"):
            self.history.load()
            self.history.fail(self.history.get(rel["id"]) or rel, "rolled_back", failure.reason)
            self.history.save()
        rollback_failed = failure.rollback_failed
        result.update(
            changed=True,
            failed=True,
            rolled_back=not rollback_failed,
            rollback_failed=rollback_failed,
            reason=failure.reason,
            restored_release=restored,
            release=restored,
            attempted_release=rel["id"],
            msg="rollout of %s to %s failed and was rolled back%s: %s"
            % (
                self.service,
                spec["image"],
                " to %s" % restored if restored else " (nothing to restore: first deploy)",
                failure.reason,
            ),
        )
        if failure.gate:
            result["gate"] = failure.gate
        self.audit(action, "rollback_failed" if rollback_failed else "rolled_back", prev_rel, rel, failure.reason)

    def recover(self, strategy, failure):
        """Undo after a failure; returns the restored release id (None when nothing ran before)."""
        try:
            restored_hash = strategy.rollback()
        except Exception as exc:  # the rollback itself failed: say so loudly, never report success
            failure.reason += "; AUTOMATIC ROLLBACK ALSO FAILED: %s" % getattr(exc, "reason", exc)
            failure.rollback_failed = True
            return None
        rel = self.history.by_hash(restored_hash) if restored_hash else None
        return rel["id"] if rel else None

    def absent(self, result):
        engine = self.engine
        found = list(engine.containers().values()) + engine.proxies()
        result["operation"] = "remove" if found else "noop"
        result["plan"] = {"expected_pause": "service removed"}
        prev = self.history.current()
        result["previous_release"] = prev["id"] if prev else None
        result["release"] = None
        if found and self.check:
            for c in found:
                engine.remove(c)
        elif found:
            self.check_freeze()
            self.lease.acquire()
            try:
                self.check_freeze()  # again under the lock, where a block cannot open meanwhile
                for c in found:
                    engine.remove(c)
                with self.state.mutex("releases"):
                    self.history.load()
                    self.history.clear_current()
                    self.history.save()
                self.audit("remove", "ok", prev, None, None)
            finally:
                self.lease.release()
        result["changed"] = bool(found)
        return self.finish(result)

    def audit(self, action, outcome, prev_rel, rel, reason):
        self.state.audit(
            "rollout",
            outcome,
            service=self.service,
            strategy=self.strategy_name,
            kind=action,
            from_release=prev_rel["id"] if prev_rel else None,
            to_release=rel["id"] if rel else None,
            from_image=prev_rel["image"] if prev_rel else None,
            to_image=rel["image"] if rel else None,
            duration=round(time.monotonic() - self.t0, 2),
            reason=reason or self.params["reason"],
            lock_holder=self.lease.holder,
        )

    def finish(self, result):
        plan = result.setdefault("plan", {})
        if result.get("operation") != "noop":
            plan["steps"] = list(self.engine.actions)
        plan.setdefault("steps", [])
        result["containers"] = self.engine.summaries()
        result["releases"] = self.history.summary()
        gate = self.strategy.gate if self.strategy is not None else None
        if gate is not None and gate.report and "gate" not in result and not self.check:
            result["gate"] = gate.report
        if self.analysis and self.analysis.report:
            result["analysis"] = self.analysis.report
        timings = dict(self.timings)
        if self.strategy is not None:
            timings.update(self.strategy.gate.timings)
            timings.update(self.strategy.attempt.timings)
        timings["total"] = round(time.monotonic() - self.t0, 2)
        if result.get("changed") and not self.check:
            result["timings"] = timings
        if self.warnings:
            result["warnings"] = self.warnings
        return result


def as_failure(exc):
    """Any exception of a strategy as the RolloutFailed the result reports."""
    if isinstance(exc, RolloutFailed):
        return exc
    if isinstance(exc, InvariantViolated):
        return RolloutFailed("INVARIANT VIOLATED: %s" % exc, stage="invariant")
    if isinstance(exc, docker_utils.DockerException):
        return RolloutFailed("Docker engine error: %s" % exc, stage="docker")
    return RolloutFailed("unexpected error %s: %s" % (type(exc).__name__, exc), stage="internal")
