"""tlog-tiles: the publishing rate, and proofs verified from tiles against the store's proofs.

Builds a log of N synthetic entries (default 100,000) in a temporary SQLite store (as
``proofs.py`` does) with a signed checkpoint, then:

* **write**: publishes it as tiles into a directory (``TilesPublisher``: hashes and
  envelopes read from the store, files written atomically), against a baseline of writing
  the same files' bytes with no store and no tiling, in the same run; then the
  incremental run after 1,000 more entries.
* **verify**: inclusion proofs at random indexes computed from tiles and verified against
  the checkpoint (``TiledLog``: from a directory and over HTTP from an aiohttp static
  server on loopback; cold, a new reader per proof that fetches every tile, and warm, the
  tiles cached), against ``Store.inclusion_proof`` (served from stored nodes, not
  verified) on the same indexes.

Figures are informational; the script exits 0.

    python bench/tiles.py [--n N] [--samples S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from proofs import LOG, accept, entry, pct, template  # bench/proofs.py: the same log

from jcm_sync.core import checkpoint, note
from jcm_sync.core.checkpoint import VerifiedCheckpoint
from jcm_sync.net.tiles_http import HttpTileSource
from jcm_sync.services.tiles import DirectorySink, TilesPublisher, log_prefix
from jcm_sync.services.tiles_read import TiledLog, TileSource
from jcm_sync.store import Store, open_store


async def build(store: Store, n: int, start: int, key: Ed25519PrivateKey) -> VerifiedCheckpoint:
    verify = accept(template())
    for s in range(start, n, 20_000):
        await store.append_entries(LOG, s, [entry(i) for i in range(s, min(s + 20_000, n))],
                                   verify)  # fmt: skip
    head = await store.tree_head(LOG)
    cp = checkpoint.Checkpoint(LOG.origin, head.size, head.root)
    signed = checkpoint.sign_checkpoint(cp, key)
    await store.put_checkpoint(LOG, signed)
    verifier = note.Verifier(LOG.origin, key.public_key())
    return checkpoint.open_checkpoint(signed, [verifier], origin=LOG.origin)


def ms(s: float) -> float:
    return s * 1000


async def proofs_from(
    source: TileSource, cp: VerifiedCheckpoint, indexes: list[int], *, cold: bool
) -> list[float]:
    times: list[float] = []
    warm = TiledLog(source, log_prefix(LOG), cp)
    for i in indexes:
        t = time.perf_counter()
        log = TiledLog(source, log_prefix(LOG), cp) if cold else warm
        await log.inclusion_proof(i)  # verified against the checkpoint's root
        times.append(time.perf_counter() - t)
    return times


async def run(args: argparse.Namespace) -> int:
    n, rng, key = args.n, random.Random(11), Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="jcm-bench-tiles-") as tmp:
        store = await open_store(f"sqlite:///{Path(tmp) / 'tiles.db'}")
        try:
            t = time.perf_counter()
            cp = await build(store, n, 0, key)
            print(f"built a log of {n:,} entries in {time.perf_counter() - t:.1f} s")

            out = Path(tmp) / "tiles"
            t = time.perf_counter()
            [res] = await TilesPublisher(store, DirectorySink(out)).publish_all()
            write = time.perf_counter() - t
            files = [(str(p.relative_to(out)), p.read_bytes()) for p in out.rglob("*")
                     if p.is_file()]  # fmt: skip
            total = sum(len(d) for _, d in files)
            t = time.perf_counter()
            await DirectorySink(Path(tmp) / "bare").write(files)
            bare = time.perf_counter() - t
            print(f"\nwrite: {res.files} files, {total / 1e6:.1f} MB")
            print(f"  tiles from the store   {write:7.2f} s  {n / write:10,.0f} entries/s")
            print(f"  bare write, same files {bare:7.2f} s  {n / bare:10,.0f} entries/s"
                  f"   tiles/bare time {write / bare:.2f}x")  # fmt: skip
            cp = await build(store, n + 1000, n, key)
            t = time.perf_counter()
            [inc] = await TilesPublisher(store, DirectorySink(out)).publish_all()
            print(f"  incremental (+1,000)   {ms(time.perf_counter() - t):7.1f} ms, "
                  f"{inc.files} files")  # fmt: skip

            size = n + 1000
            indexes = [rng.randrange(size) for _ in range(args.samples)]
            stored: list[float] = []
            for i in indexes:
                t = time.perf_counter()
                await store.inclusion_proof(LOG, i, size)
                stored.append(time.perf_counter() - t)
            rows = [("store (not verified)", stored)]
            directory = DirectorySink(out)
            rows.append(("tiles, dir, cold", await proofs_from(directory, cp, indexes, cold=True)))
            rows.append(("tiles, dir, warm", await proofs_from(directory, cp, indexes, cold=False)))
            app = web.Application()
            app.router.add_static("/", out)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            try:
                async with HttpTileSource(f"http://{host}:{port}") as http:
                    rows.append(("tiles, HTTP, cold",
                                 await proofs_from(http, cp, indexes, cold=True)))  # fmt: skip
            finally:
                await runner.cleanup()
        finally:
            await store.close()
    base = statistics.median(stored)
    print(f"\ninclusion proofs at {args.samples} random indexes of {size:,} (tiles: computed"
          " and verified against the signed checkpoint)")  # fmt: skip
    print(f"  {'source':24} {'p50 ms':>8} {'p99 ms':>8} {'p50 / store':>12}")
    for name, times in rows:
        p50 = statistics.median(times)
        print(f"  {name:24} {ms(p50):8.3f} {ms(pct(times, 0.99)):8.3f} {p50 / base:11.1f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="entries in the log")
    parser.add_argument("--samples", type=int, default=300, help="proofs timed per source")
    args = parser.parse_args(argv)
    if args.n < 1000 or args.samples < 1:
        parser.error("need --n >= 1000 and --samples >= 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
