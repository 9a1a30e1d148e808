"""A node's logs over a store: append, sign checkpoints, serve proofs, audit.

Why this module exists: the store keeps rows consistent; someone must decide what goes
into a node's own log (records verified under the partnership's trust root), when a
checkpoint is signed and with which key, and how a whole log is re-checked from its
entries. The agent, the hub and the CLI (``jcm-sync log ...``) all do it through here.

Rules:

1. Only records that verify under the trust root at the service's clock, authored by the
   log's node in the log's partnership, enter the log (the store enforces the last part).
   A record is judged as received at that clock; an entry already stored is judged as
   received when it was appended (``RecordVerifier``; trust rule 3, ADR 0018).
2. A checkpoint is signed only by a key the trust root gives the ``checkpoint`` role for
   the log's node, and never when it is inconsistent with the last checkpoint stored: the
   guard proves consistency from the store's tree and checks it with
   ``checkpoint.check_append_only`` before signing (C2SP tlog-checkpoint, "Signatures").
   An ML-DSA-44 checkpoint key adds its line beside (``checkpoint_algorithms``, ADR 0036).
3. A proof is checked against the root before it is handed out, so a store whose nodes
   were altered (right length, wrong bytes) is reported, not believed.
4. ``verify_log`` trusts no stored summary: it recomputes every leaf, node and root from
   the entries, compares them with what is stored and checks every stored checkpoint
   (and, given verifiers, its signature). It reports all it finds rather than the first.
5. Rotation keeps history verifiable (docs/adr/0012-clean-refusals-and-daemon-lock.md).
   A checkpoint carries no signed time, but it cannot predate its newest entry, whose
   record is signed with its ``created`` time. So an old checkpoint is accepted when a
   checkpoint key of the log's node in any version of the trust-root chain signed it
   and that key was not expired or revoked at that time (``CheckpointKeys``); a key no
   version held is refused by name. A held checkpoint whose signing key has since been
   withdrawn is served cosigned with the current key (``LogService``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from jcm_sync.core import checkpoint, merkle, subtrees
from jcm_sync.core import note as signed_note
from jcm_sync.core.envelope import PrivateKey, PublicKey, open_envelope, verify_envelope
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import DEFAULT_SKEW, KeyEntry, TrustRoot, Verification, verify_record
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    CorruptStoreError,
    ForkError,
    JcmSyncError,
    UnknownKeyError,
)
from jcm_sync.services.checkpoint_algorithms import (
    add_pq_line,
    check_log_algorithms,
    ed25519_checkpoint_keys,
    pq_checkpoint_verifiers,
)
from jcm_sync.store import AppendResult, Entry, LogRef, Store, StoredCheckpoint, Verify

__all__ = [
    "CheckpointKeys",
    "ConsistencyProof",
    "EntryRow",
    "InclusionProof",
    "LogAudit",
    "LogService",
    "RecordVerifier",
    "accept_checkpoint",
    "append_checked",
    "checkpoint_key_history",
    "checkpoint_verifiers",
    "list_entries",
    "open_log_checkpoint",
    "prove_consistency",
    "prove_inclusion",
    "prove_record",
    "record_verifier",
    "verify_log",
]

AUDIT_CHUNK = 2000
"""Entries read per query while auditing."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RecordVerifier:
    """Rule 1's verify function: a record's signatures, schema and authority at ``now``.

    Called on bytes (as ``store.Verify``), it judges a record as received ``now``
    unless ``received`` gives the time this node first received it (by record id);
    ``stored`` judges an entry a store holds as received when it was appended, so a
    key revoked since never makes it unverifiable (trust rule 3, ADR 0018); with
    ``witnessed`` set (a log whose trust root states a cosignature quorum, ADR 0035), as
    received when a checkpoint including it became agreed, or ``now`` if none did.
    """

    __slots__ = ("now", "received", "root", "witnessed")

    def __init__(
        self, root: TrustRoot, now: datetime, received: Mapping[str, datetime] | None = None
    ) -> None:
        self.root = root
        self.now = now
        self.received = received or {}
        self.witnessed: Callable[[Entry], datetime | None] | None = None

    def __call__(self, raw: bytes) -> Verification:
        if not self.received or self.root.expires <= self.now:  # the root's expiry first
            return verify_record(self.root, raw, self.now)
        # the record id is hashed once, by the envelope verify_record then reuses
        envelope = verify_envelope(raw, self.root.public_keys())
        at = self.received.get(envelope.record_id)
        return verify_record(self.root, raw, self.now, verified=envelope, received=at)

    def stored(self, entry: Entry) -> Verification:
        at = entry.appended_at if self.witnessed is None else self.witnessed(entry)
        return verify_record(self.root, entry.envelope, self.now, received=at)


