"""Sparse tree nodes and the bulk-merged id index (``store/sparse.py``, ADR 0040).

The pure part (which rows answer which nodes, hashing them, growing a frontier) is checked
against ``core/merkle.py``'s literal RFC 9162 recursion; the layout at scale is checked on
real SQLite files and the real PostgreSQL: a log past many 256-wide tiles serves every
root and proof around the tile edges exactly as the reference computes them from all
leaves, keeps only the nodes of levels 4, 8, 12..., serves the same from a store written
before ADR 0046 (levels 8, 16... only), and its id index, merged in bulk, still finds every
record and refuses every one held.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from jcm_sync.core import merkle, subtrees
from jcm_sync.core.trust import Verification
from jcm_sync.errors import ConflictError, CorruptStoreError
from jcm_sync.store import LogRef, Store, open_store, sparse, sql
from jcm_sync.store.sparse import BaseRead
from tests.store import World
from tests.store.conftest import PERSISTENT, pg_schema_url, raw

# --- the pure part ----------------------------------------------------------------------


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"leaf %d" % i) for i in range(n)]


def test_only_levels_4_8_12_are_stored() -> None:
    assert [lv for lv in range(34) if sparse.is_stored(lv)] == [4, 8, 12, 16, 20, 24, 28, 32]


def test_base_reads_are_whole_tiles_of_the_stored_level_below() -> None:
    """A node of level l is read from level l - l % 4, by whole 16-wide tiles; adjacent
    tiles are one read, levels are read apart."""
    assert sparse.base_reads([(0, 5)]) == [BaseRead(0, 0, 16)]
    assert sparse.base_reads([(3, 40)]) == [BaseRead(0, 320, 336)]  # leaves 320..327
    assert sparse.base_reads([(3, 1), (3, 2)]) == [BaseRead(0, 0, 32)]  # tiles 0 and 1
    assert sparse.base_reads([(0, 1), (0, 1000)]) == [BaseRead(0, 0, 16), BaseRead(0, 992, 1008)]
    mixed = [(8, 3), (13, 0), (1, 0), (7, 5)]
    assert sparse.base_reads(mixed) == [
        BaseRead(0, 0, 16), BaseRead(4, 32, 48), BaseRead(8, 0, 16), BaseRead(12, 0, 16)
    ]  # fmt: skip
    assert sparse.base_reads([]) == []


def test_fallback_reads_the_level_below_a_row_an_older_store_lacks() -> None:
    """Only absent rows of levels 4, 12, 20... are read again, from the 16 rows below each
    (a store written before ADR 0046 kept 8, 16...); a present row or an absent one of level
    0 or 8 asks for nothing (it is missing, reported by the caller)."""
    coords = [(5, 1), (13, 0), (2, 3), (9, 0)]  # based on level 4, 12, 0, 8
    assert sparse.fallback_reads(coords, {}) == [
        BaseRead(0, 32, 64), BaseRead(8, 0, 32)
    ]  # fmt: skip
    rows: dict[tuple[int, int], object] = {(4, 2): bytes(32), (12, 1): bytes(32)}
    assert sparse.fallback_reads(coords, rows) == [BaseRead(0, 48, 64), BaseRead(8, 0, 16)]
    rows |= {(4, 3): bytes(32), (12, 0): bytes(32)}
    assert sparse.fallback_reads(coords, rows) == []


def stored_rows(hs: list[bytes], levels: range) -> dict[tuple[int, int], object]:
    """Leaf rows and the rows of ``levels`` over them, as a store keeps them."""
    rows: dict[tuple[int, int], object] = {(0, i): h for i, h in enumerate(hs)}
    for lv in levels:
        rows |= {(lv, i): merkle.root(hs[i << lv : (i + 1) << lv]) for i in range(len(hs) >> lv)}
    return rows


@pytest.mark.parametrize("levels", [range(4, 12, 4), range(8, 12, 8)], ids=["now", "legacy"])
def test_combine_hashes_nodes_as_the_reference_does(levels: range) -> None:
    """Every perfect node of a 1,000-leaf tree computed from leaf rows and rows of levels 4
    and 8 is the MTH of its leaves, also from a store without the level-4 rows (computed
    from the leaves, as ``fallback_reads`` read them); a node with a missing base row is
    left out."""
    hs = leaves(1000)
    rows = stored_rows(hs, levels)
    coords = [(lv, i) for lv in range(11) for i in range(1000 >> lv)]
    got = sparse.combine(coords, rows, "log")
    for (lv, i), h in got.items():
        assert h == merkle.root(hs[i << lv : (i + 1) << lv]), (lv, i)
    assert set(got) == set(coords) - {(9, 1)}  # level 8 index 3 (leaves 768..1023) is not full
    del rows[(0, 77)]
    partial = sparse.combine([(0, 77), (2, 19), (2, 18), (4, 4), (5, 2), (4, 5)], rows, "log")
    # level 4 index 4 (leaves 64..79) is answered only if its row was read
    assert set(partial) == {(2, 18), (4, 5)} | ({(4, 4), (5, 2)} if 4 in levels else set())


def test_combine_names_the_malformed_row_a_node_needs() -> None:
    """A computed node over a leaf hash or stored node that is not 32 bytes is a corrupt
    store naming that row; a direct one is passed on for the caller to check."""
    rows: dict[tuple[int, int], object] = {(0, i): h for i, h in enumerate(leaves(4))}
    rows[(0, 2)] = b"short"
    with pytest.raises(CorruptStoreError, match="leaf hash is 5 bytes") as info:
        sparse.combine([(1, 1)], rows, "o/JP")
    assert info.value.where == "o/JP entry 2"
    assert sparse.combine([(0, 2)], rows, "o/JP") == {(0, 2): b"short"}
    nodes = {(8, i): bytes(32) for i in range(4)} | {(8, 1): memoryview(bytes(31))}
    with pytest.raises(CorruptStoreError, match="node hash is 31 bytes") as info:
        sparse.combine([(10, 0)], nodes, "o/JP")
    assert info.value.where == "o/JP node (level 8, index 1)"
    # a level-4 row an older store lacks, computed from a malformed level-0 row
    legacy = {(0, i): bytes(32) for i in range(32)} | {(0, 20): b"x"}
    with pytest.raises(CorruptStoreError, match="leaf hash is 1 bytes") as info:
        sparse.combine([(5, 0)], legacy, "o/JP")
    assert info.value.where == "o/JP entry 20"


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 511, 65535, 65536 + 300])
@pytest.mark.parametrize("count", [1, 255, 256, 700])
def test_grow_is_extend_keeping_the_stored_nodes(size: int, count: int) -> None:
    """``sparse.grow`` is ``Frontier.extend`` with only the level-4k nodes kept."""
    hs = [hashlib.sha256(b"%d" % i).digest() for i in range(size + count)]
    before = subtrees.Frontier.empty()
    if size:
        before, _ = before.extend(hs[:size])
    want, made = before.extend(hs[size:])
    got, kept = sparse.grow(before, hs[size:])
    assert got == want
    assert kept == sparse.stored(made)


def test_grow_refuses_a_leaf_that_is_not_a_hash() -> None:
    with pytest.raises(CorruptStoreError, match="leaf hash is 3 bytes"):
        sparse.grow(subtrees.Frontier.empty(), [bytes(32), b"abc"])


def test_a_grower_uses_its_result_ahead_only_for_the_same_frontier_and_leaves() -> None:
    """``Grower`` (rule 5): the result grown ahead answers an equal frontier and equal
    leaves (equal, not the same objects); anything else is grown anew, as ``grow`` does;
    ``grown`` is the frontier of the last answer."""
    hs = [hashlib.sha256(b"%d" % i).digest() for i in range(100)]
    before, _ = subtrees.Frontier.empty().extend(hs[:37])
    grower = sparse.Grower()
    grower.ahead(before, hs[37:90])
    assert grower.grown is None
    again = subtrees.Frontier.from_hashes(37, [bytes(h) for h in before.hashes])
    got = grower(again, [bytes(h) for h in hs[37:90]])
    assert got == sparse.grow(before, hs[37:90])
    assert grower(again, [bytes(h) for h in hs[37:90]])[1] is got[1]  # the one made ahead
    assert grower.grown == got[0]
    other, _ = subtrees.Frontier.empty().extend(hs[1:38])  # same size, other hashes
    for frontier, leaves in ((other, hs[37:90]), (before, hs[37:89]), (before, hs[38:91])):
        fresh = grower(frontier, leaves)
        assert fresh == sparse.grow(frontier, leaves)
        assert fresh[1] is not got[1]
        assert grower.grown == fresh[0]


def test_frontiers_give_a_log_its_frontier_back_only_for_the_same_head_and_version() -> None:
    """``Frontiers`` (rule 6): the frontier put for a log at a version comes back for its
    own size and root at that version; another size, root, version or log gets None, and
    a later put replaces it."""
    hs = [hashlib.sha256(b"%d" % i).digest() for i in range(40)]
    five, _ = subtrees.Frontier.empty().extend(hs[:5])
    six, _ = five.extend(hs[5:6])
    known = sparse.Frontiers()
    assert known.get(1, 5, five.root(), 3) is None
    known.put(1, 3, five, five.root())
    assert known.get(1, 5, five.root(), 3) is five
    assert known.get(1, 5, five.root(), 4) is None  # another writer committed
    assert known.get(1, 5, six.root(), 3) is None
    assert known.get(1, 6, five.root(), 3) is None
    assert known.get(2, 5, five.root(), 3) is None
    known.put(1, 3, six, six.root())
    assert known.get(1, 5, five.root(), 3) is None
    assert known.get(1, 6, six.root(), 3) is six


# --- the layout at scale, on both SQL backends ----------------------------------------

#: Past 40 tiles of 256 and a level-13 boundary (8,192), not a power of two.
SIZE = 10_300
EDGES = [1, 255, 256, 257, 511, 512, 513, 8191, 8192, 8193, SIZE - 1, SIZE]


def synthetic(world: World) -> tuple[Callable[[bytes], Verification], list[bytes]]:
    """A verifier accepting distinct synthetic envelopes as one verified JP issuance (the
    store checks ids and leaf hashes, not signatures), and the envelopes."""
    base = world.verify(world.envelopes("JP", 1)[0])

    def verify(raw: bytes) -> Verification:
        return dataclasses.replace(base, record_id=hashlib.sha256(raw).hexdigest(), raw=raw)

    return verify, [b'{"synthetic":%08d,"pad":"%s"}' % (i, b"x" * 64) for i in range(SIZE)]


@pytest.fixture(params=PERSISTENT)
async def sql_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[str]:
    """A SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'big.db'}"
        return
    async with pg_schema_url(pg_reachable) as url:
        yield url


