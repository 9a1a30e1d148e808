"""The project's one Ed25519 verification rule, and the only place that verifies Ed25519.

Why this module exists
----------------------
RFC 8032 leaves verifiers some latitude (the cofactored or the cofactorless equation; what
to do with small-order points and non-canonical encodings), and the libraries use it
differently: OpenSSL (through ``cryptography``) accepts signatures by a small-order key that
libsodium refuses ("Taming the many EdDSAs", Chalkias, Garillot, Nikolaenko, CT-RSA 2021).
Two honest nodes on different libraries could then disagree about whether a record is
signed, and so about a log's history. Every Ed25519 verification of the project (DSSE
envelopes, signed notes, checkpoints and cosignatures, trust roots, the hub's worker pool,
RFC 9421 request signatures) calls ``verify`` here, so every node applies the same rule,
whichever library computes it (ADR 0038).

The rule
--------
Given a public key ``A`` (32 bytes), a signature ``R || S`` (64 bytes) and a message ``M``,
the signature is accepted if and only if all of these hold:

1. ``A`` is 32 bytes and the signature 64 bytes.
2. ``S``, read as a little-endian integer, is below the group order ``L`` (RFC 8032
   §5.1.7 step 1: an out-of-range ``S`` is a failed decoding). This refuses the malleable
   ``S + L``.
3. ``A`` and ``R`` are canonical encodings: their 255-bit ``y`` is below ``p = 2^255 - 19``
   (RFC 8032 §5.1.3 step 1). A point has one encoding, so a signature has one form.
4. Neither ``A`` nor ``R`` is a point of small order (order 1, 2, 4 or 8): their ``y`` is
   none of ``0, 1, p - 1`` and the two ``y`` of the points of order 8, whatever the sign
   bit. (This also refuses the "negative zero" encodings, ``x = 0`` with the sign bit set,
   which exist only for ``y = 1`` and ``y = p - 1``.) A small-order key verifies
   signatures of messages it never signed; no key made by RFC 8032 §5.1.5 is one.
5. ``A`` decodes to a point of the curve.
6. The cofactorless equation holds, compared on encodings: ``encode([S]B - [k]A) == R``
   with ``k = SHA-512(R || A || M) mod L`` over the bytes received (RFC 8032 §5.1.7
   step 3 allows it: "sufficient, but not required"). ``R`` is compared as received, so a
   non-canonical ``R`` could never match anyway.

Not refused: ``A`` or ``R`` of mixed order (a prime-order point plus a small-order one),
when the cofactorless equation holds; telling them apart costs a scalar multiplication per
point. Both libraries compute the same cofactorless equation, and the speccheck vectors
with mixed-order points pin that (``tests/core/test_ed25519.py``); a library that switched
to the cofactored equation would fail them.

Every signature an RFC 8032 signer makes passes: its ``S`` is reduced mod ``L``, its
``R = [r]B`` and ``A = [a]B`` are canonical encodings of points of prime order. The rule only
narrows what a forger may submit, to exactly what libsodium (1.0.16 and later, in its
default build) accepts.

Theory of operation
-------------------
Rules 1-4 are byte and integer comparisons, checked here (``refusal``) before any library
sees the signature, so that the rule does not depend on a library's version or build
options (libsodium's ``ED25519_COMPAT`` build drops its own checks 2-4). Rules 5-6 are
computed by libsodium (PyNaCl) when it is installed, about twice as fast as OpenSSL, and
by ``cryptography`` otherwise; ``BACKEND`` names the one in use. Both give the same verdict
on every vector of the tests, and ``verify_with`` runs either on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "BACKEND",
    "BACKENDS",
    "FIELD_PRIME",
    "GROUP_ORDER",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SMALL_ORDER_Y",
    "key_refusal",
    "refusal",
    "verify",
    "verify_with",
]

PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64

#: The field prime p = 2^255 - 19.
FIELD_PRIME: Final = 2**255 - 19
#: The order L of the prime-order subgroup (RFC 8032 §5.1).
GROUP_ORDER: Final = 2**252 + 27742317777372353535851937790883648493

#: The ``y`` of every point of order 1, 2, 4 or 8 (rule 4): the identity (1), the point of
#: order 2 (p - 1), the two of order 4 (0) and the four of order 8 (two ``y``, each with
#: both signs of ``x``).
SMALL_ORDER_Y: Final = frozenset(
    {
        0,
        1,
        FIELD_PRIME - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    }
)

BytesLike = bytes | bytearray | memoryview


def _encodings(ys: Iterable[int]) -> list[bytes]:
    """Every 32-byte encoding of these ``y``: both values of the sign bit (bit 255)."""
    return [(y | sign).to_bytes(32, "little") for y in ys for sign in (0, 1 << 255)]


#: Rules 3 and 4 as a table: every 32-byte encoding whose ``y`` (its low 255 bits) is at
#: or above ``p`` (the 19 values ``p .. 2^255 - 1``) or is that of a small-order point,
#: with both sign bits, mapped to what is wrong with it. These 48 are exactly the
#: encodings ``int.from_bytes(e, "little") & (2^255 - 1)`` finds ``>= p`` or in
#: ``SMALL_ORDER_Y`` (a test checks the table against that reading), so a lookup gives
#: the same verdict and message as reading ``y`` as an integer, without building it: the
#: hub's verify workers run this twice per signature (ADR 0060).
_POINT_REFUSALS: Final[Mapping[bytes, str]] = MappingProxyType(
    {
        **dict.fromkeys(
            _encodings(range(FIELD_PRIME, 1 << 255)), "is a non-canonical encoding (y >= p)"
        ),
        **dict.fromkeys(_encodings(sorted(SMALL_ORDER_Y)), "is a point of small order"),
    }
)

#: The most significant byte of ``L`` (0x10): an ``S`` whose last byte (little-endian) is
#: below it is below ``2^252 < L``, which settles rule 2 without reading ``S`` as an integer.
_L_TOP_BYTE: Final = GROUP_ORDER >> 248


def refusal(public_key: bytes, signature: bytes) -> str | None:
    """Why rules 1-4 refuse this key and signature, or None if they pass.

    Pure byte and integer work, no curve arithmetic: the part of the rule no library
    decides.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        return f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public_key)}"
    if len(signature) != SIGNATURE_SIZE:
        return f"an Ed25519 signature is {SIGNATURE_SIZE} bytes, not {len(signature)}"
    if signature[63] >= _L_TOP_BYTE and int.from_bytes(signature[32:], "little") >= GROUP_ORDER:
        return "S is not below the group order L (non-canonical S)"
    return _point_refusal("A", public_key) or _point_refusal("R", signature[:32])


