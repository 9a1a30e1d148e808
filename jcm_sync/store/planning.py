"""The pure decisions of a store: what an append writes, whether a trust mark may rise,
whether a stored row is sound.

Why this module exists: the rules of ``protocol.py`` (an append is idempotent or a fork,
never a gap; a trust mark only rises; every row read is checked) must be decided in one
place, so the memory, SQLite and PostgreSQL adapters cannot disagree on them. Nothing here
does I/O: an adapter reads rows inside its transaction, hands them here as values, and
writes what comes back, or nothing when this raises.

* input checks: ``check_index``, ``check_log``, ``check_record_id`` refuse bad arguments
  with ``BadDataError`` before any query;
* appending: ``prepare_batch`` verifies envelopes, ``plan_append`` decides the rows
  (invariants 3 and 4), ``duplicate_error`` and ``rows_past_head_error`` explain a write
  the database refused;
* trust marks: ``plan_trust_marks`` judges offered chains against the held marks (rule 7);
* row checks: ``check_head``, ``check_nodes``, ``check_entries`` and the others turn raw
  rows into values or raise ``CorruptStoreError`` saying which row (rule 6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from jcm_sync.core import checkpoint, merkle, subtrees
from jcm_sync.core import note as signed_note
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    ConflictError,
    CorruptStoreError,
    ForkError,
    RollbackError,
)
from jcm_sync.store.values import (
    MAX_INDEX,
    Coord,
    Entry,
    LogRef,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
    Verify,
)

__all__ = [
    "AppendPlan",
    "AppendState",
    "PreparedEntry",
    "check_checkpoint_row",
    "check_entries",
    "check_entry",
    "check_hash",
    "check_head",
    "check_index",
    "check_log",
    "check_nodes",
    "check_record_id",
    "check_trust_chain",
    "duplicate_error",
    "frontier_from",
    "overlap",
    "parse_checkpoint_note",
    "plan_append",
    "plan_trust_marks",
    "prepare_batch",
    "rows_past_head_error",
    "state_reads",
    "trust_marks_from",
]


# --- input checks -----------------------------------------------------------------


def check_index(value: object, what: str, *, where: str | None = None) -> int:
    """Return ``value`` if it is an int in [0, MAX_INDEX]; else raise ``BadDataError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadDataError(f"{what} must be an integer, not {type(value).__name__}", where=where)
    if not 0 <= value <= MAX_INDEX:
        raise BadDataError(f"{what} {value} is outside [0, 2**63 - 1]", where=where)
    return value


def check_log(log: object) -> LogRef:
    if not isinstance(log, LogRef):
        raise BadDataError(f"expected a LogRef, not {type(log).__name__}")
    for name in ("partnership", "node", "origin"):
        value = getattr(log, name)
        if not isinstance(value, str) or not value or len(value) > 255:
            raise BadDataError(f"log {name} must be a non-empty string of at most 255 characters")
    return log


def check_record_id(value: object, what: str = "record id") -> str:
    if not (isinstance(value, str) and len(value) == 64 and value == value.lower()):
        raise BadDataError(f"{what} must be 64 lowercase hex digits, got {value!r:.80}")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise BadDataError(f"{what} must be 64 lowercase hex digits, got {value!r:.80}") from None
    return value


# --- appending: pure planning -------------------------------------------------------


class PreparedEntry(NamedTuple):
    """A verified envelope ready to append: its bytes, hashes and index fields.

    A NamedTuple rather than a dataclass: a hub batch builds thousands of them.
    """

    envelope: bytes
    record_id: str
    leaf_hash: bytes
    kind: str
    key: str
    author: str
    supersedes: str | None
    partnership: str


