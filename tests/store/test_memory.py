"""The in-memory store (``store/memory.py``): fresh per open, the same rows the SQL tables
hold (tests corrupt them there), atomic appends, and nothing after close.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from jcm_sync.errors import ConflictError, CorruptStoreError, ForkError, StoreError
from jcm_sync.store import AppendResult, TrustMark, open_store
from jcm_sync.store.memory import MemoryLog, MemoryStore
from tests.core.merkle_reference import ref_mth
from tests.store import World


@pytest.mark.parametrize("url", ["memory://", "MEMORY://", "Memory://"], ids=str.lower)
async def test_memory_url_opens_a_fresh_store(url: str, world: World) -> None:
    """Each open of ``memory://`` is a new, empty store; the scheme is case-insensitive."""
    first = await open_store(url)
    await first.ensure_log(world.jp_log)
    second = await open_store(url)
    assert isinstance(second, MemoryStore)
    assert await first.logs() == [world.jp_log]
    assert await second.logs() == []


async def test_rows_are_those_the_sql_tables_would_hold(world: World) -> None:
    """After appends the tables hold one entry and one index row per index, every perfect
    node of the tree with its RFC 9162 hash, and the head."""
    store = MemoryStore()
    envs = world.envelopes("JP", 11)
    await store.append_entries(world.jp_log, 0, envs[:6], world.verify)
    await store.append_entries(world.jp_log, 4, envs[4:], world.verify)
    (table,) = store.tables.values()
    assert isinstance(table, MemoryLog)
    assert table.ref == world.jp_log
    assert (table.size, table.root) == (11, ref_mth(envs))
    assert sorted(table.entries) == list(range(11))
    assert [table.entries[i][1] for i in range(11)] == envs
    assert table.record_index == {hashlib.sha256(e).hexdigest(): i for i, e in enumerate(envs)}
    assert sorted(table.records) == list(range(11))
    expected = {
        (level, index): ref_mth(envs[index << level : (index + 1) << level])
        for level in range(4)
        for index in range(11 >> level)
    }
    assert table.nodes == expected


async def test_trust_marks_are_kept_by_partnership(world: World) -> None:
    """Advancing marks keeps the newest per partnership in ``marks``."""
    store = MemoryStore()
    a1 = TrustMark("JP-ID", 1, "a" * 64)
    a2 = TrustMark("JP-ID", 2, "b" * 64)
    m1 = TrustMark("JP-MN", 1, "c" * 64)
    assert await store.advance_trust_marks({"JP-ID": [a1]}) == {"JP-ID": a1}
    await store.advance_trust_marks({"JP-ID": [a1, a2], "JP-MN": [m1]})
    assert store.marks == {"JP-ID": a2, "JP-MN": m1}


async def test_concurrent_appends_at_one_index_make_one_history(world: World) -> None:
    """Two appends racing for the same index: one lands, the other sees a fork."""
    store = MemoryStore()
    await store.append_entries(world.jp_log, 0, world.envelopes("JP", 2), world.verify)
    ours = world.envelopes("JP", 1, 2)[0]
    theirs = world.sign(world.issuance("JP", 4242))
    results = await asyncio.gather(
        store.append(world.jp_log, 2, ours, world.verify),
        store.append(world.jp_log, 2, theirs, world.verify),
        return_exceptions=True,
    )
    assert sum(isinstance(r, AppendResult) for r in results) == 1
    assert sum(isinstance(r, ForkError) for r in results) == 1
    assert (await store.tree_head(world.jp_log)).size == 3


async def test_a_record_held_at_another_index_is_refused(world: World) -> None:
    """The memory index refuses a record already held, like the SQL unique index."""
    store = MemoryStore()
    envs = world.envelopes("JP", 3)
    await store.append_entries(world.jp_log, 0, envs, world.verify)
    with pytest.raises(ConflictError, match="already in the log at index 0"):
        await store.append(world.jp_log, None, envs[0], world.verify)


async def test_rows_past_the_head_are_corrupt(world: World) -> None:
    """An entry row where the head says the log ends is reported, and nothing is written."""
    store = MemoryStore()
    envs = world.envelopes("JP", 3)
    await store.append_entries(world.jp_log, 0, envs[:2], world.verify)
    table = store.tables[1]
    table.entries[2] = ("stale", b"stale", table.entries[0][2])
    with pytest.raises(CorruptStoreError, match="rows past the stored size 2"):
        await store.append(world.jp_log, None, envs[2], world.verify)
    assert (table.size, len(table.records)) == (2, 2)


async def test_closed_memory_store_refuses_every_primitive(world: World) -> None:
    """After close, reading, writing and the trust marks are StoreErrors naming the URL."""
    store = MemoryStore()
    await store.append_entries(world.jp_log, 0, world.envelopes("JP", 1), world.verify)
    rid = hashlib.sha256(world.envelopes("JP", 1)[0]).hexdigest()
    await store.close()
    calls = [
        store.tree_head(world.jp_log),
        store.ensure_log(world.id_log),
        store.records("issuance", "JP/JP-000000"),
        store.record(rid),
        store.trust_marks(),
        store.advance_trust_marks({}),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed") as info:
            await call
        assert info.value.where == "memory://"
