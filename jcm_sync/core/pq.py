"""ML-DSA-44 keys (FIPS 204): the post-quantum signature option beside Ed25519.

Why this module exists: a record signed today may be evidence in 2050, after a quantum
computer could forge Ed25519. A partnership can therefore list ML-DSA-44 keys in its
trust root and require them per role (``trust.py``), sign envelopes with both
algorithms at once (hybrid DSSE, ``envelope.py``) and sign requests with ``ml-dsa-44``
(C2SP httpsig-pq, ``net/signing.py``). This module holds the ML-DSA-44 key objects and
the one check that the installed ``cryptography`` can do ML-DSA at all
(docs/adr/0033-ml-dsa-44-hybrid-signatures.md).

Rules:

1. An ML-DSA-44 private key is its 32-byte seed (FIPS 204 ``xi``), as C2SP and pyca
   keep it; on disk it is PKCS#8 PEM in the seed-only form (``[0] OCTET STRING`` of 32
   bytes, what ``cryptography`` writes), optionally encrypted; public keys are SPKI PEM
   around the raw 1,312-byte key.
2. A key id is the hex SHA-256 of the public key's SPKI DER, as for Ed25519, so ids of
   the two algorithms never collide and a root names every key the same way.
3. Signatures are pure ML-DSA with the empty context string: no prehash, no
   external mu (httpsig-pq; DSSE signs the PAE bytes directly). A signature is 2,420
   bytes; a wrong length is a signature that does not verify, never an exception.
4. ``cryptography`` is imported for ML-DSA only inside functions: a build without it
   (older than 48, or an OpenSSL without ML-DSA) still runs Ed25519, and
   ``require_mldsa`` says clearly why ML-DSA is unavailable. Daemons and the key
   commands call it at start-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Final, Literal, NewType, TypeGuard

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from jcm_sync.errors import AlgorithmRequiredError, ConfigError, KeyFormatError

if TYPE_CHECKING:
    from types import ModuleType

    from cryptography.hazmat.primitives.asymmetric import mldsa

KeyId = NewType("KeyId", str)

Algorithm = Literal["ed25519", "ml-dsa-44"]
ED25519: Final = "ed25519"
ML_DSA_44: Final = "ml-dsa-44"
ALGORITHMS: Final[tuple[Algorithm, ...]] = (ED25519, ML_DSA_44)

Requirement = Literal["ed25519", "ml-dsa-44", "both"]
"""What a trust root requires of each signer of a role (``trust.py`` rule 7)."""
NEEDED: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        ED25519: frozenset({ED25519}),
        ML_DSA_44: frozenset({ML_DSA_44}),
        "both": frozenset({ED25519, ML_DSA_44}),
    }
)

ED25519_PUBLIC_KEY_SIZE: Final = 32
ML_DSA_44_PUBLIC_KEY_SIZE: Final = 1312
"""FIPS 204, table 2: pk of ML-DSA-44."""
ML_DSA_44_SIGNATURE_SIZE: Final = 2420
"""FIPS 204, table 2: sigma of ML-DSA-44."""
SEED_SIZE: Final = 32

_NEEDS: Final = (
    "ML-DSA-44 needs the Python package cryptography 48 or later built with ML-DSA "
    "(the PyPI wheels are; Debian's python3-cryptography is too old): "
    "pip install 'cryptography>=48'"
)


def _mldsa() -> ModuleType:
    """The ``cryptography`` ML-DSA module, or ConfigError saying what to install (rule 4)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError as exc:
        raise ConfigError(f"{_NEEDS} ({exc})") from None
    return mldsa


def mldsa_unavailable() -> str | None:
    """Why this installation cannot do ML-DSA-44, or None when it can."""
    try:
        mod = _mldsa()
        mod.MLDSA44PrivateKey.from_seed_bytes(bytes(SEED_SIZE)).sign(b"probe")
    except ConfigError as exc:
        return exc.message
    except (UnsupportedAlgorithm, AttributeError) as exc:
        import cryptography

        return f"{_NEEDS}; installed: cryptography {cryptography.__version__} ({exc})"
    return None


def require_mldsa() -> None:
    """The start-up check: raise ConfigError with the remedy when ML-DSA is unavailable."""
    reason = mldsa_unavailable()
    if reason is not None:
        raise ConfigError(reason)


def check_algorithms(
    need: Requirement, role: str, signed: Iterable[tuple[str, str]], version: int
) -> None:
    """Every node in ``signed`` (``(node, algorithm)`` pairs) used each algorithm ``need``
    names for ``role``, or ``AlgorithmRequiredError`` (``version``: the root's, for the
    message)."""
    used: dict[str, set[str]] = {}
    for node, algorithm in signed:
        used.setdefault(node, set()).add(algorithm)
    for node, algorithms in sorted(used.items()):
        missing = NEEDED[need] - algorithms
        if missing:
            raise AlgorithmRequiredError(
                f"trust root version {version} requires {need} signatures for {role}; "
                f"{node} signed with {' and '.join(sorted(algorithms))} only, no "
                f"{' or '.join(sorted(missing))} signature",
                where="signatures",
            )


