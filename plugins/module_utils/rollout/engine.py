# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every Docker call (and proxy file write) of a rollout, each recorded as an action.

- ``Engine`` performs them on the Docker engine;
- ``ModelEngine`` performs them on a model of the service's containers, images and files: the same
  actions are recorded, nothing is changed. ``DryEngine`` is the model seeded from the real engine: check
  mode runs the strategies on it, and the plan it returns is the list of actions the dry engine recorded.
  The unit tests drive the strategies on a ``ModelEngine`` with failures injected.

A container handle only needs ``name``, ``id``, ``status``, ``labels`` and ``attrs`` (``State``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.urls import open_url

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as docker_utils
from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.module_utils._state import (
    LABEL_RELEASE,
    LABEL_SPEC_HASH,
    atomic_write_text,
)
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed

LIVE = ("running", "restarting", "paused")


def spec_hash_of(container):
    return container.labels.get(LABEL_SPEC_HASH) if container is not None else None


def release_of(container):
    return container.labels.get(LABEL_RELEASE) if container is not None else None


def health_of(container):
    return ((container.attrs.get("State") or {}).get("Health") or {}).get("Status")


def split_ref(ref):
    """An image reference -> (repository, tag or digest) for images.pull()."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


class Engine:
    """The real engine: Docker SDK calls for one service of one stack."""

    dry = False

    def __init__(self, client, stack, service, secrets_dir):
        self.client, self.stack, self.service, self.secrets_dir = client, stack, service, secrets_dir
        self.actions = []  # what was done (or, on a model, would be done), in order
        self.changed = False
        self.progress = None  # a progress.Progress the real rollout reports its steps and health waits to
        self.clean = None  # the module's redaction, applied to container log and health lines before cutting

    def record(self, action, change=True):
        self.actions.append(action)
        self.changed = self.changed or change
        if self.progress is not None:
            self.progress.step(action)

    # -- reads -------------------------------------------------------------------------
    def containers(self):
        return {c.name: c for c in docker_utils.service_containers(self.client, self.stack, self.service)}

    def proxies(self):
        return docker_utils.service_containers(self.client, self.stack, self.service, role="proxy")

    def running(self):
        return [c for c in self.containers().values() if c.status in LIVE]

    def summaries(self):
        found = list(self.containers().values()) + self.proxies()
        return sorted((docker_utils.container_summary(self.client, c) for c in found), key=lambda x: x["name"])

    def image(self, ref):
        try:
            return self.client.images.get(ref)
        except docker_utils.ImageNotFound:
            return None

    def image_digest(self, image_id):
        return docker_utils.image_digest(self.client, image_id)

    def inspect(self, container):
        """The container's current attrs (reloaded)."""
        container.reload()
        return container.attrs

    def failure_details(self, container, attrs):
        return docker_utils.failure_details(container, attrs, self.clean)

    def container_ip(self, container, network):
        container.reload()
        return docker_utils.container_ip(container.attrs, network)

    def read_text(self, path):
        try:
            with open(path) as handle:
                return handle.read()
        except IOError:
            return None

    # -- image and network ---------------------------------------------------------------
    def resolve_image(self, ref, pull):
        """(image id, image or None): pulled when ``pull`` says so; fails when absent and pull=never."""
        image = self.image(ref)
        if pull == "always" or (pull == "missing" and image is None):
            self.record("pull %s" % ref, change=False)
            image = self._pull(ref, pull, image)
            if image is None:
                return "unknown-until-pulled", None
        if image is None:
            raise RolloutFailed(
                "image %s is not present on the Docker host and pull=never; build or load it first" % ref
            )
        return image.id, image

    def _pull(self, ref, pull, image):
        repo, tag = split_ref(ref)
        try:
            return self.client.images.pull(repo, tag=tag)
        except docker_utils.DockerException as exc:
            raise RolloutFailed("cannot pull image %s: %s (pull=%s)" % (ref, exc, pull))

    def ensure_network(self, name, internal=False):
        if self._network_missing(name):
            self.record("create %snetwork %s" % ("internal " if internal else "", name))
            self._create_network(name, internal)

    def _network_missing(self, name):
        return not docker_utils.network_exists(self.client, name)

    def _create_network(self, name, internal):
        docker_utils.ensure_network(self.client, name, self.stack, internal=internal)

    # -- container writes ----------------------------------------------------------------
    def create(self, spec, spec_hash, name, colour, release_id, role="service", start=True):
        """Create ``name`` from ``spec`` and start it (unless ``start`` is false)."""
        self.record("create %s" % name)
        extra = spec["labels"] if role == "service" else None
        labels = docker_utils.stack_labels(
            self.stack, self.service, colour, release_id, spec_hash, role=role, extra=extra
        )
        container = self._create(spec, name, labels)
        if start:
            if role == "service":
                self.record("start %s" % name)
            container.start()
        return container

    def _create(self, spec, name, labels):
        kwargs = _spec.create_kwargs(spec, name, labels, self.secrets_dir)
        return docker_utils.create_container(self.client, kwargs, spec["networks"])

    def stop(self, container, timeout):
        """Stop and keep (restart policy 'no', so dockerd never brings it back)."""
        self.record("stop %s (kept for rollback)" % container.name)
        container.update(restart_policy={"Name": "no"})
        container.stop(timeout=timeout)

    def remove(self, container):
        self.record("remove %s" % container.name)
        container.remove(force=True)

    def start(self, container, policy):
        """Start a kept container again with restart policy ``policy``."""
        self.record("start %s" % container.name)
        container.update(restart_policy={"Name": policy})
        container.start()

    def rename(self, container, new):
        self.record("rename %s -> %s" % (container.name, new))
        container.rename(new)
        container.reload()

    def remove_if(self, name, only_stopped=False):
        container = self.containers().get(name)
        if container is not None and not (only_stopped and container.status == "running"):
            self.remove(container)
            return True
        return False

    def exec(self, container, argv):
        """(exit code, output) of a command in a running container."""
        res = container.exec_run(list(argv))
        return res.exit_code, (res.output or b"").decode("utf-8", "replace").strip()

    def query(self, container, argv):
        """``exec`` of a command that only reads (runs on the real container in check mode too)."""
        return self.exec(container, argv)

    def write_text(self, path, text, dir_mode=0o755):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=dir_mode)
            os.chmod(directory, dir_mode)
        atomic_write_text(path, text, mode=0o644)

    # -- waits ---------------------------------------------------------------------------
    def wait_healthy(self, container, timeout, http=None, network=None, stop_early=None):
        progress = self.progress
        return docker_utils.wait_healthy(
            container,
            timeout,
            http=http,
            network=network,
            stop_early=stop_early,
            on_poll=None if progress is None else lambda state: progress.health(container.name, state, timeout),
            clean=self.clean,
        )

    def http_header(self, url, header, expected=None, timeout=2):
        """The value of ``header`` in the answer to a GET of ``url`` (errors carry headers too), or None."""
        try:
            with open_url(url, timeout=timeout, use_proxy=False) as resp:
                return resp.headers.get(header)
        except Exception as exc:  # HTTPError carries headers too
            headers = getattr(exc, "headers", None)
            return headers.get(header) if headers else None


