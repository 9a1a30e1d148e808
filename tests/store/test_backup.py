"""``store/backup.py``: a consistent snapshot while another connection appends, loading
beside the store without touching it until ``commit``, and the PostgreSQL tools' refusals.

SQLite files live in ``tmp_path``; PostgreSQL runs in schemas of this test only (see
``tests/store/conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.errors import ConfigError, NotFoundError, StoreError
from jcm_sync.store import Store, open_store
from jcm_sync.store import backup as sb
from jcm_sync.store.migrations import SCHEMA_VERSION
from tests.store import World, log_ref
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_execute, with_param

LOG = log_ref("ID")


async def fill(store: Store, world: World, n: int, start: int = 0) -> None:
    await store.ensure_log(LOG)
    envs = world.envelopes("ID", n, start)
    for i in range(0, n, 200):
        await store.append_entries(LOG, start + i, envs[i : i + 200], world.verify)


@pytest.fixture
async def pg_pair(pg_reachable: str | None) -> AsyncIterator[tuple[str, str]]:
    """Two store URLs in two fresh schemas of the test database."""
    from tests.store.conftest import skip_without_pg

    skip_without_pg(pg_reachable)
    a, b = await make_schema(), await make_schema()
    try:
        yield with_param(PG_URL, "search_path", a), with_param(PG_URL, "search_path", b)
    finally:
        await drop_schema(a)
        await drop_schema(b)


async def test_sqlite_snapshot_is_consistent_while_another_connection_appends(
    tmp_path: Path, world: World
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = await open_store(url)
    writer = await open_store(url)  # another connection, as a running daemon's
    try:
        await fill(store, world, 1000)

        async def append_more() -> None:
            for k in range(10):
                await fill(writer, world, 100, 1000 + 100 * k)

        task = asyncio.create_task(append_more())
        snaps = []
        while not task.done() or not snaps:
            d = tmp_path / f"s{len(snaps)}"
            d.mkdir()
            snaps.append(await sb.dump(url, d))
        await task
        for snap in snaps:
            assert snap.backend == "sqlite"
            assert snap.schema_version == SCHEMA_VERSION
            (head,) = snap.logs
            assert 1000 <= head.size <= 2000
            # the copy stands alone (no -wal beside it) and holds exactly what it reports
            assert not Path(f"{snap.path}-wal").exists()
            copy = await open_store(f"sqlite:///{snap.path}")
            try:
                assert (await copy.tree_head(LOG)).size == head.size
                assert await copy.root_at(LOG, head.size) == head.root
                assert await store.root_at(LOG, head.size) == head.root
            finally:
                await copy.close()
    finally:
        await writer.close()
        await store.close()


async def test_sqlite_stage_touches_nothing_until_commit(tmp_path: Path, world: World) -> None:
    src_url = f"sqlite:///{tmp_path / 'src.db'}"
    src = await open_store(src_url)
    await fill(src, world, 300)
    await src.close()
    snap = await sb.dump(src_url, tmp_path)
    dest = tmp_path / "dest" / "jcm-sync.db"
    dest.parent.mkdir()
    url = f"sqlite:///{dest}"
    live = await open_store(url)
    await fill(live, world, 40)
    await live.close()
    assert await sb.entries_held(url) == 40
    assert await sb.entries_held(f"sqlite:///{tmp_path / 'none.db'}") == 0
    before = dest.read_bytes()

    staged = await sb.stage(url, snap.path, None)
    assert staged.schema_version == SCHEMA_VERSION
    assert dest.read_bytes() == before
    await staged.discard()
    assert [p.name for p in dest.parent.iterdir() if "restore" in p.name] == []
    assert dest.read_bytes() == before

    snap = await sb.dump(src_url, tmp_path / "dest")
    Path(f"{dest}-wal").write_bytes(b"stale")  # a WAL left by the previous database
    staged = await sb.stage(url, snap.path, None)
    await staged.commit()
    assert not Path(f"{dest}-wal").exists()
    assert await sb.entries_held(url) == 300
    store = await open_store(url)
    try:
        assert (await store.tree_head(LOG)).size == 300
    finally:
        await store.close()


async def test_sqlite_refusals(tmp_path: Path, world: World) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        await sb.dump(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path)
    (tmp_path / "plain.db").write_bytes(b"")
    conn = sqlite3.connect(tmp_path / "plain.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a jcm-sync store"):
        await sb.dump(f"sqlite:///{tmp_path / 'plain.db'}", tmp_path)
    with pytest.raises(ConfigError, match="nothing to back up"):
        sb.backend_of("memory://")
    # a dump that is not a database, and one of a newer schema: refused, nothing left
    url = f"sqlite:///{tmp_path / 'd' / 'jcm-sync.db'}"
    (tmp_path / "d").mkdir()
    junk = tmp_path / "d" / "junk"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(StoreError, match="not a SQLite database"):
        await sb.stage(url, junk, None)
    src_url = f"sqlite:///{tmp_path / 'src.db'}"
    src = await open_store(src_url)
    await fill(src, world, 5)
    await src.close()
    snap = await sb.dump(src_url, tmp_path / "d")
    conn = sqlite3.connect(snap.path, isolation_level=None)
    conn.execute(
        "UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        await sb.stage(url, snap.path, None)
    assert list((tmp_path / "d").iterdir()) == []


@pytest.mark.postgres
async def test_postgres_dump_and_stage_into_another_schema(
    pg_pair: tuple[str, str], world: World
) -> None:
    src_url, dest_url = pg_pair
    src = await open_store(src_url)
    dest = await open_store(dest_url)
    try:
        await fill(src, world, 500)
        await fill(dest, world, 20)
        task = asyncio.create_task(fill(src, world, 500, 500))
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            snap = await sb.dump(src_url, Path(tmp))
            await task
            assert snap.backend == "postgresql"
            assert snap.schema == src_url.rsplit("=", 1)[1]
            (head,) = snap.logs
            assert 500 <= head.size <= 1000
            assert await src.root_at(LOG, head.size) == head.root
            assert await sb.entries_held(dest_url) == 20
            staged = await sb.stage(dest_url, snap.path, snap.schema)
            assert await sb.entries_held(dest_url) == 20  # untouched until commit
            copy = await open_store(staged.url)
            try:
                assert (await copy.tree_head(LOG)).size == head.size
            finally:
                await copy.close()
            await staged.commit()
        await dest.close()
        dest = await open_store(dest_url)
        assert (await dest.tree_head(LOG)).size == head.size
        assert await sb.entries_held(dest_url) == head.size
        # the source is as it was, and no staging schema is left behind
        assert (await src.tree_head(LOG)).size == 1000
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            left = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                dest_url.rsplit("=", 1)[1] + "_restore_%",
            )
        finally:
            await conn.close()
        assert left == []
    finally:
        await src.close()
        await dest.close()


@pytest.mark.postgres
async def test_postgres_discard_drops_the_staging_schema(
    pg_pair: tuple[str, str], world: World, tmp_path: Path
) -> None:
    src_url, dest_url = pg_pair
    src = await open_store(src_url)
    try:
        await fill(src, world, 50)
    finally:
        await src.close()
    snap = await sb.dump(src_url, tmp_path)
    staged = await sb.stage(dest_url, snap.path, snap.schema)
    await staged.discard()
    assert await sb.entries_held(dest_url) == 0
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        staging = staged.url.rsplit("=", 1)[1]
        assert staging.startswith(dest_url.rsplit("=", 1)[1] + "_restore_")
        found = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", staging)
    finally:
        await conn.close()
    assert found == 0


def fake_tool(directory: Path, name: str, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_fsync_path_syncs_the_file_or_folder_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper both backup layers use before and after a rename."""
    synced: list[int] = []

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)

    monkeypatch.setattr(os, "fsync", fsync)
    f = tmp_path / "backup.part"
    f.write_bytes(b"x")
    sb.fsync_path(f)
    sb.fsync_path(tmp_path)
    assert synced == [f.stat().st_ino, tmp_path.stat().st_ino]
    with pytest.raises(FileNotFoundError):
        sb.fsync_path(tmp_path / "absent")


