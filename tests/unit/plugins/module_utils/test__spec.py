"""The service spec table: what is derived from it, and that rollout's documentation and the stack role's
schema agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.tradeops.stack.plugins.module_utils import _spec
from ansible_collections.tradeops.stack.plugins.modules import rollout

ROOT = Path(__file__).resolve().parents[4]
ROLE_SCHEMA = ROOT / "roles" / "stack" / "meta" / "argument_specs.yml"
ROLLOUT_TASK = ROOT / "roles" / "stack" / "tasks" / "rollout_service.yml"

# table fields the stack description does not offer (the hardening profile's cap_drop is not negotiable per
# service; the publish address is stack-wide) and description fields that are not rollout options
NOT_IN_ROLE = {"cap_drop", "publish_address"}
EMPTY = {"list": [], "dict": {}, "str": None}


def params(**kw):
    base = _spec.service_params(
        image="t/app:1",
        env={"B": "2", "A": "1"},
        volumes=[],
        networks=[{"name": "net", "aliases": []}],
        published_ports=["8080:8000"],
        labels={},
        user="10001",
        resources={"memory": "64m", "cpus": 0.5, "pids": 64},
        healthcheck={
            "test": "wget -q localhost",
            "interval": "2s",
            "timeout": "1s",
            "retries": 3,
            "start_period": "5s",
        },
    )
    base.update(kw)
    return base


# -- hashes and create arguments are what they were before the table (no service rolls) -------------------
def test_the_hash_of_a_known_spec_did_not_change():
    assert _spec.spec_hash(_spec.desired_spec(params(), "sha256:1", {"pw": "fp1"})) == "d1bf64c3319e691f77781316"
    other = params(
        healthcheck=None,
        log={"driver": "local", "options": {"max-size": "1m"}},
        secrets=["pw"],
        command=["a"],
        entrypoint=["b"],
        volumes=["v:/d:ro"],
        labels={"x": "1"},
        tmpfs=["/run:size=1m"],
        cap_add=["NET_BIND_SERVICE"],
        security_opt=["apparmor=x"],
        networks=[{"name": "n1", "aliases": ["b", "a"]}, {"name": "n2"}],
        published_ports=["1.2.3.4:80:8080/udp", "9000"],
    )
    spec = _spec.desired_spec(other, "sha256:2", {})
    assert _spec.spec_hash(spec) == "050486a257e344ea456821f2"
    assert _spec.create_kwargs(spec, "nm", {"l": "1"}, "/sec") == {
        "cap_add": ["NET_BIND_SERVICE"],
        "cap_drop": ["ALL"],
        "command": ["a"],
        "detach": True,
        "entrypoint": ["b"],
        "environment": {"A": "1", "B": "2"},
        "image": "sha256:2",
        "labels": {"l": "1"},
        "log_config": {"Config": {"max-size": "1m"}, "Type": "local"},
        "mem_limit": "64m",
        "name": "nm",
        "nano_cpus": 500000000,
        "network": "n1",
        "pids_limit": 64,
        "ports": {"8080/udp": ("1.2.3.4", 80), "9000/tcp": ("127.0.0.1",)},
        "read_only": True,
        "restart_policy": {"Name": "unless-stopped"},
        "security_opt": ["apparmor=x", "no-new-privileges:true"],
        "tmpfs": {"/run": "size=1m"},
        "user": "10001",
        "volumes": ["v:/d:ro"],
    }


def test_create_arguments_mount_secrets_and_carry_the_healthcheck():
    spec = _spec.desired_spec(params(), "sha256:1", {"pw": "fp1"})
    kwargs = _spec.create_kwargs(spec, "nm", {}, "/sec")
    assert kwargs["volumes"] == ["/sec/pw:/run/secrets/pw:ro"]
    assert kwargs["healthcheck"] == {
        "test": ["CMD-SHELL", "wget -q localhost"],
        "interval": 2 * 10**9,
        "timeout": 10**9,
        "retries": 3,
        "start_period": 5 * 10**9,
    }
    assert kwargs["tmpfs"] == {"/tmp": _spec.DEFAULT_TMPFS_OPTIONS}
    assert "volumes" not in _spec.create_kwargs(_spec.desired_spec(params(), "sha256:1", {}), "nm", {}, "/sec")


def test_init_reaches_the_engine_only_when_asked_and_leaves_other_hashes_alone():
    plain = _spec.desired_spec(params(), "sha256:1", {})
    with_init = _spec.desired_spec(params(init=True), "sha256:1", {})
    assert "init" not in plain and with_init["init"] is True
    assert _spec.spec_hash(plain) == _spec.spec_hash(_spec.desired_spec(params(init=False), "sha256:1", {}))
    assert _spec.spec_hash(with_init) != _spec.spec_hash(plain)
    assert _spec.create_kwargs(with_init, "nm", {}, "/sec")["init"] is True
    assert "init" not in _spec.create_kwargs(plain, "nm", {}, "/sec")


def test_masking_covers_every_secret_field():
    spec = _spec.desired_spec(params(), "sha256:1", {"pw": "fp-new"})
    before = _spec.desired_spec(params(), "sha256:1", {"pw": "fp-old"})
    assert _spec.masked_spec(spec)["secrets"] == {"pw": _spec.MASK}
    assert _spec.diff_spec(spec, before)["secrets"] == {"pw": _spec.MASK + " (changed)"}
    assert [f.name for f in _spec.FIELDS if f.secret] == ["secrets"]


def test_defaults_are_the_hardening_profile():
    defaults = _spec.service_params()
    for key in ("read_only", "tmpfs", "cap_drop", "cap_add", "security_opt"):
        assert defaults[key] == _spec.HARDENING[key]
    defaults["tmpfs"].append("/x")  # a copy, never the profile itself
    assert _spec.HARDENING["tmpfs"] == ["/tmp"]
    assert defaults["strategy"] == _spec.DEFAULT_STRATEGY == "start_first"


# -- the documentation and the role schema cannot disagree with the table -------------------------------
def _documented():
    return yaml.safe_load(rollout.DOCUMENTATION)["options"]


def _same_shape(doc, arg, where):
    for key in ("type", "elements", "choices", "default"):
        assert doc.get(key) == arg.get(key), "%s: %s is %r in the documentation, %r in the table" % (
            where,
            key,
            doc.get(key),
            arg.get(key),
        )
    assert bool(doc.get("required")) == bool(arg.get("required")), where
    if arg.get("options") or doc.get("suboptions"):
        assert set(doc.get("suboptions") or {}) == set(arg.get("options") or {}), where
        for name, sub in arg["options"].items():
            _same_shape(doc["suboptions"][name], sub, "%s.%s" % (where, name))


@pytest.mark.parametrize("field", _spec.FIELDS, ids=lambda f: f.name)
def test_rollout_documents_each_field_as_the_table_declares_it(field):
    documented = _documented()
    assert field.name in documented
    _same_shape(documented[field.name], field.arg(), field.name)


def test_rollout_takes_its_container_options_from_the_table():
    spec = rollout.argument_spec()
    for name, arg in _spec.argument_spec().items():
        assert spec[name] == arg


def _role_services():
    schema = yaml.safe_load(ROLE_SCHEMA.read_text())
    return schema["argument_specs"]["description"]["options"]["tradeops_stack_services"]["options"]


def _comparable(value):
    return sorted(value) if isinstance(value, list) else value


def _agrees(role, arg, where):
    for key in ("type", "elements", "choices"):
        assert _comparable(role.get(key)) == _comparable(arg.get(key)), "%s: %s is %r in the role, %r in the table" % (
            where,
            key,
            role.get(key),
            arg.get(key),
        )
    # the role may leave a default to the module, or state the empty value of the type
    if "default" in role:
        assert role["default"] in (arg.get("default"), EMPTY.get(arg["type"])), where
    for name, sub in (role.get("options") or {}).items():
        assert name in (arg.get("options") or {}), "%s.%s is not in the table" % (where, name)
        _agrees(sub, arg["options"][name], "%s.%s" % (where, name))


@pytest.mark.parametrize("field", _spec.FIELDS, ids=lambda f: f.name)
def test_the_stack_role_schema_agrees_with_the_table(field):
    services = _role_services()
    if field.name in NOT_IN_ROLE:
        assert field.name not in services
        return
    _agrees(services[field.name], field.arg(), field.name)


def test_the_role_passes_the_whole_service_definition_to_rollout():
    """The table's fields reach rollout through ``definition`` (plugins/action/rollout.py), none by name."""
    tasks = yaml.safe_load(ROLLOUT_TASK.read_text())
    task = next(t for t in tasks if "tradeops.stack.rollout" in t)["tradeops.stack.rollout"]
    assert task["definition"] == "{{ _svc }}"
    # what the role adds to a field stays explicit: the stack's pull policy, the flags mount, the networks
    assert set(task) & set(_spec.BY_NAME) == {"pull", "volumes", "networks", "publish_address"}


