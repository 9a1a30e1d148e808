"""Signing a record into an envelope and verifying one, as an operator does by hand.

Why this module exists: ``jcm-sync record sign`` and ``record verify`` work on single
files outside any node; what they decide (a record or an envelope to countersign, the
check that the partnership would accept the result, which endorsements count) is the
same trust logic the nodes run, so it lives here, over ``core.envelope`` and
``core.trust``, and the CLI only reads files and prints.

Rules:

1. A document with a ``payloadType`` member is an envelope and is countersigned; any
   other document is a record's JSON, decoded (and validated) and signed.
2. Nothing is handed out that the partnership would refuse: the result is verified
   under the trust root at ``now`` before it is returned.
3. An endorsement counts only if it verifies under the same root and is an
   ``endorsement`` record (``trust`` rule 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from jcm_sync.core import tabular
from jcm_sync.core.envelope import AnyPrivateKey, add_signature, open_envelope, sign_record
from jcm_sync.core.records import Record, decode_record
from jcm_sync.core.trust import TrustRoot, Verification, verify_record, with_endorsements
from jcm_sync.errors import BadDataError, RecordError


def is_envelope(data: bytes) -> bool:
    """Rule 1: an envelope, not a record's JSON."""
    return data.lstrip().startswith(b"{") and b'"payloadType"' in data


def sign_document(
    data: bytes, key: AnyPrivateKey | Sequence[AnyPrivateKey], root: TrustRoot, now: datetime
) -> Verification:
    """Sign a record (or countersign an envelope) with ``key``, or with each of several
    keys (an Ed25519 and an ML-DSA-44 one: a hybrid envelope, ADR 0033); the result
    verified under ``root`` at ``now`` (rules 1 and 2), its envelope bytes in ``raw``."""
    keys = list(key) if isinstance(key, Sequence) else [key]
    if is_envelope(data):
        open_envelope(data)
        envelope = data
        for k in keys:
            envelope = add_signature(envelope, k)
    else:
        envelope = sign_record(decode_authored(data), keys)
    return verify_record(root, envelope, now)


def decode_authored(data: bytes) -> Record:
    """A record written by hand, decoded strictly (``core.tabular`` rule 3): a member its
    kind does not have is refused, naming the closest known one, where a record received
    from a peer would only drop it (schema evolution)."""
    record = decode_record(data)  # a malformed or invalid record is refused first
    problems = tabular.unknown_members(msgspec.json.decode(data))
    if problems:
        raise RecordError(
            "; ".join(f"{p.column}: {p.reason}" for p in problems), where=problems[0].column
        )
    return record


def verify_endorsed(
    root: TrustRoot,
    envelope: bytes,
    endorsements: Sequence[bytes],
    now: datetime,
    received: datetime | None = None,
) -> Verification:
    """Verify an envelope and count the given endorsements of it (rule 3); a revoked key
    is judged at ``received`` (ADR 0018), now if None."""
    v = verify_record(root, envelope, now, received=received)
    checked = [verify_record(root, e, now, received=received) for e in endorsements]
    for e in checked:
        if e.kind != "endorsement":
            raise BadDataError(f"{e.kind} record given as an endorsement", where="--endorsement")
    return with_endorsements(v, checked)
