"""Offline receipts: a record's C2SP tlog-proof, written from a store, checked from files.

Why this module exists: every accepted record must be provable, years later and with no
node, to be in its log at a position both sides saw (issue 14). ``core.tlog_proof`` is
the format; this module decides what goes into a receipt (which checkpoint, which
cosignatures, the entry's bytes) and how a receipt is judged against a trust-root chain
with nothing else (``jcm-sync receipt get`` and ``receipt verify``).

Rules (docs/adr/0034-evidence-bundles-and-offline-receipts.md):

1. **The checkpoint.** A receipt proves inclusion in the newest stored checkpoint of the
   record's log that the counterpart cosigned and that covers the record; if none is
   cosigned, in the newest that covers it. A record no checkpoint covers yet gets no
   receipt (``NotFoundError``: sign a checkpoint, or wait for the next push). The
   cosignatures kept for that checkpoint (ADR 0032) are attached to its note.
2. **The entry.** The receipt carries the entry's envelope bytes in tlog-proof's
   ``extra`` line, so the file alone is enough. ``extra`` is not authenticated, and
   need not be: the verifier hashes it and the inclusion proof binds the hash to the
   signed checkpoint. An entry given separately (``--entry``) is used instead, and a
   receipt whose ``extra`` differs from it is refused.
3. **Judging.** ``verify_receipt_file`` takes the trust-root chain (verified as a node
   does, at ``now``) and nothing else. The checkpoint's origin must be one of the
   partnership's two logs; its log signature must be by a checkpoint key of that log's
   node held by some version of the chain and not withdrawn before the record was
   signed; the counterpart's cosignatures (its checkpoint keys, under its witness name)
   must verify when present; the checkpoint must meet the cosignature quorum the newest
   root states for the log (``cosign_policy``, ADR 0035), and with ``require_cosigned``
   carry the counterpart's cosignature even under quorum 0; the inclusion proof must
   hold; and the entry must verify as a record of that log's node.
4. **Revocation by witnessed time.** Under a quorum, the record is judged as received
   at the instant the checkpoint became agreed (``cosign_policy.agreed_at``): a key
   revoked after that time does not make it invalid, a key revoked before does (trust
   rule 3). Under quorum 0 (the fallback, ADR 0035), at the earliest time the
   counterpart cosigned it when it did, else ``now``.
5. **ML-DSA-44** (``pq_checkpoints``): the log's ML-DSA-44 line must verify when present;
   where the root requires ``both`` for ``checkpoint``, a receipt whose checkpoint lacks
   it, or whose cosigner cosigned with one algorithm only, is refused
   (``AlgorithmRequiredError``). The log signature is always the Ed25519 line (type
   0x01): ML-DSA-44 keys of the chain are never taken for signed-note log keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from jcm_sync.core import tlog_proof
from jcm_sync.core.checkpoint import open_checkpoint
from jcm_sync.core.cosign_policy import agreed_at
from jcm_sync.core.envelope import PublicKey
from jcm_sync.core.note import Verifier, add_signature_lines, parse_note
from jcm_sync.core.trust import (
    DEFAULT_SKEW,
    KeyEntry,
    TrustRoot,
    Verification,
    verify_chain_history,
)
from jcm_sync.errors import BadDataError, NotFoundError, WrongOriginError
from jcm_sync.services.checkpoint_algorithms import ed25519_checkpoint_keys
from jcm_sync.services.evidence import witness_name
from jcm_sync.services.evidence_verify import counterpart_witnesses, verify_under_chain
from jcm_sync.services.log_service import checkpoint_key_history, prove_inclusion
from jcm_sync.services.pq_checkpoints import check_pq_lines
from jcm_sync.store import LogRef, Store, StoredCheckpoint

__all__ = ["Receipt", "ReceiptCheck", "get_receipt", "verify_receipt_file"]


@dataclass(frozen=True)
class Receipt:
    """A receipt made by ``get_receipt``: the file's bytes and what it states."""

    data: bytes
    record_id: str
    origin: str
    index: int
    size: int
    cosigners: tuple[str, ...]


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt that verified (rule 3): the record, where it is, who saw it and when."""

    record_id: str
    kind: str
    author: str
    origin: str
    index: int
    size: int
    cosigners: tuple[tuple[str, datetime], ...]
    received: datetime | None


async def _checkpoint(store: Store, log: LogRef, index: int) -> StoredCheckpoint:
    """Rule 1: the newest cosigned checkpoint covering ``index``, else the newest."""
    covering = [cp for cp in await store.checkpoints(log) if cp.size > index]
    if not covering:
        raise NotFoundError(
            f"entry {index} of {log.origin} is in no checkpoint yet; a receipt needs one",
            where=log.origin,
        )
    covering.sort(key=lambda cp: cp.size, reverse=True)
    for cp in covering:
        if await store.cosignatures(log, cp.size):
            return cp
    return covering[0]


async def get_receipt(store: Store, record_id: str, partnerships: set[str]) -> Receipt:
    """The tlog-proof receipt of a record the store holds (rules 1 and 2)."""
    rec = await store.record(record_id)
    if rec.partnership not in partnerships:
        raise NotFoundError(f"record {record_id[:16]} is of {rec.partnership}, not served here")
    cp = await _checkpoint(store, rec.log, rec.index)
    cosigned = await store.cosignatures(rec.log, cp.size)
    note = add_signature_lines(cp.note, cosigned) if cosigned else cp.note
    proof = await prove_inclusion(store, rec.log, rec.index, cp.size)
    entry = await store.entry(rec.log, rec.index)
    data = tlog_proof.format_proof(
        tlog_proof.TlogProof(rec.index, tuple(proof.path), note, extra=entry.envelope)
    )
    names = tuple(dict.fromkeys(s.name for s in cosigned))
    return Receipt(data, rec.record_id, rec.log.origin, rec.index, cp.size, names)


def _log_of(origin: str, root: TrustRoot) -> LogRef:
    """Rule 3: the partnership's log the origin names (``<prefix>/<pid>/<node>``)."""
    for node in ("JP", root.partner):
        if origin.endswith(f"/{root.partnership}/{node}"):
            return LogRef(root.partnership, node, origin)
    raise WrongOriginError(
        f"the receipt's checkpoint is of log {origin!r}, not of a log of {root.partnership}"
    )


