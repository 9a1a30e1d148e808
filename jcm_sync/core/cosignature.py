"""C2SP tlog-cosignature: a witness's timestamped cosignature of a checkpoint.

Why this module exists
----------------------
Each node witnesses its counterpart's log (issue 14): it checks that a new checkpoint extends
the last one it saw and then *cosigns* it, so that years later a third party holding only
files can see that both sides held the same history at a given time. The cosignature is a
signed-note signature line (``note.py``) in the format of c2sp.org/tlog-cosignature, so any
C2SP tool (transparency-dev witnesses, Sigsum, torchwood) reads ours and we read theirs.

It is pure: bytes, strings and keys in, values out. No I/O, and no clock: the caller passes
the time it signs at.

Rules
-----
1. Two cosignature types, each a signed-note signature type (c2sp.org/signed-note):
   - **0x04, Ed25519 ``cosignature/v1``.** Key ID
     ``SHA-256(name || 0x0A || 0x04 || 32-byte key)[:4]``. Signed message:
     ``"cosignature/v1\\n" || "time " || decimal timestamp || "\\n" || checkpoint text``
     (the whole note text, extension lines included, final newline included).
   - **0x06, ML-DSA-44 ``subtree/v1``.** Key ID
     ``SHA-256(name || 0x0A || 0x06 || 1312-byte key)[:4]``. Signed message: the TLS-encoded
     ``cosigned_message`` = ``"subtree/v1\\n\\0"`` (12 bytes) || u8 length || cosigner name ||
     u64 timestamp || u8 length || log origin || u64 start || u64 end || 32-byte hash. A
     checkpoint is the subtree ``[0, size)``; extension lines are not signed. FIPS 204 pure
     ML-DSA with an empty context. A subtree with ``start > 0`` carries timestamp 0.
   Both signatures are ``u64 big-endian timestamp || signature`` (72 or 2428 bytes), the
   timestamp at most ``2**63 - 1``.
2. Verifier keys are vkeys ``<name>+<key ID hex>+<base64(type || public key)>`` with type
   0x04 or 0x06; ``CosignatureVerifier.from_vkey`` checks the key ID against the key.
3. A ``CosignatureVerifier`` is a ``note.NoteVerifier``: ``note.open_note`` can check a
   cosignature like a log signature. ``verify_cosignatures`` checks only the lines of known
   witnesses (others are ignored, as signed-note requires) and refuses the note
   (``SignatureError``) if a known witness's line does not verify.
4. Signing checks what it signs: ``cosign`` parses the text as a checkpoint
   (``checkpoint.parse_body``) first, so we never cosign something that is not one. Cosigning
   is vouching: the caller must first have verified the log's signature and consistency
   (``witness_wire.judge_add_checkpoint``).

Theory of operation
-------------------
Witness side::

    line = cosign(checkpoint_text, "jcm-sync.example/JP-MN/MN-witness", key, now)
    response = line.line()                       # tlog-witness response body

Log side, attaching what the witness answered::

    note = note.add_signature_lines(note, [line])

Verifier side::

    opened = open_note(note, log_verifiers)      # the log's own signature first
    cosigners = verify_cosignatures(note, [CosignatureVerifier.from_vkey(w) for w in vkeys])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey, MLDSA44PublicKey

from jcm_sync.core import checkpoint as tlog_checkpoint
from jcm_sync.core import merkle
from jcm_sync.core.ed25519 import verify as ed25519_verify
from jcm_sync.core.note import (
    NoteSignature,
    add_signature_lines,
    decode_base64,
    encode_base64,
    is_key_name,
    parse_note,
)
from jcm_sync.errors import AmbiguousKeyError, BadDataError, KeyFormatError, SignatureError

__all__ = [
    "ED25519_COSIGNATURE_TYPE",
    "MAX_TIMESTAMP",
    "MLDSA44_COSIGNATURE_TYPE",
    "Cosignature",
    "CosignatureVerifier",
    "CosignerPrivateKey",
    "CosignerPublicKey",
    "add_cosignature",
    "cosign",
    "cosignature_message",
    "cosignatures_present",
    "cosigner_key_id",
    "cosigner_vkey",
    "sign_subtree",
    "subtree_message",
    "verify_cosignatures",
]

#: Signed-note signature type of an Ed25519 ``cosignature/v1`` (tlog-cosignature).
ED25519_COSIGNATURE_TYPE = 0x04
#: Signed-note signature type of an ML-DSA-44 (sub)tree cosignature (tlog-cosignature).
MLDSA44_COSIGNATURE_TYPE = 0x06
#: Largest timestamp a cosignature may carry.
MAX_TIMESTAMP = 2**63 - 1

_HEADER = b"cosignature/v1\n"
_SUBTREE_LABEL = b"subtree/v1\n\x00"
_TIMESTAMP_SIZE = 8
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_MLDSA44_KEY_SIZE = 1312
_MLDSA44_SIG_SIZE = 2420
_SIG_SIZES = {
    ED25519_COSIGNATURE_TYPE: _TIMESTAMP_SIZE + _ED25519_SIG_SIZE,
    MLDSA44_COSIGNATURE_TYPE: _TIMESTAMP_SIZE + _MLDSA44_SIG_SIZE,
}

CosignerPrivateKey = Ed25519PrivateKey | MLDSA44PrivateKey
CosignerPublicKey = Ed25519PublicKey | MLDSA44PublicKey


# ---------------------------------------------------------------------------------------------
# Keys (rule 2)
# ---------------------------------------------------------------------------------------------


def _type_and_raw(public_key: object) -> tuple[int, bytes]:
    if isinstance(public_key, Ed25519PublicKey):
        return ED25519_COSIGNATURE_TYPE, public_key.public_bytes_raw()
    if isinstance(public_key, MLDSA44PublicKey):
        return MLDSA44_COSIGNATURE_TYPE, public_key.public_bytes_raw()
    raise KeyFormatError(
        f"expected an Ed25519 or ML-DSA-44 public key, got {type(public_key).__name__}"
    )


def _require_name(name: object) -> str:
    if not is_key_name(name):
        raise KeyFormatError(
            f"cosigner name {name!r} must be non-empty, without spaces, '+' or control characters"
        )
    return name


def _key_id(name: str, signature_type: int, raw: bytes) -> int:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + raw)
    return int.from_bytes(digest.digest()[:4], "big")


def cosigner_key_id(name: str, public_key: CosignerPublicKey) -> int:
    """Return the key ID of a cosigner key: ``SHA-256(name || 0x0A || type || key)[:4]``."""
    signature_type, raw = _type_and_raw(public_key)
    return _key_id(_require_name(name), signature_type, raw)


def cosigner_vkey(name: str, public_key: CosignerPublicKey) -> str:
    """Return the vkey ``<name>+<key ID hex>+<base64(type || key)>`` of a cosigner key."""
    return CosignatureVerifier(name, public_key).vkey()


# ---------------------------------------------------------------------------------------------
# Signed messages (rule 1)
# ---------------------------------------------------------------------------------------------


def _check_timestamp(timestamp: object) -> int:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise BadDataError(f"timestamp must be an int, got {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise BadDataError(f"timestamp {timestamp} is outside [0, 2**63 - 1]")
    return timestamp


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """Return the message an Ed25519 ``cosignature/v1`` signs over a checkpoint ``text``."""
    return _HEADER + b"time %d\n" % _check_timestamp(timestamp) + text


def _short_opaque(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= 255:
        raise BadDataError(f"{what} must be 1 to 255 bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def subtree_message(
    cosigner_name: str, timestamp: int, origin: str, start: int, end: int, root_hash: bytes
) -> bytes:
    """Return the ML-DSA-44 ``cosigned_message`` over the subtree ``[start, end)`` of ``origin``."""
    _check_timestamp(timestamp)
    for what, value in (("start", start), ("end", end)):
        if not merkle.is_tree_size(value):
            raise BadDataError(f"subtree {what} {value!r} is not a uint64")
    if start > end:
        raise BadDataError(f"subtree start {start} is after its end {end}")
    if start != 0 and timestamp != 0:
        raise BadDataError("a subtree that does not start at 0 must carry timestamp 0")
    if not merkle.is_hash(root_hash):
        raise BadDataError(f"subtree hash must be 32 bytes, got {merkle.describe_hash(root_hash)}")
    return (
        _SUBTREE_LABEL
        + _short_opaque(cosigner_name, "cosigner name")
        + timestamp.to_bytes(8, "big")
        + _short_opaque(origin, "log origin")
        + start.to_bytes(8, "big")
        + end.to_bytes(8, "big")
        + root_hash
    )


# ---------------------------------------------------------------------------------------------
# Verifying (rules 2 and 3)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A cosignature that verified: who, with which key type, and the time it states."""

    name: str
    key_id: int
    signature_type: int
    timestamp: int


