"""The PostgreSQL append on the wire (``store/postgres_append.py``, ADRs 0049 and 0054): the
binary COPY data the store builds itself is what asyncpg's own encoders would have sent,
the one simple query that copies the entries, writes the nodes and the head and commits
is all or nothing, an append to an unmoved head takes two round trips, and the COPY data
built and the tree grown during the reads are used only when they fit.

Runs against the real server of ``tests/store/conftest.py``.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import StoreError
from jcm_sync.store import open_store, postgres_append, sparse, sql
from jcm_sync.store.planning import PreparedEntry
from jcm_sync.store.postgres import PostgresStore
from jcm_sync.store.postgres_append import copy_data
from jcm_sync.store.sparse import grow
from tests.store import World
from tests.store.conftest import PG_URL, drop_schema, make_schema, skip_without_pg

COLUMNS = ", ".join(sql.ENTRY_COLUMNS)
TABLE = (
    "CREATE TABLE {name} (log_id BIGINT, idx BIGINT, record_id TEXT, kind TEXT, key TEXT, "
    "supersedes TEXT, leaf_hash BYTEA, envelope BYTEA, appended_at TIMESTAMPTZ)"
)


@pytest.fixture
async def conn(pg_reachable: str | None) -> AsyncIterator[asyncpg.Connection]:
    skip_without_pg(pg_reachable)
    schema = await make_schema()
    c = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        yield c
    finally:
        await c.close()
        await drop_schema(schema)


def _entry(n: int, kind: str, key: str, supersedes: str | None) -> PreparedEntry:
    envelope = b'{"n": %d, "padding": "%s"}' % (n, b"x" * (n * 37 % 900))
    rid = merkle.leaf_hash(envelope).hex()  # any 64 hex digits
    return PreparedEntry(
        envelope, rid, merkle.leaf_hash(envelope), kind, key, "JP", supersedes, "JP-ID"
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 12, 1, 21, 37, 48, 123456, tzinfo=UTC),
        datetime(2016, 5, 23, 9, 0, 0, 1, tzinfo=timezone(timedelta(hours=9))),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
        datetime(2026, 12, 1, 21, 37, 48, 5),  # naive: local time, as asyncpg takes it
    ],
    ids=["utc", "tokyo", "before-2000", "naive"],
)
async def test_copy_data_is_what_asyncpg_would_send(conn: asyncpg.Connection, at: datetime) -> None:
    """Rows COPYed from ``copy_data`` read back exactly as the same rows COPYed by
    asyncpg's ``copy_records_to_table``: every column, NULL and non-ASCII text included."""
    entries = [
        _entry(0, "issuance", "JP/JP-2016-000000", None),
        _entry(1, "transfer", "JP/東京-1", "ab" * 32),
        _entry(2, "issuance", "JP/JP-2016-000002", None),
        _entry(3, "revocation", "", "cd" * 32),
    ]
    await conn.execute(TABLE.format(name="by_asyncpg"))
    await conn.execute(TABLE.format(name="by_store"))
    await conn.copy_records_to_table(
        "by_asyncpg",
        records=[
            (7, i, e.record_id, e.kind, e.key, e.supersedes, e.leaf_hash, e.envelope, at)
            for i, e in enumerate(entries, 40)
        ],
        columns=sql.ENTRY_COLUMNS,
    )
    await conn.copy_to_table(
        "by_store",
        source=io.BytesIO(copy_data(7, 40, entries, at)),
        columns=sql.ENTRY_COLUMNS,
        format="binary",
    )
    want = await conn.fetch(f"SELECT {COLUMNS} FROM by_asyncpg ORDER BY idx")
    got = await conn.fetch(f"SELECT {COLUMNS} FROM by_store ORDER BY idx")
    assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert len(got) == 4
    assert got[1]["key"] == "JP/東京-1"
    assert got[0]["supersedes"] is None
    assert got[0]["appended_at"] == at.astimezone(UTC)


