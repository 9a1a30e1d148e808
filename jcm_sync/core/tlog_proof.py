"""C2SP tlog-proof: an offline receipt that an entry is in a log, and who saw that log.

Why this module exists
----------------------
Every accepted record gets a receipt (issue 14) that a third party can check years later with
files alone: the entry's index, its inclusion proof, and the log's checkpoint with the
counterpart's cosignatures. c2sp.org/tlog-proof defines that file, so a receipt we write is
one any C2SP tool can read and check, and we read theirs. The trust policy that says which
log keys and how many witnesses are needed follows c2sp.org/tlog-policy (its quorum model,
not its file syntax).

It is pure: bytes and keys in, values out. No I/O, no clock, no store.

Rules
-----
1. Format, line by line, each ending in a newline: ``c2sp.org/tlog-proof@v1``; optionally
   ``extra <base64>`` (opaque, NOT authenticated, never trusted); ``index <decimal>``; zero
   or more base64 SHA-256 hashes, the RFC 6962 inclusion proof from the leaf's sibling up;
   an empty line; then the checkpoint, a signed note, verbatim. Numbers are decimal without
   leading zeros, base64 is canonical, extra data is not empty. ``parse_proof`` refuses
   anything else (``BadDataError`` naming the line).
2. ``verify_receipt`` checks, in order: the format; the log's signature with the log keys
   (``note.open_note``: ``UnknownKeyError``/``SignatureError``); that the log key's name is
   the checkpoint's origin (tlog-policy, ``WrongOriginError``); the inclusion of
   ``leaf_hash(entry)`` at the index (``UntrustedError``); the cosignatures of known
   witnesses (``cosignature.verify_cosignatures``: one that fails refuses the receipt); and
   the quorum (``ThresholdError``). Only then does it return the index, checkpoint and
   cosigners.
3. A quorum is tlog-policy's: ``None`` (``quorum none``), a witness name, or a ``Group`` of
   ``threshold`` out of its members (names or groups). A witness counts once, whichever of
   its keys (Ed25519 or ML-DSA-44) cosigned. Names are the witnesses' key names.

Theory of operation
-------------------
Writing (the log's side)::

    receipt = format_proof(TlogProof(index, merkle.inclusion_proof(...), cosigned_note))

Checking (anyone, offline)::

    ok = verify_receipt(receipt, entry, log_keys, witness_keys, Group(1, ("MN-witness",)))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from jcm_sync.core import merkle
from jcm_sync.core.checkpoint import Checkpoint, parse_body
from jcm_sync.core.cosignature import Cosignature, CosignatureVerifier, verify_cosignatures
from jcm_sync.core.note import (
    NoteVerifier,
    decode_base64,
    decode_text,
    encode_base64,
    open_note,
    parse_note,
)
from jcm_sync.errors import (
    BadDataError,
    NoteFormatError,
    ThresholdError,
    UntrustedError,
    WrongOriginError,
)

__all__ = [
    "FILE_EXTENSION",
    "HEADER",
    "MAX_PROOF_HASHES",
    "Group",
    "Quorum",
    "TlogProof",
    "VerifiedReceipt",
    "format_proof",
    "parse_proof",
    "quorum_met",
    "verify_receipt",
]

#: The first line of every proof.
HEADER = "c2sp.org/tlog-proof@v1"
#: The file extension tlog-proof recommends.
FILE_EXTENSION = ".tlog-proof"
#: Longest inclusion proof of a tree of at most 2**64 - 1 leaves.
MAX_PROOF_HASHES = 64

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# ---------------------------------------------------------------------------------------------
# The format (rule 1)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A receipt as written: nothing in it is verified. ``extra`` is None or non-empty bytes."""

    index: int
    proof: tuple[bytes, ...]
    note: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not merkle.is_tree_size(self.index) or self.index == merkle.MAX_TREE_SIZE:
            raise BadDataError(f"index {self.index!r} is not a leaf index")
        proof = tuple(self.proof)
        if len(proof) > MAX_PROOF_HASHES or not all(merkle.is_hash(h) for h in proof):
            raise BadDataError(f"an inclusion proof is at most {MAX_PROOF_HASHES} 32-byte hashes")
        object.__setattr__(self, "proof", proof)
        if self.extra is not None and (not isinstance(self.extra, bytes) or not self.extra):
            raise BadDataError("extra data must be non-empty bytes, or None for none")
        if not isinstance(self.note, bytes):
            raise BadDataError(f"the checkpoint must be bytes, got {type(self.note).__name__}")
        parse_note(self.note)


def format_proof(proof: TlogProof) -> bytes:
    """Return the receipt file's bytes (rule 1)."""
    lines = [HEADER]
    if proof.extra is not None:
        lines.append(f"extra {encode_base64(proof.extra)}")
    lines.append(f"index {proof.index}")
    lines.extend(encode_base64(h) for h in proof.proof)
    lines.append("")
    return "".join(line + "\n" for line in lines).encode("utf-8") + proof.note