@dataclass(frozen=True, slots=True, repr=False)
class CosignatureVerifier:
    """A trusted witness key (Ed25519 type 0x04 or ML-DSA-44 type 0x06) under its name.

    It is a ``note.NoteVerifier``. Two are equal when name and public key bytes are.
    """

    name: str
    public_key: CosignerPublicKey = field(compare=False)
    signature_type: int = field(init=False)
    public_bytes: bytes = field(init=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _require_name(self.name)
        signature_type, raw = _type_and_raw(self.public_key)
        object.__setattr__(self, "signature_type", signature_type)
        object.__setattr__(self, "public_bytes", raw)
        object.__setattr__(self, "key_id", _key_id(self.name, signature_type, raw))

    @classmethod
    def from_vkey(cls, vkey_text: str) -> CosignatureVerifier:
        """Build a verifier from a type 0x04 or 0x06 vkey; ``KeyFormatError`` on any defect."""
        where = "cosigner verifier key"
        if not isinstance(vkey_text, str):
            raise KeyFormatError(f"must be a str, got {type(vkey_text).__name__}", where=where)
        name, _, rest = vkey_text.partition("+")
        hex_id, sep, encoded = rest.partition("+")
        if not sep:
            raise KeyFormatError("must have the form <name>+<key id>+<key>", where=where)
        if not is_key_name(name):
            raise KeyFormatError(f"key name {name!r} is not a valid key name", where=where)
        if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
            raise KeyFormatError(f"key ID {hex_id!r} is not 8 hex digits", where=where)
        raw = decode_base64(encoded)
        if not raw:
            raise KeyFormatError("key material is not canonical base64", where=where)
        public_key: CosignerPublicKey
        try:
            if raw[0] == ED25519_COSIGNATURE_TYPE and len(raw) == 1 + _ED25519_KEY_SIZE:
                public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
            elif raw[0] == MLDSA44_COSIGNATURE_TYPE and len(raw) == 1 + _MLDSA44_KEY_SIZE:
                public_key = MLDSA44PublicKey.from_public_bytes(raw[1:])
            else:
                raise KeyFormatError(
                    f"signature type 0x{raw[0]:02x} with a {len(raw) - 1}-byte key is neither an "
                    "Ed25519 cosigner key (0x04, 32 bytes) nor an ML-DSA-44 one (0x06, 1312 bytes)",
                    where=where,
                )
        except ValueError as exc:
            raise KeyFormatError("not a valid public key", where=where) from exc
        verifier = cls(name, public_key)
        if verifier.key_id != int(hex_id, 16):
            raise KeyFormatError(
                f"key ID {hex_id} does not match the key (expected {verifier.key_id:08x})",
                where=where,
            )
        return verifier

    def __repr__(self) -> str:
        return (
            f"CosignatureVerifier({self.name}+{self.key_id:08x}, type 0x{self.signature_type:02x})"
        )

    def vkey(self) -> str:
        """Return this key's vkey string."""
        encoded = encode_base64(bytes([self.signature_type]) + self.public_bytes)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def timestamp_of(self, signature: bytes) -> int | None:
        """Return the timestamp a signature of this key's type states, or None if malformed."""
        if len(signature) != _SIG_SIZES[self.signature_type]:
            return None
        timestamp = int.from_bytes(signature[:_TIMESTAMP_SIZE], "big")
        return timestamp if timestamp <= MAX_TIMESTAMP else None

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return True iff ``signature`` cosigns the checkpoint note text ``message``."""
        timestamp = self.timestamp_of(signature)
        if timestamp is None:
            return False
        if self.signature_type == ED25519_COSIGNATURE_TYPE:
            signed = cosignature_message(message, timestamp)
        else:
            try:
                cp = tlog_checkpoint.parse_body(message)
                signed = subtree_message(self.name, timestamp, cp.origin, 0, cp.size, cp.root_hash)
            except BadDataError:
                return False
        return self._check(signed, signature[_TIMESTAMP_SIZE:])

    def verify_subtree(
        self, origin: str, start: int, end: int, root_hash: bytes, signature: bytes
    ) -> bool:
        """Return True iff ``signature`` is this ML-DSA-44 key's cosignature of the subtree."""
        if self.signature_type != MLDSA44_COSIGNATURE_TYPE:
            return False
        timestamp = self.timestamp_of(signature)
        if timestamp is None:
            return False
        try:
            signed = subtree_message(self.name, timestamp, origin, start, end, root_hash)
        except BadDataError:
            return False
        return self._check(signed, signature[_TIMESTAMP_SIZE:])

    def _check(self, message: bytes, raw_signature: bytes) -> bool:
        if self.signature_type == ED25519_COSIGNATURE_TYPE:
            return ed25519_verify(self.public_bytes, raw_signature, message)  # ADR 0038
        try:
            self.public_key.verify(raw_signature, message)  # ML-DSA-44
        except InvalidSignature:
            return False
        return True


def verify_cosignatures(
    note: bytes, witnesses: Sequence[CosignatureVerifier]
) -> tuple[Cosignature, ...]:
    """Return the cosignatures of known ``witnesses`` on ``note``, each verified (rule 3).

    Lines of unknown keys are ignored. A known key's line that does not verify raises
    ``SignatureError``; two different witness keys under one (name, key ID) raise
    ``AmbiguousKeyError``. This does not check the log's own signature: open the note with the
    log's keys first. An empty result means no known witness cosigned.
    """
    known: dict[tuple[str, int], CosignatureVerifier] = {}
    for w in witnesses:
        if not isinstance(w, CosignatureVerifier):
            raise KeyFormatError(f"witnesses must be CosignatureVerifier, got {type(w).__name__}")
        if known.setdefault((w.name, w.key_id), w) != w:
            raise AmbiguousKeyError(
                f"two witness keys share the name and ID {w.name}+{w.key_id:08x}"
            )
    parsed = parse_note(note)
    found: list[Cosignature] = []
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(parsed.text, sig.signature):
            raise SignatureError(f"cosignature by known witness {sig.key} does not verify")
        timestamp = verifier.timestamp_of(sig.signature)
        assert timestamp is not None  # verify() returned True
        cosig = Cosignature(sig.name, sig.key_id, verifier.signature_type, timestamp)
        if cosig not in found:
            found.append(cosig)
    return tuple(found)


def cosignatures_present(note: bytes) -> tuple[tuple[str, int], ...]:
    """Return (name, timestamp) of every line shaped like a cosignature, NOT verified.

    For display and diagnostics only: a line is listed when its signature has the length
    of a type 0x04 or 0x06 cosignature; nothing says it is one, or that it verifies.
    """
    parsed = parse_note(note)
    sizes = set(_SIG_SIZES.values())
    return tuple(
        (sig.name, int.from_bytes(sig.signature[:_TIMESTAMP_SIZE], "big"))
        for sig in parsed.signatures
        if len(sig.signature) in sizes
    )


# ---------------------------------------------------------------------------------------------
# Signing (rule 4)
# ---------------------------------------------------------------------------------------------


def cosign(
    text: bytes, name: str, private_key: CosignerPrivateKey, timestamp: int
) -> NoteSignature:
    """Return the signature line by which witness ``name`` cosigns the checkpoint ``text``.

    ``text`` is the checkpoint's note text (no signature lines); it must parse as a
    checkpoint. ``timestamp`` is the POSIX time of signing, in seconds.
    """
    _require_name(name)
    if not isinstance(private_key, Ed25519PrivateKey | MLDSA44PrivateKey):
        raise KeyFormatError(
            f"expected an Ed25519 or ML-DSA-44 private key, got {type(private_key).__name__}"
        )
    cp = tlog_checkpoint.parse_body(text)
    _check_timestamp(timestamp)
    if isinstance(private_key, Ed25519PrivateKey):
        message = cosignature_message(text, timestamp)
    else:
        message = subtree_message(name, timestamp, cp.origin, 0, cp.size, cp.root_hash)
    signature = timestamp.to_bytes(8, "big") + private_key.sign(message)
    return NoteSignature(name, cosigner_key_id(name, private_key.public_key()), signature)


def add_cosignature(
    note: bytes, name: str, private_key: CosignerPrivateKey, timestamp: int
) -> bytes:
    """Return ``note`` (a signed checkpoint) with ``name``'s cosignature added or replaced.

    Verify the note's log signature and consistency before calling this (rule 4).
    """
    parsed = parse_note(note)
    return add_signature_lines(note, [cosign(parsed.text, name, private_key, timestamp)])


def sign_subtree(
    name: str,
    private_key: MLDSA44PrivateKey,
    origin: str,
    start: int,
    end: int,
    root_hash: bytes,
    timestamp: int = 0,
) -> bytes:
    """Return ``timestamp || ML-DSA-44 signature`` over subtree ``[start, end)`` of ``origin``."""
    _require_name(name)
    if not isinstance(private_key, MLDSA44PrivateKey):
        raise KeyFormatError(f"expected an ML-DSA-44 private key, got {type(private_key).__name__}")
    message = subtree_message(name, timestamp, origin, start, end, root_hash)
    return timestamp.to_bytes(8, "big") + private_key.sign(message)
