"""An in-memory store (``memory://``) for fast protocol tests.

Why this module exists: the agent/hub protocol tests run two nodes in one process, many
times over; they need a store with exactly the semantics of SQLite and PostgreSQL and none
of their cost. It keeps the same rows in dictionaries and goes through the same checks in
``base`` and ``planning``; it is lost when the process ends, so it is never a node's real
store.

An append plans first and writes afterwards with no ``await`` in between, so it is atomic
for every other coroutine, like a transaction; so is advancing the trust marks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from jcm_sync.core import merkle
from jcm_sync.core.note import NoteSignature
from jcm_sync.errors import NotFoundError, StoreError
from jcm_sync.store.base import (
    EntryRow,
    RecordRow,
    StoreBase,
)
from jcm_sync.store.planning import (
    AppendPlan,
    AppendState,
    PreparedEntry,
    check_head,
    duplicate_error,
    plan_append,
    plan_trust_marks,
    rows_past_head_error,
    state_reads,
)
from jcm_sync.store.values import (
    Coord,
    LogRef,
    RecordQuery,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
)

__all__ = ["MemoryStore"]


@dataclass
class MemoryLog:
    """The rows of one log, as the SQL tables hold them (tests may reach in to corrupt them)."""

    id: int
    ref: LogRef
    size: object = 0
    root: object = merkle.EMPTY_ROOT
    entries: dict[int, tuple[object, object, datetime]] = field(default_factory=dict)
    nodes: dict[Coord, object] = field(default_factory=dict)
    checkpoints: dict[int, tuple[object, object]] = field(default_factory=dict)
    records: dict[int, PreparedEntry] = field(default_factory=dict)
    record_index: dict[str, int] = field(default_factory=dict)


class MemoryStore(StoreBase):
    """The ``Store`` in dictionaries; see the module docstring."""

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.tables: dict[int, MemoryLog] = {}
        self.marks: dict[str, TrustMark] = {}
        self.state: dict[str, list[bytes]] = {}
        self.witness_heads: dict[str, TreeHead] = {}
        self.cosigs: dict[tuple[int, int], dict[tuple[str, int], NoteSignature]] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _log(self, log_id: int) -> MemoryLog:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        return self.tables[log_id]

    async def _lookup_log(self, log: LogRef, create: bool) -> tuple[int, str] | None:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        for t in self.tables.values():
            if (t.ref.partnership, t.ref.node) == (log.partnership, log.node):
                return t.id, t.ref.origin
        if not create:
            return None
        if any(t.ref.origin == log.origin for t in self.tables.values()):
            raise StoreError(f"origin {log.origin!r} is already used by another log")
        log_id = len(self.tables) + 1
        self.tables[log_id] = MemoryLog(log_id, log)
        return log_id, log.origin

    async def _list_logs(self) -> list[tuple[str, str, str]]:
        return sorted((t.ref.partnership, t.ref.node, t.ref.origin) for t in self.tables.values())

    async def _head(self, log_id: int) -> tuple[object, object]:
        t = self._log(log_id)
        return t.size, t.root

    async def _nodes(self, log_id: int, coords: Sequence[Coord]) -> dict[Coord, object]:
        nodes = self._log(log_id).nodes
        return {c: nodes[c] for c in coords if c in nodes}

    async def _entry_rows(self, log_id: int, start: int, end: int) -> list[EntryRow]:
        entries = self._log(log_id).entries
        return [(i, *entries[i]) for i in range(start, end) if i in entries]

    async def _append(
        self, log: LogRef, log_id: int, start: int | None, batch: list[PreparedEntry]
    ) -> AppendPlan:
        t = self._log(log_id)
        head = check_head(log, t.size, t.root)
        coords, (lo, hi) = state_reads(head.size, start, len(batch))
        state = AppendState(
            size=head.size,
            root=head.root,
            frontier={c: t.nodes[c] for c in coords if c in t.nodes},
            existing={i: t.entries[i][0] for i in range(lo, hi) if i in t.entries},
        )
        plan = plan_append(log, start, batch, state)
        index = t.record_index
        dups = {it.record_id: index[it.record_id] for it in plan.new if it.record_id in index}
        if dups:
            raise duplicate_error(log, dups)
        new = list(enumerate(plan.new, plan.first))
        if any(i in t.entries or i in t.records for i, _ in new):
            raise rows_past_head_error(log, plan, "entry rows")
        now = self._clock()
        for i, item in new:
            t.entries[i] = (item.record_id, item.envelope, now)
            t.records[i] = item
            index[item.record_id] = i
        for node in plan.nodes:
            t.nodes[(node.level, node.index)] = node.hash
        t.size, t.root = plan.size, plan.root
        return plan

    async def _insert_checkpoint(self, log_id: int, cp: StoredCheckpoint) -> None:
        self._log(log_id).checkpoints.setdefault(cp.size, (cp.root, cp.note))

    async def _checkpoint_rows(
        self, log_id: int, size: int | None, latest: bool
    ) -> list[tuple[object, object, object]]:
        cps = self._log(log_id).checkpoints
        sizes = sorted(cps)
        if size is not None:
            sizes = [size] if size in cps else []
        elif latest:
            sizes = sizes[-1:]
        return [(s, *cps[s]) for s in sizes]

    async def _record_rows(self, query: RecordQuery) -> list[RecordRow]:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        out: list[RecordRow] = []
        for t in sorted(self.tables.values(), key=lambda t: t.id):
            for i in sorted(t.records):
                r = t.records[i]
                wanted = (
                    (query.record_id, r.record_id),
                    (query.kind, r.kind),
                    (query.key, r.key),
                    (query.partnership, r.partnership),
                    (query.supersedes, r.supersedes),
                )
                if all(q is None or q == v for q, v in wanted):
                    fields = (r.record_id, r.kind, r.key, r.author, r.supersedes, r.partnership)
                    out.append((*fields, t.ref.partnership, t.ref.node, t.ref.origin, i))
        return out

    async def _envelope_row(self, record_id: str) -> tuple[str, int, object, object, object]:
        for t in sorted(self.tables.values(), key=lambda t: t.id):
            i = t.record_index.get(record_id)
            if i is not None and i in t.entries:
                return (t.ref.origin, i, *t.entries[i])
        raise NotFoundError(f"no log holds record {record_id[:16]}")

    async def _trust_mark_rows(self) -> list[tuple[object, object, object]]:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        return [(m.partnership, m.version, m.digest) for m in self.marks.values()]

    async def _advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> list[TrustMark]:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        rising = plan_trust_marks(self.marks, offered)
        for m in rising:
            held = self.marks.get(m.partnership)
            if held is None or held.version < m.version:
                self.marks[m.partnership] = m
        return rising

    # -- node state ----------------------------------------------------------------

    def _state(self) -> dict[str, list[bytes]]:
        if self._closed:
            raise StoreError("the store is closed", where=self.url)
        return self.state

    async def _state_chunks(self, key: str) -> list[tuple[object, object]]:
        return list(enumerate(self._state().get(key, [])))

    async def _put_state(self, key: str, chunks: list[bytes]) -> None:
        self._state()[key] = list(chunks)

    async def _delete_state(self, key: str) -> bool:
        return self._state().pop(key, None) is not None

    async def _state_keys(self, prefix: str) -> list[str]:
        return [k for k in self._state() if k.startswith(prefix)]

    async def _swap_state(self, key: str, old: bytes | None, new: bytes) -> bool:
        state = self._state()  # no await between compare and write
        held = state.get(key)
        if (None if held is None else b"".join(held)) != old:
            return False
        state[key] = [new]
        return True

    async def _append_counts(self, log_id: int, since: int, bucket: int) -> list[tuple[int, int]]:
        counts: dict[int, int] = {}
        for _, _, at in self._log(log_id).entries.values():
            second = math.floor(at.timestamp())
            if second >= since:
                counts[(second - since) // bucket] = counts.get((second - since) // bucket, 0) + 1
        return sorted(counts.items())

    # -- witnessing (``witnessing.py``): no await between compare and write ------------

    async def _witnessed_row(self, origin: str) -> tuple[object, object] | None:
        self._state()  # refuses a closed store
        head = self.witness_heads.get(origin)
        return None if head is None else (head.size, head.root)

    async def _cas_witnessed(self, origin: str, old: TreeHead | None, new: TreeHead) -> bool:
        self._state()
        if self.witness_heads.get(origin) != old:
            return False
        self.witness_heads[origin] = new
        return True

    async def _insert_cosignatures(
        self, log_id: int, size: int, rows: Sequence[NoteSignature]
    ) -> None:
        held = self.cosigs.setdefault((log_id, size), {})
        for sig in rows:
            held.setdefault((sig.name, sig.key_id), sig)

    async def _cosignature_rows(self, log_id: int, size: int) -> list[tuple[object, ...]]:
        self._log(log_id)
        held = self.cosigs.get((log_id, size), {})
        return [(s.name, s.key_id, s.signature) for s in held.values()]

    async def _cosigned_size(self, log_id: int) -> object:
        self._log(log_id)
        return max((size for lid, size in self.cosigs if lid == log_id), default=None)
