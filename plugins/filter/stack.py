# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the stack description (tradeops_stack_services).

- ``dependency_order``: the services in dependency order (a service after everything it
  depends on), stable with respect to the declaration order; a cycle or an unknown
  dependency is an error that names the services involved.
- ``stack_problems``: every problem of a stack description as one readable line naming the
  service and the field, checked against the schema in roles/stack/meta/argument_specs.yml
  plus the rules a schema cannot express (unique names, dependencies, ports, live mode).
- ``stack_containers``: the containers a service can run as; ``container_name``: one of them
  (the names come from the rollout's own ``Slots``, never joined by hand in YAML).
- ``service_networks``, ``proxy_networks``, ``metrics_network``: the stack's network layout
  (plugins/module_utils/_networks.py): who can reach whom follows ``depends_on`` and ``internal``.
- ``broker_kind``, ``live_broker_mentions``, ``active_paper_block``, ``looks_secret``: the
  collection's safety rules (plugins/module_utils/_rules.py, the one home the modules use
  too), for the roles' YAML, which never restates a rule itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import json
import time

from ansible.errors import AnsibleFilterError

from ansible_collections.tradeops.stack.plugins.module_utils import _docker, _networks, _rules
from ansible_collections.tradeops.stack.plugins.module_utils._spec import DEFAULT_STRATEGY
from ansible_collections.tradeops.stack.plugins.module_utils.rollout.slots import Slots

try:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
except ImportError:  # pragma: no cover - ansible-core < 2.11
    ArgumentSpecValidator = None

# Keys of a role argument spec that ArgumentSpecValidator does not know.
_DOC_KEYS = ("description", "version_added", "short_description")


def _plain(data):
    """Plain Python data: ansible-core's tagged, lazily templated containers make the validator crawl."""
    return json.loads(json.dumps(data, default=str))


def _name(svc, index):
    if isinstance(svc, dict) and isinstance(svc.get("name"), str):
        return svc["name"]
    return "#%d" % index


def _graph(services):
    if not isinstance(services, (list, tuple)):
        raise AnsibleFilterError("dependency_order expects a list of services, got %s" % type(services).__name__)
    names = []
    for index, svc in enumerate(services):
        if not isinstance(svc, dict) or not isinstance(svc.get("name"), str):
            raise AnsibleFilterError("service #%d has no name: every service needs a 'name'" % index)
        names.append(svc["name"])
    seen = set()
    for name in names:
        if name in seen:
            raise AnsibleFilterError("service %r is declared twice in tradeops_stack_services" % name)
        seen.add(name)
    deps = {}
    for svc in services:
        wanted = svc.get("depends_on") or []
        if isinstance(wanted, str) or not isinstance(wanted, (list, tuple)):
            raise AnsibleFilterError("service %r: depends_on must be a list of service names" % svc["name"])
        for dep in wanted:
            if dep not in seen:
                raise AnsibleFilterError(
                    "service %r: depends_on names %r, which is not a service of the stack (services: %s)"
                    % (svc["name"], dep, ", ".join(names))
                )
            if dep == svc["name"]:
                raise AnsibleFilterError("service %r: depends_on names itself" % svc["name"])
        deps[svc["name"]] = list(dict.fromkeys(wanted))
    return names, deps


def _find_cycle(deps, remaining):
    """One cycle among ``remaining`` as a list of names [a, b, ..., a]."""
    colour = {}
    stack = []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for dep in deps[node]:
            if dep not in remaining:
                continue
            if colour.get(dep) == "grey":
                return [*stack[stack.index(dep) :], dep]
            if dep not in colour:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(remaining):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return sorted(remaining)


_enabled = _networks.enabled


def dependency_order(services, enabled_only=False):
    """The services in dependency order; with ``enabled_only`` the disabled ones are left out afterwards."""
    names, deps = _graph(services)
    by_name = {svc["name"]: svc for svc in services}
    done, order = set(), []
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if all(d in done for d in deps[n])]
        if not ready:
            cycle = _find_cycle(deps, set(remaining))
            raise AnsibleFilterError(
                "tradeops_stack_services has a dependency cycle: %s (break it by removing one depends_on)"
                % " -> ".join(cycle)
            )
        # take the first ready service in declaration order, then re-scan: stable and predictable
        first = ready[0]
        order.append(by_name[first])
        done.add(first)
        remaining.remove(first)
    if enabled_only:
        order = [svc for svc in order if _enabled(svc)]
    return order


