"""Append cost of the SQL stores, at a small log and after a large prefill, against a bare
``executemany`` of the same rows in the same run (ADR 0040).

The store appends already-verified envelopes (real signed issuance records; the verifier
hands back their verification with the bytes, as the hub's does, so the store takes the
record id and leaf hash it computed) with ``Store.append_entries`` in batches of 500: per
batch one transaction holding the entries, their recent ids, the stored tree nodes and the
new head. The baseline inserts the same envelope bytes with ``executemany`` into a plain
two-column table, one transaction per batch (SQLite: WAL and the store's own settings,
``sqlite.PRAGMAS``: ``synchronous=FULL``, the same memory map, and SQLite's default
checkpoint every 1000 WAL pages on both, so the baseline pays the checkpoints of its own
pages as the store pays those of its; PostgreSQL: the same server). Runs alternate; the best of
``--rounds`` counts.

Two figures per backend:

* ``10k``: to an empty log, so the log ends at 10,000 entries; best of ``--rounds``.
  Target: store / bare >= 0.35 on SQLite, >= 0.6 on PostgreSQL.
* ``prefilled``: to a log first filled with ``--prefill`` entries (default 100,000 so that
  ``make bench`` stays short; ``--prefill 1000000`` gives the issue's figure). The prefill
  is written by direct SQL in the store's own layout: entry rows with their leaf hashes,
  (on SQLite) every id in the id tables, the stored nodes of levels 4, 8... and the head,
  then the store checks the head against those nodes on its first append. SQLite's ids
  go through the store's own recent table and merges, interleaved with the entries, so the
  id tables are filled and placed in the file as appends leave them (ADR 0048), and the
  figure is the mean of one whole cycle of 262,144 appends (``sql.UPPER_IDS``), which pays
  one bulk merge into the large id table, 8 into the upper one and 64 into the middle one
  (ADR 0053). Target: at most 1.3 x the cost at 10k.

Each figure's store is opened before its clock starts, as a daemon opens its store once:
the SQLite store builds its in-memory filter of each log's record ids when it opens
(ADR 0058, 0.45 s for the 10^6 prefill), and that is not in the figures.

Informational: always exits 0.

    python bench/append.py [--n N] [--prefill P] [--rounds R] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from jcm_sync.core import merkle, subtrees
from jcm_sync.core.envelope import PrivateKey, sign_record
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, Period, SerialBlock
from jcm_sync.core.trust import Signer, Verification
from jcm_sync.store import LogRef, open_store, sparse, sql
from jcm_sync.store import sqlite as sqlite_store
from jcm_sync.store.postgres import pg

BATCH = 500
TARGETS = {"sqlite": 0.35, "postgres": 0.6}
GROWTH_TARGET = 1.3
LOG = LogRef("JP-ID", "JP", "jcm-sync.example/JP-ID/JP")
PG_URL = os.environ.get("JCM_SYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PREFILL_CHUNK = 50_000


def envelopes(n: int) -> tuple[list[bytes], dict[bytes, Verification]]:
    """``n`` signed issuance envelopes and their verifications (bytes included)."""
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
            signers=(Signer(key.key_id, "JP"),), required_nodes=frozenset({"JP"}), raw=raw,
        )  # fmt: skip
        _ = checked[raw].leaf_hash  # computed by the verifier, before the store sees it
    return out, checked


def batches(envs: list[bytes], offset: int = 0) -> list[tuple[int, list[bytes]]]:
    return [(offset + i, envs[i : i + BATCH]) for i in range(0, len(envs), BATCH)]


# --- the prefill: the store's layout written directly ------------------------------------


@dataclasses.dataclass
class Prefill:
    """The rows of a log of ``size`` synthetic entries, in the store's layout."""

    size: int
    root: bytes
    nodes: list[tuple[int, int, bytes]]

    @staticmethod
    def entry(i: int, like: bytes) -> bytes:
        """Entry ``i``: as long as a real envelope, distinct (the store never re-verifies)."""
        return like[:-12] + b"%012d" % i

    def rows(
        self, log_id: int, like: bytes, at: object, start: int, end: int
    ) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        for i in range(start, end):
            env = self.entry(i, like)
            rid = hashlib.sha256(env).hexdigest()
            out.append(
                (log_id, i, rid, "issuance", f"prefill/{i}", None, merkle.leaf_hash(env), env, at)
            )
        return out

    @classmethod
    def build(cls, size: int, like: bytes) -> Prefill:
        frontier = subtrees.Frontier.empty()
        nodes: list[tuple[int, int, bytes]] = []
        for start in range(0, size, PREFILL_CHUNK):
            end = min(size, start + PREFILL_CHUNK)
            leaves = [merkle.leaf_hash(cls.entry(i, like)) for i in range(start, end)]
            frontier, made = frontier.extend(leaves)
            nodes += [(n.level, n.index, n.hash) for n in sparse.stored(made)]
        return cls(size, frontier.root(), nodes)


