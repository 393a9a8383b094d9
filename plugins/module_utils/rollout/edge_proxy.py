# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The edge proxy of a blue_green service, behind a small interface:

- ``upstream_colour()``: the colour the proxy serves (None when it has no config yet);
- ``serves(colour, release_id)``: the proxy runs with its current spec and serves exactly that config;
- ``switch(colour, release_id, backup=None)``: point it at ``colour`` (``backup`` behind it while
  draining), validated, graceful, verified through the proxy; ``switched`` says whether it did.

``NginxProxy`` is the implementation: an nginx container ``<stack>-<service>-proxy`` reading an upstream file
under the stack's state directory. Every container call and file write goes through the engine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.module_utils.rollout import RolloutFailed
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.engine import spec_hash_of

COLOUR_HEADER = "X-Tradeops-Colour"


class NginxProxy:
    def __init__(self, engine, slots, cfg, conf_dir, network, timings=None, warn=None):
        self.engine = engine
        self.slots = slots
        self.cfg = cfg
        self.conf_dir = conf_dir
        self.conf_file = os.path.join(conf_dir, "upstream.conf")
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
        return self.conf_body() == _without_release(self.render(colour, release_id))

    def container(self):
        found = self.engine.proxies()
        return found[0] if found else None

    def spec(self):
        cfg = self.cfg
        # the hardening profile and the table's defaults, plus what makes it the proxy
        params = _spec.service_params(
            image=cfg["image"],
            env={},
            volumes=["%s:/etc/nginx/tradeops:ro" % self.conf_dir],
            networks=[{"name": self.network, "aliases": []}],
            published_ports=["%s:%s:8080" % (cfg["bind"], cfg["listen"])],
            publish_address=cfg["bind"],
            labels={},
            resources={"memory": cfg["memory"], "cpus": cfg["cpus"], "pids": 128},
            stop_timeout=30,
        )
        image_id, _image = self.engine.resolve_image(cfg["image"], "missing")
        spec = _spec.desired_spec(params, image_id, {})
        return spec, _spec.spec_hash(spec)

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

    # -- changing it ---------------------------------------------------------------------
    def switch(self, colour, release_id, backup=None):
        """Point the proxy at ``colour`` (``backup`` behind it while draining): validated (nginx -t) graceful
        reload, verified through the proxy."""
        engine = self.engine
        old_text = engine.read_text(self.conf_file)
        if backup:
            engine.record(
                "switch %s upstream -> %s (backup %s)"
                % (self.slots.proxy, self.slots.colour(colour), self.slots.colour(backup))
            )
        else:
            engine.record("switch %s upstream -> %s" % (self.slots.proxy, self.slots.colour(colour)))
        engine.write_text(self.conf_file, self.render(colour, release_id, backup))
        proxy = self.ensure()
        t = time.monotonic()
        code, out = engine.exec(proxy, ["nginx", "-t", "-q"])
        if code != 0:
            if old_text is not None:
                engine.write_text(self.conf_file, old_text)
            raise RolloutFailed(
                "nginx -t rejected the new upstream (kept the old one): %s" % out[-500:], stage="switch"
            )
        code, out = engine.exec(proxy, ["nginx", "-s", "reload"])
        if code != 0:
            raise RolloutFailed("nginx -s reload failed: %s" % out[-500:], stage="switch")
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
            "proxy %s still answers with colour %s %ss after the reload (expected %s)"
            % (self.slots.proxy, seen, timeout, colour),
            stage="switch",
        )

    def ensure(self):
        """The proxy container, created (or recreated when its spec changed) and running."""
        engine = self.engine
        spec, spec_hash = self.spec()
        proxy = self.container()
        if proxy is not None and spec_hash_of(proxy) != spec_hash:
            self.warn("proxy %s spec changed: recreated (brief interruption)" % proxy.name)
            engine.remove(proxy)
            proxy = None
        if proxy is None:
            proxy = engine.create(spec, spec_hash, self.slots.proxy, "proxy", "-", role="proxy")
        elif proxy.status != "running":
            engine.start(proxy, "unless-stopped")
        else:
            return proxy
        res = engine.wait_healthy(proxy, 30)
        if not res.ok:
            raise RolloutFailed("edge proxy %s did not start: %s" % (self.slots.proxy, res.reason), stage="proxy")
        return proxy


def _without_release(text):
    return "\n".join(line for line in text.splitlines() if not line.startswith("# managed"))
