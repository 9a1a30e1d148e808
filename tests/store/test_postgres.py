"""The PostgreSQL store (``store/postgres.py``): URL and DSN handling, its schema, its
translated and redacted errors, and a pool that drops a connection the server killed.

Runs against the real server of ``tests/store/conftest.py`` (each test in a schema of its
own); the protocol itself is ``test_protocol.py``. The test server trusts every login, so
a refused login is provoked with a role that does not exist.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from asyncpg import exceptions as pgerr

from jcm_sync.core import merkle
from jcm_sync.errors import BadDataError, ConflictError, StoreError
from jcm_sync.store import open_store, sql
from jcm_sync.store.postgres import PostgresStore, _leaves_connection_usable, _schema_of, pg
from tests.store import World
from tests.store.conftest import PG_URL, drop_schema, skip_without_pg, with_param

PASSWORD = "hunter2-not-logged"


# --- pure helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbered"),
    [
        ("SELECT 1", "SELECT 1"),
        ("a = ?", "a = $1"),
        ("(?, ?, ?)", "($1, $2, $3)"),
        ("? ?", "$1 $2"),
    ],
    ids=["none", "one", "three", "adjacent"],
)
def test_pg_numbers_placeholders(text: str, numbered: str) -> None:
    """The shared ``?`` placeholders become ``$1, $2, ...`` in order."""
    assert pg(text) == numbered


def test_pg_numbers_every_shared_statement() -> None:
    """Every statement of ``sql.py`` keeps its parameter count once numbered."""
    statements = [v for k, v in vars(sql).items() if k.isupper() and isinstance(v, str)]
    assert len(statements) > 15
    for text in statements:
        n = text.count("?")
        out = pg(text)
        assert "?" not in out
        assert [f"${i}" in out for i in range(1, n + 2)] == [True] * n + [False]


@pytest.mark.parametrize(
    ("url", "schema"),
    [
        ("postgresql://h/db", None),
        ("postgresql://h/db?search_path=jcm", "jcm"),
        ("postgresql://h/db?sslmode=disable&search_path=hub_1,public", "hub_1"),
        ('postgresql://h/db?search_path="quoted"', "quoted"),
        ("postgresql://h/db?search_path=Upper", None),
        ("postgresql://h/db?search_path=x;drop", None),
        ("postgresql://h/db?search_path=", None),
    ],
    ids=["absent", "plain", "list", "quoted", "not-lowercase", "injection", "empty"],
)
def test_schema_of_url(url: str, schema: str | None) -> None:
    """Only a plain identifier first in ``search_path`` names a schema to create."""
    assert _schema_of(url) == schema


@pytest.mark.parametrize(
    ("exc", "usable"),
    [
        (pgerr.UniqueViolationError("dup"), True),
        (pgerr.UndefinedTableError("no table"), True),
        (BadDataError("ours"), True),
        (pgerr.ConnectionDoesNotExistError("gone"), False),
        (pgerr.AdminShutdownError("shutdown"), False),
        (pgerr.QueryCanceledError("cancelled"), False),
        (ConnectionResetError("reset"), False),
        (TimeoutError(), False),
        (asyncio.CancelledError(), False),
    ],
    ids=[
        "unique",
        "sql-error",
        "ours",
        "lost",
        "admin-shutdown",
        "cancelled-stmt",
        "reset",
        "timeout",
        "task-cancelled",
    ],
)
def test_which_errors_leave_a_connection_usable(exc: BaseException, usable: bool) -> None:
    """Only an SQL error on a live session, or one of ours, keeps the connection."""
    assert _leaves_connection_usable(exc) is usable


def test_our_error_caused_by_a_lost_connection_discards_it() -> None:
    """One of our errors raised from a lost connection is judged by its cause."""
    err = StoreError("translated")
    err.__cause__ = pgerr.ConnectionDoesNotExistError("gone")
    assert _leaves_connection_usable(err) is False
    err.__cause__ = pgerr.UniqueViolationError("dup")
    assert _leaves_connection_usable(err) is True


# --- against the server -------------------------------------------------------------


@pytest.fixture
async def fresh_schema(pg_reachable: str | None) -> AsyncIterator[str]:
    """A schema name no database object has yet; dropped afterwards if it was created."""
    skip_without_pg(pg_reachable)
    name = f"jcm_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await drop_schema(name)


async def tables_in(schema: str) -> set[str]:
    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
    finally:
        await conn.close()
    return {r[0] for r in rows}


@pytest.mark.postgres
async def test_search_path_schema_is_created_and_holds_the_tables(
    fresh_schema: str, world: World
) -> None:
    """``?search_path=name`` creates the schema if missing and keeps every table there."""
    url = with_param(PG_URL, "search_path", fresh_schema)
    async with await open_store(url) as s:
        assert isinstance(s, PostgresStore)
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 2), world.verify)
    tables = await tables_in(fresh_schema)
    assert {"store_meta", "logs", "log_entries", "log_nodes", "record_ids"} <= tables
    assert {"log_checkpoints", "trust_marks"} <= tables
    async with await open_store(url) as again:
        assert (await again.tree_head(world.jp_log)).size == 2


@pytest.mark.postgres
async def test_other_url_parameters_become_server_settings(fresh_schema: str) -> None:
    """Query parameters other than libpq's own are set on every session."""
    url = with_param(with_param(PG_URL, "search_path", fresh_schema), "statement_timeout", "4321")
    async with await open_store(url) as s:
        assert isinstance(s, PostgresStore)
        assert (await s._query("SHOW statement_timeout"))[0][0] == "4321ms"
        assert (await s._query("SHOW search_path"))[0][0] == fresh_schema


