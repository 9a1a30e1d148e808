"""The one Ed25519 verification rule (``core/ed25519.py``, ADR 0038), pinned by vectors.

Every vector runs against every verifier the project has: the rule on libsodium, the rule
on ``cryptography`` (the fallback), and each class that verifies Ed25519 (DSSE envelope
keys, signed-note keys, witness cosignature keys, the RFC 9421 ``ed25519`` algorithm), each
on both libraries. Whole paths (``verify_envelope``, ``open_note``, ``verify_cosignatures``,
``auth.verify_signature``, the worker pool's ``check_signatures``, in this process and in a
spawned worker) get signatures made to the edge cases over their own messages.

Sources of the vectors:

- RFC 8032 §7.1, TEST 1-3 (accepted; each also re-signed here from its secret key).
- "Taming the many EdDSAs", Chalkias, Garillot, Nikolaenko (CT-RSA 2021 / SSR 2020), the 15
  vectors of ``cases.json`` in github.com/novifinancial/ed25519-speccheck (commit
  d2b2ba58); the expected verdict is under OUR rule; ``OPENSSL_ACCEPTS`` and
  ``LIBSODIUM_ACCEPTS`` are those libraries' verdicts without our pre-checks, as that
  repository's table also reports them.
- generated: S + L, S = L, bit flips in R, S, A and the message, every encoding of a
  small-order point as A or R, non-canonical y >= p, wrong lengths, the identity key's
  universal forgery, and keys of mixed order (``ed25519_reference.py``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import ed25519
from jcm_sync.core.cosignature import (
    CosignatureVerifier,
)
from jcm_sync.core.envelope import PrivateKey, PublicKey
from jcm_sync.core.note import Verifier
from jcm_sync.core.trust import TrustRoot
from jcm_sync.net.httpsig_pq import ED25519
from tests import builders
from tests.core import ed25519_reference as ref

# --- vectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    name: str
    public_key: bytes
    signature: bytes
    message: bytes
    accept: bool  # under the project's rule


def _v(name: str, pk: str, sig: str, msg: str, accept: bool) -> Vector:
    return Vector(name, bytes.fromhex(pk), bytes.fromhex(sig), bytes.fromhex(msg), accept)


#: RFC 8032 §7.1 TEST 1, 2, 3: (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

_SMALL_A = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"
_MIXED_A = "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43"
_MIXED_A2 = "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d"
_PRE_A = "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623"
_NEG_ZERO = "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
_SMALL_R_S0 = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a" + "00" * 32
_SIG_MIXED_R = "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04"  # noqa: E501
_SIG_A_NEGZ = "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04"  # noqa: E501
_M0 = "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41"
_M1 = "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79"
_M2 = "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c"
_M3 = "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40"

#: ed25519-speccheck cases.json, in its order (index = the repository's vector number).
SPECCHECK = [
    _v(
        "0 S=0, small A, small R",
        _SMALL_A,
        _SMALL_R_S0,
        "2a66241a42a9ee12994d8068dcf1bb7dfc6637b45450acd43711f637fa5080fc",
        False,
    ),
    _v(
        "1 S=0, small A, small R (passes cofactorless)",
        _SMALL_A,
        _SMALL_R_S0,
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        False,
    ),
    _v("2 small A, mixed R (cofactored only)", _SMALL_A, _SIG_MIXED_R, _M0, False),
    _v("3 small A, mixed R (passes cofactorless)", _SMALL_A, _SIG_MIXED_R, _M1, False),
    _v(
        "4 mixed A, small R (cofactored only)",
        _MIXED_A,
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa182ef1a5b928da07fec769cc8a12db6bcf70dab3f3227fa315e9d5e3e01a3405",
        _M0,
        False,
    ),
    _v(
        "5 mixed A, small R (passes cofactorless)",
        _MIXED_A,
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        False,
    ),
    _v(
        "6 mixed A, mixed R (passes both equations)",
        _MIXED_A2,
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
        _M1,
        True,
    ),
    _v(
        "7 mixed A, mixed R (cofactored only)",
        _MIXED_A2,
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
        _M2,
        False,
    ),
    _v(
        "8 pre-reduced scalar",
        _MIXED_A2,
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
        _M2,
        False,
    ),
    _v(
        "9 S > L",
        _PRE_A,
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
        _M3,
        False,
    ),
    _v(
        "10 S >> L",
        _PRE_A,
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
        _M3,
        False,
    ),
    _v(
        "11 R non-canonical (negative zero)",
        _MIXED_A,
        _NEG_ZERO + "03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
        _M0,
        False,
    ),
    _v(
        "12 R non-canonical (negative zero)",
        _MIXED_A,
        _NEG_ZERO + "ca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
        _M0,
        False,
    ),
    _v(
        "13 A non-canonical (negative zero)",
        _NEG_ZERO,
        _SIG_A_NEGZ,
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        False,
    ),
    _v(
        "14 A non-canonical (negative zero)",
        _NEG_ZERO,
        _SIG_A_NEGZ,
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        False,
    ),
]

#: The speccheck vectors each library accepts on its own, without the rule's pre-checks
#: (measured here; the same as that repository's table for PyCA/OpenSSL and LibSodium).
OPENSSL_ACCEPTS = {1, 3, 5, 6, 14}
LIBSODIUM_ACCEPTS = {6}

_SEED = hashlib.sha256(b"jcm-sync ed25519 vectors").digest()
_KEY = Ed25519PrivateKey.from_private_bytes(_SEED)
_PK = _KEY.public_key().public_bytes_raw()
_MSG = b"a record of the JP-ID partnership"
_SIG = _KEY.sign(_MSG)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _small_order_encodings() -> list[bytes]:
    """Every 32-byte string whose y is that of a small-order point: the 8 points, the
    other sign bit of each (two are "negative zero"), and y + p where it fits in 255 bits."""
    ys = sorted(ed25519.SMALL_ORDER_Y)
    ys += [y + ed25519.FIELD_PRIME for y in ys if y + ed25519.FIELD_PRIME < 2**255]
    return [(y | sign << 255).to_bytes(32, "little") for y in ys for sign in (0, 1)]


def _forgeries() -> list[tuple[bytes, bytes]]:
    """For each small-order key encoding, a (message, signature) the cofactorless equation
    accepts under lenient decoding (``ed25519_reference.forge_with_small_order_key``)."""
    out = []
    for key in _small_order_encodings():
        forged = ref.forge_with_small_order_key(key, b"forged")
        assert forged is not None
        out.append(forged)
    return out


_FORGERIES = _forgeries()


def _generated() -> list[Vector]:
    s = int.from_bytes(_SIG[32:], "little")
    out = [Vector("honest", _PK, _SIG, _MSG, True)]
    out.append(
        Vector(
            "S + L", _PK, _SIG[:32] + (s + ed25519.GROUP_ORDER).to_bytes(32, "little"), _MSG, False
        )
    )
    out.append(
        Vector("S = L", _PK, _SIG[:32] + ed25519.GROUP_ORDER.to_bytes(32, "little"), _MSG, False)
    )
    for bit in (0, 7, 100, 254, 255, 256, 300, 511):
        out.append(Vector(f"signature bit {bit} flipped", _PK, _flip(_SIG, bit), _MSG, False))
    for bit in (0, 255):
        out.append(Vector(f"key bit {bit} flipped", _flip(_PK, bit), _SIG, _MSG, False))
    out.append(Vector("message bit flipped", _PK, _SIG, _flip(_MSG, 3), False))
    for n, enc in enumerate(_small_order_encodings()):
        out.append(Vector(f"small-order A #{n}", enc, _SIG, _MSG, False))
        out.append(Vector(f"small-order R #{n}", _PK, enc + _SIG[32:], _MSG, False))
    for y in (ed25519.FIELD_PRIME + 2, ed25519.FIELD_PRIME + 9, 2**255 - 1):
        out.append(
            Vector(
                f"A with y = {y - ed25519.FIELD_PRIME} + p",
                y.to_bytes(32, "little"),
                _SIG,
                _MSG,
                False,
            )
        )
    for n, (message, signature) in enumerate(_FORGERIES):
        key = _small_order_encodings()[n]
        out.append(
            Vector(f"small-order key #{n}, forged with S = 0", key, signature, message, False)
        )
    identity = (1).to_bytes(32, "little")
    out.append(
        Vector("identity key, universal forgery", identity, identity + bytes(32), _MSG, False)
    )
    a, sig = ref.sign_with_torsion(7, ref.torsion()[1], _MSG)
    out.append(Vector("key of mixed order, cofactorless-valid", a, sig, _MSG, True))
    return out


VECTORS = [
    *(
        _v(f"RFC 8032 TEST {n}", pk, sig, msg, True)
        for n, (_, pk, msg, sig) in enumerate(RFC8032, 1)
    ),
    *(
        Vector(f"speccheck {v.name}", v.public_key, v.signature, v.message, v.accept)
        for v in SPECCHECK
    ),
    *_generated(),
]
_IDS = [v.name for v in VECTORS]


# --- the verifiers ---------------------------------------------------------------------


def _http(pk: bytes, sig: bytes, msg: bytes) -> bool:
    try:
        algorithm = ED25519(public_key=Ed25519PublicKey.from_public_bytes(pk))  # type: ignore[no-untyped-call]
        algorithm.verify(sig, msg)
    except InvalidSignature:
        return False
    return True


#: Each class that verifies an Ed25519 signature, called with a raw key, signature, message.
CLASS_PATHS: dict[str, Callable[[bytes, bytes, bytes], bool]] = {
    "rule": ed25519.verify,
    "envelope PublicKey": lambda pk, sig, msg: PublicKey.from_raw(pk).verify(sig, msg),
    "note Verifier": lambda pk, sig, msg: Verifier(
        "vectors", Ed25519PublicKey.from_public_bytes(pk)
    ).verify(msg, sig),
    # the cosignature's own message framing is tested in test_cosignature; _check is the
    # signature step under it
    "cosignature verifier": lambda pk, sig, msg: CosignatureVerifier(
        "vectors", Ed25519PublicKey.from_public_bytes(pk)
    )._check(msg, sig),
    "RFC 9421 ed25519": _http,
}


@pytest.fixture(params=sorted(ed25519.BACKENDS))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with ``verify`` computing rules 5-6 on each installed library."""
    name: str = request.param
    monkeypatch.setattr(ed25519, "_EQUATION", ed25519.BACKENDS[name])
    return name


