#!/usr/bin/env python3
"""Wall times of the playbooks on the local inventory, on a stack of its own
(t-pl<random>, own state root and ports; never `make demo`'s cdb):

  site from nothing, a no-op deploy, verify, a stack rollback (after a deploy of
  another bot version, to the previous known-good manifest).

Prints numbers; asserts nothing about time. The host load is printed with them:
these figures scale with it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from playbook_support import OLDER, Stack, changed_count, remove_stack


def timed(stack: Stack, name: str, **extra) -> tuple[float, int, int]:
    t0 = time.monotonic()
    run = stack.play(name, **extra)
    elapsed = time.monotonic() - t0
    if run.rc != 0:
        print(run.output[-3000:])
        raise SystemExit(f"{name} failed (rc={run.rc})")
    return elapsed, changed_count(run.output), run.rc


def main() -> int:
    stack = Stack()
    stack.root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        load = os.getloadavg()[0]
        rows.append(("site from nothing", *timed(stack, "site", tradeops_host_roles=[])))
        rows.append(("deploy, no-op", *timed(stack, "deploy")))
        rows.append(("verify", *timed(stack, "verify")))
        rows.append(("deploy of another bot version", *timed(stack, "deploy", tradeops_bot_image=OLDER)))
        rows.append(("rollback to previous known-good", *timed(stack, "rollback")))
        load = max(load, os.getloadavg()[0])
    finally:
        remove_stack(stack.name, stack.root)
    print(f"\nplaybook wall times, local inventory, stack {stack.name} ({os.cpu_count()} CPUs, load up to {load:.1f})")
    print(f"  {'playbook':34s} {'seconds':>8s} {'changed':>8s}")
    for name, seconds, changed, _rc in rows:
        print(f"  {name:34s} {seconds:8.1f} {changed:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
