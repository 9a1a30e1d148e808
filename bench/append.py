"""Append throughput of the SQLite store, against a bare sqlite3 insert of the same bytes.

The store appends already-verified envelopes (real signed issuance records; the verifier
hands back their precomputed verification) with ``Store.append_entries``: per batch one
transaction holding the entries, their record-index rows, every new tree node and the new
head, on the store's own thread. The baseline inserts the same envelope bytes with
``executemany`` into a plain two-column table, one transaction per batch, on a
connection with the same settings (WAL, ``synchronous=FULL``). Both start from empty
files in the same directory; runs alternate and the best of ``--rounds`` counts. Target:
store / bare >= 0.5 at the hub's push batch (500). Informational: always exits 0.

    python bench/append.py [--n N] [--rounds R] [--batches 1,10,100,500]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from jcm_sync.core.envelope import PrivateKey, sign_record
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, Period, SerialBlock
from jcm_sync.core.trust import Signer, Verification
from jcm_sync.store import LogRef, open_store

TARGET = 0.5
TARGET_BATCH = 500
LOG = LogRef("JP-ID", "JP", "jcm-sync.example/JP-ID/JP")


def envelopes(n: int) -> tuple[list[bytes], dict[bytes, Verification]]:
    """``n`` signed issuance envelopes and their verifications."""
    key = PrivateKey.from_seed(bytes(range(32)))
    out: list[bytes] = []
    checked: dict[bytes, Verification] = {}
    for i in range(n):
        record = IssuanceRecord(
            partnership="JP-ID",
            author="JP",
            created=datetime(2016, 5, 23, tzinfo=UTC) + timedelta(seconds=i),
            registry="JP",
            issuance_id=f"JP-2016-{i:06d}",
            decision=DecisionRef(
                project_id="ID002", monitoring_period=Period(date(2015, 1, 1), date(2015, 9, 30))
            ),
            issued_on=date(2016, 5, 23),
            amount=27,
            account=Account(id="JP-GOV-001", type="government_holding"),
            blocks=(
                SerialBlock(start="JP-ID002-2015-000001", end="JP-ID002-2015-000027", quantity=27),
            ),
        )
        raw = sign_record(record, [key])
        out.append(raw)
        checked[raw] = Verification(
            record_id=hashlib.sha256(raw).hexdigest(), kind="issuance", record=record,
            signers=(Signer(key.key_id, "JP"),), required_nodes=frozenset({"JP"}),
        )  # fmt: skip
    return out, checked


def batches(envs: list[bytes], size: int) -> list[tuple[int, list[bytes]]]:
    return [(i, envs[i : i + size]) for i in range(0, len(envs), size)]


def bare(path: Path, envs: list[bytes], size: int) -> float:
    """Seconds to insert ``envs`` in transactions of ``size`` with plain executemany."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    t = time.perf_counter()
    for start, batch in batches(envs, size):
        conn.execute("BEGIN")
        rows = [(start + k, e) for k, e in enumerate(batch)]
        conn.executemany("INSERT INTO bare (id, data) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


async def ours(
    path: Path, envs: list[bytes], size: int, verify: Callable[[bytes], Verification]
) -> float:
    """Seconds to append ``envs`` through the store in batches of ``size``."""
    store = await open_store(f"sqlite:///{path}")
    try:
        await store.ensure_log(LOG)
        t = time.perf_counter()
        for start, batch in batches(envs, size):
            await store.append_entries(LOG, start, batch, verify)
        elapsed = time.perf_counter() - t
        assert (await store.tree_head(LOG)).size == len(envs)
    finally:
        await store.close()
    return elapsed


async def run(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.batches.split(",")]
    envs, checked = envelopes(args.n)
    avg = sum(map(len, envs)) // len(envs)
    print(f"{args.n:,} signed issuance envelopes of ~{avg} B; best of {args.rounds} rounds; "
          "WAL, synchronous=FULL on both sides")  # fmt: skip
    print(f"{'batch':>6} {'entries':>8} {'store /s':>10} {'bare /s':>10} {'ratio':>6}  target")
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        for size in sizes:
            # a batch of one pays one fsync per entry: fewer entries keep the run short
            count = min(args.n, max(size * 20, args.n // 10 if size < 10 else args.n))
            part = envs[:count]
            best_ours = best_bare = float("inf")
            for r in range(args.rounds):
                best_bare = min(best_bare, bare(Path(tmp) / f"bare-{size}-{r}.db", part, size))
                t = await ours(Path(tmp) / f"store-{size}-{r}.db", part, size, checked.__getitem__)
                best_ours = min(best_ours, t)
            ratio = best_bare / best_ours
            verdict = ("ok" if ratio >= TARGET else "MISS") if size == TARGET_BATCH else "-"
            print(
                f"{size:6} {count:8,} {count / best_ours:10,.0f} {count / best_bare:10,.0f} "
                f"{ratio:6.2f}  {'>= 0.5 ' + verdict if size == TARGET_BATCH else ''}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="envelopes to append")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best counts")
    parser.add_argument("--batches", default="1,10,100,500,5000", help="batch sizes to measure")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
