"""The SQL both SQL stores share (``store/sql.py``): the DDL on SQLite and PostgreSQL, the
statements run against real tables, the row helpers, and ``SqlStore``.

Queries are checked by running them on rows inserted by hand and comparing with the
same selection made in Python over those rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from jcm_sync.core import merkle
from jcm_sync.core.subtrees import Subtree
from jcm_sync.errors import ConflictError, CorruptStoreError, ForkError, RollbackError, StoreError
from jcm_sync.store import open_store, sql
from jcm_sync.store import postgres as postgres_store
from jcm_sync.store import sqlite as sqlite_store
from jcm_sync.store.migrations import MIGRATIONS
from jcm_sync.store.planning import AppendPlan, PreparedEntry
from jcm_sync.store.postgres import pg
from jcm_sync.store.sql import (
    SCHEMA_VERSION,
    append_rows,
    check_schema_version,
    checkpoint_query,
    id_key,
    record_query,
    refuse_append,
    schema_ddl,
    stored_time,
    trust_mark_writes,
)
from jcm_sync.store.values import LogRef, RecordQuery, TrustMark
from tests.store import World

SQLITE = sqlite_store.DIALECT
POSTGRES = postgres_store.DIALECT
LOG = LogRef("JP-MN", "MN", "jcm-sync.example/JP-MN/MN")


def rid(n: int) -> str:
    return hashlib.sha256(b"%d" % n).hexdigest()


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    """An in-memory SQLite database with the store's tables."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    sqlite_store.register_functions(conn)
    for stmt in schema_ddl(**SQLITE):
        conn.execute(stmt)
    try:
        yield conn
    finally:
        conn.close()


# --- the layout -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_schema_ddl_fills_every_dialect_field(dialect: dict[str, str]) -> None:
    """Every statement is complete for the dialect, and every CREATE may run again (IF NOT
    EXISTS); migration 6 moves rows, so it runs once, recorded (migrations rule 4)."""
    stmts = schema_ddl(**dialect)
    blank = sum(not dialect[f] for f in migrations_7_fields())  # one dialect's alone
    assert len(stmts) == len(sql.SCHEMA_DDL) - blank
    for stmt in stmts:
        assert "{" not in stmt
        assert "}" not in stmt
        if stmt.startswith("CREATE"):
            assert " IF NOT EXISTS " in stmt


def migrations_7_fields() -> list[str]:
    """The dialect fields migrations 7 (PostgreSQL's) and 8 (SQLite's) are made of, each
    a whole statement."""
    return [stmt.strip("{}") for m in MIGRATIONS[6:8] for stmt in m.statements]


#: The layout of today (ADR 0040): the record index is in ``log_entries``.
TABLES = {"logs", "log_entries", "log_nodes", "log_checkpoints", *sql.ID_TABLES}


def test_schema_ddl_builds_the_layout_on_sqlite(db: sqlite3.Connection) -> None:
    """The layout runs from nothing; the record index of version 1 is gone into the entries."""
    found = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert TABLES | {"trust_marks"} <= found
    assert "record_index" not in found
    columns = [r[1] for r in db.execute("PRAGMA table_info(log_entries)")]
    assert columns == list(sql.ENTRY_COLUMNS)


@pytest.mark.postgres
async def test_schema_ddl_builds_the_layout_on_postgres(pg_url: str) -> None:
    """The PostgreSQL dialect of the layout runs in an empty schema."""
    conn = await asyncpg.connect(pg_url)
    try:
        for stmt in schema_ddl(**POSTGRES):
            await conn.execute(stmt)
        schema = await conn.fetchval("SELECT current_schema()")
        found = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert TABLES | {"store_meta", "trust_marks"} <= {r[0] for r in found}
        assert "record_index" not in {r[0] for r in found}
    finally:
        await conn.close()


