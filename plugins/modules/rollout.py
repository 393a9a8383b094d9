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
extends_documentation_fragment:
  - tradeops.stack.state
  - tradeops.stack.docker
attributes:
  action:
    support: full
    description: O(definition) is read on the controller (the action plugin of the same name).
  check_mode:
    support: full
    description: Returns the plan (action, steps, strategy, expected pause) without any change.
  diff_mode:
    support: full
    description: Shows the container spec before and after, secrets masked.
  idempotent:
    support: full
    description: An unchanged, running, healthy service is a no-op without any Docker write.
author:
  - tradeops.stack contributors (@tradeops-stack)
options:
  service:
    description:
      - Name of the service in the stack. Containers are named C(<stack>-<service>) (C(_) becomes C(-)),
        with C(-blue)/C(-green) for O(strategy=blue_green).
    type: str
    required: true
  definition:
    description:
      - The service's entry of a stack description (read on the controller). Each of its fields that is a container
        option of this module (O(image), O(env), O(resources), O(healthcheck), ...) and is not given as an option of
        the task becomes that option; its other fields (C(depends_on), C(metrics), ...) are ignored.
      - The stack role passes its services this way, so a container option reaches the containers from the
        description without a task file naming it.
    type: dict
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
      - V(blue_green) starts the other colour, gates it, switches the edge proxy (HAProxy runtime API, no reload),
        drains with the old colour as a backup, takes it out (second switch), stops the old colour and keeps it
        for an instant rollback. Requires O(proxy).
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
      internal:
        description:
          - Create the network as internal when it is missing (no route out of it, no published port); the
            network of a database only its clients join. An existing network is used as it is.
        type: bool
        default: false
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
  init:
    description:
      - Run Docker's init process (tini) as PID 1, which forwards signals to the service and reaps orphaned child
        processes, for an image whose entrypoint is a shell script or a program that does neither.
    type: bool
    default: false
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
      kind:
        description:
          - V(haproxy) switches on the running process over HAProxy's runtime API (C(set server)), never
            reloading it, so clients on keep-alive connections never see a switch. Its configuration is
            C(<state_root>/<stack>/proxy/<service>/haproxy.cfg); it is read at start only.
          - V(nginx) switches with a validated graceful reload, which closes idle keep-alive connections (a
            request sent on one at that moment fails). Kept for stacks that still run it; changing the kind
            recreates the proxy container (a short gap, see docs/rollout.md).
        type: str
        choices: [haproxy, nginx]
        default: haproxy
      image:
        description:
          - "Proxy image. Default C(tradeops/haproxy:2.6) for O(proxy.kind=haproxy) (Debian's HAProxy, or an
            official C(haproxy:<version>-bookworm) image), C(tradeops/proxy:1.0) for O(proxy.kind=nginx)."
          - The proxy runs non-root with a read-only root filesystem and every capability dropped.
        type: str
      drain:
        description:
          - Seconds between the switch and stopping the old colour (in-flight requests finish).
          - During the drain the old colour stays behind the new one as a backup (HAProxy, weight 1 of 257 with
            retries redispatched to it; nginx, a C(backup) server), so a request the new colour refuses or does
            not accept within 1.5 s goes to it. A second switch takes it out.
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
      networks:
        description:
          - Networks the proxy joins besides the service's primary one, with the proxy's name as alias; created
            when missing. The metrics network, so that Prometheus scrapes the service through the proxy.
        type: list
        elements: str
        default: []
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as docker_utils
from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.module_utils._redact import Redactor, guard, read_secret_files
from ansible_collections.tradeops.stack.plugins.module_utils._state import STATE_ARG_SPEC, StateError, error_message
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.runner import Runner, default_secrets_dir


def argument_spec():
    """The module's options: the service spec table's (_spec.argument_spec()) and the rollout's own."""
    spec = dict(
        service=dict(type="str", required=True),
        definition=dict(type="dict"),  # consumed by the action plugin, never seen here
        state=dict(type="str", default="present", choices=["present", "rolled_back", "absent"]),
        to_release=dict(type="str"),
        secrets_dir=dict(type="path", no_log=False),
        allow_root=dict(type="bool", default=False),
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
                kind=dict(type="str", default="haproxy", choices=["haproxy", "nginx"]),
                image=dict(type="str"),
                drain=dict(type="int", default=5),
                memory=dict(type="str", default="128m"),
                cpus=dict(type="float", default=1.0),
                networks=dict(type="list", elements="str", default=[]),
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
    spec.update(_spec.argument_spec())
    spec.update(STATE_ARG_SPEC)
    spec.update(docker_utils.DOCKER_ARG_SPEC)
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    # the failure output (log tails, health probe output) and every message: no secret file's value, no
    # credential-shaped text, no URL user info
    secrets_dir = default_secrets_dir(module.params)
    redactor = guard(module, Redactor(read_secret_files([secrets_dir]) if module.params["secrets"] else []))
    result = {"changed": False, "rolled_back": False}
    try:
        result = Runner(module, clean=redactor.text).run()
    except RolloutFailed as exc:
        module.fail_json(msg=exc.reason, rolled_back=False, changed=False, stage=exc.stage)
    except (StateError, docker_utils.DockerError, ValueError, OSError) as exc:
        module.fail_json(msg=error_message(exc), rolled_back=False, changed=False)
    except docker_utils.DockerException as exc:
        module.fail_json(msg="Docker engine error before any change was rolled back: %s" % exc, **result)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