def parse_proof(data: bytes) -> TlogProof:
    """Parse a receipt strictly (rule 1); ``BadDataError`` names the line of any defect."""
    text = decode_text(data, "tlog-proof", BadDataError)
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise BadDataError(f"the first line must be {HEADER!r}", where="tlog-proof line 1")
    i = 1
    extra: bytes | None = None
    if i < len(lines) and lines[i].startswith("extra "):
        extra = decode_base64(lines[i][6:])
        if not extra:
            raise BadDataError(
                "extra data must be non-empty canonical base64", where=f"tlog-proof line {i + 1}"
            )
        i += 1
    if i >= len(lines) or not lines[i].startswith("index "):
        raise BadDataError("expected 'index <decimal>'", where=f"tlog-proof line {i + 1}")
    digits = lines[i][6:]
    if not _DECIMAL.fullmatch(digits) or int(digits) >= merkle.MAX_TREE_SIZE:
        raise BadDataError(
            f"index {digits[:40]!r} is not a decimal leaf index without leading zeros",
            where=f"tlog-proof line {i + 1}",
        )
    index = int(digits)
    i += 1
    hashes: list[bytes] = []
    while True:
        if i >= len(lines) - 1:  # the last element is what follows the final newline
            raise BadDataError("no empty line separates the proof from the checkpoint")
        if lines[i] == "":
            break
        raw = decode_base64(lines[i])
        if raw is None or len(raw) != merkle.HASH_SIZE:
            raise BadDataError(
                "an inclusion proof line must be one 32-byte hash in canonical base64",
                where=f"tlog-proof line {i + 1}",
            )
        if len(hashes) == MAX_PROOF_HASHES:
            raise BadDataError(f"more than {MAX_PROOF_HASHES} inclusion proof hashes")
        hashes.append(raw)
        i += 1
    note = "\n".join(lines[i + 1 :]).encode("utf-8")
    try:
        return TlogProof(index, tuple(hashes), note, extra)
    except NoteFormatError as exc:
        raise BadDataError(
            f"the checkpoint is not a signed note: {exc.message}",
            where=f"tlog-proof, checkpoint from line {i + 2}",
        ) from exc


# ---------------------------------------------------------------------------------------------
# Quorum (rule 3)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """A tlog-policy group: met when at least ``threshold`` of its ``members`` are met."""

    threshold: int
    members: tuple[str | Group, ...]

    def __post_init__(self) -> None:
        members = tuple(self.members)
        if not members:
            raise BadDataError("a group needs at least one member")
        if len(set(members)) != len(members):
            raise BadDataError("a group lists each member at most once")
        if not isinstance(self.threshold, int) or not 1 <= self.threshold <= len(members):
            raise BadDataError(f"threshold {self.threshold!r} is not in [1, {len(members)}]")
        for m in members:
            if not isinstance(m, str | Group) or m == "none" or m == "":
                raise BadDataError(f"group member {m!r} is not a witness name or a group")
        object.__setattr__(self, "members", members)


Quorum = str | Group | None


def quorum_met(quorum: Quorum, cosigners: Sequence[str] | set[str]) -> bool:
    """Return True iff the witnesses named in ``cosigners`` satisfy ``quorum``."""
    if quorum is None:
        return True
    if isinstance(quorum, str):
        return quorum in cosigners
    return sum(quorum_met(m, cosigners) for m in quorum.members) >= quorum.threshold


# ---------------------------------------------------------------------------------------------
# Verifying (rule 2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt that checked out: the entry is at ``index`` of ``checkpoint``."""

    index: int
    checkpoint: Checkpoint
    log_signers: tuple[str, ...]
    cosignatures: tuple[Cosignature, ...]
    extra: bytes | None

    @property
    def cosigners(self) -> tuple[str, ...]:
        """The names of the witnesses whose cosignatures verified, without repeats."""
        return tuple(dict.fromkeys(c.name for c in self.cosignatures))


def verify_receipt(
    receipt: bytes,
    entry: bytes,
    log_verifiers: Sequence[NoteVerifier],
    witness_verifiers: Sequence[CosignatureVerifier],
    quorum: Quorum,
    *,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify a tlog-proof receipt of ``entry`` offline (rule 2), or raise why not.

    ``origin``, when given, is the log the receipt must be of.
    """
    proof = parse_proof(receipt)
    opened = open_note(proof.note, log_verifiers)
    cp = parse_body(opened.body)
    if origin is not None and cp.origin != origin:
        raise WrongOriginError(f"receipt is for log {cp.origin!r}, expected {origin!r}")
    if cp.origin not in opened.verified_by:
        raise WrongOriginError(
            f"the checkpoint of {cp.origin!r} is signed by {', '.join(opened.verified_by)}, "
            "not by a key named after its origin"
        )
    if not isinstance(entry, bytes):
        raise BadDataError(f"entry must be bytes, got {type(entry).__name__}")
    leaf = merkle.leaf_hash(entry)
    if not merkle.verify_inclusion(leaf, proof.index, cp.size, proof.proof, cp.root_hash):
        raise UntrustedError(
            f"the inclusion proof does not put this entry at index {proof.index} "
            f"of {cp.origin} at size {cp.size}"
        )
    cosigs = verify_cosignatures(proof.note, witness_verifiers)
    names = {c.name for c in cosigs}
    if not quorum_met(quorum, names):
        raise ThresholdError(
            f"the checkpoint's cosigners ({', '.join(sorted(names)) or 'none'}) "
            "do not meet the witness quorum"
        )
    return VerifiedReceipt(proof.index, cp, opened.verified_by, cosigs, proof.extra)
