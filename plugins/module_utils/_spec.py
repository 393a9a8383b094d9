# -*- coding: utf-8 -*-
# Copyright: tradeops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE service spec (private): one table of fields from which everything else is derived.

Each ``Field`` has its name, Ansible type (with elements, choices and suboptions), default, a normaliser
(module options -> entries of the normalised, hashed spec) and its Docker SDK keywords (spec ->
``containers.create()`` arguments). Derived from it:

- ``argument_spec()``: the container part of rollout's argument spec (its DOCUMENTATION is checked
  against the table by tests/unit/plugins/module_utils/test__spec.py, and so is the stack role's schema);
- ``desired_spec(params, image_id, secret_fps)`` and ``spec_hash(spec)``: what a release stores and the
  ``tradeops.spec-hash`` label;
- ``masked_spec(spec)`` and ``diff_spec(spec, before)``: what returns, diffs and the history show;
- ``create_kwargs(spec, ...)``: the Docker SDK's create arguments, from a stored spec as well (a rollback
  starts from the stored spec);
- ``service_params(**options)``: module options with the table's defaults (the edge proxy's spec, tests);
- ``HARDENING``: the hardening profile every container of the collection runs with (services, one-shot
  jobs, monitoring containers; see plugins/filter/service.py).

Adding a container option is one ``Field`` here, its documentation in plugins/modules/rollout.py and a test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

from ansible_collections.tradeops.stack.plugins.module_utils import _rules
from ansible_collections.tradeops.stack.plugins.module_utils._docker import duration_ns, parse_port

SPEC_VERSION = 1  # bump when the meaning of the spec changes (forces one roll)
MASK = "********"
DEFAULT_STRATEGY = "start_first"
STRATEGIES = ["blue_green", "start_first", "exclusive"]
DEFAULT_TMPFS_OPTIONS = "rw,noexec,nosuid,size=64m,mode=1777"

# The hardening profile: read-only root, a /tmp tmpfs, every capability dropped, no-new-privileges (kept in
# any security_opt list, _rules.merged_security_opt) and bounded json-file logs.
HARDENING = {
    "read_only": True,
    "tmpfs": ["/tmp"],
    "cap_drop": ["ALL"],
    "cap_add": [],
    "security_opt": [_rules.NO_NEW_PRIVILEGES],
    "log": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
}


# what a Field may declare besides name, type and doc, with its default
FIELD_ATTRS = {"default": None, "elements": None, "choices": None, "options": None, "required": False}
FIELD_ATTRS.update(normalise=None, sdk=None, secret=False, no_log=None)


class Field:
    """One option of a service: ``normalise(params, ctx)`` returns its entries of the spec (None: not part of
    the container spec), ``sdk(spec, ctx)`` its create() keywords."""

    def __init__(self, name, type, doc, **attrs):
        unknown = set(attrs) - set(FIELD_ATTRS)
        if unknown:
            raise TypeError("unknown field attributes %s" % ", ".join(sorted(unknown)))
        self.name, self.type, self.doc = name, type, doc
        for key, default in FIELD_ATTRS.items():
            setattr(self, key, attrs.get(key, default))

    def arg(self):
        out = {"type": self.type}
        for key in ("default", "elements", "choices", "options", "no_log"):
            value = getattr(self, key)
            if value is not None:
                out[key] = _copy(value)
        if self.required:
            out["required"] = True
        return out


def _copy(value):
    return json.loads(json.dumps(value))


# -- normalisers and SDK keywords ----------------------------------------------------------
def _take(key, out=None, convert=None):
    """``{out or key: convert(mapping[key])}``: one field of the parameters (a normaliser) or of the spec
    (SDK keywords), renamed and converted; a None keyword is left out of create()."""

    def take(mapping, ctx):
        value = mapping.get(key)
        return {out or key: convert(value) if convert else value}

    return take


def _true_only(key):
    """A bool that enters the spec (and its hash), and create(), only when true: adding the option changed
    no stored hash, and older stored specs without it still create the same container."""

    def take(mapping, ctx):
        return {key: True} if mapping.get(key) else {}

    return take


def _sorted_dict(key):
    return _take(key, convert=lambda value: dict(sorted((value or {}).items())))


def _sorted_list(key):
    return _take(key, convert=lambda value: sorted(value or []))


def _network(item):
    out = {"name": item["name"], "aliases": sorted(item.get("aliases") or [])}
    if item.get("internal"):  # only when set: the specs (and hashes) of ordinary networks stay as they were
        out["internal"] = True
    return out


def _networks(params, ctx):
    return {"networks": [_network(n) for n in params["networks"]]}


def _ports(params, ctx):
    ports = {}
    for item in params.get("published_ports") or []:
        key, binding = parse_port(item, params["publish_address"])
        ports[key] = [binding[0], binding[1]]
    return {"ports": dict(sorted(ports.items()))}


