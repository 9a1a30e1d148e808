"""The SQLite store (``store/sqlite.py``): its URL forms, WAL durability settings, the
refusals of a file it cannot use, and what it keeps in the file.

The protocol itself is ``test_protocol.py``; kills mid-append are ``test_durability.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from jcm_sync.core import merkle
from jcm_sync.errors import ConflictError, CorruptStoreError, NotFoundError, StoreError
from jcm_sync.store import open_store, sql
from jcm_sync.store.sql import SCHEMA_VERSION
from jcm_sync.store.sqlite import SqliteStore, epoch_us_of_text, path_of_url
from tests.store import World, traced_pair


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/jp.db", "data/jp.db"),
        ("sqlite:///jp.db", "jp.db"),
        ("sqlite:////var/lib/jcm-sync/jp.db", "/var/lib/jcm-sync/jp.db"),
    ],
    ids=["relative-dir", "relative", "absolute"],
)
def test_path_of_url_follows_sqlalchemy(url: str, path: str) -> None:
    """Three slashes then a relative path; four slashes for an absolute one."""
    assert path_of_url(url) == path


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://jp.db", "sqlite:///relative/file.db"),
        ("sqlite:///", "sqlite:///relative/file.db"),
        ("SQLITE:///jp.db", "sqlite:///relative/file.db"),
        ("sqlite:///:memory:", "plain file path"),
        ("sqlite:///jp.db?mode=ro", "plain file path"),
        ("sqlite:///jp.db#x", "plain file path"),
    ],
    ids=["two-slashes", "no-path", "upper-scheme", "in-memory", "query", "fragment"],
)
def test_path_of_url_refusals(url: str, match: str) -> None:
    """Other forms are a StoreError naming the URL: a store is a plain file that survives."""
    with pytest.raises(StoreError, match=match) as info:
        path_of_url(url)
    assert info.value.where == url


async def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    """``sqlite:///sub/jp.db`` creates ``sub/jp.db`` under the current directory."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    async with await open_store("sqlite:///sub/jp.db") as s:
        assert isinstance(s, SqliteStore)
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 2), world.verify)
    assert (tmp_path / "sub" / "jp.db").is_file()
    monkeypatch.chdir(tmp_path / "sub")
    async with await open_store(f"sqlite:///{tmp_path / 'sub' / 'jp.db'}") as again:
        assert (await again.tree_head(world.jp_log)).size == 2


