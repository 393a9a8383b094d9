# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker SDK helpers shared by the collection's modules (private).

- ``DOCKER_ARG_SPEC`` + doc fragment ``tradeops.stack.docker``: how to reach the engine;
- ``get_client(params)``: a docker.DockerClient, or a readable error;
- ``create_container(client, kwargs, networks)``: create from _spec.create_kwargs() and attach networks;
- ``wait_healthy(...)``: the health gate (exact ``healthy`` comparison, optional HTTP
  probe) that says *why* it failed (health log, exit code, OOM, probe status);
- ``stack_manifest(client, stack)``: every container of a stack with its image id and
  digest, spec hash, release, colour, state, health and restart count.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import time

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._optional import optional_import
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    LABEL_COLOUR,
    LABEL_RELEASE,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_STACK,
)

docker, DOCKER_IMPORT_ERROR = optional_import("docker")
HAS_DOCKER = docker is not None
if HAS_DOCKER:
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
else:  # the names still exist without the SDK, so that the except clauses below hold

    class DockerException(Exception):
        pass

    APIError = NotFound = ImageNotFound = DockerException

# Paired with plugins/doc_fragments/docker.py.
DOCKER_ARG_SPEC = dict(
    docker_host=dict(
        type="str",
        default="unix:///var/run/docker.sock",
        fallback=(env_fallback, ["DOCKER_HOST"]),
        aliases=["docker_url"],
    ),
    api_timeout=dict(type="int", default=60, fallback=(env_fallback, ["DOCKER_TIMEOUT"])),
)

LABEL_ROLE = "tradeops.role"  # "service" or "proxy"


class DockerError(Exception):
    """Something on the engine is not as expected; the message says what and what to do."""


def get_client(params):
    if not HAS_DOCKER:
        raise DockerError("the Docker SDK for Python is required (pip install docker): %s" % DOCKER_IMPORT_ERROR)
    try:
        client = docker.DockerClient(base_url=params["docker_host"], timeout=params["api_timeout"])
        client.ping()
    except DockerException as exc:
        raise DockerError(
            "cannot reach the Docker engine at %s: %s (is dockerd running and the socket readable?)"
            % (params["docker_host"], exc)
        )
    return client


# -- durations and sizes --------------------------------------------------------------
def duration_ns(value, option="duration"):
    """'5s', '1m30s', '500ms', 5 (seconds) -> nanoseconds (Docker's health check unit)."""
    if value is None:
        return None
    try:
        return round(_rules.parse_duration(value, option) * 10**9)
    except _rules.RuleError as exc:
        raise ValueError(str(exc))


def health_budget(healthcheck):
    """start_period + interval x retries in seconds: the least time a gate needs (None when unknown)."""
    if not healthcheck or healthcheck.get("Test") in (None, [], ["NONE"]):
        return None
    interval = (healthcheck.get("Interval") or 30 * 10**9) / 1e9
    retries = healthcheck.get("Retries") or 3
    start = (healthcheck.get("StartPeriod") or 0) / 1e9
    return start + interval * retries


# -- names and labels -----------------------------------------------------------------
def container_name(stack, service, slot=None):
    """<stack>-<service>[-<slot>] with slot in blue|green|next|prev|proxy."""
    base = "%s-%s" % (stack, service.replace("_", "-"))
    return "%s-%s" % (base, slot) if slot else base


def stack_labels(stack, service, colour, release, spec_hash_value, role="service", extra=None):
    labels = dict(extra or {})
    labels.update(
        {
            LABEL_STACK: stack,
            LABEL_SERVICE: service,
            LABEL_COLOUR: colour,
            LABEL_RELEASE: release,
            LABEL_SPEC_HASH: spec_hash_value,
            LABEL_ROLE: role,
        }
    )
    return labels


def service_containers(client, stack, service, role="service"):
    """All containers (running or not) of one service, proxies excluded unless role='proxy'."""
    found = client.containers.list(
        all=True, filters={"label": ["%s=%s" % (LABEL_STACK, stack), "%s=%s" % (LABEL_SERVICE, service)]}
    )
    return [c for c in found if c.labels.get(LABEL_ROLE, "service") == role]


# -- the desired spec --------------------------------------------------------------------
def parse_port(item, default_bind):
    """'[ip:]host:container[/proto]' or 'container' -> (container_key, (ip, host)) for the SDK."""
    text = str(item)
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
    parts = text.split(":")
    if len(parts) == 1:
        ip, host, cont = default_bind, None, parts[0]
    elif len(parts) == 2:
        ip, host, cont = default_bind, parts[0], parts[1]
    elif len(parts) == 3:
        ip, host, cont = parts
    else:
        raise ValueError("invalid published port %r: expected [ip:]host:container[/proto]" % (item,))
    if not cont.isdigit() or (host and not host.isdigit()):
        raise ValueError("invalid published port %r: ports must be numbers" % (item,))
    return "%s/%s" % (cont, proto), (ip or default_bind, int(host) if host else None)


