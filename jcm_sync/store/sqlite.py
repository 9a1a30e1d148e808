"""The SQLite store (``sqlite:///relative.db``, ``sqlite:////absolute/path.db``): the default.

Why this module exists: a partner secretariat runs one agent beside its registry and should
not need a database server; SQLite in WAL mode is an embedded store that survives a crash.

Invariants and choices:

1. Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a commit is on disk (the
   WAL fsynced) before an append is acknowledged; a ``kill -9`` at any point loses nothing
   acknowledged and leaves no half-written append (tests/store/test_durability.py).
2. Every call to sqlite3 runs on one dedicated thread that owns the connection, through an
   executor, so the event loop never blocks on disk; a whole append (reads, plan, writes,
   commit) is one job on that thread, so no other job can see it half done.
3. Write transactions start with ``BEGIN IMMEDIATE``: the write lock is taken before the
   head is read, so two processes appending to one file serialise instead of forking.
4. ``sqlite3.Error`` is translated here, once, into ``StoreError`` naming the file.
5. Opening runs the pending schema migrations (``migrations.py``) in the same
   ``BEGIN IMMEDIATE`` transaction that reads the recorded version, so two processes
   opening one old file migrate it once.
6. A state value (protocol rule 9) is replaced in one ``BEGIN IMMEDIATE`` transaction:
   a ``kill -9`` leaves the old value or the new one, never part of either.
7. Trust marks (protocol rule 7) are judged and raised in one ``BEGIN IMMEDIATE`` transaction,
   so two processes opening one file with different chains cannot both pass.
8. Migrations 6 and 8 compute leaf hashes, id keys and append times in SQL with
   ``FUNCTIONS``, registered on the connection before the migrations run (ADR 0040,
   0044). ``appended_at`` is integer microseconds since the epoch (``sql.epoch_us``).
9. Appends and state values share transactions (``group_commit``, ADR 0043): the writes
   queued while the thread is busy run in one ``BEGIN IMMEDIATE ... COMMIT``, each under
   its own savepoint (a refused append rolls back alone), and none is answered before
   that COMMIT returned.
10. The held-id probe (invariant 2 of base.py) asks SQLite only about the new ids the
    store's in-memory filter of each log's id keys cannot rule out (``id_filter``, ADR
    0058): built for every log in one read snapshot when the store opens, kept up to date
    by every append, and brought up to date from ``log_entries`` when another connection
    committed (``PRAGMA data_version``).
11. An append reads no tree nodes when the head it reads under the write lock is the one
    this store's own last append to the log left and no other connection committed since
    (``PRAGMA data_version``): it grows the frontier that append grew (``sparse.Frontiers``,
    ADR 0062). A tree of one size and root has one frontier, so the nodes it would read
    are that frontier's; any other head, or another connection's commit, is read from the
    stored nodes and checked against the root as before.
12. The original content of the pages a job's savepoint (rule 9) or a statement changes
    is kept in memory (``SUBJOURNALS``, set once the migrations ran): SQLite writes it
    to a temporary file, created and deleted in each transaction, once past 64 KiB, and
    a batch of 50 passed that. It serves only a rollback to the savepoint inside the
    transaction; a crash is recovered from the WAL (rule 1), so durability is unchanged.
    A transaction with an append expected to merge ids into ``record_ids`` (the log's
    size as last seen here crossing a multiple of ``sql.UPPER_IDS``) keeps them in the
    file instead: that merge rewrites most of the table's pages, all logs' ids, and
    memory would hold them all until COMMIT (set before BEGIN, ``group_commit`` rule 7).
    A log's first append at its end (``start`` None) since the store opened, its size
    not seen yet, is not expected to merge. The same setting keeps in memory what a read
    sorts past the page cache: a record search's ORDER BY (no more than the rows it
    returns, which its caller holds anyway) and ``APPEND_COUNTS``' GROUP BY (one small key
    per entry of its window).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import JcmSyncError, NotFoundError, StoreError
from jcm_sync.store import migrations, sparse, sql
from jcm_sync.store.base import check_state_key
from jcm_sync.store.group_commit import GroupCommitter
from jcm_sync.store.id_filter import IdFilters, data_version
from jcm_sync.store.log_view import LogView, RawView, checked_view
from jcm_sync.store.planning import (
    AppendPlan,
    AppendState,
    PreparedEntry,
    check_head,
    overlap,
    plan_append,
)
from jcm_sync.store.values import (
    Coord,
    LogRef,
    TrustMark,
)
from jcm_sync.store.witnessing import COSIGNATURES

__all__ = ["SqliteStore", "path_of_url", "register_functions"]

T = TypeVar("T")

#: The format fields of the migrations' DDL for SQLite.
DIALECT: Final = {
    "serial": "INTEGER",
    "blob": "BLOB",
    "time": "TEXT",
    "without_rowid": " WITHOUT ROWID",
    "leaf_hash": "jcm_leaf_hash(e.envelope)",
    "id_key": "jcm_id_key(record_id)",
    # migration 7 changes PostgreSQL's layout only
    "entries_by_record_id": "",
    "drop_keyed_ids": "",
    "drop_entries_by_time": "",
    "entries_by_time": "",
    # migration 8: append times as integer microseconds (ADR 0044)
    **migrations.SQLITE_V8,
}
#: The SQL functions migrations 6 and 8 compute leaf hashes, id keys and append times with.
SqlValue = bytes | int | float | str | None
"""A value SQLite hands a registered function, or takes back."""
FUNCTIONS: Final[dict[str, Callable[[Any], SqlValue]]] = {
    "jcm_leaf_hash": lambda envelope: merkle.leaf_hash(bytes(envelope)),
    "jcm_id_key": lambda record_id: sql.id_key(str(record_id)),
    "jcm_epoch_us": lambda text: epoch_us_of_text(text),
}
#: The batch's id keys, one JSON array parameter.
HELD_IDS: Final = sql.HELD_IDS.format(keys=sql.SQLITE_KEYS)


def epoch_us_of_text(value: SqlValue) -> SqlValue:
    """Migration 8's conversion of an ISO 8601 append time to ``sql.epoch_us``; anything
    else is kept as it is, for a read to report as corrupt (``check_entry``)."""
    if isinstance(value, str):
        try:
            return sql.epoch_us(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def register_functions(conn: sqlite3.Connection) -> None:
    """Give ``conn`` the functions of ``FUNCTIONS`` (the migrations' ``{leaf_hash}``...)."""
    for name, fn in FUNCTIONS.items():
        conn.create_function(name, 1, fn, deterministic=True)


BUSY_TIMEOUT_S = 30.0
"""How long to wait for another process's write lock before failing."""
MMAP_BYTES: Final = 1 << 30
"""Pages read through a memory map, not a read system call each: an append probes the id
index once per entry, at random pages of an index larger than SQLite's page cache (ADR
0040). Address space only; the pages are the operating system's file cache."""
PRAGMAS: Final = ("PRAGMA synchronous=FULL", f"PRAGMA mmap_size={MMAP_BYTES}")
"""Every store connection's settings after ``journal_mode=WAL`` (invariant 1); the WAL is
checkpointed by SQLite's own default (``wal_autocheckpoint``, 1000 pages). The bare baseline
of bench/append.py takes these very settings."""
SUBJOURNALS: Final = {False: "PRAGMA temp_store=MEMORY", True: "PRAGMA temp_store=FILE"}
"""Where the savepoints of a group's jobs keep the pages they would roll back (rule 12):
in memory, not a temporary file each transaction (ADR 0062); in the file SQLite's default
spills them to past 64 KiB for a transaction expected to merge ids into ``record_ids``."""
#: The merge of ``sql.ID_MERGES`` that rewrites most pages of the largest id table.
RECORD_IDS_MERGE: Final = sql.ID_MERGES[-1]


def path_of_url(url: str) -> str:
    """The file of a ``sqlite:///`` URL, in SQLAlchemy's convention.

    ``sqlite:///data/jp.db`` is relative to the working directory and
    ``sqlite:////var/lib/jcm-sync/jp.db`` absolute; an in-memory database is refused,
    since a store must survive the process.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(
            "a SQLite store URL is sqlite:///relative/file.db or sqlite:////absolute/file.db",
            where=url,
        )
    path = url[len(prefix) :]
    if path == ":memory:" or "?" in path or "#" in path:
        raise StoreError("a SQLite store must be a plain file path", where=url)
    return path


class SqliteStore(sql.SqlStore):
    """The ``Store`` in a SQLite file; open it with ``await SqliteStore.open(url)``."""

    #: ``appended_at`` as integer microseconds since the epoch (migration 8, ADR 0044)
    _entry_time = staticmethod(sql.epoch_us)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = path_of_url(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jcm-sync-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._group = GroupCommitter(self._executor, self._db, before=self._subjournals)
        self._ids = IdFilters()
        self._frontiers = sparse.Frontiers()
        self._heavy = False
        """Whether the connection's rollback pages go to a file (rule 12)."""

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        store = cls(url)
        try:
            await store._call(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    # -- the thread --------------------------------------------------------------

    async def _call(
        self, fn: Callable[..., T], *args: Any, group: int = 0, heavy: bool = False
    ) -> T:
        """Run ``fn(*args)`` on the store's thread; translate sqlite3 errors (rule 4).

        With ``group`` (the job's weight, its entries), ``fn`` runs inside a transaction
        shared with the write jobs queued meanwhile, under its own savepoint, and this
        returns once that transaction committed (rule 9, ``group_commit``); ``heavy``:
        the job is expected to merge ids into ``record_ids`` (rule 12)."""
        if self._closed:
            raise StoreError("the store is closed", where=self.path)
        loop = asyncio.get_running_loop()
        try:
            if group:
                return await self._group.run(lambda: fn(*args), group, heavy=heavy)
            return await loop.run_in_executor(self._executor, lambda: fn(*args))
        except JcmSyncError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite failed: {exc}", where=self.path) from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed", where=self.path)
        return self._conn

    def _connect(self) -> None:
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise NotFoundError(f"directory {parent} does not exist", where=self.path)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise self._open_error(parent, exc) from None
        try:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                raise self._open_error(parent, exc) from None
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"cannot switch the database to WAL (mode {mode})", where=self.path
                )
            for pragma in PRAGMAS:
                conn.execute(pragma)
            register_functions(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in migrations.dialect_statements(migrations.BOOKKEEPING_DDL, **DIALECT):
                    conn.execute(stmt)
                row = conn.execute(migrations.READ_SCHEMA_VERSION).fetchone()
                at = self._clock().isoformat()
                for text, args in migrations.migration_steps(
                    None if row is None else row[0], self.path, at, **DIALECT
                ):
                    conn.execute(text, args)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("BEGIN")  # one snapshot of the heads and ids (rule 10)
            try:
                self._ids.load(conn)
            finally:
                conn.execute("COMMIT")
            conn.execute(SUBJOURNALS[False])  # after the migrations' sorts (rule 12)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _open_error(self, parent: Path, exc: sqlite3.Error) -> StoreError:
        """Rule 4 for the first touch of the file: say which directory or file is the cause."""
        text = str(exc)
        if "unable to open" in text or "readonly" in text:
            if not os.access(parent, os.W_OK | os.X_OK):
                return StoreError(
                    f"cannot open the database: directory {parent} is not writable "
                    "(SQLite creates the database and its -wal and -shm files there)",
                    where=self.path,
                )
            return StoreError(
                f"cannot open the database: the file or directory {parent} is not "
                f"writable or not a database ({text})",
                where=self.path,
            )
        return StoreError(f"SQLite failed: {text}", where=self.path)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        loop = asyncio.get_running_loop()
        if conn is not None:
            try:
                await loop.run_in_executor(self._executor, conn.close)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite failed to close: {exc}", where=self.path) from exc
            finally:
                self._executor.shutdown(wait=False)
        else:
            self._executor.shutdown(wait=False)

    def _rows(self, text: str, args: Sequence[object]) -> list[Any]:
        return self._db().execute(text, tuple(args)).fetchall()

    async def _query(self, text: str, *args: object) -> list[Any]:
        return await self._call(self._rows, text, args)

    # -- primitives ----------------------------------------------------------------

    def _lookup_sync(self, log: LogRef, create: bool) -> tuple[int, str] | None:
        db = self._db()
        row = db.execute(sql.LOOKUP_LOG, (log.partnership, log.node)).fetchone()
        if row is None and create:
            db.execute(sql.INSERT_LOG, (log.partnership, log.node, log.origin, merkle.EMPTY_ROOT))
            row = db.execute(sql.LOOKUP_LOG, (log.partnership, log.node)).fetchone()
            if row is None:
                raise StoreError(f"origin {log.origin!r} is already used by another log")
        return None if row is None else (int(row[0]), str(row[1]))

    async def _lookup_log(self, log: LogRef, create: bool) -> tuple[int, str] | None:
        return await self._call(self._lookup_sync, log, create)

    def _nodes_sync(self, log_id: int, coords: Sequence[Coord]) -> dict[Coord, object]:
        """The wanted nodes, from the few range reads of ``sparse.base_reads``."""
        db = self._db()
        rows: dict[Coord, object] = {}
        reads = sparse.base_reads(coords)
        for _ in range(2):  # a second round only for rows an older store lacks
            for level, lo, hi in reads:
                if level == 0:
                    found = db.execute(sql.LEAF_RANGE, (log_id, lo, hi))
                else:
                    found = db.execute(sql.NODE_RANGE, (log_id, level, lo, hi))
                rows.update(((level, idx), value) for idx, value in found)
            reads = sparse.fallback_reads(coords, rows)
            if not reads:
                break
        return sparse.combine(coords, rows, self._origin_of(log_id))

    async def _nodes(self, log_id: int, coords: Sequence[Coord]) -> dict[Coord, object]:
        return await self._call(self._nodes_sync, log_id, coords)

    def _head_nodes_sync(
        self, log_id: int, coords: Sequence[Coord]
    ) -> tuple[object, object, dict[Coord, object]]:
        size, root = self._db().execute(sql.HEAD, (log_id,)).fetchone() or (None, None)
        return size, root, (self._nodes_sync(log_id, coords) if coords else {})

    async def _head_and_nodes(
        self, log_id: int, coords: Sequence[Coord]
    ) -> tuple[object, object, dict[Coord, object]]:
        """A proof's reads in one job on the store's thread (ADR 0046)."""
        return await self._call(self._head_nodes_sync, log_id, coords)

    def _view_sync(self, log_id: int, checkpoint: bool, state_key: str | None) -> RawView:
        db = self._db()
        head = db.execute(sql.HEAD, (log_id,)).fetchone()
        held = db.execute(sql.CHECKPOINT_LATEST, (log_id,)).fetchone() if checkpoint else None
        cosigned = db.execute(COSIGNATURES, (log_id, held[0])).fetchall() if held else []
        state = None if state_key is None else db.execute(sql.STATE_CHUNKS, (state_key,)).fetchall()
        return head, held, cosigned, state

    async def log_view(
        self, log: LogRef, *, checkpoint: bool = True, state_key: str | None = None
    ) -> LogView:
        """The view's reads in one job on the store's thread (ADR 0050)."""
        if state_key is not None:
            check_state_key(state_key)
        raw = await self._call(self._view_sync, await self._log_id(log), checkpoint, state_key)
        return checked_view(log, raw, state_key)

    def _append_sync(
        self, log: LogRef, log_id: int, start: int | None, batch: list[PreparedEntry]
    ) -> AppendPlan:
        """An append's reads, plan and writes, inside the group's transaction (rule 9)."""
        db = self._db()
        version = data_version(db)  # under the write lock (rules 10 and 11)
        head = check_head(log, *(db.execute(sql.HEAD, (log_id,)).fetchone() or (None, None)))
        known = self._frontiers.get(log_id, head.size, head.root, version)
        lo, hi = overlap(head.size, start, len(batch))
        rows = db.execute(sql.RECORD_IDS, (log_id, lo, hi)).fetchall() if lo < hi else []
        coords = [] if known is not None else subtrees.Frontier.coordinates(head.size)
        nodes = self._nodes_sync(log_id, coords) if coords else {}
        state = AppendState(head.size, head.root, nodes, dict(rows), known)
        grower = sparse.Grower()
        plan = plan_append(log, start, batch, state, grower)
        if plan.new:
            self._write_sync(log, log_id, plan, version)
        if grower.grown is not None:
            self._frontiers.put(log_id, version, grower.grown, plan.root)
        return plan

    def _write_sync(self, log: LogRef, log_id: int, plan: AppendPlan, version: int) -> None:
        db = self._db()
        entries, nodes, ids = sql.append_rows(log_id, plan, sql.epoch_us(self._clock()))
        txn = self._group.groups  # the transaction this job runs in (rule 10)
        keys = [row[0] for row in ids]
        maybe = self._ids.maybe_held(db, log_id, plan.first, keys, txn, version)
        if maybe:  # only keys the filter cannot rule out are probed
            probe = json.dumps(sorted(maybe))  # index order: neighbouring pages
            held = db.execute(HELD_IDS, (probe, log_id) * len(sql.ID_TABLES))
            sql.check_not_held(log, plan, held)
        try:
            for text, values in sql.entry_inserts(entries):
                db.execute(text, values)
        except sqlite3.IntegrityError as exc:
            sql.refuse_append(log, plan, exc)
        db.executemany(sql.INSERT_NODE, nodes)
        db.execute(sql.INSERT_RECENT_IDS_SQLITE, (log_id, plan.first, json.dumps(keys)))
        for merge in sql.merges_between(plan.first, plan.size):
            for stmt in sql.MERGE_IDS_SQLITE[merge]:
                db.execute(stmt)
        db.execute(sql.UPDATE_HEAD, (plan.size, plan.root, log_id))

    async def _append(
        self, log: LogRef, log_id: int, start: int | None, batch: list[PreparedEntry]
    ) -> AppendPlan:
        first = self._frontiers.size(log_id)  # the log's size as last seen here
        first = start if first is None else first
        heavy = first is not None and RECORD_IDS_MERGE in sql.merges_between(
            first, first + len(batch)
        )
        return await self._call(
            self._append_sync, log, log_id, start, batch, group=len(batch) or 1, heavy=heavy
        )

    def _subjournals(self, heavy: bool) -> None:
        """Before a group's BEGIN: its rollback pages in memory, or in a file if one of its
        jobs is expected to merge ids into ``record_ids`` (rule 12)."""
        if heavy != self._heavy:
            self._db().execute(SUBJOURNALS[heavy])
            self._heavy = heavy

    def _advance_sync(self, offered: Mapping[str, Sequence[TrustMark]]) -> list[TrustMark]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            held = db.execute(sql.TRUST_MARKS).fetchall()
            rising, writes = sql.trust_mark_writes(held, offered, self._clock().isoformat())
            db.executemany(sql.RAISE_TRUST_MARK, writes)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return rising

    async def _advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> list[TrustMark]:
        return await self._call(self._advance_sync, offered)

    def _put_state_sync(self, key: str, chunks: list[bytes]) -> None:
        """Inside a group's transaction (rules 6 and 9): the old value or the new one."""
        db = self._db()
        at = self._clock().isoformat()
        db.execute("DELETE FROM node_state WHERE key = ?", (key,))
        for n, chunk in enumerate(chunks):
            db.execute(sql.INSERT_STATE, (key, n, chunk, at))

    async def _put_state(self, key: str, chunks: list[bytes]) -> None:
        await self._call(self._put_state_sync, key, chunks, group=1)