def prepare_batch(log: LogRef, envelopes: Sequence[bytes], verify: Verify) -> list[PreparedEntry]:
    """Verify every envelope and check it belongs in ``log``; nothing is written here.

    Raises whatever ``verify`` raises (``UntrustedError``, ``BadDataError``), and
    ``AuthorityError`` for a record of another partnership or author than the log's.

    Each envelope is hashed once on the way in. A verification of these very bytes
    (``Verification.raw == raw``, as ``trust.verify_record`` returns) brings its record
    id and leaf hash, computed in this process from the bytes it has just verified, by
    the verifier the store already trusts to say what is authentic; the store takes
    them rather than hashing again. A verification that does not carry the bytes (one
    prepared ahead, as ``sample.signed_issuances`` makes) is checked against the
    store's own hash of them. Either way every read checks an envelope against its
    record id again (``check_entry``).
    """
    if isinstance(envelopes, bytes | bytearray | str):
        raise BadDataError("envelopes must be a sequence of envelope byte strings")
    out: list[PreparedEntry] = []
    partnership, node = log.partnership, log.node
    put, new, join = out.append, tuple.__new__, "/".join
    for n, raw in enumerate(envelopes):
        # the hub's batches are thousands: nothing per entry that only an error needs
        if not isinstance(raw, bytes) or not raw:
            raise BadDataError(
                "an envelope cannot be empty"
                if isinstance(raw, bytes)
                else f"an envelope must be bytes, not {type(raw).__name__}",
                where=f"{log.origin} batch item {n}",
            )
        v = verify(raw)
        if v.raw == raw:
            rid, leaf = v.record_id, v.leaf_hash
        else:
            rid, leaf = hashlib.sha256(raw).hexdigest(), merkle.leaf_hash(raw)
            if v.raw or v.record_id != rid:
                raise BadDataError(
                    f"the verifier returned record {v.record_id[:16]} for envelope {rid[:16]}",
                    where=f"{log.origin} batch item {n}",
                )
        rec = v.record
        if rec.partnership != partnership or rec.author != node:
            raise AuthorityError(
                f"record {rid[:16]} by {rec.author} of {rec.partnership} does not belong in the "
                f"log of {node} of {partnership}",
                where=f"{log.origin} batch item {n}",
            )
        # positional, in PreparedEntry's order: envelope, record_id, leaf_hash, kind, key,
        # author, supersedes, partnership; by tuple.__new__, not the NamedTuple's own
        # __new__, a Python function that cost a third of this loop (ADR 0054)
        entry = (raw, rid, leaf, v.kind, join(rec.key()), node, rec.supersedes, partnership)
        put(new(PreparedEntry, entry))
    return out


@dataclass(frozen=True, slots=True)
class AppendState:
    """What an adapter read, inside its write transaction, before planning an append."""

    size: int
    root: bytes
    frontier: Mapping[Coord, object]
    """the stored frontier nodes of ``size`` (checked by ``plan_append``)"""
    existing: Mapping[int, object]
    """record ids held at the indexes the batch overlaps"""
    known: subtrees.Frontier | None = None
    """the frontier of ``size`` and ``root`` as the adapter itself grew it, when it knows
    the head read is the one its own last append left (``sparse.Frontiers``): taken as it
    is, ``frontier`` then unread (empty)"""


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """Rows to write for an append; empty when every entry is already present."""

    start: int
    """where the batch starts"""
    present: int
    """how many of its first entries the log already held"""
    first: int
    """index of the first new entry (the size before the append)"""
    new: Sequence[PreparedEntry]
    """the entries to write, at ``first``, ``first + 1``, ..."""
    nodes: list[subtrees.Subtree]
    """every perfect-subtree node the new entries complete"""
    size: int
    root: bytes


def state_reads(size: int, start: int | None, count: int) -> tuple[list[Coord], tuple[int, int]]:
    """Return what an adapter must read for ``plan_append``: the frontier coordinates of
    ``size`` and the overlap ``[lo, hi)`` of the batch with the entries already held."""
    return subtrees.Frontier.coordinates(size), overlap(size, start, count)


def overlap(size: int, start: int | None, count: int) -> tuple[int, int]:
    """The overlap ``[lo, hi)`` of a batch of ``count`` at ``start`` (None: at the end)
    with the ``size`` entries already held: the record ids ``plan_append`` compares."""
    lo = size if start is None else min(start, size)
    return lo, min(size, lo + count)


Grow = Callable[
    [subtrees.Frontier, Sequence[bytes]], tuple[subtrees.Frontier, list[subtrees.Subtree]]
]