def check_requirements(required: Mapping[str, str], roles: Iterable[str]) -> None:
    """A root's ``required_algorithms`` names only ``roles``; ``transport`` (one signature
    per request) cannot require ``both``. ValueError, for msgspec to report, otherwise."""
    allowed = frozenset(roles)
    for role, need in required.items():
        if role not in allowed:
            raise ValueError(
                f"required_algorithms names {role!r}; only record kinds, transport and "
                "checkpoint take an algorithm requirement"
            )
        if role == "transport" and need == "both":
            raise ValueError(
                "transport cannot require both algorithms: a request carries one signature"
            )
        if role == "checkpoint" and need == "ml-dsa-44":
            raise ValueError(
                "checkpoint can require ed25519 or both, not ml-dsa-44 alone: a checkpoint "
                "keeps its Ed25519 log signature (type 0x01)"
            )


def algorithm_of_raw(raw: bytes) -> Algorithm:
    """``ml-dsa-44`` for a 1,312-byte raw public key, else ``ed25519`` (32 bytes)."""
    return ML_DSA_44 if len(raw) == ML_DSA_44_PUBLIC_KEY_SIZE else ED25519


def spki_key_id(der: bytes) -> KeyId:
    """Rule 2: hex SHA-256 of a public key's SubjectPublicKeyInfo DER."""
    return KeyId(hashlib.sha256(der).hexdigest())


@dataclass(frozen=True, eq=False)
class MLDSA44PublicKey:
    """An ML-DSA-44 public key with its key id."""

    key: mldsa.MLDSA44PublicKey
    algorithm: ClassVar[Literal["ml-dsa-44"]] = ML_DSA_44

    @cached_property
    def key_id(self) -> KeyId:
        return spki_key_id(
            self.key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @cached_property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Rule 3: pure ML-DSA-44, empty context; a wrong length is False."""
        if len(signature) != ML_DSA_44_SIGNATURE_SIZE:
            return False
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLDSA44PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> MLDSA44PublicKey:
        if len(raw) != ML_DSA_44_PUBLIC_KEY_SIZE:
            raise KeyFormatError(
                f"an ML-DSA-44 public key is {ML_DSA_44_PUBLIC_KEY_SIZE} bytes, not {len(raw)}"
            )
        try:
            key = _mldsa().MLDSA44PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyFormatError(f"not an ML-DSA-44 public key ({exc})") from None
        return cls(key)


@dataclass(frozen=True, eq=False)
class MLDSA44PrivateKey:
    """An ML-DSA-44 private key (its seed, rule 1); signs bytes."""

    key: mldsa.MLDSA44PrivateKey
    algorithm: ClassVar[Literal["ml-dsa-44"]] = ML_DSA_44

    @cached_property
    def public(self) -> MLDSA44PublicKey:
        return MLDSA44PublicKey(self.key.public_key())

    @property
    def key_id(self) -> KeyId:
        return self.public.key_id

    @cached_property
    def key_id_bytes(self) -> bytes:
        return self.public.key_id.encode("ascii")

    @property
    def seed(self) -> bytes:
        return bytes(self.key.private_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        """Rule 3: pure ML-DSA-44 over ``message`` with the empty context."""
        return bytes(self.key.sign(message))

    @classmethod
    def generate(cls) -> MLDSA44PrivateKey:
        return cls(_mldsa().MLDSA44PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> MLDSA44PrivateKey:
        if len(seed) != SEED_SIZE:
            raise KeyFormatError(f"an ML-DSA-44 seed is {SEED_SIZE} bytes, not {len(seed)}")
        return cls(_mldsa().MLDSA44PrivateKey.from_seed_bytes(seed))

    def pem(self, passphrase: bytes | None = None) -> bytes:
        """Rule 1: PKCS#8 PEM, seed-only form."""
        algo: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algo
        )


def is_mldsa44_private(key: object) -> TypeGuard[mldsa.MLDSA44PrivateKey]:
    """Whether a key ``cryptography`` loaded is an ML-DSA-44 private key."""
    try:
        return isinstance(key, _mldsa().MLDSA44PrivateKey)
    except ConfigError:
        return False


def is_mldsa44_public(key: object) -> TypeGuard[mldsa.MLDSA44PublicKey]:
    """Whether a key ``cryptography`` loaded is an ML-DSA-44 public key."""
    try:
        return isinstance(key, _mldsa().MLDSA44PublicKey)
    except ConfigError:
        return False
