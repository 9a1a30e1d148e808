"""C2SP tlog-witness on the wire: the add-checkpoint request, the witness's decision, the answer.

Why this module exists
----------------------
Each node is a witness of its counterpart's logs (issue 14): the log sends
``POST <prefix>/add-checkpoint`` with its new checkpoint and a consistency proof from the size
the witness last cosigned, and the witness answers with its cosignature
(c2sp.org/tlog-witness). The body formats and the decision — which request is refused with
which HTTP status — are the spec's, not ours, so they live here, pure and tested against the
spec's examples; the endpoint (``net``) and the compare-and-persist of the witnessed size
(``services``) call them.

It is pure: bytes, keys and sizes in, values out. No I/O, no clock, no store.

Rules
-----
1. Request body: ``old <size>\\n``, zero to ``MAX_PROOF_LINES`` (63) lines each one base64
   SHA-256 hash, an empty line, then the checkpoint as a signed note. Sizes are decimal
   without leading zeros, base64 is canonical, every line ends with a newline. Anything else
   is refused with 400 (``parse_add_checkpoint``).
2. ``judge_add_checkpoint`` applies the spec's checks in the spec's order and raises
   ``WitnessRefusedError`` carrying the status the spec prescribes:
   404 the origin is not a log we witness; 403 no signature by a trusted key of that log
   verifies (a trusted key's signature that fails counts as none); 400 the checkpoint is
   malformed or ``old`` exceeds its size; 409 ``old`` is not the size we last cosigned
   (``witness_size`` says ours; answer it as ``text/x.tlog.size``, ``format_size_conflict``);
   409 same size but another root hash; 422 the consistency proof does not verify (a proof
   sent with ``old 0``, or for an unchanged size, is not a valid proof either).
3. The judge decides; it does not persist. The caller MUST compare-and-persist the new size
   atomically with the check of ``old`` (tlog-witness), cosign only after that succeeded,
   and answer with ``format_cosignature_response``.
4. The answer is one or more signature lines. A client takes from it only the lines of
   witnesses it trusts, each verified against its own checkpoint (``attach_cosignatures``).

Theory of operation
-------------------
Witness side::

    request = parse_add_checkpoint(body)             # 400 on any defect
    accepted = judge_add_checkpoint(stored.get(request.origin), request, log_keys)
    # compare-and-persist accepted.checkpoint.size where size == request.old_size, then:
    lines = [cosignature.cosign(accepted.text, name, key, now)]
    return format_cosignature_response(lines)

Log side::

    body = format_add_checkpoint(old, proof, note)
    note, cosigs = attach_cosignatures(note, response_body, witness_keys)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jcm_sync.core import merkle
from jcm_sync.core.checkpoint import Checkpoint, parse_body
from jcm_sync.core.cosignature import Cosignature, CosignatureVerifier, verify_cosignatures
from jcm_sync.core.note import (
    NoteSignature,
    NoteVerifier,
    add_signature_lines,
    decode_base64,
    decode_text,
    encode_base64,
    open_note,
    parse_note,
)
from jcm_sync.errors import (
    AmbiguousKeyError,
    BadDataError,
    CheckpointFormatError,
    NoteFormatError,
    SignatureError,
    UnknownKeyError,
    WitnessRefusedError,
)

__all__ = [
    "MAX_PROOF_LINES",
    "TLOG_SIZE_CONTENT_TYPE",
    "AcceptedCheckpoint",
    "AddCheckpointRequest",
    "WitnessRefusedError",
    "attach_cosignatures",
    "format_add_checkpoint",
    "format_cosignature_response",
    "format_size_conflict",
    "judge_add_checkpoint",
    "parse_add_checkpoint",
    "parse_cosignature_response",
    "parse_size_conflict",
]

#: Most consistency proof lines a request may carry (tlog-witness).
MAX_PROOF_LINES = 63
#: Media type of a 409 answer's body: the witness's size, in decimal, and a newline.
TLOG_SIZE_CONTENT_TYPE = "text/x.tlog.size"

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _bad(message: str, where: str | None = None) -> WitnessRefusedError:
    return WitnessRefusedError(400, "bad-add-checkpoint", message, where=where)


def _parse_size(text: str, what: str, where: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > merkle.MAX_TREE_SIZE:
        raise _bad(f"{what} {text!r} is not a decimal uint64 without leading zeros", where)
    return int(text)


# ---------------------------------------------------------------------------------------------
# The request (rule 1)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCheckpointRequest:
    """A well-formed add-checkpoint request. Nothing in it is verified yet.

    ``origin`` is the first line of the checkpoint text, read only to pick the log's keys.
    """

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes
    origin: str


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Parse an add-checkpoint request body; ``WitnessRefusedError`` (400) on any defect."""
    try:
        text = decode_text(body, "add-checkpoint body", BadDataError)
    except BadDataError as exc:
        raise _bad(exc.message, exc.where) from exc
    first, sep, rest = text.partition("\n")
    if not sep:
        raise _bad("the old size line does not end with a newline", "body line 1")
    if not first.startswith("old "):
        raise _bad(f"the first line must be 'old <size>', got {first[:40]!r}", "body line 1")
    old_size = _parse_size(first[4:], "old size", "body line 1")
    proof: list[bytes] = []
    number = 1
    while True:
        number += 1
        line, sep, rest = rest.partition("\n")
        if not sep:
            raise _bad("no empty line separates the proof from the checkpoint")
        if line == "":
            break
        if len(proof) == MAX_PROOF_LINES:
            raise _bad(
                f"more than {MAX_PROOF_LINES} consistency proof lines", f"body line {number}"
            )
        raw = decode_base64(line)
        if raw is None or len(raw) != merkle.HASH_SIZE:
            raise _bad(
                "a consistency proof line must be one 32-byte hash in canonical base64",
                f"body line {number}",
            )
        proof.append(raw)
    note = rest.encode("utf-8")
    try:
        parsed = parse_note(note)
    except NoteFormatError as exc:
        raise _bad(f"the checkpoint is not a signed note: {exc}") from exc
    origin = parsed.text.split(b"\n", 1)[0].decode("utf-8")
    return AddCheckpointRequest(old_size, tuple(proof), note, origin)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """Return the request body for ``note`` (a signed checkpoint) with a proof from ``old_size``."""
    if not merkle.is_tree_size(old_size):
        raise BadDataError(f"old size {old_size!r} is not a uint64")
    if len(proof) > MAX_PROOF_LINES or not all(merkle.is_hash(h) for h in proof):
        raise BadDataError(f"a proof is at most {MAX_PROOF_LINES} hashes of 32 bytes")
    parse_note(note)
    lines = [f"old {old_size}", *(encode_base64(h) for h in proof), ""]
    return "".join(line + "\n" for line in lines).encode("utf-8") + note


