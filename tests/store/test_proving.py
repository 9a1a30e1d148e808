"""Serving proofs from stored nodes (``store/proving.py``, ADR 0046).

The pure part is checked against ``core/subtrees.py`` and ``core/merkle.py``: the pieces of
every range of every proof path are those ``range_decomposition`` gives, and their fold is
``hash_from_subtrees``. On real stores: a proof is one job on SQLite's thread, and the
cache serves the upper nodes a proof read before, never a lower one or a damaged row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path

import pytest

from jcm_sync.core import merkle, subtrees
from jcm_sync.core.trust import Verification
from jcm_sync.errors import CorruptStoreError
from jcm_sync.store import LogRef, open_store, proving
from jcm_sync.store.proving import NodeCache, checked_nodes, fold, pieces_of
from jcm_sync.store.sqlite import SqliteStore
from tests.store import World

LOG = LogRef("JP-ID", "JP", "jcm-sync.example/JP-ID/JP")


def proof_ranges(size: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for i in range(size):
        ranges += merkle.inclusion_path_nodes(i, size)
        ranges += merkle.consistency_path_nodes(i, size)
    return ranges


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 17, 100, 255, 256, 300])
def test_pieces_are_the_range_decomposition_of_every_proof_range(size: int) -> None:
    for start, end in proof_ranges(size):
        want = [subtrees.range_node(*p) for p in subtrees.range_decomposition(start, end)]
        assert pieces_of(start, end) == want, (start, end)


def test_the_fold_is_hash_from_subtrees() -> None:
    hs = [hashlib.sha256(b"%d" % i).digest() for i in range(5)]
    for n in range(1, 6):
        assert fold(hs[:n]) == merkle.hash_from_subtrees(hs[:n])


def test_checked_nodes_pass_hashes_and_name_a_bad_row() -> None:
    good = {(0, 1): bytes(32), (4, 2): memoryview(bytes(range(32)))}
    assert checked_nodes(LOG, [(0, 1), (4, 2)], good) == {
        (0, 1): bytes(32), (4, 2): bytes(range(32))
    }  # fmt: skip
    with pytest.raises(CorruptStoreError, match="31 bytes") as info:
        checked_nodes(LOG, [(0, 1), (4, 2)], good | {(4, 2): bytes(31)})
    assert info.value.where == f"{LOG.origin} node (level 4, index 2)"
    with pytest.raises(CorruptStoreError, match="missing"):
        checked_nodes(LOG, [(0, 1), (0, 2)], good)


def test_the_cache_keeps_upper_nodes_and_drops_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(proving, "CACHED_NODES", 3)
    cache = NodeCache()
    h = [bytes([i]) * 32 for i in range(6)]
    cache.put(1, {(8, 0): h[0], (7, 0): h[1], (9, 0): h[2], (10, 0): h[3]})
    found: dict[tuple[int, int], bytes] = {}
    # (7, 0) is below CACHED_LEVEL; log 2 is another log
    assert cache.split(1, {(7, 0), (8, 0), (9, 0)}, found) == [(7, 0)]
    assert cache.split(2, {(8, 0)}, found) == [(8, 0)]
    assert found == {(8, 0): h[0], (9, 0): h[2]}
    cache.put(1, {(11, 0): h[4]})  # (10, 0) was used least recently: dropped
    found.clear()
    assert cache.split(1, {(8, 0), (9, 0), (10, 0), (11, 0)}, found) == [(10, 0)]
    assert len(cache.nodes) == 3


async def test_a_proof_is_one_job_and_reads_upper_nodes_once(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 entries on SQLite: a proof at an explicit size is one job on the store's thread;
    a second proof takes the level-8 node it read from the cache, so damaging that row
    after the first proof changes nothing for this store, while a store opened afresh
    reports it; damaging a leaf (below the cached levels) is reported at once."""
    base = world.verify(world.envelopes("JP", 1)[0])

    def verify(raw: bytes) -> Verification:
        return dataclasses.replace(base, record_id=hashlib.sha256(raw).hexdigest(), raw=raw)

    envs = [b'{"synthetic":%08d}' % i for i in range(600)]
    hs = [merkle.leaf_hash(e) for e in envs]
    path = tmp_path / "p.db"
    url = f"sqlite:///{path}"
    log = world.jp_log
    async with await open_store(url) as store:
        assert isinstance(store, SqliteStore)
        await store.append_entries(log, 0, envs, verify)
        jobs = 0
        call = store._call

        async def counted(*args: object, **kwargs: object) -> object:
            nonlocal jobs
            jobs += 1
            return await call(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_call", counted)
        assert await store.inclusion_proof(log, 300, 600) == merkle.inclusion_proof(hs, 300)
        assert jobs == 1
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("UPDATE log_nodes SET hash = x'00' WHERE level = 8 AND idx = 0")
            assert await store.inclusion_proof(log, 310, 600) == merkle.inclusion_proof(hs, 310)
            assert await store.consistency_proof(log, 256, 600) == merkle.consistency_proof(hs, 256)
            conn.execute("UPDATE log_entries SET leaf_hash = x'00' WHERE idx = 311")
            with pytest.raises(CorruptStoreError, match="is 1 bytes") as info:
                await store.inclusion_proof(log, 310, 600)
            assert info.value.where == f"{log.origin} node (level 0, index 311)"
        finally:
            conn.close()
    async with await open_store(url) as fresh:
        with pytest.raises(CorruptStoreError, match="node hash is 1 bytes"):
            await fresh.inclusion_proof(log, 400, 600)
