"""The fake engine the strategies are tested against: the model engine with failures injected.

``FakeEngine(fail_at=i)`` raises at the i-th recorded action (the action is recorded, not performed), once:
with the actions of a successful run this reaches every step of a strategy as a failure point.
``unhealthy`` names releases whose containers fail the health gate. ``FakeHaproxy`` stands in for the runtime API
of an HAProxy proxy (pure logic: the integration tests run the real one).
"""

from __future__ import annotations

from ansible_collections.tradeops.stack.plugins.module_utils import _docker as docker_utils
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.blue_green import BlueGreen
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.edge_proxy import HaproxyProxy, NginxProxy
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


class FakeHaproxy:
    """The runtime API of one HAProxy process: ``set server`` and ``show servers state`` on its backend."""

    HEADER = (
        "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
        "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
        "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord"
    )

    def __init__(self, backend="tradeops_backend"):
        self.backend = backend
        # a process starts with both servers in maintenance (no address resolved yet)
        self.servers = {name: {"addr": "-", "admin": 0x20, "weight": 256} for name in ("blue", "green")}
        self.commands = []

    def __call__(self, line):
        answers = []
        for command in [c.strip() for c in line.split(";") if c.strip()]:
            self.commands.append(command)
            answers.append(self.answer(command.split()))
        return "\n".join(answers)

    def answer(self, words):
        if words[:3] == ["show", "servers", "state"]:
            rows = [
                "%d %s %d %s %s 2 %d %d %d 0 1 0 0 0 0 0 0 - 8000 -"
                % (1, self.backend, i, name, srv["addr"], srv["admin"], srv["weight"], srv["weight"])
                for i, (name, srv) in enumerate(sorted(self.servers.items()), 1)
            ]
            return "\n".join(["1", self.HEADER, *rows])
        backend, _sep, name = words[2].partition("/")
        if words[:2] != ["set", "server"] or backend != self.backend or name not in self.servers:
            return "No such server."
        srv = self.servers[name]
        if words[3] == "addr":
            srv["addr"], srv["admin"] = words[4], srv["admin"] & ~0x20
        elif words[3] == "weight":
            srv["weight"] = int(words[4])
        elif words[3:] == ["state", "ready"]:
            srv["admin"] &= ~0x01
        elif words[3:] == ["state", "maint"]:
            srv["admin"] |= 0x01
        return ""

    def weights(self):
        """Server -> weight of the servers in service."""
        return {n: s["weight"] for n, s in self.servers.items() if not s["admin"] & HaproxyProxy.MAINT_MASK}


class FakeEngine(ModelEngine):
    def __init__(self, *args, fail_at=None, unhealthy=(), **kwargs):
        super().__init__(STACK, SERVICE, *args, **kwargs)
        self.fail_at = fail_at
        self.unhealthy = set(unhealthy)
        self.max_live = 0
        self.haproxy = {}  # proxy container id -> its FakeHaproxy (a new process per container)

    def exec(self, container, argv):
        if argv[:2] == ["bash", "-c"] and "/dev/tcp/127.0.0.1/9999" in argv[2]:
            return 0, self.haproxy.setdefault(container.id, FakeHaproxy())(argv[4])
        return super().exec(container, argv)

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


def strategy_for(name, engine, drain=5, kind="haproxy"):
    slots = Slots(STACK, SERVICE)
    gate = Gate(engine, {"timeout": 5, "http": None, "monitor": 0}, STACK)
    settings = Settings(stop_timeout=3, health_timeout=5)
    if name == "exclusive":
        return Exclusive(engine, slots, gate, settings)
    if name == "start_first":
        return StartFirst(engine, slots, gate, settings)
    cls = HaproxyProxy if kind == "haproxy" else NginxProxy
    proxy = cls(engine, slots, dict(PROXY_CFG, drain=drain, kind=kind), CONF_DIR, STACK)
    return BlueGreen(engine, slots, gate, settings, proxy, drain)


def deploy(name, engine, release, kind="haproxy"):
    """Execute a rollout to ``release``; returns (strategy, exception or None)."""
    strategy = strategy_for(name, engine, kind=kind)
    try:
        strategy.execute(SPEC, "hash-%s" % release, release)
    except RolloutFailed as exc:
        return strategy, exc
    return strategy, None