def prefill_sqlite(path: Path, pre: Prefill, like: bytes) -> None:
    """The entries and ids in the order and with the statements of the store's own appends
    (``sql.INSERT_RECENT_ID``, ``sql.MERGE_IDS_SQLITE``, ``sql.merges_between``), a run of
    ``sql.RECENT_IDS`` at a time, so the id tables' pages are filled and placed in the file
    as appends leave them: ``record_ids`` grown by one bulk merge per ``sql.UPPER_IDS``
    entries, its pages
    among the entries' (ADR 0048: inserted sorted after all entries, they all lay past
    the first GiB of a 10^6 file, outside the store's memory map)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        log_id = conn.execute("SELECT id FROM logs").fetchone()[0]
        at = sql.epoch_us(datetime.now(UTC))  # as the store keeps it (migration 8)
        conn.execute("BEGIN")
        for start in range(0, pre.size, sql.RECENT_IDS):
            end = min(pre.size, start + sql.RECENT_IDS)
            rows = pre.rows(log_id, like, at, start, end)
            conn.executemany(sql.INSERT_ENTRY, rows)
            keys = sql.id_keys([str(row[2]) for row in rows])
            conn.executemany(
                sql.INSERT_RECENT_ID, [(k, log_id, i) for i, k in enumerate(keys, start)]
            )
            for merge in sql.merges_between(start, end):  # the merges an append makes
                for stmt in sql.MERGE_IDS_SQLITE[merge]:
                    conn.execute(stmt)
        conn.executemany(sql.INSERT_NODE, [(log_id, *n) for n in pre.nodes])
        conn.execute(sql.UPDATE_HEAD, (pre.size, pre.root, log_id))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def prefill_postgres(url: str, pre: Prefill, like: bytes) -> None:
    conn = await asyncpg.connect(url)
    try:
        log_id = await conn.fetchval("SELECT id FROM logs")
        at = datetime.now(UTC)
        async with conn.transaction():
            for start in range(0, pre.size, PREFILL_CHUNK):
                rows = pre.rows(log_id, like, at, start, min(pre.size, start + PREFILL_CHUNK))
                await conn.copy_records_to_table(
                    "log_entries", records=rows, columns=sql.ENTRY_COLUMNS
                )
            # PostgreSQL finds ids through a hash index of log_entries (postgres.ID_TABLES
            # is empty since migration 7): the COPY above filled it
            await conn.executemany(pg(sql.INSERT_NODE), [(log_id, *n) for n in pre.nodes])
            await conn.execute(pg(sql.UPDATE_HEAD), pre.size, pre.root, log_id)
        # a long-lived database, not one autovacuum is about to visit mid-measurement
        await conn.execute("VACUUM (ANALYZE) log_entries, log_nodes")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# --- one backend ---------------------------------------------------------------------


class Backend:
    """Where a round's store and bare table live; subclasses per database."""

    name = ""

    async def store_url(self, tag: str) -> str:
        raise NotImplementedError

    async def prefill(self, url: str, pre: Prefill, like: bytes) -> None:
        raise NotImplementedError

    async def bare(self, tag: str, envs: list[bytes]) -> float:
        """Seconds to insert ``envs`` in transactions of ``BATCH`` with plain executemany."""
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    async def store_url(self, tag: str) -> str:
        return f"sqlite:///{self.tmp / f'store-{tag}.db'}"

    async def prefill(self, url: str, pre: Prefill, like: bytes) -> None:
        prefill_sqlite(Path(url[len("sqlite:///") :]), pre, like)

    async def bare(self, tag: str, envs: list[bytes]) -> float:
        conn = sqlite3.connect(self.tmp / f"bare-{tag}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        for pragma in sqlite_store.PRAGMAS:  # the store's own settings
            conn.execute(pragma)
        conn.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        t = time.perf_counter()
        for start, batch in batches(envs):
            conn.execute("BEGIN")
            rows = [(start + k, e) for k, e in enumerate(batch)]
            conn.executemany("INSERT INTO bare (id, data) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t
        conn.close()
        return elapsed


class PostgresBackend(Backend):
    name = "postgres"
    insert = "INSERT INTO bare (id, data) VALUES ($1, $2)"

    def __init__(self) -> None:
        self.schemas: list[str] = []

    async def _schema(self) -> str:
        name = f"jcm_bench_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await conn.close()
        self.schemas.append(name)
        return name

    async def store_url(self, tag: str) -> str:
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}search_path={await self._schema()}"

    async def prefill(self, url: str, pre: Prefill, like: bytes) -> None:
        await prefill_postgres(url, pre, like)

    async def bare(self, tag: str, envs: list[bytes]) -> float:
        schema = await self._schema()
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            await conn.execute("CREATE TABLE bare (id BIGINT PRIMARY KEY, data BYTEA NOT NULL)")
            # prepared before the clock, as the store's connection prepares its reads when
            # it opens (ADR 0059): neither figure pays a first statement's preparation
            await conn.executemany(self.insert, [])
            t = time.perf_counter()
            for start, batch in batches(envs):
                async with conn.transaction():
                    rows = [(start + k, e) for k, e in enumerate(batch)]
                    await conn.executemany(self.insert, rows)
            return time.perf_counter() - t
        finally:
            await conn.close()

    async def close(self) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            for name in self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


async def ours(
    url: str, envs: list[bytes], offset: int, verify: Callable[[bytes], Any]
) -> list[float]:
    """Seconds of each batch of ``BATCH`` appending ``envs`` at ``offset`` through the store."""
    store = await open_store(url)
    times: list[float] = []
    try:
        await store.ensure_log(LOG)
        for start, batch in batches(envs, offset):
            t = time.perf_counter()
            await store.append_entries(LOG, start, batch, verify)
            times.append(time.perf_counter() - t)
        assert (await store.tree_head(LOG)).size == offset + len(envs)
    finally:
        await store.close()
    return times


async def measure(
    backend: Backend, args: argparse.Namespace, every: list[bytes], verify: Callable[..., Any]
) -> None:
    """The 10k figure: best of the rounds, each a fresh log taking its own ``--n``
    envelopes, as the bare inserts. The prefilled figure: the mean over one whole cycle
    of the id index (``sql.UPPER_IDS`` appends, from where the prefill left the id
    tables: one merge into ``record_ids`` and its share of smaller ones), the steady cost
    of a large log."""
    n = args.n
    best = best_bare = float("inf")
    for r in range(args.rounds):
        envs = every[r * n : (r + 1) * n]
        best_bare = min(best_bare, await backend.bare(f"{r}", envs))
        best = min(best, sum(await ours(await backend.store_url(f"e{r}"), envs, 0, verify)))
    us_10k, us_bare = best / n * 1e6, best_bare / n * 1e6
    target = TARGETS[backend.name]
    ratio = best_bare / best
    print(f"{backend.name:9} {n:>10,} {us_10k:9.1f} {us_bare:8.1f} {ratio:6.2f}"
          f"  >= {target}: {'ok' if ratio >= target else 'MISS'}")  # fmt: skip
    if not args.prefill:
        return
    pre = Prefill.build(args.prefill, every[0])
    url = await backend.store_url("prefilled")
    async with await open_store(url) as s:
        await s.ensure_log(LOG)
    t = time.perf_counter()
    await backend.prefill(url, pre, every[0])
    print(f"  {backend.name}: prefilled {pre.size:,} entries by direct SQL in "
          f"{time.perf_counter() - t:.1f} s", file=sys.stderr)  # fmt: skip
    cycle = every[: sql.UPPER_IDS]
    times = await ours(url, cycle, pre.size, verify)
    us = sum(times) / len(cycle) * 1e6
    crossing = (sql.UPPER_IDS - pre.size % sql.UPPER_IDS) // BATCH
    merge = max(0.0, times[crossing] - statistics.median(times))
    growth = us / us_10k
    verdict = "ok" if growth <= GROWTH_TARGET else "MISS"
    print(f"{backend.name:9} {pre.size:>10,} {us:9.1f} {us_bare:8.1f} {us_bare / us:6.2f}"
          f"  {growth:.2f} x the 10k cost, <= {GROWTH_TARGET}: {verdict} "
          f"(one cycle of {len(cycle):,} appends, its id merge {merge:.2f} s)")  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    envs, checked = envelopes(max(args.n * args.rounds, sql.UPPER_IDS))
    avg = sum(map(len, envs)) // len(envs)
    print(f"signed issuance envelopes of ~{avg} B appended in batches of {BATCH}; "
          f"best of {args.rounds} rounds; bare = executemany of the same bytes")  # fmt: skip
    print(f"{'backend':9} {'log size':>10} {'store µs':>9} {'bare µs':>8} {'ratio':>6}  target")
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        for name in args.backends.split(","):
            backend: Backend = SqliteBackend(Path(tmp)) if name == "sqlite" else PostgresBackend()
            try:
                await measure(backend, args, envs, checked.__getitem__)
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"{name:9} skipped: {type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(OSError):
                    await backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="entries appended per figure")
    parser.add_argument("--prefill", type=int, default=100_000, help="entries before (0: none)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best counts")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres or both")
    args = parser.parse_args(argv)
    if args.n < BATCH or args.prefill < 0 or args.rounds < 1:
        parser.error(f"need --n >= {BATCH}, --prefill >= 0 and --rounds >= 1")
    unknown = set(args.backends.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}: use sqlite, postgres")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