@pytest.mark.postgres
async def test_postgres_scheme_alias_opens_the_same_store(fresh_schema: str, world: World) -> None:
    """``postgres://`` is the same as ``postgresql://``."""
    url = with_param(PG_URL, "search_path", fresh_schema)
    async with await open_store(url) as s:
        await s.ensure_log(world.jp_log)
    alias = "postgres://" + url.split("://", 1)[1]
    async with await open_store(alias) as again:
        assert isinstance(again, PostgresStore)
        assert await again.logs() == [world.jp_log]


@pytest.mark.postgres
async def test_concurrent_first_opens_create_the_tables_once(fresh_schema: str) -> None:
    """Several processes opening one empty database at once all succeed (advisory lock)."""
    url = with_param(PG_URL, "search_path", fresh_schema)
    stores = await asyncio.gather(*(open_store(url) for _ in range(6)))
    try:
        versions = [await s._query(sql.READ_SCHEMA_VERSION) for s in stores]  # type: ignore[attr-defined]
    finally:
        for s in stores:
            await s.close()
    assert {v[0][0] for v in versions} == {str(sql.SCHEMA_VERSION)}


def with_credentials(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    host = rest.rpartition("@")[2]
    return f"{scheme}://{user}:{password}@{host}"


@pytest.mark.postgres
async def test_refused_login_is_a_store_error_without_the_password(
    pg_reachable: str | None,
) -> None:
    """A login the server refuses is a StoreError naming the server, never the password."""
    skip_without_pg(pg_reachable)
    url = with_credentials(PG_URL, "jcm_no_such_role", PASSWORD)
    with pytest.raises(StoreError, match=r"PostgreSQL failed .*jcm_no_such_role") as info:
        await open_store(url)
    err = info.value
    assert isinstance(err.__cause__, asyncpg.PostgresError)
    assert PASSWORD not in err.diagnostics()
    assert err.where is not None
    assert err.where.startswith("postgresql://jcm_no_such_role:***@")


@pytest.mark.postgres
async def test_missing_database_is_a_store_error_without_the_password(
    pg_reachable: str | None,
) -> None:
    """A database that does not exist is refused the same way."""
    skip_without_pg(pg_reachable)
    url = with_credentials(PG_URL, "postgres", PASSWORD).rsplit("/", 1)[0] + "/jcm_no_such_db"
    with pytest.raises(StoreError, match="does not exist") as info:
        await open_store(url)
    assert PASSWORD not in info.value.diagnostics()


async def test_unreachable_postgres_is_a_store_error() -> None:
    """A server that does not answer is a StoreError naming it, without a password."""
    with pytest.raises(StoreError, match="PostgreSQL") as info:
        await open_store("postgresql://u:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value)


@pytest.mark.postgres
async def test_a_connection_the_server_killed_is_replaced(pg_url: str, world: World) -> None:
    """After the server ends the store's session, at most one call fails (a StoreError)
    and the next is served on a fresh connection."""
    async with await open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 3), world.verify)
        pid = (await s._query("SELECT pg_backend_pid()"))[0][0]
        admin = await asyncpg.connect(PG_URL)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        (first,) = await asyncio.gather(s.tree_head(world.jp_log), return_exceptions=True)
        assert not isinstance(first, BaseException) or isinstance(first, StoreError), first
        assert (await s.tree_head(world.jp_log)).size == 3
        assert (await s._query("SELECT pg_backend_pid()"))[0][0] != pid


