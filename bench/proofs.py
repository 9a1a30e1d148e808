"""Proof latency from the SQLite store, against recomputing each proof from all leaves.

Builds a log of N entries (default 10^6) in a temporary SQLite file through the store's
own append path, in large transactions, with a verifier that accepts the (synthetic,
already-verified) entries without signature checks, and prints the build time. Then it
serves inclusion and consistency proofs at random indexes and sizes from stored nodes
(``Store.inclusion_proof`` / ``consistency_proof``, O(log N) node reads) and times them,
and computes a few of the same proofs with ``merkle.inclusion_proof`` /
``consistency_proof`` from all N leaf hashes held in memory (reading the leaves is not
even counted), spread among the store's proofs so a change of load weighs on both.
Targets: p50 <= 2 ms from the store, and >= 100x faster than recomputing. The figures
are informational: the script always exits 0.

    python bench/proofs.py [--n N] [--samples S] [--recompute R] [--batch B]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from jcm_sync.core import merkle
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, Period
from jcm_sync.core.trust import Signer, Verification
from jcm_sync.store import LogRef, open_store

P50_TARGET_MS = 2.0
RATIO_TARGET = 100.0
LOG = LogRef("JP-ID", "JP", "jcm-sync.example/JP-ID/JP")


def template() -> Verification:
    """One already-verified issuance; each synthetic entry reuses it under its own id."""
    record = IssuanceRecord(
        partnership="JP-ID",
        author="JP",
        created=datetime(2016, 5, 23, tzinfo=UTC),
        registry="JP",
        issuance_id="JP-2016-0001",
        decision=DecisionRef(
            project_id="ID002", monitoring_period=Period(date(2015, 1, 1), date(2015, 9, 30))
        ),
        issued_on=date(2016, 5, 23),
        amount=27,
        account=Account(id="JP-GOV-001", type="government_holding"),
    )
    return Verification(
        record_id="", kind="issuance", record=record, signers=(Signer("", "JP"),),
        required_nodes=frozenset({"JP"}),
    )  # fmt: skip


def entry(i: int) -> bytes:
    """A distinct envelope-sized entry (the store does not parse what it stores)."""
    return b'{"payload":"%064d","payloadType":"application/vnd.jcm-sync.issuance+json"}' % i


def accept(base: Verification) -> Callable[[bytes], Verification]:
    def verify(raw: bytes) -> Verification:
        return dataclasses.replace(base, record_id=hashlib.sha256(raw).hexdigest())

    return verify


def ms(seconds: float) -> float:
    return seconds * 1000.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    n = args.n
    verify = accept(template())
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'proofs.db'}"
        store = await open_store(url)
        try:
            t0 = time.perf_counter()
            for start in range(0, n, args.batch):
                batch = [entry(i) for i in range(start, min(start + args.batch, n))]
                await store.append_entries(LOG, start, batch, verify)
                if start and start % (args.batch * 20) == 0:
                    done = time.perf_counter() - t0
                    print(f"  ... {start:,} entries in {done:.1f} s", file=sys.stderr)
            build = time.perf_counter() - t0
            head = await store.tree_head(LOG)
            leaves = [merkle.leaf_hash(entry(i)) for i in range(n)]
            assert head.root == merkle.root(leaves)
            size_mb = (Path(tmp) / "proofs.db").stat().st_size / 1e6
            print(f"built a log of {n:,} entries in {build:.1f} s ({n / build:,.0f} entries/s, "
                  f"{size_mb:,.0f} MB); root checked against merkle.root")  # fmt: skip

            inc_idx = [rng.randrange(n) for _ in range(args.samples)]
            con_old = [rng.randrange(1, n) for _ in range(args.samples)]
            for i in inc_idx[:50]:  # warm the page cache and statement cache
                await store.inclusion_proof(LOG, i, n)

            def timed(samples: list[float], t: float) -> None:
                samples.append(time.perf_counter() - t)

            # the recomputations are spread among the store's proofs, so a change of the
            # machine's load during the run weighs on both sides of the ratio alike
            inc: list[float] = []
            con: list[float] = []
            inc_re: list[float] = []
            con_re: list[float] = []
            step = -(-args.samples // args.recompute)
            for k in range(args.recompute):
                for i in inc_idx[k * step : (k + 1) * step]:
                    t = time.perf_counter()
                    proof = await store.inclusion_proof(LOG, i, n)
                    timed(inc, t)
                    assert merkle.verify_inclusion(leaves[i], i, n, proof, head.root)
                i = inc_idx[k * step]
                t = time.perf_counter()
                want = merkle.inclusion_proof(leaves, i)
                timed(inc_re, t)
                assert want == await store.inclusion_proof(LOG, i, n)
                for old in con_old[k * step : (k + 1) * step]:
                    t = time.perf_counter()
                    await store.consistency_proof(LOG, old, n)
                    timed(con, t)
                old = con_old[k * step]
                t = time.perf_counter()
                want = merkle.consistency_proof(leaves, old)
                timed(con_re, t)
                assert want == await store.consistency_proof(LOG, old, n)
        finally:
            await store.close()

    print(f"\n{args.samples} proofs each from the store, {args.recompute} recomputed from "
          f"all {n:,} leaves (median); proofs of both kinds checked equal")  # fmt: skip
    print(f"{'proof':12} {'p50 ms':>8} {'p99 ms':>8} {'recompute ms':>13} {'ratio':>9}  targets")
    for name, store_t, re_t in (("inclusion", inc, inc_re), ("consistency", con, con_re)):
        p50, p99 = pct(store_t, 0.5), pct(store_t, 0.99)
        recompute = statistics.median(re_t)
        ratio = recompute / p50
        ok = "ok" if p50 <= P50_TARGET_MS / 1000 and ratio >= RATIO_TARGET else "MISS"
        print(
            f"{name:12} {ms(p50):8.3f} {ms(p99):8.3f} {ms(recompute):13.1f} {ratio:8,.0f}x"
            f"  p50 <= {P50_TARGET_MS} ms, >= {RATIO_TARGET:.0f}x: {ok}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="entries in the log")
    parser.add_argument("--samples", type=int, default=2000, help="proofs timed per kind")
    parser.add_argument("--recompute", type=int, default=3, help="proofs recomputed per kind")
    parser.add_argument("--batch", type=int, default=20_000, help="entries per transaction")
    args = parser.parse_args(argv)
    if args.n < 2 or args.recompute < 1 or args.samples < args.recompute:
        parser.error("need --n >= 2 and --samples >= --recompute >= 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
