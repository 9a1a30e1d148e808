"""Schema migrations: a store made by version 1 of the layout upgrades in place and keeps
every log verifiable; migrations are ordered, recorded, atomic, and a newer layout is refused.

The version-1 layout below is copied literally from the jcm-sync that wrote it (before
``trust_marks``), not derived from today's code, so a change to today's DDL cannot make
this test upgrade the wrong thing. Its rows are computed by appending real signed
envelopes and checkpoints to a memory store, then written into the version-1 tables with
plain INSERTs, as that version's code would have left them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jcm_sync.core import checkpoint, merkle
from jcm_sync.errors import ConflictError, StoreError
from jcm_sync.services.log_service import checkpoint_verifiers, verify_log
from jcm_sync.store import LogRef, Store, open_store, sql
from jcm_sync.store import migrations as m
from jcm_sync.store import sqlite as sqlite_store
from jcm_sync.store.memory import MemoryStore
from tests.store import World
from tests.store.conftest import (
    PG_URL,
    drop_schema,
    make_schema,
    raw,
    skip_without_pg,
    with_param,
)

# --- version 1, literally --------------------------------------------------------------

V1_DDL = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS logs (
        id {serial} PRIMARY KEY,
        partnership TEXT NOT NULL,
        node TEXT NOT NULL,
        origin TEXT NOT NULL UNIQUE,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        UNIQUE (partnership, node))""",
    """CREATE TABLE IF NOT EXISTS log_entries (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        envelope {blob} NOT NULL,
        appended_at {time} NOT NULL,
        PRIMARY KEY (log_id, idx))""",
    """CREATE TABLE IF NOT EXISTS log_nodes (
        log_id BIGINT NOT NULL,
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash {blob} NOT NULL,
        PRIMARY KEY (log_id, level, idx)){without_rowid}""",
    """CREATE TABLE IF NOT EXISTS log_checkpoints (
        log_id BIGINT NOT NULL,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        note {blob} NOT NULL,
        PRIMARY KEY (log_id, size))""",
    """CREATE TABLE IF NOT EXISTS record_index (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        partnership TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        author TEXT NOT NULL,
        supersedes TEXT,
        PRIMARY KEY (log_id, idx)){without_rowid}""",
    "CREATE UNIQUE INDEX IF NOT EXISTS record_index_id ON record_index (record_id, log_id)",
    "CREATE INDEX IF NOT EXISTS record_index_kind_key ON record_index (kind, key)",
    "CREATE INDEX IF NOT EXISTS record_index_supersedes ON record_index (supersedes) "
    "WHERE supersedes IS NOT NULL",
)
V1_SQLITE = {"serial": "INTEGER", "blob": "BLOB", "time": "TEXT", "without_rowid": " WITHOUT ROWID"}
V1_POSTGRES = {"serial": "BIGSERIAL", "blob": "BYTEA", "time": "TIMESTAMPTZ", "without_rowid": ""}
V1_INSERTS = {
    "meta": "INSERT INTO store_meta (key, value) VALUES ('schema_version', '1')",
    "logs": "INSERT INTO logs (id, partnership, node, origin, size, root) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "entries": "INSERT INTO log_entries (log_id, idx, record_id, envelope, appended_at) "
    "VALUES (?, ?, ?, ?, ?)",
    "nodes": "INSERT INTO log_nodes (log_id, level, idx, hash) VALUES (?, ?, ?, ?)",
    "checkpoints": "INSERT INTO log_checkpoints (log_id, size, root, note) VALUES (?, ?, ?, ?)",
    "records": "INSERT INTO record_index "
    "(log_id, idx, record_id, partnership, kind, key, author, supersedes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
}
SIZES = {"JP": 37, "ID": 21}
CHECKPOINTS = {"JP": (5, 16, 37), "ID": (21,)}


