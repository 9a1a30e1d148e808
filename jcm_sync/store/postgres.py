"""The PostgreSQL store (``postgresql://user@host:5432/db``), through an asyncpg pool.

Why this module exists: Japan's hub keeps the logs of every partnership, receives pushes
from all partner agents at once and is run by people who back up and monitor PostgreSQL;
SQLite's single writer would serialise every partner behind the slowest.

Invariants and choices:

1. An append is one transaction that locks the log's head row (``SELECT ... FOR
   UPDATE``) before it writes: concurrent appends to one log serialise, appends to
   different logs do not. A normal commit is durable (PostgreSQL's WAL); nothing is
   acknowledged before it. It takes two round trips (ADRs 0045, 0049, 0054): the reads,
   one statement outside a transaction (``postgres_append.CALL_UNLOCKED_READS``): the
   head, the frontier of the size this store expects, the overlapped record ids and the
   probe for records already held (the hash index of ``log_entries.record_id``,
   migration 7), read again if the head has another size; then one simple query: the
   transaction begun, the head locked and compared with the one read, the entries by
   binary ``COPY`` (which maintains that index with the row; asyncpg sends the data
   without waiting for the server's answer), the stored nodes, the new head and
   ``COMMIT``. When another append moved the head since the reads, nothing was written:
   the append goes again the locked way, three round trips (``BEGIN`` with its ``SET
   LOCAL``s; the reads with the head locked, read again if the locked head differs from
   the expected size or from the statement's snapshot; the same write). The ``COPY``
   data is built while the reads are on their way, for the expected size, and again
   only when the reads say otherwise, and so is the tree grown from the frontier the
   last append here left, used only if the frontier read is equal; the append time is
   taken once, before the reads. Every connection is ready to append before it is used
   (``postgres_append`` rule 4): its session functions made and its reads called once
   for no log when it opens (the pool's ``init``), and again on the connection that made
   the tables once the migrations ran, so no first append compiles or plans them.
2. Query parameters of the URL other than libpq's own become server settings (asyncpg);
   ``?search_path=name`` puts the tables in schema ``name``, created if missing, which is
   how tests isolate themselves and how a hub can share a database.
3. The table layout is created and migrated (``migrations.py``) in one transaction begun
   under an advisory lock, so several processes opening one database do not race and a
   failed migration leaves the old layout.
4. asyncpg and connection errors are translated here, once, into ``StoreError`` naming the
   server (never its password); the hub answers them 503 with ``Retry-After``.
5. The store outlives a restart of PostgreSQL (ADR 0014): a connection an operation failed
   on for any reason other than an SQL error on a live session (connection lost, server
   shutting down, statement cancelled because the client went away) is terminated, never
   returned to the pool in an unknown state; the pool opens a fresh one on the next
   request. The pool keeps no minimum (``min_size=0``): connections are opened on demand,
   so during an outage nothing retries in the background and each request fails fast
   (refused connection) with a ``StoreError``. An append whose commit was lost with its
   connection is either committed or not; the agent's retry finds out from the replica's
   size, and re-sent entries already held are a no-op.
6. A state value (protocol rule 9) is replaced in one transaction (delete its chunks,
   insert the new ones); readers see the old value or the new one.
7. Trust marks (protocol rule 7) are judged and raised in one transaction holding
   ``trust_marks`` in EXCLUSIVE mode (readers go on), so two hubs opening one database
   with different chains serialise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import asyncpg
from asyncpg.exceptions import (
    InternalClientError,
    OperatorInterventionError,
    PostgresConnectionError,
)

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import JcmSyncError, StoreError
from jcm_sync.store import migrations, sparse, sql  # the modules, not the package face
from jcm_sync.store import postgres_append as wire
from jcm_sync.store.base import redact_url
from jcm_sync.store.planning import (
    AppendPlan,
    AppendState,
    PreparedEntry,
    check_head,
    plan_append,
    state_reads,
)
from jcm_sync.store.values import (
    Coord,
    LogRef,
    TrustMark,
)

__all__ = ["PostgresStore"]

POOL_MAX = 10
CONNECT_TIMEOUT_S = 10.0
SCHEMA_LOCK = 0x4A434D53  # "JCMS": the advisory lock taken while migrating
#: The format fields of the migrations' DDL for PostgreSQL.
DIALECT: Final = {
    "serial": "BIGSERIAL",
    "blob": "BYTEA",
    "time": "TIMESTAMPTZ",
    "without_rowid": "",
    "leaf_hash": "sha256(decode('00', 'hex') || e.envelope)",
    "id_key": "('x' || substr(record_id, 1, 16))::bit(64)::bigint",
    # migration 7 (ADR 0040, amendment): the ids in a hash index of the entries, which
    # COPY maintains with the row, instead of a row of record_ids each (heap tuple and
    # B-tree entry, one more statement); append times, written in order, in a BRIN index.
    "entries_by_record_id": (
        "CREATE INDEX IF NOT EXISTS log_entries_record_id ON log_entries USING hash (record_id)"
    ),
    "drop_keyed_ids": "TRUNCATE record_ids, middle_record_ids, recent_record_ids",
    "drop_entries_by_time": "DROP INDEX IF EXISTS log_entries_appended",
    "entries_by_time": (
        "CREATE INDEX IF NOT EXISTS log_entries_appended ON log_entries "
        "USING brin (log_id, appended_at) WITH (autosummarize = on)"
    ),
    # migration 8 changes SQLite's layout only (ADR 0044)
    **dict.fromkeys(migrations.ENTRIES_V8_FIELDS, ""),
}

#: The id tables PostgreSQL writes: none. Since migration 7 it finds a record id through
#: the hash index of ``log_entries.record_id`` (``PostgresStore.ID_KEYED`` is False); the
#: tables of ``sql.ID_TABLES`` stay, empty, so both dialects keep one set of tables.
ID_TABLES: Final[tuple[str, ...]] = ()


async def _no_reset(conn: Any) -> None:
    """The pool's reset of a released connection, beyond asyncpg's own rollback of an open
    transaction: none. The store leaves no session state (its locks and settings are
    transaction-scoped, it never listens), so ``RESET ALL`` and the rest cost a round trip
    per operation for nothing."""


_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@cache
def pg(text: str) -> str:
    """Number the ``?`` placeholders of the shared SQL as ``$1, $2, ...``."""
    parts = text.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


def _leaves_connection_usable(exc: BaseException) -> bool:
    """True for an error after which the connection is known to be in a clean state: one
    of ours (raised between statements) or an SQL error the server reported on a live
    session. A lost connection, a server shutting down, a cancelled or timed-out
    statement or a client-side protocol error may leave it mid-operation (rule 5)."""
    if isinstance(exc, JcmSyncError):
        return not isinstance(exc.__cause__, BaseException) or _leaves_connection_usable(
            exc.__cause__
        )
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, PostgresConnectionError | OperatorInterventionError
    )


def _schema_of(url: str) -> str | None:
    """The first schema of ``search_path`` in the URL, if it is a plain identifier."""
    values = parse_qs(urlsplit(url).query).get("search_path")
    if not values:
        return None
    first = values[0].split(",")[0].strip().strip('"')
    return first if _IDENT.match(first) else None


class PostgresStore(sql.SqlStore):
    """The ``Store`` in PostgreSQL; open it with ``await PostgresStore.open(url)``."""

    EPOCH = sql.POSTGRES_EPOCH
    ID_KEYED = False  # record ids through the hash index of log_entries (migration 7)

    @staticmethod
    def _time_arg(at: datetime) -> object:
        return at

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._where = redact_url(url)
        self._pool: Any = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        #: The frontier of each log after its last append here: the size the next append
        #: reads the frontier of (rule 1), and the frontier it grows while reading it.
        self._frontiers: dict[int, subtrees.Frontier] = {}

    def close_with(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the store closes: the connections of the limits and the
        job lock hub processes share through this database (``shared_limits``)."""
        self._closers.append(closer)

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        store = cls(url)
        async with store._translate("connecting"):
            store._pool = await asyncpg.create_pool(
                url,
                min_size=0,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT_S,
                reset=_no_reset,
                init=wire.open_session,
            )
        try:
            await store._create_schema()
        except BaseException:
            await store.close()
            raise
        return store

    @asynccontextmanager
    async def _translate(self, doing: str) -> AsyncIterator[None]:
        """Translate asyncpg and network errors into ``StoreError`` (rule 4)."""
        try:
            yield
        except JcmSyncError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError) as exc:
            raise StoreError(
                f"PostgreSQL failed {doing}: {type(exc).__name__}: {exc}", where=self._where
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise StoreError(
                f"cannot reach PostgreSQL while {doing}: {exc or type(exc).__name__}",
                where=self._where,
            ) from exc

    @asynccontextmanager
    async def _conn(self, doing: str) -> AsyncIterator[Any]:
        """A pooled connection; one an operation failed on is discarded (rule 5)."""
        if self._pool is None:
            raise StoreError("the store is closed", where=self._where)
        async with self._translate(doing):
            conn = await self._pool.acquire()
            try:
                yield conn
            except BaseException as exc:
                if not _leaves_connection_usable(exc):
                    conn.terminate()  # the pool replaces a closed connection on release
                raise
            finally:
                await self._pool.release(conn)

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pool.terminate()

    async def _create_schema(self) -> None:
        schema = _schema_of(self.url)
        async with self._conn("creating the tables") as conn:
            # locked before the transaction begins, so that it reads the catalog as the
            # last holder left it: a transaction that waited for the lock inside kept its
            # older catalog snapshot, and its CREATE SCHEMA IF NOT EXISTS failed (rule 3)
            await conn.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
            try:
                async with conn.transaction():
                    migrated = await self._migrate(conn, schema)
            finally:
                if not conn.is_closed():
                    await conn.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)
            if migrated:  # the pool's init found no tables to warm its reads on, or others
                await wire.warm_reads(conn)

    async def _migrate(self, conn: Any, schema: str | None) -> bool:
        """Bring the layout to ``migrations.SCHEMA_VERSION``; True if anything ran."""
        if schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for stmt in migrations.dialect_statements(migrations.BOOKKEEPING_DDL, **DIALECT):
            await conn.execute(stmt)
        found = await conn.fetchval(migrations.READ_SCHEMA_VERSION)
        steps = migrations.migration_steps(found, self._where, self._clock(), **DIALECT)
        for text, args in steps:
            await conn.execute(pg(text), *args)
        return bool(steps)

    async def _query(self, text: str, *args: object) -> list[Any]:
        async with self._conn("reading") as conn:
            return list(await conn.fetch(pg(text), *args))

    # -- primitives ----------------------------------------------------------------

    async def _lookup_log(self, log: LogRef, create: bool) -> tuple[int, str] | None:
        async with self._conn("looking up a log") as conn:
            row = await conn.fetchrow(pg(sql.LOOKUP_LOG), log.partnership, log.node)
            if row is None and create:
                await conn.execute(
                    pg(sql.INSERT_LOG), log.partnership, log.node, log.origin, merkle.EMPTY_ROOT
                )
                row = await conn.fetchrow(pg(sql.LOOKUP_LOG), log.partnership, log.node)
                if row is None:
                    raise StoreError(f"origin {log.origin!r} is already used by another log")
        return None if row is None else (int(row[0]), str(row[1]))

    async def _nodes_on(
        self, conn: Any, log_id: int, coords: Sequence[Coord], ids: Sequence[str] = ()
    ) -> tuple[dict[Coord, object], list[tuple[str, int]]]:
        """The wanted nodes, from the range reads of ``sparse.base_reads``, and the
        (record id, index) rows of the log holding ``ids``, in one query."""
        if not coords and not ids:
            return {}, []
        rows = await conn.fetch(wire.SQL_NODES, log_id, *wire.node_args(coords, ids))
        return await self._finish_nodes(conn, log_id, coords, rows)

    async def _finish_nodes(
        self, conn: Any, log_id: int, coords: Sequence[Coord], rows: Sequence[Any]
    ) -> tuple[dict[Coord, object], list[tuple[str, int]]]:
        """``SQL_NODES`` rows as the wanted nodes and the held (record id, index) rows."""
        found = {(r[0], r[1]): r[2] for r in rows if r[0] >= 0}
        held = [(r[3], r[1]) for r in rows if r[0] == -1]
        more = sparse.fallback_reads(coords, found)
        if more:  # rows of levels 4, 12... a store written before ADR 0046 lacks
            extra = await conn.fetch(wire.SQL_NODES, log_id, *wire.read_args(more, ()))
            found.update(((r[0], r[1]), r[2]) for r in extra if r[0] >= 0)
        return sparse.combine(coords, found, self._origin_of(log_id)), held

    async def _nodes(self, log_id: int, coords: Sequence[Coord]) -> dict[Coord, object]:
        async with self._conn("reading tree nodes") as conn:
            return (await self._nodes_on(conn, log_id, coords))[0]

    async def _append(
        self, log: LogRef, log_id: int, start: int | None, batch: list[PreparedEntry]
    ) -> AppendPlan:
        async with self._conn("appending") as conn:
            try:
                for locked in (False, True):  # the head locked first only if it moved
                    if locked:
                        if conn.is_in_transaction():
                            await conn.execute("ROLLBACK")
                        await conn.execute(wire.BEGIN_APPEND)
                    try:
                        plan = await self._append_in(conn, log, log_id, start, batch, locked)
                    except asyncpg.UndefinedFunctionError:
                        if locked:
                            raise
                        continue  # a session without its functions (no TEMP privilege)
                    if plan is not None:
                        return plan
            except BaseException as exc:
                # a connection in an unknown state is terminated instead (rule 5)
                if _leaves_connection_usable(exc) and conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
                raise
        raise StoreError("PostgreSQL moved the head of a log under an append holding its lock")

    async def _append_in(
        self,
        conn: Any,
        log: LogRef,
        log_id: int,
        start: int | None,
        batch: list[PreparedEntry],
        locked: bool,
    ) -> AppendPlan | None:
        """An append's reads and write (rule 1). Not ``locked`` (first): the reads are one
        statement outside a transaction (``CALL_UNLOCKED_READS``), and the write's first
        statement locks the head and compares it with the one read; None when another
        append moved it since, nothing written. ``locked``: in the transaction
        ``BEGIN_APPEND`` opened, the reads lock the head (``SQL_APPEND_READS``).

        The reads take one round trip when the log has the size last seen here (or
        ``start``), a second one when it had not (or, locked, when another writer appended
        while this one waited for the lock). While they are on their way the batch's COPY
        data is built as it will be if the log has the expected size and the batch starts
        there (``made``: the first index and the data); it is built again for the plan
        when it does not match. So is the tree grown, from the frontier the last append here
        left (``sparse.Grower``), used only if the frontier read is that one."""
        ids = [e.record_id for e in batch]
        known = self._frontiers.get(log_id)
        size = (start or 0) if known is None else known.size
        grower = sparse.Grower()
        at = self._clock()  # the entries' append time, one for the batch
        made: tuple[int, bytes] | None = None
        reading = wire.SQL_APPEND_READS if locked else wire.CALL_UNLOCKED_READS
        while True:
            coords, (lo, hi) = state_reads(size, start, len(batch))
            reads = asyncio.ensure_future(
                conn.fetch(reading, log_id, *wire.node_args(coords, ids), lo, max(lo, hi))
            )
            try:
                if made is None and start in (None, size):
                    await asyncio.sleep(0)  # the reads' first step sends them
                    made = size, wire.copy_data(log_id, size, batch, at)
                    if known is not None and known.size == size:
                        grower.ahead(known, [e.leaf_hash for e in batch])
            finally:
                rows = await reads
            seen = next(((r[1], r[2]) for r in rows if r[0] == -4), (None, None))
            head = check_head(
                log, *(next(((r[1], r[2]) for r in rows if r[0] == -3), seen) if locked else seen)
            )
            if head.size == size and seen[0] == size:
                break
            size = head.size  # locked, a fresh snapshot sees the append it waited for
        existing = {r[1]: r[3] for r in rows if r[0] == -2}
        frontier, held = await self._finish_nodes(conn, log_id, coords, rows)
        plan = plan_append(
            log, start, batch, AppendState(size, head.root, frontier, existing), grower
        )
        if plan.new:
            sql.check_not_held(log, plan, held)
            if made is None or made[0] != plan.first or len(plan.new) != len(batch):
                made = plan.first, wire.copy_data(log_id, plan.first, plan.new, at)
            read = {"log_id": int(log_id), "size": int(size), "root": wire.literal(head.root)}
            first = "" if locked else wire.BEGIN_IF_HEAD.format(**read)
            try:
                await self._write(conn, log, log_id, plan, made[1], first)
            except asyncpg.PostgresError as exc:
                if locked or exc.sqlstate != wire.HEAD_MOVED:
                    raise
                await conn.execute("ROLLBACK")
                return None
        elif locked:
            await conn.execute("COMMIT")
        if grower.grown is not None:
            self._frontiers[log_id] = grower.grown
        return plan

    async def _write(
        self, conn: Any, log: LogRef, log_id: int, plan: AppendPlan, data: bytes, first: str = ""
    ) -> None:
        """Write the plan and commit in one round trip (rule 1): ``first`` (the transaction
        begun and the head locked, if it is not yet), the entries by COPY (``data``), the
        stored nodes and the new head (through the session function ``jcm_write_head``
        after a ``first``), ``COMMIT`` (``wire.copy_then``). Duplicates were
        refused before, so a key violation aborts it for good."""
        rest = wire.write_rest(log_id, sparse.stored(plan.nodes), plan.size, plan.root, bool(first))
        text = first + wire.COPY_ENTRIES + rest
        try:
            status = await wire.copy_then(conn, text, data)
        except asyncpg.UniqueViolationError as exc:
            if exc.table_name != "log_entries":
                raise
            sql.refuse_append(log, plan, exc)
        if status != "COMMIT":
            raise StoreError(f"PostgreSQL ended an append with {status!r}, not COMMIT")

    async def _advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> list[TrustMark]:
        async with self._conn("recording the trust roots") as conn, conn.transaction():
            await conn.execute("LOCK TABLE trust_marks IN EXCLUSIVE MODE")
            held = await conn.fetch(sql.TRUST_MARKS)
            rising, writes = sql.trust_mark_writes(held, offered, self._clock())
            await conn.executemany(pg(sql.RAISE_TRUST_MARK), writes)
        return rising

    async def _put_state(self, key: str, chunks: list[bytes]) -> None:
        at = self._clock()
        async with self._conn("writing node state") as conn, conn.transaction():
            # Two writers of one key (the hub taking pushes at once) must not both find
            # the key's rows gone and both insert chunk 0: the second would fail on the
            # primary key. A lock per key, held to the end of the transaction, orders them.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)
            await conn.execute("DELETE FROM node_state WHERE key = $1", key)
            for n, chunk in enumerate(chunks):
                await conn.execute(pg(sql.INSERT_STATE), key, n, chunk, at)