async def serves_as_the_reference(store: Store, log: LogRef, hs: list[bytes]) -> None:
    """Roots, proofs and nodes at and around every tile edge up to ``len(hs)`` are those
    ``core/merkle.py`` computes from all leaves."""
    for size in [e for e in EDGES if e <= len(hs)] + [len(hs)]:
        assert await store.root_at(log, size) == merkle.root(hs[:size]), size
        for index in sorted({0, 15, 16, 17, 255, 256, 257, size // 2, size - 1}):
            if index < size:
                want = merkle.inclusion_proof(hs[:size], index)
                assert await store.inclusion_proof(log, index, size) == want, (index, size)
        for old in EDGES:
            if old <= size:
                want = merkle.consistency_proof(hs[:size], old)
                assert await store.consistency_proof(log, old, size) == want, (old, size)
    coords = [(3, 40), (9, 19), (13, 0), (8, 39), (4, 7), (12, 2), (0, SIZE - 1)]
    got = await store.tree_nodes(log, [(lv, i) for lv, i in coords if (i + 1) << lv <= len(hs)])
    for (lv, i), h in got.items():
        assert h == merkle.root(hs[i << lv : (i + 1) << lv])


async def test_a_tiled_log_serves_every_root_and_proof_as_the_reference(
    sql_url: str, world: World
) -> None:
    """10,300 entries in batches of 700 (crossing tile edges inside batches): the roots,
    inclusion and consistency proofs at and around every tile edge are those
    ``core/merkle.py`` computes from all leaves; only level-4, 8 and 12 rows exist."""
    verify, envs = synthetic(world)
    hs = [merkle.leaf_hash(e) for e in envs]
    log = world.jp_log
    async with await open_store(sql_url) as store:
        for start in range(0, SIZE, 700):
            await store.append_entries(log, start, envs[start : start + 700], verify)
        assert (await store.tree_head(log)).root == merkle.root(hs)
        await serves_as_the_reference(store, log, hs)
    rows = await raw(sql_url, "SELECT level, count(*) FROM log_nodes GROUP BY level ORDER BY 1")
    assert rows == [(4, SIZE >> 4), (8, SIZE >> 8), (12, SIZE >> 12)]


async def test_a_store_written_before_adr_0046_serves_and_grows(sql_url: str, world: World) -> None:
    """A log of 5,000 entries as an older store kept it (rows of levels 8, 16... only:
    those of 4 and 12 deleted) serves every root, proof and node as the reference, from a
    store opened afresh; appends to 10,300 grow it from that frontier, writing the level-4
    and 12 rows of the tiles they complete, and it still serves everything."""
    verify, envs = synthetic(world)
    hs = [merkle.leaf_hash(e) for e in envs]
    log, old = world.jp_log, 5000
    async with await open_store(sql_url) as store:
        for start in range(0, old, 700):
            await store.append_entries(log, start, envs[start : min(old, start + 700)], verify)
    await execute(sql_url, "DELETE FROM log_nodes WHERE level % 8 <> 0")
    async with await open_store(sql_url) as store:
        await serves_as_the_reference(store, log, hs[:old])
        for start in range(old, SIZE, 700):
            await store.append_entries(log, start, envs[start : start + 700], verify)
        assert (await store.tree_head(log)).root == merkle.root(hs)
        await serves_as_the_reference(store, log, hs)
    rows = await raw(
        sql_url, "SELECT level, min(idx), count(*) FROM log_nodes GROUP BY level ORDER BY 1"
    )
    assert rows == [(4, old >> 4, (SIZE >> 4) - (old >> 4)), (8, 0, SIZE >> 8), (12, 1, 1)]


async def test_the_id_index_merges_in_bulk_and_still_refuses_a_held_record(
    sql_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With recent ids merged every 64 entries, middle ones every 256 and upper ones every
    1,024 (ratio 4 here, 8 in the store), appends of 300 up to 1,200, then 100, 50 and 10,
    leave on SQLite 1,200 ids in ``record_ids``, 100 upper, 50 middle and 10 recent; a
    record is found and refused wherever its id is, and a row of another record under the
    same 64-bit key (a collision) neither hides nor blocks one."""
    monkeypatch.setattr(sql, "RECENT_IDS", 64)
    monkeypatch.setattr(sql, "MIDDLE_IDS", 256)
    monkeypatch.setattr(sql, "UPPER_IDS", 1024)
    verify, envs = synthetic(world)
    log = world.jp_log
    async with await open_store(sql_url) as store:
        steps = [(0, 300), (300, 600), (600, 900), (900, 1200), (1200, 1300), (1300, 1350)]
        for start, end in steps:
            await store.append_entries(log, start, envs[start:end], verify)
        await store.append_entries(log, 1350, envs[1350:1360], verify)
        counts = [(await raw(sql_url, f"SELECT count(*) FROM {t}"))[0][0] for t in sql.ID_TABLES]
        # PostgreSQL finds ids through a hash index of the entries (migration 7)
        assert counts == ([1200, 100, 50, 10] if sql_url.startswith("sqlite") else [0, 0, 0, 0])
        for index in (3, 1250, 1320, 1355):  # in each part of the index
            rid = hashlib.sha256(envs[index]).hexdigest()
            assert (await store.record(rid)).index == index
            with pytest.raises(ConflictError, match=f"already in the log at index {index}"):
                await store.append(log, None, envs[index], verify)
        # the next record's key, pointing at entry 0: a collision, not a duplicate
        nxt = hashlib.sha256(envs[1360]).hexdigest()
        await insert_id(sql_url, sql.id_key(nxt), 0)
        assert (await store.append(log, None, envs[1360], verify)).size == 1361
        assert (await store.record(nxt)).index == 1360
        assert await store.envelope(nxt) == envs[1360]
        # a re-sent batch at its own indexes is a no-op; the same records at the end are not
        result = await store.append_entries(log, 600, envs[600:700], verify)
        assert (result.appended, result.present) == (0, 100)
        with pytest.raises(ConflictError, match="already in the log at index 600"):
            await store.append_entries(log, None, envs[600:700], verify)


async def insert_id(url: str, key: int, index: int) -> None:
    await execute(url, f"INSERT INTO record_ids (id_key, log_id, idx) VALUES ({key}, 1, {index})")


async def execute(url: str, text: str) -> None:
    """One statement behind the store's back, committed."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            conn.execute(text)
        finally:
            conn.close()
        return
    pconn = await asyncpg.connect(url)
    try:
        await pconn.execute(text)
    finally:
        await pconn.close()
