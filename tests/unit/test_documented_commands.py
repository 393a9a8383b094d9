"""Every documented ansible-playbook command names its inventory and keeps its text whole.

The commands are read from the README, docs/, the playbooks' headers and the roles' messages,
split as a shell splits them, and each ``-e`` argument goes through Ansible's own parser:
``-e tradeops_deploy_reason="bot 1.4.3"`` reaches Ansible as ``tradeops_deploy_reason=bot 1.4.3``,
which key=value parsing cuts at the space, so the audit log would record ``bot``.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import pytest
from ansible.parsing.splitter import parse_kv

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "playbooks").glob("*.yml"))]
SOURCES += sorted((ROOT / "roles").glob("*/tasks/*.yml")) + sorted((ROOT / "roles").glob("*/README.md"))
COMMAND = re.compile(r"ansible-playbook (tradeops\.stack\.[a-z_<>]+)([^`|\n]*)")
PLAYBOOKS = {p.stem for p in (ROOT / "playbooks").glob("*.yml")}


def commands():
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                rest = re.sub(r"\{\{.*?\}\}", "X", match.group(2))  # a role message's template
                rest = re.sub(r"'\s*~.*", " X", rest)  # a command built by Jinja concatenation
                rest = re.sub(r"\[(-[^\]]*)\]", r"\1", rest.split(";")[0])  # [-e optional=<x>]
                found.append(("%s:%d" % (path.relative_to(ROOT), number), match.group(1), rest))
    return found


COMMANDS = commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("where", "playbook", "rest"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command(where, playbook, rest):
    name = playbook.split(".")[-1]
    assert name == "<name>" or name in PLAYBOOKS, "%s: no playbook %s" % (where, playbook)
    args = shlex.split(rest, comments=True)
    assert "-i" in args, "%s: `ansible-playbook %s` does not name its inventory (-i)" % (where, playbook)
    for flag, value in itertools.pairwise(args):
        if flag != "-e":
            continue
        if value.startswith("{"):
            json.loads(value)
            continue
        if value.startswith("@"):
            continue
        parsed = parse_kv(value)
        key, _, text = value.partition("=")
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1]
        assert parsed == {key: text}, (
            "%s: -e %r reaches Ansible as %r; quote the value inside the argument, "
            "for example -e '%s=\"%s\"'" % (where, value, parsed, key, text)
        )
