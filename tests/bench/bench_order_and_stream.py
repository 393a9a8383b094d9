#!/usr/bin/env python3
"""Benchmark of capital_com_health's trading path against the emulator: the order round trip and the
price stream. Prints numbers, asserts nothing.

1. For each latency the emulator adds to ``POST /positions`` (0, 50 and 100 ms), N order round trips
   through ansible-playbook; each reports ``open_ms`` (sending the order to its ACCEPTED confirmation) and
   ``close_ms``.
2. For each delay the emulator puts before the first quote of a subscription (0, 50 and 100 ms), N stream
   checks; each reports BTCUSD's ``first_quote_ms`` (from subscribing).

The truth for an injected latency is that latency plus the median without it; the error of the
measurement is the reported figure minus the truth.

Usage: .venv/bin/python tests/bench/bench_order_and_stream.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from bench_capital_com_health import harness, run_check


def order_figures(emu, runs, state_root):
    """open_ms of N round trips (close_ms printed beside)."""
    opens, closes = [], []
    for _ in range(runs):
        result, _ = run_check(emu, epics=["BTCUSD"], order_roundtrip=True, latency_samples=1, state_root=state_root)
        order = result.get("order_roundtrip") or {}
        time.sleep(1.1)  # one login per second per key
        if not order.get("closed"):
            print("  unexpected: %s" % (order.get("detail") or result.get("msg")))
            continue
        opens.append(order["open_ms"])
        closes.append(order["close_ms"])
    return opens, "close_ms median %.1f" % statistics.median(closes) if closes else ""


def stream_figures(emu, runs, _state_root):
    """BTCUSD's first_quote_ms of N stream checks."""
    firsts = []
    for _ in range(runs):
        result, _ = run_check(emu, epics=["BTCUSD"], stream=True, latency_samples=1)
        time.sleep(1.1)
        first = (((result.get("stream") or {}).get("epics") or {}).get("BTCUSD") or {}).get("first_quote_ms")
        if first is None:
            print("  unexpected: %s" % result.get("msg"))
            continue
        firsts.append(first)
    return firsts, ""


def report(name, injected_values, inject, measure, emu, runs, state_root):
    baseline = None
    for injected in injected_values:
        inject(injected)
        values, extra = measure(emu, runs, state_root)
        if not values:
            continue
        line = "  +%3d ms: %s median %.1f (min %.1f, max %.1f)" % (
            injected,
            name,
            statistics.median(values),
            min(values),
            max(values),
        )
        line += ", " + extra if extra else ""
        if injected == 0:
            baseline = statistics.median(values)
        elif baseline is not None:
            errors = [value - (injected + baseline) for value in values]
            line += "; error vs truth (%d + %.1f ms): median %+.1f ms, worst %+.1f ms" % (
                injected,
                baseline,
                statistics.median(errors),
                max(errors, key=abs),
            )
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="round trips per injected latency (default 5)")
    args = ap.parse_args()
    with harness.EmulatorProcess() as emu, tempfile.TemporaryDirectory() as state_root:
        # (heading, figure, how one latency is injected, the runs that measure it, how the injection is undone)
        scenarios = (
            (
                "order round trip on BTCUSD, %d runs per latency added to POST /positions:",
                "open_ms",
                lambda ms: emu.control(latency={"POST /positions": ms}),
                order_figures,
                lambda: emu.control(latency={"POST /positions": None}),
            ),
            (
                "price stream, %d runs per delay before the first quote of a subscription:",
                "first_quote_ms",
                lambda ms: emu.control(stream={"first_quote_delay_ms": ms}),
                stream_figures,
                lambda: emu.control(stream={"first_quote_delay_ms": 0}),
            ),
        )
        for heading, name, inject, measure, undo in scenarios:
            print(heading % args.runs)
            report(name, (0, 50, 100), inject, measure, emu, args.runs, state_root)
            undo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