def test_find_tool_refuses_missing_and_older_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sb, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(StoreError, match="pg_dump was not found on PATH or under"):
        sb.find_tool("pg_dump", 15)
    old = fake_tool(tmp_path / "old", "pg_dump", "9.6.24")
    monkeypatch.setenv("PATH", str(old.parent))
    with pytest.raises(StoreError, match=r"older than the server \(PostgreSQL 15\).*9"):
        sb.find_tool("pg_dump", 15)
    # a newer one under the Debian layout is taken over the older one on PATH
    newer = fake_tool(tmp_path / "lib" / "17" / "bin", "pg_dump", "17.2")
    monkeypatch.setattr(sb, "PG_BIN_GLOB", str(tmp_path / "lib" / "*" / "bin"))
    assert sb.find_tool("pg_dump", 15) == str(newer)
    # and psql is taken from pg_restore's folder when it has one
    restore = fake_tool(newer.parent, "pg_restore", "17.2")
    psql = fake_tool(newer.parent, "psql", "17.2")
    fake_tool(old.parent, "psql", "16.1")
    assert sb.find_tool("psql", 15, near=str(restore)) == str(psql)


def test_tools_get_no_password_on_their_command_line() -> None:
    dsn, env = sb._libpq(
        "postgresql://hub:s%40cret@127.0.0.1:5432/jcm?search_path=hub&sslmode=disable"
    )
    assert dsn == "postgresql://hub@127.0.0.1:5432/jcm?sslmode=disable"
    assert env["PGPASSWORD"] == "s@cret"
    with pytest.raises(ConfigError, match="not a plain schema name"):
        sb._schema("postgresql://h@127.0.0.1/db?search_path=Bad-Name")


