"""A log's ML-DSA-44 signature on its own checkpoints, made and judged per the trust root.

Why this module exists: a checkpoint keeps its Ed25519 log signature (signed-note type
0x01, which the C2SP ecosystem requires) and, when the node has an ML-DSA-44 checkpoint
key, adds an ML-DSA-44 line. signed-note has no plain ML-DSA type for a log's own key, so
the line is tlog-cosignature's ``subtree/v1`` (type 0x06) of the subtree ``[0, size)``
under the log's own name, its origin (ADR 0031, 0036). Signing a checkpoint, serving one
and accepting a counterpart's all need the same two questions answered: which ML-DSA keys
may sign this log's checkpoints, and did the note carry what the root requires.

Rules:

1. The ML-DSA-44 line is signed over the checkpoint text only, at the signing time, under
   the origin, and added beside the Ed25519 line (``add_pq_line``); a held note that has it
   already (same name and key ID) is left as it is.
2. A checkpoint is accepted only with an Ed25519 line by a checkpoint key of its node.
   Every line of a known key, Ed25519 or ML-DSA-44, must verify (``open_note``'s rule:
   a forged part refuses the note). When the root requires ``both`` for ``checkpoint``,
   an ML-DSA-44 line by a checkpoint key of the node is required too
   (``AlgorithmRequiredError``).
3. ML-DSA-44 checkpoint keys are the node's checkpoint-role keys of 1,312 bytes; the
   Ed25519 ones (32 bytes) are the signed-note log keys (``ed25519_checkpoint_keys``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jcm_sync.core import note as signed_note
from jcm_sync.core.cosignature import CosignatureVerifier, cosign
from jcm_sync.core.pq import ML_DSA_44_PUBLIC_KEY_SIZE, MLDSA44PrivateKey, MLDSA44PublicKey
from jcm_sync.core.trust import KeyEntry, TrustRoot
from jcm_sync.errors import AlgorithmRequiredError, UnknownKeyError
from jcm_sync.store import LogRef

__all__ = [
    "add_pq_line",
    "check_log_algorithms",
    "ed25519_checkpoint_keys",
    "pq_checkpoint_verifiers",
    "pq_verifier",
]


def _is_pq(key: KeyEntry) -> bool:
    return len(key.public_key) == ML_DSA_44_PUBLIC_KEY_SIZE


def ed25519_checkpoint_keys(keys: Sequence[KeyEntry]) -> list[KeyEntry]:
    """Rule 3: the Ed25519 keys among ``keys`` (the signed-note log keys)."""
    return [k for k in keys if not _is_pq(k)]


def pq_verifier(origin: str, public: MLDSA44PublicKey) -> CosignatureVerifier:
    """The verifier of a log's ML-DSA-44 line: type 0x06 under the origin (rule 1)."""
    return CosignatureVerifier(origin, public.key)


def pq_checkpoint_verifiers(
    root: TrustRoot, log: LogRef, at: datetime
) -> list[CosignatureVerifier]:
    """Rule 3: the ML-DSA-44 checkpoint keys of ``log``'s node usable at ``at``."""
    return [
        pq_verifier(log.origin, MLDSA44PublicKey.from_raw(k.public_key))
        for k in root.keys_for(log.node, "checkpoint", at)
        if _is_pq(k)
    ]


def add_pq_line(note: bytes, origin: str, key: MLDSA44PrivateKey, now: datetime) -> bytes:
    """Rule 1: ``note`` with the log's ML-DSA-44 line of ``key`` (unchanged if present)."""
    parsed = signed_note.parse_note(note)
    key_id = pq_verifier(origin, key.public).key_id
    if any(s.name == origin and s.key_id == key_id for s in parsed.signatures):
        return note
    line = cosign(parsed.text, origin, key.key, int(now.timestamp()))
    return signed_note.add_signature_lines(note, [line])


def check_log_algorithms(
    root: TrustRoot,
    log: LogRef,
    note: bytes,
    ed25519: Sequence[signed_note.Verifier],
    pq: Sequence[CosignatureVerifier],
) -> None:
    """Rule 2, on a note ``open_note`` already opened with ``ed25519`` and ``pq`` (so
    every line of theirs present verified): the Ed25519 line, and the ML-DSA-44 one when
    the root requires ``both``."""
    present = {s.key_id for s in signed_note.parse_note(note).signatures if s.name == log.origin}
    if not present & {v.key_id for v in ed25519}:
        raise UnknownKeyError(
            f"the checkpoint of {log.origin} carries no Ed25519 log signature (type 0x01) "
            f"by a checkpoint key of {log.node}; an ML-DSA-44 line alone is not one",
            where=log.origin,
        )
    if root.requirement("checkpoint") == "both" and not present & {v.key_id for v in pq}:
        raise AlgorithmRequiredError(
            f"trust root version {root.version} requires both signatures for checkpoint; "
            f"the checkpoint of {log.origin} has no ML-DSA-44 line by a checkpoint key "
            f"of {log.node}",
            where=log.origin,
        )