def _resources(params, ctx):
    res = params["resources"]
    return {"memory": str(res["memory"]), "cpus": float(res["cpus"]), "pids": int(res["pids"])}


def _healthcheck(params, ctx):
    hc = params.get("healthcheck")
    if not hc:
        return {"healthcheck": None}
    test = hc["test"]
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    return {
        "healthcheck": {
            "Test": list(test),
            "Interval": duration_ns(hc.get("interval") or "30s", "healthcheck.interval"),
            "Timeout": duration_ns(hc.get("timeout") or "30s", "healthcheck.timeout"),
            "Retries": int(hc.get("retries") or 3),
            "StartPeriod": duration_ns(hc.get("start_period") or 0, "healthcheck.start_period"),
        }
    }


def _log(params, ctx):
    log = params.get("log") or {}
    options = log.get("options") or HARDENING["log"]["options"]
    return {
        "log": {
            "driver": log.get("driver") or HARDENING["log"]["driver"],
            "options": {k: str(v) for k, v in sorted(options.items())},
        }
    }


def _or_none(value):
    return value or None


def _secret_mounts(spec, ctx):
    return {
        "volumes": [
            "%s:/run/secrets/%s:ro" % (os.path.join(ctx["secrets_dir"], name), name) for name in spec["secrets"]
        ]
    }


def _tmpfs(spec, ctx):
    tmpfs = {}
    for item in spec["tmpfs"]:
        path, _sep, opts = item.partition(":")
        tmpfs[path] = opts or DEFAULT_TMPFS_OPTIONS
    return {"tmpfs": tmpfs or None}


def _port_bindings(spec, ctx):
    ports = {key: (ip, host) if host else (ip,) for key, (ip, host) in spec["ports"].items()}
    return {"ports": ports or None}


def _limits(spec, ctx):
    return {"mem_limit": spec["memory"], "nano_cpus": int(spec["cpus"] * 1e9), "pids_limit": spec["pids"]}


def _health_kw(spec, ctx):
    hc = spec["healthcheck"]
    if not hc:
        return {}
    return {
        "healthcheck": {
            "test": hc["Test"],
            "interval": hc["Interval"],
            "timeout": hc["Timeout"],
            "retries": hc["Retries"],
            "start_period": hc["StartPeriod"],
        }
    }


def _log_config(spec, ctx):
    return {"log_config": {"Type": spec["log"]["driver"], "Config": spec["log"]["options"]}}


def _first_network(spec, ctx):
    networks = spec["networks"]
    return {"network": networks[0]["name"] if networks else None}


def _hardening_list(name, doc, sdk):
    """A list option of the hardening profile: its default is the profile's, its value sorted in the spec."""
    return Field(name, "list", doc, elements="str", default=HARDENING[name], normalise=_sorted_list(name), sdk=sdk)


# -- the table ---------------------------------------------------------------------------
NETWORK_OPTIONS = dict(
    name=dict(type="str", required=True),
    aliases=dict(type="list", elements="str"),
    internal=dict(type="bool", default=False),
)
RESOURCE_OPTIONS = dict(
    memory=dict(type="str", required=True),
    cpus=dict(type="float", required=True),
    pids=dict(type="int", required=True),
)
HEALTHCHECK_OPTIONS = dict(
    test=dict(type="raw", required=True),
    interval=dict(type="str", default="30s"),
    timeout=dict(type="str", default="30s"),
    retries=dict(type="int", default=3),
    start_period=dict(type="str", default="0s"),
)
LOG_OPTIONS = dict(driver=dict(type="str", default="json-file"), options=dict(type="dict"))

