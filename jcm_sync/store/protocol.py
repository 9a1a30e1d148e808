"""The ``Store`` protocol: the port every store adapter implements, and its rules.

Why this module exists: a node keeps its logs (DESIGN §4, §6) in SQLite, in PostgreSQL or,
for tests, in memory. The services see only this protocol, so the adapter is chosen by
URL (``open_store``) and the rules below hold whichever it is.

Data model
----------
A *log* is named by ``LogRef``: its partnership, the node whose records it holds and its
checkpoint origin (``jcm-sync.example/JP-MN/MN``). A store holds, per log:

* ``entries``: index, record id, the exact envelope bytes as received, when appended;
* ``nodes``: the hash of every complete aligned perfect subtree, ``(level, index)`` as in
  ``merkle`` (level 0 holds the leaf hashes), so any root and any proof takes O(log N)
  node reads;
* ``checkpoints``: signed notes, one per tree size;
* ``records``: the index of records by kind and key, author and the record superseded;
* the head: current size and root, written in the same transaction as the entries.

And, per partnership, one *trust mark* (ADR 0017): the highest trust-root version the
store has been opened with and the SHA-256 of that root document (``TrustMark``).

And the node's own *state* (ADR 0027, rule 9): job status, fork alarms, reconciliation
history and reports, as byte values under keys, so nothing a backup must hold lives in
files beside the store.

Invariants every adapter keeps
------------------------------
1. An append batch (entries, their nodes, their index rows and the new head) commits in
   one transaction or not at all; nothing is written unless every envelope verified.
2. Entry ``i`` exists for every ``i < size`` and none for ``i >= size``; the record id of
   an entry is SHA-256 of its envelope bytes; a record appears at most once in a log.
3. Appending is idempotent: the same envelope at a filled index is a no-op, another
   envelope there is a ``ForkError``; an index past the size is a gap and is refused.
4. Every perfect subtree of ``[0, size)`` has its node; the head root equals the root
   folded from the frontier nodes (checked on every append).
5. A checkpoint is stored only if its origin is the log's and its (size, root) is the
   stored tree's: a store never holds two checkpoints that disagree.
6. Every row read is checked (hash lengths, record id against the bytes, contiguity);
   a row that does not check out raises ``CorruptStoreError`` saying which and where.
   Foreign exceptions (sqlite3, asyncpg) are translated in the adapter into ``StoreError``.
7. A trust mark only rises (``advance_trust_marks``): all the offered chains are judged
   against the held marks inside one write transaction (``plan_trust_marks``); an older
   version, or another document at the held version, is a ``RollbackError`` and nothing
   is written; the marks that rise are written together.
8. ``SCHEMA_VERSION`` counts layouts, one per migration of ``migrations.py``: opening a
   database runs, in one transaction, every migration above its recorded version in
   order and records each (``schema_migrations``, with when); a database with no
   recorded version is new and gets them all; a newer one is refused, so an older
   jcm-sync cannot run on a store it would not guard.
9. Node state (ADR 0027): the node's own state (job status, alarms, reconciliation
   history and reports) is opaque bytes under a printable key (``status/JP-MN``); a
   value of any size is replaced atomically and durably (``put_state`` returns after the
   commit; a crash leaves the old value or the new one, never a mix), stored as rows of
   at most ``STATE_CHUNK`` bytes so hundreds of MB fit both backends. So nothing a
   backup of the store must hold lives beside it in files. ``swap_state`` is a
   compare-and-set of a small value (``MAX_SWAP_VALUE``) in one statement: of callers
   in any processes judging against the same old value, exactly one writes. A key
   written by ``swap_state`` is written only by it (and removed by ``delete_state``).
10. Witnessing (ADR 0032, ``witnessing.py``): the tree head cosigned per origin moves
   only by compare-and-persist in one statement, never backwards; cosignatures are kept
   per (checkpoint size, key name, key ID), the first one received of each.

``StoreBase`` (``base.py``) implements the protocol once, over a few primitive queries per
adapter, with the pure decisions in ``planning.py`` and the SQL both SQL adapters share in
``sql.py``, so the adapters only move rows and cannot disagree on these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, Self

from jcm_sync.core import subtrees
from jcm_sync.core.note import NoteSignature
from jcm_sync.store.log_view import LogView
from jcm_sync.store.values import (
    AppendResult,
    Coord,
    Entry,
    IndexedRecord,
    LogRef,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
    Verify,
)

__all__ = ["Store"]


class Store(Protocol):
    """Where a node keeps its logs, their tree nodes, checkpoints and record index.

    Every method is a coroutine; every failure is a ``JcmSyncError``. See the module
    docstring for the invariants each implementation keeps.
    """

    @property
    def url(self) -> str: ...

    async def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Stamp appended entries with ``clock`` (the node's, or the CLI's ``--at``): an
        entry's ``appended_at`` is when this node received it, the time a revoked key is
        judged at on re-verification (docs/adr/0018-revocation-by-receipt.md)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def ensure_log(self, log: LogRef) -> None:
        """Create the log if absent; ``ConflictError`` if its origin differs from the held one."""

    async def logs(self) -> list[LogRef]:
        """Every log the store holds."""
        ...

    async def append(
        self, log: LogRef, index: int | None, envelope: bytes, verify: Verify
    ) -> AppendResult:
        """Append one envelope at ``index`` (None: at the end); see ``append_entries``."""
        ...

    async def append_entries(
        self, log: LogRef, start_index: int | None, envelopes: Sequence[bytes], verify: Verify
    ) -> AppendResult:
        """Verify, then append envelopes at ``start_index`` onward in one transaction.

        Idempotent for entries already held; ``ForkError`` for a different one at a filled
        index, ``ConflictError`` for a gap or a record already in the log; nothing is
        written unless everything passes.
        """
        ...

    async def tree_head(self, log: LogRef) -> TreeHead:
        """Current size and root."""
        ...

    async def log_view(
        self, log: LogRef, *, checkpoint: bool = True, state_key: str | None = None
    ) -> LogView:
        """The head, the latest checkpoint (unless ``checkpoint`` is False) with its
        cosignatures, and the state value of ``state_key``, read together (``log_view``)."""
        ...

    async def root_at(self, log: LogRef, size: int) -> bytes:
        """Root of the tree of the first ``size`` entries, from O(log N) stored nodes."""
        ...

    async def entries(self, log: LogRef, start: int = 0, end: int | None = None) -> list[Entry]:
        """Entries ``start .. end-1`` (``end`` None: to the current size)."""
        ...

    async def entry(self, log: LogRef, index: int) -> Entry:
        """The entry at ``index``."""
        ...

    async def tree_nodes(self, log: LogRef, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        """The stored perfect-subtree hashes at these coordinates (all must exist)."""
        ...

    async def frontier(self, log: LogRef, size: int) -> subtrees.Frontier:
        """The frontier of the tree of the first ``size`` entries, from stored nodes; a
        caller appends leaves to it to learn a future root before writing anything."""
        ...

    async def inclusion_proof(
        self, log: LogRef, index: int, size: int | None = None
    ) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``."""
        ...

    async def consistency_proof(
        self, log: LogRef, old_size: int, new_size: int | None = None
    ) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to ``new_size``."""
        ...

    async def put_checkpoint(self, log: LogRef, note: bytes) -> StoredCheckpoint:
        """Store a checkpoint note that agrees with the stored tree (signatures are not
        checked here); the one already held at that size is kept and returned."""
        ...

    async def checkpoint_at(self, log: LogRef, size: int) -> StoredCheckpoint:
        """The checkpoint stored for ``size``; ``NotFoundError`` if none."""
        ...

    async def latest_checkpoint(self, log: LogRef) -> StoredCheckpoint | None:
        """The checkpoint of the largest size, or None."""
        ...

    async def checkpoints(self, log: LogRef) -> list[StoredCheckpoint]:
        """Every stored checkpoint, by size."""
        ...

    async def record(self, record_id: str) -> IndexedRecord:
        """Where a record sits; ``NotFoundError`` if no log holds it."""
        ...

    async def envelope(self, record_id: str) -> bytes:
        """The stored envelope bytes of a record."""
        ...

    async def records(
        self, kind: str, key: str | Sequence[str], *, partnership: str | None = None
    ) -> list[IndexedRecord]:
        """Every version of the record of ``kind`` and natural ``key``, in log order."""
        ...

    async def latest_version(self, record_id: str) -> IndexedRecord:
        """Follow ``supersedes`` forward to the version no other record supersedes."""
        ...

    async def endorsements(self, record_id: str) -> list[IndexedRecord]:
        """Endorsement records that name ``record_id``."""
        ...

    async def trust_marks(self) -> dict[str, TrustMark]:
        """The held trust mark of every partnership (rule 7)."""
        ...

    async def advance_trust_marks(
        self, offered: Mapping[str, Sequence[TrustMark]]
    ) -> dict[str, TrustMark]:
        """Judge each partnership's offered trust chain (oldest first) against its held
        mark and raise the marks, all in one transaction; ``RollbackError`` and nothing
        written if any chain is older or different (rule 7). Returns the marks now held."""
        ...

    async def get_state(self, key: str) -> bytes | None:
        """The state value under ``key``, or None (rule 9)."""
        ...

    async def put_state(self, key: str, value: bytes) -> None:
        """Replace the value under ``key``, atomically and durably on return (rule 9)."""
        ...

    async def delete_state(self, key: str) -> bool:
        """Delete the value under ``key``; True if there was one."""
        ...

    async def state_keys(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix`` ("" for all), sorted by code point."""
        ...

    async def swap_state(self, key: str, old: bytes | None, new: bytes) -> bool:
        """Write ``new`` under ``key`` only if it holds ``old`` (None: no value), atomically
        and durably; True if written (rule 9)."""
        ...

    async def witnessed(self, origin: str) -> TreeHead | None:
        """The tree head this node last cosigned as a witness of ``origin`` (rule 10)."""
        ...

    async def persist_witnessed(self, origin: str, old: TreeHead | None, new: TreeHead) -> bool:
        """Compare-and-persist the witnessed head in one transaction: ``new`` is written
        only if ``old`` (None: none) is still held; True if it was (rule 10)."""
        ...

    async def add_cosignatures(
        self, log: LogRef, size: int, signatures: Sequence[NoteSignature]
    ) -> None:
        """Keep verified cosignatures of the held checkpoint of ``size`` (rule 10)."""

    async def cosignatures(self, log: LogRef, size: int) -> list[NoteSignature]:
        """The cosignatures kept for the checkpoint of ``size``, oldest first."""
        ...

    async def cosigned_size(self, log: LogRef) -> int | None:
        """The largest size of the log with a cosignature kept, or None."""
        ...

    async def append_counts(
        self, log: LogRef, since: datetime, bucket_seconds: int
    ) -> list[tuple[datetime, int]]:
        """Entries appended (``appended_at``) per bucket of ``bucket_seconds`` from
        ``since`` (truncated to the second), oldest first, empty buckets left out; each
        bucket is named by its start (UTC). An unknown log has none."""
        ...
