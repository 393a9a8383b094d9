#!/usr/bin/env python3
"""Benchmark of tradeops.stack.capital_com_health against the emulator. Prints numbers, asserts nothing.

1. Wall time of a default check (2 epics, 5 latency samples) with no added latency, as the module
   measures it on the managed host (``duration_s``; target <= 1 s), next to the wall time of the
   whole ansible-playbook run (Ansible's own start-up included).
2. Accuracy: with 50 ms added by the emulator to every response, the reported p50 against the truth
   (50 ms + the p50 measured without added latency); target within +-10 ms.

Usage: .venv/bin/python tests/bench/bench_capital_com_health.py [--runs N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


conftest = _load("tradeops_conftest", ROOT / "tests" / "conftest.py")
harness = _load("capital_emulator_harness", ROOT / "tests" / "emulators" / "capital_com" / "harness.py")
TASK = "capital_com_health benchmark"


def run_check(emu, **args):
    task_args = {
        "base_url": emu.base_url,
        "emulator_hosts": ["127.0.0.1"],
        "api_key": "emulator-api-key",
        "identifier": "trader@example.com",
        "password": "emulator-password",
        "fail_on_unhealthy": False,
    }
    task_args.update(args)
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "connection": "local",
            "tasks": [
                {
                    "name": TASK,
                    "tradeops.stack.capital_com_health": task_args,
                    "vars": {"ansible_python_interpreter": sys.executable},
                }
            ],
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    try:
        start = time.perf_counter()
        run = conftest.run_playbook(handle.name, inventory="localhost,", json_output=True)
        wall = time.perf_counter() - start
    finally:
        os.unlink(handle.name)
    return run.task(TASK), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="checks per scenario (default 5)")
    args = ap.parse_args()
    with harness.EmulatorProcess() as emu:
        emu.control(market_status={"BTCUSD": "TRADEABLE", "OIL_CRUDE": "TRADEABLE"})
        durations, walls, base_p50 = [], [], []
        for _ in range(args.runs):
            result, wall = run_check(emu)
            if not result.get("healthy"):
                print("unexpected: unhealthy: %s" % result.get("failures"))
            durations.append(result["duration_s"])
            walls.append(wall)
            base_p50.append(result["latency"]["p50_ms"])
            time.sleep(1.1)  # one login per second per key
        print("default check (epics BTCUSD+OIL_CRUDE, 5 latency samples, no added latency), %d runs:" % args.runs)
        print(
            "  module wall time (duration_s): median %.3f s, min %.3f s, max %.3f s   [target <= 1 s]"
            % (statistics.median(durations), min(durations), max(durations))
        )
        print("  ansible-playbook wall time incl. start-up: median %.2f s" % statistics.median(walls))
        print("  p50 round trip without added latency: median %.2f ms" % statistics.median(base_p50))

        emu.control(latency_ms=50)
        truth = 50.0 + statistics.median(base_p50)
        errors = []
        for _ in range(args.runs):
            result, _ = run_check(emu, latency_slo_ms=100)
            errors.append(result["latency"]["p50_ms"] - truth)
            time.sleep(1.1)
        print(
            "with 50 ms added by the emulator, %d runs (truth = 50 ms + baseline p50 = %.2f ms):" % (args.runs, truth)
        )
        print(
            "  reported p50 - truth: median %+.2f ms, worst %+.2f ms   [target within +-10 ms]"
            % (statistics.median(errors), max(errors, key=abs))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