FIELDS = [
    Field("strategy", "str", "How the service is rolled out.", default=DEFAULT_STRATEGY, choices=STRATEGIES),
    Field("image", "str", "Image reference.", normalise=_take("image"), sdk=_take("image_id", "image")),
    Field("pull", "str", "Pull policy.", default="missing", choices=["always", "missing", "never"]),
    Field("command", "list", "Command.", elements="str", normalise=_take("command"), sdk=_take("command")),
    Field("entrypoint", "list", "Entrypoint.", elements="str", normalise=_take("entrypoint"), sdk=_take("entrypoint")),
    Field("env", "dict", "Environment.", normalise=_sorted_dict("env"), sdk=_take("env", "environment")),
    Field("volumes", "list", "Volumes.", elements="str", normalise=_sorted_list("volumes"), sdk=_take("volumes")),
    Field("secrets", "list", "Secret names.", elements="str", no_log=False, secret=True, sdk=_secret_mounts),
    Field(
        "networks",
        "list",
        "Networks.",
        elements="dict",
        options=NETWORK_OPTIONS,
        normalise=_networks,
        sdk=_first_network,
    ),
    Field("published_ports", "list", "Published ports.", elements="str", normalise=_ports, sdk=_port_bindings),
    Field("publish_address", "str", "Host address of published ports.", default="127.0.0.1"),
    Field("labels", "dict", "Extra labels.", normalise=_sorted_dict("labels")),  # labels= comes from the engine
    Field("user", "str", "User.", normalise=_take("user"), sdk=_take("user", convert=_or_none)),
    Field(
        "read_only",
        "bool",
        "Read-only root.",
        default=HARDENING["read_only"],
        normalise=_take("read_only"),
        sdk=_take("read_only"),
    ),
    Field(
        "init",
        "bool",
        "Run an init process as PID 1.",
        default=False,
        normalise=_true_only("init"),
        sdk=_true_only("init"),
    ),
    _hardening_list("tmpfs", "Tmpfs mounts.", _tmpfs),
    _hardening_list("cap_drop", "Capabilities dropped.", _take("cap_drop", convert=_or_none)),
    _hardening_list("cap_add", "Capabilities added.", _take("cap_add", convert=_or_none)),
    # a service's own list never drops no-new-privileges (it replaces the default list)
    Field(
        "security_opt",
        "list",
        "Security options.",
        elements="str",
        default=HARDENING["security_opt"],
        normalise=_take("security_opt", convert=lambda v: sorted(_rules.merged_security_opt(v))),
        sdk=_take("security_opt", convert=_or_none),
    ),
    Field("resources", "dict", "Resource limits.", options=RESOURCE_OPTIONS, normalise=_resources, sdk=_limits),
    Field("healthcheck", "dict", "Healthcheck.", options=HEALTHCHECK_OPTIONS, normalise=_healthcheck, sdk=_health_kw),
    Field(
        "restart_policy",
        "str",
        "Restart policy.",
        default="unless-stopped",
        choices=["no", "on-failure", "unless-stopped", "always"],
        normalise=_take("restart_policy"),
        sdk=_take("restart_policy", convert=lambda v: {"Name": v}),
    ),
    Field("stop_timeout", "int", "Stop timeout.", default=10, normalise=_take("stop_timeout")),  # used at stop
    Field("log", "dict", "Log driver.", options=LOG_OPTIONS, normalise=_log, sdk=_log_config),
]
BY_NAME = {f.name: f for f in FIELDS}


# -- what is derived from it --------------------------------------------------------------
def argument_spec():
    """The table's part of an argument spec (rollout's)."""
    return {f.name: f.arg() for f in FIELDS}


def service_params(**options):
    """Module options with the table's defaults; ``options`` override them."""
    params = {f.name: _copy(f.default) if f.default is not None else None for f in FIELDS}
    params.update(options)
    return params


def desired_spec(params, image_id, secret_fps):
    """The normalised, hashable description of the container a service should run.

    ``secret_fps`` maps secret name -> keyed fingerprint of its content (never the value).
    """
    spec = {"v": SPEC_VERSION, "image_id": image_id, "secrets": dict(sorted(secret_fps.items()))}
    for field in FIELDS:
        if field.normalise is not None:
            spec.update(field.normalise(params, None))
    return spec


def spec_hash(spec):
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def masked_spec(spec):
    """The spec for diffs, returns and release history: secret fingerprints replaced by a mask."""
    if spec is None:
        return None
    out = dict(spec)
    for field in FIELDS:
        if field.secret:
            out[field.name] = dict.fromkeys(spec.get(field.name) or {}, MASK)
    return out


def diff_spec(spec, before):
    """A spec for diff output: secrets masked, a changed secret shown as changed (never its value)."""
    if not spec or "secrets" not in spec:
        return dict(spec or {})
    out = masked_spec(spec)
    if before is not None:
        for field in FIELDS:
            if not field.secret:
                continue
            for name, fp in spec[field.name].items():
                if before.get(field.name, {}).get(name) not in (None, fp):
                    out[field.name][name] = MASK + " (changed)"
    return out


def create_kwargs(spec, name, labels, secrets_dir):
    """docker-py containers.create() keyword arguments for ``spec`` (a stored spec as well)."""
    ctx = {"secrets_dir": secrets_dir}
    kwargs = {"name": name, "labels": labels, "detach": True}
    for field in FIELDS:
        if field.sdk is None:
            continue
        for key, value in field.sdk(spec, ctx).items():
            if isinstance(value, list) and isinstance(kwargs.get(key), list):
                kwargs[key] = kwargs[key] + value
            else:
                kwargs[key] = value
    if not kwargs.get("volumes"):
        kwargs.pop("volumes", None)
    return {k: v for k, v in kwargs.items() if v is not None}