def test_both_libraries_are_installed_and_libsodium_is_the_default() -> None:
    assert set(ed25519.BACKENDS) == {"libsodium", "cryptography"}
    assert ed25519.BACKEND == "libsodium"


@pytest.mark.parametrize("vector", VECTORS, ids=_IDS)
def test_libsodium_called_directly_agrees_with_pynacls_wrapper(vector: Vector) -> None:
    """ADR 0051: the rule calls libsodium's ``crypto_sign_open`` without output buffers;
    its verdict is the one PyNaCl's wrapper gives, on every vector the rule lets through
    to a library (and on the raw vector, pre-checks skipped)."""
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    def wrapped(pk: bytes, sig: bytes, message: bytes) -> bool:
        try:
            crypto_sign_open(sig + message, pk)
        except BadSignatureError:
            return False
        return True

    pk, sig, message = vector.public_key, vector.signature, vector.message
    if len(pk) == ed25519.PUBLIC_KEY_SIZE and len(sig) == ed25519.SIGNATURE_SIZE:
        assert ed25519.BACKENDS["libsodium"](pk, sig, message) == wrapped(pk, sig, message)
    assert ed25519.BACKENDS["libsodium"](pk, sig[:63], message) is False
    assert ed25519.BACKENDS["libsodium"](pk[:31], sig, message) is False


