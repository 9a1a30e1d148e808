"""The victim of the durability test: appends to a log until it is killed.

Usage: ``durability_child.py URL POOL ROOT NOW SEED PARTNERSHIP NODE ORIGIN``

It opens the store, prints ``ready SIZE``, then appends the envelopes of POOL (one per
line) in batches of random sizes from where the log ends, sometimes re-sending a few held
entries first, verifying each against the trust root in ROOT at time NOW. After each
append returns it prints every index the log now holds from the batch start, one per line,
and flushes: a printed index is an acknowledged one. The parent kills it with SIGKILL at a
random moment and checks that every printed index survived.
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import datetime
from pathlib import Path

from jcm_sync.core import trust
from jcm_sync.store import LogRef, open_store


async def main(argv: list[str]) -> int:
    url, pool_path, root_path, now_text, seed, partnership, node, origin = argv
    now = datetime.fromisoformat(now_text)
    pool = Path(pool_path).read_bytes().split(b"\n")
    root = trust.verify_root(Path(root_path).read_bytes(), now).root
    log = LogRef(partnership, node, origin)
    rng = random.Random(seed)

    def verify(raw: bytes) -> trust.Verification:
        return trust.verify_record(root, raw, now)

    store = await open_store(url)
    await store.ensure_log(log)
    size = (await store.tree_head(log)).size
    print("ready", size, flush=True)
    while size < len(pool):
        start = max(0, size - rng.randint(1, 3)) if rng.random() < 0.2 else size
        batch = pool[start : start + rng.randint(1, 8)]
        result = await store.append_entries(log, start, batch, verify)
        sys.stdout.write("".join(f"{i}\n" for i in range(start, result.size)))
        sys.stdout.flush()
        size = result.size
    print("done", flush=True)
    await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
