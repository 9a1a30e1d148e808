"""A checkpoint's ML-DSA-44 lines judged offline, as the trust-root chain requires them.

Why this module exists: a root may require ``both`` algorithms for ``checkpoint``
(ADR 0033, 0036): each checkpoint then carries the log's ML-DSA-44 line beside its
Ed25519 one, and each witness cosigns with both. A running node refuses a checkpoint
that lacks one (``checkpoint_algorithms``); an auditor reading an evidence bundle or a
receipt years later must refuse it too, or the post-quantum option protects nothing
once Ed25519 can be forged. ``evidence_verify`` and ``receipts`` both judge here.

Rules:

1. The log's ML-DSA-44 line is tlog-cosignature's ``subtree/v1`` (type 0x06) of
   ``[0, size)`` under the log's origin, by an ML-DSA-44 checkpoint key of the log's node
   in some version of the chain. Every such line present must verify, whatever the root
   requires (a forged line refuses the checkpoint, never ignored: ``SignatureError``).
2. When the newest root of the chain requires ``both`` for ``checkpoint``:
   a. the checkpoint must carry a log ML-DSA-44 line by such a key not withdrawn before
      the checkpoint's newest entry was signed (``signed_after``, as for the Ed25519 line);
   b. every cosigner whose cosignature verified must have cosigned with both algorithms:
      ``cosignature/v1`` (type 0x04) and ML-DSA-44 (type 0x06) under its witness name.
   Either missing is ``AlgorithmRequiredError``, naming the root version, the log and
   what is missing.
3. The newest root decides, as it does for records (``evidence_verify`` rule 3): it keeps
   every key with its withdrawal, and a root that requires ``both`` requires it of the
   history it vouches for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from jcm_sync.core.cosignature import (
    ED25519_COSIGNATURE_TYPE,
    Cosignature,
    CosignatureVerifier,
    verify_cosignatures,
)
from jcm_sync.core.pq import ML_DSA_44_PUBLIC_KEY_SIZE, MLDSA44PublicKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import AlgorithmRequiredError
from jcm_sync.services.checkpoint_algorithms import pq_verifier
from jcm_sync.services.log_service import checkpoint_key_history
from jcm_sync.store import LogRef

__all__ = ["check_pq_lines", "log_pq_verifiers"]


def log_pq_verifiers(
    chain: Sequence[TrustRoot], log: LogRef, signed_after: datetime | None = None
) -> list[CosignatureVerifier]:
    """Rule 1: the ML-DSA-44 checkpoint keys of ``log``'s node in the chain, as verifiers
    of its line; with ``signed_after``, only those not withdrawn by then."""
    keys = checkpoint_key_history(chain, log).usable_after(signed_after)
    return [
        pq_verifier(log.origin, MLDSA44PublicKey.from_raw(k.public_key))
        for k in keys
        if len(k.public_key) == ML_DSA_44_PUBLIC_KEY_SIZE
    ]


def check_pq_lines(
    chain: Sequence[TrustRoot],
    log: LogRef,
    note: bytes,
    signed_after: datetime | None,
    cosignatures: Sequence[Cosignature],
    cosigners: Mapping[str, str],
) -> None:
    """Rules 1-3 for a checkpoint whose Ed25519 log line and cosignatures already
    verified (``cosignatures``, by witness name; ``cosigners``: witness name -> node)."""
    root = chain[-1]
    found = verify_cosignatures(note, log_pq_verifiers(chain, log))  # rule 1
    if root.requirement("checkpoint") != "both":
        return
    need = f"trust root version {root.version} requires both signatures for checkpoint"
    usable = {v.key_id for v in log_pq_verifiers(chain, log, signed_after)}
    if not any(c.key_id in usable for c in found):
        held = " usable when its newest entry was signed" if found else ""
        raise AlgorithmRequiredError(
            f"{need}; the checkpoint of {log.origin} at its size has no ML-DSA-44 log "
            f"signature by a checkpoint key of {log.node}{held}",
            where=log.origin,
        )
    types: dict[str, set[int]] = {}
    for c in cosignatures:
        types.setdefault(cosigners.get(c.name, c.name), set()).add(c.signature_type)
    for node, kinds in sorted(types.items()):
        if kinds == {ED25519_COSIGNATURE_TYPE}:
            lacking = "with Ed25519 only, no ML-DSA-44 cosignature (type 0x06)"
        elif ED25519_COSIGNATURE_TYPE not in kinds:
            lacking = "with ML-DSA-44 only, no Ed25519 cosignature (cosignature/v1)"
        else:
            continue
        raise AlgorithmRequiredError(
            f"{need}; {node} cosigned the checkpoint of {log.origin} {lacking}",
            where=log.origin,
        )