# ---------------------------------------------------------------------------------------------
# The decision (rules 2 and 3)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptedCheckpoint:
    """A checkpoint the witness may cosign once it has persisted ``checkpoint.size``."""

    checkpoint: Checkpoint
    note: bytes
    text: bytes
    verified_by: tuple[str, ...]


def judge_add_checkpoint(
    witnessed: tuple[int, bytes] | None,
    request: AddCheckpointRequest | bytes,
    log_verifiers: Mapping[str, Sequence[NoteVerifier]],
) -> AcceptedCheckpoint:
    """Decide an add-checkpoint request as tlog-witness prescribes (rule 2).

    ``witnessed`` is (size, root hash) of the checkpoint of this origin we last cosigned, or
    None if we never did; ``log_verifiers`` maps each origin we witness to its log's keys.
    Raises ``WitnessRefusedError``; on success returns what to persist and cosign.
    """
    if isinstance(request, bytes):
        request = parse_add_checkpoint(request)
    verifiers = log_verifiers.get(request.origin)
    if not verifiers:
        raise WitnessRefusedError(
            404, "unknown-log", f"this witness does not witness the log {request.origin!r}"
        )
    try:
        opened = open_note(request.note, verifiers)
    except (UnknownKeyError, SignatureError, AmbiguousKeyError) as exc:
        raise WitnessRefusedError(
            403, "untrusted-checkpoint", f"no trusted signature of the log verifies: {exc}"
        ) from exc
    try:
        cp = parse_body(opened.body)
    except CheckpointFormatError as exc:
        raise _bad(f"the checkpoint is malformed: {exc}") from exc
    old = request.old_size
    if old > cp.size:
        raise _bad(f"old size {old} is larger than the checkpoint's size {cp.size}")
    size, root = witnessed if witnessed is not None else (0, merkle.EMPTY_ROOT)
    if old != size:
        raise WitnessRefusedError(
            409,
            "witness-size-mismatch",
            f"old size {old} is not {size}, the size this witness last cosigned",
            witness_size=size,
        )
    if old == cp.size and witnessed is not None and root != cp.root_hash:
        raise WitnessRefusedError(
            409,
            "witness-root-mismatch",
            f"tree size {old} already cosigned with root {encode_base64(root)}, "
            f"not {encode_base64(cp.root_hash)}",
        )
    if (old == 0 or old == cp.size) and request.proof:
        raise WitnessRefusedError(
            422, "bad-consistency-proof", f"a proof from size {old} to {cp.size} must be empty"
        )
    if 0 < old < cp.size and not merkle.verify_consistency(
        old, cp.size, root, cp.root_hash, request.proof
    ):
        raise WitnessRefusedError(
            422,
            "bad-consistency-proof",
            f"the consistency proof from size {old} to {cp.size} does not verify",
        )
    return AcceptedCheckpoint(cp, request.note, opened.body, opened.verified_by)