@pytest.mark.postgres
async def test_copy_data_of_no_entries_is_an_empty_copy(conn: asyncpg.Connection) -> None:
    await conn.execute(TABLE.format(name="empty"))
    status = await conn.copy_to_table(
        "empty",
        source=io.BytesIO(copy_data(1, 0, [], datetime.now(UTC))),
        columns=sql.ENTRY_COLUMNS,
        format="binary",
    )
    assert status == "COPY 0"


@pytest.mark.postgres
async def test_a_write_refused_after_the_copy_leaves_nothing(pg_url: str, world: World) -> None:
    """The entries' COPY, the node rows, the head and the COMMIT are one simple query: when
    a statement after the COPY fails (here a stray node row where the append writes one),
    the entries already copied are rolled back with it, the append is a StoreError, and
    the connection and the log serve the next append."""
    envs = world.envelopes("JP", 16)  # completes the level-4 node (4, 0)
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        await s.ensure_log(world.jp_log)
        log_id = (await s._query("SELECT id FROM logs"))[0][0]
        stray = "INSERT INTO log_nodes (log_id, level, idx, hash) VALUES (?, 4, 0, ?)"
        await s._query(stray, log_id, bytes(32))
        with pytest.raises(StoreError, match="UniqueViolationError"):
            await s.append_entries(world.jp_log, 0, envs, world.verify)
        assert (await s._query("SELECT count(*) FROM log_entries"))[0][0] == 0
        assert (await s.tree_head(world.jp_log)).size == 0
        await s._query("DELETE FROM log_nodes")
        done = await s.append_entries(world.jp_log, 0, envs, world.verify)
        assert (done.appended, done.size) == (16, 16)
        assert done.root == merkle.root([merkle.leaf_hash(e) for e in envs])
        assert [e.envelope for e in await s.entries(world.jp_log)] == envs


