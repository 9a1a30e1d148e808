"""A log's head, its latest checkpoint with that checkpoint's cosignatures, and a state
value, read together: what the hub reads on every push (ADR 0050).

Why this module exists: the hub read these one call at a time, before and after each
append (the fork alarm, the replica's head, the held checkpoint, its cosignatures), and
on SQLite every call is a hand-off to the store's one thread and a wake-up of the event
loop. Under a fan-in of 31 agents pushing small batches those hand-offs were a large part
of the hub's per-push cost. ``Store.log_view`` reads them at once; a store whose reads are
jobs on one thread (SQLite) overrides it with one job, any other store gets
``composed_view``, the same answer from the existing calls.

Rules:

1. The parts are read in this order: the head, the latest checkpoint, its cosignatures,
   the state value; each is at least as fresh as the single call it replaces. In one job
   (SQLite) no other job of the store runs between them; ``composed_view`` makes no such
   promise, nor did the single calls.
2. Everything read is checked as the single calls check it (``check_head``,
   ``check_checkpoint_row``, the cosignature and state-chunk checks below): a malformed
   row is ``CorruptStoreError``, never a value.
3. ``checkpoint=False`` reads no checkpoint and no cosignatures (``checkpoint`` is None,
   ``cosignatures`` empty); without ``state_key`` no state value is read (``state`` is
   None, as for an absent key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from jcm_sync.core.note import NoteSignature
from jcm_sync.errors import CorruptStoreError
from jcm_sync.store.planning import check_checkpoint_row, check_head
from jcm_sync.store.values import LogRef, StoredCheckpoint, TreeHead
from jcm_sync.store.witnessing import checked_cosignatures

__all__ = ["LogView", "RawView", "SingleReads", "checked_view", "composed_view"]

RawView = tuple[Any, Any, list[Any], list[Any] | None]
"""(head row or None, latest checkpoint row or None, cosignature rows, state chunk rows or
None), as ``sqlite3`` returns them"""


@dataclass(frozen=True)
class LogView:
    """What ``Store.log_view`` read of one log."""

    head: TreeHead
    checkpoint: StoredCheckpoint | None = None
    #: the cosignatures held for ``checkpoint``, oldest first
    cosignatures: list[NoteSignature] = field(default_factory=list)
    #: the state value of the ``state_key`` asked for, or None
    state: bytes | None = None


class SingleReads(Protocol):
    """The calls ``composed_view`` makes (every ``Store`` has them)."""

    async def tree_head(self, log: LogRef) -> TreeHead: ...
    async def latest_checkpoint(self, log: LogRef) -> StoredCheckpoint | None: ...
    async def cosignatures(self, log: LogRef, size: int) -> list[NoteSignature]: ...
    async def get_state(self, key: str) -> bytes | None: ...


async def composed_view(
    store: SingleReads, log: LogRef, *, checkpoint: bool = True, state_key: str | None = None
) -> LogView:
    """Rule 1's default: the view from the store's single calls, in rule 1's order."""
    head = await store.tree_head(log)
    held = await store.latest_checkpoint(log) if checkpoint else None
    cosigned = await store.cosignatures(log, held.size) if held is not None else []
    state = await store.get_state(state_key) if state_key is not None else None
    return LogView(head, held, cosigned, state)


def checked_view(log: LogRef, raw: RawView, state_key: str | None) -> LogView:
    """Rule 2: the view of the rows a store read in one job (SQLite's ``_view_sync``), each
    checked as its single call does."""
    head_row, held_row, cosig_rows, chunks = raw
    head = check_head(log, *(head_row or (None, None)))
    held = None if held_row is None else check_checkpoint_row(log, *held_row)
    cosigned = checked_cosignatures(log, held.size if held is not None else "?", cosig_rows)
    state = joined_state(state_key or "", chunks) if chunks else None
    return LogView(head, held, cosigned, state)


def joined_state(key: str, chunks: Any) -> bytes:
    """A state value from its stored ``(chunk, value)`` rows, in chunk order, each checked
    (``get_state`` and rule 2 read it alike)."""
    parts: list[bytes] = []
    for n, (chunk, value) in enumerate(chunks):
        if chunk != n or not isinstance(value, bytes | bytearray | memoryview):
            raise CorruptStoreError(f"state {key!r}: chunk {n} is missing or not bytes", where=key)
        parts.append(bytes(value))
    return b"".join(parts)