@pytest.mark.parametrize("vector", VECTORS, ids=_IDS)
def test_every_vector_gets_its_verdict_from_both_libraries_and_the_reference(
    vector: Vector,
) -> None:
    verdicts = {
        name: ed25519.verify_with(name, vector.public_key, vector.signature, vector.message)
        for name in ed25519.BACKENDS
    }
    verdicts["reference"] = ref.verify(vector.public_key, vector.signature, vector.message)
    assert verdicts == dict.fromkeys(verdicts, vector.accept)


@pytest.mark.parametrize("path", sorted(CLASS_PATHS))
def test_every_verifier_class_gives_every_vector_its_verdict(path: str, backend: str) -> None:
    verify = CLASS_PATHS[path]
    wrong = [
        v.name
        for v in VECTORS
        if len(v.public_key) == 32 and verify(v.public_key, v.signature, v.message) != v.accept
    ]
    assert not wrong, f"{path} on {backend} disagrees with the rule on: {wrong}"


def test_the_libraries_alone_disagree_and_the_pre_checks_close_the_gap() -> None:
    """What ADR 0038 reports: OpenSSL alone accepts four speccheck vectors libsodium
    refuses (small-order keys and R, a negative-zero key); under the rule neither does."""
    for name, accepts in (("cryptography", OPENSSL_ACCEPTS), ("libsodium", LIBSODIUM_ACCEPTS)):
        equation = ed25519.BACKENDS[name]
        alone = {
            n for n, v in enumerate(SPECCHECK) if equation(v.public_key, v.signature, v.message)
        }
        assert alone == accepts, name
    assert {n for n, v in enumerate(SPECCHECK) if v.accept} == {6}
    # every one of the 14 encodings of a small-order key signs with S = 0 for OpenSSL alone
    forgeries = list(zip(_small_order_encodings(), _FORGERIES, strict=True))
    assert len(forgeries) == 14
    for name, accepts_all in (("cryptography", True), ("libsodium", False)):
        equation = ed25519.BACKENDS[name]
        verdicts = {equation(key, sig, msg) for key, (msg, sig) in forgeries}
        assert verdicts == {accepts_all}, name
    forged = next(v for v in VECTORS if v.name == "identity key, universal forgery")
    assert ed25519.BACKENDS["cryptography"](forged.public_key, forged.signature, b"anything")
    assert not ed25519.verify(forged.public_key, forged.signature, b"anything")


