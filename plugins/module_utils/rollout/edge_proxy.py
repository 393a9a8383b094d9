# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge proxy of a blue_green service, behind a small interface:

- ``upstream_colour()``: the colour the proxy serves (None when it has no config yet);
- ``serves(colour, release_id)``: the proxy runs with its current spec and serves exactly that colour;
- ``switch(colour, release_id, backup=None)``: point it at ``colour`` (``backup`` behind it while
  draining), validated, verified through the proxy; ``switched`` says whether it did.

Two kinds, one container ``<stack>-<service>-proxy`` reading a file under the stack's state directory:

- ``HaproxyProxy`` (the default): both colours are servers of one backend and a switch is ``set server``
  on the running process over its runtime API; the process that holds the clients' connections is never
  reloaded, so a keep-alive client never sees its connection closed by a switch.
- ``NginxProxy``: an upstream file and a graceful ``nginx -s reload`` per switch. A reload closes idle
  keep-alive connections, and a request sent on one at that moment fails (docs/rollout.md measures it);
  kept for stacks that still run it until they migrate.

Every container call and file write goes through the engine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import time

from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import spec_hash_of
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import COLOURS

COLOUR_HEADER = "X-Tradeops-Colour"
CONFIG_LABEL = "tradeops.proxy_config"  # hash of the configuration the proxy process was started with
KINDS = ("haproxy", "nginx")
DEFAULT_IMAGES = {"haproxy": "tradeops/haproxy:2.6", "nginx": "tradeops/proxy:1.0"}


def edge_proxy(engine, slots, cfg, conf_dir, network, timings=None, warn=None):
    """The proxy of ``cfg["kind"]`` (module option proxy.kind)."""
    cls = HaproxyProxy if cfg.get("kind", "haproxy") == "haproxy" else NginxProxy
    return cls(engine, slots, cfg, conf_dir, network, timings=timings, warn=warn)