def test_schema_version_is_written_and_replaced(db: sqlite3.Connection) -> None:
    """``SET_SCHEMA_VERSION`` inserts the version, then overwrites it."""
    assert db.execute(sql.READ_SCHEMA_VERSION).fetchone() is None
    db.execute(sql.SET_SCHEMA_VERSION, ("1",))
    db.execute(sql.SET_SCHEMA_VERSION, (str(SCHEMA_VERSION),))
    assert db.execute(sql.READ_SCHEMA_VERSION).fetchall() == [(str(SCHEMA_VERSION),)]


@pytest.mark.parametrize(
    "found", [None, "1", str(SCHEMA_VERSION), SCHEMA_VERSION], ids=["new", "one", "current", "int"]
)
def test_check_schema_version_accepts_known_layouts(found: object) -> None:
    """A new database, an older layout (migrated by the DDL) or the current one pass."""
    check_schema_version(found, "db")


@pytest.mark.parametrize(
    "found",
    [str(SCHEMA_VERSION + 1), "99", "0", "", "two", "-1", "\u00b2", " 1"],
    ids=["next", "far", "zero", "empty", "word", "negative", "superscript", "space"],
)
def test_check_schema_version_refuses_unknown_layouts(found: str) -> None:
    """A newer layout, or a value that is no version, is a StoreError naming both."""
    with pytest.raises(StoreError, match=f"this jcm-sync knows version {SCHEMA_VERSION}") as info:
        check_schema_version(found, "the/db")
    assert info.value.where == "the/db"
    assert f"schema version {found};" in info.value.message


# --- queries, run on real tables --------------------------------------------------------

LOGS = [
    ("JP-MN", "JP", "o/JP-MN/JP"),
    ("JP-MN", "MN", "o/JP-MN/MN"),
    ("JP-ID", "JP", "o/JP-ID/JP"),
]


def entry_row(log_id: int, idx: int, record_id: str, kind: str, key: str, sup: object) -> tuple:
    env = b"env %d %d" % (log_id, idx)
    return (log_id, idx, record_id, kind, key, sup, merkle.leaf_hash(env), env, "t")


def fill_index(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    """Insert three logs and entries across them, their ids half in each part of the id
    index; return the ``RecordRow``s."""
    for p, n, o in LOGS:
        db.execute(sql.INSERT_LOG, (p, n, o, b"\x00" * 32))
    ids = {o: i for i, o in db.execute("SELECT id, origin FROM logs")}
    rows: list[tuple[object, ...]] = []
    counter = itertools.count()
    for (p, n, o), idx in itertools.product(LOGS, range(4)):
        k = next(counter)
        kind = "endorsement" if idx == 3 else "issuance"
        key = rid(k - 1) if kind == "endorsement" else f"{n}/{idx % 2}"
        supersedes = rid(k - 2) if idx == 2 else None
        rows.append((rid(k), kind, key, n, supersedes, p, p, n, o, idx))
    for n, r in enumerate(reversed(rows)):  # inserted out of order: the query must sort
        log_id, idx, record_id = ids[r[8]], r[9], str(r[0])
        db.execute(sql.INSERT_ENTRY, entry_row(log_id, idx, record_id, *r[1:3], r[4]))
        table = sql.ID_TABLES[n % len(sql.ID_TABLES)]
        db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (id_key(record_id), log_id, idx))
    return rows


QUERIES = [
    RecordQuery(),
    RecordQuery(record_id=rid(5)),
    RecordQuery(kind="issuance"),
    RecordQuery(kind="issuance", key="JP/0"),
    RecordQuery(kind="issuance", key="JP/0", partnership="JP-ID"),
    RecordQuery(kind="endorsement", key=rid(6)),
    RecordQuery(supersedes=rid(4)),
    RecordQuery(partnership="JP-MN", kind="endorsement"),
    RecordQuery(record_id=rid(999)),
]