@dataclass
class V1:
    """A version-1 database and what it must still say after the upgrade."""

    url: str
    heads: dict[LogRef, tuple[int, bytes]]
    leaves: dict[LogRef, list[bytes]]
    notes: dict[LogRef, list[bytes]]


async def v1_rows(
    world: World, sizes: dict[str, int] = SIZES
) -> tuple[dict[str, list[tuple[Any, ...]]], V1]:
    """The rows version 1 held for two logs with entries and signed checkpoints."""
    mem = MemoryStore()
    heads, leaves, notes = {}, {}, {}
    for node, log in (("JP", world.jp_log), ("ID", world.id_log)):
        await mem.ensure_log(log)
        envs = world.envelopes(node, sizes[node])
        await mem.append_entries(log, 0, envs, world.verify)
        leaves[log] = [merkle.leaf_hash(e) for e in envs]
        notes[log] = []
        for size in CHECKPOINTS[node]:
            cp = checkpoint.Checkpoint(log.origin, size, await mem.root_at(log, size))
            note = checkpoint.sign_checkpoint(cp, world.key_of(node).key)
            await mem.put_checkpoint(log, note)
            notes[log].append(note)
        head = await mem.tree_head(log)
        heads[log] = (head.size, head.root)
    rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in V1_INSERTS if k != "meta"}
    for t in mem.tables.values():
        ref = t.ref
        rows["logs"].append((t.id, ref.partnership, ref.node, ref.origin, t.size, t.root))
        for idx, (rid, env, at) in sorted(t.entries.items()):
            rows["entries"].append((t.id, idx, rid, env, at))
        for (level, idx), value in sorted(t.nodes.items()):
            rows["nodes"].append((t.id, level, idx, value))
        for size, (root, note) in sorted(t.checkpoints.items()):
            rows["checkpoints"].append((t.id, size, root, note))
        for idx, e in sorted(t.records.items()):
            rows["records"].append(
                (t.id, idx, e.record_id, e.partnership, e.kind, e.key, e.author, e.supersedes)
            )
    return rows, V1("", heads, leaves, notes)