def verify_receipt_file(
    receipt: bytes,
    trust: list[bytes],
    now: datetime,
    *,
    entry: bytes | None = None,
    require_cosigned: bool = False,
) -> ReceiptCheck:
    """Check a receipt with the trust-root chain alone (rules 2-4), or raise why not."""
    chain = [t.root for t in verify_chain_history(trust, now)]
    root = chain[-1]
    proof = tlog_proof.parse_proof(receipt)
    if entry is not None and proof.extra is not None and proof.extra != entry:
        raise BadDataError("the receipt's extra data is not the entry given")
    entry = entry if entry is not None else proof.extra
    if entry is None:
        raise BadDataError("the receipt holds no entry (no extra line); give it with --entry")
    body = parse_note(proof.note).text
    log = _log_of(body.split(b"\n", 1)[0].decode("utf-8", "replace"), root)
    counterpart = root.partner if log.node == "JP" else "JP"
    keys = checkpoint_key_history(chain, log)
    # a first pass with every key of the chain: the record's time is needed to narrow them
    everyone = _log_verifiers(ed25519_checkpoint_keys(keys.keys), log)
    prefix = log.origin.removesuffix(f"/{log.node}")
    witnesses = counterpart_witnesses(
        chain, log, LogRef(log.partnership, counterpart, f"{prefix}/{counterpart}")
    )
    policy = root.cosign_quorum.get(log.node)
    cosigners = policy.cosigners if policy is not None else (counterpart,)
    names = {witness_name(log.origin, log.partnership, log.node, n): n for n in cosigners}
    quorum: tlog_proof.Quorum = None
    if policy is not None:  # in a partnership its only cosigner is the counterpart
        quorum = tlog_proof.Group(policy.threshold, tuple(names))
    elif require_cosigned:
        quorum = next(iter(names))
    checked = tlog_proof.verify_receipt(
        receipt, entry, everyone, witnesses, quorum, origin=log.origin
    )
    times = [(names.get(c.name, ""), datetime.fromtimestamp(c.timestamp, UTC))
             for c in checked.cosignatures]  # fmt: skip
    if policy is not None:  # rule 4
        received = agreed_at(policy, times)
    else:
        received = min((t for _, t in times), default=None)
    record = verify_under_chain(chain, entry, now, received or now)
    if record.record.author != log.node:
        raise WrongOriginError(
            f"the entry is a record of {record.record.author}, not of {log.node}'s log"
        )
    signed_after = record.record.created - DEFAULT_SKEW
    usable = ed25519_checkpoint_keys(keys.usable_after(signed_after))
    open_checkpoint(proof.note, _log_verifiers(usable, log), origin=log.origin)  # rule 3
    check_pq_lines(chain, log, proof.note, signed_after, checked.cosignatures, names)  # rule 5
    return _result(record, checked, received)


def _log_verifiers(keys: list[KeyEntry], log: LogRef) -> list[Verifier]:
    """The signed-note verifiers of a log's Ed25519 checkpoint keys."""
    return [Verifier(log.origin, PublicKey.from_raw(k.public_key).key) for k in keys]


def _result(
    record: Verification, checked: tlog_proof.VerifiedReceipt, received: datetime | None
) -> ReceiptCheck:
    cosigners = tuple(
        (c.name, datetime.fromtimestamp(c.timestamp, UTC)) for c in checked.cosignatures
    )
    return ReceiptCheck(
        record_id=record.record_id,
        kind=record.kind,
        author=record.record.author,
        origin=checked.checkpoint.origin,
        index=checked.index,
        size=checked.checkpoint.size,
        cosigners=cosigners,
        received=received,
    )