class EdgeProxy:
    """What both kinds share: the container, its spec, the validated file write and the check through it.

    A kind defines ``conf_name``, ``mount`` (where the conf dir is mounted), ``check_argv`` (validates the
    written file inside the container), ``render(colour, release_id, backup)``, ``spec_options()`` and
    ``apply(proxy, colour, backup)`` (makes the running process serve the file).
    """

    kind = None
    conf_name = None
    mount = None
    check_argv = None

    def __init__(self, engine, slots, cfg, conf_dir, network, timings=None, warn=None):
        self.engine = engine
        self.slots = slots
        self.cfg = cfg
        self.conf_dir = conf_dir
        self.conf_file = os.path.join(conf_dir, self.conf_name)
        self.network = network
        self.timings = {} if timings is None else timings
        self.warn = warn or (lambda msg: None)
        self.switched = False

    # -- what it serves ----------------------------------------------------------------
    def upstream_colour(self):
        text = self.engine.read_text(self.conf_file)
        first = text.split("\n", 1)[0] if text else ""
        marker = "# colour: "
        return first.strip()[len(marker) :] if first.startswith(marker) else None

    def conf_body(self):
        text = self.engine.read_text(self.conf_file)
        if text is None:
            return None
        # the release line may differ between equal configs
        return _without_release(text)

    def serves(self, colour, release_id):
        proxy = self.container()
        _spec, proxy_hash = self.spec()
        if proxy is None or proxy.status != "running" or spec_hash_of(proxy) != proxy_hash:
            return False
        if self.conf_body() != _without_release(self.render(colour, release_id)):
            return False
        return self.runs(proxy, colour)

    def runs(self, proxy, colour):
        """The running process serves ``colour`` (nginx: it serves its file, nothing more to read)."""
        return True

    def container(self):
        return self.proxies().get(self.slots.proxy)

    def proxies(self):
        return {c.name: c for c in self.engine.proxies()}

    def image(self):
        return self.cfg.get("image") or DEFAULT_IMAGES[self.kind]

    def networks(self, aliases):
        """The service's primary network (where it reaches the colours) and the proxy's own ``networks``
        (the metrics network: Prometheus scrapes the service through the proxy, by ``aliases``)."""
        names = [self.network] + [n for n in self.cfg.get("networks") or [] if n != self.network]
        return [{"name": name, "aliases": list(aliases)} for name in names]

    def spec(self):
        cfg = self.cfg
        # the hardening profile and the table's defaults, plus what makes it the proxy
        options = dict(
            image=self.image(),
            env={},
            volumes=["%s:%s:ro" % (self.conf_dir, self.mount)],
            networks=self.networks([]),
            published_ports=["%s:%s:8080" % (cfg["bind"], cfg["listen"])],
            publish_address=cfg["bind"],
            labels={},
            resources={"memory": cfg["memory"], "cpus": cfg["cpus"], "pids": 128},
            stop_timeout=30,
        )
        options.update(self.spec_options())
        params = _spec.service_params(**options)
        image_id, _image = self.engine.resolve_image(options["image"], "missing")
        spec = _spec.desired_spec(params, image_id, {})
        return spec, _spec.spec_hash(spec)

    def spec_options(self):
        return {}

    # -- changing it ---------------------------------------------------------------------
    def switch(self, colour, release_id, backup=None):
        """Point the proxy at ``colour`` (``backup`` behind it while draining): the file written and
        validated inside the container (the old file restored when rejected), applied, verified."""
        engine = self.engine
        if backup:
            engine.record(
                "switch %s upstream -> %s (backup %s)"
                % (self.slots.proxy, self.slots.colour(colour), self.slots.colour(backup))
            )
        else:
            engine.record("switch %s upstream -> %s" % (self.slots.proxy, self.slots.colour(colour)))
        old_text = engine.read_text(self.conf_file)
        engine.write_text(self.conf_file, self.render(colour, release_id, backup))
        proxy = self.ensure()
        t = time.monotonic()
        code, out = engine.exec(proxy, self.check_argv)
        if code != 0:
            if old_text is not None:
                engine.write_text(self.conf_file, old_text)
            raise RolloutFailed(
                "%s rejected the new configuration (kept the old one): %s" % (self.check_argv[0], out[-500:]),
                stage="switch",
            )
        self.apply(proxy, colour, backup)
        self.switched = True
        self.verify(proxy, colour)
        self.timings.setdefault("switch", round(time.monotonic() - t, 2))

    def verify(self, proxy, colour, timeout=10.0):
        ip = self.engine.container_ip(proxy, self.network)
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.engine.http_header("http://%s:8080/" % ip, COLOUR_HEADER, expected=colour)
            if seen == colour:
                return
            time.sleep(0.1)
        raise RolloutFailed(
            "proxy %s still answers with colour %s %ss after the switch (expected %s)"
            % (self.slots.proxy, seen, timeout, colour),
            stage="switch",
        )

    def ensure(self):
        """The proxy container, created (or replaced when its spec changed) and running."""
        engine = self.engine
        spec, spec_hash = self.spec()
        proxy = self.finish_replacement()
        if proxy is not None and spec_hash_of(proxy) != spec_hash:
            self.warn("proxy %s spec changed: recreated (brief interruption)" % proxy.name)
            return self.replace(proxy, spec, spec_hash)
        if proxy is None:
            proxy = engine.create(spec, spec_hash, self.slots.proxy, "proxy", "-", role="proxy")
        elif proxy.status != "running":
            engine.start(proxy, "unless-stopped")
        else:
            return proxy
        self.wait_started(proxy)
        return proxy

    def wait_started(self, proxy):
        res = self.engine.wait_healthy(proxy, 30)
        if not res.ok:
            raise RolloutFailed("edge proxy %s did not start: %s" % (self.slots.proxy, res.reason), stage="proxy")

    def finish_replacement(self):
        """The proxy, after what an interrupted ``replace`` left: a new one that lost its old one is renamed,
        a new one beside the old one is removed."""
        found = self.proxies()
        proxy, new = found.get(self.slots.proxy), found.get(self.slots.proxy_next)
        if new is not None and proxy is None:
            self.engine.rename(new, self.slots.proxy)
            return new
        if new is not None:
            self.engine.remove(new)
        return proxy

    def replace(self, old, spec, spec_hash):
        """The new proxy created before the old one stops (one container may publish the host port at a time,
        so the gap is the new one's start only); back to the old one if the new one does not come up."""
        engine, name = self.engine, self.slots.proxy
        new = engine.create(spec, spec_hash, self.slots.proxy_next, "proxy", "-", role="proxy", start=False)
        engine.stop(old, 30)
        try:
            engine.start(new, "unless-stopped")
            self.wait_started(new)
        except Exception:
            engine.remove(new)
            engine.start(old, "unless-stopped")
            raise
        engine.remove(old)
        engine.rename(new, name)
        return new


