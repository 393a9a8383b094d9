"""The fake engine the strategies are tested against: the model engine with failures injected.

``FakeEngine(fail_at=i)`` raises at the i-th recorded action (the action is recorded, not performed), once:
with the actions of a successful run this reaches every step of a strategy as a failure point.
``unhealthy`` names releases whose containers fail the health gate.
"""

from __future__ import annotations

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as docker_utils
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.blue_green import BlueGreen
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.edge_proxy import NginxProxy
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import LIVE, ModelContainer, ModelEngine
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.exclusive import Exclusive
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.gate import Gate
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import Slots
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.start_first import StartFirst
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.strategy import Settings

STACK, SERVICE = "t", "app"
CONF_DIR = "/state/proxy/app"
PROXY_CFG = {
    "listen": 8080,
    "port": 8000,
    "bind": "127.0.0.1",
    "image": "p:1",
    "drain": 5,
    "memory": "64m",
    "cpus": 1.0,
}


class FakeEngine(ModelEngine):
    def __init__(self, *args, fail_at=None, unhealthy=(), **kwargs):
        super().__init__(STACK, SERVICE, *args, **kwargs)
        self.fail_at = fail_at
        self.unhealthy = set(unhealthy)
        self.max_live = 0

    def record(self, action, change=True):
        super().record(action, change)
        if self.fail_at is not None and len(self.actions) - 1 == self.fail_at:
            self.fail_at = None
            raise RolloutFailed("injected failure at %r" % action, stage="test")

    def _started(self, container):
        super()._started(container)
        self.max_live = max(self.max_live, len(self.running()))

    def wait_healthy(self, container, timeout, http=None, network=None, stop_early=None):
        if container.labels.get(docker_utils.LABEL_RELEASE) in self.unhealthy:
            container.set_status("running", "unhealthy")
            return docker_utils.GateResult(False, "container %s is unhealthy" % container.name, {}, 0.0)
        return super().wait_healthy(container, timeout, http, network, stop_early)

    def live(self):
        return sorted(c.name for c in self.model.values() if c.status in LIVE)

    def release(self, name):
        return self.model[name].labels.get(docker_utils.LABEL_RELEASE)


def container(slot_name, release, status="running", colour="main", role="service"):
    """A model container of release ``release`` (its spec hash is ``hash-<release>``)."""
    labels = docker_utils.stack_labels(STACK, SERVICE, colour, release, "hash-%s" % release, role=role)
    return ModelContainer(slot_name, labels, status=status, id="id-%s-%s" % (slot_name, release))


SPEC = {"labels": {}}  # what the engine's model reads of a spec


def strategy_for(name, engine, drain=5):
    slots = Slots(STACK, SERVICE)
    gate = Gate(engine, {"timeout": 5, "http": None, "monitor": 0}, STACK)
    settings = Settings(stop_timeout=3, health_timeout=5)
    if name == "exclusive":
        return Exclusive(engine, slots, gate, settings)
    if name == "start_first":
        return StartFirst(engine, slots, gate, settings)
    proxy = NginxProxy(engine, slots, dict(PROXY_CFG, drain=drain), CONF_DIR, STACK)
    return BlueGreen(engine, slots, gate, settings, proxy, drain)


def deploy(name, engine, release):
    """Execute a rollout to ``release``; returns (strategy, exception or None)."""
    strategy = strategy_for(name, engine)
    try:
        strategy.execute(SPEC, "hash-%s" % release, release)
    except RolloutFailed as exc:
        return strategy, exc
    return strategy, None