def fingerprint(key, data):
    """A keyed hash of secret content: changes when the secret changes, useless to brute-force without the key."""
    import hmac

    return hmac.new(key, data, hashlib.sha256).hexdigest()


def network_exists(client, name):
    """Whether a network is named exactly ``name``: the engine's name filter also matches ``<name>-metrics``."""
    return any(network.name == name for network in client.networks.list(names=[name]))


def ensure_network(client, name, stack, check_mode=False, internal=False):
    """Create a user-defined bridge network if missing (``internal``: no route out of it, no published port).

    Returns True when it was (or would be) created. An existing network is used as it is.
    """
    if network_exists(client, name):
        return False
    if not check_mode:
        client.networks.create(
            name, driver="bridge", internal=internal, labels={LABEL_STACK: stack}, check_duplicate=True
        )
    return True


def create_container(client, kwargs, networks):
    """containers.create(**kwargs) (see _spec.create_kwargs), then attached to ``networks`` with their aliases."""
    first = networks[0] if networks else None
    container = client.containers.create(**kwargs)
    # Aliases by reconnecting the created container, not by containers.create(networking_config=...):
    # that keyword needs Docker SDK 7, and Debian 12's python3-docker (what docker_host installs) is 5.0.
    if first and first.get("aliases"):
        network = client.networks.get(first["name"])
        network.disconnect(container)
        network.connect(container, aliases=first["aliases"])
    for extra in networks[1:]:
        client.networks.get(extra["name"]).connect(container, aliases=extra.get("aliases") or None)
    return container


# -- inspection ----------------------------------------------------------------------
def image_digest(client, image_id):
    try:
        image = client.images.get(image_id)
    except (ImageNotFound, NotFound):
        return None
    digests = image.attrs.get("RepoDigests") or []
    return digests[0] if digests else None


def container_summary(client, container, digests=None):
    attrs = container.attrs
    state = attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    image_id = attrs.get("Image")
    if digests is None:
        digests = {}
    if image_id not in digests:
        digests[image_id] = image_digest(client, image_id)
    labels = attrs.get("Config", {}).get("Labels") or {}
    return {
        "name": container.name,
        "id": container.id[:12],
        "service": labels.get(LABEL_SERVICE),
        "role": labels.get(LABEL_ROLE, "service"),
        "colour": labels.get(LABEL_COLOUR),
        "release": labels.get(LABEL_RELEASE),
        "spec_hash": labels.get(LABEL_SPEC_HASH),
        "image": attrs.get("Config", {}).get("Image"),
        "image_id": image_id,
        "image_digest": digests[image_id],
        "state": state.get("Status"),
        "running": bool(state.get("Running")),
        "health": health,
        "restart_count": attrs.get("RestartCount", 0),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "started_at": state.get("StartedAt"),
    }


def stack_manifest(client, stack):
    """Every container of ``stack`` (labelled tradeops.stack=<stack>), sorted by service then name.

    Each entry: name, id, service, role (service|proxy), colour, release, spec_hash, image,
    image_id, image_digest (repo digest or None for locally built images), state, running,
    health (None when the container has no healthcheck), restart_count, exit_code,
    oom_killed, started_at.
    """
    containers = client.containers.list(all=True, filters={"label": "%s=%s" % (LABEL_STACK, stack)})
    digests = {}
    out = [container_summary(client, c, digests) for c in containers]
    return sorted(out, key=lambda c: (c["service"] or "", c["name"]))


# -- the health gate -----------------------------------------------------------------
def _cut(text, clean, limit=300):
    """``text`` cleaned (redacted) first, then cut: a secret the cut would split is still found whole."""
    return (clean(text) if clean else text)[:limit]