class ModelContainer:
    """A container of the model: what the strategies read of a Docker container."""

    def __init__(self, name, labels, status="running", health=None, id=None, restart_count=0):
        self.name = name
        self.id = id or "model-%s" % name
        self.labels = dict(labels)
        self.status = status
        self.attrs = {"State": {"Status": status}, "RestartCount": restart_count}
        if health:
            self.attrs["State"]["Health"] = {"Status": health}

    @classmethod
    def of(cls, container):
        return cls(
            container.name,
            container.labels,
            status=container.status,
            health=health_of(container),
            id=container.id,
            restart_count=container.attrs.get("RestartCount", 0),
        )

    def set_status(self, status, health=None):
        self.status = status
        self.attrs["State"] = {"Status": status}
        if health:
            self.attrs["State"]["Health"] = {"Status": health}


class ModelEngine(Engine):
    """The engine's twin on a model: records the same actions, changes nothing real.

    ``containers``: ModelContainer list (the service's and its proxy's); ``images``: ref -> image id;
    ``files``: path -> text. Subclasses inject failures by overriding ``wait_healthy``, ``exec`` and friends.
    """

    dry = True

    def __init__(self, stack, service, containers=(), images=None, files=None, networks=()):
        super().__init__(None, stack, service, None)
        self.model = {c.name: c for c in containers}
        self.images = dict(images or {})
        self.files = dict(files or {})
        self.networks = set(networks)
        self._ids = 0

    # -- reads -------------------------------------------------------------------------
    def containers(self):
        return {n: c for n, c in self.model.items() if c.labels.get(docker_utils.LABEL_ROLE, "service") == "service"}

    def proxies(self):
        return [c for c in self.model.values() if c.labels.get(docker_utils.LABEL_ROLE) == "proxy"]

    def summaries(self):
        return [
            {"name": c.name, "state": c.status, "health": health_of(c), "release": release_of(c)}
            for c in sorted(self.model.values(), key=lambda c: c.name)
        ]

    def image(self, ref):
        image_id = self.images.get(ref) or (ref if ref in self.images.values() else None)
        return _ModelImage(image_id) if image_id else None

    def image_digest(self, image_id):
        return None

    def inspect(self, container):
        return container.attrs

    def failure_details(self, container, attrs):
        state = attrs.get("State") or {}
        return {"state": state.get("Status"), "health": (state.get("Health") or {}).get("Status")}

    def container_ip(self, container, network):
        return "model-ip-of-%s" % container.name

    def read_text(self, path):
        return self.files.get(path)

    # -- writes on the model -------------------------------------------------------------
    def _pull(self, ref, pull, image):
        return None  # the image id is known after the pull only

    def _network_missing(self, name):
        return name not in self.networks

    def _create_network(self, name, internal):
        self.networks.add(name)

    def _create(self, spec, name, labels):
        self._ids += 1
        container = ModelContainer(name, labels, status="created", id="model-new-%d" % self._ids)
        self.model[name] = container
        return _Handle(self, container)

    def create(self, spec, spec_hash, name, colour, release_id, role="service", start=True):
        handle = super().create(spec, spec_hash, name, colour, release_id, role=role, start=start)
        return handle.container

    def stop(self, container, timeout):
        self.record("stop %s (kept for rollback)" % container.name)
        container.set_status("exited")

    def remove(self, container):
        self.record("remove %s" % container.name)
        self.model.pop(container.name, None)

    def start(self, container, policy):
        self.record("start %s" % container.name)
        self._started(container)

    def _started(self, container):
        container.set_status("running")

    def rename(self, container, new):
        self.record("rename %s -> %s" % (container.name, new))
        self.model.pop(container.name, None)
        container.name = new
        self.model[new] = container

    def exec(self, container, argv):
        return 0, ""

    def query(self, container, argv):
        return self.exec(container, argv)

    def write_text(self, path, text, dir_mode=0o755):
        self.files[path] = text

    # -- waits ---------------------------------------------------------------------------
    def wait_healthy(self, container, timeout, http=None, network=None, stop_early=None):
        return docker_utils.GateResult(True, None, {"health": health_of(container)}, 0.0)

    def http_header(self, url, header, expected=None, timeout=2):
        return expected