def test_spec_hash_is_stable_and_sensitive():
    a = _spec.desired_spec(params(), "sha256:1", {"pw": "fp1"})
    b = _spec.desired_spec(params(env={"A": "1", "B": "2"}), "sha256:1", {"pw": "fp1"})
    assert _spec.spec_hash(a) == _spec.spec_hash(b)  # dict order does not matter
    assert _spec.spec_hash(a) != _spec.spec_hash(_spec.desired_spec(params(), "sha256:2", {"pw": "fp1"}))  # image id
    assert _spec.spec_hash(a) != _spec.spec_hash(
        _spec.desired_spec(params(), "sha256:1", {"pw": "fp2"})
    )  # secret content
    assert a["ports"] == {"8000/tcp": ["127.0.0.1", 8080]}
    assert a["healthcheck"]["StartPeriod"] == 5 * 10**9 and a["healthcheck"]["Test"] == [
        "CMD-SHELL",
        "wget -q localhost",
    ]
    assert a["log"] == {"driver": "json-file", "options": {"max-file": "3", "max-size": "10m"}}


def test_a_services_own_security_opt_keeps_no_new_privileges():
    spec = _spec.desired_spec(params(security_opt=["apparmor=tradeops-bot"]), "sha256:1", {})
    assert spec["security_opt"] == ["apparmor=tradeops-bot", "no-new-privileges:true"]
    assert _spec.desired_spec(params(), "sha256:1", {})["security_opt"] == ["no-new-privileges:true"]


def test_masked_spec_and_diff_never_show_fingerprints():
    spec = _spec.desired_spec(params(), "sha256:1", {"pw": "fp-new"})
    before = _spec.desired_spec(params(), "sha256:1", {"pw": "fp-old"})
    out = _spec.diff_spec(spec, before)
    assert out["secrets"] == {"pw": _spec.MASK + " (changed)"}
    assert "fp-new" not in repr(out) and "fp-new" in repr(spec)
    assert _spec.diff_spec(before, None)["secrets"] == {"pw": _spec.MASK}
