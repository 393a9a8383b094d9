#!/usr/bin/env python3
"""Generate docs/reference/ from the collection's own documentation.

Modules and plugins: ``ansible-doc --json`` (so the reference is exactly what
``ansible-doc`` shows). Roles: their ``meta/argument_specs.yml``. Ansible's
markup (``O(...)``, ``M(...)``, ``V(...)``...) is rendered by antsibull-docs-parser,
the parser ansible-doc and the docsite use, in strict mode: a malformed macro
fails the run, naming the plugin. The output is committed; ``--check``
regenerates into memory and fails when a committed page is stale, when
ansible-doc printed a warning or when raw markup is left, which is what CI runs.

Usage: gen_docs.py [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from antsibull_docs_parser import dom
from antsibull_docs_parser.md import to_md
from antsibull_docs_parser.parser import Context, parse

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "reference"
BIN = ROOT / ".venv" / "bin"
PLUGIN_TYPES = ("module", "lookup", "filter", "callback")
# A macro left unrendered in a page: what --check refuses.
RAW_MARKUP = re.compile(r"(?<![\w`])(?:RV|[BCEILMOPUV])\((?!\))")


def text(value, ctx: Context) -> str:
    """One table cell or list item of Markdown from Ansible markup (paragraphs joined by a space)."""
    if value is None:
        return ""
    try:
        paragraphs = parse(value if isinstance(value, list) else str(value), ctx, strict=True, errors="exception")
    except ValueError as exc:
        where = ctx.current_plugin.fqcn + (f" (entry point {ctx.role_entrypoint})" if ctx.role_entrypoint else "")
        sys.exit(f"{where}: {exc}")
    out = to_md(paragraphs, current_plugin=ctx.current_plugin, par_sep=" ")
    return out.replace("|", "\\|").replace("\n", " ")


def option_rows(options: dict, ctx: Context, prefix: str = "") -> list[str]:
    rows = []
    for name, spec in sorted(options.items()):
        kind = spec.get("type", "str")
        if spec.get("elements"):
            kind += f" of {spec['elements']}"
        default = spec.get("default")
        flags = []
        if spec.get("required"):
            flags.append("**required**")
        if spec.get("choices"):
            flags.append("choices: " + ", ".join(f"`{c}`" for c in spec["choices"]))
        if default not in (None, "", [], {}):
            flags.append(f"default: `{json.dumps(default) if not isinstance(default, str) else default}`")
        desc = text(spec.get("description"), ctx)
        rows.append(f"| `{prefix}{name}` | {kind} | {'; '.join(flags)} | {desc} |")
        for sub in ("suboptions", "options", "contains"):
            if spec.get(sub):
                rows += option_rows(spec[sub], ctx, prefix=f"{prefix}{name}.")
    return rows


def table(title: str, options: dict, ctx: Context, header=("name", "type", "constraints", "description")) -> list[str]:
    if not options:
        return []
    return [
        f"## {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|---|---|",
        *option_rows(options, ctx),
        "",
    ]


def plugin_page(fqcn: str, kind: str, data: dict) -> str:
    doc = data["doc"]
    ctx = Context(current_plugin=dom.PluginIdentifier(fqcn=fqcn, type=kind))
    lines = [f"# {fqcn}", "", f"{text(doc.get('short_description'), ctx)}", ""]
    lines += [f"- {text(d, ctx)}" for d in doc.get("description", [])] + [""]
    if doc.get("requirements"):
        lines += ["**Requirements:** " + ", ".join(text(r, ctx) for r in doc["requirements"]), ""]
    lines += table("Options", doc.get("options") or {}, ctx)
    attrs = doc.get("attributes") or {}
    if attrs:
        lines += ["## Attributes", "", "| attribute | support | details |", "|---|---|---|"]
        for name, spec in sorted(attrs.items()):
            lines.append(f"| {name} | {spec.get('support')} | {text(spec.get('details'), ctx)} |")
        lines.append("")
    if data.get("examples"):
        lines += ["## Examples", "", "```yaml", data["examples"].strip("\n"), "```", ""]
    ret = data.get("return") or {}
    if ret:
        lines += table("Return values", ret, ctx, header=("key", "type", "returned", "description"))
    return "\n".join(lines).rstrip() + "\n"


def role_page(role: Path) -> str:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    role_id = dom.PluginIdentifier(fqcn=f"tradeops.stack.{role.name}", type="role")
    lines = [f"# Role tradeops.stack.{role.name}", ""]
    seen: dict[str, str] = {}  # entry points sharing one option set (a YAML anchor) list it once
    for entry, spec in specs.items():
        ctx = Context(current_plugin=role_id, role_entrypoint=entry)
        lines += [f"## Entry point `{entry}`", "", text(spec.get("short_description"), ctx), ""]
        lines += [f"- {text(d, ctx)}" for d in spec.get("description", []) if d] + [""]
        if not spec.get("options"):
            continue
        key = json.dumps(spec["options"], sort_keys=True, default=str)
        if key in seen:
            lines += [f"Variables: the same as entry point `{seen[key]}`.", ""]
        else:
            seen[key] = entry
            lines += table("Variables", spec["options"], ctx)[2:]
    return "\n".join(lines).rstrip() + "\n"


def ansible_doc(kind: str, names: list[str]) -> tuple[dict, str]:
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections")
    )
    res = subprocess.run(
        [BIN / "ansible-doc", "-t", kind, "--json", *names], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if res.returncode != 0:
        sys.exit(f"ansible-doc -t {kind} failed:\n{res.stderr}")
    return json.loads(res.stdout), res.stderr


def pages() -> tuple[dict[str, str], list[str]]:
    out, warnings = {}, []
    for kind in PLUGIN_TYPES:
        # the names ansible-doc knows (a filter file such as stack.py holds several filters,
        # each documented in its own YAML file), not the file names
        listed, stderr = ansible_doc(kind, ["-l", "tradeops.stack"])
        warnings += [line for line in stderr.splitlines() if "WARNING" in line or "ERROR" in line]
        names = sorted(listed)
        if not names:
            continue
        docs, stderr = ansible_doc(kind, names)
        warnings += [line for line in stderr.splitlines() if "WARNING" in line or "ERROR" in line]
        for fqcn, data in docs.items():
            if data.get("doc"):
                out[f"{kind}_{fqcn.split('.')[-1]}.md"] = plugin_page(fqcn, kind, data)
    for role in sorted((ROOT / "roles").iterdir()):
        if (role / "meta" / "argument_specs.yml").exists():
            out[f"role_{role.name}.md"] = role_page(role)
    index = ["# Reference", "", "Generated by `tests/tools/gen_docs.py` from the collection's own documentation.", ""]
    index += [f"- [{name[:-3]}]({name})" for name in sorted(out)]
    out["README.md"] = "\n".join(index) + "\n"
    return out, warnings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail when docs/reference/ is stale or ansible-doc warns")
    args = ap.parse_args()
    wanted, warnings = pages()
    if warnings:
        print("ansible-doc printed warnings:\n" + "\n".join(warnings), file=sys.stderr)
        return 1
    raw = sorted(f"{name}: {m.group(0)}..." for name, page in wanted.items() for m in RAW_MARKUP.finditer(page))
    if raw:
        print("raw Ansible markup left in docs/reference/:\n" + "\n".join(raw), file=sys.stderr)
        return 1
    existing = {p.name: p.read_text() for p in OUT.glob("*.md")} if OUT.exists() else {}
    if args.check:
        stale = sorted(n for n in set(wanted) | set(existing) if wanted.get(n) != existing.get(n))
        if stale:
            print("docs/reference/ is stale, run tests/tools/gen_docs.py: " + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"docs/reference/: {len(wanted)} pages up to date")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name in set(existing) - set(wanted):
        (OUT / name).unlink()
    for name, content in wanted.items():
        (OUT / name).write_text(content)
    print(f"wrote {len(wanted)} pages to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