class DryEngine(ModelEngine):
    """Check mode: the model seeded from the real engine; images are looked up on the real one."""

    def __init__(self, real):
        containers = [ModelContainer.of(c) for c in list(real.containers().values()) + real.proxies()]
        super().__init__(real.stack, real.service, containers)
        self.real = real

    def image(self, ref):
        return self.real.image(ref)

    def image_digest(self, image_id):
        return self.real.image_digest(image_id)

    def _network_missing(self, name):
        return name not in self.networks and self.real._network_missing(name)

    def read_text(self, path):
        return self.files[path] if path in self.files else self.real.read_text(path)

    def query(self, container, argv):
        real = self._real_of(container)
        if real is None:
            return 1, "%s is not running on the Docker host (check mode)" % container.name
        return self.real.exec(real, argv)

    def container_ip(self, container, network):
        real = self._real_of(container)
        return super().container_ip(container, network) if real is None else self.real.container_ip(real, network)

    def _real_of(self, container):
        """The running real container a model container stands for (None: created or changed by the plan)."""
        found = {c.name: c for c in list(self.real.containers().values()) + self.real.proxies()}.get(container.name)
        return found if found is not None and found.status == "running" and found.id == container.id else None

    def summaries(self):
        return self.real.summaries()


class _ModelImage:
    def __init__(self, image_id, user="10001"):
        self.id = image_id
        self.attrs = {"Config": {"User": user}}


class _Handle:
    """What ``_create`` returns on the model: ``start()`` runs the model container."""

    def __init__(self, engine, container):
        self.engine = engine
        self.container = container

    def start(self):
        self.engine._started(self.container)
