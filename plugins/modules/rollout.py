#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout
short_description: Health-gated blue/green, start-first and exclusive rollouts of one service with automatic rollback
version_added: 0.1.0
description:
  - Rolls out one service of a stack on the Docker host through the Docker SDK for Python, gates the new
    instance on Docker health (compared exactly with C(healthy)) and an optional HTTP probe, optionally analyses
    Prometheus metrics before and after promotion, and rolls back automatically on any failure.
  - A rollout that rolled back always fails the task with RV(rolled_back=true), the reason and the restored release.
  - The desired container spec (including the image id and a keyed fingerprint of each secret file) is hashed into
    the C(tradeops.spec-hash) label; an unchanged, running, healthy service is a no-op without any Docker write.
  - Every change is recorded in the per-service release history and the stack's audit log under O(state_root),
    and runs under the stack's deploy lock (see M(tradeops.stack.deploy_lock)).
  - While a paper-trading block is active on the host the module refuses to change anything unless
    O(allow_during_block=true); the override is audited.
  - Container hardening is the default; C(cap_drop=ALL), C(no-new-privileges), read-only root filesystem with a
    tmpfs at C(/tmp), resource limits required, non-root user required, bounded logs, ports bound to 127.0.0.1.
author:
  - tradeops.stack contributors (@tradeops-stack)
extends_documentation_fragment:
  - tradeops.stack.state
  - tradeops.stack.docker
attributes:
  check_mode:
    support: full
    description: Returns the plan (action, steps, strategy, expected pause) without any change.
  diff_mode:
    support: full
    description: Shows the container spec before and after, secrets masked.
  idempotent:
    support: full
    description: An unchanged, running, healthy service is a no-op without any Docker write.
options:
  service:
    description:
      - Name of the service in the stack. Containers are named C(<stack>-<service>) (C(_) becomes C(-)),
        with C(-blue)/C(-green) for O(strategy=blue_green).
    type: str
    required: true
  state:
    description:
      - V(present) rolls out the described spec.
      - V(rolled_back) returns to the previous known-good release, or to O(to_release).
      - V(absent) stops and removes every container of the service (and its proxy); the history is kept.
    type: str
    choices: [present, rolled_back, absent]
    default: present
  to_release:
    description:
      - With O(state=rolled_back), the release to return to; a release id, an id or spec-hash prefix, or an image
        reference. Default is the newest known-good release other than the current one.
    type: str
  strategy:
    description:
      - V(blue_green) starts the other colour, gates it, switches the edge proxy (validated graceful nginx reload),
        drains with the old colour as a backup upstream, removes it (second validated reload), stops the old
        colour and keeps it for an instant rollback. Requires O(proxy).
      - V(start_first) starts the new instance and gates it before the old one stops (short overlap).
      - V(exclusive) stops the old instance before the new one starts and checks before and after every step
        that never two instances of the service run; if the new one fails the old one is started again.
    type: str
    choices: [blue_green, start_first, exclusive]
    default: start_first
  image:
    description: Image reference (tag or digest). Required with O(state=present).
    type: str
  pull:
    description:
      - V(always) pulls before every rollout, V(missing) only when the image is not present, V(never) uses the local
        image and fails when it is absent.
    type: str
    choices: [always, missing, never]
    default: missing
  command:
    description: Command (arguments after the entrypoint). Default is the image's.
    type: list
    elements: str
  entrypoint:
    description: Entrypoint. Default is the image's.
    type: list
    elements: str
  env:
    description:
      - Non-secret environment variables. Secrets go through O(secrets), never here (they would show in
        C(docker inspect)).
    type: dict
  secrets:
    description:
      - Names of secret files under O(secrets_dir), mounted read-only at C(/run/secrets/<name>).
      - A keyed fingerprint of each file's content (never the value) is part of the spec hash, so a changed secret
        rolls the service. Values never appear in returns, diffs or the audit log.
    type: list
    elements: str
  secrets_dir:
    description: Host directory holding the secret files. Default is C(/etc/tradeops/<stack>/secrets).
    type: path
  volumes:
    description: Volumes and bind mounts, C(name:/path[:ro]) or C(/host/path:/path[:ro]).
    type: list
    elements: str
  networks:
    description:
      - Networks to attach, the first is the primary one (used for probes and the proxy). Created as bridge
        networks when missing. Default is one network named after the stack.
    type: list
    elements: dict
    suboptions:
      name:
        description: Network name.
        type: str
        required: true
      aliases:
        description: DNS aliases on this network.
        type: list
        elements: str
  published_ports:
    description:
      - Ports to publish, C([ip:]host:container[/proto]). Without an ip they are bound to O(publish_address).
      - Not allowed with O(strategy=start_first) when a host port is fixed (two instances overlap); use blue_green.
    type: list
    elements: str
  publish_address:
    description: Host address for published ports that do not name one.
    type: str
    default: 127.0.0.1
  labels:
    description: Extra container labels.
    type: dict
  user:
    description: C(uid[:gid]) or user name to run as. Default is the image's user, which must not be root.
    type: str
  allow_root:
    description: Allow running as root (image without a USER and no O(user)). Recorded as a warning.
    type: bool
    default: false
  read_only:
    description: Read-only root filesystem.
    type: bool
    default: true
  tmpfs:
    description: Tmpfs mounts, C(/path[:options]).
    type: list
    elements: str
    default: ["/tmp"]
  cap_drop:
    description: Capabilities to drop.
    type: list
    elements: str
    default: [ALL]
  cap_add:
    description: Capabilities to add back (only what the service needs).
    type: list
    elements: str
    default: []
  security_opt:
    description: Security options.
    type: list
    elements: str
    default: ["no-new-privileges:true"]
  resources:
    description: Resource limits, required with O(state=present).
    type: dict
    suboptions:
      memory:
        description: Memory limit (C(256m), C(1g)).
        type: str
        required: true
      cpus:
        description: CPU limit in cores.
        type: float
        required: true
      pids:
        description: Maximum number of processes.
        type: int
        required: true
  healthcheck:
    description: Container healthcheck; default is the image's HEALTHCHECK.
    type: dict
    suboptions:
      test:
        description: C(["CMD", ...]), C(["CMD-SHELL", "..."]) or a shell string.
        type: raw
        required: true
      interval:
        description: Time between checks (C(5s), C(1m30s)).
        type: str
        default: 30s
      timeout:
        description: Timeout of one check.
        type: str
        default: 30s
      retries:
        description: Consecutive failures before unhealthy.
        type: int
        default: 3
      start_period:
        description: Grace period during which failures do not count.
        type: str
        default: 0s
  restart_policy:
    description: Docker restart policy of the running instance. A stopped instance kept for rollback gets C(no).
    type: str
    choices: ["no", on-failure, unless-stopped, always]
    default: unless-stopped
  stop_timeout:
    description: Seconds between SIGTERM and SIGKILL when an instance stops.
    type: int
    default: 10
  log:
    description: Log driver and options; default C(json-file) with C(max-size=10m), C(max-file=3).
    type: dict
    suboptions:
      driver:
        description: Log driver.
        type: str
        default: json-file
      options:
        description: Log driver options.
        type: dict
  health:
    description: The health gate.
    type: dict
    default: {}
    suboptions:
      timeout:
        description:
          - Seconds the new instance has to become exactly C(healthy) (and pass O(health.http)).
          - A warning is returned when it is shorter than the healthcheck's start period plus interval x retries.
        type: int
        default: 120
      http:
        description: HTTP probe of the new instance at its IP on the primary network.
        type: dict
        suboptions:
          port:
            description: Container port.
            type: int
            required: true
          path:
            description: Request path.
            type: str
            default: /health
          status:
            description: Expected HTTP status.
            type: int
            default: 200
          timeout:
            description: Seconds per request.
            type: float
            default: 2
      monitor:
        description:
          - Seconds after promotion during which the new instance must stay running and not turn unhealthy (like
            Swarm's C(monitor)); a failure then rolls back.
        type: int
        default: 0
  analysis:
    description:
      - Prometheus metric analysis before promotion and during a bake period after it. Every check must hold for
        every returned sample. A query that returns no data is inconclusive, never a pass unless
        O(analysis.inconclusive=pass).
    type: dict
    suboptions:
      prometheus_url:
        description: Base URL of the Prometheus HTTP API, as reachable from the Docker host.
        type: str
        required: true
      checks:
        description: Queries with success conditions.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Name used in messages.
            type: str
            required: true
          query:
            description: PromQL instant query.
            type: str
            required: true
          condition:
            description: Comparison of each sample with O(analysis.checks[].threshold) that must hold.
            type: str
            choices: ["<", "<=", ">", ">=", "==", "!="]
            required: true
          threshold:
            description: Threshold.
            type: float
            required: true
      interval:
        description: Seconds between measurements.
        type: int
        default: 5
      min_samples:
        description: Conclusive measurements required before promotion.
        type: int
        default: 1
      failure_limit:
        description: Failed measurements tolerated per phase.
        type: int
        default: 0
      bake:
        description: Seconds after promotion during which measurements continue.
        type: int
        default: 0
      inconclusive:
        description:
          - What no data means; V(wait) keeps measuring until O(analysis.inconclusive_timeout) then fails,
            V(fail) fails at once, V(pass) counts it as a pass (returned as a warning).
        type: str
        choices: [wait, pass, fail]
        default: wait
      inconclusive_timeout:
        description: Seconds to wait for data with O(analysis.inconclusive=wait).
        type: int
        default: 60
  proxy:
    description: The edge proxy of a blue_green service (container C(<stack>-<service>-proxy), created if missing).
    type: dict
    suboptions:
      listen:
        description: Host port the proxy publishes.
        type: int
        required: true
      port:
        description: Container port of the service the proxy forwards to.
        type: int
        required: true
      bind:
        description: Host address the proxy's port is bound to.
        type: str
        default: 127.0.0.1
      image:
        description: Proxy image (nginx, config in C(/etc/nginx/tradeops/), non-root).
        type: str
        default: tradeops/proxy:1.0
      drain:
        description:
          - Seconds between the switch and stopping the old colour (in-flight requests finish).
          - During the drain the old colour stays in the upstream as a C(backup) server (a request the new colour
            refuses or does not accept within 1.5 s goes to it); a second validated reload removes it.
        type: int
        default: 5
      memory:
        description: Memory limit of the proxy container.
        type: str
        default: 128m
      cpus:
        description: CPU limit of the proxy container (a tight CFS quota adds latency under load).
        type: float
        default: 1.0
  keep_releases:
    description: Releases kept in the history; the current and the last known-good one are never pruned.
    type: int
    default: 5
  lock:
    description:
      - The stack's deploy lock. If O(lock.holder) already holds it (taken by M(tradeops.stack.deploy_lock) for the
        whole play), the rollout runs under it; otherwise the rollout takes and releases it itself.
      - A lock the rollout takes itself records the module's own process and machine (boot id and pid
        namespace) on the Docker host as its owner, so it turns stale exactly when that process is gone
        (controller and module killed), and never while a module whose controller died is still changing
        containers.
      - While it waits (health gate, analysis, monitor, drains) the rollout renews the lease of the lock it runs
        under, its own or the play's, every third of its TTL, so a rollout longer than the TTL is not taken
        over. If someone else holds the lock by then, the rollout fails naming them and rolls back.
    type: dict
    default: {}
    suboptions:
      holder:
        description: Holder name. Default is C(rollout <service> <user>@<host> pid <module pid>).
        type: str
      ttl:
        description:
          - Seconds after which a lock the rollout takes is stale unless renewed; at most 21600 (6 h).
          - Under the play's lock, that lock is renewed by the TTL it was taken with.
        type: int
        default: 900
      wait:
        description: Seconds to wait for a lock held by someone else.
        type: int
        default: 0
      take_over_stale:
        description: Take over a stale lock (TTL passed or owner process gone); audited.
        type: bool
        default: false
  allow_during_block:
    description: Roll out even while a paper-trading block is active; audited.
    type: bool
    default: false
  reason:
    description: Why this rollout happens (audit log and lock).
    type: str