def record_verifier(
    root: TrustRoot, now: datetime, received: Mapping[str, datetime] | None = None
) -> RecordVerifier:
    """Rule 1's verify function (``RecordVerifier``)."""
    return RecordVerifier(root, now, received)


def checkpoint_verifiers(root: TrustRoot, log: LogRef, at: datetime) -> list[signed_note.Verifier]:
    """The signed-note verifiers of ``log``: its node's Ed25519 checkpoint keys, named by the
    origin (its ML-DSA-44 ones: ``checkpoint_algorithms.pq_checkpoint_verifiers``)."""
    keys = ed25519_checkpoint_keys(root.keys_for(log.node, "checkpoint", at))
    return [_verifier(log, k) for k in keys]


def open_log_checkpoint(
    root: TrustRoot, log: LogRef, note: bytes, at: datetime
) -> checkpoint.VerifiedCheckpoint:
    """A checkpoint of ``log`` opened with every checkpoint key of its node, Ed25519 and
    ML-DSA-44, and held to the root's ``checkpoint`` requirement (ADR 0036)."""
    ed, pq = checkpoint_verifiers(root, log, at), pq_checkpoint_verifiers(root, log, at)
    opened = checkpoint.open_checkpoint(note, [*ed, *pq], origin=log.origin)
    check_log_algorithms(root, log, note, ed, pq)
    return opened


def _verifier(log: LogRef, key: KeyEntry) -> signed_note.Verifier:
    return signed_note.Verifier(log.origin, PublicKey.from_raw(key.public_key).key)


def _withdrawn_at(key: KeyEntry) -> datetime:
    """When a key stops being usable: its expiry, or its revocation if earlier."""
    if key.revoked_at is not None and key.revoked_at < key.not_after:
        return key.revoked_at
    return key.not_after