class NginxProxy(EdgeProxy):
    """nginx with an upstream file: a switch is a validated graceful reload (which closes idle keep-alive
    connections; see the module docstring)."""

    kind = "nginx"
    conf_name = "upstream.conf"
    mount = "/etc/nginx/tradeops"
    check_argv = ["nginx", "-t", "-q"]

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
        port = self.cfg["port"]
        name = self.slots.colour(colour)
        servers = [
            "    server %s:%d max_fails=0;\n" % (name, port),
            "    server %s:%d max_fails=0 backup;\n" % (name, port),
        ]
        if backup:
            servers.append("    server %s:%d max_fails=0 backup;  # draining\n" % (self.slots.colour(backup), port))
        return (
            "# colour: %s\n"
            "# managed by tradeops.stack.rollout: stack %s, service %s, release %s. Do not edit.\n"
            "upstream tradeops_backend {\n"
            "%s"
            "    keepalive 32;\n"
            "}\n"
            "server {\n"
            "    listen 8080;\n"
            "    add_header %s %s always;\n"
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
        ) % (colour, self.slots.stack, self.slots.service, release_id, "".join(servers), COLOUR_HEADER, colour)

    def apply(self, proxy, colour, backup):
        code, out = self.engine.exec(proxy, ["nginx", "-s", "reload"])
        if code != 0:
            raise RolloutFailed("nginx -s reload failed: %s" % out[-500:], stage="switch")