notes:
  - Runs on the Docker host; needs the Docker SDK for Python there.
  - Images are never removed by this module; pruned releases only leave the history.
seealso:
  - module: tradeops.stack.deploy_lock
"""

EXAMPLES = r"""
- name: Roll out the order executor, never two instances
  tradeops.stack.rollout:
    stack: cdb
    service: paper_execution
    strategy: exclusive
    image: tradeops/bot:1.0.1
    pull: never
    user: "10001:10001"
    secrets: [broker_api_key]
    resources: {memory: 256m, cpus: 0.5, pids: 128}
    health: {timeout: 60, http: {port: 8000, path: /health}}
    lock:
      wait: 120

- name: Blue/green behind the edge proxy, with a post-promotion bake
  tradeops.stack.rollout:
    stack: cdb
    service: api
    strategy: blue_green
    image: tradeops/bot:1.0.1
    user: "10001:10001"
    resources: {memory: 256m, cpus: 0.5, pids: 128}
    proxy: {listen: 8080, port: 8000}
    health:
      http: {port: 8000, path: /health}
      monitor: 10
    analysis:
      prometheus_url: http://127.0.0.1:9090
      bake: 60
      checks:
        - name: error rate
          query: sum(rate(http_requests_total{service="api",code=~"5.."}[1m]))
          condition: "<"
          threshold: 0.1

- name: Back to a named release
  tradeops.stack.rollout:
    stack: cdb
    service: api
    strategy: blue_green
    state: rolled_back
    to_release: 20261123T010500Z-1a2b3c4d
    proxy: {listen: 8080, port: 8000}
"""

RETURN = r"""
operation:
  description: What happened or would happen (check mode).
  returned: always
  type: str
  sample: upgrade
  choices: [noop, create, upgrade, rollback, remove, restart]
strategy:
  description: The strategy used.
  returned: always
  type: str
  sample: exclusive
release:
  description: The release now running (after a rollback, the restored one).
  returned: always
  type: str
  sample: 20261123T010500Z-1a2b3c4d
previous_release:
  description: The release that ran before this task.
  returned: always
  type: str
  sample: 20261122T190000Z-9f8e7d6c
rolled_back:
  description: True when the new release failed and the previous one was restored (the task then fails).
  returned: always
  type: bool
  sample: false
restored_release:
  description: The release restored by an automatic rollback (null when there was none to restore).
  returned: when rolled_back
  type: str
  sample: 20261122T190000Z-9f8e7d6c
rollback_failed:
  description:
    - True when the automatic rollback itself failed (RV(rolled_back) is then false and RV(reason) says why);
      the service needs a human.
  returned: when the rollout failed after a change
  type: bool
  sample: false
reason:
  description: Why the rollout failed and was rolled back.
  returned: when failed
  type: str
  sample: "container cdb-api-green is unhealthy; last health checks: exit 1: connection refused"
gate:
  description: Health gate outcome of the new instance (reason, health, exit code, OOMKilled, health log, logs, probe).
  returned: when a gate ran
  type: dict
  sample: {passed: false, reason: "container exited", exit_code: 3, oom_killed: false}
analysis:
  description: Metric analysis measurements per phase.
  returned: when analysis ran
  type: dict
  sample: {pre: {result: pass, measurements: 2}}
plan:
  description: Steps taken (or, in check mode, that would be taken) and the expected pause in service.
  returned: always
  type: dict
  sample: {steps: ["stop cdb-exec", "create cdb-exec"], expected_pause: "exclusive: up to 10 s stop + gate"}
spec_hash:
  description: Hash of the desired spec (label C(tradeops.spec-hash)).
  returned: always
  type: str
  sample: 3c1f0e9a2b7d4c5e6f708192
containers:
  description: The service's containers after the task (see stack_manifest).
  returned: always
  type: list
  elements: dict
  sample: [{name: cdb-exec, state: running, health: healthy, release: 20261123T010500Z-1a2b3c4d}]
releases:
  description: The release history of the service, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{id: 20261123T010500Z-1a2b3c4d, result: active, known_good: true}]
timings:
  description: Seconds spent per phase; C(switch_gap) is the time with no instance serving (exclusive).
  returned: when changed
  type: dict
  sample: {total: 4.2, gate: 2.1, switch_gap: 2.3}