def key_refusal(public_key: bytes) -> str | None:
    """Why the rule refuses every signature by ``public_key`` (rules 1, 3, 4), or None.

    A trust root checks its keys with it: such a key could verify nothing.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        return f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public_key)}"
    return _point_refusal("A", public_key)


def _point_refusal(name: str, encoded: bytes) -> str | None:
    """Rules 3 and 4 for a 32-byte encoding (the callers checked its length)."""
    why = _POINT_REFUSALS.get(bytes(encoded))
    return None if why is None else f"{name} {why}"


# --- rules 5-6, computed by a library ---------------------------------------------------


def _openssl_equation(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Rules 5-6 by OpenSSL through ``cryptography`` (cofactorless, R compared as bytes)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _sodium_backend() -> Callable[[bytes, bytes, bytes], bool] | None:
    """Rules 5-6 by libsodium's ``crypto_sign_open`` (through PyNaCl), if installed.

    PyNaCl's ``crypto_sign_open`` wrapper allocates a buffer as large as the message,
    has libsodium copy the message into it and copies it out again as bytes, only for
    us to drop it. libsodium's function takes NULL for both outputs (it then writes
    nothing, ``crypto_sign/ed25519/ref10/open.c``), so it is called so through PyNaCl's
    own cffi module: the same function and verdict, without the two copies (ADR 0051).
    The wrapper is kept for a PyNaCl whose private module moved.
    """
    try:
        from nacl.bindings import crypto_sign_open
        from nacl.exceptions import BadSignatureError
    except ImportError:  # PyNaCl is a dependency; a node without it still verifies
        return None
    try:
        sodium = importlib.import_module("nacl._sodium")  # PyNaCl's cffi module, untyped
        sodium_open, null = sodium.lib.crypto_sign_open, sodium.ffi.NULL
    except (ImportError, AttributeError):  # pragma: no cover - PyNaCl's layout since 1.0
        sodium_open = None
    if sodium_open is not None:

        def sodium_equation(public_key: bytes, signature: bytes, message: bytes) -> bool:
            if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
                return False  # ``verify`` refused these first; C must not read past them
            signed = signature + message
            return bool(sodium_open(null, null, signed, len(signed), public_key) == 0)

        return sodium_equation

    def sodium_wrapped(public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            crypto_sign_open(signature + message, public_key)
        except BadSignatureError:
            return False
        return True

    return sodium_wrapped


_SODIUM: Final = _sodium_backend()

#: The libraries that can compute rules 5-6 here, by name, fastest first.
BACKENDS: Final[Mapping[str, Callable[[bytes, bytes, bytes], bool]]] = MappingProxyType(
    {
        **({"libsodium": _SODIUM} if _SODIUM is not None else {}),
        "cryptography": _openssl_equation,
    }
)
#: The library ``verify`` uses: libsodium if PyNaCl is installed, else ``cryptography``.
BACKEND: Final = next(iter(BACKENDS))
_EQUATION: Final = BACKENDS[BACKEND]


def verify(public_key: BytesLike, signature: BytesLike, message: BytesLike) -> bool:
    """Return True iff ``signature`` by the raw 32-byte ``public_key`` over ``message``
    passes the project's rule (the module docstring), on the fastest library installed."""
    key, sig = bytes(public_key), bytes(signature)
    if refusal(key, sig) is not None:
        return False
    return _EQUATION(key, sig, bytes(message))


def verify_with(
    backend: str, public_key: BytesLike, signature: BytesLike, message: BytesLike
) -> bool:
    """``verify`` on a named library of ``BACKENDS`` (tests and benchmarks compare them)."""
    key, sig = bytes(public_key), bytes(signature)
    if refusal(key, sig) is not None:
        return False
    return BACKENDS[backend](key, sig, bytes(message))