def test_the_pre_checks_say_why() -> None:
    sig = _SIG[:32] + ed25519.GROUP_ORDER.to_bytes(32, "little")
    assert ed25519.refusal(_PK, sig) == "S is not below the group order L (non-canonical S)"
    assert ed25519.refusal(_PK[:31], _SIG) == "an Ed25519 public key is 32 bytes, not 31"
    assert ed25519.refusal(_PK, _SIG + b"\0") == "an Ed25519 signature is 64 bytes, not 65"
    assert ed25519.refusal(bytes(32), _SIG) == "A is a point of small order"  # y = 0
    p = ed25519.FIELD_PRIME.to_bytes(32, "little")  # y = p: also 0, but never so written
    assert ed25519.refusal(p, _SIG) == "A is a non-canonical encoding (y >= p)"
    assert ed25519.refusal((ed25519.FIELD_PRIME + 3).to_bytes(32, "little"), _SIG) == (
        "A is a non-canonical encoding (y >= p)"
    )
    assert ed25519.refusal(_PK, (1).to_bytes(32, "little") + _SIG[32:]) == (
        "R is a point of small order"
    )
    assert ed25519.refusal(_PK, _SIG) is None


def _integer_refusal(public_key: bytes, signature: bytes) -> str | None:
    """Rules 2-4 read as integers, as the rule states them (the form before ADR 0060)."""
    if int.from_bytes(signature[32:], "little") >= ed25519.GROUP_ORDER:
        return "S is not below the group order L (non-canonical S)"
    for name, encoded in (("A", public_key), ("R", signature[:32])):
        y = int.from_bytes(encoded, "little") & (2**255 - 1)
        if y >= ed25519.FIELD_PRIME:
            return f"{name} is a non-canonical encoding (y >= p)"
        if y in ed25519.SMALL_ORDER_Y:
            return f"{name} is a point of small order"
    return None


def _edge_encodings() -> list[bytes]:
    """Every y at or above p, every small-order y and their neighbours, both sign bits,
    and values of S around L and around the top byte the quick check reads."""
    p, order = ed25519.FIELD_PRIME, ed25519.GROUP_ORDER
    ys = {*range(p - 3, 2**255), *(y + d for y in ed25519.SMALL_ORDER_Y for d in (-1, 0, 1))}
    out = [(y | sign).to_bytes(32, "little") for y in ys if y >= 0 for sign in (0, 1 << 255)]
    scalars = {order + d for d in range(-3, 4)} | {(0x10 << 248) + d for d in (-1, 0, 1)}
    scalars |= {(b << 248) | ((1 << 248) - 1) for b in range(256)} | {0, 2**256 - 1}
    return out + [s.to_bytes(32, "little") for s in sorted(scalars)]


def test_the_byte_checks_refuse_exactly_what_the_integer_reading_does() -> None:
    """ADR 0060: rules 2-4 by a table of the 48 refused encodings and the top byte of S
    give the verdict and message of reading ``S`` and each ``y`` as integers."""
    edges = _edge_encodings()
    for a in [*edges, _PK]:
        for r_or_s in [*edges, _SIG[:32], _SIG[32:]]:
            for sig in (r_or_s + _SIG[32:], _SIG[:32] + r_or_s):
                assert ed25519.refusal(a, sig) == _integer_refusal(a, sig), (a.hex(), sig.hex())
    for a in edges:  # _SIG's R and S pass: what is refused is A
        assert ed25519.key_refusal(a) == _integer_refusal(a, _SIG), a.hex()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), sig=st.binary(min_size=64, max_size=64))
