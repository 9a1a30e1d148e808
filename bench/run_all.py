"""Run every benchmark in ``bench/`` and print each one's table.

This is what ``make bench`` runs. Each benchmark runs in its own process (so one's
memory, threads and event loop never colour the next), with sizes chosen to finish in
about a minute, except where issue 15 names the size (ingest of 100,000 records, appends
after a 1,000,000-entry prefill), and is stopped if it exceeds ``--timeout`` (or its
own allowance in ``TIMEOUTS``). A missed target is
information, not failure: the exit status is 1 only if a benchmark crashed or was
stopped, 0 otherwise. Pass names to run some of them only.

    python bench/run_all.py [NAME ...] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

#: name -> arguments for ``make bench``; run in this order, skipped when the file is absent
PLAN: dict[str, list[str]] = {
    "sign_verify": [],
    "append": ["--n", "10000", "--rounds", "2", "--prefill", "1000000"],
    "proofs": ["--n", "100000"],
    "ingest": ["--n", "100000"],
    "anti_entropy": ["--sizes", "1000,100000"],
    "fanout": [],
    "hub_scaleout": [],
    "reconcile": [],
    "import_xlsx": ["--n", "100000"],
    "export_xlsx": ["--n", "100000", "--rounds", "1"],
    "backup": ["--n", "20000", "--rounds", "2"],
    "ops_pages": [],
    "pq": [],
    "tiles": [],
}
#: name -> seconds allowed, where one needs more than ``--timeout``: the issue's sizes
#: (a 1,000,000-entry prefill on both backends; 100,000 records pushed after signing them)
TIMEOUTS: dict[str, float] = {"append": 420.0, "ingest": 300.0}


def run_one(name: str, args: list[str], timeout: float) -> tuple[str, float]:
    """Run ``bench/NAME.py`` with its output passed through; return (outcome, seconds)."""
    cmd = [sys.executable, str(BENCH / f"{name}.py"), *args]
    print(f"\n=== {name}: {' '.join(['bench/' + name + '.py', *args])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True)  # its own group: stop it whole
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return f"stopped after {timeout:.0f} s", time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return ("ok" if code == 0 else f"failed (exit {code})"), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {list(PLAN)})"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per benchmark")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(PLAN)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    names = [n for n in PLAN if (not args.names or n in args.names)]

    outcomes: list[tuple[str, str, float]] = []
    for name in names:
        if not (BENCH / f"{name}.py").exists():
            outcomes.append((name, "absent, skipped", 0.0))
            continue
        timeout = max(args.timeout, TIMEOUTS.get(name, 0.0))
        outcome, seconds = run_one(name, PLAN[name], timeout)
        outcomes.append((name, outcome, seconds))

    print(f"\n=== summary\n{'benchmark':14} {'seconds':>8}  outcome")
    for name, outcome, seconds in outcomes:
        print(f"{name:14} {seconds:8.1f}  {outcome}")
    failed = [o for o in outcomes if not (o[1] == "ok" or o[1].startswith("absent"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