def _clean_spec(options):
    """A role argument spec's options as an ArgumentSpecValidator spec (doc keys dropped)."""
    out = {}
    for key, opt in (options or {}).items():
        opt = {k: v for k, v in opt.items() if k not in _DOC_KEYS}
        if "options" in opt:
            opt["options"] = _clean_spec(opt["options"])
        out[key] = opt
    return out


# Addresses that bind every interface: a host port there clashes with the same port on any address.
_WILDCARDS = ("", "*", "0.0.0.0", "::")  # noqa: S104 - compared, never bound

# One published host port: a service's (service, field) or another role's (role, "component, variable").
_Port = collections.namedtuple("_Port", "service role what address port proto")


def _port_text(port):
    """A host port as compared: a number as its decimal text, a range (8000-8010) as written."""
    text = str(port).strip()
    return str(int(text)) if text.isdigit() else text


def _host_ports(svc, publish_address):
    """The host ports a service publishes, as (field, address, port, protocol).

    Its ``published_ports`` (``[ip:]host:container[/proto]``, without an ip on ``publish_address``) and a
    blue_green proxy's ``listen`` (on ``proxy.bind``, loopback by default, as the rollout module binds it).
    """
    ports = []
    for index, item in enumerate(svc.get("published_ports") or []):
        text, _sep, proto = str(item).partition("/")
        parts = text.split(":")
        if len(parts) >= 2 and parts[-2]:
            address = _rules._port_address(item, publish_address)
            ports.append(("published_ports[%d]" % index, address, _port_text(parts[-2]), proto or "tcp"))
    proxy = svc.get("proxy")
    if isinstance(proxy, dict) and proxy.get("listen") is not None:
        ports.append(("proxy.listen", proxy.get("bind") or "127.0.0.1", _port_text(proxy["listen"]), "tcp"))
    return ports


def _role_ports(host_ports):
    """The host ports of the other roles ({role: [{name, bind, port, var}]}) and the problems of malformed entries."""
    if not isinstance(host_ports, dict):
        return [], ["host_ports must map a role to its [{name, bind, port}], got %r" % (host_ports,)]
    ports, problems = [], []
    for role, entries in sorted(host_ports.items()):
        for index, entry in enumerate(entries if isinstance(entries, (list, tuple)) else [entries]):
            if not isinstance(entry, dict) or not entry.get("name") or not _port_text(entry.get("port")).isdigit():
                problems.append("host_ports.%s[%d] must be {name, bind, port}, got %r" % (role, index, entry))
            elif int(entry["port"]) > 0:
                what = ", ".join(str(x) for x in (entry["name"], entry.get("var")) if x)
                address = str(entry.get("bind") or "")
                ports.append(_Port(None, role, what, address, _port_text(entry["port"]), "tcp"))
    return ports, problems


def _socket(address, port):
    return "%s:%s" % ("[%s]" % address if ":" in address else address or "*", port)


def _owner(port):
    """Who publishes a port: a service (any of its fields), or one component of another role."""
    return ("service", port.service) if port.service is not None else ("role", port.role, port.what)


def _clash(one, other):
    """Two host ports clash: the same port and protocol at the same address, or either on every address."""
    return (one.port, one.proto) == (other.port, other.proto) and (
        one.address == other.address or one.address in _WILDCARDS or other.address in _WILDCARDS
    )