def test_the_byte_checks_agree_with_the_integer_reading_on_any_bytes(
    key: bytes, sig: bytes
) -> None:
    assert ed25519.refusal(key, sig) == _integer_refusal(key, sig)


def test_the_small_order_list_is_exactly_the_y_of_the_eight_torsion_points() -> None:
    torsion = ref.torsion()
    assert len({ref.encode(t) for t in torsion}) == 8
    assert all(ref.equal(ref.mul(8, t), ref.IDENTITY) for t in torsion)
    ys = {int.from_bytes(ref.encode(t), "little") & (2**255 - 1) for t in torsion}
    assert ys == ed25519.SMALL_ORDER_Y


def test_rfc8032_vectors_are_what_their_secret_keys_sign() -> None:
    for secret, pk, msg, sig in RFC8032:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        assert key.public_key().public_bytes_raw().hex() == pk
        assert key.sign(bytes.fromhex(msg)).hex() == sig


def test_memoryview_and_bytearray_inputs_get_the_same_verdict() -> None:
    assert ed25519.verify(bytearray(_PK), memoryview(_SIG), bytearray(_MSG))
    assert not ed25519.verify(bytearray(_PK), memoryview(_flip(_SIG, 9)), bytearray(_MSG))


def test_key_refusal_names_the_keys_that_verify_nothing() -> None:
    assert ed25519.key_refusal(_PK) is None
    assert ed25519.key_refusal((1).to_bytes(32, "little")) == "A is a point of small order"
    assert ed25519.key_refusal(_PK[:31]) == "an Ed25519 public key is 32 bytes, not 31"
    y = (2**255 - 1).to_bytes(32, "little")
    assert ed25519.key_refusal(y) == "A is a non-canonical encoding (y >= p)"


def test_a_trust_root_refuses_an_ed25519_key_that_verifies_nothing() -> None:
    keys = {"JP": PrivateKey.from_seed(b"\x01" * 32), "ID": PrivateKey.from_seed(b"\x02" * 32)}
    doc = builders.root_document(builders.build_root("JP-ID", keys))
    assert msgspec.json.decode(msgspec.json.encode(doc), type=TrustRoot).keys  # as built: fine
    identity = PublicKey.from_raw((1).to_bytes(32, "little"))
    doc["keys"][0].update(public_key=base64.b64encode(identity.raw).decode(), keyid=identity.key_id)
    with pytest.raises(msgspec.ValidationError, match=r"keys\[0\] is an Ed25519 key that verifies"):
        msgspec.json.decode(msgspec.json.encode(doc), type=TrustRoot)


_SMALL = _small_order_encodings()


@settings(max_examples=150, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=64),
    mutation=st.one_of(
        st.none(),
        st.tuples(st.just("flip signature"), st.integers(0, 511)),
        st.tuples(st.just("flip key"), st.integers(0, 255)),
        st.tuples(st.just("small R"), st.integers(0, len(_SMALL) - 1)),
        st.tuples(st.just("S + nL"), st.integers(1, 14)),
    ),
)
def test_both_libraries_and_the_reference_agree_on_mutated_signatures(
    seed: bytes, message: bytes, mutation: tuple[str, int] | None
) -> None:
    """Random keys, messages and mutations: one verdict from all three, the expected one."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pk, sig = key.public_key().public_bytes_raw(), key.sign(message)
    expected = mutation is None
    if mutation is not None:
        kind, n = mutation
        if kind == "flip signature":
            sig = _flip(sig, n)
        elif kind == "flip key":
            pk = _flip(pk, n)
        elif kind == "small R":
            sig = _SMALL[n] + sig[32:]
        else:  # S + 14L < 15L < 2^256: it fits 32 bytes, and is never below L
            s = int.from_bytes(sig[32:], "little") + n * ed25519.GROUP_ORDER
            sig = sig[:32] + s.to_bytes(32, "little")
    verdicts = {name: ed25519.verify_with(name, pk, sig, message) for name in ed25519.BACKENDS}
    verdicts["reference"] = ref.verify(pk, sig, message)
    assert verdicts == dict.fromkeys(verdicts, expected)
