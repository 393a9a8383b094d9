"""Every role's meta/argument_specs.yml documents exactly its defaults/main.yml.

Generic over ``roles/*/``: for each role with defaults, the options of its entry
points are the variables of ``defaults/main.yml`` (no more, no fewer), each with
a ``type`` the default value satisfies and a ``default`` equal to the value in
``defaults/main.yml``; every entry point has a ``short_description`` and a
``description``. Options absent from ``defaults/main.yml`` are inputs (required, or read
with ``default()``); only inputs outside the role's prefix may document a default.
Templated defaults (``"{{ ... }}"``) must match verbatim; their type is checked
at run time by the role's argument validation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_DIRS = sorted(d for d in ROLES.iterdir() if d.is_dir()) if ROLES.is_dir() else []

TYPES = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def templated(value) -> bool:
    return isinstance(value, str) and "{{" in value


def type_ok(value, spec: dict) -> bool:
    kind = spec.get("type", "str")
    if value is None or templated(value) or kind in ("raw", "any"):
        return True
    if kind not in TYPES:
        return True  # a callable or an unusual type: left to ansible-core
    if kind in ("int", "float") and isinstance(value, bool):
        return False
    if not isinstance(value, TYPES[kind]):
        return False
    if kind == "list" and "elements" in spec:
        return all(type_ok(v, {"type": spec["elements"]}) for v in value)
    return True


def entry_points(role: Path) -> dict:
    path = role / "meta" / "argument_specs.yml"
    return load(path).get("argument_specs", {}) if path.exists() else {}


@pytest.mark.parametrize("role", ROLE_DIRS, ids=[d.name for d in ROLE_DIRS])
def test_argument_specs_document_the_defaults(role: Path):
    defaults_file = role / "defaults" / "main.yml"
    defaults = load(defaults_file) if defaults_file.exists() else {}
    specs = entry_points(role)
    assert specs or not defaults, f"{role.name}: defaults/main.yml exists but meta/argument_specs.yml is missing"
    if not specs:
        return

    problems: list[str] = []
    for name, entry in specs.items():
        for key in ("short_description", "description"):
            if not entry.get(key):
                problems.append(f"entry point {name!r} has no {key}")

    options: dict[str, dict] = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})

    for var in sorted(set(defaults) - set(options)):
        problems.append(f"{var} is in defaults/main.yml but not documented in meta/argument_specs.yml")
    for var in sorted(set(options) - set(defaults)):
        # an input without a default (required, or read with `default()` in the role) is fine;
        # a documented default of the role's own prefix that defaults/main.yml lacks is drift.
        # Inventory inputs of another prefix (the stack role's tradeops_*) may document the
        # value the role's `default()` gives them.
        if "default" in options[var] and var.startswith(role.name + "_"):
            problems.append(f"{var}: argument spec documents a default that defaults/main.yml does not have")

    for var in sorted(set(defaults) & set(options)):
        spec, value = options[var], defaults[var]
        if not spec.get("description"):
            problems.append(f"{var}: no description")
        if "type" not in spec:
            problems.append(f"{var}: no type")
        if "default" not in spec and value is not None:
            problems.append(f"{var}: argument spec has no default, defaults/main.yml has {value!r}")
        elif spec.get("default") != value:
            problems.append(f"{var}: default differs: spec {spec.get('default')!r} != defaults {value!r}")
        if not type_ok(value, spec):
            problems.append(f"{var}: default {value!r} is not of type {spec.get('type', 'str')}")
        if "choices" in spec and not templated(value) and value not in spec["choices"]:
            problems.append(f"{var}: default {value!r} is not one of {spec['choices']}")
        if spec.get("required") and "default" in spec:
            problems.append(f"{var}: required options take no default")

    assert not problems, f"role {role.name}:\n  " + "\n  ".join(problems)


def test_roles_are_found():
    assert ROLE_DIRS, f"no roles under {ROLES}"


def test_type_check_catches_mismatches():
    assert type_ok("10m", {"type": "str"})
    assert not type_ok(5, {"type": "str"})
    assert not type_ok(True, {"type": "int"})
    assert not type_ok(["a", 1], {"type": "list", "elements": "str"})
    assert type_ok("{{ x }}", {"type": "bool"})
