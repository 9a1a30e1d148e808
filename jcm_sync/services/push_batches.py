"""The batches an agent's push sends: cut from its own log, read ahead in chunks.

Why this module exists: the agent's push (``agent`` rule 1) sends its own log in
batches of at most ``schedule.batch_size`` entries and ``schedule.batch_bytes`` of
body. Reading each batch from the store was one store read per push request (the
size check and the rows, each a hand-off to the store's thread): in a fan-in of
batches of 50 that read was a fixed cost paid for every 50 entries (ADR 0056
amendment). The entries a push sends are fixed before it starts (its checkpoint
signs them, and an append-only log never changes an entry it holds), so they are
read in chunks of ``READ_AHEAD`` entries and cut into batches from memory.

Rules:

1. A batch is the longest prefix of the entries from its start whose envelopes fit
   in the body budget, and at least one entry (``cut_batch``).
2. ``OwnEntries`` reads ``[start, end)`` of one log, ``end`` the size the push's
   checkpoint signs, in chunks: the first two batches, then each chunk twice the one
   before, up to ``READ_AHEAD`` entries (and never less than one batch), so the first
   push leaves at once (a read of 1,000 entries and their checks takes milliseconds,
   which every agent paid before its first push when the first chunk was the largest)
   and a long push still reads rarely. It reads again from a batch's start whenever
   that batch is not wholly in the chunk held (a gap's resend from an earlier index
   reads from there). What it returns is exactly what
   ``store.entries(log, start, stop)`` returns.
3. It holds at most one chunk: memory stays bounded by the chunk size whatever the
   push's length.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jcm_sync.store import Entry, LogRef
from jcm_sync.store.protocol import Store

__all__ = ["READ_AHEAD", "OwnEntries", "b64_size", "cancel_all", "cut_batch"]

READ_AHEAD = 1000
"""Entries of the own log read per store read while pushing (rule 2)."""


def b64_size(n: int) -> int:
    """Bytes of ``n`` bytes in base64 as a JSON string, with its separator."""
    return 4 * ((n + 2) // 3) + 3


def cut_batch(batch: Sequence[Entry], budget: int) -> Sequence[Entry]:
    """Rule 1: the longest prefix of ``batch`` whose envelopes fit in ``budget`` bytes
    of push body (``schedule.batch_bytes``), and at least one entry."""
    used = 0
    for i, entry in enumerate(batch):
        used += b64_size(len(entry.envelope))
        if used > budget and i > 0:
            return batch[:i]
    return batch


@dataclass
class OwnEntries:
    """Rules 2 and 3: the entries ``[0, end)`` of ``log`` in ``store``, read ahead."""

    store: Store
    log: LogRef
    end: int
    read_ahead: int = READ_AHEAD
    reads: int = 0
    """Store reads made (for the tests)."""
    _first: int = field(default=0, init=False)
    _held: list[Entry] = field(default_factory=list, init=False)
    _chunk: int = field(default=0, init=False)

    async def batch(self, start: int, size: int, budget: int) -> Sequence[Entry]:
        """Rule 1's batch from ``start``: at most ``size`` entries, not past ``end``."""
        stop = min(self.end, start + size)
        if not self._first <= start <= stop <= self._first + len(self._held):
            self._chunk = max(size, min(self.read_ahead, 2 * (self._chunk or size)))
            chunk_end = min(self.end, start + self._chunk)
            self._held = await self.store.entries(self.log, start, chunk_end)
            self._first = start
            self.reads += 1
        offset = start - self._first
        return cut_batch(self._held[offset : offset + stop - start], budget)


async def cancel_all(tasks: deque[asyncio.Task[Any]]) -> None:
    """Cancel in-flight pushes and wait for them, whatever they end with; a
    cancellation of the caller itself still propagates."""
    pending = list(tasks)
    tasks.clear()
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in pending:
        if not t.cancelled():
            t.exception()  # retrieved: the caller reports the first failure, not these
