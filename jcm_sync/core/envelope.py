"""DSSE envelopes and Ed25519 keys: how a record becomes evidence.

Why this module exists: a record crossing between two governments must be checkable
by anyone holding the partnership's trust root, and must stay byte-for-byte what its
author signed. DSSE (github.com/secure-systems-lab/dsse, protocol.md) gives that
with the fewest moving parts: the signature covers ``PAE(payloadType, payload)``, so
the payload type is authenticated and the payload is never canonicalised.

Rules:

1. Verify before parsing: ``open_envelope`` checks only the envelope's own JSON
   shape; ``verify_envelope`` checks every signature over the PAE of the exact
   payload bytes before anyone decodes the payload.
2. Every signature must verify under a known key; an unknown, invalid or duplicate
   signature refuses the whole envelope ("extra signatures" are not ignored: an
   envelope is evidence, and evidence with a forged part is not accepted).
3. A ``keyid`` is a lookup hint, never an authorisation: the signature must verify
   under the key the trust root holds for that id. Authority (who may sign what) is
   decided by ``trust.py``, not here. Because the hint is not signed, it must name
   the signing key exactly.
4a. An envelope must be in the canonical form our encoder produces (compact JSON,
   canonical base64); the parts a signature does not cover could otherwise vary and
   give one signed record many record ids (docs/adr/0001).
4. The record id is SHA-256 of the exact envelope bytes as received or produced;
   envelopes are stored and forwarded as those bytes, never re-encoded.
5. One payload type per record kind (``records.payload_type``); a payload whose
   ``kind`` disagrees with its payload type is refused.
6. Keys are Ed25519 or ML-DSA-44 (``pq.py``). A key id is the hex SHA-256 of the
   public key's SPKI DER. Private keys are PKCS#8 PEM (optionally encrypted), public
   keys SPKI PEM; ``PublicKey``/``PrivateKey`` are the Ed25519 ones, ``AnyPublicKey``/
   ``AnyPrivateKey`` either algorithm.
7. Hybrid envelopes: one envelope may carry an Ed25519 and an ML-DSA-44 signature over
   the same PAE; each is verified like any other (rule 2). Which algorithms a role
   needs is the trust root's decision (``trust.py`` rule 7), not this module's.
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, TypeAlias

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from jcm_sync.core.ed25519 import verify as ed25519_verify
from jcm_sync.core.pq import (
    ML_DSA_44_PUBLIC_KEY_SIZE,
    MLDSA44PrivateKey,
    MLDSA44PublicKey,
    is_mldsa44_private,
    is_mldsa44_public,
    spki_key_id,
)
from jcm_sync.core.pq import KeyId as KeyId
from jcm_sync.core.records import (
    RECORD_TYPES,
    Record,
    decode_record,
    encode_record,
    kind_of_payload_type,
    payload_type,
)
from jcm_sync.errors import (
    EnvelopeFormatError,
    KeyFormatError,
    SignatureError,
    UnknownKeyError,
)

MAX_ENVELOPE_BYTES: Final = 1 << 20
"""Largest envelope accepted; a JCM record is a few kilobytes."""

MAX_SIGNATURES: Final = 16


# --- PAE --------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths as ASCII decimal
    of the byte length, no leading zeros (DSSE protocol.md).
    """
    ptype = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)


# --- keys -------------------------------------------------------------------------


def key_id_of(public: ed25519.Ed25519PublicKey) -> KeyId:
    """Hex SHA-256 of the key's SubjectPublicKeyInfo DER."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki_key_id(der)


@dataclass(frozen=True, eq=False)
class PublicKey:
    """An Ed25519 public key with its key id."""

    key: ed25519.Ed25519PublicKey
    algorithm: ClassVar[Literal["ed25519"]] = "ed25519"

    @cached_property
    def key_id(self) -> KeyId:
        return key_id_of(self.key)

    @cached_property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """The project's one Ed25519 rule (``core/ed25519.py``, ADR 0038)."""
        return ed25519_verify(self.raw, signature, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != 32:
            raise KeyFormatError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        return cls(ed25519.Ed25519PublicKey.from_public_bytes(raw))

    @classmethod
    def from_pem(cls, data: bytes, *, where: str | None = None) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"not a PEM public key ({exc})", where=where) from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyFormatError(f"expected an Ed25519 key, got {type(key).__name__}", where=where)
        return cls(key)


