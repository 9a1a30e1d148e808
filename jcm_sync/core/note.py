"""C2SP signed notes and their keys: how a signer vouches for a text, and how we check it.

Why this module exists
----------------------
A jcm-sync log states what it holds as a checkpoint (``checkpoint.py``), and the checkpoint
travels as a *signed note* (c2sp.org/signed-note): the text, a blank line, then one line per
signature, ``— <key name> <base64(key ID || signature)>``. Using the C2SP format rather than our
own lets any tlog tool (Go's ``golang.org/x/mod/sumdb/note``, transparency-dev witnesses) read
and cosign our checkpoints, and this module is tested against the Go package's published
vectors.

It is pure: bytes, strings and keys in, values out. No I/O, no clock.

Rules
-----
1. Verify before you parse. ``open_note`` checks the note's syntax and signatures and only
   then hands back the text. Nothing here re-encodes a peer's bytes to verify them: the
   signature covers the received text, byte for byte.
2. Signature lines are matched to keys by the pair (key name, key ID). A signature whose pair
   matches no known key is ignored (it may be a witness cosignature, or a rotated key), as
   the spec requires. A signature whose pair matches a known key MUST verify, or the whole
   note is refused (``SignatureError``). A note no known key verified is refused
   (``UnknownKeyError``).
3. Parsing is strict and every refusal says what and where (``NoteFormatError``, a
   ``BadDataError``): valid UTF-8, no control characters but newline, lines of at most
   ``MAX_LINE_BYTES``, notes of at most ``MAX_NOTE_BYTES`` and ``MAX_SIGNATURES``
   signatures, and base64 in canonical form (so one value has exactly one encoding, and a
   note cannot be altered without changing its bytes). ``decode_text`` and
   ``decode_base64`` apply the same rules to a checkpoint's text (``checkpoint.py``).
4. This module implements Ed25519 (signature type 0x01). Its key ID is
   ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``, read as a big-endian
   uint32; a verifier key is written ``<name>+<8 hex digits of key ID>+<base64(0x01 || key)>``.
   Other signature types plug in through the ``NoteVerifier`` protocol (a name, a key ID and
   ``verify(text, signature)``): ``cosignature.py`` gives the witness cosignatures of
   c2sp.org/tlog-cosignature, types 0x04 (Ed25519) and 0x06 (ML-DSA-44), and
   ``add_signature_lines`` attaches any signature line to a note.

Theory of operation
-------------------
Signing::

    note = sign_note(body, name, private_key)    # body: newline-terminated UTF-8 text

Verifying::

    opened = open_note(note, [Verifier.from_vkey(peer_vkey)])
    # opened.body is the text a known key signed; only now parse it

A third party can cosign with ``add_signature`` after opening the note itself. Keys travel as
Go's key strings: ``vkey`` and ``Verifier.from_vkey`` for verifier keys, ``signer_key`` and
``parse_signer_key`` for the signer's private key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jcm_sync.core.ed25519 import verify as ed25519_verify
from jcm_sync.errors import (
    AmbiguousKeyError,
    BadDataError,
    KeyFormatError,
    NoteFormatError,
    SignatureError,
    UnknownKeyError,
)

__all__ = [
    "CONTROL_CHARACTERS",
    "ED25519_SIGNATURE_TYPE",
    "MAX_LINE_BYTES",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "NoteVerifier",
    "OpenedNote",
    "Verifier",
    "add_signature",
    "add_signature_lines",
    "decode_base64",
    "decode_text",
    "encode_base64",
    "is_key_name",
    "key_id",
    "open_note",
    "parse_note",
    "parse_signer_key",
    "sign_note",
    "signer_key",
    "vkey",
]


# ---------------------------------------------------------------------------------------------
# Limits and constants
# ---------------------------------------------------------------------------------------------

#: Signature type byte of Ed25519 in c2sp.org/signed-note.
ED25519_SIGNATURE_TYPE = 0x01

#: Most signatures a note may carry. The spec requires accepting at least 16; Go's note
#: package refuses more than 100, and so do we: it bounds the work one note can cost us.
MAX_SIGNATURES = 100

#: Longest line, in bytes. An Ed25519 signature line is under 200 bytes; 8 KiB leaves room
#: for the post-quantum signatures of up to ~5 kB the spec mentions (an ML-DSA-44 cosignature
#: line is about 3.3 kB).
MAX_LINE_BYTES = 8192

#: Largest note, in bytes, checked before anything else is done with it.
MAX_NOTE_BYTES = 1 << 20

_EM_DASH = "\u2014"
_SIG_PREFIX = _EM_DASH + " "
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_ED25519_KEY_SIZE = 32

#: Control characters a note may not hold; newline, which ends lines, is the one allowed.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


# ---------------------------------------------------------------------------------------------
# Text and base64 rules, shared by notes, keys and checkpoint bodies
# ---------------------------------------------------------------------------------------------


def decode_base64(text: str) -> bytes | None:
    """Decode standard base64 (RFC 4648 §4), or return None unless it is canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    # b64decode tolerates non-zero padding bits; re-encoding catches those, so every value
    # has exactly one accepted spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def encode_base64(raw: bytes) -> str:
    """Encode standard base64 (RFC 4648 §4), the one spelling ``decode_base64`` accepts."""
    return base64.b64encode(raw).decode("ascii")


