"""``StoreBase``: the ``Store`` protocol implemented once, over a few primitive queries.

Why this module exists: how an append is checked and planned, how a root or a proof is
served from stored nodes and which stored row is corrupt must be done the same way by the
memory, SQLite and PostgreSQL stores, so they cannot disagree on the rules of
``protocol.py``. An adapter implements only the ``_`` primitives, each one query or one
transaction returning raw rows; ``StoreBase`` checks every argument before a query and
every row after it (rule 6, with ``planning``), so nothing above it sees an unchecked row.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Self

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import (
    BadDataError,
    ConflictError,
    CorruptStoreError,
    ForkError,
    NotFoundError,
)
from jcm_sync.store.log_view import LogView, composed_view, joined_state
from jcm_sync.store.planning import (
    AppendPlan,
    PreparedEntry,
    check_checkpoint_row,
    check_entries,
    check_entry,
    check_head,
    check_index,
    check_log,
    check_nodes,
    check_record_id,
    check_trust_chain,
    frontier_from,
    parse_checkpoint_note,
    prepare_batch,
    trust_marks_from,
)
from jcm_sync.store.proving import NodeCache, checked_nodes, fold, pieces_of
from jcm_sync.store.state_swap import check_swap, swap_by_query
from jcm_sync.store.values import (
    MAX_INDEX,
    AppendResult,
    Coord,
    Entry,
    IndexedRecord,
    LogRef,
    RecordQuery,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
    Verify,
)
from jcm_sync.store.witnessing import WitnessRecords

__all__ = ["STATE_CHUNK", "EntryRow", "RecordRow", "StoreBase", "check_state_key"]

#: Rows asked for in one ``IN (...)`` or one batched read.
QUERY_CHUNK: Final = 500


def timestamp_now() -> datetime:
    return datetime.now(UTC)


EntryRow = tuple[int, object, object, object]
"""(index, record id, envelope, appended at) as an adapter read it."""

RecordRow = tuple[Any, ...]
"""(record id, kind, key, author, supersedes, partnership,
log partnership, log node, log origin, index)"""


@dataclass
class _LogCache:
    ids: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)


class StoreBase(WitnessRecords, abc.ABC):
    """Implements the ``Store`` API once, over a handful of primitive queries.

    An adapter implements the ``_`` methods; each runs one query (or one transaction) and
    returns raw rows, which this class checks before anything above it sees them.
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] = timestamp_now) -> None:
        self._url = url
        self._clock = clock
        self._cache = _LogCache()
        self._nodes_cache = NodeCache()

    @property
    def url(self) -> str:
        return self._url

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self._url)}>"

    # -- primitives an adapter implements ------------------------------------------

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _lookup_log(self, log: LogRef, create: bool) -> tuple[int, str] | None:
        """Return (log id, held origin) for (partnership, node); create it if asked."""

    @abc.abstractmethod
    async def _list_logs(self) -> list[tuple[str, str, str]]: ...

    @abc.abstractmethod
    async def _head(self, log_id: int) -> tuple[object, object]:
        """(size, root) of the log's head row."""

    @abc.abstractmethod
    async def _nodes(self, log_id: int, coords: Sequence[Coord]) -> dict[Coord, object]:
        """The node rows present among ``coords``."""

    @abc.abstractmethod
    async def _entry_rows(self, log_id: int, start: int, end: int) -> list[EntryRow]: ...

    @abc.abstractmethod
    async def _append(
        self, log: LogRef, log_id: int, start: int | None, batch: list[PreparedEntry]
    ) -> AppendPlan:
        """In one write transaction: read ``AppendState``, call ``plan_append``, write it."""

    @abc.abstractmethod
    async def _insert_checkpoint(self, log_id: int, cp: StoredCheckpoint) -> None:
        """Insert unless a checkpoint of that size exists (then keep the old one)."""

    @abc.abstractmethod
    async def _checkpoint_rows(
        self, log_id: int, size: int | None, latest: bool
    ) -> list[tuple[object, object, object]]:
        """(size, root, note) rows: at ``size``, the latest one, or all by size."""

    @abc.abstractmethod
    async def _record_rows(self, query: RecordQuery) -> list[RecordRow]: ...

    @abc.abstractmethod
    async def _envelope_row(self, record_id: str) -> tuple[str, int, object, object, object]:
        """(log origin, index, record id, envelope, appended at) of the first entry holding
        it; raises NotFoundError if none."""

    @abc.abstractmethod
    async def _trust_mark_rows(self) -> list[tuple[object, object, object]]:
        """(partnership, version, digest) of every held trust mark."""

    @abc.abstractmethod
    async def _state_chunks(self, key: str) -> list[tuple[object, object]]:
        """The (chunk number, bytes) rows of ``key`` in chunk order, read in one statement."""

    @abc.abstractmethod
    async def _put_state(self, key: str, chunks: list[bytes]) -> None:
        """In one durable transaction: delete every row of ``key``, insert ``chunks``."""

    @abc.abstractmethod
    async def _delete_state(self, key: str) -> bool:
        """Delete every row of ``key``; True if there was one."""

    @abc.abstractmethod
    async def _state_keys(self, prefix: str) -> list[str]:
        """The keys starting with ``prefix`` (any order)."""

    @abc.abstractmethod
    async def _append_counts(self, log_id: int, since: int, bucket: int) -> list[tuple[int, int]]:
        """(bucket number, entries) of entries appended at or after epoch second ``since``,
        bucket n covering ``[since + n*bucket, since + (n+1)*bucket)``; empty ones left out."""

    @abc.abstractmethod
    async def _advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> list[TrustMark]:
        """In one write transaction: read the marks, ``plan_trust_marks``, write the rising
        ones (never lowering a row even if the plan were wrong); return the rows written."""

    # -- logs ------------------------------------------------------------------------

    async def _log_id(self, log: LogRef, *, create: bool = False) -> int:
        check_log(log)
        cached = self._cache.ids.get((log.partnership, log.node))
        if cached is None:
            found = await self._lookup_log(log, create)
            if found is None:
                raise NotFoundError(
                    f"no log of {log.node} for {log.partnership} in this store", where=log.origin
                )
            cached = found
            self._cache.ids[(log.partnership, log.node)] = cached
        log_id, origin = cached
        if origin != log.origin:
            raise ConflictError(
                f"the log of {log.node} for {log.partnership} has origin {origin!r}, "
                f"not {log.origin!r}",
                where=log.origin,
            )
        return log_id

    async def ensure_log(self, log: LogRef) -> None:
        await self._log_id(log, create=True)

    async def logs(self) -> list[LogRef]:
        return [LogRef(p, n, o) for p, n, o in await self._list_logs()]

    # -- appending -----------------------------------------------------------------

    async def append(
        self, log: LogRef, index: int | None, envelope: bytes, verify: Verify
    ) -> AppendResult:
        return await self.append_entries(log, index, [envelope], verify)

    async def append_entries(
        self, log: LogRef, start_index: int | None, envelopes: Sequence[bytes], verify: Verify
    ) -> AppendResult:
        check_log(log)
        if start_index is not None:
            check_index(start_index, "start index", where=log.origin)
        batch = prepare_batch(log, envelopes, verify)
        log_id = await self._log_id(log, create=True)
        plan = await self._append(log, log_id, start_index, batch)
        return AppendResult(
            log=log,
            start=plan.start,
            appended=len(plan.new),
            present=plan.present,
            size=plan.size,
            root=plan.root,
        )

    # -- the tree ------------------------------------------------------------------

    async def tree_head(self, log: LogRef) -> TreeHead:
        log_id = await self._log_id(log)
        return check_head(log, *await self._head(log_id))

    async def log_view(
        self, log: LogRef, *, checkpoint: bool = True, state_key: str | None = None
    ) -> LogView:
        """ADR 0050: the single calls in turn; an adapter may read them in one job."""
        return await composed_view(self, log, checkpoint=checkpoint, state_key=state_key)

    async def _size_within(self, log: LogRef, log_id: int, size: int | None, what: str) -> int:
        head = check_head(log, *await self._head(log_id))
        if size is None:
            return head.size
        check_index(size, what, where=log.origin)
        if size > head.size:
            raise NotFoundError(
                f"{what} {size} is beyond the log's size {head.size}", where=log.origin
            )
        return size

    async def tree_nodes(self, log: LogRef, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        log_id = await self._log_id(log)
        wanted = sorted(set(coords))
        rows: dict[Coord, object] = {}
        for i in range(0, len(wanted), QUERY_CHUNK):
            rows.update(await self._nodes(log_id, wanted[i : i + QUERY_CHUNK]))
        return check_nodes(log, wanted, rows)

    async def root_at(self, log: LogRef, size: int) -> bytes:
        log_id = await self._log_id(log)
        head = check_head(log, *await self._head(log_id))
        check_index(size, "tree size", where=log.origin)
        if size > head.size:
            raise NotFoundError(
                f"tree size {size} is beyond the log's size {head.size}", where=log.origin
            )
        if size == head.size:
            return head.root
        return (await self._frontier(log, log_id, size)).root()

    async def frontier(self, log: LogRef, size: int) -> subtrees.Frontier:
        log_id = await self._log_id(log)
        await self._size_within(log, log_id, size, "tree size")
        return await self._frontier(log, log_id, size)

    async def _frontier(self, log: LogRef, log_id: int, size: int) -> subtrees.Frontier:
        coords = subtrees.Frontier.coordinates(size)
        return frontier_from(log, size, await self._nodes(log_id, coords))

    async def _head_and_nodes(
        self, log_id: int, coords: Sequence[Coord]
    ) -> tuple[object, object, dict[Coord, object]]:
        """The head row (size, root) and the node rows present among ``coords``; an adapter
        may read both in one job (SQLite does: one executor hop per proof, ADR 0046)."""
        size, root = await self._head(log_id)
        return size, root, (await self._nodes(log_id, coords) if coords else {})

    async def _proof(
        self,
        log: LogRef,
        log_id: int,
        size: int | None,
        what: str,
        ranges_of: Callable[[int], list[tuple[int, int]]],
    ) -> list[bytes]:
        """The MTH of each proof range ``ranges_of(tree size)`` names, ``size`` checked
        against the head before ``ranges_of``'s own errors are raised. The head and the
        nodes are read in one job; nodes a proof shares come from ``NodeCache`` if held."""
        if size is None:
            size = check_head(log, *await self._head(log_id)).size
        check_index(size, what, where=log.origin)
        pieces: list[list[Coord]] = []
        with contextlib.suppress(NotFoundError, BadDataError):  # raised below, in order
            pieces = [pieces_of(start, end) for start, end in ranges_of(size)]
        cached: dict[Coord, bytes] = {}
        want = self._nodes_cache.split(log_id, {c for p in pieces for c in p}, cached)
        head_size, root, rows = await self._head_and_nodes(log_id, want)
        head = check_head(log, head_size, root)
        if size > head.size:
            raise NotFoundError(
                f"{what} {size} is beyond the log's size {head.size}", where=log.origin
            )
        ranges_of(size)
        nodes = checked_nodes(log, want, rows)
        self._nodes_cache.put(log_id, nodes)
        nodes.update(cached)
        return [fold([nodes[c] for c in p]) for p in pieces]

    async def inclusion_proof(
        self, log: LogRef, index: int, size: int | None = None
    ) -> list[bytes]:
        log_id = await self._log_id(log)
        check_index(index, "entry index", where=log.origin)

        def ranges_of(tree_size: int) -> list[tuple[int, int]]:
            if index >= tree_size:
                raise NotFoundError(
                    f"entry {index} is not in the tree of size {tree_size}", where=log.origin
                )
            return merkle.inclusion_path_nodes(index, tree_size)

        return await self._proof(log, log_id, size, "tree size", ranges_of)

    async def consistency_proof(
        self, log: LogRef, old_size: int, new_size: int | None = None
    ) -> list[bytes]:
        log_id = await self._log_id(log)
        check_index(old_size, "old size", where=log.origin)

        def ranges_of(tree_size: int) -> list[tuple[int, int]]:
            if old_size > tree_size:
                raise BadDataError(
                    f"old size {old_size} is larger than new size {tree_size}", where=log.origin
                )
            return merkle.consistency_path_nodes(old_size, tree_size)

        return await self._proof(log, log_id, new_size, "new size", ranges_of)

    # -- entries -------------------------------------------------------------------

    async def entries(self, log: LogRef, start: int = 0, end: int | None = None) -> list[Entry]:
        log_id = await self._log_id(log)
        check_index(start, "start index", where=log.origin)
        stop = await self._size_within(log, log_id, end, "end index")
        if start > stop:
            raise NotFoundError(f"start index {start} is beyond the end {stop}", where=log.origin)
        return check_entries(log, start, stop, await self._entry_rows(log_id, start, stop))

    async def entry(self, log: LogRef, index: int) -> Entry:
        log_id = await self._log_id(log)
        check_index(index, "entry index", where=log.origin)
        size = await self._size_within(log, log_id, None, "entry index")
        if index >= size:
            raise NotFoundError(f"no entry {index}: the log holds {size} entries", where=log.origin)
        return check_entries(
            log, index, index + 1, await self._entry_rows(log_id, index, index + 1)
        )[0]

    # -- checkpoints ---------------------------------------------------------------

    async def put_checkpoint(self, log: LogRef, note: bytes) -> StoredCheckpoint:
        where = f"{log.origin} checkpoint"
        cp = parse_checkpoint_note(note, where=where)
        origin, size, root = cp.origin, cp.size, cp.root_hash
        if origin != log.origin:
            raise BadDataError(
                f"checkpoint is for origin {origin!r}, not this log's {log.origin!r}", where=where
            )
        log_id = await self._log_id(log)
        head = check_head(log, *await self._head(log_id))
        if size > MAX_INDEX:
            raise BadDataError(f"checkpoint size {size} is out of range", where=where)
        if size > head.size:
            raise ConflictError(
                f"checkpoint of size {size} is ahead of the stored tree of size {head.size}",
                where=where,
            )
        # Nodes never change once written, so the root at ``size`` read now is final.
        held_root = await self.root_at(log, size)
        if held_root != root:
            raise ForkError(
                f"checkpoint root for size {size} is not the stored tree's root at that size",
                where=where,
            )
        await self._insert_checkpoint(log_id, StoredCheckpoint(size, root, note))
        return await self.checkpoint_at(log, size)

    async def _checkpoints(
        self, log: LogRef, size: int | None, latest: bool
    ) -> list[StoredCheckpoint]:
        log_id = await self._log_id(log)
        rows = await self._checkpoint_rows(log_id, size, latest)
        return [check_checkpoint_row(log, *r) for r in rows]

    async def checkpoint_at(self, log: LogRef, size: int) -> StoredCheckpoint:
        check_index(size, "checkpoint size", where=log.origin)
        found = await self._checkpoints(log, size, False)
        if not found:
            raise NotFoundError(f"no checkpoint of size {size}", where=log.origin)
        return found[0]

    async def latest_checkpoint(self, log: LogRef) -> StoredCheckpoint | None:
        found = await self._checkpoints(log, None, True)
        return found[0] if found else None

    async def checkpoints(self, log: LogRef) -> list[StoredCheckpoint]:
        return await self._checkpoints(log, None, False)

    # -- the record index --------------------------------------------------------

    @staticmethod
    def _indexed(row: RecordRow) -> IndexedRecord:
        rid, kind, key, author, supersedes, partnership, lp, ln, lo, idx = row
        return IndexedRecord(
            record_id=rid,
            kind=kind,
            key=key,
            author=author,
            supersedes=supersedes,
            partnership=partnership,
            log=LogRef(lp, ln, lo),
            index=idx,
        )

    async def _find(self, query: RecordQuery) -> list[IndexedRecord]:
        return [self._indexed(r) for r in await self._record_rows(query)]

    async def record(self, record_id: str) -> IndexedRecord:
        check_record_id(record_id)
        found = await self._find(RecordQuery(record_id=record_id))
        if not found:
            raise NotFoundError(f"no log holds record {record_id[:16]}")
        return found[0]

    async def envelope(self, record_id: str) -> bytes:
        check_record_id(record_id)
        origin, idx, rid, env, at = await self._envelope_row(record_id)
        return check_entry(origin, idx, rid, env, at).envelope

    async def records(
        self, kind: str, key: str | Sequence[str], *, partnership: str | None = None
    ) -> list[IndexedRecord]:
        joined = key if isinstance(key, str) else "/".join(key)
        return await self._find(RecordQuery(kind=kind, key=joined, partnership=partnership))

    async def latest_version(self, record_id: str) -> IndexedRecord:
        current = await self.record(record_id)
        seen = {current.record_id}
        while True:
            newer = [
                r
                for r in await self._find(RecordQuery(supersedes=current.record_id))
                if r.kind == current.kind and r.partnership == current.partnership
            ]
            distinct = sorted({r.record_id for r in newer})
            if not distinct:
                return current
            if len(distinct) > 1:
                raise ConflictError(
                    f"record {current.record_id[:16]} is superseded by more than one version: "
                    + ", ".join(d[:16] for d in distinct)
                )
            current = newer[0]
            if current.record_id in seen:
                raise CorruptStoreError(
                    f"the supersedes chain of {record_id[:16]} loops at {current.record_id[:16]}"
                )
            seen.add(current.record_id)

    async def endorsements(self, record_id: str) -> list[IndexedRecord]:
        check_record_id(record_id)
        return await self._find(RecordQuery(kind="endorsement", key=record_id))

    # -- trust marks ---------------------------------------------------------------

    async def trust_marks(self) -> dict[str, TrustMark]:
        return trust_marks_from(await self._trust_mark_rows())

    async def advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> dict[str, TrustMark]:
        for pid, chain in offered.items():
            check_trust_chain(pid, chain)
        await self._advance_trust_marks(offered)
        return await self.trust_marks()

    # -- node state (protocol rule 9) ---------------------------------------------

    async def get_state(self, key: str) -> bytes | None:
        check_state_key(key)
        rows = await self._state_chunks(key)
        return joined_state(key, rows) if rows else None

    async def put_state(self, key: str, value: bytes) -> None:
        check_state_key(key)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise BadDataError(f"state {key!r}: a value is bytes, not {type(value).__name__}")
        view = memoryview(value)
        chunks = [bytes(view[i : i + STATE_CHUNK]) for i in range(0, len(view), STATE_CHUNK)]
        await self._put_state(key, chunks or [b""])

    async def delete_state(self, key: str) -> bool:
        check_state_key(key)
        return await self._delete_state(key)

    async def state_keys(self, prefix: str) -> list[str]:
        if prefix:
            check_state_key(prefix)
        return sorted(set(await self._state_keys(prefix)))

    async def swap_state(self, key: str, old: bytes | None, new: bytes) -> bool:
        check_state_key(key)
        return await self._swap_state(key, *check_swap(key, old, new))

    async def _swap_state(self, key: str, old: bytes | None, new: bytes) -> bool:
        """In one statement (``state_swap``); a store without ``_query`` overrides it."""
        return await swap_by_query(self, self._clock(), key, old, new)

    async def append_counts(
        self, log: LogRef, since: datetime, bucket_seconds: int
    ) -> list[tuple[datetime, int]]:
        if not isinstance(since, datetime) or since.tzinfo is None:
            raise BadDataError("append_counts: since must be a timezone-aware datetime")
        if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int):
            raise BadDataError("append_counts: bucket_seconds must be an int")
        if not 1 <= bucket_seconds <= 366 * 86400:
            raise BadDataError(f"append_counts: bucket_seconds {bucket_seconds} out of range")
        try:
            log_id = await self._log_id(log)
        except NotFoundError:
            return []
        start = math.floor(since.timestamp())
        rows = await self._append_counts(log_id, start, bucket_seconds)
        return [
            (datetime.fromtimestamp(start + int(b) * bucket_seconds, UTC), int(n))
            for b, n in rows
            if int(n) > 0
        ]


#: Largest row of a state value (protocol rule 9).
STATE_CHUNK: Final = 8 * 1024 * 1024
#: Longest state key.
MAX_STATE_KEY: Final = 512


def check_state_key(key: object) -> None:
    """A state key is 1..512 printable characters (no control characters)."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_STATE_KEY:
        raise BadDataError(f"a state key is 1..{MAX_STATE_KEY} characters: {key!r:.80}")
    if not key.isprintable():
        raise BadDataError(f"a state key has no control characters: {key!r:.80}")


def redact_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
