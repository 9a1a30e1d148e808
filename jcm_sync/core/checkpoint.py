"""C2SP tlog-checkpoints: how a log states, and signs, what it holds.

Why this module exists
----------------------
Each jcm-sync node keeps one append-only log per partnership (DESIGN.md §4). A log states its
current state as a *checkpoint*, the three lines

    <origin>
    <tree size>
    <base64 root hash>

(c2sp.org/tlog-checkpoint), signed as a *signed note* (c2sp.org/signed-note, ``note.py``). The
counterpart keeps the last checkpoint it verified and accepts a newer one only with a valid
consistency proof, so a rewritten history is detected instead of silently followed. Using the
C2SP format rather than our own lets any tlog tool read and cosign our checkpoints, and this
module is tested against Go's ``golang.org/x/mod/sumdb/tlog`` vectors and a checkpoint
really signed by sum.golang.org.

It is pure: bytes, strings and keys in, values out. No I/O, no clock.

Rules
-----
1. Verify before you parse. ``open_checkpoint`` parses a body only after ``note.open_note``
   accepted its signatures (the note's own rule 1). Nothing here re-encodes a peer's bytes to
   verify them: the signature covers the received text, byte for byte.
2. Parsing is strict and every refusal says what and where (``CheckpointFormatError``, a
   ``BadDataError``): the text rules of a signed note (valid UTF-8, no control characters but
   newline, lines of at most ``note.MAX_LINE_BYTES``), the tree size in decimal without
   leading zeros, the root exactly 32 bytes, in canonical base64 (so one value has exactly one
   encoding, and a checkpoint cannot be altered without changing its bytes).
3. A log never signs a checkpoint inconsistent with one it signed before
   (tlog-checkpoint, "Signatures"). ``check_append_only`` is the guard: the signer calls it
   with its previous checkpoint and a consistency proof computed from its own tree before
   signing, and a verifier calls it with the peer's previous checkpoint before accepting.

Theory of operation
-------------------
Signing (the log's own side)::

    cp = Checkpoint(origin, size, root)          # root from subtrees.Frontier.root()
    check_append_only(last_signed, cp, proof)    # proof: merkle consistency proof
    note = sign_checkpoint(cp, private_key)      # key name defaults to the origin

Verifying (the counterpart's side)::

    verified = open_checkpoint(note, [Verifier.from_vkey(peer_vkey)], origin=expected)
    check_append_only(last_verified, verified.checkpoint, proof_from_peer)
    # then store ``note`` verbatim as the new last_verified

A third party can cosign with ``note.add_signature`` after opening the checkpoint itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jcm_sync.core import merkle
from jcm_sync.core.note import (
    CONTROL_CHARACTERS,
    MAX_LINE_BYTES,
    NoteVerifier,
    decode_base64,
    decode_text,
    encode_base64,
    is_key_name,
    open_note,
    sign_note,
)
from jcm_sync.errors import (
    BadDataError,
    CheckpointFormatError,
    CheckpointRollbackError,
    ConflictError,
    ForkError,
    WrongOriginError,
)

__all__ = [
    "Checkpoint",
    "VerifiedCheckpoint",
    "check_append_only",
    "format_body",
    "open_checkpoint",
    "origin_for",
    "parse_body",
    "sign_checkpoint",
]

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# ---------------------------------------------------------------------------------------------
# Checkpoint bodies (c2sp.org/tlog-checkpoint)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's state: its origin, tree size, RFC 9162 root hash, and opaque extension lines.

    Construction validates every field, so a Checkpoint always formats to a body that
    ``parse_body`` reads back to an equal Checkpoint.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin", "checkpoint line 1")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointFormatError(
                f"tree size must be an int, got {type(self.size).__name__}",
                where="checkpoint line 2",
            )
        if not 0 <= self.size <= merkle.MAX_TREE_SIZE:
            raise CheckpointFormatError(
                f"tree size {self.size} is outside [0, 2**64 - 1]", where="checkpoint line 2"
            )
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != merkle.HASH_SIZE:
            got = (
                f"{len(self.root_hash)} bytes"
                if isinstance(self.root_hash, bytes)
                else type(self.root_hash).__name__
            )
            raise CheckpointFormatError(
                f"root hash must be {merkle.HASH_SIZE} bytes, got {got}",
                where="checkpoint line 3",
            )
        # Accept any sequence of strings, but hold a tuple so the value stays immutable.
        extensions = tuple(self.extensions)
        for i, line in enumerate(extensions):
            _check_line(line, "extension line", f"checkpoint line {4 + i}")
        object.__setattr__(self, "extensions", extensions)


def _check_line(value: object, what: str, where: str) -> None:
    if not isinstance(value, str):
        raise CheckpointFormatError(
            f"{what} must be a str, got {type(value).__name__}", where=where
        )
    if value == "":
        raise CheckpointFormatError(f"{what} must not be empty", where=where)
    if "\n" in value or CONTROL_CHARACTERS.search(value):
        raise CheckpointFormatError(f"{what} must not contain control characters", where=where)
    if len(value.encode("utf-8")) > MAX_LINE_BYTES:
        raise CheckpointFormatError(f"{what} is longer than {MAX_LINE_BYTES} bytes", where=where)


def format_body(cp: Checkpoint) -> bytes:
    """Return the checkpoint's note text: origin, size, base64 root, extensions, each + newline."""
    lines = [cp.origin, str(cp.size), encode_base64(cp.root_hash), *cp.extensions]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def parse_body(body: bytes) -> Checkpoint:
    """Parse a checkpoint note text (without signatures) into a Checkpoint.

    Call this only on a text ``open_note`` verified (rule 1). Raises ``CheckpointFormatError``.
    """
    text = decode_text(body, "checkpoint", CheckpointFormatError)
    if not text.endswith("\n"):
        raise CheckpointFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError(
            f"checkpoint needs origin, size and root hash lines, got {len(lines)} line(s)"
        )
    for number, line in enumerate(lines, start=1):
        if line == "":
            raise CheckpointFormatError(
                "checkpoint lines must not be empty", where=f"checkpoint line {number}"
            )
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointFormatError(
            f"tree size {size_text!r} must be decimal digits without leading zeros",
            where="checkpoint line 2",
        )
    size = int(size_text)
    if size > merkle.MAX_TREE_SIZE:
        raise CheckpointFormatError(
            f"tree size {size_text} exceeds 2**64 - 1", where="checkpoint line 2"
        )
    root_hash = decode_base64(root_text)
    if root_hash is None:
        raise CheckpointFormatError(
            f"root hash {root_text!r} is not canonical base64", where="checkpoint line 3"
        )
    if len(root_hash) != merkle.HASH_SIZE:
        raise CheckpointFormatError(
            f"root hash is {len(root_hash)} bytes, not {merkle.HASH_SIZE}",
            where="checkpoint line 3",
        )
    return Checkpoint(origin, size, root_hash, tuple(extensions))