def is_key_name(name: object) -> TypeGuard[str]:
    """Signed-note key names are non-empty, with no Unicode space, '+' or control character."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(ch.isspace() or ch < " " for ch in name)
    )


def _require_key_name(name: object) -> str:
    if not is_key_name(name):
        raise KeyFormatError(
            f"key name {name!r} must be non-empty, without spaces, '+' or control characters"
        )
    return name


def decode_text(data: object, what: str, error: type[BadDataError]) -> str:
    """Return ``data`` as text once it passes the signed-note encoding rules, or raise ``error``.

    Rules: bytes, at most MAX_NOTE_BYTES, valid UTF-8, no control character but newline, no
    line longer than MAX_LINE_BYTES. Errors name the line (1-based) and column.
    """
    if not isinstance(data, bytes):
        raise error(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) > MAX_NOTE_BYTES:
        raise error(f"{what} is {len(data)} bytes, over the limit of {MAX_NOTE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{what} is not valid UTF-8", where=f"{what} line {line}, byte {exc.start}"
        ) from exc
    # One regex pass over the whole text; line and column are worked out only on failure.
    bad = CONTROL_CHARACTERS.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        hint = " (CRLF line endings?)" if bad.group() == "\r" else ""
        raise error(
            f"control character U+{ord(bad.group()):04X} is not allowed{hint}",
            where=f"{what} line {line}, column {column}",
        )
    for number, line_text in enumerate(text.split("\n"), start=1):
        size = len(line_text.encode("utf-8"))
        if size > MAX_LINE_BYTES:
            raise error(
                f"line is {size} bytes, over the limit of {MAX_LINE_BYTES}",
                where=f"{what} line {number}",
            )
    return text


# ---------------------------------------------------------------------------------------------
# Keys (rule 4)
# ---------------------------------------------------------------------------------------------


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()


def key_id(name: str, public_key: Ed25519PublicKey) -> int:
    """Return the signed-note key ID of an Ed25519 key under ``name``, as a uint32."""
    _require_key_name(name)
    if not isinstance(public_key, Ed25519PublicKey):
        raise KeyFormatError(f"expected an Ed25519 public key, got {type(public_key).__name__}")
    return _key_id(name, _raw_public(public_key))


def _key_id(name: str, raw_public: bytes) -> int:
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + raw_public
    ).digest()
    return int.from_bytes(digest[:4], "big")


def vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the verifier key string ``<name>+<key ID hex>+<base64(0x01 || public key)>``."""
    kid = key_id(name, public_key)
    encoded = encode_base64(bytes([ED25519_SIGNATURE_TYPE]) + _raw_public(public_key))
    return f"{name}+{kid:08x}+{encoded}"


