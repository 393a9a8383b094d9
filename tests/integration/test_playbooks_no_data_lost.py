"""No data lost: the reference bot keeps writing paper trades while deploy/rollback
cycles of the whole stack run (TRADEOPS_NO_DATA_LOST_CYCLES, default 20). Every row
that existed at each checkpoint is still there afterwards (count and checksum over the
rows up to that checkpoint), and PostgreSQL kept the very same volume and container."""

from __future__ import annotations

import os
import time

import pytest
from test_playbooks import OLDER, Stack, docker, remove_stack

pytestmark = pytest.mark.slow
CYCLES = int(os.environ.get("TRADEOPS_NO_DATA_LOST_CYCLES", "20"))


ROWS = "md5(string_agg(deal_id || ':' || epic || ':' || side || ':' || price::text, ',' ORDER BY deal_id))"
MOUNT = '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}{{end}}{{end}}'


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


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    s.root.mkdir(parents=True, exist_ok=True)
    yield s
    remove_stack(s.name, s.root)


def test_no_paper_trade_lost_over_deploy_rollback_cycles(stack):
    run = stack.play("site", tradeops_host_roles=[])
    assert run.rc == 0, run.output[-4000:]
    good = stack.manifest()["id"]
    pg = f"{stack.name}-postgres"
    volume = docker(
        "inspect", "-f", '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}{{end}}{{end}}', pg
    )
    volume_created = docker("volume", "inspect", "-f", "{{.CreatedAt}}", volume)
    pg_id = docker("inspect", "-f", "{{.Id}}", pg)
    deadline = time.monotonic() + 180
    while checkpoint(stack)[1] == 0 and time.monotonic() < deadline:
        time.sleep(2)
    checkpoints = [checkpoint(stack)]
    assert checkpoints[0][1] > 0, "the bot wrote no paper trade within 3 minutes"
    for i in range(CYCLES):
        run = stack.play("deploy", tradeops_bot_image=OLDER, tradeops_deploy_reason=f"cycle {i} up")
        assert run.rc == 0, run.output[-4000:]
        checkpoints.append(checkpoint(stack))
        run = stack.play("rollback", tradeops_rollback_manifest=good)
        assert run.rc == 0, run.output[-4000:]
        checkpoints.append(checkpoint(stack))
        print(f"cycle {i + 1}/{CYCLES}: {checkpoints[-1][1]} paper trades")
    for ts, count, digest in checkpoints:
        assert rows_up_to(stack, ts) == (count, digest), f"rows written before {ts} changed"
    assert checkpoints[-1][1] > checkpoints[0][1], "the bot stopped writing during the cycles"
    assert docker("inspect", "-f", "{{.Id}}", pg) == pg_id, "PostgreSQL was recreated"
    assert docker("volume", "inspect", "-f", "{{.CreatedAt}}", volume) == volume_created
    assert volume == f"{stack.name}-pgdata"