# ---------------------------------------------------------------------------------------------
# The answers (rule 4)
# ---------------------------------------------------------------------------------------------


def format_size_conflict(size: int) -> bytes:
    """Return the body of a 409 size mismatch: the witness's size in decimal and a newline."""
    if not merkle.is_tree_size(size):
        raise BadDataError(f"size {size!r} is not a uint64")
    return b"%d\n" % size


def parse_size_conflict(body: bytes) -> int:
    """Read the witness's size from a 409 ``text/x.tlog.size`` body; ``BadDataError`` if not."""
    if not isinstance(body, bytes) or not body.endswith(b"\n"):
        raise BadDataError("a text/x.tlog.size body is a decimal size and a newline")
    text = body[:-1].decode("ascii", errors="replace")
    if not _DECIMAL.fullmatch(text) or int(text) > merkle.MAX_TREE_SIZE:
        raise BadDataError(f"witness size {text[:40]!r} is not a decimal uint64")
    return int(text)


def format_cosignature_response(lines: Sequence[NoteSignature]) -> bytes:
    """Return the 200 body: one or more signature lines, each ending with a newline."""
    if not lines:
        raise BadDataError("a witness answers with at least one cosignature line")
    return "".join(sig.line() for sig in lines).encode("utf-8")


def parse_cosignature_response(body: bytes) -> tuple[NoteSignature, ...]:
    """Parse a 200 body into signature lines (strictly, as a note's); not verified."""
    if not isinstance(body, bytes) or body == b"":
        raise NoteFormatError("a witness response holds at least one signature line")
    try:
        return parse_note(b"response\n\n" + body).signatures
    except NoteFormatError as exc:
        raise NoteFormatError(f"witness response: {exc.message}") from exc


def attach_cosignatures(
    note: bytes, response: bytes, witnesses: Sequence[CosignatureVerifier]
) -> tuple[bytes, tuple[Cosignature, ...]]:
    """Add to ``note`` the response's cosignatures by trusted ``witnesses``, each verified.

    Lines by other keys are dropped (tlog-witness: the client MUST ignore them). A trusted
    witness's line that does not verify over ``note``'s text raises ``SignatureError``.
    """
    trusted = {(w.name, w.key_id) for w in witnesses}
    lines = [s for s in parse_cosignature_response(response) if (s.name, s.key_id) in trusted]
    candidate = add_signature_lines(note, lines)
    cosigs = verify_cosignatures(candidate, witnesses)
    return candidate, cosigs
