#!/usr/bin/env python3
"""Benchmark of the order round trip (capital_com_health order_roundtrip) against the emulator.
Prints numbers, asserts nothing.

For each latency the emulator adds to ``POST /positions`` (0, 50 and 100 ms), N round trips through
ansible-playbook; each reports ``open_ms`` (sending the order to its ACCEPTED confirmation) and
``close_ms``. The truth for an injected latency is that latency plus the median ``open_ms`` without it;
the error of the measurement is reported ``open_ms`` minus the truth.

Usage: .venv/bin/python tests/bench/bench_order_roundtrip.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from bench_capital_com_health import harness, run_check


def round_trips(emu, runs, state_root):
    opens, closes = [], []
    for _ in range(runs):
        result, _ = run_check(emu, epics=["BTCUSD"], order_roundtrip=True, latency_samples=1, state_root=state_root)
        order = result.get("order_roundtrip") or {}
        if not order.get("closed"):
            print("  unexpected: %s" % (order.get("detail") or result.get("msg")))
            continue
        opens.append(order["open_ms"])
        closes.append(order["close_ms"])
        time.sleep(1.1)  # one login per second per key
    return opens, closes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="round trips per injected latency (default 5)")
    args = ap.parse_args()
    with harness.EmulatorProcess() as emu, tempfile.TemporaryDirectory() as state_root:
        baseline = None
        print("order round trip on BTCUSD, %d runs per injected latency on POST /positions:" % args.runs)
        for injected in (0, 50, 100):
            emu.control(latency={"POST /positions": injected})
            opens, closes = round_trips(emu, args.runs, state_root)
            if not opens:
                continue
            line = "  +%3d ms: open_ms median %.1f (min %.1f, max %.1f), close_ms median %.1f" % (
                injected,
                statistics.median(opens),
                min(opens),
                max(opens),
                statistics.median(closes),
            )
            if injected == 0:
                baseline = statistics.median(opens)
            elif baseline is not None:
                errors = [value - (injected + baseline) for value in opens]
                line += "; error vs truth (%d + %.1f ms): median %+.1f ms, worst %+.1f ms" % (
                    injected,
                    baseline,
                    statistics.median(errors),
                    max(errors, key=abs),
                )
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