async def test_sqlite_uses_wal_with_full_sync(tmp_path: Path, world: World) -> None:
    """The SQLite file is in WAL mode and the store's connection syncs fully."""
    path = tmp_path / "wal.db"
    s = await open_store(f"sqlite:///{path}")
    try:
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 1), world.verify)
        assert isinstance(s, SqliteStore)
        sync = await s._query("PRAGMA synchronous")
        assert sync[0][0] == 2  # FULL
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_sqlite_in_missing_directory_is_not_found(tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist is refused, naming the file."""
    with pytest.raises(NotFoundError, match="does not exist"):
        await open_store(f"sqlite:///{tmp_path / 'absent' / 'x.db'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only directory anyway")
async def test_sqlite_in_read_only_directory_is_refused(tmp_path: Path) -> None:
    """A directory SQLite cannot create its files in is named as the cause."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(StoreError, match=f"directory {ro} is not writable") as info:
            await open_store(f"sqlite:///{ro / 'x.db'}")
    finally:
        ro.chmod(0o755)
    assert info.value.where == str(ro / "x.db")
    assert not (ro / "x.db").exists()


async def test_sqlite_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """A path naming a directory cannot be opened; the error says so and names the path."""
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the database") as info:
        await open_store(f"sqlite:///{tmp_path / 'dir.db'}")
    assert info.value.where == str(tmp_path / "dir.db")


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    """sqlite3's error for a non-database file is translated into StoreError."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="SQLite failed") as info:
        await open_store(f"sqlite:///{path}")
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == b"this is not a database" * 100


async def test_sqlite_errors_after_opening_are_store_errors(tmp_path: Path) -> None:
    """An sqlite3 error during use is a StoreError naming the file, with the cause kept."""
    path = tmp_path / "jp.db"
    async with await open_store(f"sqlite:///{path}") as s:
        assert isinstance(s, SqliteStore)
        with pytest.raises(StoreError, match="SQLite failed: no such table") as info:
            await s._query("SELECT * FROM no_such_table")
        assert info.value.where == str(path)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)


async def test_new_file_records_the_schema_version(tmp_path: Path) -> None:
    """Opening creates every table and records the layout version in the file."""
    path = tmp_path / "jp.db"
    async with await open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchone()
    finally:
        conn.close()
    assert {"logs", "log_entries", "log_nodes", "log_checkpoints", "record_ids"} <= tables
    assert "trust_marks" in tables
    assert version == (str(SCHEMA_VERSION),)


async def test_appended_at_is_kept_as_integer_microseconds(tmp_path: Path, world: World) -> None:
    """SQLite has no time type: the append time is an integer count of microseconds since
    the epoch (migration 8, ADR 0044), exact to the microsecond, and reads back equal,
    whatever offset the clock gave it."""
    path = tmp_path / "jp.db"
    at = datetime(2016, 6, 1, 9, 30, tzinfo=UTC) + timedelta(microseconds=7)
    tokyo = timezone(timedelta(hours=9))
    async with await open_store(f"sqlite:///{path}") as s:
        s.set_clock(lambda: at)
        await s.append_entries(world.jp_log, 0, world.envelopes("JP", 1), world.verify)
        s.set_clock(lambda: at.astimezone(tokyo) + timedelta(seconds=1))
        await s.append_entries(world.jp_log, 1, world.envelopes("JP", 1, 1), world.verify)
        assert (await s.entry(world.jp_log, 0)).appended_at == at
        assert (await s.entry(world.jp_log, 1)).appended_at == at + timedelta(seconds=1)
    conn = sqlite3.connect(path)
    try:
        stored = conn.execute("SELECT appended_at, typeof(appended_at) FROM log_entries").fetchall()
    finally:
        conn.close()
    assert stored == [(1464773400000007, "integer"), (1464773401000007, "integer")]


def test_migration_8_converts_iso_text_and_keeps_what_it_cannot_read() -> None:
    """An ISO 8601 append time becomes integer microseconds, whatever its offset; text
    that is not a time stays as it was, for a read to report as corrupt."""
    tokyo = timezone(timedelta(hours=9))
    at = datetime(2016, 6, 1, 18, 30, 0, 7, tzinfo=tokyo)
    assert epoch_us_of_text(at.isoformat()) == 1464773400000007
    assert epoch_us_of_text("June the first") == "June the first"
    assert epoch_us_of_text(None) is None


async def test_two_stores_on_one_file_serialise_appends(tmp_path: Path, world: World) -> None:
    """Two store objects (as two processes) appending at the end of one file lose nothing:
    each append takes the write lock before reading the head."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    envs = world.envelopes("JP", 20)
    a, b = await open_store(url), await open_store(url)
    try:
        await asyncio.gather(
            *(
                (a if i % 2 else b).append_entries(
                    world.jp_log, None, envs[i : i + 2], world.verify
                )
                for i in range(0, 20, 2)
            )
        )
        held = [e.envelope for e in await a.entries(world.jp_log)]
        assert sorted(held) == sorted(envs)
        assert (await b.tree_head(world.jp_log)).root == merkle.root(
            [merkle.leaf_hash(e) for e in held]
        )
    finally:
        await a.close()
        await b.close()


def node_reads(statements: list[str]) -> list[str]:
    """The reads of stored tree nodes (``sql.NODE_RANGE``, ``sql.LEAF_RANGE``) traced."""
    return [s for s in statements if s.startswith(("SELECT idx, hash", "SELECT idx, leaf_hash"))]


async def test_an_append_after_this_stores_own_reads_no_frontier_nodes(
    tmp_path: Path, world: World
) -> None:
    """The frontier an append left is the next append's while the head is that append's
    and no other connection committed (rule 11); another connection's commit, a head it
    moved or a corrupted node is read again and checked. Roots are the reference's."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    envs = world.envelopes("JP", 60)
    async with traced_pair(url, world.jp_log, envs[:5], world.verify) as (a, b, statements):
        for s in range(5, 40, 7):  # across tiles of 16 and levels 4, 8
            await a.append_entries(world.jp_log, s, envs[s : s + 7], world.verify)
        assert not node_reads(statements)
        assert (await a.tree_head(world.jp_log)).root == root_of(envs[:40])
        await b.ensure_log(world.id_log)  # another connection commits
        await a.append_entries(world.jp_log, 40, envs[40:41], world.verify)
        assert node_reads(statements)
        statements.clear()
        await b.append_entries(world.jp_log, 41, envs[41:45], world.verify)
        await a.append_entries(world.jp_log, None, envs[45:50], world.verify)
        assert node_reads(statements)
        assert (await a.tree_head(world.jp_log)).root == root_of(envs[:50])
        await a.append_entries(world.jp_log, None, envs[50:51], world.verify)
        other = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
        try:  # entry 48's leaf hash, a node of the frontier of 51 (level 1, index 24)
            other.execute("UPDATE log_entries SET leaf_hash = ? WHERE idx = 48", (b"\x01" * 32,))
        finally:
            other.close()
        with pytest.raises(CorruptStoreError, match="not the root of the stored tree nodes"):
            await a.append_entries(world.jp_log, None, envs[51:52], world.verify)


async def test_a_failed_group_leaves_no_frontier_for_the_next_append(
    tmp_path: Path, world: World
) -> None:
    """An append whose shared transaction failed after it planned (another job of its
    group ended the transaction) is not kept, nor is the frontier it grew used: the next
    append starts from the committed head and reaches the reference's root."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    envs = world.envelopes("JP", 20)
    store = await SqliteStore.open(url)
    try:
        await store.append_entries(world.jp_log, 0, envs[:5], world.verify)
        block = asyncio.ensure_future(store._call(time.sleep, 0.2, group=1))
        await asyncio.sleep(0)

        def ends() -> None:
            store._db().execute("ROLLBACK")
            raise sqlite3.OperationalError("the transaction is gone")

        failed = await asyncio.gather(
            store.append_entries(world.jp_log, 5, envs[5:12], world.verify),
            store._call(ends, group=1),
            return_exceptions=True,
        )
        await block
        assert [type(r) for r in failed] == [StoreError, StoreError]
        assert "the shared transaction failed" in str(failed[0])
        assert (await store.tree_head(world.jp_log)).size == 5
        await store.append_entries(world.jp_log, 5, envs[5:9], world.verify)
        await store.append_entries(world.jp_log, 9, envs[9:20], world.verify)
        assert (await store.tree_head(world.jp_log)).root == root_of(envs[:20])
    finally:
        await store.close()
    async with await open_store(url) as again:  # the stored nodes agree with the root
        await again.append_entries(world.jp_log, 20, world.envelopes("JP", 1, 20), world.verify)


def temporary_files() -> list[str]:
    """The files this process holds open that SQLite named as temporary (``etilqs_``)."""
    fds = Path("/proc/self/fd")
    names = []
    for fd in fds.iterdir():
        try:
            names.append(os.readlink(fd))
        except OSError:
            continue
    return [n for n in names if "etilqs_" in n]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
async def test_a_group_keeps_its_savepoints_pages_in_memory(tmp_path: Path, world: World) -> None:
    """The pages a group's savepoints would roll back stay in memory (rule 12): while a
    group replaces a state value of 400 kB (SQLite's default writes the pages it changes
    to a temporary file past 64 KiB) and appends, no temporary file is open; a refused
    append still rolls back alone."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    envs = world.envelopes("JP", 100)
    old, new = os.urandom(400_000), os.urandom(400_000)
    store = await SqliteStore.open(url)
    try:
        await store.put_state("big", old)
        await store.append_entries(world.jp_log, 0, envs[:50], world.verify)
        block = asyncio.ensure_future(store._call(time.sleep, 0.2, group=1))
        await asyncio.sleep(0)
        results = await asyncio.gather(
            store.put_state("big", new),
            store.append_entries(world.jp_log, 50, [*envs[50:99], envs[3]], world.verify),
            store.append_entries(world.jp_log, 50, envs[50:100], world.verify),
            store._call(temporary_files, group=1),
            return_exceptions=True,
        )
        await block
        assert isinstance(results[1], ConflictError)
        assert results[3] == []
        assert await store.get_state("big") == new
        assert (await store.tree_head(world.jp_log)).root == root_of(envs[:100])
    finally:
        await store.close()


async def test_a_merge_into_record_ids_keeps_its_rollback_pages_in_a_file(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group holding an append expected to merge ids into ``record_ids`` (its log's
    size as last seen crossing a multiple of ``UPPER_IDS``) runs with rollback pages in
    SQLite's file, which that merge, rewriting most of the table, would fill; the next
    group is in memory again (rule 12). Merge periods made small to reach it."""
    for name, value in (("RECENT_IDS", 4), ("MIDDLE_IDS", 16), ("UPPER_IDS", 64)):
        monkeypatch.setattr(sql, name, value)
    envs = world.envelopes("JP", 80)
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'm.db'}")

    def mode() -> int:
        return int(store._db().execute("PRAGMA temp_store").fetchone()[0])

    async def group(start: int, end: int) -> int:
        block = asyncio.ensure_future(store._call(time.sleep, 0.1, group=1))
        await asyncio.sleep(0)
        _, seen = await asyncio.gather(
            store.append_entries(world.jp_log, start, envs[start:end], world.verify),
            store._call(mode, group=1),
        )
        await block
        return seen

    try:
        await store.append_entries(world.jp_log, 0, envs[:60], world.verify)
        assert await group(60, 66) == 1  # 60 -> 66 crosses 64: a file
        assert await group(66, 70) == 2  # in memory again
        assert (await store.tree_head(world.jp_log)).root == root_of(envs[:70])
        for env in (envs[0], envs[63], envs[64], envs[69]):  # merged up, or recent
            assert await store.envelope(hashlib.sha256(env).hexdigest()) == env
    finally:
        await store.close()


def root_of(envs: list[bytes]) -> bytes:
    return merkle.root([merkle.leaf_hash(e) for e in envs])


async def test_closed_sqlite_store_releases_the_file(tmp_path: Path) -> None:
    """After close the store refuses use and the file can be opened again."""
    url = f"sqlite:///{tmp_path / 'jp.db'}"
    s = await open_store(url)
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.logs()
    async with await open_store(url) as again:
        assert await again.logs() == []
