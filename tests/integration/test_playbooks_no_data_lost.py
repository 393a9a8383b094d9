"""No data lost: the reference bot keeps writing paper trades while deploy/rollback
cycles of the whole stack run (TRADEOPS_NO_DATA_LOST_CYCLES, default 20). Every row
that existed at each checkpoint is still there afterwards (count and checksum over the
rows up to that checkpoint), and PostgreSQL kept the very same volume and container."""

from __future__ import annotations

import os
import time

import pytest
from playbook_support import OLDER, Stack, checkpoint, docker, remove_stack, rows_up_to

pytestmark = pytest.mark.slow
CYCLES = int(os.environ.get("TRADEOPS_NO_DATA_LOST_CYCLES", "20"))


MOUNT = '{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}{{.Name}}{{end}}{{end}}'


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