def plan_append(
    log: LogRef,
    start: int | None,
    batch: Sequence[PreparedEntry],
    state: AppendState,
    grow: Grow = subtrees.Frontier.extend,
) -> AppendPlan:
    """Decide an append (invariants 3 and 4); raise without side effects if it is refused.

    ``start`` None appends at the end. Entries at filled indexes must be the same bytes
    (a no-op) or the append is a ``ForkError``; a start past the size is a gap. ``grow``
    extends the frontier and says which new nodes the plan writes: every one by default,
    the stored ones with ``sparse.grow`` (the SQL stores). The frontier is the adapter's
    ``known`` one when it has that size, else the stored nodes, checked against the root.
    """
    size = state.size
    if start is None:
        start = size
    if start > size:
        raise ConflictError(
            f"append at index {start} would leave a gap: the log holds {size} entries, "
            f"so the next index is {size}",
            where=log.origin,
        )
    if start + len(batch) > MAX_INDEX:
        raise BadDataError(f"the batch would grow the log past index {MAX_INDEX}")
    ids = [item.record_id for item in batch]
    if len(set(ids)) != len(ids):  # a set, not a dict of first indexes (ADR 0054)
        seen: dict[str, int] = {}
        for n, rid in enumerate(ids, start):
            first = seen.setdefault(rid, n)
            if first != n:
                raise ConflictError(
                    f"record {rid[:16]} appears twice in the batch, at indexes {first} and {n}",
                    where=log.origin,
                )
    present = 0
    for n, item in enumerate(batch):
        i = start + n
        if i >= size:
            break
        held = state.existing.get(i)
        if held is None:
            raise CorruptStoreError(
                f"entry {i} is missing though the log size is {size}",
                where=f"{log.origin} entry {i}",
            )
        if held != item.record_id:
            raise ForkError(
                f"index {i} already holds record {str(held)[:16]}, not {item.record_id[:16]}: "
                "a different history",
                where=f"{log.origin} index {i}",
            )
        present += 1
    frontier = state.known
    if frontier is None or frontier.size != size:
        frontier = frontier_from(log, size, state.frontier)
        if frontier.root() != state.root:
            raise CorruptStoreError(
                f"the stored root of size {size} is not the root of the stored tree nodes",
                where=f"{log.origin} head",
            )
    new = batch[present:]
    grown, nodes = grow(frontier, [item.leaf_hash for item in new])
    return AppendPlan(
        start=start,
        present=present,
        first=size,
        new=new,
        nodes=nodes,
        size=grown.size,
        root=grown.root(),
    )


def duplicate_error(log: LogRef, found: Mapping[str, int]) -> ConflictError:
    """The error for an append whose record the log already holds at another index."""
    rid, idx = next(iter(sorted(found.items(), key=lambda kv: kv[1])))
    return ConflictError(
        f"record {rid[:16]} is already in the log at index {idx}; a record appears once",
        where=log.origin,
    )


def rows_past_head_error(log: LogRef, plan: AppendPlan, detail: str) -> CorruptStoreError:
    """The error for an append that finds rows where the head says the log ends."""
    return CorruptStoreError(
        f"rows past the stored size {plan.first} already exist ({detail})",
        where=f"{log.origin} head",
    )


# --- trust marks: pure judging ------------------------------------------------------


def check_trust_chain(partnership: str, chain: Sequence[TrustMark]) -> list[TrustMark]:
    """An offered chain: non-empty, of ``partnership``, versions rising, digests hex."""
    if isinstance(chain, TrustMark) or not chain:
        raise BadDataError(f"no trust root offered for {partnership}")
    out = list(chain)
    for n, m in enumerate(out):
        if not isinstance(m, TrustMark) or m.partnership != partnership:
            raise BadDataError(f"trust chain item {n} is not a mark of {partnership}")
        check_index(m.version, "trust root version", where=partnership)
        if not (len(m.digest) == 64 and all(c in "0123456789abcdef" for c in m.digest)):
            raise BadDataError("a trust root digest is 64 lowercase hex digits", where=partnership)
        if n and m.version <= out[n - 1].version:
            raise BadDataError("trust chain versions must rise", where=partnership)
    return out


def plan_trust_marks(
    held: Mapping[str, TrustMark], offered: Mapping[str, Sequence[TrustMark]]
) -> list[TrustMark]:
    """Judge offered chains (oldest first) against the held marks (rule 7).

    Returns the marks to write (each chain's newest, where it is higher than the held
    one); raises ``RollbackError`` naming both versions and digests when a chain ends
    below the held version, or holds another document at the held version.
    """
    rising: list[TrustMark] = []
    for pid in sorted(offered):
        chain = check_trust_chain(pid, offered[pid])
        newest, mark = chain[-1], held.get(pid)
        if mark is None:
            rising.append(newest)
            continue
        if newest.version < mark.version:
            raise RollbackError(
                f"trust-root rollback refused for {pid}: this store has trusted "
                f"{mark.describe()}, the configuration offers only {newest.describe()}; "
                "a node never goes back to an older trust root"
            )
        same = next((m for m in chain if m.version == mark.version), None)
        if same is not None and same.digest != mark.digest:
            via = "" if same is newest else f" in a chain up to {newest.describe()}"
            raise RollbackError(
                f"trust-root rollback refused for {pid}: the offered {same.describe()}{via} "
                f"is not the {mark.describe()} this store has trusted"
            )
        if newest.version > mark.version:
            rising.append(newest)
    return rising


# --- reading: row checks ----------------------------------------------------------


def check_hash(value: object, where: str, what: str = "hash") -> bytes:
    """A stored hash must be 32 bytes; anything else is a corrupt row."""
    if isinstance(value, memoryview | bytearray):
        value = bytes(value)
    if not isinstance(value, bytes) or len(value) != merkle.HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise CorruptStoreError(
            f"stored {what} is {got}, not {merkle.HASH_SIZE} bytes", where=where
        )
    return value


