"""The in-memory filter of each log's record ids (``store/id_filter.py``): false positives
only, every commit seen (another connection's, a rolled-back transaction's), its size, and
that a SQLite append asks SQLite only about the ids it cannot rule out."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from jcm_sync.errors import ConflictError
from jcm_sync.store import open_store, sql
from jcm_sync.store.id_filter import (
    BITS_PER_KEY,
    MIN_BITS,
    IdFilters,
    KeyBits,
    bits_for,
    entry_keys,
)
from tests.store import World, traced_pair


def random_keys(n: int) -> list[int]:
    """``n`` random keys whose places in the smallest map (their low bits) all differ: a
    test that expects none of them maybe held is never failed by two keys sharing the
    one-bit map's place (about 1 run in 100 with 80 independent keys)."""
    keys: dict[int, int] = {}
    while len(keys) < n:
        for k in struct.unpack(f"{n}q", os.urandom(8 * n)):
            keys.setdefault(k & (MIN_BITS - 1), k)
    return list(keys.values())[:n]


def test_key_bits_answer_every_key_set_before() -> None:
    """A key set (by ``set`` or ``test_and_set``) is always answered; new keys mostly not."""
    bits = KeyBits(1 << 16)
    old, new = random_keys(1000), random_keys(1000)
    bits.set(old[:500])
    assert set(bits.test_and_set(old[:500])) == set(old[:500])
    maybe = bits.test_and_set(old[500:])
    assert set(maybe) <= set(old[500:])
    assert len(maybe) < 50  # 1,000 keys in 65,536 bits
    assert set(bits.test_and_set(old)) == set(old)  # all set now, whichever way
    assert len(bits.test_and_set(new)) < 100  # 2,000 keys: about 3 %
    assert bits.count == 3500


def test_key_bits_size_is_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        KeyBits(3 << 10)
    assert len(KeyBits(1 << 20).map) == 1 << 17


def test_a_map_has_room_and_its_memory_at_a_million() -> None:
    """At least ``BITS_PER_KEY`` bits per key; 8 MiB for 10^6 ids (rule 3)."""
    assert bits_for(0) == MIN_BITS
    for n in (1, 5000, 123_457, 1_000_000):
        assert bits_for(n) >= n * BITS_PER_KEY
        assert bits_for(n) < 2 * max(n * BITS_PER_KEY, MIN_BITS)
    assert bits_for(1_000_000) // 8 == 8 << 20


def entry_rows(log_id: int, start: int, keys: list[int]) -> list[tuple[object, ...]]:
    """``log_entries`` rows whose record ids have ``keys`` as their id keys."""
    rows: list[tuple[object, ...]] = []
    for i, k in enumerate(keys, start):
        rid = f"{k & ((1 << 64) - 1):016x}" + "0" * 48
        rows.append((log_id, i, rid, "issuance", f"k/{i}", None, b"\0" * 32, b"env", 0))
    return rows


@pytest.fixture
async def db_file(tmp_path: Path, world: World) -> Path:
    """A store's file with one empty log (id 1)."""
    path = tmp_path / "ids.db"
    async with await open_store(f"sqlite:///{path}") as s:
        await s.ensure_log(world.jp_log)
    return path


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def loaded(db: sqlite3.Connection) -> IdFilters:
    """Filters loaded from what ``db`` holds, in a transaction of their own, as at open."""
    filters = IdFilters()
    db.execute("BEGIN")
    filters.load(db)
    db.execute("COMMIT")
    return filters


def write(db: sqlite3.Connection, log_id: int, start: int, keys: list[int]) -> None:
    db.executemany(sql.INSERT_ENTRY, entry_rows(log_id, start, keys))
    db.executemany(sql.INSERT_RECENT_ID, [(k, log_id, i) for i, k in enumerate(keys, start)])
    db.execute("UPDATE logs SET size = ? WHERE id = ?", (start + len(keys), log_id))


def test_another_connections_commit_is_seen(db_file: Path) -> None:
    """Keys committed by another connection after the filter looked are answered (rule 2)."""
    ours, other = connect(db_file), connect(db_file)
    filters = loaded(ours)
    keys = random_keys(100)
    mine, theirs = keys[:50], keys[50:]
    ours.execute("BEGIN IMMEDIATE")
    assert filters.maybe_held(ours, 1, 0, mine, txn=1) == []
    write(ours, 1, 0, mine)
    ours.execute("COMMIT")
    other.execute("BEGIN IMMEDIATE")
    write(other, 1, 50, theirs)
    other.execute("COMMIT")
    ours.execute("BEGIN IMMEDIATE")
    assert set(filters.maybe_held(ours, 1, 100, theirs + mine, txn=2)) == set(theirs + mine)
    ours.execute("ROLLBACK")