def signer_key(name: str, private_key: Ed25519PrivateKey) -> str:
    """Return Go's signer key string ``PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 || seed)>``.

    It holds the private key in clear: write it only to a file of mode 0600.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFormatError(f"expected an Ed25519 private key, got {type(private_key).__name__}")
    kid = key_id(name, private_key.public_key())
    seed = private_key.private_bytes_raw()
    return (
        f"{_PRIVATE_PREFIX}{name}+{kid:08x}+{encode_base64(bytes([ED25519_SIGNATURE_TYPE]) + seed)}"
    )


def _split_key_string(text: str, what: str) -> tuple[str, int, bytes]:
    """Split ``<name>+<hex id>+<base64 Ed25519 key>`` into (name, id, 32 raw key bytes)."""
    # The base64 part may itself contain '+', so split only at the first two.
    name, _, rest = text.partition("+")
    hex_id, sep, encoded = rest.partition("+")
    if not sep:
        raise KeyFormatError("must have the form <name>+<key id>+<key>", where=what)
    if not is_key_name(name):
        raise KeyFormatError(
            f"key name {name!r} is empty or has a space or control character", where=what
        )
    if not _HEX8.fullmatch(hex_id):
        raise KeyFormatError(f"key ID {hex_id!r} is not 8 hex digits", where=what)
    raw = decode_base64(encoded)
    if raw is None or not raw:
        raise KeyFormatError("key material is not canonical base64", where=what)
    if raw[0] != ED25519_SIGNATURE_TYPE:
        raise KeyFormatError(
            f"signature type is 0x{raw[0]:02x}; only Ed25519 (0x01) is supported", where=what
        )
    if len(raw) != 1 + _ED25519_KEY_SIZE:
        raise KeyFormatError(f"Ed25519 key is {len(raw) - 1} bytes, not 32", where=what)
    return name, int(hex_id, 16), raw[1:]


def parse_signer_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse Go's ``PRIVATE+KEY+...`` signer key string into (key name, private key)."""
    if not isinstance(skey, str) or not skey.startswith(_PRIVATE_PREFIX):
        raise KeyFormatError("must start with 'PRIVATE+KEY+'", where="signer key")
    name, kid, seed = _split_key_string(skey[len(_PRIVATE_PREFIX) :], "signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    # The ID commits to the public key, which we only learn by deriving it from the seed.
    if _key_id(name, _raw_public(private_key.public_key())) != kid:
        raise KeyFormatError(f"key ID {kid:08x} does not match the key", where="signer key")
    return name, private_key


@dataclass(frozen=True, slots=True, repr=False)
class Verifier:
    """A trusted Ed25519 key under a key name: it verifies the signatures that name it.

    Two Verifiers are equal when name and public key are; ``key_id`` is derived (rule 4).
    """

    name: str
    public_key: Ed25519PublicKey = field(compare=False)
    public_bytes: bytes = field(init=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _require_key_name(self.name)
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise KeyFormatError(
                f"expected an Ed25519 public key, got {type(self.public_key).__name__}"
            )
        raw = _raw_public(self.public_key)
        object.__setattr__(self, "public_bytes", raw)
        object.__setattr__(self, "key_id", _key_id(self.name, raw))

    @classmethod
    def from_vkey(cls, vkey_text: str) -> Verifier:
        """Build a Verifier from ``<name>+<key ID hex>+<base64(0x01 || key)>``.

        Raises ``KeyFormatError`` on any defect, including a key ID that does not match.
        """
        if not isinstance(vkey_text, str):
            raise KeyFormatError(
                f"must be a str, got {type(vkey_text).__name__}", where="verifier key"
            )
        name, kid, raw = _split_key_string(vkey_text, "verifier key")
        try:
            public_key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyFormatError("not an Ed25519 public key", where="verifier key") from exc
        verifier = cls(name, public_key)
        if verifier.key_id != kid:
            raise KeyFormatError(
                f"key ID {kid:08x} does not match the key (expected {verifier.key_id:08x})",
                where="verifier key",
            )
        return verifier

    def __repr__(self) -> str:
        return f"Verifier({self.name}+{self.key_id:08x})"

    def vkey(self) -> str:
        """Return this verifier's key string."""
        return vkey(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return True iff ``signature`` is this key's Ed25519 signature of ``message``."""
        return ed25519_verify(self.public_bytes, signature, message)  # ADR 0038


@runtime_checkable
class NoteVerifier(Protocol):
    """Any key ``open_note`` can check a signature line with (rule 4).

    ``verify`` gets the note text (final newline included) and the signature bytes after
    the key ID, and returns True only for a valid signature; it never raises.
    """

    @property
    def name(self) -> str: ...
    @property
    def key_id(self) -> int: ...
    def verify(self, message: bytes, signature: bytes) -> bool: ...


# ---------------------------------------------------------------------------------------------
# Signed notes (c2sp.org/signed-note)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the key ID, and the signature bytes that follow it."""

    name: str
    key_id: int
    signature: bytes

    @property
    def key(self) -> str:
        """The ``name+keyid`` label used in messages, as Go's note package prints it."""
        return f"{self.name}+{self.key_id:08x}"

    def line(self) -> str:
        """Return the signature line, newline included, exactly as it was (canonical base64)."""
        encoded = encode_base64(self.key_id.to_bytes(4, "big") + self.signature)
        return f"{_SIG_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A syntactically valid note whose signatures have NOT been verified: do not trust text."""

    text: bytes
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note with at least one signature verified by a known key.

    ``body`` is the signed text (final newline included, blank separator line excluded).
    ``verified`` lists the signatures of known keys, all of which verified; ``unverified``
    those of unknown keys, kept for diagnostics and cosigning, never for trust.
    """

    body: bytes
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]

    @property
    def verified_by(self) -> tuple[str, ...]:
        """The names of the keys whose signatures verified, in note order, without repeats."""
        return tuple(dict.fromkeys(sig.name for sig in self.verified))


def parse_note(note: bytes) -> Note:
    """Split a signed note into its text and signature lines, checking syntax only.

    Raises ``NoteFormatError``. The result is untrusted: use ``open_note`` to trust it.
    """
    text = decode_text(note, "note", NoteFormatError)
    # The text ends at the *last* blank line: the text itself may contain blank lines.
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("no blank line separates the text from the signature lines")
    body, block = text[: split + 1], text[split + 2 :]
    if block == "":
        raise NoteFormatError("no signature lines follow the blank line")
    if not block.endswith("\n"):
        raise NoteFormatError("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    # Count before decoding any line: a hostile note must not cost us more than the limit.
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"{len(lines)} signatures, over the limit of {MAX_SIGNATURES}")
    first = body.count("\n") + 2  # 1-based note line number of the first signature line
    return Note(
        body.encode("utf-8"),
        tuple(
            _parse_signature_line(line, f"note line {first + i}") for i, line in enumerate(lines)
        ),
    )


def _parse_signature_line(line: str, where: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise NoteFormatError(
            "signature line must start with an em dash (U+2014) and a space", where=where
        )
    name, sep, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise NoteFormatError(
            "signature line has no space between key name and signature", where=where
        )
    if not is_key_name(name):
        raise NoteFormatError(
            f"key name {name!r} is empty or contains a space, '+' or control character",
            where=where,
        )
    raw = decode_base64(encoded)
    if raw is None:
        raise NoteFormatError("signature is not canonical base64", where=where)
    if len(raw) < 5:
        raise NoteFormatError(
            f"signature is {len(raw)} bytes, too short for a key ID and a signature", where=where
        )
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _check_note_body(body: object) -> bytes:
    if not isinstance(body, bytes):
        raise NoteFormatError(f"note text must be bytes, got {type(body).__name__}")
    if not decode_text(body, "note text", NoteFormatError).endswith("\n"):
        raise NoteFormatError("note text must be non-empty and end with a newline")
    return body


def _signature_for(body: bytes, name: str, private_key: Ed25519PrivateKey) -> NoteSignature:
    _require_key_name(name)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFormatError(f"expected an Ed25519 private key, got {type(private_key).__name__}")
    return NoteSignature(name, key_id(name, private_key.public_key()), private_key.sign(body))


def sign_note(body: bytes, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Return the signed note: ``body``, a blank line, and one signature line by ``name``.

    ``body`` must satisfy the note rules (UTF-8, newline-terminated, no control characters)
    so that every note we sign is one ``open_note`` accepts.
    """
    body = _check_note_body(body)
    return body + b"\n" + _signature_for(body, name, private_key).line().encode("utf-8")


def add_signature(note: bytes, name: str, private_key: Ed25519PrivateKey) -> bytes:
    """Return ``note`` with a signature by ``name`` added (or replacing that key's old one).

    Existing signature lines are kept as they are. This signs whatever text the note holds:
    open and check the note first; cosigning is vouching.
    """
    parsed = parse_note(note)
    return _with_lines(parsed, [_signature_for(parsed.text, name, private_key)])


def add_signature_lines(note: bytes, signatures: Sequence[NoteSignature]) -> bytes:
    """Return ``note`` with ``signatures`` appended, each replacing a line of its (name, key ID).

    Nothing is verified here: use it to attach lines that were made or checked elsewhere
    (a witness's cosignatures, ``cosignature.py``), then open the result with the keys you
    trust.
    """
    for sig in signatures:
        if not isinstance(sig, NoteSignature) or not is_key_name(sig.name):
            raise NoteFormatError(f"not a valid note signature: {sig!r}")
    return _with_lines(parse_note(note), signatures)


def _with_lines(parsed: Note, new: Sequence[NoteSignature]) -> bytes:
    pairs = {(s.name, s.key_id) for s in new}
    kept = [s for s in parsed.signatures if (s.name, s.key_id) not in pairs]
    unique = list(dict.fromkeys(new))
    if len(kept) + len(unique) > MAX_SIGNATURES:
        raise NoteFormatError(
            f"the note would have {len(kept) + len(unique)} signatures, "
            f"over the limit of {MAX_SIGNATURES}"
        )
    lines = "".join(s.line() for s in [*kept, *unique])
    return parsed.text + b"\n" + lines.encode("utf-8")


def open_note(note: bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Check a note's syntax and signatures against the known ``verifiers`` (rule 2).

    ``verifiers`` are ``Verifier`` (Ed25519) keys or any other ``NoteVerifier`` (rule 4).

    Raises ``NoteFormatError`` if malformed, ``SignatureError`` if a known key's signature
    does not verify, ``AmbiguousKeyError`` if the note names a (name, key ID) pair two
    different known keys share, and ``UnknownKeyError`` if no known key signed it.
    """
    parsed = parse_note(note)
    known: dict[tuple[str, int], NoteVerifier | None] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise KeyFormatError(f"verifiers must be note verifiers, got {type(v).__name__}")
        pair = (v.name, v.key_id)
        # The same key listed twice is harmless; two keys under one pair are not (None).
        known[pair] = v if known.get(pair, v) == v else None

    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    first = parsed.text.count(b"\n") + 2
    for i, sig in enumerate(parsed.signatures):
        pair = (sig.name, sig.key_id)
        if pair not in known:
            if sig not in unverified:  # drop repeated identical lines, as Go does
                unverified.append(sig)
            continue
        verifier = known[pair]
        if verifier is None:
            raise AmbiguousKeyError(f"two known keys share the name and ID {sig.key}")
        # Every signature by a known key is checked, repeats included: the spec says
        # verifiers MUST verify them, and one bad line means someone altered the note.
        if not verifier.verify(parsed.text, sig.signature):
            raise SignatureError(
                f"signature by known key {sig.key} does not verify", where=f"note line {first + i}"
            )
        if sig not in verified:
            verified.append(sig)

    if not verified:
        signers = ", ".join(s.key for s in unverified)
        raise UnknownKeyError(
            f"no signature by a known key; the note is signed by {signers}; "
            f"known keys: {', '.join(f'{n}+{k:08x}' for n, k in known) or 'none'}"
        )
    return OpenedNote(parsed.text, tuple(verified), tuple(unverified))
