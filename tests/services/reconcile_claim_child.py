"""A second process claiming reconciliation run numbers (``reconcile_state`` rule 6).

Usage: ``python -m tests.services.reconcile_claim_child URL PARTNERSHIP NAME COUNT``

It opens the store, prints ``ready``, waits for a line on stdin (so two children start
together), then claims COUNT run numbers, keeping after each the report
``NAME <seq>``, and prints the numbers it got, one line, space-separated.
"""

from __future__ import annotations

import asyncio
import sys

from jcm_sync.services.reconcile_state import keep_run_report, next_run_seq
from jcm_sync.store import Store
from tests.children import child_main


async def main(url: str, partnership: str, name: str, count: str) -> int:
    async def claim(store: Store) -> list[int]:
        got = []
        for _ in range(int(count)):
            seq = await next_run_seq(store, partnership)
            await keep_run_report(store, partnership, seq, f"{name} {seq}".encode())
            got.append(seq)
        return got

    return await child_main(url, claim)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
