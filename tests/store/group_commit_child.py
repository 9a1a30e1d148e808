"""The victim of the group-commit kill test: appends to two logs at once until killed.

Usage: ``group_commit_child.py URL POOL_JP POOL_ID ROOT NOW SEED PARTNERSHIP``

It opens the SQLite store, prints ``ready``, then runs one task per log (JP's and ID's
replicas of PARTNERSHIP), each appending the envelopes of its pool in batches of random
sizes, several batches in flight at once, so that appends share transactions. A third
task keeps offering a fork of JP's first entry, refused each time, in the same groups
(it prints ``fork-accepted`` if it ever is not). After each append returns it prints
``NODE INDEX`` for every index the log now holds from the batch start, then ``groups G``
(transactions so far); a printed index is an acknowledged one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from datetime import datetime
from pathlib import Path

from jcm_sync.core import checkpoint, trust
from jcm_sync.errors import JcmSyncError
from jcm_sync.store import LogRef
from jcm_sync.store.sqlite import SqliteStore

ORIGIN_PREFIX = "jcm-sync.example"


async def main(argv: list[str]) -> int:
    url, jp_pool, id_pool, root_path, now_text, seed, partnership = argv
    now = datetime.fromisoformat(now_text)
    root = trust.verify_root(Path(root_path).read_bytes(), now).root
    rng = random.Random(seed)

    def verify(raw: bytes) -> trust.Verification:
        return trust.verify_record(root, raw, now)

    store = await SqliteStore.open(url)
    pools = {
        "JP": Path(jp_pool).read_bytes().split(b"\n"),
        "ID": Path(id_pool).read_bytes().split(b"\n"),
    }
    logs = {
        n: LogRef(partnership, n, checkpoint.origin_for(ORIGIN_PREFIX, partnership, n))
        for n in pools
    }
    for log in logs.values():
        await store.ensure_log(log)
    print("ready", flush=True)

    def ack(node: str, start: int, size: int) -> None:
        lines = "".join(f"{node} {i}\n" for i in range(start, size))
        sys.stdout.write(f"{lines}groups {store._group.groups}\n")
        sys.stdout.flush()

    async def lane(node: str, lanes: int) -> None:
        log, pool = logs[node], pools[node]
        size = (await store.tree_head(log)).size
        while size < len(pool):
            # several batches of this log in flight at once, submitted in order
            starts, batches = [], []
            at = size
            for _ in range(lanes):
                n = rng.randint(1, 6)
                starts.append(at)
                batches.append(pool[at : at + n])
                at += n
            results = await asyncio.gather(
                *(
                    store.append_entries(log, s, b, verify)
                    for s, b in zip(starts, batches, strict=True)
                )
            )
            for s, r in zip(starts, results, strict=True):
                ack(node, s, r.size)
            size = results[-1].size

    async def forker() -> None:
        """JP's second envelope offered at index 0 once the log holds its first: refused."""
        log = logs["JP"]
        while (await store.tree_head(log)).size < 2:
            await asyncio.sleep(0.001)
        while True:
            with contextlib.suppress(JcmSyncError):
                await store.append_entries(log, 0, [pools["JP"][1]], verify)
                print("fork-accepted", flush=True)

    fork = asyncio.ensure_future(forker())
    await asyncio.gather(lane("JP", 3), lane("ID", 2))
    fork.cancel()
    print("done", flush=True)
    await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