@dataclass(frozen=True, eq=False)
class PrivateKey:
    """An Ed25519 private key; signs bytes."""

    key: ed25519.Ed25519PrivateKey
    algorithm: ClassVar[Literal["ed25519"]] = "ed25519"

    @cached_property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    @property
    def key_id(self) -> KeyId:
        return self.public.key_id

    @cached_property
    def key_id_bytes(self) -> bytes:
        return self.public.key_id.encode("ascii")

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        if len(seed) != 32:
            raise KeyFormatError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    def pem(self, passphrase: bytes | None = None) -> bytes:
        algo: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algo
        )

    @classmethod
    def from_pem(
        cls, data: bytes, passphrase: bytes | None = None, *, where: str | None = None
    ) -> PrivateKey:
        key = _load_pem_private(data, passphrase, where)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyFormatError(f"expected an Ed25519 key, got {type(key).__name__}", where=where)
        return cls(key)


AnyPublicKey: TypeAlias = PublicKey | MLDSA44PublicKey
AnyPrivateKey: TypeAlias = PrivateKey | MLDSA44PrivateKey


def public_key_from_raw(raw: bytes) -> AnyPublicKey:
    """A raw public key of either algorithm, told apart by its length (32 or 1,312 B)."""
    if len(raw) == ML_DSA_44_PUBLIC_KEY_SIZE:
        return MLDSA44PublicKey.from_raw(raw)
    if len(raw) != 32:
        raise KeyFormatError(
            f"a public key is 32 bytes (Ed25519) or {ML_DSA_44_PUBLIC_KEY_SIZE} bytes "
            f"(ML-DSA-44), not {len(raw)}"
        )
    return PublicKey.from_raw(raw)


def public_key_from_pem(data: bytes, *, where: str | None = None) -> AnyPublicKey:
    """An SPKI PEM public key of either algorithm."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a PEM public key ({exc})", where=where) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return PublicKey(key)
    if is_mldsa44_public(key):
        return MLDSA44PublicKey(key)
    raise KeyFormatError(
        f"expected an Ed25519 or ML-DSA-44 key, got {type(key).__name__}", where=where
    )


def _load_pem_private(data: bytes, passphrase: bytes | None, where: str | None) -> Any:
    """``cryptography``'s key from PKCS#8 PEM, its failures as ``KeyFormatError``; the
    callers check the algorithm."""
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        # cryptography says TypeError for a missing or unexpected passphrase
        raise KeyFormatError(f"passphrase problem: {exc}", where=where) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(
            f"not a PKCS#8 PEM private key, or wrong passphrase ({exc})", where=where
        ) from None


def private_key_from_pem(
    data: bytes, passphrase: bytes | None = None, *, where: str | None = None
) -> AnyPrivateKey:
    """A PKCS#8 PEM private key of either algorithm (ML-DSA-44: the seed-only form)."""
    key = _load_pem_private(data, passphrase, where)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return PrivateKey(key)
    if is_mldsa44_private(key):
        return MLDSA44PrivateKey(key)
    raise KeyFormatError(
        f"expected an Ed25519 or ML-DSA-44 key, got {type(key).__name__}", where=where
    )


def generate_key(algorithm: str = "ed25519") -> AnyPrivateKey:
    """A new private key of ``algorithm`` (``ed25519`` or ``ml-dsa-44``)."""
    if algorithm == "ed25519":
        return PrivateKey.generate()
    if algorithm == "ml-dsa-44":
        return MLDSA44PrivateKey.generate()
    raise KeyFormatError(f"unknown key algorithm {algorithm!r}; use ed25519 or ml-dsa-44")


# --- envelopes --------------------------------------------------------------------


