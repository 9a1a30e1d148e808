"""The push's batches (``services/push_batches.py``): rule 1's cut, rules 2-3's read-ahead
against a real SQLite store."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.services.push_batches import READ_AHEAD, OwnEntries, b64_size, cancel_all, cut_batch
from jcm_sync.store import Entry, LogRef
from jcm_sync.store.protocol import Store
from tests.services.fakes import CC, PID, open_pair


@given(st.integers(min_value=0, max_value=5000))
def test_b64_size_is_the_json_string_with_its_separator(n: int) -> None:
    """Base64 of ``n`` bytes, quoted, plus a comma: what one entry adds to a push body."""
    assert b64_size(n) == len(json.dumps(base64.b64encode(bytes(n)).decode())) + 1


def _entries(sizes: list[int]) -> list[Entry]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [Entry(i, f"{i:064x}", bytes(n), at) for i, n in enumerate(sizes)]


@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=30),
       st.integers(min_value=0, max_value=20_000))  # fmt: skip
def test_cut_batch_is_the_longest_prefix_within_budget(sizes: list[int], budget: int) -> None:
    """Rule 1: a prefix, at least one entry, within ``budget`` unless one entry alone is
    over it, and one entry more would not fit."""
    batch = _entries(sizes)
    cut = cut_batch(batch, budget)
    assert list(cut) == batch[: len(cut)]
    used = sum(b64_size(len(e.envelope)) for e in cut)
    if batch:
        assert len(cut) >= 1
        assert used <= budget or len(cut) == 1
    if len(cut) < len(batch):
        assert used + b64_size(len(batch[len(cut)].envelope)) > budget


async def test_own_entries_are_the_stores_read_in_chunks(tmp_path: Path) -> None:
    """Rule 2: every batch is what ``store.entries`` returns for it; the first read holds
    two batches and each later one twice the one before, up to ``read_ahead``; a batch
    not wholly held (a jump back, as a gap's resend) is read from its start; never past
    ``end``."""
    async with open_pair(tmp_path, projects=3) as pair:
        store, own = pair.agent.store, pair.agent.logs(PID).own
        total = pair.sizes[CC]
        assert total >= 24
        want = await store.entries(own, 0, total)
        reads: list[tuple[int, int | None]] = []
        real = store.entries

        async def counted(log: LogRef, start: int = 0, end: int | None = None) -> list[Entry]:
            reads.append((start, end))
            return await real(log, start, end)

        entries = OwnEntries(cast(Store, _Reads(counted)), own, total, read_ahead=12)
        got, at = [], 0
        while at < total:
            batch = await entries.batch(at, 2, 1 << 20)
            assert list(batch) == want[at : at + len(batch)]
            assert len(batch) == min(2, total - at)
            got.extend(batch)
            at += len(batch)
        assert got == want
        assert reads[:3] == [(0, 4), (4, 12), (12, 24)]  # 2 batches, then 8, then 12 (cap)
        assert all(e - s <= 12 for s, e in reads if e is not None)
        assert [s for s, _ in reads[1:]] == [e for _, e in reads[:-1]]  # contiguous
        assert reads[-1][1] == total == sum(e - s for s, e in reads if e is not None)
        assert entries.reads == len(reads)
        assert list(await entries.batch(1, 3, 1 << 20)) == want[1:4]  # a jump back
        assert reads[-1][0] == 1
        wide = OwnEntries(store, own, total, read_ahead=2)
        assert list(await wide.batch(0, 7, 1 << 20)) == want[:7]  # the batch size wins
        assert wide.reads == 1


@dataclass
class _Reads:
    """A store whose only method is a counted ``entries``."""

    entries: Callable[..., Awaitable[list[Entry]]]


async def test_own_entries_cut_at_the_budget(tmp_path: Path) -> None:
    """Rules 1 and 2: a batch from the chunk is cut to the body budget like any other."""
    async with open_pair(tmp_path) as pair:
        store, own = pair.agent.store, pair.agent.logs(PID).own
        total = pair.sizes[CC]
        want = await store.entries(own, 0, total)
        budget = b64_size(len(want[0].envelope)) + b64_size(len(want[1].envelope))
        entries = OwnEntries(store, own, total)
        assert list(await entries.batch(0, 10, budget)) == want[:2]
        assert entries.read_ahead == READ_AHEAD


async def test_cancel_all_waits_for_every_task_and_clears() -> None:
    """Pushes in flight are cancelled and awaited; their failures are retrieved."""

    async def fails() -> None:
        raise RuntimeError("lost")

    tasks: deque[asyncio.Task[None]] = deque(
        [asyncio.create_task(asyncio.sleep(10)), asyncio.create_task(fails())]
    )
    await asyncio.sleep(0)
    kept = list(tasks)
    await cancel_all(tasks)
    assert not tasks
    assert all(t.done() for t in kept)
    assert kept[0].cancelled()
