"""A slow, independent Ed25519 in pure Python, for the tests of ``core/ed25519.py``.

Why this file exists: the rule's tests need points no library will make (the eight points
of small order, keys of mixed order, the identity) and a third opinion that shares no code
with libsodium or OpenSSL. Written from RFC 8032 §5.1 (extended coordinates, §5.1.4);
about a millisecond per scalar multiplication, so only tests use it.
"""

from __future__ import annotations

import hashlib
from typing import Final

P: Final = 2**255 - 19
L: Final = 2**252 + 27742317777372353535851937790883648493
D: Final = -121665 * pow(121666, P - 2, P) % P
SQRT_M1: Final = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z

IDENTITY: Final[Point] = (0, 1, 1, 0)


def add(p: Point, q: Point) -> Point:
    """RFC 8032 §5.1.4 point addition (complete: it also doubles)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def neg(p: Point) -> Point:
    return (-p[0] % P, p[1], p[2], -p[3] % P)


def mul(n: int, p: Point) -> Point:
    """``[n]p`` by double-and-add (variable time: test data only)."""
    out = IDENTITY
    while n > 0:
        if n & 1:
            out = add(out, p)
        p = add(p, p)
        n >>= 1
    return out


def equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def recover_x(y: int, sign: int) -> int | None:
    """The x of the point with this y and sign bit, or None (RFC 8032 §5.1.3)."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def decode(s: bytes) -> Point | None:
    """Strict decoding: canonical y, and no negative zero; None if not a point."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def encode(p: Point) -> bytes:
    zinv = pow(p[2], P - 2, P)
    x, y = p[0] * zinv % P, p[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _base_point() -> Point:
    y = 4 * pow(5, P - 2, P) % P
    x = recover_x(y, 0)
    assert x is not None
    return (x, y, 1, x * y % P)


B: Final[Point] = _base_point()


def point_of_order_8() -> Point:
    """A point of order exactly 8: ``[L]`` of a point whose torsion part has order 8."""
    y = 2
    while True:
        q = decode(y.to_bytes(32, "little"))
        if q is not None:
            t = mul(L, q)  # kills the prime-order part, keeps the torsion part
            if not equal(mul(4, t), IDENTITY):
                return t
        y += 1


def torsion() -> list[Point]:
    """The eight points of order dividing 8."""
    t = point_of_order_8()
    return [mul(i, t) for i in range(8)]


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The project's rule, independently: strict decodings, no small order, cofactorless."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    a, r = decode(public_key), decode(signature[:32])
    if s >= L or a is None or r is None:
        return False
    if equal(mul(8, a), IDENTITY) or equal(mul(8, r), IDENTITY):
        return False
    k = challenge(signature[:32], public_key, message)
    return encode(add(mul(s, B), neg(mul(k, a)))) == signature[:32]


def sign_with_torsion(scalar: int, key_torsion: Point, message: bytes) -> tuple[bytes, bytes]:
    """A key ``[scalar]B + key_torsion`` and a signature of ``message`` that passes the
    cofactorless equation (so a rule that refuses mixed-order keys would refuse it).

    ``R = [r]B + T`` with ``T = -[k]key_torsion``: tried over the eight ``T`` and a few ``r``
    until the challenge ``k``, which depends on ``R``, agrees.
    """
    a = encode(add(mul(scalar, B), key_torsion))
    torsion_points = torsion()
    for r in range(1, 1000):
        rb = mul(r, B)
        for t in torsion_points:
            r_enc = encode(add(rb, t))
            k = challenge(r_enc, a, message)
            if equal(t, neg(mul(k, key_torsion))):
                s = (r + k * scalar) % L
                return a, r_enc + s.to_bytes(32, "little")
    raise AssertionError("no nonce found")  # pragma: no cover - probability ~ (7/8)^8000


def decode_permissive(s: bytes) -> Point | None:
    """Decoding as lenient libraries do: y taken mod p, the sign bit of x = 0 ignored."""
    y = (int.from_bytes(s, "little") & ((1 << 255) - 1)) % P
    x = recover_x(y, s[31] >> 7)
    if x is None and recover_x(y, 0) == 0:  # x = 0 with the sign bit set: "negative zero"
        x = 0
    return None if x is None else (x, y, 1, x * y % P)


def forge_with_small_order_key(public_key: bytes, message: bytes) -> tuple[bytes, bytes] | None:
    """A (message, signature) with ``S = 0`` and a small-order ``R`` that passes the
    cofactorless equation for the small-order ``public_key`` under lenient decoding:
    ``R = -[k]A``. Tries ``message + b" 0"``, ``b" 1"``... as ``k`` depends on ``R``."""
    a = decode_permissive(public_key)
    if a is None or not equal(mul(8, a), IDENTITY):
        return None
    for i in range(64):
        m = message + b" %d" % i
        for t in torsion():
            r = encode(t)
            if equal(t, neg(mul(challenge(r, public_key, m), a))):
                return m, r + bytes(32)
    return None  # pragma: no cover