def health_log_tail(attrs, lines=3, clean=None):
    log = ((attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    out = []
    for entry in log[-lines:]:
        output = (entry.get("Output") or "").strip().replace("\n", " | ")
        out.append("exit %s: %s" % (entry.get("ExitCode"), _cut(output, clean)))
    return out


def logs_tail(container, lines=10, clean=None):
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace")
    except (APIError, NotFound):
        return []
    return [_cut(line, clean) for line in text.splitlines()[-lines:]]


def container_ip(attrs, network=None):
    nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    if network and network in nets and nets[network].get("IPAddress"):
        return nets[network]["IPAddress"]
    for value in nets.values():
        if value.get("IPAddress"):
            return value["IPAddress"]
    return None


def http_probe(url, timeout=2.0):
    """(status or None, error text or None)."""
    # use_proxy=False: probes go to container addresses on the local bridge,
    # never through an HTTP(S)_PROXY the controller environment may carry.
    try:
        with open_url(url, timeout=timeout, use_proxy=False) as resp:
            return resp.status, None
    except HTTPError as exc:
        return exc.code, None
    except (URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))


class GateResult:
    def __init__(self, ok, reason=None, details=None, elapsed=0.0):
        self.ok = ok
        self.reason = reason
        self.details = details or {}
        self.elapsed = elapsed

    def as_dict(self):
        return {"passed": self.ok, "reason": self.reason, "elapsed": round(self.elapsed, 2), **self.details}


def failure_details(container, attrs, clean=None):
    """What a failed container shows: state, health, exit code, and the tails of its health log and logs,
    each line passed through ``clean`` (the module's redaction) before it is cut."""
    state = attrs.get("State") or {}
    return {
        "state": state.get("Status"),
        "health": (state.get("Health") or {}).get("Status"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "error": state.get("Error") or None,
        "restart_count": attrs.get("RestartCount", 0),
        "health_log": health_log_tail(attrs, clean=clean),
        "logs": logs_tail(container, clean=clean),
    }


def last_exit_code(container, since):
    """The exit code of the container's last ``die`` event since ``since`` (epoch seconds), or None.

    After an automatic restart the engine resets State.ExitCode to 0; the event keeps the crash's code.
    """
    try:
        events = container.client.api.events(
            since="%.3f" % since,
            until="%.3f" % time.time(),
            filters={"container": container.id, "event": "die"},
            decode=True,
        )
        codes = [ev.get("Actor", {}).get("Attributes", {}).get("exitCode") for ev in events]
    except (APIError, DockerException):
        return None
    return codes[-1] if codes else None


def wait_healthy(
    container, timeout, http=None, network=None, poll=0.2, min_running=1.0, stop_early=None, on_poll=None, clean=None
):
    """Wait until ``container`` is running, Docker reports exactly ``healthy`` (when it has a
    healthcheck) and the optional HTTP probe answers the expected status.

    Fails at once when the container exits, restarts, is removed or turns ``unhealthy``.
    ``http``: dict(port, path, status, timeout) probed at the container's IP.
    ``on_poll(state)`` is told the container's health (or status, without a healthcheck) on every poll;
    ``clean`` redacts health and log lines before they are cut.
    Returns a GateResult whose ``reason`` says why it failed.
    """
    start = time.monotonic()
    started_at = time.time() - 1
    last_probe = None
    running_since = None
    while True:
        elapsed = time.monotonic() - start
        try:
            container.reload()
        except NotFound:
            return GateResult(False, "container %s was removed during the health gate" % container.name, {}, elapsed)
        attrs = container.attrs
        state = attrs.get("State") or {}
        status = state.get("Status")
        if status in ("exited", "dead") or (status == "restarting"):
            why = "container %s %s (exit code %s%s%s)" % (
                container.name,
                "is restarting after a crash" if status == "restarting" else "exited during the health gate",
                state.get("ExitCode"),
                ", OOMKilled" if state.get("OOMKilled") else "",
                ", error: %s" % state["Error"] if state.get("Error") else "",
            )
            return GateResult(False, why, failure_details(container, attrs, clean), elapsed)
        if attrs.get("RestartCount", 0) > 0:
            return GateResult(
                False,
                "container %s restarted %s time(s) during the health gate (crash loop, exit code %s)"
                % (container.name, attrs["RestartCount"], last_exit_code(container, started_at)),
                failure_details(container, attrs, clean),
                elapsed,
            )
        health = (state.get("Health") or {}).get("Status")
        if health == "unhealthy":
            tail = health_log_tail(attrs, clean=clean)
            return GateResult(
                False,
                "container %s is unhealthy; last health checks: %s" % (container.name, "; ".join(tail) or "none"),
                failure_details(container, attrs, clean),
                elapsed,
            )
        docker_ok = False
        if status == "running":
            if running_since is None:
                running_since = time.monotonic()
            # no healthcheck: running for min_running seconds; else exactly "healthy"
            docker_ok = (time.monotonic() - running_since >= min_running) if health is None else health == "healthy"
        probe_ok = True
        if docker_ok and http:
            ip = container_ip(attrs, network)
            url = "http://%s:%s%s" % (ip, http["port"], http.get("path") or "/")
            code, err = http_probe(url, http.get("timeout") or 2)
            last_probe = {"url": url, "status": code, "error": err}
            probe_ok = code == (http.get("status") or 200)
        if docker_ok and probe_ok:
            details = {"health": health}
            if last_probe:
                details["probe"] = last_probe
            return GateResult(True, None, details, elapsed)
        if on_poll is not None:
            on_poll(health or status)
        if stop_early is not None and stop_early():
            return GateResult(False, "aborted", failure_details(container, attrs, clean), elapsed)
        if elapsed >= timeout:
            details = failure_details(container, attrs, clean)
            if last_probe:
                details["probe"] = last_probe
            if health == "starting" or (health is None and not docker_ok):
                why = "container %s did not become healthy within %ss (health: %s)" % (
                    container.name,
                    timeout,
                    health or status,
                )
                tail = health_log_tail(attrs, clean=clean)
                if tail:
                    why += "; last health checks: %s" % "; ".join(tail)
            else:
                why = "HTTP probe %s answered %s (expected %s) within %ss" % (
                    last_probe["url"],
                    last_probe["status"] if last_probe["status"] is not None else last_probe["error"],
                    http.get("status") or 200,
                    timeout,
                )
            return GateResult(False, why, details, elapsed)
        time.sleep(poll)