def origin_for(prefix: str, partnership: str, log_node: str) -> str:
    """Return the origin (and log key name) of ``log_node``'s log in ``partnership``.

    ``origin_for("jcm-sync.example", "JP-MN", "MN") == "jcm-sync.example/JP-MN/MN"``: a
    schema-less URL, as tlog-checkpoint recommends, unique per partnership and per side, so a
    checkpoint of one log can never be mistaken for one of another.
    """
    for what, part in (("prefix", prefix), ("partnership", partnership), ("log node", log_node)):
        if not is_key_name(part):
            raise BadDataError(
                f"{what} {part!r} must be non-empty, without spaces, '+' or control characters"
            )
        if part.startswith("/") or part.endswith("/") or (what != "prefix" and "/" in part):
            raise BadDataError(f"{what} {part!r} has a misplaced '/'")
    return f"{prefix}/{partnership}/{log_node}"


# ---------------------------------------------------------------------------------------------
# Signed checkpoints
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint taken from a note that verified, with the note bytes kept as received."""

    checkpoint: Checkpoint
    note: bytes
    verified_by: tuple[str, ...]


def sign_checkpoint(
    cp: Checkpoint, private_key: Ed25519PrivateKey, name: str | None = None
) -> bytes:
    """Return ``cp`` as a signed note. The key name defaults to the origin (tlog-checkpoint)."""
    return sign_note(format_body(cp), cp.origin if name is None else name, private_key)


def open_checkpoint(
    note: bytes, verifiers: Sequence[NoteVerifier], *, origin: str
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint of the log ``origin`` and parse it (rule 1: in that order).

    ``verifiers`` are the keys trusted to sign for this log. Raises what ``open_note`` and
    ``parse_body`` raise, and ``WrongOriginError`` for a checkpoint of another log.
    """
    opened = open_note(note, verifiers)
    cp = parse_body(opened.body)
    if cp.origin != origin:
        raise WrongOriginError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    return VerifiedCheckpoint(cp, note, opened.verified_by)


def check_append_only(previous: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise unless ``new`` extends ``previous``, the last checkpoint of the same log (rule 3).

    - no previous checkpoint: anything is accepted (the proof is not looked at);
    - another origin: ``ConflictError`` (this is not the same log);
    - smaller size: ``CheckpointRollbackError``, a ``ConflictError``: the log would move backwards;
    - same size: the roots must be equal, else ``ForkError`` (the proof is not looked at);
    - larger size: ``proof`` must be a valid RFC 9162 consistency proof, else ``ForkError``.
    """
    if previous is None:
        return
    if previous.origin != new.origin:
        raise ConflictError(
            f"checkpoint of log {new.origin!r} cannot follow one of log {previous.origin!r}"
        )
    where = f"log {new.origin}"
    if new.size < previous.size:
        raise CheckpointRollbackError(
            f"tree size {new.size} is smaller than the {previous.size} already seen", where=where
        )
    if new.size == previous.size:
        if new.root_hash != previous.root_hash:
            raise ForkError(
                f"two different root hashes for tree size {new.size}: "
                f"{encode_base64(previous.root_hash)} and {encode_base64(new.root_hash)}",
                where=where,
            )
        return
    if not merkle.verify_consistency(
        previous.size, new.size, previous.root_hash, new.root_hash, proof
    ):
        raise ForkError(
            f"consistency proof from tree size {previous.size} to {new.size} does not verify",
            where=where,
        )
