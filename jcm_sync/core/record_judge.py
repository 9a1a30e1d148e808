"""Many records judged under one trust root at one time, the authority decided once.

Why this module exists: ``trust.verify_record`` decides a record's authority from the
record alone: which nodes may sign its kind and side, each signing key's entry, role
and node, the author among the signers, the root's algorithm requirement. At ingest a
push of 500 records has a handful of distinct answers to those questions (one kind,
one author, one side, one signer), yet the decision was taken 500 times, about a fifth
of the hub's own Python per record (ADR 0057). A ``RecordJudge`` takes it once per
distinct question and checks per record only what depends on the record.

Rules:

1. A judge answers exactly what ``trust.verify_record(root, raw, now, skew=skew,
   verified=..., received=...)`` answers for the same envelope: an equal
   ``Verification``, or the same error (class, message, place). It never words a
   refusal of its own: whatever its quick path does not accept is handed to
   ``verify_record``, which judges the record from the start and raises its error.
2. What a judge reuses depends only on the record's kind, author and named side
   (``registry`` or ``party``) and its signers' key ids, under one root: the
   authorised nodes, each key's entry, role and node, the author among the signers,
   the algorithm requirement, the ``Signer`` tuple and the required nodes, and the
   signing keys' windows folded into one interval. It is decided once per judge, and
   a judge lives for one batch (no state outlives it; nothing is module-level).
3. What depends on the record is checked for every record: the root's expiry (a judge
   of an expired root hands every record to ``verify_record``), the payload type, the
   payload's decode and schema, the partnership, the claimed time against ``now`` and
   ``skew``, and trust rule 3 as one interval: the claimed time at or after the latest
   ``not_before`` of the signing keys and before the earliest ``not_after`` or
   revocation, and the time received before the earliest revocation. Each key passes
   ``trust.check_key_for_record`` exactly when the record passes these.
4. A record the judge accepts was always accepted by ``verify_record``; one it hands on
   is a refusal (the quick path's tests are ``verify_record``'s own conditions), so the
   hand-off, which opens the envelope again, is paid for refused records only. A
   payload that is not a record is refused by the judge's decode, the very call
   (``records.decode_record`` with the payload type's kind) ``verify_record`` makes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from jcm_sync.core.envelope import AnyPublicKey, VerifiedEnvelope, open_envelope
from jcm_sync.core.pq import check_algorithms
from jcm_sync.core.records import JC_KINDS, Record, decode_record, kind_of_payload_type
from jcm_sync.core.trust import (
    DEFAULT_SKEW,
    Signer,
    TrustRoot,
    Verification,
    authorised_nodes,
    verify_record,
)
from jcm_sync.errors import UntrustedError

__all__ = ["Decision", "RecordJudge"]

Decision = tuple[tuple[Signer, ...], frozenset[str], datetime, datetime, datetime | None]
"""What rule 2 reuses: the signers, the required nodes, the interval a record's claimed
time must fall in (from, before) and the earliest revocation of a signing key."""


class RecordJudge:
    """``verify_record`` for the records of one batch under ``root`` at ``now`` (rules 1-4)."""

    __slots__ = ("_decisions", "_latest", "_pubs", "now", "root", "skew")

    def __init__(self, root: TrustRoot, now: datetime, skew: timedelta = DEFAULT_SKEW) -> None:
        self.root = root
        self.now = now
        self.skew = skew
        # rule 3: an expired root gives no quick path (verify_record refuses it first)
        self._latest: datetime | None = now + skew if now < root.expires else None
        self._decisions: dict[tuple[object, ...], Decision | None] = {}
        self._pubs: dict[str, AnyPublicKey] = root.public_keys()

    def judge(
        self,
        raw: bytes,
        record_id: str,
        payload_type: str,
        payload: bytes,
        keyids: tuple[str, ...],
        received: datetime | None = None,
    ) -> Verification:
        """The verification of ``raw``, whose signatures by ``keyids`` (in the envelope's
        order) verified and whose payload type and payload are given, as received at
        ``received`` (None: ``now``); or ``verify_record``'s refusal of it."""
        latest = self._latest
        kind = kind_of_payload_type(payload_type)
        if latest is None or kind is None:
            return self._hand_on(raw, record_id, keyids, received)
        record = decode_record(payload, kind)  # verify_record's decode: the same error
        created = record.created
        if record.partnership != self.root.partnership or created > latest:
            return self._hand_on(raw, record_id, keyids, received)
        side = getattr(record, "registry", None) or getattr(record, "party", None)
        question = (kind, record.author, side, keyids)
        try:
            decision = self._decisions[question]
        except KeyError:
            decision = self._decisions[question] = self._decide(record, kind, keyids)
        if decision is None:
            return self._hand_on(raw, record_id, keyids, received)
        signers, required, since, before, revoked = decision
        if not since <= created < before or (
            revoked is not None and (self.now if received is None else received) >= revoked
        ):
            return self._hand_on(raw, record_id, keyids, received)
        return Verification(
            record_id=record_id,
            kind=kind,
            record=record,
            signers=signers,
            required_nodes=required,
            raw=raw,
        )

    def _decide(self, record: Record, kind: str, keyids: tuple[str, ...]) -> Decision | None:
        """Rule 2: the time-independent part of ``verify_record`` for this question, or
        None where it would refuse."""
        allowed = authorised_nodes(record)
        if record.author not in allowed:
            return None
        signers: list[Signer] = []
        since: datetime | None = None
        before: datetime | None = None
        revoked: datetime | None = None
        for keyid in keyids:
            entry = self.root.key(keyid)
            if entry is None or kind not in entry.roles or entry.node not in allowed:
                return None
            signers.append(Signer(keyid=entry.keyid, node=entry.node, algorithm=entry.algorithm))
            since = entry.not_before if since is None else max(since, entry.not_before)
            before = entry.not_after if before is None else min(before, entry.not_after)
            if entry.revoked_at is not None:
                before = min(before, entry.revoked_at)
                revoked = entry.revoked_at if revoked is None else min(revoked, entry.revoked_at)
        if since is None or before is None or record.author not in {s.node for s in signers}:
            return None
        try:
            check_algorithms(
                self.root.requirement(kind),
                kind,
                ((s.node, s.algorithm) for s in signers),
                self.root.version,
            )
        except UntrustedError:
            return None
        required = allowed if kind in JC_KINDS else frozenset({record.author})
        return tuple(signers), required, since, before, revoked

    def _hand_on(
        self, raw: bytes, record_id: str, keyids: tuple[str, ...], received: datetime | None
    ) -> Verification:
        """Rules 1 and 4: ``verify_record`` judges the record from the start."""
        pubs = self._pubs
        verified = VerifiedEnvelope(
            raw=raw, envelope=open_envelope(raw), signers=tuple(pubs[k] for k in keyids)
        )
        verified.__dict__["record_id"] = record_id  # the cached property, known already
        return verify_record(
            self.root, raw, self.now, skew=self.skew, verified=verified, received=received
        )