def check_head(log: LogRef, size: object, root: object) -> TreeHead:
    where = f"{log.origin} head"
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_INDEX:
        raise CorruptStoreError(f"stored size {size!r} is not a tree size", where=where)
    return TreeHead(size, check_hash(root, where, "root"))


def check_nodes(
    log: LogRef, wanted: Iterable[Coord], rows: Mapping[Coord, object]
) -> dict[Coord, bytes]:
    """Return the wanted node hashes; a missing or malformed one is a corrupt store."""
    out: dict[Coord, bytes] = {}
    for coord in wanted:
        where = f"{log.origin} node (level {coord[0]}, index {coord[1]})"
        if coord not in rows:
            raise CorruptStoreError("tree node is missing", where=where)
        out[coord] = check_hash(rows[coord], where, "node hash")
    return out


def frontier_from(log: LogRef, size: int, rows: Mapping[Coord, object]) -> subtrees.Frontier:
    coords = subtrees.Frontier.coordinates(size)
    nodes = check_nodes(log, coords, rows)
    return subtrees.Frontier.from_hashes(size, [nodes[c] for c in coords])


def check_entry(
    origin: str, index: int, record_id: object, envelope: object, appended_at: object
) -> Entry:
    """Build an ``Entry`` from a row, checking its bytes hash to its record id."""
    where = f"{origin} entry {index}"
    if isinstance(envelope, memoryview | bytearray):
        envelope = bytes(envelope)
    if not isinstance(envelope, bytes) or not envelope:
        raise CorruptStoreError("stored envelope is empty or not bytes", where=where)
    if not isinstance(record_id, str):
        raise CorruptStoreError("stored record id is not text", where=where)
    actual = hashlib.sha256(envelope).hexdigest()
    if actual != record_id:
        raise CorruptStoreError(
            f"stored envelope ({len(envelope)} bytes) hashes to {actual[:16]}, not to its "
            f"record id {record_id[:16]}: the row is truncated or altered",
            where=where,
        )
    if not isinstance(appended_at, datetime):
        raise CorruptStoreError("stored append time is not a timestamp", where=where)
    return Entry(index, record_id, envelope, appended_at)


def check_entries(
    log: LogRef, start: int, end: int, rows: Sequence[tuple[int, object, object, object]]
) -> list[Entry]:
    """Check a range read returned exactly entries ``start .. end-1``, each intact."""
    out: list[Entry] = []
    for expected, row in enumerate(rows, start):
        idx = row[0]
        if idx != expected:
            missing = expected if isinstance(idx, int) and idx > expected else idx
            raise CorruptStoreError(
                "entry is missing inside the log", where=f"{log.origin} entry {missing}"
            )
        out.append(check_entry(log.origin, expected, *row[1:]))
    if len(out) != end - start:
        raise CorruptStoreError(
            "entry is missing inside the log", where=f"{log.origin} entry {start + len(out)}"
        )
    return out


def check_checkpoint_row(log: LogRef, size: object, root: object, note: object) -> StoredCheckpoint:
    where = f"{log.origin} checkpoint {size}"
    if isinstance(note, memoryview | bytearray):
        note = bytes(note)
    if not isinstance(note, bytes) or not isinstance(size, int):
        raise CorruptStoreError("stored checkpoint row is malformed", where=where)
    return StoredCheckpoint(size, check_hash(root, where, "checkpoint root"), note)


# --- checkpoint bodies --------------------------------------------------------------


def parse_checkpoint_note(note: bytes, *, where: str) -> checkpoint.Checkpoint:
    """Return the checkpoint a signed note states, with its syntax checked, unverified.

    The store holds no keys: it checks a note against its tree, and the log service
    checks the signatures before calling it.
    """
    if not isinstance(note, bytes):
        raise BadDataError(
            f"a checkpoint note must be bytes, not {type(note).__name__}", where=where
        )
    try:
        return checkpoint.parse_body(signed_note.parse_note(note).text)
    except BadDataError as exc:
        raise BadDataError(f"not a signed checkpoint: {exc}", where=where) from exc


def trust_marks_from(rows: Iterable[tuple[object, object, object]]) -> dict[str, TrustMark]:
    """Check trust-mark rows; a malformed one is a corrupt store."""
    out: dict[str, TrustMark] = {}
    for pid, version, digest in rows:
        where = f"trust mark of {pid}"
        if not isinstance(pid, str) or not isinstance(digest, str) or len(digest) != 64:
            raise CorruptStoreError("stored trust mark row is malformed", where=where)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptStoreError(f"stored version {version!r} is not a version", where=where)
        out[pid] = TrustMark(pid, version, digest)
    return out