class HaproxyProxy(EdgeProxy):
    """HAProxy: the file names both colours as servers of one backend; a switch sets their state and weight
    on the running process over its runtime API (a TCP socket on the container's loopback, reached with
    ``docker exec``). The file is rewritten on every switch so that a restarted process starts serving the
    right colour, but it is only read at start: a reload is never needed for a switch.

    The runtime state is read back and compared on every run (``serves``), never assumed from a previous run:
    a controller killed mid-switch leaves a state the next run detects and converges.
    """

    kind = "haproxy"
    conf_name = "haproxy.cfg"
    mount = "/etc/tradeops-proxy"
    check_argv = ["haproxy", "-c", "-q", "-f", "/etc/tradeops-proxy/haproxy.cfg"]
    backend = "tradeops_backend"
    runtime_port = 9999
    # weights: the serving colour takes (almost) everything; the draining colour keeps 1/257 of new requests
    # and catches the retries and redispatches the new colour refuses (the nginx proxy's backup entry)
    FULL_WEIGHT = 256
    BACKUP_WEIGHT = 1
    MAINT_MASK = 0x23  # srv_admin_state: forced (0x01), inherited (0x02) or DNS-resolution (0x20) maintenance
    RUNTIME_CLIENT = 'exec 3<>/dev/tcp/127.0.0.1/%d && printf "%%s\\n" "$1" >&3 && cat <&3' % runtime_port

    def spec_options(self):
        return dict(
            # the name Prometheus scrapes by, also while a replacement still has its temporary name
            networks=self.networks([self.slots.proxy]),
            # no user of its own in either image (Debian's or the official one): a fixed unprivileged uid
            user="10081:10081",
            command=["haproxy", "-db", "-f", "%s/%s" % (self.mount, self.conf_name)],
            healthcheck=dict(
                test=[
                    "CMD",
                    "bash",
                    "-c",
                    "exec 3<>/dev/tcp/127.0.0.1/8081 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 "
                    "&& grep -q '^HTTP/1.[01] 200' <&3",
                ],
                interval="2s",
                timeout="2s",
                retries=3,
                start_period="2s",
            ),
            # a change of the configuration itself (not of the colour) restarts the process
            labels={CONFIG_LABEL: hashlib.sha256(self.render(None, "-").encode("utf-8")).hexdigest()[:16]},
        )

    def weights(self, colour, backup=None):
        """Server -> weight it should have (None: in maintenance)."""
        wanted = dict.fromkeys(COLOURS)
        if backup:
            wanted[backup] = self.BACKUP_WEIGHT
        if colour:
            wanted[colour] = self.FULL_WEIGHT
        return wanted

    def render(self, colour, release_id, backup=None):
        """The whole configuration; ``colour`` (and ``backup``) are only the servers' state at start.

        Why the retries: an app whose accept queue is full (starved of CPU, or a small listen backlog) drops
        the proxy's SYN and the kernel retransmits it only after 1 s; after ``timeout connect`` HAProxy tries
        again, redispatched to another server (the draining colour, while there is one). 1.5 s leaves room for
        the kernel's own retransmit (docs/rollout.md). ``retry-on`` re-sends a request only when the
        connection failed or the server closed it without answering (a keep-alive race with the app).
        ``init-addr libc,127.0.0.1``: a colour without a container still gets an IPv4 address (HAProxy 2.6 sets
        an address over the runtime API only within the address family it has), refused at once.
        """
        port = self.cfg["port"]
        servers = []
        for name, weight in self.weights(colour, backup).items():
            servers.append(
                "    server %s %s:%d init-addr libc,127.0.0.1 weight %d%s\n"
                % (name, self.slots.colour(name), port, weight or self.FULL_WEIGHT, "" if weight else " disabled")
            )
        return (
            "# colour: %s\n"
            "# managed by tradeops.stack.rollout: stack %s, service %s, release %s. Do not edit.\n"
            "global\n"
            "    log stdout format raw local0 info\n"
            "    stats socket ipv4@127.0.0.1:%d level admin\n"
            "    stats timeout 10s\n"
            "    hard-stop-after 30s\n"
            "defaults\n"
            "    mode http\n"
            "    log global\n"
            "    option dontlog-normal\n"  # errors, retries and redispatches only, in the stack's JSON format,
            # with the stack, service and host, so a query follows a request across the stack's logs
            '    log-format "{\\"ts\\":\\"%%[date,utime(%%Y-%%m-%%dT%%H:%%M:%%SZ)]\\",\\"level\\":\\"warning\\",'
            '\\"role\\":\\"edge-proxy\\",\\"stack\\":\\"%s\\",\\"service\\":\\"%s\\",\\"host\\":\\"%%H\\",'
            '\\"event\\":\\"request\\",\\"method\\":\\"%%HM\\",\\"uri\\":\\"%%HU\\",'
            '\\"status\\":%%ST,\\"server\\":\\"%%s\\",\\"retries\\":\\"%%rc\\",\\"termination\\":\\"%%ts\\",'
            '\\"total_ms\\":%%Ta}"\n'
            "    timeout connect 1500ms\n"
            "    timeout client 75s\n"
            "    timeout server 60s\n"
            "    timeout http-keep-alive 75s\n"
            "    timeout http-request 10s\n"
            "    retries 3\n"
            "    retry-on conn-failure empty-response\n"
            "    option redispatch 1\n"
            "frontend health\n"
            "    bind 127.0.0.1:8081\n"
            "    monitor-uri /healthz\n"
            "frontend edge\n"
            "    bind :8080\n"
            "    default_backend %s\n"
            "backend %s\n"
            "    balance roundrobin\n"
            "    http-response set-header %s %%[srv_name]\n"
            "%s"
        ) % (
            colour,
            self.slots.stack,
            self.slots.service,
            release_id,
            self.runtime_port,
            self.slots.stack,  # the stack's names are [a-z0-9_-]: nothing to escape in JSON
            self.slots.service,
            self.backend,
            self.backend,
            COLOUR_HEADER,
            "".join(servers),
        )

    # -- the runtime state ----------------------------------------------------------------
    def runtime(self, proxy, commands, write=False):
        """The runtime API's answer to ``commands`` (several joined by ';').

        ``write``: the commands change the running process, so they go through ``engine.exec`` (recorded,
        nothing sent on a dry engine); reads go through ``engine.query`` (the real process in check mode too).
        """
        call = self.engine.exec if write else self.engine.query
        code, out = call(proxy, ["bash", "-c", self.RUNTIME_CLIENT, "runtime", commands])
        if code != 0:
            raise RolloutFailed("HAProxy runtime API of %s did not answer: %s" % (proxy.name, out[-300:]))
        return out

    def runtime_state(self, proxy):
        """Server -> {"addr", "weight"} (weight None: in maintenance), read from the running process."""
        lines = self.runtime(proxy, "show servers state %s" % self.backend).splitlines()
        header = next((line[2:].split() for line in lines if line.startswith("# be_id")), None)
        state = {}
        for line in lines:
            fields = line.split()
            if header is None or line.startswith("#") or len(fields) < len(header):
                continue
            row = {key: fields[i] for i, key in enumerate(header)}
            maint = int(row["srv_admin_state"]) & self.MAINT_MASK
            state[row["srv_name"]] = {"addr": row["srv_addr"], "weight": None if maint else int(row["srv_uweight"])}
        return state

    def wanted_state(self, colour, backup=None):
        """Server -> {"addr", "weight"} the running process should have."""
        wanted = {}
        containers = self.engine.containers()
        for name, weight in self.weights(colour, backup).items():
            if weight is None:
                wanted[name] = {"weight": None}
                continue
            container = containers.get(self.slots.colour(name))
            if container is None:
                raise RolloutFailed("colour %s has no container to serve" % name, stage="switch")
            wanted[name] = {"addr": self.engine.container_ip(container, self.network), "weight": weight}
        return wanted

    def runs(self, proxy, colour):
        try:
            return _matches(self.runtime_state(proxy), self.wanted_state(colour))
        except RolloutFailed:
            return False

    def apply(self, proxy, colour, backup):
        """Every server set, the serving ones first (a request never finds no server), then read back."""
        wanted = self.wanted_state(colour, backup)
        commands = []
        for name in sorted(wanted, key=lambda n: wanted[n]["weight"] is None):
            server = "%s/%s" % (self.backend, name)
            if wanted[name]["weight"] is None:
                commands.append("set server %s state maint" % server)
            else:
                commands.append("set server %s addr %s port %d" % (server, wanted[name]["addr"], self.cfg["port"]))
                commands.append("set server %s weight %d" % (server, wanted[name]["weight"]))
                commands.append("set server %s state ready" % server)
        answer = self.runtime(proxy, "; ".join(commands), write=True)
        if self.engine.dry:
            return
        state = self.runtime_state(proxy)
        if not _matches(state, wanted):
            raise RolloutFailed(
                "HAProxy of %s did not take the switch to %s: servers %s (answer: %s)"
                % (proxy.name, colour, state, answer[-300:]),
                stage="switch",
            )


def _matches(state, wanted):
    for name, want in wanted.items():
        got = state.get(name)
        if got is None or got["weight"] != want["weight"]:
            return False
        if want["weight"] is not None and got["addr"] != want["addr"]:
            return False
    return True


def _without_release(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith("# managed"))