@pytest.mark.postgres
async def test_closed_postgres_store(pg_url: str) -> None:
    """After close every call is a StoreError; closing again is harmless."""
    s = await open_store(pg_url)
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.trust_marks()
    await s.close()


def test_repr_of_a_postgres_store_hides_the_password() -> None:
    """A store in a log line or a traceback must not show the database password."""
    store = PostgresStore(f"postgresql://jcm:{PASSWORD}@db.example:5432/jcm")
    assert PASSWORD not in repr(store)


# --- appends: one round trip of reads, a stale expectation, a wait for the lock ----------


def _leaf_root(envelopes: list[bytes]) -> bytes:
    return merkle.root([merkle.leaf_hash(e) for e in envelopes])


@pytest.mark.postgres
async def test_appends_of_two_stores_to_one_log_read_the_real_head(
    pg_url: str, world: World
) -> None:
    """Each store reads the frontier of the size it last left a log at, in the round trip
    that locks the head; when another process appended since, it reads again at the real
    size, so interleaved appends of two hub processes all land, in order."""
    envs = world.envelopes("JP", 20)
    async with await open_store(pg_url) as a, await open_store(pg_url) as b:
        await a.append_entries(world.jp_log, None, envs[0:3], world.verify)
        await b.append_entries(world.jp_log, None, envs[3:5], world.verify)  # b expected 0
        await a.append_entries(world.jp_log, None, envs[5:9], world.verify)  # a expected 3
        await b.append_entries(world.jp_log, 7, envs[7:12], world.verify)  # overlap of 2
        done = await a.append_entries(world.jp_log, 12, envs[12:20], world.verify)
        assert (done.start, done.present, done.size) == (12, 0, 20)
        assert [e.envelope for e in await b.entries(world.jp_log)] == envs
        assert (await b.tree_head(world.jp_log)).root == _leaf_root(envs)
        with pytest.raises(ConflictError, match="already"):
            await b.append_entries(world.jp_log, None, envs[4:5], world.verify)


GATE = 0x4A434D47  # an advisory lock the tests hold to stop an append inside its write


async def _waiting(pid: int, query: str, event: str = "Lock") -> None:
    """Until the backend ``pid`` waits (``event``) in a query starting with ``query``."""
    admin = await asyncpg.connect(PG_URL)
    try:
        for _ in range(1000):
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = $2 "
                "AND pid = $1 AND query LIKE $3",
                pid,
                event,
                query + "%",
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
    finally:
        await admin.close()
    raise AssertionError(f"backend {pid} never waited in {query!r}")