@dataclass(frozen=True)
class CheckpointKeys:
    """Every checkpoint key a trust-root chain ever gave a log's node (rule 5); the
    Ed25519 ones open notes, ML-DSA-44 ones (witnesses' keys too) are kept for callers.

    Each key is taken from the newest version that lists it, so a later revocation
    counts. ``versions`` is the (first, last) version of the chain, for messages.
    """

    log: LogRef
    keys: tuple[KeyEntry, ...]
    versions: tuple[int, int]

    def usable_after(self, t: datetime | None) -> list[KeyEntry]:
        """Keys not yet withdrawn at ``t`` (all of them when ``t`` is None)."""
        return [k for k in self.keys if t is None or _withdrawn_at(k) > t]

    def open(self, note: bytes, signed_after: datetime | None) -> checkpoint.VerifiedCheckpoint:
        """Open a checkpoint that cannot have been signed before ``signed_after``.

        Accepted when a key of the chain that was not yet expired or revoked at that
        time signed it; otherwise an ``UnknownKeyError`` says which case it is: a key
        of the chain withdrawn before then, or a key no version of the chain held.
        """
        usable = [
            _verifier(self.log, k) for k in ed25519_checkpoint_keys(self.usable_after(signed_after))
        ]
        try:
            return checkpoint.open_checkpoint(note, usable, origin=self.log.origin)
        except UnknownKeyError:
            pass
        every = {_verifier(self.log, k).key_id: k for k in ed25519_checkpoint_keys(self.keys)}
        try:
            opened = signed_note.open_note(note, [_verifier(self.log, k) for k in every.values()])
        except UnknownKeyError:  # replaced by one naming the chain's versions and signers
            first, last = self.versions
            span = f"version {first}" if first == last else f"versions {first} to {last}"
            signers = ", ".join(s.key for s in signed_note.parse_note(note).signatures)
            raise UnknownKeyError(
                f"signed by no checkpoint key of {self.log.node} in trust root {span} "
                f"(signed by {signers or 'nobody'})"
            ) from None
        ids = {sig.key_id for sig in opened.verified}
        withdrawn = [every[i] for i in ids if i in every]
        assert signed_after is not None  # with no time, every key of the chain is usable
        reasons = "; ".join(
            f"key {k.keyid[:16]} of {k.node} "
            + (f"was revoked at {k.revoked_at.isoformat()}" if k.revoked_at and
               k.revoked_at <= k.not_after else f"expired at {k.not_after.isoformat()}")
            for k in withdrawn
        )  # fmt: skip
        raise UnknownKeyError(
            f"signed only by withdrawn keys: {reasons}, before the checkpoint's newest "
            f"entry was signed ({signed_after.isoformat()})"
        )


def checkpoint_key_history(roots: Sequence[TrustRoot], log: LogRef) -> CheckpointKeys:
    """The checkpoint keys of ``log``'s node in every version of a chain (oldest first)."""
    if not roots:
        raise ValueError("no trust root given")
    newest: dict[str, KeyEntry] = {}
    for root in roots:
        for k in root.keys:
            if k.node == log.node and "checkpoint" in k.roles:
                newest[k.keyid] = k
    return CheckpointKeys(log, tuple(newest.values()), (roots[0].version, roots[-1].version))


class _Created(msgspec.Struct):
    created: datetime


_created_decoder = msgspec.json.Decoder(_Created)