def test_rewriter_renames_the_schema_outside_copy_data() -> None:
    rewrite = sb._rewriter("hub", "hub_restore_1")
    lines = [
        "CREATE SCHEMA hub;\n",
        "CREATE TABLE hub.logs (\n",
        "ALTER SEQUENCE hub.logs_id_seq OWNED BY hub.logs.id;\n",
        "ALTER TABLE ONLY hub.logs ALTER COLUMN id SET DEFAULT "
        "nextval('hub.logs_id_seq'::regclass);\n",
        "COPY hub.logs (id, origin) FROM stdin;\n",
        "1\thub.example/JP-MN/hub.x\n",
        "\\.\n",
        "SELECT pg_catalog.setval('hub.logs_id_seq', 1, true);\n",
        'CREATE INDEX i ON "hub".log_nodes USING btree (x);\n',
        "CREATE TABLE myhub.t (x int);\n",
    ]
    out = [rewrite(line) for line in lines]
    assert out == [
        None,
        'CREATE TABLE "hub_restore_1".logs (\n',
        'ALTER SEQUENCE "hub_restore_1".logs_id_seq OWNED BY "hub_restore_1".logs.id;\n',
        'ALTER TABLE ONLY "hub_restore_1".logs ALTER COLUMN id SET DEFAULT '
        "nextval('\"hub_restore_1\".logs_id_seq'::regclass);\n",
        'COPY "hub_restore_1".logs (id, origin) FROM stdin;\n',
        "1\thub.example/JP-MN/hub.x\n",  # data is never rewritten
        "\\.\n",
        "SELECT pg_catalog.setval('\"hub_restore_1\".logs_id_seq', 1, true);\n",
        'CREATE INDEX i ON "hub_restore_1".log_nodes USING btree (x);\n',
        "CREATE TABLE myhub.t (x int);\n",
    ]


@pytest.mark.postgres
async def test_postgres_restore_into_public_moves_only_the_store_tables(
    pg_pair: tuple[str, str], world: World, tmp_path: Path
) -> None:
    """A store without search_path lives in ``public``: a restore moves the store's tables
    into it and leaves whatever else ``public`` holds (a database of this test only)."""
    import uuid

    import asyncpg

    src_url, _ = pg_pair
    name = f"jcm_test_db_{uuid.uuid4().hex[:10]}"
    await pg_execute(f'CREATE DATABASE "{name}"')
    dest_url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await pg_execute(
            "CREATE TABLE public.not_ours (x int); INSERT INTO not_ours VALUES (7)", dest_url
        )
        src = await open_store(src_url)
        try:
            await fill(src, world, 60)
            for size in (60, 120):  # into an empty public, then over the store it holds
                snap = await sb.dump(src_url, tmp_path)
                staged = await sb.stage(dest_url, snap.path, snap.schema)
                await staged.commit()
                dest = await open_store(dest_url)
                try:
                    assert (await dest.tree_head(LOG)).size == size
                finally:
                    await dest.close()
                if size == 60:
                    await fill(src, world, 60, 60)
        finally:
            await src.close()
        conn = await asyncpg.connect(dest_url)
        try:
            assert await conn.fetchval("SELECT x FROM public.not_ours") == 7
            schemas = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'public_restore_%'"
            )
            assert schemas == []
        finally:
            await conn.close()
    finally:
        await pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
