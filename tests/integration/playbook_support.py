"""Shared helpers of the playbook tests, the fault suite and the playbook benchmarks (no tests here).

From test_playbooks.py: the images of the bot versions (``GOOD``, ``OLDER``, ``BROKEN``), the bot services
(``BOTS``), ``Stack`` (a stack of its own, t-pl<random>, deployed by the collection's playbooks on the local
inventory), ``remove_stack``, ``docker``, ``free_port``, ``image_id`` and ``changed_count``. From
test_playbooks_no_data_lost.py: the paper trades in PostgreSQL, counted and checksummed up to a point in time
(``checkpoint``, ``rows_up_to``, ``rows_after``, ``now``).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from conftest import ROOT, run_playbook

PLAYBOOKS = ROOT / "playbooks"
GOOD, OLDER, BROKEN = "tradeops/bot:1.0.1", "tradeops/bot:1.0.0", "tradeops/bot:1.1.0"
BOTS = ("market_data", "signal_engine", "risk_manager", "paper_execution", "db_writer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout.strip()


def remove_stack(name: str, root: Path) -> None:
    ids = docker("ps", "-aq", "--filter", f"label=tradeops.stack={name}").split()
    ids += docker("ps", "-aq", "--filter", f"name=^{name}-").split()
    if ids:
        docker("rm", "-f", *sorted(set(ids)))
    for vol in docker("volume", "ls", "-q", "--filter", f"name=^{name}-").split():
        docker("volume", "rm", vol)
    for net in docker("network", "ls", "--format", "{{.Name}}", "--filter", f"label=tradeops.stack={name}").split():
        docker("network", "rm", net)
    shutil.rmtree(root, ignore_errors=True)


class Stack:
    def __init__(self) -> None:
        self.name = "t-pl" + secrets.token_hex(3)
        self.root = Path("/tmp") / self.name
        self.state = self.root / "state"
        self.vars = {
            "tradeops_stack_name": self.name,
            "tradeops_state_root": str(self.state),
            "tradeops_proxy_port": free_port(),
            "tradeops_broker_port": free_port(),
            "tradeops_broker_emulator": bool(docker("images", "-q", "tradeops/capital-emulator:1.0")),
            "tradeops_monitoring_enabled": False,
            "tradeops_prometheus_url": "",
        }

    def play(self, name: str, env: dict[str, str] | None = None, **extra):
        return run_playbook(PLAYBOOKS / f"{name}.yml", extra_vars={**self.vars, **extra}, env=env, timeout=1800)

    @property
    def home(self) -> Path:
        return self.state / self.name

    def manifest(self, which: str = "current") -> dict:
        return json.loads((self.home / "manifests" / f"{which}.json").read_text())

    def running(self) -> dict[str, dict]:
        """service -> {name, image, started} of the running service containers."""
        out = {}
        for line in docker(
            "ps",
            "--filter",
            f"label=tradeops.stack={self.name}",
            "--format",
            '{{.Label "tradeops.service"}}|{{.Label "tradeops.role"}}|{{.Names}}|{{.Image}}',
        ).splitlines():
            service, role, name, _ = line.split("|")
            if role in ("", "service"):
                started, iid = docker("inspect", "-f", "{{.State.StartedAt}} {{.Image}}", name).split()
                out[service] = {"name": name, "image": iid, "started": started}
        return out


def image_id(ref: str) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", ref)


def changed_count(output: str) -> int:
    match = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", output)
    assert match, output[-2000:]
    return int(match.group(1))


# -- paper trades in PostgreSQL (test_playbooks_no_data_lost, tests/faults) ----------------------------------
ROWS = "md5(string_agg(deal_id || ':' || epic || ':' || side || ':' || price::text, ',' ORDER BY deal_id))"


def psql(stack: Stack, sql: str) -> str:
    return docker("exec", f"{stack.name}-postgres", "psql", "-U", "tradeops", "-d", "tradeops", "-At", "-c", sql)


def checkpoint(stack: Stack) -> tuple[str, int, str]:
    """(time, rows up to it, md5 over those rows) taken inside PostgreSQL.

    The cut is a few seconds in the past: created_at is the INSERT's start time, so an
    insert that began just before now() and commits just after it would be counted by a
    later query and not by this one (a fault run once saw 109 rows become 110)."""
    out = psql(
        stack,
        "SELECT t, (SELECT count(*) FROM paper_trades WHERE created_at <= t), "  # noqa: S608
        f"(SELECT coalesce({ROWS}, '') FROM paper_trades WHERE created_at <= t) "
        "FROM (SELECT now() - interval '5 seconds' AS t) AS cut",
    )
    ts, count, digest = out.split("|")
    return ts, int(count), digest


def rows_up_to(stack: Stack, ts: str) -> tuple[int, str]:
    out = psql(
        stack,
        # ts comes from PostgreSQL's own now(), never from outside
        f"SELECT count(*), coalesce({ROWS}, '') FROM paper_trades WHERE created_at <= '{ts}'::timestamptz",  # noqa: S608
    )
    count, digest = out.split("|")
    return int(count), digest


def now(stack: Stack) -> str:
    return psql(stack, "SELECT now()")


def rows_after(stack: Stack, ts: str) -> int:
    # ts comes from PostgreSQL's own now(), never from outside
    out = psql(stack, f"SELECT count(*) FROM paper_trades WHERE created_at > '{ts}'::timestamptz")  # noqa: S608
    return int(out or 0)  # empty while PostgreSQL does not answer
