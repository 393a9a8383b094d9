# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network layout of a stack, derived from its description (one home for the rule).

A Docker network is the unit of reachability: two containers talk only when they share one.
So the layout follows who uses whom:

- ``<stack>``: the stack's network. Every service that is not ``internal`` joins it with its
  name as alias; it has egress (the broker) and carries published ports and edge proxies.
- ``<stack>-<service>`` for an ``internal`` service (PostgreSQL, Redis): an internal network
  (no egress, no published ports) joined by the service and only by the services that list it
  in ``depends_on``. A bot that does not use PostgreSQL cannot reach it.
- ``<stack>-metrics``: the monitoring containers and every metrics endpoint (the service, or
  its edge proxy when it has one); Prometheus reaches nothing else, no database in particular.

A service that lists its own ``networks`` keeps them as given (the layout is then its owner's).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tradeops.stack.plugins.module_utils._docker import container_name

METRICS_SUFFIX = "metrics"


def dashed(name):
    """A service name as it appears in container and network names (``db_writer`` -> ``db-writer``)."""
    return name.replace("_", "-")


def metrics_network(stack):
    """The network Prometheus shares with the metrics endpoints."""
    return "%s-%s" % (stack, METRICS_SUFFIX)


def private_network(stack, service):
    """The internal network of an ``internal`` service, joined by the services that depend on it (named as
    the service's container is)."""
    return container_name(stack, service)


def _aliases(name):
    return sorted({name, dashed(name)})


def enabled(svc):
    """Whether a service of the description is deployed (``enabled`` may be a templated string)."""
    value = svc.get("enabled", True)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)


def service_networks(service, services, stack, network=None):
    """The ``networks`` option of rollout for ``service``: [{name, aliases, internal}], primary first.

    ``network`` is the stack's network (default the stack name); ``services`` the whole description,
    to know which dependencies are internal.
    """
    if service.get("networks"):
        return [
            {"name": n["name"], "aliases": list(n.get("aliases") or []), "internal": bool(n.get("internal", False))}
            for n in service["networks"]
        ]
    name = service["name"]
    internal_services = {s["name"] for s in services if s.get("internal") and enabled(s)}
    if service.get("internal"):
        out = [{"name": private_network(stack, name), "aliases": _aliases(name), "internal": True}]
    else:
        out = [{"name": network or stack, "aliases": _aliases(name), "internal": False}]
    if service.get("metrics") and not service.get("proxy"):
        out.append({"name": metrics_network(stack), "aliases": _aliases(name), "internal": False})
    for dep in service.get("depends_on") or []:
        if dep in internal_services and dep != name:
            out.append({"name": private_network(stack, dep), "aliases": [], "internal": True})
    return out


def proxy_networks(service, stack):
    """Networks the edge proxy of ``service`` joins besides the service's primary one.

    A proxied service is scraped through its proxy, so the proxy, not the service, is on the
    metrics network.
    """
    if service.get("proxy") and service.get("metrics") and not service.get("networks"):
        return [metrics_network(stack)]
    return []


def service_problems(svc):
    """What the layout cannot honour for one service, one sentence per field (without the service's name)."""
    if not svc.get("internal"):
        return []
    if not isinstance(svc["internal"], bool):
        return ["field 'internal' must be true or false, got %r" % (svc["internal"],)]
    out = []
    if svc.get("published_ports"):
        out.append(
            "field 'internal' (no route out of its network) excludes 'published_ports'; "
            "drop internal to publish (a non-loopback address also needs a host_port waiver)"
        )
    if svc.get("proxy"):
        out.append("field 'internal' excludes 'proxy' (the proxy publishes a host port)")
    if svc.get("networks"):
        out.append("field 'internal' excludes 'networks' (networks gives the whole layout)")
    return out
