"""A second process finishing reconciliation runs (``services.run_history`` rule 1).

Usage: ``python -m tests.services.run_history_child URL PARTNERSHIP NAME COUNT KEEP``

It opens the store, prints ``ready``, waits for a line on stdin (so two children start
together), then runs COUNT runs one after another as ``ReconcileService`` records them
(``begin_run``, then ``end_run`` with a report naming NAME), and prints the run numbers
it got, one line, space-separated.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import msgspec

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import Reconciler, Report
from jcm_sync.core.reconcile.model import LogPosition
from jcm_sync.services.run_history import begin_run, end_run
from jcm_sync.store import Store
from tests import builders
from tests.children import child_main


def report_of(partnership: str, name: str, n: int) -> Report:
    """An empty report whose snapshot names who ran it (``name``) and its ``n``."""
    node_a, node_b = partnership.split("-")
    root = builders.build_root(
        partnership, {node_a: PrivateKey.generate(), node_b: PrivateKey.generate()}
    )
    report = Reconciler(root).report(datetime.now(UTC))
    return msgspec.structs.replace(report, logs=(LogPosition(node=name, size=n, root=""),))


async def run_once(store: Store, partnership: str, name: str, n: int, keep: int) -> int:
    """One run as the service records it; its run number."""
    run = await begin_run(store, partnership, datetime.now(UTC))
    await asyncio.sleep(0)  # let the other runs of this process's loop interleave
    await end_run(store, partnership, run, report_of(partnership, name, n), datetime.now(UTC), keep)
    assert run.seq is not None
    return run.seq


async def main(url: str, partnership: str, name: str, count: str, keep: str) -> int:
    async def runs(store: Store) -> list[int]:
        return [await run_once(store, partnership, name, n, int(keep)) for n in range(int(count))]

    return await child_main(url, runs)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