def write_v1_sqlite(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN")
        for stmt in V1_DDL:
            conn.execute(stmt.format(**V1_SQLITE))
        conn.execute(V1_INSERTS["meta"])
        for table, table_rows in rows.items():
            for row in table_rows:
                row = tuple(v.isoformat() if isinstance(v, datetime) else v for v in row)
                conn.execute(V1_INSERTS[table], row)
        conn.execute("COMMIT")
    finally:
        conn.close()


def pg(text: str) -> str:
    parts = text.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


async def write_v1_postgres(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for stmt in V1_DDL:
                await conn.execute(stmt.format(**V1_POSTGRES))
            await conn.execute(V1_INSERTS["meta"])
            for table, table_rows in rows.items():
                await conn.executemany(pg(V1_INSERTS[table]), table_rows)
            await conn.execute("SELECT setval('logs_id_seq', (SELECT max(id) FROM logs))")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def v1(
    request: pytest.FixtureRequest, tmp_path: Path, world: World, pg_reachable: str | None
) -> AsyncIterator[V1]:
    """A database exactly as version 1 of the layout left it, on each SQL backend."""
    async for made in v1_database(request.param, tmp_path, world, pg_reachable, SIZES):
        yield made


#: A JP log past its first 256-wide tile, so migration 6 keeps a level-8 node.
TILED = {"JP": 300, "ID": 21}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def v1_tiled(
    request: pytest.FixtureRequest, tmp_path: Path, world: World, pg_reachable: str | None
) -> AsyncIterator[V1]:
    """A version-1 database whose JP log crosses a tile boundary."""
    async for made in v1_database(request.param, tmp_path, world, pg_reachable, TILED):
        yield made


async def v1_database(
    backend: str, tmp_path: Path, world: World, pg_reachable: str | None, sizes: dict[str, int]
) -> AsyncIterator[V1]:
    rows, made = await v1_rows(world, sizes)
    if backend == "sqlite":
        path = tmp_path / "v1.db"
        write_v1_sqlite(path, rows)
        made.url = f"sqlite:///{path}"
        yield made
        return
    skip_without_pg(pg_reachable)
    schema = await make_schema()
    try:
        made.url = with_param(PG_URL, "search_path", schema)
        await write_v1_postgres(made.url, rows)
        yield made
    finally:
        await drop_schema(schema)


async def migrate_to(version: int, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Open the database with the migrations of a release that ended at ``version``."""
    with monkeypatch.context() as patch:
        patch.setattr(m, "MIGRATIONS", m.MIGRATIONS[:version])
        patch.setattr(m, "SCHEMA_VERSION", version)
        async with await open_store(url):
            pass
    assert await raw(url, m.READ_SCHEMA_VERSION) == [(str(version),)]


async def row_counts(url: str, names: Sequence[str]) -> list[int]:
    """The number of rows of each table of ``names``, in that order."""
    return [(await raw(url, f"SELECT count(*) FROM {t}"))[0][0] for t in names]


async def tables(url: str) -> set[str]:
    if url.startswith("sqlite:///"):
        rows = await raw(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await raw(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {str(r[0]) for r in rows}


async def assert_logs_verify(store: Store, made: V1, world: World) -> None:
    """Sizes, roots at every size, inclusion proofs and checkpoints are as version 1 held."""
    assert set(await store.logs()) == set(made.heads)
    for log, (size, root) in made.heads.items():
        head = await store.tree_head(log)
        assert (head.size, head.root) == (size, root)
        leaves = made.leaves[log]
        for n in range(1, size + 1):
            assert await store.root_at(log, n) == merkle.root(leaves[:n])
        for i in range(size):
            proof = await store.inclusion_proof(log, i)
            assert merkle.verify_inclusion(leaves[i], i, size, proof, root)
        assert [cp.note for cp in await store.checkpoints(log)] == made.notes[log]
        audit = await verify_log(
            store, log, verify=world.verify,
            verifiers=checkpoint_verifiers(world.root, log, world.now),
        )  # fmt: skip
        assert audit.problems == []
        assert (audit.size, audit.root, audit.checkpoints_checked) == (
            size, root, len(made.notes[log])
        )  # fmt: skip


# --- the upgrade ----------------------------------------------------------------------


async def test_a_version_1_store_upgrades_and_every_log_still_verifies(
    v1: V1, world: World
) -> None:
    """Opening a version-1 database applies 2 and 3 in order, records them (1 as found,
    before migrations were recorded), and every log, proof and checkpoint is unchanged."""
    assert "trust_marks" not in await tables(v1.url)
    async with await open_store(v1.url) as store:
        await assert_logs_verify(store, v1, world)
        await store.put_state("status/JP-ID", b"after the upgrade")
        assert await store.get_state("status/JP-ID") == b"after the upgrade"
        assert await store.trust_marks() == {}
    assert {"trust_marks", "node_state", "schema_migrations"} <= await tables(v1.url)
    recorded = await raw(v1.url, "SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    assert [r[0] for r in recorded] == list(range(1, m.SCHEMA_VERSION + 1))
    assert recorded[0][1] is None  # version 1 was there before migrations were recorded
    assert recorded[1][1] is not None
    assert recorded[2][1] is not None
    assert await raw(v1.url, m.READ_SCHEMA_VERSION) == [(str(m.SCHEMA_VERSION),)]


async def assert_tiled_log_answers(store: Store, made: V1, world: World) -> list[bytes]:
    """Every log of ``TILED`` verifies, and entry 270 of the JP log is found by record id,
    by envelope and by kind and key; returns the JP log's envelopes."""
    await assert_logs_verify(store, made, world)
    envs = world.envelopes("JP", TILED["JP"])
    rid = hashlib.sha256(envs[270]).hexdigest()
    assert (await store.record(rid)).index == 270
    assert await store.envelope(rid) == envs[270]
    found = await store.records("issuance", (await store.record(rid)).key)
    assert [r.index for r in found if r.log == world.jp_log] == [270]
    return envs


async def test_migration_6_merges_the_index_keeps_level_8_nodes_and_ids(
    v1_tiled: V1, world: World
) -> None:
    """Version 1 to 6 with a log past a 256-wide tile: roots at every size, proofs and
    checkpoints verify from the sparse nodes; the record index answers from the merged
    entries and the id index; a record held is still refused; appends go on."""
    url, jp = v1_tiled.url, world.jp_log
    async with await open_store(url) as store:
        envs = await assert_tiled_log_answers(store, v1_tiled, world)
        with pytest.raises(ConflictError, match="already in the log at index 270"):
            await store.append(jp, None, envs[270], world.verify)
        more = world.envelopes("JP", 5, TILED["JP"])
        result = await store.append_entries(jp, None, more, world.verify)
        assert result.size == TILED["JP"] + 5
        leaves = [merkle.leaf_hash(e) for e in envs + more]
        assert result.root == merkle.root(leaves)
        assert await store.inclusion_proof(jp, 7) == merkle.inclusion_proof(leaves, 7)
    assert "record_index" not in await tables(url)
    # migration 6 kept level 8 only; the appends after it write the levels of ADR 0046
    # for what they complete: JP's level-4 node over entries 288..303
    nodes = await raw(url, "SELECT level, idx FROM log_nodes ORDER BY 1, 2")
    assert nodes == [(4, TILED["JP"] >> 4), (8, 0)]
    ids = await row_counts(url, sql.ID_TABLES)
    # the migrated ones and the 5 appended; PostgreSQL's moved into a hash index (7)
    assert sum(ids) == (sum(TILED.values()) + 5 if url.startswith("sqlite") else 0)


async def index_definitions(url: str) -> dict[str, str]:
    """The indexes of ``log_entries``: name -> definition (SQL text)."""
    if url.startswith("sqlite:///"):
        text = "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'log_entries'"
        return {str(r[0]): str(r[1]) for r in await raw(url, text)}
    text = (
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = 'log_entries'"
    )
    return {str(r[0]): str(r[1]) for r in await raw(url, text)}


async def test_migration_7_finds_postgres_ids_through_a_hash_index(
    v1_tiled: V1, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-6 database (version 1 taken to 6 by the migrations of that release) opens
    at 7: on PostgreSQL the ids leave ``record_ids`` for a hash index of the entries and
    append times get a BRIN index; on SQLite nothing changes. Either way every log
    verifies, records are found by id, a record held is refused and appends go on."""
    url, jp = v1_tiled.url, world.jp_log
    await migrate_to(6, url, monkeypatch)
    keyed = await row_counts(url, V8_ID_TABLES)
    assert sum(keyed) == sum(TILED.values())  # version 6 keyed every id
    postgres = not url.startswith("sqlite")
    async with await open_store(url) as store:
        envs = await assert_tiled_log_answers(store, v1_tiled, world)
        with pytest.raises(ConflictError, match=r"already in the log at index (3|270)"):
            await store.append_entries(jp, None, [envs[3], envs[270]], world.verify)
        more = world.envelopes("JP", 5, TILED["JP"])
        assert (await store.append_entries(jp, None, more, world.verify)).size == 305
        new = hashlib.sha256(more[4]).hexdigest()
        assert (await store.record(new)).index == 304
        assert (await store.append_entries(jp, 300, more, world.verify)).appended == 0
    recorded = await raw(url, "SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    assert dict(recorded)[7] is not None  # applied now, with migration 8 (ADR 0044)
    keyed = await row_counts(url, sql.ID_TABLES)
    assert sum(keyed) == (0 if postgres else sum(TILED.values()) + 5)
    defs = await index_definitions(url)
    assert ("USING hash (record_id)" in defs.get("log_entries_record_id", "")) == postgres
    assert ("USING brin" in defs["log_entries_appended"]) == postgres
    assert "log_entries_kind_key" in defs  # keys of one author come in order: a B-tree


async def test_migration_8_keeps_sqlite_append_times_as_integer_microseconds(
    v1_tiled: V1, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-7 database (version 1 taken to 7 by the migrations of that release) opens
    at 8: on SQLite ``log_entries`` is rebuilt with every append time as the same instant
    in integer microseconds, its indexes kept; on PostgreSQL nothing changes. Either way
    every log verifies, entries read back their times, append counts find them, a record
    held is refused and appends go on."""
    url, jp = v1_tiled.url, world.jp_log
    await migrate_to(7, url, monkeypatch)
    text = "SELECT log_id, idx, appended_at FROM log_entries ORDER BY log_id, idx"
    before = await raw(url, text)
    indexes = set(await index_definitions(url))
    sqlite = url.startswith("sqlite")
    if sqlite:
        assert {type(r[2]) for r in before} == {str}
        want = [(r[0], r[1], sql.epoch_us(datetime.fromisoformat(r[2]))) for r in before]
    else:
        want = before
    async with await open_store(url) as store:
        envs = await assert_tiled_log_answers(store, v1_tiled, world)
        assert await raw(url, text) == want
        times = [e.appended_at for e in await store.entries(jp)]
        assert [sql.stored_time(r[2]) for r in before][: len(times)] == times
        counts = await store.append_counts(jp, min(times) - timedelta(hours=1), 3600)
        assert sum(n for _, n in counts) == TILED["JP"]
        with pytest.raises(ConflictError, match="already in the log at index 270"):
            await store.append(jp, None, envs[270], world.verify)
        more = world.envelopes("JP", 5, TILED["JP"])
        assert (await store.append_entries(jp, None, more, world.verify)).size == 305
    assert set(await index_definitions(url)) == indexes
    recorded = await raw(url, "SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    assert dict(recorded)[8] is not None  # applied now, with migration 9 (ADR 0053)


#: The id tables of versions 6 to 8, largest first.
V8_ID_TABLES = ("record_ids", "middle_record_ids", "recent_record_ids")
#: Where a version-8 store's appends leave each log's ids (``record_ids`` below these
#: indexes, then the middle table, then the recent one), by node of ``TILED``.
V8_IDS = {"JP": (256, 288), "ID": (16, 16)}


def place_v8_ids(path: str) -> None:
    """Move ids of the migrated logs out of ``record_ids`` as version 8's merges leave
    them: after the last merge into ``record_ids``, into the middle table, and since the
    last merge into that one, recent."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for node, (middle, recent) in V8_IDS.items():
            (log_id,) = conn.execute("SELECT id FROM logs WHERE node = ?", (node,)).fetchone()
            steps = (("record_ids", "middle_record_ids", middle),
                     ("middle_record_ids", "recent_record_ids", recent))  # fmt: skip
            for source, target, lo in steps:
                where = "log_id = ? AND idx >= ?"
                conn.execute(f"INSERT INTO {target} SELECT * FROM {source} WHERE {where}",
                             (log_id, lo))  # fmt: skip
                conn.execute(f"DELETE FROM {source} WHERE {where}", (log_id, lo))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def assert_every_id_found(store: Store, world: World, sizes: dict[str, int]) -> None:
    """Every record of every log is found by its id, at its index, with its envelope."""
    for node, size in sizes.items():
        for i, env in enumerate(world.envelopes(node, size)):
            rid = hashlib.sha256(env).hexdigest()
            found = await store.record(rid)
            assert (found.log.node, found.index) == (node, i)
            assert await store.envelope(rid) == env


async def test_migration_9_adds_a_fourth_id_table_and_every_id_is_still_found(
    v1_tiled: V1, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-8 database (version 1 taken to 8 by the migrations of that release) with
    ids in all three of its id tables opens at 9: on SQLite the middle table's ids move
    into ``upper_record_ids``, the others stay where they were; on PostgreSQL (ids in a
    hash index since 7) the new table is made, empty, and nothing else changes. Either way
    every record id of every log is found, one held is refused from each table, and
    appends go on, merging through the four tables."""
    url, jp = v1_tiled.url, world.jp_log
    await migrate_to(8, url, monkeypatch)
    sqlite = url.startswith("sqlite")
    made = await tables(url)
    assert "upper_record_ids" not in made
    if sqlite:
        place_v8_ids(url[len("sqlite:///") :])
    v8 = await row_counts(url, V8_ID_TABLES)
    assert v8 == ([256 + 16, 32, 12 + 5] if sqlite else [0, 0, 0])
    indexes = await index_definitions(url)
    monkeypatch.setattr(sql, "RECENT_IDS", 8)
    monkeypatch.setattr(sql, "MIDDLE_IDS", 16)
    async with await open_store(url) as store:
        counts = await row_counts(url, sql.ID_TABLES)
        assert counts == ([256 + 16, 32, 0, 12 + 5] if sqlite else [0, 0, 0, 0])
        await assert_tiled_log_answers(store, v1_tiled, world)
        await assert_every_id_found(store, world, TILED)
        envs = world.envelopes("JP", TILED["JP"])
        for index in (3, 270, 295):  # record_ids, upper (the old middle), recent
            with pytest.raises(ConflictError, match=f"already in the log at index {index}"):
                await store.append_entries(jp, None, [envs[index]], world.verify)
        more = world.envelopes("JP", 5, TILED["JP"])
        assert (await store.append_entries(jp, None, more, world.verify)).size == 305
        # 300 -> 305 crosses 304: recent into middle, middle into upper
        counts = await row_counts(url, sql.ID_TABLES)
        assert counts == ([256 + 16, 32 + 17 + 5, 0, 0] if sqlite else [0, 0, 0, 0])
        await assert_every_id_found(store, world, {**TILED, "JP": 305})
        with pytest.raises(ConflictError, match="already in the log at index 302"):
            await store.append_entries(jp, None, [more[2]], world.verify)
    assert await index_definitions(url) == indexes
    assert await tables(url) - made == {"upper_record_ids"}  # and nothing else is new
    recorded = await raw(url, "SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    assert recorded[-1][0] == 9
    assert recorded[-1][1] is not None


async def test_reopening_an_upgraded_store_applies_nothing(v1: V1, world: World) -> None:
    """A second open finds the current version: nothing runs, nothing is re-recorded."""
    async with await open_store(v1.url):
        pass
    before = await raw(v1.url, "SELECT version, description, applied_at FROM schema_migrations")
    async with await open_store(v1.url) as store:
        await assert_logs_verify(store, v1, world)
    after = await raw(v1.url, "SELECT version, description, applied_at FROM schema_migrations")
    assert after == before


async def test_a_failing_migration_leaves_version_1_whole(
    v1: V1, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All pending migrations run in one transaction: one that fails leaves the database
    at version 1, without even the tables of the migrations before it."""
    broken = m.Migration(m.SCHEMA_VERSION + 1, "a broken step", ("CREATE TABLE broken (",))
    monkeypatch.setattr(m, "MIGRATIONS", (*m.MIGRATIONS, broken))
    monkeypatch.setattr(m, "SCHEMA_VERSION", m.SCHEMA_VERSION + 1)
    with pytest.raises(StoreError):
        await open_store(v1.url)
    assert await raw(v1.url, m.READ_SCHEMA_VERSION) == [("1",)]
    assert not {"trust_marks", "node_state", "broken"} & await tables(v1.url)
    monkeypatch.undo()
    async with await open_store(v1.url) as store:  # the real code still upgrades it
        await assert_logs_verify(store, v1, world)


@pytest.mark.parametrize("found", [str(m.SCHEMA_VERSION + 1), "99", "three"])
async def test_a_newer_layout_is_refused_and_left_alone(v1: V1, found: str) -> None:
    """A version this code does not know is refused with the usual message; nothing is
    migrated or recorded."""
    if v1.url.startswith("sqlite:///"):
        conn = sqlite3.connect(v1.url[len("sqlite:///") :], isolation_level=None)
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (found,))
        conn.close()
    else:
        pconn = await asyncpg.connect(v1.url)
        await pconn.execute("UPDATE store_meta SET value = $1 WHERE key = 'schema_version'", found)
        await pconn.close()
    with pytest.raises(StoreError, match=f"this jcm-sync knows version {m.SCHEMA_VERSION}"):
        await open_store(v1.url)
    assert await raw(v1.url, m.READ_SCHEMA_VERSION) == [(found,)]
    assert "trust_marks" not in await tables(v1.url)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_new_database_gets_every_migration_recorded(
    backend: str, tmp_path: Path, pg_reachable: str | None
) -> None:
    """No ``store_meta`` at all is a new database: every migration is applied and recorded
    with when, and the version is the last one's."""
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        skip_without_pg(pg_reachable)
        schema = await make_schema()
        url = with_param(PG_URL, "search_path", schema)
    try:
        async with await open_store(url):
            pass
        recorded = await raw(url, "SELECT version, description, applied_at FROM schema_migrations")
        assert [(r[0], r[1]) for r in sorted(recorded)] == [
            (x.version, x.description) for x in m.MIGRATIONS
        ]
        assert all(r[2] is not None for r in recorded)
        assert await raw(url, m.READ_SCHEMA_VERSION) == [(str(m.SCHEMA_VERSION),)]
    finally:
        if schema is not None:
            await drop_schema(schema)


# --- the list itself -------------------------------------------------------------------


def test_migrations_are_numbered_one_by_one_and_the_version_is_the_last() -> None:
    """Rule 1: versions 1, 2, 3, ... with no gap, each described; ``SCHEMA_VERSION`` is
    the last one's."""
    assert [x.version for x in m.MIGRATIONS] == list(range(1, len(m.MIGRATIONS) + 1))
    assert m.SCHEMA_VERSION == m.MIGRATIONS[-1].version == 9
    assert all(x.description and x.statements for x in m.MIGRATIONS)


def test_version_1_of_the_migrations_is_the_original_layout() -> None:
    """Migration 1 makes exactly the version-1 tables (``store_meta`` is bookkeeping)."""
    assert m.MIGRATIONS[0].statements == V1_DDL[1:]
    assert m.BOOKKEEPING_DDL[0] == V1_DDL[0]


LAST = m.SCHEMA_VERSION


@pytest.mark.parametrize(
    ("found", "applied"),
    [(str(v) if v else None, list(range(v + 1, LAST + 1))) for v in range(LAST + 1)],
)
def test_the_steps_apply_what_is_missing_and_record_it(
    found: str | None, applied: list[int]
) -> None:
    """``migration_steps``: the pending migrations' DDL each followed by its record, the
    older versions back-filled without a time, then the new version; nothing when current."""
    steps = m.migration_steps(found, "db", "now", **sqlite_store.DIALECT)
    if not applied:
        assert steps == []
        return
    records = [args for text, args in steps if text == m.RECORD_MIGRATION]
    assert [r[0] for r in records if r[2] == "now"] == applied
    older = [v for v in range(1, LAST + 1) if v not in applied]
    assert [r[0] for r in records if r[2] is None] == older
    assert steps[-1] == (m.SET_SCHEMA_VERSION, (str(m.SCHEMA_VERSION),))