def _signed_at(raw: bytes) -> datetime | None:
    """The ``created`` time of an envelope's record (None if it cannot be read)."""
    try:
        return _created_decoder.decode(open_envelope(raw).payload).created
    except (JcmSyncError, msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``index`` with ``leaf_hash`` is in the tree of ``size`` with ``root``."""

    index: int
    size: int
    leaf_hash: bytes
    root: bytes
    path: list[bytes]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree of ``new_size`` (``new_root``) extends that of ``old_size`` (``old_root``)."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: list[bytes]


async def prove_inclusion(
    store: Store, log: LogRef, index: int, size: int | None = None
) -> InclusionProof:
    """An inclusion proof from stored nodes, checked before it is returned (rule 3)."""
    known: bytes | None = None  # the head's root is the root at its size: no second read
    if size is None:
        head = await store.tree_head(log)
        size, known = head.size, head.root
    path = await store.inclusion_proof(log, index, size)
    root = known if known is not None else await store.root_at(log, size)
    leaf = (await store.tree_nodes(log, [(0, index)]))[(0, index)]
    if not merkle.verify_inclusion(leaf, index, size, path, root):
        raise CorruptStoreError(
            f"the stored tree nodes give no valid inclusion proof of entry {index} "
            f"in the tree of size {size}",
            where=log.origin,
        )
    return InclusionProof(index, size, leaf, root, path)


async def prove_record(
    store: Store, log: LogRef, record_id: str, size: int | None = None
) -> InclusionProof:
    """``prove_inclusion`` of a record by its id; ``BadDataError`` if it is in another log."""
    rec = await store.record(record_id)
    if rec.log != log:
        raise BadDataError(f"record {record_id[:16]} is in {rec.log.origin}, not this log")
    return await prove_inclusion(store, log, rec.index, size)


async def prove_consistency(
    store: Store, log: LogRef, old_size: int, new_size: int | None = None
) -> ConsistencyProof:
    """A consistency proof from stored nodes, checked before it is returned (rule 3)."""
    known: bytes | None = None  # the head's root is the root at its size: no second read
    if new_size is None:
        head = await store.tree_head(log)
        new_size, known = head.size, head.root
    path = await store.consistency_proof(log, old_size, new_size)
    old_root = await store.root_at(log, old_size)
    new_root = known if known is not None else await store.root_at(log, new_size)
    if not merkle.verify_consistency(old_size, new_size, old_root, new_root, path):
        raise CorruptStoreError(
            f"the stored tree nodes give no valid consistency proof from size {old_size} "
            f"to {new_size}",
            where=log.origin,
        )
    return ConsistencyProof(old_size, new_size, old_root, new_root, path)


async def accept_checkpoint(
    store: Store, log: LogRef, note: bytes, verifiers: Sequence[signed_note.Verifier]
) -> StoredCheckpoint:
    """Store a counterpart's checkpoint of ``log`` once its signature verifies.

    The store then refuses it unless it matches the replica's own tree at that size,
    which also makes it consistent with every checkpoint accepted before.
    """
    checkpoint.open_checkpoint(note, verifiers, origin=log.origin)
    return await store.put_checkpoint(log, note)


class LogService:
    """A node's own log in one partnership: append, checkpoint, prove (see module rules)."""

    def __init__(
        self,
        store: Store,
        log: LogRef,
        *,
        root: TrustRoot,
        checkpoint_key: PrivateKey,
        checkpoint_pq: MLDSA44PrivateKey | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.log = log
        self.root = root
        self._key = checkpoint_key
        #: adds the log's ML-DSA-44 line to each checkpoint (ADR 0036)
        self._pq = checkpoint_pq
        self._clock = clock
        self._lock = asyncio.Lock()

    def verifier(self) -> Verify:
        """The verify function of rule 1, at the service's clock."""
        return record_verifier(self.root, self._clock())

    def _check_key(self) -> None:
        """Rule 2: the checkpoint key must be one the trust root lists for this log."""
        usable = self.root.keys_for(self.log.node, "checkpoint", self._clock())
        for key in (self._key, self._pq):
            if key is not None and not any(k.public_key == key.public.raw for k in usable):
                raise AuthorityError(
                    f"{key.algorithm} key {key.key_id[:16]} is not a usable checkpoint key "
                    f"of {self.log.node} in the trust root of {self.root.partnership}",
                    where=self.log.origin,
                )

    def vkey(self) -> str:
        """The signed-note verifier key of this log's checkpoints."""
        return signed_note.vkey(self.log.origin, self._key.public.key)

    async def append(self, envelopes: Sequence[bytes], *, sign: bool = True) -> AppendResult:
        """Verify and append records at the end of the log, then sign a checkpoint."""
        return await self._append(envelopes, self.verifier(), sign)

    async def append_verified(
        self, verified: Sequence[Verification], *, sign: bool = True
    ) -> AppendResult:
        """``append`` for records this service's ``verifier`` already verified (each
        with its envelope bytes): the store takes those results instead of verifying
        and decoding every envelope again."""
        by_bytes = {v.raw: v for v in verified}
        return await self._append([v.raw for v in verified], by_bytes.__getitem__, sign)

    async def _append(self, envelopes: Sequence[bytes], verify: Verify, sign: bool) -> AppendResult:
        async with self._lock:
            result = await self.store.append_entries(self.log, None, envelopes, verify)
            if sign:
                await self._sign_locked()
        return result

    async def sign_checkpoint(self) -> StoredCheckpoint:
        """Sign and store a checkpoint of the current tree (or return the one held)."""
        async with self._lock:
            return await self._sign_locked()

    async def _sign_locked(self) -> StoredCheckpoint:
        self._check_key()
        await self.store.ensure_log(self.log)
        head = await self.store.tree_head(self.log)
        new = checkpoint.Checkpoint(self.log.origin, head.size, head.root)
        latest = await self.store.latest_checkpoint(self.log)
        if latest is not None:
            previous = checkpoint.Checkpoint(self.log.origin, latest.size, latest.root)
            if latest.size > head.size:
                raise ForkError(
                    f"a checkpoint of size {latest.size} is stored, but the tree has only "
                    f"{head.size} entries",
                    where=self.log.origin,
                )
            proof = await self.store.consistency_proof(self.log, latest.size, head.size)
            checkpoint.check_append_only(previous, new, proof)
            if latest.size == head.size:
                return self._current(latest)
        note = checkpoint.sign_checkpoint(new, self._key.key)
        if self._pq is not None:
            note = add_pq_line(note, self.log.origin, self._pq, self._clock())
        return await self.store.put_checkpoint(self.log, note)

    def _current(self, held: StoredCheckpoint) -> StoredCheckpoint:
        """The held checkpoint, cosigned with the current key if a rotation withdrew the key
        that signed it (rule 5): peers verify with today's keys, and the store keeps the
        first note of a size, so re-signing alone would change nothing they see."""
        verifiers = checkpoint_verifiers(self.root, self.log, self._clock())
        note = held.note
        try:
            checkpoint.open_checkpoint(note, verifiers, origin=self.log.origin)
        except UnknownKeyError:
            note = signed_note.add_signature(note, self.log.origin, self._key.key)
        if self._pq is not None:  # held from before the node had its ML-DSA-44 key
            note = add_pq_line(note, self.log.origin, self._pq, self._clock())
        return held if note == held.note else StoredCheckpoint(held.size, held.root, note)

    async def prove_inclusion(self, index: int, size: int | None = None) -> InclusionProof:
        return await prove_inclusion(self.store, self.log, index, size)

    async def prove_record(self, record_id: str, size: int | None = None) -> InclusionProof:
        """Inclusion proof of a record by its id."""
        return await prove_record(self.store, self.log, record_id, size)

    async def prove_consistency(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        return await prove_consistency(self.store, self.log, old_size, new_size)


async def append_checked(
    store: Store,
    log: LogRef,
    envelopes: Sequence[bytes],
    *,
    root: TrustRoot,
    now: datetime,
    checkpoint_key: PrivateKey | None = None,
) -> AppendResult:
    """Verify envelopes under ``root`` at ``now`` and append them to any log of a store,
    then sign a checkpoint if a key is given (``jcm-sync log append`` on a store without
    its node: a node's own log is written by ``own_log.append_own``)."""
    if checkpoint_key is None:
        return await store.append_entries(log, None, envelopes, record_verifier(root, now))
    service = LogService(store, log, root=root, checkpoint_key=checkpoint_key, clock=lambda: now)
    return await service.append(envelopes)


@dataclass(frozen=True, slots=True)
class EntryRow:
    """What ``jcm-sync log show`` lists of an entry."""

    index: int
    record_id: str
    kind: str
    key: str
    bytes: int
    appended_at: datetime


async def list_entries(store: Store, log: LogRef, start: int, end: int) -> list[EntryRow]:
    """The entries ``start`` to ``end`` (exclusive) of ``log`` with their records' index."""
    rows = []
    for e in await store.entries(log, start, end):
        rec = await store.record(e.record_id)
        rows.append(
            EntryRow(e.index, e.record_id, rec.kind, rec.key, len(e.envelope), e.appended_at)
        )
    return rows


# --- auditing -----------------------------------------------------------------------


@dataclass
class LogAudit:
    """What ``verify_log`` found: the recomputed size and root, and every problem."""

    log: LogRef
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    entries_checked: int = 0
    checkpoints_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_log(
    store: Store,
    log: LogRef,
    *,
    verify: Verify | None = None,
    verifiers: Sequence[signed_note.Verifier] | None = None,
    keys: CheckpointKeys | None = None,
    skew: timedelta = DEFAULT_SKEW,
    chunk: int = AUDIT_CHUNK,
) -> LogAudit:
    """Recompute ``log`` from its entries and compare with everything stored (rule 4).

    ``verify`` re-verifies every envelope (e.g. under the current trust root); a
    ``RecordVerifier`` judges each entry as received when it was appended, so a key
    revoked after that does not refuse it (ADR 0018);
    ``verifiers`` checks every stored checkpoint's signature against fixed keys;
    ``keys`` (from ``checkpoint_key_history``) instead judges each checkpoint by the
    keys of the whole chain that were not yet withdrawn when the checkpoint's newest
    entry was signed (its record's ``created``, less ``skew``), so the checkpoints
    signed before a rotation stay verifiable and a key never in the chain is named.
    """
    audit = LogAudit(log)
    head = await store.tree_head(log)
    stored_cps = await store.checkpoints(log)
    by_size = {cp.size: cp for cp in stored_cps}
    frontier = subtrees.Frontier.empty()

    def check_checkpoint(size: int, root: bytes, newest: bytes | None = None) -> None:
        cp = by_size.get(size)
        if cp is None:
            return
        audit.checkpoints_checked += 1
        where = f"checkpoint {size}"
        try:
            body = checkpoint.parse_body(signed_note.parse_note(cp.note).text)
            if verifiers is not None:
                checkpoint.open_checkpoint(cp.note, verifiers, origin=log.origin)
            if keys is not None:
                signed = None if newest is None else _signed_at(newest)
                keys.open(cp.note, None if signed is None else signed - skew)
        except JcmSyncError as exc:
            audit.problems.append(f"{where}: {exc}")
            return
        if body.origin != log.origin:
            audit.problems.append(f"{where}: note is for origin {body.origin!r}")
        if body.size != size or body.root_hash != cp.root:
            audit.problems.append(f"{where}: note says size {body.size}, not the stored row")
        if cp.root != root:
            audit.problems.append(f"{where}: root is not the root recomputed from the entries")

    check_checkpoint(0, merkle.EMPTY_ROOT)
    for cp in stored_cps:
        if cp.size > head.size:
            audit.problems.append(f"checkpoint {cp.size}: beyond the log's size {head.size}")
    try:
        for start in range(0, head.size, chunk):
            entries = await store.entries(log, start, min(start + chunk, head.size))
            created: dict[tuple[int, int], bytes] = {}
            for e in entries:
                if verify is not None:
                    try:
                        if isinstance(verify, RecordVerifier):
                            verify.stored(e)  # as received when appended (ADR 0018)
                        else:
                            verify(e.envelope)
                    except JcmSyncError as exc:
                        audit.problems.append(f"entry {e.index}: does not verify: {exc}")
                frontier, nodes = frontier.append(e.leaf_hash)
                created.update({(n.level, n.index): n.hash for n in nodes})
                check_checkpoint(frontier.size, frontier.root(), e.envelope)
            stored = await store.tree_nodes(log, list(created))
            for coord, h in created.items():
                if stored[coord] != h:
                    audit.problems.append(
                        f"node (level {coord[0]}, index {coord[1]}): stored hash is not the "
                        "hash recomputed from the entries"
                    )
            audit.entries_checked += len(entries)
    except JcmSyncError as exc:
        audit.problems.append(f"stopped after {audit.entries_checked} entries: {exc}")
        return audit
    audit.size, audit.root = frontier.size, frontier.root()
    if audit.root != head.root:
        audit.problems.append(
            f"head: the stored root of size {head.size} is not the root recomputed from the entries"
        )
    return audit