class Signature(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    # DSSE's keyid is an optional, unauthenticated hint ("empty fields may be
    # omitted", envelope.md); without one, every known key is tried (rule 3)
    keyid: str = ""
    sig: bytes


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The DSSE JSON envelope; bytes fields travel as standard base64."""

    payload: bytes
    payloadType: str  # the DSSE wire name
    signatures: tuple[Signature, ...]


_env_encoder = msgspec.json.Encoder()
_env_decoder = msgspec.json.Decoder(Envelope)


def record_id(envelope_bytes: bytes) -> str:
    """The record id: hex SHA-256 of the exact envelope bytes."""
    return hashlib.sha256(envelope_bytes).hexdigest()


def sign_payload(payload_type: str, payload: bytes, keys: Sequence[AnyPrivateKey]) -> bytes:
    """Sign ``payload`` with every key and return the envelope bytes.

    The bytes are laid out directly rather than through a Struct and the encoder: this
    runs once per record on the signing hot path, and ``open_envelope``'s canonical
    check (and a test) hold it to exactly what the encoder would produce.
    """
    if not keys:
        raise SignatureError("an envelope needs at least one signature")
    raw_type, json_type = _PTYPES.get(payload_type) or _ptype(payload_type)
    message = b"DSSEv1 %d %b %d %b" % (len(raw_type), raw_type, len(payload), payload)
    parts = [b'{"payload":"', b2a_base64(payload, newline=False), b'","payloadType":', json_type]
    sep = b',"signatures":[{"keyid":"'
    for k in keys:
        sig = b2a_base64(k.key.sign(message), newline=False)
        parts += (sep, k.key_id_bytes, b'","sig":"', sig, b'"}')
        sep = b',{"keyid":"'
    parts.append(b"]}")
    return b"".join(parts)


def _ptype(payload_type: str) -> tuple[bytes, bytes]:
    """The payload type as PAE bytes and as a JSON string."""
    return payload_type.encode("utf-8"), _env_encoder.encode(payload_type)


def sign_record(record: Record, keys: Sequence[AnyPrivateKey]) -> bytes:
    """Encode one of our own records and sign it into an envelope."""
    ptype = _RECORD_PTYPES.get(type(record)) or payload_type(record.kind)
    return sign_payload(ptype, encode_record(record), keys)


# Read-only tables built once at import, for the signing hot path: the record kinds'
# payload types, and each as PAE bytes and JSON string. Any other type (a trust
# root's, signed rarely) is encoded per call, so nothing here grows at run time.
_RECORD_PTYPES: Final[Mapping[type, str]] = MappingProxyType(
    {t: payload_type(k) for k, t in RECORD_TYPES.items()}
)
_PTYPES: Final[Mapping[str, tuple[bytes, bytes]]] = MappingProxyType(
    {p: _ptype(p) for p in _RECORD_PTYPES.values()}
)


def add_signature(envelope_bytes: bytes, key: AnyPrivateKey) -> bytes:
    """Countersign an envelope: a new envelope (and record id) with one more signature.

    The payload bytes are kept exactly; only the signature list grows.
    """
    env = open_envelope(envelope_bytes)
    if any(s.keyid == key.key_id for s in env.signatures):
        raise SignatureError(f"key {key.key_id[:16]} has already signed this envelope")
    sig = Signature(keyid=key.key_id, sig=key.sign(pae(env.payloadType, env.payload)))
    return _env_encoder.encode(
        Envelope(
            payload=env.payload, payloadType=env.payloadType, signatures=(*env.signatures, sig)
        )
    )


def open_envelope(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Check the envelope's JSON shape only; its payload is not parsed here."""
    if len(data) > max_bytes:
        raise EnvelopeFormatError(f"envelope is {len(data)} bytes, over the {max_bytes} limit")
    try:
        env = _env_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise EnvelopeFormatError(f"not a DSSE envelope: {exc}", where="envelope") from None
    except msgspec.DecodeError as exc:
        raise EnvelopeFormatError(f"envelope is not valid JSON: {exc}", where="envelope") from None
    except UnicodeDecodeError as exc:
        # msgspec raises this, not a DecodeError, for invalid UTF-8 inside a string
        raise EnvelopeFormatError(f"envelope is not valid UTF-8: {exc}", where="envelope") from None
    except RecursionError:  # msgspec's nesting limit: bad input, not a bug
        raise EnvelopeFormatError(
            "JSON is nested too deeply to be an envelope", where="envelope"
        ) from None
    if _env_encoder.encode(env) != data:
        # One signed content must have one record id: bytes outside the signature
        # (whitespace, key order, non-canonical base64 bits) must not vary.
        raise EnvelopeFormatError(
            "envelope is not in canonical form (compact JSON, payload/payloadType/"
            "signatures in that order, canonical base64)",
            where="envelope",
        )
    if not env.signatures:
        raise EnvelopeFormatError("envelope is unsigned: no signatures", where="signatures")
    if len(env.signatures) > MAX_SIGNATURES:
        raise EnvelopeFormatError(
            f"{len(env.signatures)} signatures, over the {MAX_SIGNATURES} limit",
            where="signatures",
        )
    return env


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope whose every signature verified; the payload is not yet trusted
    for authority (see ``trust.py``)."""

    raw: bytes
    envelope: Envelope
    signers: tuple[AnyPublicKey, ...]

    @cached_property
    def record_id(self) -> str:
        return record_id(self.raw)

    @property
    def payload_type(self) -> str:
        return self.envelope.payloadType

    @property
    def payload(self) -> bytes:
        return self.envelope.payload

    @property
    def signer_ids(self) -> tuple[KeyId, ...]:
        return tuple(k.key_id for k in self.signers)

    @cached_property
    def kind(self) -> str:
        kind = kind_of_payload_type(self.envelope.payloadType)
        if kind is None:
            raise EnvelopeFormatError(
                f"payload type {self.envelope.payloadType!r} is not a jcm-sync record type",
                where="payloadType",
            )
        return kind

    def record(self) -> Record:
        """Decode the payload as the kind its payload type names."""
        return decode_record(self.envelope.payload, self.kind)


def accepted_by_ed25519(data: bytes, keys: Mapping[str, bytes]) -> Envelope | None:
    """The opened envelope if ``verify_envelope(data, ...)`` accepts it with every
    signature by an Ed25519 key of ``keys`` (key id to raw 32-byte key); otherwise None,
    and the caller runs ``verify_envelope`` for the verdict and its specific refusal.

    The hub's verify workers run it on every record (ADR 0051): the same checks in the
    same order as ``open_envelope`` and ``verify_envelope`` (size, shape, canonical form,
    one to ``MAX_SIGNATURES`` signatures, each under the key its id names, through the
    one Ed25519 rule, no key twice), without the objects, messages and locations only a
    refusal needs. None never means refused: an ML-DSA-44 or unknown key id, a bad
    signature, anything unexpected, all go to ``verify_envelope``.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        return None
    try:  # anything unexpected is worded (or raised) by verify_envelope, as before
        env = _env_decoder.decode(data)
        sigs = env.signatures
        if not sigs or len(sigs) > MAX_SIGNATURES or _env_encoder.encode(env) != data:
            return None
        message = pae(env.payloadType, env.payload)
        seen: list[bytes] = []
        for s in sigs:
            key = keys.get(s.keyid)
            if key is None or key in seen or not ed25519_verify(key, s.sig, message):
                return None
            seen.append(key)
    except Exception:
        return None
    return env


def verify_envelope(
    data: bytes,
    keys: Mapping[str, AnyPublicKey] | Iterable[AnyPublicKey],
    *,
    max_bytes: int = MAX_ENVELOPE_BYTES,
) -> VerifiedEnvelope:
    """Verify every signature of an envelope against known keys (rules 1-3).

    ``keys`` maps key id to key (or is an iterable of keys). Raises
    ``EnvelopeFormatError`` for a malformed envelope, ``UnknownKeyError`` when a
    signature matches no known key, ``SignatureError`` when it does not verify or
    when one key signed twice.
    """
    env = open_envelope(data, max_bytes=max_bytes)
    by_id = dict(keys) if isinstance(keys, Mapping) else {k.key_id: k for k in keys}
    message = pae(env.payloadType, env.payload)
    signers: list[AnyPublicKey] = []
    for n, s in enumerate(env.signatures):
        where = f"signatures[{n}]"
        key = by_id.get(s.keyid)
        if key is None:
            # the key id is a lookup hint, never an authorisation; still, it is not
            # signed, so it must name the signing key exactly, or one signed record
            # would travel under many record ids
            match = next((k for k in by_id.values() if k.verify(s.sig, message)), None)
            if match is not None:
                raise EnvelopeFormatError(
                    f"signature made by key {match.key_id[:16]} carries key id "
                    f"{s.keyid[:16] or '(none)'}",
                    where=where,
                )
            raise UnknownKeyError(
                f"signature by key {s.keyid[:16] or '(no key id)'} matches no trusted key",
                where=where,
            )
        if not key.verify(s.sig, message):
            raise SignatureError(
                f"signature by key {s.keyid[:16]} does not verify over this payload",
                where=where,
            )
        if key in signers:
            raise SignatureError(f"key {key.key_id[:16]} signed twice", where=where)
        signers.append(key)
    return VerifiedEnvelope(raw=data, envelope=env, signers=tuple(signers))