def _host_port_problems(services, publish_address, host_ports):
    """Every host port published twice: by two services, by a service and another role, or twice by that role."""
    ports, problems = _role_ports(host_ports) if host_ports is not None else ([], [])
    for index, svc in enumerate(services):
        if isinstance(svc, dict):
            for field, address, port, proto in _host_ports(svc, publish_address):
                ports.append(_Port(_name(svc, index), None, field, str(address or ""), port, proto))
    for index, this in enumerate(ports):
        earlier = [other for other in ports[:index] if _owner(other) != _owner(this) and _clash(other, this)]
        if not earlier:
            continue
        first = earlier[0]
        here, there = _socket(this.address, this.port), _socket(first.address, first.port)
        elsewhere = "" if here == there else " on %s" % there
        if this.service is not None and first.service is not None:
            problems.append(
                "service %r: host port %s is already published by service %r" % (this.service, this.port, first.service)
            )
        elif this.service is not None:
            problems.append(
                "service %r: field '%s' publishes host port %s, which the %s role publishes too%s (%s): "
                "change one of them" % (this.service, this.what, here, first.role, elsewhere, first.what)
            )
        else:
            problems.append(
                "the %s role publishes host port %s twice (%s; %s%s): change one of them"
                % (this.role, here, this.what, first.what, elsewhere)
            )
    return problems


