#!/usr/bin/env python3
"""The edge proxy of a whole stack under load: the figure issue 13 was filed with. Prints numbers; asserts
nothing about time.

    .venv/bin/python tests/bench/bench_stack_proxy.py [--rate 200] [--threads 16] [--kinds nginx,haproxy]

A stack of the local inventory of its own (``t-bs<hex>``, own ports and state root, monitoring off) is
deployed with ``playbooks/site.yml``; a separate process then sends GET /health to db_writer through its edge
proxy (127.0.0.1:<tradeops_proxy_port>) at --rate with keep-alive clients, then with ``Connection: close`` clients,
each during a whole-stack deploy (every bot 1.0.1 -> 1.0.0, db_writer blue -> green) and during
``playbooks/rollback.yml`` (back to the previous known-good manifest). One stack per proxy kind
(``tradeops_proxy_kind``); the HAProxy stack starts on nginx and is migrated by a deploy under keep-alive load
first, then under ``Connection: close`` load back and forth (the migration rows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from playbook_support import GOOD, OLDER, Stack, remove_stack  # noqa: E402
from rollout_support import Load  # noqa: E402


def play(stack: Stack, name: str, **extra) -> float:
    """Run a playbook of the stack; its wall time (fails loudly: a figure of a failed run is no figure)."""
    t = time.monotonic()
    run = stack.play(name, **extra)
    if run.rc != 0:
        raise SystemExit("%s of %s failed:\n%s" % (name, stack.name, run.output[-3000:]))
    return round(time.monotonic() - t, 1)


def under_load(stack: Stack, rate: float, threads: int, keep_alive: bool, name: str, **extra) -> dict:
    port = stack.vars["tradeops_proxy_port"]
    with Load(port, rate, keep_alive=keep_alive, threads=threads, path="/health") as load:
        wall = play(stack, name, **extra)
    return {**load.summary(), "playbook_s": wall}


def bench_kind(kind: str, rate: float, threads: int, out: dict) -> None:
    stack = Stack()
    stack.name = "t-bs" + stack.name[4:]
    stack.root = Path("/tmp") / stack.name
    stack.state = stack.root / "state"
    stack.vars.update(tradeops_stack_name=stack.name, tradeops_state_root=str(stack.state))
    stack.root.mkdir(parents=True)
    migrate = kind != "nginx"
    stack.vars["tradeops_proxy_kind"] = "nginx" if migrate else kind
    try:
        play(stack, "site", tradeops_host_roles=[], tradeops_bot_image=GOOD)
        time.sleep(3)
        if migrate:
            stack.vars["tradeops_proxy_kind"] = kind
            row = "migration nginx -> %s during a deploy" % kind
            out[row] = {"keep-alive": under_load(stack, rate, threads, True, "deploy", tradeops_deploy_reason="move")}
            print(json.dumps({row: out[row]}), flush=True)
        for keep_alive in (True, False):
            client = "keep-alive" if keep_alive else "Connection: close"
            for name, extra in (("deploy", {"tradeops_bot_image": OLDER}), ("rollback", {})):
                row = "%s: %s" % (kind, "whole-stack deploy (db_writer blue -> green)" if name == "deploy" else name)
                out.setdefault(row, {})[client] = under_load(stack, rate, threads, keep_alive, name, **extra)
                print(json.dumps({row: {client: out[row][client]}}), flush=True)
                time.sleep(3)
        if migrate:  # there and back again for the new-connection clients
            row = "migration nginx -> %s during a deploy" % kind
            stack.vars["tradeops_proxy_kind"] = "nginx"
            play(stack, "deploy", tradeops_deploy_reason="back")
            stack.vars["tradeops_proxy_kind"] = kind
            time.sleep(3)
            out[row]["Connection: close"] = under_load(
                stack, rate, threads, False, "deploy", tradeops_deploy_reason="mv"
            )
            print(json.dumps({row: out[row]}), flush=True)
    finally:
        remove_stack(stack.name, stack.root)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, all threads together")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--kinds", default="nginx,haproxy")
    opts = parser.parse_args()
    out: dict = {}
    for kind in opts.kinds.split(","):
        bench_kind(kind, opts.rate, opts.threads, out)
    print(json.dumps(out, indent=2))
    print(json.dumps({"host": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}}))


if __name__ == "__main__":
    main()