@asynccontextmanager
async def _two_stores(
    pg_url: str, world: World
) -> AsyncIterator[tuple[PostgresStore, PostgresStore, int]]:
    """Two stores open on one database, both with the JP log, and the backend pid of
    ``b``'s one connection."""
    async with await open_store(pg_url) as a, await open_store(pg_url) as b:
        assert isinstance(a, PostgresStore)
        assert isinstance(b, PostgresStore)
        await a.ensure_log(world.jp_log)
        await b.ensure_log(world.jp_log)
        yield a, b, (await b._query("SELECT pg_backend_pid()"))[0][0]


async def _head_held_by_a_write(
    a: PostgresStore, world: World, envelope: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task[object], asyncpg.Connection]:
    """``a`` appending ``envelope`` at 0, stopped inside its write's transaction with the
    head row locked (behind ``GATE``, which the returned connection holds: close it to let
    the append commit)."""
    write = a._write

    async def gated_write(*args: object) -> None:
        *rest, first = args  # conn, log, log_id, plan, data; what opens the write
        await write(*rest, f"{first}SELECT pg_advisory_xact_lock({GATE}); ")  # type: ignore[arg-type]

    monkeypatch.setattr(a, "_write", gated_write)
    gate = await asyncpg.connect(PG_URL)
    await gate.execute(f"SELECT pg_advisory_lock({GATE})")
    a_pid = (await a._query("SELECT pg_backend_pid()"))[0][0]  # a's one connection
    holder = asyncio.create_task(a.append_entries(world.jp_log, 0, [envelope], world.verify))
    await _waiting(a_pid, "BEGIN; SELECT pg_temp.jcm_head_is", "Lock")  # at the gate
    return holder, gate


@pytest.mark.postgres
async def test_an_append_whose_head_moved_after_its_reads_writes_nothing_and_goes_locked(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append reads without a lock, then its write locks the head and compares it with
    the one read: when another append holds the head, it waits; when that one committed,
    the head it finds is not the one it read, so it writes nothing and appends again the
    locked way, which finds the record the other one just appended."""
    first, second = world.envelopes("JP", 2)
    async with _two_stores(pg_url, world) as (a, b, b_pid):
        holder, gate = await _head_held_by_a_write(a, world, first, monkeypatch)
        waiter = asyncio.create_task(b.append_entries(world.jp_log, None, [first], world.verify))
        await _waiting(b_pid, "BEGIN; SELECT pg_temp.jcm_head_is")  # behind a's lock
        await gate.close()
        assert (await holder).size == 1
        with pytest.raises(ConflictError, match="already in the log at index 0"):
            await waiter
        await b.append_entries(world.jp_log, 1, [second], world.verify)
        assert (await a.tree_head(world.jp_log)).root == _leaf_root([first, second])
        assert (await b._query("SELECT count(*) FROM log_entries"))[0][0] == 2


@pytest.mark.postgres
async def test_an_append_that_waited_for_the_head_reads_what_was_committed_meanwhile(
    pg_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The locked way: an append's reads share a snapshot taken before it waited for the
    head's lock: when another append committed meanwhile, the head it locks is newer than
    the rows it read, so it reads again, and finds the record the other one appended."""
    first, second = world.envelopes("JP", 2)
    async with _two_stores(pg_url, world) as (a, b, b_pid):
        append_in = b._append_in

        async def locked_only(*args: object) -> object:
            return await append_in(*args) if args[-1] else None  # type: ignore[arg-type]

        monkeypatch.setattr(b, "_append_in", locked_only)
        holder, gate = await _head_held_by_a_write(a, world, first, monkeypatch)
        # b expects the size a is about to leave (1): its snapshot predates a's commit
        waiter = asyncio.create_task(b.append_entries(world.jp_log, 1, [first], world.verify))
        await _waiting(b_pid, "WITH head AS")
        await gate.close()
        assert (await holder).size == 1
        with pytest.raises(ConflictError, match="already"):
            await waiter
        await b.append_entries(world.jp_log, 1, [second], world.verify)
        assert (await a.tree_head(world.jp_log)).root == _leaf_root([first, second])