def _leaves(value, path):
    """Every string (or number) inside a service's fields, with its dotted path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, "%s.%s" % (path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, "%s[%d]" % (path, index))
    elif value is not None and not isinstance(value, bool):
        yield path, value


def _live_problems(label, svc, emulator_hosts):
    """A paper stack's service must not name a live broker anywhere, and every broker endpoint in it (an env value
    under a broker-named variable, or any value shaped like Capital.com's API) must be paper: the allow-list
    decides, so an IP literal is live."""
    problems = []
    for path, value in _leaves({k: v for k, v in svc.items() if k != "name"}, "field '"):
        field = path.replace("field '.", "", 1)
        hosts = _rules.live_broker_mentions(value)
        if hosts:
            problems.append(
                "%s: field '%s' names the LIVE broker host %s in a paper stack (a paper stack talks only to %s or a "
                "broker emulator in tradeops_broker_emulator_hosts)"
                % (label, field, ", ".join(hosts), _rules.DEMO_REST_HOST)
            )
            continue
        key = field[len("env.") :] if field.startswith("env.") else None
        if _rules.is_broker_endpoint(str(value), key):
            try:
                _rules.refuse_live_broker(str(value), emulator_hosts, option="field '%s'" % field)
            except _rules.RuleError as exc:
                problems.append("%s: %s" % (label, exc))
    return problems


def _waivers(svc):
    """The service's waivers as {rule: reason} (malformed entries are the schema's to report)."""
    out = {}
    for waiver in svc.get("waivers") or []:
        if isinstance(waiver, dict) and isinstance(waiver.get("rule"), str):
            out[waiver["rule"]] = str(waiver.get("reason") or "").strip()
    return out


def _hardening_problems(label, svc, publish_address):
    problems = []
    waivers = _waivers(svc)
    findings = _rules.hardening_findings(svc, publish_address)
    for rule, field, detail in findings:
        if rule not in waivers:
            problems.append(
                "%s: field '%s' %s (%s): the hardening profile refuses it; if it is intended, waive it with "
                "waivers: [{rule: %s, reason: <why>}] (printed in the plan, audited)"
                % (label, field, _rules.HARDENING_RULES[rule], detail, rule)
            )
    broken = {rule for rule, _field, _detail in findings}
    for rule, reason in sorted(waivers.items()):
        if rule in _rules.HARDENING_RULES and not reason:
            problems.append("%s: waiver of rule %s needs a non-empty reason" % (label, rule))
        if rule in _rules.HARDENING_RULES and rule not in broken:
            problems.append("%s: waiver of rule %s waives nothing (the service keeps it): remove it" % (label, rule))
    return problems


def stack_waivers(services, publish_address="127.0.0.1"):
    """Every waived hardening finding as {service, rule, field, detail, reason}: the plan prints them, deploy audits."""
    out = []
    for svc in _plain(services) or []:
        if not isinstance(svc, dict):
            continue
        waivers = _waivers(svc)
        for rule, field, detail in _rules.hardening_findings(svc, publish_address or "127.0.0.1"):
            if rule in waivers:
                entry = {"service": svc.get("name"), "rule": rule, "field": field, "detail": detail}
                out.append(dict(entry, reason=waivers[rule]))
    return out


def stack_problems(
    services, argument_specs=None,  # the description and its schema
    trading_mode="paper", live_approved=False, flags=None, emulator_hosts=None, broker_urls=None,  # safety
    stack_name=None, publish_address="127.0.0.1", host_ports=None,  # names and ports
):  # fmt: skip
    """Every problem of the stack description, as readable lines naming the service and the field.

    ``argument_specs`` is the parsed roles/stack/meta/argument_specs.yml (its ``description`` entry
    point's ``tradeops_stack_services.options`` is the schema of one service). In a paper stack no
    field of any service may name a live broker host, every ``*BROKER*URL``/``*BROKER*HOST`` env
    value must be a paper broker (the demo host or one of ``emulator_hosts``), and so must every
    entry of ``broker_urls`` (variable name -> URL, empty means not used). What a service undoes of
    the hardening profile is refused unless the service waives that rule by name, with a reason.
    ``host_ports`` ({role: [{name, bind, port, var}]}) are the host ports other roles publish on the
    same hosts (the monitoring role's ``monitoring_host_ports``): a service's host port on the same
    address, or where either binds every address, is a problem naming both sides.
    """
    problems = []
    emulator_hosts = list(_plain(emulator_hosts) or [])
    if stack_name is not None:
        problem = _rules.name_problem("stack", stack_name)
        if problem:
            problems.append("tradeops_stack_name %r is invalid: %s" % (stack_name, problem))
    if publish_address is not None and not isinstance(publish_address, str):
        problems.append("stack_publish_address must be an address such as 127.0.0.1, got %r" % (publish_address,))
        publish_address = None
    if trading_mode == "paper":
        for option, url in sorted((_plain(broker_urls) or {}).items()):
            if url:
                try:
                    _rules.refuse_live_broker(url, emulator_hosts, option=option)
                except _rules.RuleError as exc:
                    problems.append(str(exc))
    services, argument_specs, flags = _plain(services), _plain(argument_specs), _plain(flags)
    if not isinstance(services, (list, tuple)) or isinstance(services, str):
        return ["tradeops_stack_services must be a list of services, got %s" % type(services).__name__]
    if not services:
        return ["tradeops_stack_services is empty: describe at least one service"]
    schema = None
    if argument_specs:
        try:
            entries = argument_specs["argument_specs"]
            entry = entries.get("description") or entries["main"]
            schema = entry["options"]["tradeops_stack_services"]["options"]
        except (KeyError, TypeError, AttributeError):
            problems.append("the schema passed to stack_problems has no description.tradeops_stack_services.options")
    names = []
    for index, svc in enumerate(services):
        label = "service %r" % _name(svc, index)
        if not isinstance(svc, dict):
            problems.append("%s: must be a mapping of fields, got %s" % (label, type(svc).__name__))
            continue
        if schema is not None and ArgumentSpecValidator is not None:
            clean = _clean_spec(schema)
            result = ArgumentSpecValidator(clean).validate(dict(svc))
            for err in result.errors:
                if type(err).__name__ == "UnsupportedError":
                    unknown = sorted(str(k) for k in svc if k not in clean)
                    problems.append(
                        "%s: unknown field(s) %s (fields of a service: %s)"
                        % (label, ", ".join(repr(k) for k in unknown), ", ".join(sorted(clean)))
                    )
                else:
                    problems.append("%s: %s" % (label, err.msg if hasattr(err, "msg") else err))
        name = svc.get("name")
        if isinstance(name, str):
            problem = _rules.name_problem("service", name)
            if problem:
                problems.append("%s: field 'name' is invalid: %s" % (label, problem))
            if name in names:
                problems.append("%s: declared twice (field 'name' must be unique)" % label)
            names.append(name)
        secrets = svc.get("secrets")
        for index_s, secret in enumerate(secrets if isinstance(secrets, list) else []):
            problem = _rules.name_problem("secret", secret)
            if problem:
                problems.append("%s: field 'secrets[%d]' %r is invalid: %s" % (label, index_s, secret, problem))
        strategy = svc.get("strategy", DEFAULT_STRATEGY)
        if strategy == "blue_green" and not svc.get("proxy"):
            problems.append("%s: strategy blue_green needs field 'proxy' ({listen, port})" % label)
        if svc.get("proxy") and strategy != "blue_green":
            problems.append(
                "%s: field 'proxy' is only used with strategy blue_green (strategy is %s)" % (label, strategy)
            )
        fixed = [port[0] for port in _host_ports(svc, publish_address) if port[0].startswith("published_ports")]
        if strategy == "start_first" and fixed:
            problems.append(
                "%s: field 'published_ports' fixes a host port, which two overlapping start_first instances "
                "cannot share; use strategy exclusive or blue_green" % label
            )
        if svc.get("stateful") and strategy != "exclusive":
            problems.append("%s: a stateful service must use strategy exclusive (field 'strategy')" % label)
        image = svc.get("image")
        if isinstance(image, str) and not image.strip():
            problems.append("%s: field 'image' is empty" % label)
        for flag in svc.get("flags") or []:
            if flags is not None and isinstance(flags, dict) and flag not in flags:
                # not an error: an undeclared flag renders as false (default-safe); say so anyway
                continue
        env = svc.get("env") or {}
        if isinstance(env, dict):
            for key in env:
                if _rules.looks_secret(key):
                    problems.append(
                        "%s: field 'env.%s' looks like a secret; deliver it through 'secrets' (a file under "
                        "/run/secrets), never the environment" % (label, key)
                    )
            mode = str(env.get("TRADING_MODE", trading_mode))
            if mode != trading_mode:
                problems.append(
                    "%s: field 'env.TRADING_MODE' is %r but tradeops_trading_mode is %r" % (label, mode, trading_mode)
                )
        if trading_mode == "paper":
            problems.extend(_live_problems(label, svc, emulator_hosts))
        problems.extend(_hardening_problems(label, svc, publish_address or "127.0.0.1"))
        problems.extend("%s: %s" % (label, problem) for problem in _networks.service_problems(svc))
    # dependencies and cycles (names known only when every service has one)
    if all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in services) and len(set(names)) == len(names):
        try:
            dependency_order(services)
        except AnsibleFilterError as exc:
            problems.append(str(exc.message if hasattr(exc, "message") else exc))
    # host ports published twice, within the stack and against the other roles on the same hosts
    problems.extend(_host_port_problems(services, publish_address or "127.0.0.1", _plain(host_ports)))
    if trading_mode not in ("paper", "live"):
        problems.append("tradeops_trading_mode must be paper or live, got %r" % (trading_mode,))
    if trading_mode == "live" and not live_approved:
        problems.append(
            "tradeops_trading_mode is live but tradeops_live_trading_approved is not true: "
            "a live stack needs that explicit approval variable"
        )
    if flags is not None and not isinstance(flags, dict):
        problems.append("tradeops_feature_flags must be a mapping of flag name to true/false")
    elif isinstance(flags, dict):
        for key, value in flags.items():
            problem = _rules.name_problem("flag", key)
            if problem:
                problems.append("tradeops_feature_flags: flag name %r is invalid: %s" % (key, problem))
            if not isinstance(value, bool):
                problems.append("tradeops_feature_flags.%s must be true or false, got %r" % (key, value))
    return problems


def stack_containers(service, stack):
    """The containers a service of the description can run as, by its strategy: blue_green both colours and
    the proxy; start_first the serving one, the candidate (-next) and the kept one (-prev); exclusive the
    serving one and the kept one."""
    service = _plain(service)
    return Slots(stack, service["name"]).of_strategy(service.get("strategy", DEFAULT_STRATEGY))


def container_name(service, stack, slot=None):
    """The container name of ``service`` (a name) in ``stack``: ``<stack>-<service, '_' as '-'>[-<slot>]``."""
    return _docker.container_name(stack, service, slot=slot)


def service_networks(service, services, stack, network=None, docker_container=False):
    """rollout's ``networks`` for ``service``: its own network, the metrics network, its internal dependencies'.

    ``docker_container``: the entries as community.docker.docker_container takes them (no ``internal``).
    """
    nets = _networks.service_networks(_plain(service), _plain(services) or [], stack, network=network)
    if docker_container:
        return [{"name": n["name"], "aliases": n["aliases"]} for n in nets]
    return nets


def proxy_networks(service, stack):
    """Networks the edge proxy of ``service`` joins besides the service's primary one (the metrics network)."""
    return _networks.proxy_networks(_plain(service), stack)


def metrics_network(stack):
    """The network the monitoring containers share with the metrics endpoints of ``stack``."""
    return _networks.metrics_network(stack)


def daemon_problems(config, waivers=None):
    """Every CIS setting the effective daemon.json turns off without a waiver ({option, reason}), as readable lines."""
    waived = {}
    for waiver in _plain(waivers) or []:
        if isinstance(waiver, dict) and waiver.get("option"):
            waived[str(waiver["option"])] = str(waiver.get("reason") or "").strip()
    problems = []
    for key, item, required, value in _rules.daemon_findings(_plain(config)):
        if waived.get(key):
            continue
        problems.append(
            "daemon.json %s is %s, CIS %s requires %s (%s); set it back (docker_host_%s or "
            "docker_host_daemon_options) or waive it with docker_host_cis_waivers: [{option: %s, reason: <why>}]"
            % (
                key,
                json.dumps(value),
                item,
                json.dumps(required),
                _rules.DAEMON_CIS_SETTINGS[key][2],
                key.replace("-", "_"),
                key,
            )
        )
    for key, reason in sorted(waived.items()):
        if key not in _rules.DAEMON_CIS_SETTINGS:
            known = ", ".join(sorted(_rules.DAEMON_CIS_SETTINGS))
            problems.append("docker_host_cis_waivers names %r, expected one of %s" % (key, known))
        elif not reason:
            problems.append("docker_host_cis_waivers: the waiver of %s needs a non-empty reason" % key)
    return problems


def broker_kind(value, emulator_hosts=None):
    """``paper``, ``live`` or ``invalid`` for a broker URL or bare host; never echoes the value (it may be a secret).

    A bare host (``demo-api-capital.backend-capital.com``) is read as ``https://<host>``.
    """
    text = "" if value is None else str(value)
    if text and "://" not in text:
        text = "https://" + text
    if _rules.live_broker_mentions(value):
        return "live"
    try:
        return _rules.broker_url_kind(text, list(_plain(emulator_hosts) or []), "broker URL")
    except _rules.RuleError:
        return "invalid"


def live_broker_mentions(value):
    """The live broker hosts a value names (see plugins/module_utils/_rules.py)."""
    return _rules.live_broker_mentions(value)


def active_paper_block(content, path="blocks/active.json"):
    """The active block from the text of ``active.json`` (None or '' when the file is absent), else {}.

    A file that is not a well-formed block record is an error naming the file, never "no block".
    """
    if content is None or content == "":
        return {}
    try:
        record = json.loads(content) if isinstance(content, str) else _plain(content)
    except ValueError as exc:
        raise AnsibleFilterError("%s is not valid JSON (%s); inspect it before removing it" % (path, exc))
    try:
        return _rules.active_block(record, path) or {}
    except _rules.RuleError as exc:
        raise AnsibleFilterError(str(exc))


def looks_secret(name):
    return _rules.looks_secret(name)


def name_problem(value, kind):
    """Why ``value`` is not a valid ``kind`` name (stack, service, flag, block, secret), or '' (the rule)."""
    return _rules.name_problem(kind, value) or ""


def since_problem(value, option="since"):
    """Why ``value`` is not a look-back (``30m``, ``2d``, an ISO 8601 UTC time), or '' (the diagnostics rule)."""
    try:
        _rules.parse_since(value, time.time(), option)
    except _rules.RuleError as exc:
        return str(exc)
    return ""


class FilterModule(object):
    def filters(self):
        return {
            "dependency_order": dependency_order,
            "stack_problems": stack_problems,
            "stack_containers": stack_containers,
            "container_name": container_name,
            "stack_waivers": stack_waivers,
            "service_networks": service_networks,
            "proxy_networks": proxy_networks,
            "metrics_network": metrics_network,
            "daemon_problems": daemon_problems,
            "broker_kind": broker_kind,
            "live_broker_mentions": live_broker_mentions,
            "active_paper_block": active_paper_block,
            "looks_secret": looks_secret,
            "since_problem": since_problem,
            "name_problem": name_problem,
        }
