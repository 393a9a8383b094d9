# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``teardown_plan``: what taking a stack down removes, from the engine's own view of it.

The stack's containers are the ones labelled ``tradeops.stack=<stack>``; its volumes and
networks are the ones those containers use, plus the networks labelled for the stack.
Nothing is chosen by name prefix, so a neighbour called ``<stack>x-...`` or a volume another
stack shares is never in the plan (a shared one is listed as kept, with who holds it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

# Docker's own networks: never removed, whoever joined them.
ENGINE_NETWORKS = ("bridge", "host", "none")


# Both shapes the engine gives: the container list (GET /containers/json, as
# docker_host_info's verbose_output returns it) and a full inspect document.
def _label(container, key):
    labels = container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}
    return labels.get(key)


def _name(container):
    name = container.get("Name") or (container.get("Names") or [""])[0]
    return name.lstrip("/")


def _networks(container):
    return list((container.get("NetworkSettings") or {}).get("Networks") or {})


def teardown_plan(containers, stack, labelled_networks=None):
    """The containers, volumes and networks of ``stack`` and the volumes/networks that stay.

    ``containers`` describe every container on the engine (any stack), as the container
    list or as ``docker inspect`` documents; ``labelled_networks`` names the networks labelled for the stack.
    """
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        raise AnsibleFilterError("teardown_plan expects a list of containers (docker_host_info or docker inspect)")
    if not stack:
        raise AnsibleFilterError("teardown_plan needs the stack name")
    ours = [c for c in containers if _label(c, "tradeops.stack") == stack]
    others = [c for c in containers if _label(c, "tradeops.stack") != stack]
    volumes, networks = set(), set(labelled_networks or [])
    for container in ours:
        volumes.update(m["Name"] for m in container.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name"))
        networks.update(_networks(container))
    networks -= set(ENGINE_NETWORKS)
    kept = {}
    for container in others:
        for mount in container.get("Mounts") or []:
            if mount.get("Name") in volumes:
                kept.setdefault("volume " + mount["Name"], []).append(_name(container))
        for net in _networks(container):
            if net in networks:
                kept.setdefault("network " + net, []).append(_name(container))
    return {
        "containers": sorted(_name(c) for c in ours),
        "volumes": sorted(v for v in volumes if "volume " + v not in kept),
        "networks": sorted(n for n in networks if "network " + n not in kept),
        "kept": {what: sorted(who) for what, who in sorted(kept.items())},
    }


class FilterModule(object):
    def filters(self):
        return {"teardown_plan": teardown_plan}