@pytest.mark.parametrize("query", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_record_query_selects_what_the_query_asks(
    db: sqlite3.Connection, query: RecordQuery
) -> None:
    """The SELECT returns exactly the index rows matching every set field, in log order."""
    rows = fill_index(db)
    text, args = record_query(query)
    got = [tuple(r) for r in db.execute(text, args)]
    fields = {"record_id": 0, "kind": 1, "key": 2, "partnership": 5, "supersedes": 4}
    want = [r for r in rows if all(getattr(query, f) in (None, r[i]) for f, i in fields.items())]
    assert got == want
    # the id key, in each part of the index
    keys = len(sql.ID_TABLES) if query.record_id is not None else 0
    assert len(args) == sum(getattr(query, f) is not None for f in fields) + keys


@pytest.mark.postgres
async def test_record_query_runs_on_postgres(pg_url: str) -> None:
    """The same SELECT, numbered for asyncpg, finds the same rows on PostgreSQL."""
    conn = await asyncpg.connect(pg_url)
    try:
        for stmt in schema_ddl(**POSTGRES):
            await conn.execute(stmt)
        await conn.execute(pg(sql.INSERT_LOG), "JP-MN", "MN", LOG.origin, b"\x00" * 32)
        log_id = await conn.fetchval("SELECT id FROM logs")
        for i in range(3):
            row = entry_row(log_id, i, rid(i), "issuance", f"MN/{i % 2}", None)
            await conn.execute(pg(sql.INSERT_ENTRY), *row[:-1], datetime.now(UTC))
            await conn.execute(pg(sql.INSERT_RECENT_ID), id_key(rid(i)), log_id, i)
        text, args = record_query(RecordQuery(kind="issuance", key="MN/0"))
        got = [tuple(r) for r in await conn.fetch(pg(text), *args)]
        text, args = record_query(RecordQuery(record_id=rid(1)))
        assert [r[9] for r in await conn.fetch(pg(text), *args)] == [1]
        # as PostgresStore asks it: through the hash index of the entries (migration 7)
        text, args = record_query(RecordQuery(record_id=rid(1)), keyed=False)
        assert "record_ids" not in text
        assert args == [rid(1)]
        assert [r[9] for r in await conn.fetch(pg(text), *args)] == [1]
    finally:
        await conn.close()
    assert got == [
        (rid(i), "issuance", "MN/0", "MN", None, "JP-MN", "JP-MN", "MN", LOG.origin, i)
        for i in (0, 2)
    ]


def test_checkpoint_query_reads_by_size_latest_and_all(db: sqlite3.Connection) -> None:
    """At a size, the latest one, or all by size; another log's checkpoints never."""
    for p, n, o in LOGS[:2]:
        db.execute(sql.INSERT_LOG, (p, n, o, b"\x00" * 32))
    for log_id, size in [(1, 5), (1, 2), (1, 9), (2, 20)]:
        db.execute(sql.INSERT_CHECKPOINT, (log_id, size, bytes([size]) * 32, b"note %d" % size))

    def run(size: int | None, latest: bool) -> list[int]:
        text, args = checkpoint_query(1, size, latest)
        return [r[0] for r in db.execute(text, args)]

    assert run(5, False) == [5]
    assert run(5, True) == [5]
    assert run(7, False) == []
    assert run(None, True) == [9]
    assert run(None, False) == [2, 5, 9]


def test_insert_checkpoint_keeps_the_first_note(db: sqlite3.Connection) -> None:
    """A second note for a size already held is ignored, not an error."""
    db.execute(sql.INSERT_CHECKPOINT, (1, 4, b"r" * 32, b"first"))
    db.execute(sql.INSERT_CHECKPOINT, (1, 4, b"r" * 32, b"second"))
    assert db.execute(sql.CHECKPOINT_AT, (1, 4)).fetchall() == [(4, b"r" * 32, b"first")]


def test_envelope_reads_the_first_log_holding_a_record(db: sqlite3.Connection) -> None:
    """``ENVELOPE`` joins the index to its entry and log, the lowest log id first."""
    for p, n, o in LOGS[:2]:
        db.execute(sql.INSERT_LOG, (p, n, o, b"\x00" * 32))
    for log_id in (2, 1):
        db.execute(sql.INSERT_ENTRY, entry_row(log_id, 7, rid(1), "issuance", "k", None))
        db.execute(sql.INSERT_RECENT_ID, (id_key(rid(1)), log_id, 7))
    keys = (id_key(rid(1)),) * len(sql.ID_TABLES)
    assert db.execute(sql.ENVELOPE, (*keys, rid(1))).fetchall() == [
        (LOGS[0][2], 7, rid(1), b"env 1 7", "t")
    ]
    assert db.execute(sql.ENVELOPE, (*keys, rid(2))).fetchall() == []  # same key, other id


# --- row helpers ------------------------------------------------------------------------


def item(n: int) -> PreparedEntry:
    raw = b"entry %d" % n
    return PreparedEntry(
        raw, hashlib.sha256(raw).hexdigest(), b"L" * 32, "issuance", f"MN/{n}", "MN", None, "JP-MN"
    )


def test_append_rows_number_the_new_entries_from_the_size(db: sqlite3.Connection) -> None:
    """The rows of a plan place its new entries at ``first``, ``first + 1``, ... with their
    leaf hashes; only the nodes of stored levels (4, 8, 12...) are rows; every id is recent."""
    plan = AppendPlan(
        start=3,
        present=2,
        first=5,
        new=[item(5), item(6)],
        nodes=[Subtree(0, 5, b"a" * 32), Subtree(1, 3, b"c" * 32), Subtree(8, 0, b"d" * 32)],
        size=7,
        root=b"r" * 32,
    )
    entries, nodes, ids = append_rows(9, plan, "2016-06-01T09:00:00+00:00")
    db.executemany(sql.INSERT_ENTRY, entries)
    db.executemany(sql.INSERT_NODE, nodes)
    db.executemany(sql.INSERT_RECENT_ID, ids)
    assert db.execute(sql.ENTRIES, (9, 0, 100)).fetchall() == [
        (5, item(5).record_id, b"entry 5", "2016-06-01T09:00:00+00:00"),
        (6, item(6).record_id, b"entry 6", "2016-06-01T09:00:00+00:00"),
    ]
    assert db.execute(sql.LEAF_RANGE, (9, 0, 100)).fetchall() == [(5, b"L" * 32), (6, b"L" * 32)]
    assert db.execute("SELECT level, idx, hash FROM log_nodes WHERE log_id = 9").fetchall() == [
        (8, 0, b"d" * 32)
    ]
    held = sql.HELD_IDS.format(keys=sql.SQLITE_KEYS)
    keys = json.dumps([id_key(item(6).record_id)])
    assert db.execute(held, (keys, 9) * len(sql.ID_TABLES)).fetchall() == [(item(6).record_id, 6)]
    assert db.execute(sql.RECORD_IDS, (9, 6, 7)).fetchall() == [(6, item(6).record_id)]


@pytest.mark.parametrize("n", [1, 2, 50, 64, 65, 129, 500])
def test_entry_inserts_write_the_rows_executemany_writes(db: sqlite3.Connection, n: int) -> None:
    """The multi-row statements of a batch insert exactly its rows, in order, with at
    most ``ENTRY_CHUNK`` rows (and 999 values) a statement, from the seven texts only; a
    row past the head still fails the insert with the key's violation."""
    plan = AppendPlan(0, 0, 3, [item(i) for i in range(3, 3 + n)], [], 3 + n, b"r" * 32)
    entries, _, _ = append_rows(9, plan, 1464773400000007)
    inserts = sql.entry_inserts(entries)
    assert {text for text, _ in inserts} <= set(sql.INSERT_ENTRIES.values())
    sizes = [text.count("(?") for text, _ in inserts]
    assert [len(values) for _, values in inserts] == [9 * size for size in sizes]
    assert sizes == sorted(sizes, reverse=True)
    assert all(m & (m - 1) == 0 for m in sizes)
    assert all(len(values) <= min(999, 9 * sql.ENTRY_CHUNK) for _, values in inserts)
    assert sum(len(values) for _, values in inserts) == 9 * n
    for text, values in inserts:
        db.execute(text, values)
    stored = db.execute("SELECT * FROM log_entries ORDER BY rowid").fetchall()
    assert stored == [tuple(row) for row in entries]
    db.execute("DELETE FROM log_entries")
    db.executemany(sql.INSERT_ENTRY, entries[-1:])
    for text, values in inserts[:-1]:
        db.execute(text, values)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        db.execute(*inserts[-1])


def test_check_not_held_names_a_record_already_held() -> None:
    """A new entry whose record the log holds is a ConflictError at the held index; a row
    of another record under the same id key (a collision of 64-bit keys) is not."""
    plan = AppendPlan(2, 0, 2, [item(2), item(3)], [], 4, b"r" * 32)
    sql.check_not_held(LOG, plan, [(rid(77), 1)])
    with pytest.raises(ConflictError, match="already in the log at index 0") as info:
        sql.check_not_held(LOG, plan, [(rid(77), 1), (item(3).record_id, 0)])
    assert not isinstance(info.value, ForkError)


def test_id_key_is_the_signed_first_eight_bytes() -> None:
    """The key of ``record_ids``: the id's first 16 hex digits as a signed 64-bit integer,
    as migration 6 computes it in SQL."""
    assert id_key("00" * 7 + "01" + "ff" * 24) == 1
    assert id_key("7f" + "ff" * 7 + "00" * 24) == (1 << 63) - 1
    assert id_key("80" + "00" * 31) == -(1 << 63)
    assert id_key("ff" * 32) == -1


def test_id_keys_of_a_batch_are_each_ids_key() -> None:
    """The batch conversion an append uses gives ``id_key`` of every id, in order, at both
    ends of the signed range; append_rows keys its recent ids with it."""
    ids = ["80" + "00" * 31, "ff" * 32, "00" * 7 + "01" + "ff" * 24, *(rid(n) for n in range(50))]
    assert sql.id_keys(ids) == tuple(id_key(r) for r in ids)
    assert sql.id_keys([]) == ()
    plan = AppendPlan(0, 0, 10, [item(10), item(11)], [], 12, b"r" * 32)
    entries, _, keyed = append_rows(3, plan, 99)
    assert keyed == [(id_key(item(n).record_id), 3, n) for n in (10, 11)]
    assert [e[:3] for e in entries] == [(3, n, item(n).record_id) for n in (10, 11)]


def test_refuse_append_reports_rows_past_the_head() -> None:
    """Duplicates were refused before writing: a key violation means rows past the head."""
    plan = AppendPlan(2, 0, 2, [item(2)], [], 3, b"r" * 32)
    cause = sqlite3.IntegrityError("UNIQUE constraint failed: log_entries.idx")
    with pytest.raises(CorruptStoreError, match="rows past the stored size 2") as info:
        refuse_append(LOG, plan, cause)
    assert "log_entries.idx" in info.value.message
    assert info.value.__cause__ is cause


def mark(version: int, doc: str = "a") -> TrustMark:
    return TrustMark("JP-ID", version, hashlib.sha256(f"{doc}{version}".encode()).hexdigest())


def test_trust_mark_writes_judges_held_rows(db: sqlite3.Connection) -> None:
    """The held rows are judged (rule 7); the rising marks come with their rows, stamped."""
    db.execute(sql.RAISE_TRUST_MARK, ("JP-ID", 2, mark(2).digest, "t0"))
    held = db.execute(sql.TRUST_MARKS).fetchall()
    rising, writes = trust_mark_writes(held, {"JP-ID": [mark(2), mark(3)]}, "t1")
    assert rising == [mark(3)]
    assert writes == [("JP-ID", 3, mark(3).digest, "t1")]
    db.executemany(sql.RAISE_TRUST_MARK, writes)
    assert db.execute(sql.TRUST_MARKS).fetchall() == [("JP-ID", 3, mark(3).digest)]
    with pytest.raises(RollbackError):
        trust_mark_writes(db.execute(sql.TRUST_MARKS).fetchall(), {"JP-ID": [mark(2)]}, "t2")


def test_raise_trust_mark_never_lowers_a_row(db: sqlite3.Connection) -> None:
    """Even written directly, a lower or equal version does not replace the held mark."""
    db.execute(sql.RAISE_TRUST_MARK, ("JP-ID", 3, mark(3).digest, "t0"))
    db.execute(sql.RAISE_TRUST_MARK, ("JP-ID", 2, mark(2).digest, "t1"))
    db.execute(sql.RAISE_TRUST_MARK, ("JP-ID", 3, mark(3, "b").digest, "t2"))
    assert db.execute("SELECT version, digest, recorded_at FROM trust_marks").fetchall() == [
        (3, mark(3).digest, "t0")
    ]


def test_stored_time_reads_iso_text() -> None:
    """ISO 8601 text becomes a datetime; a datetime passes; bad text is left for check_entry."""
    at = datetime(2016, 6, 1, 9, 0, 0, 5, tzinfo=UTC)
    assert stored_time(at.isoformat()) == at
    assert stored_time(at) is at
    assert stored_time("yesterday") == "yesterday"
    assert stored_time(None) is None


# --- SqlStore ---------------------------------------------------------------------------


async def test_sql_store_reports_a_vanished_head_row(tmp_path: Path, world: World) -> None:
    """A log whose row is gone after it was looked up reads as a corrupt head."""

    path = tmp_path / "jp.db"
    async with await open_store(f"sqlite:///{path}") as s:
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 1), world.verify)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DELETE FROM logs")
        conn.close()
        with pytest.raises(CorruptStoreError, match="stored size None") as info:
            await s.tree_head(world.jp_log)
        assert info.value.where == f"{world.jp_log.origin} head"