def test_a_rolled_back_transaction_then_another_writer_leaves_no_key_unset(
    db_file: Path,
) -> None:
    """Two appends in one transaction that rolls back, then another connection commits
    other keys at those indexes: the second look of the failed transaction saw a head
    holding its uncommitted rows, so only the first may mark a committed size (rule 2)."""
    ours, other = connect(db_file), connect(db_file)
    filters = loaded(ours)
    keys = random_keys(160)
    first, second, theirs = keys[:40], keys[40:80], keys[80:]
    ours.execute("BEGIN IMMEDIATE")
    assert filters.maybe_held(ours, 1, 0, first, txn=1) == []
    write(ours, 1, 0, first)
    assert filters.maybe_held(ours, 1, 40, second, txn=1) == []
    write(ours, 1, 40, second)
    ours.execute("ROLLBACK")
    other.execute("BEGIN IMMEDIATE")
    write(other, 1, 0, theirs)
    other.execute("COMMIT")
    ours.execute("BEGIN IMMEDIATE")
    assert set(filters.maybe_held(ours, 1, 80, theirs, txn=2)) == set(theirs)
    ours.execute("ROLLBACK")


def test_load_sets_every_stored_key_and_a_replaced_log_is_rebuilt(db_file: Path) -> None:
    """``load`` reads all four id tables; a head below the filter's mark rebuilds it."""
    db = connect(db_file)
    keys = random_keys(310)
    held, again = keys[:300], keys[300:]
    db.execute("BEGIN IMMEDIATE")
    write(db, 1, 0, held)
    db.execute("INSERT INTO record_ids SELECT * FROM recent_record_ids WHERE idx < 100")
    db.execute("DELETE FROM recent_record_ids WHERE idx < 100")
    db.execute("COMMIT")
    filters = loaded(db)
    assert filters.nbytes == MIN_BITS // 8
    db.execute("BEGIN IMMEDIATE")
    assert set(filters.maybe_held(db, 1, 300, held, txn=1)) == set(held)
    db.execute("DELETE FROM log_entries")
    for table in sql.ID_TABLES:
        db.execute(f"DELETE FROM {table}")
    write(db, 1, 0, again)  # the log replaced: 10 entries, below the mark of 300
    assert filters.maybe_held(db, 1, 10, held[:5] + again, txn=1) == again
    db.execute("ROLLBACK")


def test_a_full_map_is_rebuilt_larger_from_the_id_tables(db_file: Path) -> None:
    db = connect(db_file)
    filters = IdFilters()
    db.execute("BEGIN IMMEDIATE")
    held = random_keys(100)
    assert filters.maybe_held(db, 1, 0, held, txn=1) == []
    write(db, 1, 0, held)
    many = random_keys(MIN_BITS // 16)
    filters.maybe_held(db, 1, 100, many, txn=1)  # past a sixteenth: rebuilt, four times
    assert filters.nbytes >= 4 * MIN_BITS // 8
    assert set(filters.maybe_held(db, 1, 100, held, txn=1)) == set(held)
    db.execute("ROLLBACK")


async def test_an_append_probes_only_ids_the_filter_cannot_rule_out(
    tmp_path: Path, world: World
) -> None:
    """New ids append without the held-id query; a held one still meets it and is refused,
    also when another store on the file appended it (rule 10 of sqlite.py)."""
    url = f"sqlite:///{tmp_path / 'probe.db'}"
    envs = world.envelopes("JP", 6)
    async with traced_pair(url, world.jp_log, envs[:2], world.verify) as (a, b, statements):
        await a.append_entries(world.jp_log, 2, envs[2:4], world.verify)
        assert not [s for s in statements if "CROSS JOIN record_ids" in s]
        await b.append_entries(world.jp_log, 4, envs[4:5], world.verify)
        for held in (envs[0], envs[4]):
            with pytest.raises(ConflictError, match="already in the log"):
                await a.append_entries(world.jp_log, None, [envs[5], held], world.verify)
        assert [s for s in statements if "CROSS JOIN record_ids" in s]
        assert (await a.tree_head(world.jp_log)).size == 5


def test_corrupt_rows_do_not_stop_the_filter(db_file: Path) -> None:
    """A head or record id that is not what the store writes is left to the reads that
    report corruption: the store still opens, and such an id has no key."""
    assert entry_keys([(0, "zz" * 32), (1, "0" * 15 + "1" + "0" * 48)]) == [1]
    db = connect(db_file)
    db.execute("UPDATE logs SET size = 'x'")
    filters = loaded(db)
    assert filters.nbytes == MIN_BITS // 8