@pytest.mark.postgres
async def test_the_copy_data_built_during_the_reads_is_written_only_when_it_fits(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append builds its COPY data while its reads are on their way, for the size the
    store expects, and writes that data when the reads confirm it; when another store
    appended meanwhile, or the batch overlaps held entries, the data is built for the
    plan instead, and every entry lands at its own index with its own append time."""
    firsts: list[int] = []

    def counted(log_id: int, first: int, entries: Sequence[PreparedEntry], at: datetime) -> bytes:
        firsts.append(first)
        return copy_data(log_id, first, entries, at)

    monkeypatch.setattr(postgres_append, "copy_data", counted)
    envs, log = world.envelopes("JP", 9), world.jp_log
    times = iter(datetime(2026, 12, 2, 0, 0, n, tzinfo=UTC) for n in range(10))
    async with await open_store(pg_url) as a, await open_store(pg_url) as b:
        for store in (a, b):
            monkeypatch.setattr(store, "_clock", lambda: next(times))
        await a.append_entries(log, None, envs[0:2], world.verify)  # 0, as expected
        await a.append_entries(log, 2, envs[2:4], world.verify)  # 2, as expected
        assert firsts == [0, 2]
        await b.append_entries(log, None, envs[4:6], world.verify)  # b expected 0, not 4
        assert firsts == [0, 2, 0, 4]
        await a.append_entries(log, 3, envs[3:7], world.verify)  # overlaps entry 3
        assert firsts == [0, 2, 0, 4, 6]
        entries = await b.entries(log)
    assert [e.envelope for e in entries] == envs[:7]
    assert [e.appended_at.second for e in entries] == [0, 0, 1, 1, 2, 2, 3]


@pytest.mark.postgres
async def test_the_tree_grown_during_the_reads_is_used_only_from_the_frontier_read(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While its reads are on their way an append also grows the tree from the frontier
    the last append of this store left; the plan uses that only when the frontier read
    is equal (one growth an append), and grows again from the one read when another
    store appended meanwhile; the heads are the roots of every entry held."""
    grown: list[tuple[int, int]] = []

    def counted(frontier: subtrees.Frontier, leaves: Sequence[bytes]) -> Any:
        grown.append((frontier.size, len(leaves)))
        return grow(frontier, leaves)

    monkeypatch.setattr(sparse, "grow", counted)
    envs, log = world.envelopes("JP", 9), world.jp_log
    async with await open_store(pg_url) as a, await open_store(pg_url) as b:
        await a.append_entries(log, None, envs[0:2], world.verify)  # nothing known yet
        await a.append_entries(log, None, envs[2:5], world.verify)  # grown ahead, used
        assert grown == [(0, 2), (2, 3)]
        await b.append_entries(log, None, envs[5:6], world.verify)  # b expected 0: no ahead
        assert grown == [(0, 2), (2, 3), (5, 1)]
        await a.append_entries(log, None, envs[6:9], world.verify)  # a expected 5, read 6
        assert grown == [(0, 2), (2, 3), (5, 1), (5, 3), (6, 3)]
        head = await b.tree_head(log)
        assert [e.envelope for e in await b.entries(log)] == envs
    assert head.root == merkle.root([merkle.leaf_hash(e) for e in envs])


@pytest.mark.postgres
async def test_an_append_to_an_unmoved_head_reads_then_writes_without_begin(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no other writer, an append is two round trips: the session function's reads,
    then one query that begins, checks the head it read, copies, writes and commits; the
    locked way's ``BEGIN`` is never sent (here it would fail). On a new connection (the
    server killed the old one) the session functions are made again."""
    monkeypatch.setattr(postgres_append, "BEGIN_APPEND", "SELECT 1 / 0")
    sent: list[str] = []
    copy_then = postgres_append.copy_then

    async def recorded(conn: asyncpg.Connection, text: str, data: bytes) -> str:
        sent.append(text)
        return await copy_then(conn, text, data)

    monkeypatch.setattr(postgres_append, "copy_then", recorded)
    envs = world.envelopes("JP", 6)
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        await s.append_entries(world.jp_log, None, envs[:3], world.verify)
        pid = (await s._query("SELECT pg_backend_pid()"))[0][0]
        admin = await asyncpg.connect(PG_URL)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
        finally:
            await admin.close()
        # the killed connection fails one call and is discarded, or the pool saw it closed
        # first (the backend has exited: the test once assumed the call always failed)
        (first,) = await asyncio.gather(s._query("SELECT 1"), return_exceptions=True)
        assert not isinstance(first, BaseException) or isinstance(first, StoreError), first
        assert (await s._query("SELECT pg_backend_pid()"))[0][0] != pid
        done = await s.append_entries(world.jp_log, None, envs[3:], world.verify)
        assert (done.appended, done.size) == (3, 6)
        assert [e.envelope for e in await s.entries(world.jp_log)] == envs
    assert len(sent) == 2
    assert all(t.startswith("BEGIN; SELECT pg_temp.jcm_head_is(") for t in sent)
    assert all("; SELECT pg_temp.jcm_write_head(" in t for t in sent)
    assert not any("INSERT INTO log_nodes" in t or "UPDATE logs" in t for t in sent)


@pytest.mark.postgres
async def test_a_session_without_its_functions_appends_the_locked_way(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the session functions are missing (a role refused temporary objects makes
    none), an append fails over to the locked way, from the reads or from the write, and
    lands; the next append on that connection too."""
    envs, ways = world.envelopes("JP", 12), list[list[bool]]()
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        append_in = s._append_in

        async def recorded(*args: Any) -> object:
            ways[-1].append(args[-1])
            return await append_in(*args)

        monkeypatch.setattr(s, "_append_in", recorded)
        ways.append([])
        await s.append_entries(world.jp_log, None, envs[:3], world.verify)
        ways.append([])
        await s._query(
            "DROP FUNCTION pg_temp.jcm_write_head(bigint, int[], bigint[], bytea[], bigint, bytea)"
        )
        done = await s.append_entries(world.jp_log, None, envs[3:6], world.verify)
        assert done.size == 6
        ways.append([])
        await s._query("DROP FUNCTION pg_temp.jcm_head_is(bigint, bigint, bytea)")
        done = await s.append_entries(world.jp_log, None, envs[6:9], world.verify)
        assert done.size == 9
        signature = "bigint, int[], bigint[], bigint[], bigint[], bigint[], text, bigint, bigint"
        await s._query(f"DROP FUNCTION pg_temp.jcm_append_reads({signature})")
        ways.append([])
        done = await s.append_entries(world.jp_log, None, envs[9:], world.verify)
        assert (done.appended, done.size) == (3, 12)
        assert [e.envelope for e in await s.entries(world.jp_log)] == envs
        assert done.root == merkle.root([merkle.leaf_hash(e) for e in envs])
    assert ways == [[False], [False, True], [False, True], [False, True]]


async def test_a_role_refused_temporary_objects_opens_connections_without_them() -> None:
    """``define_functions`` on a connection whose role may not create temporary objects
    makes nothing and raises nothing; any other error is raised."""

    class Refusing:
        def __init__(self, error: Exception) -> None:
            self.error, self.sent = error, ""

        async def execute(self, text: str) -> None:
            self.sent = text
            raise self.error

    refused = Refusing(asyncpg.InsufficientPrivilegeError("permission denied for database"))
    await postgres_append.define_functions(refused)
    assert refused.sent.startswith("CREATE FUNCTION pg_temp.jcm_append_reads(")
    with pytest.raises(asyncpg.UndefinedTableError):
        await postgres_append.define_functions(Refusing(asyncpg.UndefinedTableError("x")))


async def _prepared(conn: Any) -> list[str]:
    return [str(r[0]) for r in await conn.fetch("SELECT statement FROM pg_prepared_statements")]


@pytest.mark.postgres
async def test_every_connection_of_the_pool_has_its_reads_warmed(pg_url: str) -> None:
    """The store's first connection (the one that made the tables) and every one opened
    after it have called the reads' session function once before any append: asyncpg
    prepared ``CALL_UNLOCKED_READS`` on them, and the warm call appended nothing."""
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        first = await s._pool.acquire()
        try:
            assert postgres_append.CALL_UNLOCKED_READS in await _prepared(first)
            second = await s._pool.acquire()  # a new connection: the first is held
            try:
                assert await second.fetchval("SELECT pg_backend_pid()") != await first.fetchval(
                    "SELECT pg_backend_pid()"
                )
                assert postgres_append.CALL_UNLOCKED_READS in await _prepared(second)
                assert await second.fetchval("SELECT count(*) FROM log_entries") == 0
            finally:
                await s._pool.release(second)
        finally:
            await s._pool.release(first)


@pytest.mark.postgres
async def test_warming_a_session_without_its_tables_or_functions_does_nothing(
    conn: asyncpg.Connection,
) -> None:
    """``warm_reads`` where the tables are not made yet (a new database, before its
    migrations) or the session has no functions (no TEMP privilege) answers False, raises
    nothing and leaves the connection usable; with both it answers True and reads no row."""
    assert not await postgres_append.warm_reads(conn)  # no functions
    await postgres_append.define_functions(conn)
    assert not await postgres_append.warm_reads(conn)  # no tables: the schema is empty
    assert await conn.fetchval("SELECT 1") == 1
    await conn.execute(
        "CREATE TABLE logs (id BIGINT PRIMARY KEY, size BIGINT, root BYTEA); "
        "CREATE TABLE log_nodes (log_id BIGINT, level INT, idx BIGINT, hash BYTEA); "
        f"{TABLE.format(name='log_entries')}"
    )
    assert await postgres_append.warm_reads(conn)
    assert await conn.fetch(postgres_append.CALL_UNLOCKED_READS, *postgres_append.WARM_ARGS) == []


@pytest.mark.postgres
async def test_the_reads_are_planned_once_generic_with_scans_by_index_only(pg_url: str) -> None:
    """The reads' session function plans its statement once, generic (not for each of its
    first five calls' arguments, ADR 0059), under the settings that keep every part of it
    an index probe (``postgres_append`` rule 2)."""
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        rows = await s._query(
            "SELECT proconfig FROM pg_proc WHERE proname = 'jcm_append_reads' "
            "AND pronamespace = pg_my_temp_schema()"
        )
        assert sorted(rows[0][0]) == [
            "enable_bitmapscan=off",
            "enable_seqscan=off",
            "jit=off",
            "plan_cache_mode=force_generic_plan",
        ]