def test_merges_between_follow_the_four_tables_in_steps_of_eight() -> None:
    """Each level's merge when the log crosses a multiple of its period (ratio 8 between
    levels, ADR 0053), the smaller first; none inside a period."""
    recent, middle, upper = sql.ID_MERGES
    assert (sql.RECENT_IDS, sql.MIDDLE_IDS, sql.UPPER_IDS) == (1 << 12, 1 << 15, 1 << 18)
    assert sql.merges_between(0, 4095) == []
    assert sql.merges_between(4000, 4500) == [recent]
    assert sql.merges_between(32_500, 33_000) == [recent, middle]
    assert sql.merges_between(262_000, 262_500) == [recent, middle, upper]
    assert sql.merges_between(262_144, 262_644) == []  # the crossing was the batch before
    # every id moves up through each table in turn, and only the recent one is written to
    assert [step[0] for step in sql.ID_MERGES] == list(reversed(sql.ID_TABLES))[:3]
    assert [step[1] for step in sql.ID_MERGES] == list(reversed(sql.ID_TABLES))[1:]
    assert "INTO recent_record_ids" in sql.INSERT_RECENT_ID


def test_recent_ids_of_a_batch_in_one_statement_are_the_rows_of_one_each(
    db: sqlite3.Connection,
) -> None:
    """``INSERT_RECENT_IDS_SQLITE`` writes what ``INSERT_RECENT_ID`` row by row writes,
    the 64-bit keys exact at both ends of their range (JSON integers, not floats)."""
    keys = [-(1 << 63), -1, 0, 1, (1 << 63) - 1, id_key(rid(3))]
    db.execute(sql.INSERT_RECENT_IDS_SQLITE, (4, 1000, json.dumps(keys)))
    db.executemany(sql.INSERT_RECENT_ID, [(k, 5, i) for i, k in enumerate(keys, 1000)])
    read = "SELECT id_key, idx FROM recent_record_ids WHERE log_id = ? ORDER BY idx"
    assert db.execute(read, (4,)).fetchall() == db.execute(read, (5,)).fetchall()
    assert [k for k, _ in db.execute(read, (4,))] == keys