"""

import math
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as D
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor, guard, read_secret_files
from ansible_collections.tradeops.stack.plugins.module_utils._releases import ReleaseHistory
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    LABEL_SPEC_HASH,
    STATE_ARG_SPEC,
    DeployLock,
    LockLost,
    StackState,
    StateError,
    atomic_write_text,
    caller_identity,
    check_lock_ttl,
    create_once,
    machine_identity,
)


class RolloutFailed(Exception):
    def __init__(self, reason, gate=None, stage=None):
        super().__init__(reason)
        self.reason = reason
        self.gate = gate
        self.stage = stage


class Invariant(Exception):
    """Two instances of an exclusive service ran: never expected, always reported."""


# -- metric analysis -------------------------------------------------------------------
_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def prometheus_samples(url, query, timeout=5.0):
    """Sample values of an instant query: [] means no data (distinct from 0); NaN samples count as no data.
    Raises _prometheus.PrometheusError on HTTP/API errors."""
    from ansible_collections.tradeops.stack.plugins.module_utils import _prometheus

    client = _prometheus.Prometheus(url, timeout=timeout)
    return [value for _labels, value in client.query(query) if not math.isnan(value)]


def measure(checks, url):
    """One measurement of every check: ('pass'|'fail'|'inconclusive', details)."""
    details, outcome = [], "pass"
    for check in checks:
        try:
            values = prometheus_samples(url, check["query"])
        except Exception as exc:  # an unreachable Prometheus is inconclusive, and says why
            details.append({"check": check["name"], "result": "inconclusive", "error": str(exc)[:300]})
            outcome = "inconclusive" if outcome == "pass" else outcome
            continue
        if not values:
            details.append({"check": check["name"], "result": "inconclusive", "error": "no data"})
            outcome = "inconclusive" if outcome == "pass" else outcome
            continue
        bad = [v for v in values if not _OPS[check["condition"]](v, check["threshold"])]
        res = "fail" if bad else "pass"
        details.append({"check": check["name"], "result": res, "values": values[:10]})
        if bad:
            outcome = "fail"
    return outcome, details


class Analysis:
    def __init__(self, cfg, warn):
        self.cfg = cfg
        self.warn = warn
        self.report = {}

    def run(self, phase, duration, watch=None):
        """Measure every interval: before promotion until min_samples conclusive passes, after it for ``duration``.

        ``watch`` is called between measurements and raises RolloutFailed if the instance dies.
        """
        cfg = self.cfg
        start = time.monotonic()
        passes = fails = 0
        inconclusive_since = None
        history = []
        while True:
            outcome, details = measure(cfg["checks"], cfg["prometheus_url"])
            history.append({"t": round(time.monotonic() - start, 1), "result": outcome, "checks": details})
            if outcome == "inconclusive":
                if cfg["inconclusive"] == "pass":
                    self.warn("analysis %s: no data treated as a pass (inconclusive=pass): %s" % (phase, details))
                    outcome = "pass"
                elif cfg["inconclusive"] == "fail":
                    self._done(phase, "inconclusive", history)
                    raise RolloutFailed("metric analysis (%s) inconclusive: %s" % (phase, _brief(details)))
                else:
                    inconclusive_since = inconclusive_since or time.monotonic()
                    if time.monotonic() - inconclusive_since >= cfg["inconclusive_timeout"]:
                        self._done(phase, "inconclusive", history)
                        raise RolloutFailed(
                            "metric analysis (%s) inconclusive for %ss: %s"
                            % (phase, cfg["inconclusive_timeout"], _brief(details))
                        )
            if outcome != "inconclusive":
                inconclusive_since = None
            if outcome == "pass":
                passes += 1
            elif outcome == "fail":
                fails += 1
                if fails > cfg["failure_limit"]:
                    self._done(phase, "fail", history)
                    raise RolloutFailed("metric analysis (%s) failed: %s" % (phase, _brief(details)))
            elapsed = time.monotonic() - start
            if duration is None and passes >= cfg["min_samples"]:
                break
            if duration is not None and elapsed >= duration and passes >= 1:
                break
            end = time.monotonic() + cfg["interval"]
            while time.monotonic() < end:
                if watch:
                    watch()
                time.sleep(0.25)
        self._done(phase, "pass", history)

    def _done(self, phase, result, history):
        self.report[phase] = {"result": result, "measurements": len(history), "last": history[-1]["checks"]}


def _brief(details):
    return "; ".join(
        "%s: %s%s"
        % (d["check"], d["result"], " (%s)" % d.get("error") if d.get("error") else " %s" % d.get("values", ""))
        for d in details
    )


# -- the module ----------------------------------------------------------------------
class Rollout:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.warnings = []
        self.steps = []
        self.timings = {}
        self.changed = False
        self.t0 = time.monotonic()
        self.stack = self.p["stack"]
        self.service = self.p["service"]
        self.strategy = self.p["strategy"]
        self.state = StackState(self.stack, self.p["state_root"])
        self.history = ReleaseHistory(self.state, self.service).load()
        self.client = D.get_client(self.p)
        self.main = D.container_name(self.stack, self.service)
        self.secrets_dir = self.p["secrets_dir"] or "/etc/tradeops/%s/secrets" % self.stack
        self.networks = self.p["networks"] or [{"name": self.stack, "aliases": []}]
        for net in self.networks:
            net["aliases"] = net.get("aliases") or []
        self.primary_net = self.networks[0]["name"]
        self.own_lock = False
        self.lock_holder = None
        self.lock_ttl = check_lock_ttl((self.p["lock"] or {}).get("ttl") or 900, "lock.ttl")
        self.lock_renew_at = None  # time.monotonic() of the next lease renewal, None: no lock to renew
        self.analysis = Analysis(self.p["analysis"], self.warn) if self.p["analysis"] else None
        self.gate_report = None

    def warn(self, msg):
        self.warnings.append(msg)

    # -- observation ---------------------------------------------------------------------
    def containers(self):
        return {c.name: c for c in D.service_containers(self.client, self.stack, self.service)}

    def running(self):
        return [c for c in self.containers().values() if c.status in ("running", "restarting", "paused")]

    def assert_exclusive(self, step):
        if self.strategy != "exclusive":
            return
        live = self.running()
        if len(live) > 1:
            raise Invariant(
                "exclusive service %s: %d instances running %s (%s)"
                % (self.service, len(live), step, ", ".join(c.name for c in live))
            )

    def summaries(self):
        out = []
        for c in D.service_containers(self.client, self.stack, self.service) + D.service_containers(
            self.client, self.stack, self.service, role="proxy"
        ):
            out.append(D.container_summary(self.client, c))
        return sorted(out, key=lambda x: x["name"])

    # -- desired spec ------------------------------------------------------------------
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
            out[name] = D.fingerprint(key, data) if key else "unknown-until-first-run"
        return out

    def resolve_image(self, ref, pull):
        image = None
        try:
            image = self.client.images.get(ref)
        except D.ImageNotFound:
            image = None
        if pull == "always" or (pull == "missing" and image is None):
            if self.check:
                self.steps.append("pull %s" % ref)
                return image.id if image else "unknown-until-pulled", image
            repo, tag = _split_ref(ref)
            try:
                image = self.client.images.pull(repo, tag=tag)
            except D.DockerException as exc:
                raise RolloutFailed("cannot pull image %s: %s (pull=%s)" % (ref, exc, pull))
        if image is None:
            raise RolloutFailed(
                "image %s is not present on the Docker host and pull=never; build or load it first" % ref
            )
        return image.id, image

    def build_spec(self, params):
        image_id, image = self.resolve_image(params["image"], params["pull"])
        fps = self.secret_fingerprints(params.get("secrets"))
        merged = dict(params)
        merged["networks"] = self.networks
        spec = D.desired_spec(merged, image_id, fps)
        self.check_spec(spec, image)
        return spec, D.spec_hash(spec)

    def check_spec(self, spec, image):
        cfg = (image.attrs.get("Config") or {}) if image is not None else {}
        user = spec["user"] if spec["user"] is not None else cfg.get("User") or ""
        if user.split(":")[0] in ("", "root", "0"):
            if not self.p["allow_root"]:
                raise RolloutFailed(
                    "service %s would run as root (image %s has no USER and no user option is set); set user "
                    "(e.g. '10001:10001') or allow_root: true" % (self.service, spec["image"])
                )
            self.warn("service %s runs as root (allow_root: true)" % self.service)
        if self.strategy == "start_first" and any(b[1] for b in spec["ports"].values()):
            raise RolloutFailed(
                "strategy start_first cannot publish fixed host ports (%s): old and new instances overlap; use "
                "blue_green with a proxy or exclusive" % ", ".join(sorted(spec["ports"]))
            )
        hc = spec["healthcheck"] or cfg.get("Healthcheck")
        budget = D.health_budget(hc)
        timeout = self.p["health"]["timeout"]
        if budget is None:
            self.warn(
                "service %s has no healthcheck (image %s): the gate only checks that it keeps running%s"
                % (self.service, spec["image"], " and the HTTP probe" if self.p["health"].get("http") else "")
            )
        elif timeout < budget:
            self.warn(
                "health.timeout %ss is shorter than the healthcheck's start_period + interval x retries (%.0fs): "
                "a slow but healthy start will be rolled back" % (timeout, budget)
            )
        self.health_budget = budget

    # -- docker actions ------------------------------------------------------------------
    def do(self, step):
        self.steps.append(step)
        self.changed = True

    def create(self, spec, spec_hash, name, colour, release_id):
        self.do("create %s" % name)
        labels = D.stack_labels(self.stack, self.service, colour, release_id, spec_hash, extra=spec["labels"])
        container = D.create_container(self.client, spec, name, labels, self.secrets_dir)
        self.do("start %s" % name)
        container.start()
        return container

    def stop(self, container, keep=True):
        """Stop (and keep, restart policy 'no', so dockerd never brings it back) or remove."""
        if keep:
            self.do("stop %s (kept for rollback)" % container.name)
            container.update(restart_policy={"Name": "no"})
            container.stop(timeout=self.p["stop_timeout"])
        else:
            self.do("remove %s" % container.name)
            container.remove(force=True)

    def start_kept(self, container, policy):
        self.do("start %s" % container.name)
        container.update(restart_policy={"Name": policy})
        container.start()

    def rename(self, container, new):
        self.do("rename %s -> %s" % (container.name, new))
        container.rename(new)
        container.reload()

    def remove_if(self, name, only_stopped=False):
        c = self.containers().get(name)
        if c is not None and not (only_stopped and c.status == "running"):
            self.stop(c, keep=False)
            return True
        return False

    def gate(self, container, label="gate"):
        t = time.monotonic()
        res = D.wait_healthy(
            container,
            self.p["health"]["timeout"],
            http=self.p["health"].get("http"),
            network=self.primary_net,
            stop_early=self.keep_lock,  # called every poll; never stops the gate, raises when the lock is lost
        )
        self.timings[label] = round(time.monotonic() - t, 2)
        report = res.as_dict()
        report["container"] = container.name
        if label == "gate":
            self.gate_report = report
        if not res.ok:
            raise RolloutFailed(res.reason, gate=report, stage=label)
        return report

    def watch(self, container):
        """Post-promotion: the instance must keep running and not turn unhealthy."""
        self.keep_lock()
        container.reload()
        state = container.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") != "running" or health == "unhealthy" or container.attrs.get("RestartCount", 0):
            details = D.failure_details(container, container.attrs)
            raise RolloutFailed(
                "after promotion, container %s is %s (health %s, exit code %s%s)"
                % (
                    container.name,
                    state.get("Status"),
                    health,
                    state.get("ExitCode"),
                    ", OOMKilled" if state.get("OOMKilled") else "",
                ),
                gate=details,
                stage="monitor",
            )

    def post_promotion(self, container):
        monitor = self.p["health"]["monitor"]
        t = time.monotonic()
        if self.analysis and self.p["analysis"]["bake"] > 0:
            self.analysis.run("bake", self.p["analysis"]["bake"], watch=lambda: self.watch(container))
        while time.monotonic() - t < monitor:
            self.watch(container)
            time.sleep(0.25)
        self.watch(container)
        if monitor or self.analysis:
            self.timings["post_promotion"] = round(time.monotonic() - t, 2)

    def pre_promotion(self, container):
        if self.analysis:
            self.analysis.run("pre", None, watch=lambda: self.watch(container))

    # -- lock and freeze -------------------------------------------------------------------
    def check_freeze(self):
        block = self.state.active_block() if self.state.exists() else None
        if block and block.get("status", "active") == "active":
            if not self.p["allow_during_block"]:
                raise RolloutFailed(
                    "paper block %s is active (operator %s, reason: %s, planned end %s): rollouts are frozen; "
                    "wait for the block to end or set allow_during_block: true (audited)"
                    % (block.get("id"), block.get("operator"), block.get("reason"), block.get("planned_end")),
                    stage="freeze",
                )
            return block
        return None

    def acquire_lock(self):
        """Run under the play's lock when lock.holder holds it; else take it, owned by this module process.

        The owner recorded is the process doing the work (this module, on the Docker host): a rollout whose
        controller was killed but whose module still runs keeps the lock; once the module is gone too the
        lock is stale, on remote hosts as well.
        """
        cfg = self.p["lock"] or {}
        ident = caller_identity()
        pid, host = os.getpid(), socket.gethostname()
        holder = cfg.get("holder") or "rollout %s %s@%s pid %s" % (self.service, ident["user"], host, pid)
        self.lock_holder = holder
        lock = DeployLock(self.state)
        current = lock.read()
        if current and current.get("holder") == holder and not lock.staleness(current):
            # the play holds the lock for all of its rollouts; renewed at the TTL it was taken with
            self.lock_ttl = current.get("ttl") or self.lock_ttl
        else:
            lock.acquire(
                holder,
                self.p["reason"] or "rollout %s" % self.service,
                self.lock_ttl,
                wait=cfg.get("wait") or 0,
                take_over_stale=bool(cfg.get("take_over_stale")),
                owner_pid=pid,
                owner_host=host,
                owner_machine=machine_identity(),
            )
            self.own_lock = True
        self.lock_renew_at = time.monotonic() + self.lock_ttl / 3.0

    def keep_lock(self):
        """Renew the lease of the lock this rollout runs under (its own or the play's), at most every ttl/3 s.

        Called by the waits (health gate, analysis, monitor, drains), so a rollout longer than the TTL is never
        taken over while it works. When someone else holds the lock now (taken over as stale, or force
        released), the rollout fails naming them and rolls back; it does not try to renew again.
        """
        if self.lock_renew_at is None or time.monotonic() < self.lock_renew_at:
            return False
        self.lock_renew_at = None
        try:
            DeployLock(self.state).renew(self.lock_holder, ttl=self.lock_ttl)
        except LockLost as exc:
            self.own_lock = False  # not ours any more: never release the new holder's lock
            raise RolloutFailed("lost the deploy lock while rolling out %s: %s" % (self.service, exc), stage="lock")
        except StateError as exc:  # could not write (full disk): the lease still runs, try again soon
            self.warn("could not renew the deploy lock (will retry): %s" % exc)
            self.lock_renew_at = time.monotonic() + min(5.0, self.lock_ttl / 10.0)
            return False
        self.lock_renew_at = time.monotonic() + self.lock_ttl / 3.0
        return False

    def pause(self, seconds):
        """Sleep ``seconds`` while keeping the lock."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.keep_lock()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def release_lock(self):
        self.lock_renew_at = None
        if self.own_lock:
            try:
                DeployLock(self.state).release(self.lock_holder)
            except StateError as exc:
                self.warn("could not release the deploy lock: %s" % exc)
            self.own_lock = False

    # -- entry --------------------------------------------------------------------------
    def run(self):
        state = self.p["state"]
        result = dict(changed=False, strategy=self.strategy, rolled_back=False)
        if state == "absent":
            return self.absent(result)
        if state == "rolled_back":
            target = self.rollback_target()
            params = self.params_for_release(target)
            return self.present(result, params, action_hint="rollback", target=target)
        return self.present(result, self.p)

    def rollback_target(self):
        ref = self.p["to_release"]
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

    def params_for_release(self, rel):
        spec = rel["spec"]
        params = dict(self.p)
        hc = spec.get("healthcheck")
        params.update(
            image=rel["image_id"],
            pull="never",
            command=spec["command"],
            entrypoint=spec["entrypoint"],
            env=spec["env"],
            secrets=sorted(spec["secrets"]),
            volumes=spec["volumes"],
            published_ports=[
                "%s:%s:%s" % (ip, host, key) if host else key for key, (ip, host) in spec["ports"].items()
            ],
            labels=spec["labels"],
            user=spec["user"],
            read_only=spec["read_only"],
            tmpfs=spec["tmpfs"],
            cap_drop=spec["cap_drop"],
            cap_add=spec["cap_add"],
            security_opt=spec["security_opt"],
            resources={"memory": spec["memory"], "cpus": spec["cpus"], "pids": spec["pids"]},
            healthcheck=(
                {
                    "test": hc["Test"],
                    "interval": "%dms" % (hc["Interval"] // 10**6),
                    "timeout": "%dms" % (hc["Timeout"] // 10**6),
                    "retries": hc["Retries"],
                    "start_period": "%dms" % (hc["StartPeriod"] // 10**6),
                }
                if hc
                else None
            ),
            restart_policy=spec["restart_policy"],
            stop_timeout=spec["stop_timeout"],
            log=spec["log"],
        )
        self.networks = spec["networks"]
        self.primary_net = self.networks[0]["name"]
        params["_image_ref"] = rel["image"]
        return params

    def present(self, result, params, action_hint=None, target=None):
        for key in ("image", "resources"):
            if not params.get(key):
                raise RolloutFailed("%s is required with state=present" % key)
        if self.strategy == "blue_green" and not self.p["proxy"]:
            raise RolloutFailed("strategy blue_green needs proxy (listen, port)")
        spec, spec_hash = self.build_spec(params)
        if params.get("_image_ref"):
            spec["image"] = params["_image_ref"]
            spec_hash = D.spec_hash(spec)
        result["spec_hash"] = spec_hash
        strategy = {"blue_green": BlueGreen, "start_first": StartFirst, "exclusive": Exclusive}[self.strategy](self)

        def evaluate():
            current_rel = self.history.current()
            result["previous_release"] = current_rel["id"] if current_rel else None
            before = strategy.active_spec_hash()
            if self.module._diff:
                before_rel = self.history.by_hash(before) if before else None
                result["diff"] = {
                    "before": _diff_spec(
                        before_rel["spec"] if before_rel else ({"spec_hash": before} if before else {}), None
                    ),
                    "after": _diff_spec(spec, before_rel["spec"] if before_rel else None),
                }
            if strategy.is_noop(spec_hash):
                result.update(
                    operation="noop", release=result["previous_release"], plan={"steps": [], "expected_pause": 0}
                )
                return None
            action = action_hint or ("upgrade" if before else "create")
            if before == spec_hash:
                action = action_hint or "restart"
            result["operation"] = action
            result["plan"] = strategy.plan(action)
            return action

        action = evaluate()
        if action is None:
            self.finish(result)
            return result
        block = self.check_freeze()
        if self.check:
            result["changed"] = True
            result["release"] = result["previous_release"]
            self.finish(result)
            return result
        self.acquire_lock()
        try:
            # whoever held the lock before us may have changed the service or opened a paper block
            # (paper_block opens one only under this lock): decide both again under the lock
            block = self.check_freeze()
            self.history.load()
            action = evaluate()
            if action is None:
                self.release_lock()
                self.finish(result)
                return result
            if block:
                self.state.audit(
                    "freeze_override",
                    "ok",
                    service=self.service,
                    block=block.get("id"),
                    reason=self.p["reason"],
                    strategy=self.strategy,
                )
            for net in self.networks:
                if D.ensure_network(self.client, net["name"], self.stack):
                    self.do("create network %s" % net["name"])
            with self.state.mutex("releases"):
                self.history.load()
                rel = self.history.by_hash(spec_hash) if target else None
                if rel is None:
                    rel = self.history.add(
                        spec_hash, spec, self.strategy, image_digest=D.image_digest(self.client, spec["image_id"])
                    )
                self.history.save()
            prev_rel = self.history.current()
            try:
                colour = strategy.execute(spec, spec_hash, rel)
            except Exception as exc:  # any failure after the first change rolls back, then fails the task
                if isinstance(exc, RolloutFailed):
                    failure = exc
                elif isinstance(exc, Invariant):
                    failure = RolloutFailed("INVARIANT VIOLATED: %s" % exc, stage="invariant")
                elif isinstance(exc, D.DockerException):
                    failure = RolloutFailed("Docker engine error: %s" % exc, stage="docker")
                else:
                    failure = RolloutFailed("unexpected error %s: %s" % (type(exc).__name__, exc), stage="internal")
                restored = self.recover(strategy, failure)
                with self.state.mutex("releases"):
                    self.history.load()
                    self.history.fail(self.history.get(rel["id"]) or rel, "rolled_back", failure.reason)
                    self.history.save()
                rollback_failed = getattr(failure, "rollback_failed", False)
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
                self.audit(
                    action, "rollback_failed" if rollback_failed else "rolled_back", prev_rel, rel, failure.reason
                )
                self.finish(result)
                return result
            with self.state.mutex("releases"):
                self.history.load()
                self.history.promote(self.history.get(rel["id"]), colour=colour)
                self.history.prune(self.p["keep_releases"])
                self.history.save()
            result.update(changed=True, release=rel["id"])
            self.audit(action, "ok", prev_rel, rel, None)
        finally:
            self.release_lock()
        self.finish(result)
        return result

    def recover(self, strategy, failure):
        """Undo after a failure; returns the restored release id (None when nothing ran before)."""
        try:
            restored_hash = strategy.rollback(failure)
        except Exception as exc:  # the rollback itself failed: say so loudly, never report success
            failure.reason += "; AUTOMATIC ROLLBACK ALSO FAILED: %s" % getattr(exc, "reason", exc)
            failure.rollback_failed = True
            return None
        rel = self.history.by_hash(restored_hash) if restored_hash else None
        return rel["id"] if rel else None

    def absent(self, result):
        found = list(self.containers().values()) + D.service_containers(
            self.client, self.stack, self.service, role="proxy"
        )
        result["operation"] = "remove" if found else "noop"
        result["plan"] = {"steps": ["remove %s" % c.name for c in found], "expected_pause": "service removed"}
        prev = self.history.current()
        result["previous_release"] = prev["id"] if prev else None
        result["release"] = None
        if found and not self.check:
            self.check_freeze()
            self.acquire_lock()
            try:
                self.check_freeze()  # again under the lock, where a block cannot open meanwhile
                for c in found:
                    self.stop(c, keep=False)
                with self.state.mutex("releases"):
                    self.history.load()
                    self.history.clear_current()
                    self.history.save()
                self.audit("remove", "ok", prev, None, None)
            finally:
                self.release_lock()
        result["changed"] = bool(found)
        self.finish(result)
        return result

    def audit(self, action, outcome, prev_rel, rel, reason):
        self.state.audit(
            "rollout",
            outcome,
            service=self.service,
            strategy=self.strategy,
            kind=action,
            from_release=prev_rel["id"] if prev_rel else None,
            to_release=rel["id"] if rel else None,
            from_image=prev_rel["image"] if prev_rel else None,
            to_image=rel["image"] if rel else None,
            duration=round(time.monotonic() - self.t0, 2),
            reason=reason or self.p["reason"],
            lock_holder=self.lock_holder,
        )

    def finish(self, result):
        result["plan"] = result.get("plan") or {"steps": self.steps}
        if not self.check:
            result["plan"]["steps"] = self.steps or result["plan"].get("steps", [])
        result["containers"] = self.summaries()
        result["releases"] = self.history.summary()
        if self.gate_report and "gate" not in result:
            result["gate"] = self.gate_report
        if self.analysis and self.analysis.report:
            result["analysis"] = self.analysis.report
        self.timings["total"] = round(time.monotonic() - self.t0, 2)
        if result.get("changed") and not self.check:
            result["timings"] = self.timings
        if self.warnings:
            result["warnings"] = self.warnings


def _split_ref(ref):
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def _diff_spec(spec, before):
    """A spec for diff output: secrets masked, a changed secret shown as changed (never its value)."""
    if not spec or "secrets" not in spec:
        return dict(spec or {})
    out = D.masked_spec(spec)
    if before is not None:
        for name, fp in spec["secrets"].items():
            if before.get("secrets", {}).get(name) not in (None, fp):
                out["secrets"][name] = D.MASK + " (changed)"
    return out


# -- strategies ----------------------------------------------------------------------
class _Single:
    """start_first and exclusive: one serving instance named <stack>-<service>, the previous one kept stopped
    as <name>-prev for an instant rollback, a start_first candidate as <name>-next."""

    def __init__(self, ro):
        self.ro = ro
        self.prev_name = ro.main + "-prev"
        self.next_name = ro.main + "-next"
        self.previous_hash = None

    def active(self):
        return self.ro.containers().get(self.ro.main)

    def active_spec_hash(self):
        c = self.active()
        return c.labels.get(LABEL_SPEC_HASH) if c is not None else None

    def is_noop(self, spec_hash):
        found = self.ro.containers()
        active = found.get(self.ro.main)
        if active is None or active.labels.get(LABEL_SPEC_HASH) != spec_hash or active.status != "running":
            return False
        health = (active.attrs["State"].get("Health") or {}).get("Status")
        if health not in (None, "healthy"):
            return False
        others = [c for n, c in found.items() if n != self.ro.main]
        return not any(c.status == "running" or c.name == self.next_name for c in others)

    def find_reusable(self, spec_hash):
        prev = self.ro.containers().get(self.prev_name)
        if prev is not None and prev.labels.get(LABEL_SPEC_HASH) == spec_hash:
            return prev
        return None

    def restore_previous(self):
        """Start <name>-prev again as <name> and gate it; returns its spec hash."""
        ro = self.ro
        prev = ro.containers().get(self.prev_name)
        if prev is None:
            return None
        ro.assert_exclusive("before restoring the previous instance")
        ro.rename(prev, ro.main)
        if prev.status != "running":
            ro.start_kept(prev, ro.p["restart_policy"])
        ro.gate(prev, label="rollback_gate")
        ro.assert_exclusive("after restoring the previous instance")
        return prev.labels.get(LABEL_SPEC_HASH)

    def plan(self, action):
        ro = self.ro
        name = ro.main
        if self.ro.strategy == "exclusive":
            steps = [
                "remove stale %s and %s" % (self.prev_name, self.next_name),
                "stop %s, keep it as %s (restart policy no)" % (name, self.prev_name),
                "create and start %s (%s)" % (name, action),
                "health gate (timeout %ss)" % ro.p["health"]["timeout"],
                "on failure: remove the new one, start %s again" % self.prev_name,
            ]
            first = ro.health_budget / 3 if ro.health_budget else 1
            pause = "exclusive: stop (<= %ss) + start + first healthy check (~%.0fs, <= %ss)" % (
                ro.p["stop_timeout"],
                first,
                ro.p["health"]["timeout"],
            )
            return {
                "steps": steps,
                "expected_pause": pause,
                "expected_pause_max_seconds": ro.p["stop_timeout"] + ro.p["health"]["timeout"],
            }
        steps = [
            "create and start %s" % self.next_name,
            "health gate (timeout %ss)" % ro.p["health"]["timeout"],
            "rename %s -> %s, %s -> %s" % (name, self.prev_name, self.next_name, name),
            "stop %s, keep it for rollback" % self.prev_name,
        ]
        return {"steps": steps, "expected_pause": 0, "expected_pause_max_seconds": 0}


class Exclusive(_Single):
    def execute(self, spec, spec_hash, rel):
        ro = self.ro
        found = ro.containers()
        live = [c for c in found.values() if c.status in ("running", "restarting", "paused")]
        # a killed earlier run may have left two instances: the one not named <name> stops first
        for c in list(live):
            if c.name != ro.main and len(live) > 1:
                ro.warn("exclusive invariant repaired: %s was running beside %s" % (c.name, ro.main))
                ro.stop(c, keep=False)
                live.remove(c)
        ro.assert_exclusive("before the rollout")
        reuse = self.find_reusable(spec_hash)
        for name in (self.next_name,) + (() if reuse else (self.prev_name,)):
            ro.remove_if(name)
        active = ro.containers().get(ro.main)
        t_down = None
        if active is not None:
            self.previous_hash = active.labels.get(LABEL_SPEC_HASH)
            if active.status == "running":
                ro.stop(active, keep=True)
            t_down = time.monotonic()
            if reuse is not None:  # rollback to the kept instance: swap names
                ro.rename(active, self.next_name)
            else:
                ro.rename(active, self.prev_name)
        ro.assert_exclusive("after stopping the old instance")
        if reuse is not None:
            ro.rename(reuse, ro.main)
            ro.start_kept(reuse, ro.p["restart_policy"])
            new = reuse
        else:
            new = ro.create(spec, spec_hash, ro.main, "main", rel["id"])
        self.new_id = new.id
        t_start = time.monotonic()
        ro.assert_exclusive("after starting the new instance")
        ro.gate(new)
        ro.assert_exclusive("after the health gate")
        ro.timings["switch_gap"] = round(time.monotonic() - (t_down or t_start), 2)
        ro.pre_promotion(new)
        self.promoted = True
        ro.post_promotion(new)
        ro.assert_exclusive("after promotion")
        if reuse is not None:  # the release we rolled back from stays as <name>-prev
            ro.remove_if(self.prev_name)
            old = ro.containers().get(self.next_name)
            if old is not None:
                ro.rename(old, self.prev_name)
        return "main"

    def rollback(self, failure):
        ro = self.ro
        t = time.monotonic()
        found = ro.containers()
        new = found.get(ro.main)
        if new is not None and new.id == getattr(self, "new_id", None):
            # keep the failed instance's evidence in the result, then remove it before anything else starts
            ro.stop(new, keep=False)
        if self.next_name in found and self.prev_name not in found:
            ro.rename(found[self.next_name], self.prev_name)
        ro.assert_exclusive("after removing the failed instance")
        restored = self.restore_previous() if self.previous_hash else None
        ro.timings["rollback"] = round(time.monotonic() - t, 2)
        return restored


class StartFirst(_Single):
    def execute(self, spec, spec_hash, rel):
        ro = self.ro
        reuse = self.find_reusable(spec_hash)
        ro.remove_if(self.next_name)
        active = ro.containers().get(ro.main)
        self.previous_hash = active.labels.get(LABEL_SPEC_HASH) if active is not None else None
        if reuse is not None:
            ro.rename(reuse, self.next_name)
            ro.start_kept(reuse, ro.p["restart_policy"])
            new = reuse
        else:
            new = ro.create(spec, spec_hash, self.next_name if active is not None else ro.main, "main", rel["id"])
        self.new_id = new.id
        ro.gate(new)
        ro.pre_promotion(new)
        if active is not None:
            if reuse is None:
                ro.remove_if(self.prev_name)
            ro.rename(active, self.prev_name)
            ro.rename(new, ro.main)
            ro.stop(active, keep=True)
        self.promoted = True
        ro.post_promotion(new)
        return "main"

    def rollback(self, failure):
        ro = self.ro
        t = time.monotonic()
        found = ro.containers()
        nxt = found.get(self.next_name)
        if nxt is not None:  # failed before promotion: the old one never stopped
            ro.stop(nxt, keep=False)
            restored = self.previous_hash
        else:
            new = found.get(ro.main)
            prev = found.get(self.prev_name)
            if prev is not None and self.previous_hash:
                # after promotion: start the old one first (start_first), then retire the new one
                ro.start_kept(prev, ro.p["restart_policy"])
                ro.gate(prev, label="rollback_gate")
                if new is not None:
                    ro.rename(new, self.next_name)
                ro.rename(prev, ro.main)
                if new is not None:
                    ro.stop(new, keep=False)
                restored = self.previous_hash
            else:
                if new is not None and new.id == getattr(self, "new_id", None):
                    ro.stop(new, keep=False)
                restored = None
        ro.timings["rollback"] = round(time.monotonic() - t, 2)
        return restored


class BlueGreen:
    COLOURS = ("blue", "green")

    def __init__(self, ro):
        self.ro = ro
        self.proxy_cfg = ro.p["proxy"]
        self.proxy_name = ro.main + "-proxy"
        self.conf_dir = ro.state.sub("proxy", ro.service)
        self.conf_file = os.path.join(self.conf_dir, "upstream.conf")
        self.previous_colour = None
        self.previous_hash = None
        self.switched = False

    def name(self, colour):
        return "%s-%s" % (self.ro.main, colour)

    def upstream_colour(self):
        try:
            with open(self.conf_file) as handle:
                first = handle.readline()
        except IOError:
            return None
        marker = "# colour: "
        return first.strip()[len(marker) :] if first.startswith(marker) else None

    def active(self):
        colour = self.upstream_colour() or self.ro.history.data.get("active_colour")
        if colour not in self.COLOURS:
            return None, None
        return colour, self.ro.containers().get(self.name(colour))

    def active_spec_hash(self):
        _colour, c = self.active()
        return c.labels.get(LABEL_SPEC_HASH) if c is not None else None

    def proxy_spec(self):
        cfg = self.proxy_cfg
        params = {
            "image": cfg["image"],
            "command": None,
            "entrypoint": None,
            "env": {},
            "volumes": ["%s:/etc/nginx/tradeops:ro" % self.conf_dir],
            "networks": [{"name": self.ro.primary_net, "aliases": []}],
            "published_ports": ["%s:%s:8080" % (cfg["bind"], cfg["listen"])],
            "publish_address": cfg["bind"],
            "labels": {},
            "user": None,
            "read_only": True,
            "tmpfs": ["/tmp"],
            "cap_drop": ["ALL"],
            "cap_add": [],
            "security_opt": ["no-new-privileges:true"],
            "resources": {"memory": cfg["memory"], "cpus": cfg["cpus"], "pids": 128},
            "healthcheck": None,
            "restart_policy": "unless-stopped",
            "stop_timeout": 30,
            "log": None,
        }
        image_id, _image = self.ro.resolve_image(cfg["image"], "missing")
        spec = D.desired_spec(params, image_id, {})
        return spec, D.spec_hash(spec)

    def proxy(self):
        found = D.service_containers(self.ro.client, self.ro.stack, self.ro.service, role="proxy")
        return found[0] if found else None

    def render(self, colour, release_id, backup=None):
        """The upstream file: ``colour`` serves; ``backup`` (the old colour, during the drain only) catches
        the requests ``colour`` does not take.

        Why the backup entries: an app whose accept queue is full (starved of CPU, or a small listen backlog)
        drops the proxy's SYN, and the kernel retransmits it only after 1 s and 3 s, past a 3 s client's
        patience. After proxy_connect_timeout nginx tries a backup entry instead: the same colour again (a
        fresh SYN at 1.5 s) and, during the drain, the old colour, still warm; a refused connection goes to
        them at once. 1.5 s leaves room for the kernel's own retransmit at 1 s: a 0.5 s timeout turned ~1 s of
        CPU starvation into 504s when measured (docs/rollout.md). Requests already sent are not retried when
        they are not idempotent (nginx's default), and never after proxy_next_upstream_timeout.
        """
        port = self.proxy_cfg["port"]
        servers = [
            "    server %s:%d max_fails=0;\n" % (self.name(colour), port),
            "    server %s:%d max_fails=0 backup;\n" % (self.name(colour), port),
        ]
        if backup:
            servers.append("    server %s:%d max_fails=0 backup;  # draining\n" % (self.name(backup), port))
        return (
            "# colour: %s\n"
            "# managed by tradeops.stack.rollout: stack %s, service %s, release %s. Do not edit.\n"
            "upstream tradeops_backend {\n"
            "%s"
            "    keepalive 32;\n"
            "}\n"
            "server {\n"
            "    listen 8080;\n"
            "    add_header X-Tradeops-Colour %s always;\n"
            "    location / {\n"
            "        proxy_pass http://tradeops_backend;\n"
            "        proxy_http_version 1.1;\n"
            '        proxy_set_header Connection "";\n'
            "        proxy_set_header Host $host;\n"
            "        proxy_next_upstream error timeout http_502 http_503;\n"
            "        proxy_next_upstream_tries 3;\n"
            "        proxy_next_upstream_timeout 5s;\n"
            "        proxy_connect_timeout 1500ms;\n"
            "    }\n"
            "}\n"
        ) % (colour, self.ro.stack, self.ro.service, release_id, "".join(servers), colour)

    def conf_body(self):
        try:
            with open(self.conf_file) as handle:
                text = handle.read()
        except IOError:
            return None
        # the release line may differ between equal configs
        return "\n".join(line for line in text.splitlines() if not line.startswith("# managed"))

    def is_noop(self, spec_hash):
        colour, active = self.active()
        if active is None or active.status != "running" or active.labels.get(LABEL_SPEC_HASH) != spec_hash:
            return False
        if (active.attrs["State"].get("Health") or {}).get("Status") not in (None, "healthy"):
            return False
        other = self.ro.containers().get(self.name("green" if colour == "blue" else "blue"))
        if other is not None and other.status == "running":
            return False
        proxy = self.proxy()
        _spec, proxy_hash = self.proxy_spec()
        if proxy is None or proxy.status != "running" or proxy.labels.get(LABEL_SPEC_HASH) != proxy_hash:
            return False
        expected = "\n".join(
            line
            for line in self.render(colour, active.labels.get("tradeops.release")).splitlines()
            if not line.startswith("# managed")
        )
        return self.conf_body() == expected

    def plan(self, action):
        colour, _container = self.active()
        target = "green" if colour == "blue" else "blue"
        steps = [
            "create and start %s" % self.name(target),
            "health gate (timeout %ss)" % self.ro.p["health"]["timeout"],
            "write upstream -> %s, nginx -t, nginx -s reload in %s" % (target, self.proxy_name),
        ]
        if colour:
            steps += [
                "drain %ss with %s as backup upstream" % (self.proxy_cfg["drain"], self.name(colour)),
                "remove the backup upstream (nginx -t, nginx -s reload)",
                "stop %s and keep it for rollback" % self.name(colour),
            ]
        return {"steps": steps, "expected_pause": 0, "expected_pause_max_seconds": 0}

    def nginx(self, proxy, *args):
        res = proxy.exec_run(["nginx", *args])
        return res.exit_code, (res.output or b"").decode("utf-8", "replace").strip()

    def write_conf(self, text):
        if not os.path.isdir(self.conf_dir):
            os.makedirs(self.conf_dir, mode=0o755)
            os.chmod(self.conf_dir, 0o755)  # noqa: S103 - the proxy (another uid) reads it
        atomic_write_text(self.conf_file, text, mode=0o644)

    def switch(self, colour, release_id, backup=None):
        """Point the proxy at ``colour`` (``backup`` behind it while draining): validated (nginx -t) graceful
        reload, verified through the proxy."""
        ro = self.ro
        old_text = None
        if os.path.exists(self.conf_file):
            with open(self.conf_file) as handle:
                old_text = handle.read()
        if backup:
            ro.do("switch %s upstream -> %s (backup %s)" % (self.proxy_name, self.name(colour), self.name(backup)))
        else:
            ro.do("switch %s upstream -> %s" % (self.proxy_name, self.name(colour)))
        self.write_conf(self.render(colour, release_id, backup))
        proxy = self.ensure_proxy()
        t = time.monotonic()
        code, out = self.nginx(proxy, "-t", "-q")
        if code != 0:
            if old_text is not None:
                self.write_conf(old_text)
            raise RolloutFailed(
                "nginx -t rejected the new upstream (kept the old one): %s" % out[-500:], stage="switch"
            )
        code, out = self.nginx(proxy, "-s", "reload")
        if code != 0:
            raise RolloutFailed("nginx -s reload failed: %s" % out[-500:], stage="switch")
        self.switched = True
        self.verify(proxy, colour)
        ro.timings.setdefault("switch", round(time.monotonic() - t, 2))

    def verify(self, proxy, colour, timeout=10.0):
        proxy.reload()
        ip = D.container_ip(proxy.attrs, self.ro.primary_net)
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            try:
                with open_url("http://%s:8080/" % ip, timeout=2, use_proxy=False) as resp:
                    seen = resp.headers.get("X-Tradeops-Colour")
            except Exception as exc:  # HTTPError carries headers too
                headers = getattr(exc, "headers", None)
                seen = headers.get("X-Tradeops-Colour") if headers else None
            if seen == colour:
                return
            time.sleep(0.1)
        raise RolloutFailed(
            "proxy %s still answers with colour %s %ss after the reload (expected %s)"
            % (self.proxy_name, seen, timeout, colour),
            stage="switch",
        )

    def ensure_proxy(self):
        ro = self.ro
        spec, spec_hash = self.proxy_spec()
        proxy = self.proxy()
        if proxy is not None and proxy.labels.get(LABEL_SPEC_HASH) != spec_hash:
            ro.warn("proxy %s spec changed: recreated (brief interruption)" % proxy.name)
            ro.stop(proxy, keep=False)
            proxy = None
        if proxy is None:
            ro.do("create %s" % self.proxy_name)
            labels = D.stack_labels(ro.stack, ro.service, "proxy", "-", spec_hash, role="proxy")
            proxy = D.create_container(ro.client, spec, self.proxy_name, labels, ro.secrets_dir)
            proxy.start()
            res = D.wait_healthy(proxy, 30)
            if not res.ok:
                raise RolloutFailed("edge proxy %s did not start: %s" % (self.proxy_name, res.reason), stage="proxy")
        elif proxy.status != "running":
            ro.start_kept(proxy, "unless-stopped")
            res = D.wait_healthy(proxy, 30)
            if not res.ok:
                raise RolloutFailed("edge proxy %s did not start: %s" % (self.proxy_name, res.reason), stage="proxy")
        return proxy

    def execute(self, spec, spec_hash, rel):
        ro = self.ro
        colour, active = self.active()
        if active is not None and active.status != "running":
            active = None if active.labels.get(LABEL_SPEC_HASH) != spec_hash else active
        self.previous_colour = colour if active is not None else None
        self.previous_hash = active.labels.get(LABEL_SPEC_HASH) if active is not None else None
        if active is not None and active.labels.get(LABEL_SPEC_HASH) == spec_hash:
            target = colour  # same spec, not running or unhealthy: restart it in place
            new = active
            if new.status != "running":
                ro.start_kept(new, ro.p["restart_policy"])
            self.previous_colour = None
        else:
            target = "green" if colour == "blue" else "blue"
            new = ro.containers().get(self.name(target))
            if new is not None and new.labels.get(LABEL_SPEC_HASH) == spec_hash:
                if new.status != "running":
                    ro.start_kept(new, ro.p["restart_policy"])  # instant rollback to the kept colour
            else:
                if new is not None:
                    ro.stop(new, keep=False)
                new = ro.create(spec, spec_hash, self.name(target), target, rel["id"])
        self.target = target
        self.new_id = new.id
        ro.gate(new)
        ro.pre_promotion(new)
        old = ro.containers().get(self.name(self.previous_colour)) if self.previous_colour else None
        if old is not None and old.status == "running":
            # the old colour stays in the upstream as a backup until the drain ends: a new colour that
            # refuses or drops connections in its first seconds under full load falls back to it
            self.switch(target, rel["id"], backup=self.previous_colour)
            ro.pause(self.proxy_cfg["drain"])
            ro.watch(new)  # died during the drain: roll back while the old colour still runs
            self.switch(target, rel["id"])  # second validated reload, without the backup
            ro.stop(old, keep=True)
        else:
            self.switch(target, rel["id"])
        ro.post_promotion(new)
        return target

    def rollback(self, failure):
        ro = self.ro
        t = time.monotonic()
        target = getattr(self, "target", None)
        if self.previous_colour and target:
            old = ro.containers().get(self.name(self.previous_colour))
            if old is not None:
                if old.status != "running":
                    ro.start_kept(old, ro.p["restart_policy"])
                ro.gate(old, label="rollback_gate")
                if self.switched or self.upstream_colour() != self.previous_colour:
                    self.switch(self.previous_colour, old.labels.get("tradeops.release"))
                    ro.pause(min(self.proxy_cfg["drain"], 2))
        new = ro.containers().get(self.name(target)) if target else None
        if new is not None and new.id == getattr(self, "new_id", None):
            ro.stop(new, keep=False)
        ro.timings["rollback"] = round(time.monotonic() - t, 2)
        return self.previous_hash if self.previous_colour else None


def main():
    argument_spec = dict(
        service=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "rolled_back", "absent"]),
        to_release=dict(type="str"),
        strategy=dict(type="str", default="start_first", choices=["blue_green", "start_first", "exclusive"]),
        image=dict(type="str"),
        pull=dict(type="str", default="missing", choices=["always", "missing", "never"]),
        command=dict(type="list", elements="str"),
        entrypoint=dict(type="list", elements="str"),
        env=dict(type="dict"),
        secrets=dict(type="list", elements="str", no_log=False),
        secrets_dir=dict(type="path", no_log=False),
        volumes=dict(type="list", elements="str"),
        networks=dict(
            type="list",
            elements="dict",
            options=dict(name=dict(type="str", required=True), aliases=dict(type="list", elements="str")),
        ),
        published_ports=dict(type="list", elements="str"),
        publish_address=dict(type="str", default="127.0.0.1"),
        labels=dict(type="dict"),
        user=dict(type="str"),
        allow_root=dict(type="bool", default=False),
        read_only=dict(type="bool", default=True),
        tmpfs=dict(type="list", elements="str", default=["/tmp"]),
        cap_drop=dict(type="list", elements="str", default=["ALL"]),
        cap_add=dict(type="list", elements="str", default=[]),
        security_opt=dict(type="list", elements="str", default=["no-new-privileges:true"]),
        resources=dict(
            type="dict",
            options=dict(
                memory=dict(type="str", required=True),
                cpus=dict(type="float", required=True),
                pids=dict(type="int", required=True),
            ),
        ),
        healthcheck=dict(
            type="dict",
            options=dict(
                test=dict(type="raw", required=True),
                interval=dict(type="str", default="30s"),
                timeout=dict(type="str", default="30s"),
                retries=dict(type="int", default=3),
                start_period=dict(type="str", default="0s"),
            ),
        ),
        restart_policy=dict(
            type="str", default="unless-stopped", choices=["no", "on-failure", "unless-stopped", "always"]
        ),
        stop_timeout=dict(type="int", default=10),
        log=dict(
            type="dict",
            options=dict(driver=dict(type="str", default="json-file"), options=dict(type="dict")),
        ),
        health=dict(
            type="dict",
            default={},
            options=dict(
                timeout=dict(type="int", default=120),
                http=dict(
                    type="dict",
                    options=dict(
                        port=dict(type="int", required=True),
                        path=dict(type="str", default="/health"),
                        status=dict(type="int", default=200),
                        timeout=dict(type="float", default=2),
                    ),
                ),
                monitor=dict(type="int", default=0),
            ),
        ),
        analysis=dict(
            type="dict",
            options=dict(
                prometheus_url=dict(type="str", required=True),
                checks=dict(
                    type="list",
                    elements="dict",
                    required=True,
                    options=dict(
                        name=dict(type="str", required=True),
                        query=dict(type="str", required=True),
                        condition=dict(type="str", required=True, choices=["<", "<=", ">", ">=", "==", "!="]),
                        threshold=dict(type="float", required=True),
                    ),
                ),
                interval=dict(type="int", default=5),
                min_samples=dict(type="int", default=1),
                failure_limit=dict(type="int", default=0),
                bake=dict(type="int", default=0),
                inconclusive=dict(type="str", default="wait", choices=["wait", "pass", "fail"]),
                inconclusive_timeout=dict(type="int", default=60),
            ),
        ),
        proxy=dict(
            type="dict",
            options=dict(
                listen=dict(type="int", required=True),
                port=dict(type="int", required=True),
                bind=dict(type="str", default="127.0.0.1"),
                image=dict(type="str", default="tradeops/proxy:1.0"),
                drain=dict(type="int", default=5),
                memory=dict(type="str", default="128m"),
                cpus=dict(type="float", default=1.0),
            ),
        ),
        keep_releases=dict(type="int", default=5),
        lock=dict(
            type="dict",
            default={},
            options=dict(
                holder=dict(type="str"),
                ttl=dict(type="int", default=900),
                wait=dict(type="int", default=0),
                take_over_stale=dict(type="bool", default=False),
            ),
        ),
        allow_during_block=dict(type="bool", default=False),
        reason=dict(type="str"),
    )
    argument_spec.update(STATE_ARG_SPEC)
    argument_spec.update(D.DOCKER_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # the failure output (log tails, health probe output) and every message: no secret file's value, no
    # credential-shaped text, no URL user info
    secrets_dir = module.params["secrets_dir"] or "/etc/tradeops/%s/secrets" % module.params["stack"]
    guard(module, Redactor(read_secret_files([secrets_dir]) if module.params["secrets"] else []))
    result = {"changed": False, "rolled_back": False}
    try:
        ro = Rollout(module)
        result = ro.run()
    except RolloutFailed as exc:
        module.fail_json(msg=exc.reason, rolled_back=False, changed=False, stage=exc.stage)
    except (StateError, D.DockerError, ValueError) as exc:
        module.fail_json(msg=str(exc), rolled_back=False, changed=False)
    except D.DockerException as exc:
        module.fail_json(msg="Docker engine error before any change was rolled back: %s" % exc, **result)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
