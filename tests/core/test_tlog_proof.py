"""Tests for jcm_sync.core.tlog_proof: C2SP tlog-proof receipts and the tlog-policy quorum.

The spec's example proof (c2sp.org/tlog-proof, cited in ``c2sp_vectors``) is parsed; its
signatures are elided in the spec, so it is also parsed with a real one in their place.
Receipts written by the independent implementation (``c2sp_independent``) over a real tree
are verified by ours, and ours are written byte for byte as it writes them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import cosignature as cs
from jcm_sync.core import note as signed_note
from jcm_sync.core import tlog_proof as tp
from jcm_sync.core.tlog_proof import Group, TlogProof
from jcm_sync.errors import (
    BadDataError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
    UntrustedError,
    WrongOriginError,
)
from tests.core import c2sp_independent as ind
from tests.core import c2sp_vectors as vec

ORIGIN = "jcm-sync.example/JP-MN/MN"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"log").digest())
LOG = signed_note.Verifier(ORIGIN, LOG_KEY.public_key())
JP_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"jp witness").digest())
JP_PQ = MLDSA44PrivateKey.from_seed_bytes(hashlib.sha256(b"jp witness pq").digest())
JP = cs.CosignatureVerifier("jcm-sync.example/JP", JP_KEY.public_key())
JP_ML = cs.CosignatureVerifier("jcm-sync.example/JP", JP_PQ.public_key())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"other witness").digest())
OTHER = cs.CosignatureVerifier("auditor.example", OTHER_KEY.public_key())
ENTRIES = [b"record %d" % i for i in range(50)]
T = 1_764_547_200


@cache  # ML-DSA signatures are randomized: one note per size keeps comparisons exact
def _cosigned(size: int, *, log_name: str = ORIGIN) -> bytes:
    text = ind.checkpoint_text(ORIGIN, size, ind.mth(ENTRIES[:size]))
    note = ind.sign_note_ed25519(text, log_name, LOG_KEY)
    note += ind.cosign(text, JP.name, JP_KEY, T).encode()
    return note + ind.cosign(text, JP.name, JP_PQ, T).encode()


def _receipt(index: int, size: int, **kw: str) -> bytes:
    return ind.tlog_proof(index, ind.path(index, ENTRIES[:size]), _cosigned(size, **kw))


def _verify(
    receipt: bytes, entry: bytes, quorum: tp.Quorum = "jcm-sync.example/JP"
) -> tp.VerifiedReceipt:
    return tp.verify_receipt(receipt, entry, [LOG], [JP, JP_ML, OTHER], quorum)


# ---------------------------------------------------------------------------------------------
# The spec's example
# ---------------------------------------------------------------------------------------------


def test_the_spec_example_with_elided_signatures_is_refused_at_the_checkpoint() -> None:
    example = (
        vec.PROOF_SPEC_HEAD
        + vec.PROOF_SPEC_CHECKPOINT_TEXT
        + b"\n"
        + vec.PROOF_SPEC_ELIDED_SIGNATURES
    )
    with pytest.raises(BadDataError, match="not a signed note") as info:
        tp.parse_proof(example)
    assert info.value.where == "tlog-proof, checkpoint from line 10"


def test_the_spec_example_parses_with_a_real_signature() -> None:
    key = Ed25519PrivateKey.generate()
    note = ind.sign_note_ed25519(vec.PROOF_SPEC_CHECKPOINT_TEXT, "example.com/fancylog", key)
    proof = tp.parse_proof(vec.PROOF_SPEC_HEAD + note)
    assert proof.index == 73894
    assert len(proof.proof) == 5
    assert proof.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert proof.note == note
    assert tp.format_proof(proof) == vec.PROOF_SPEC_HEAD + note


# ---------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------


def test_an_independent_receipt_verifies() -> None:
    verified = _verify(_receipt(13, 37), ENTRIES[13])
    assert (verified.index, verified.checkpoint.size, verified.checkpoint.origin) == (
        13,
        37,
        ORIGIN,
    )
    assert verified.checkpoint.root_hash == ind.mth(ENTRIES[:37])
    assert verified.log_signers == (ORIGIN,)
    assert verified.cosigners == ("jcm-sync.example/JP",)
    assert {c.signature_type for c in verified.cosignatures} == {0x04, 0x06}


def test_our_receipt_is_the_independent_one_byte_for_byte() -> None:
    ours = tp.format_proof(TlogProof(13, tuple(ind.path(13, ENTRIES[:37])), _cosigned(37), b"ctx"))
    assert ours == ind.tlog_proof(13, ind.path(13, ENTRIES[:37]), _cosigned(37), b"ctx")


def test_a_receipt_for_another_entry_or_index_is_refused() -> None:
    receipt = _receipt(13, 37)
    with pytest.raises(UntrustedError, match="index 13"):
        _verify(receipt, ENTRIES[14])
    moved = receipt.replace(b"index 13\n", b"index 12\n")
    with pytest.raises(UntrustedError):
        _verify(moved, ENTRIES[13])
    beyond = ind.tlog_proof(37, ind.path(13, ENTRIES[:37]), _cosigned(37))
    with pytest.raises(UntrustedError):
        _verify(beyond, ENTRIES[13])


def test_a_receipt_of_an_unknown_log_is_refused() -> None:
    stranger = signed_note.Verifier(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(UnknownKeyError):
        tp.verify_receipt(_receipt(1, 5), ENTRIES[1], [stranger], [JP], None)


def test_the_log_key_must_be_named_after_the_origin() -> None:
    other_name = signed_note.Verifier("jcm-sync.example/other", LOG_KEY.public_key())
    receipt = _receipt(1, 5, log_name="jcm-sync.example/other")
    with pytest.raises(WrongOriginError, match="named after its origin"):
        tp.verify_receipt(receipt, ENTRIES[1], [other_name], [JP], None)
    with pytest.raises(WrongOriginError, match="expected"):
        tp.verify_receipt(_receipt(1, 5), ENTRIES[1], [LOG], [JP], None, origin="x/y")


def test_the_quorum_decides() -> None:
    receipt = _receipt(2, 9)
    assert _verify(receipt, ENTRIES[2], None).cosigners == ("jcm-sync.example/JP",)
    with pytest.raises(ThresholdError, match=re.escape("jcm-sync.example/JP")):
        _verify(receipt, ENTRIES[2], "auditor.example")
    with pytest.raises(ThresholdError):
        _verify(receipt, ENTRIES[2], Group(2, ("jcm-sync.example/JP", "auditor.example")))
    assert _verify(receipt, ENTRIES[2], Group(1, ("jcm-sync.example/JP", "auditor.example")))


def test_a_failing_cosignature_of_a_known_witness_refuses_the_receipt() -> None:
    receipt = _receipt(2, 9)
    # A real cosignature by a known witness, but of another checkpoint of the log.
    other_text = ind.checkpoint_text(ORIGIN, 8, ind.mth(ENTRIES[:8]))
    misplaced = ind.cosign(other_text, OTHER.name, OTHER_KEY, T)
    with pytest.raises(SignatureError, match=re.escape("auditor.example")):
        _verify(receipt + misplaced.encode(), ENTRIES[2])


def test_tlog_policy_quorum_example() -> None:
    # c2sp.org/tlog-policy, "Example policy": 2 of X, any of Y, and both groups.
    x = Group(2, ("X1", "X2", "X3"))
    y = Group(1, ("Y1", "Y2", "Y3"))
    both = Group(2, (x, y))
    assert tp.quorum_met(both, {"X1", "X3", "Y2"})
    assert not tp.quorum_met(both, {"X1", "Y1", "Y2", "Y3"})
    assert not tp.quorum_met(both, {"X1", "X2"})
    assert tp.quorum_met(None, set())
    assert not tp.quorum_met("X1", set())


@pytest.mark.parametrize(
    ("threshold", "members", "match"),
    [
        (1, (), "at least one"),
        (1, ("a", "a"), "at most once"),
        (0, ("a",), "threshold"),
        (2, ("a",), "threshold"),
        (1, ("none",), "not a witness"),
        (1, ("",), "not a witness"),
    ],
)
def test_malformed_groups_are_refused(threshold: int, members: tuple[str, ...], match: str) -> None:
    with pytest.raises(BadDataError, match=match):
        Group(threshold, members)


# ---------------------------------------------------------------------------------------------
# Malformed receipts
# ---------------------------------------------------------------------------------------------

_H = ind.b64(hashlib.sha256(b"h").digest()).encode()


@pytest.mark.parametrize(
    ("head", "match"),
    [
        (b"c2sp.org/tlog-proof@v2\nindex 1\n\n", "first line"),
        (b"c2sp.org/tlog-proof@v1\nextra \nindex 1\n\n", "extra"),
        (b"c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\n", "extra"),
        (b"c2sp.org/tlog-proof@v1\n\n", "index"),
        (b"c2sp.org/tlog-proof@v1\nindex 01\n\n", "leading zeros"),
        (b"c2sp.org/tlog-proof@v1\nindex -1\n\n", "index"),
        (b"c2sp.org/tlog-proof@v1\nindex 18446744073709551615\n\n", "leaf index"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n!!!!\n\n", "32-byte"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n" + ind.b64(bytes(31)).encode() + b"\n\n", "32-byte"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\nx\n", "32-byte"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n" + (_H + b"\n") * 65 + b"\n", "more than 64"),
        (b"c2sp.org/tlog-proof@v1\r\nindex 1\n\n", "control character"),
        (b"c2sp.org/tlog-proof@v1\nextra YQ==\nextra YQ==\nindex 1\n\n", "index"),
    ],
)
def test_malformed_receipts_are_refused(head: bytes, match: str) -> None:
    with pytest.raises(BadDataError, match=match):
        tp.parse_proof(head + _cosigned(5))


def test_a_receipt_without_a_checkpoint_is_refused() -> None:
    with pytest.raises(BadDataError, match="no empty line"):
        tp.parse_proof(b"c2sp.org/tlog-proof@v1\nindex 1\n" + _H + b"\n")
    with pytest.raises(BadDataError, match="not a signed note"):
        tp.parse_proof(b"c2sp.org/tlog-proof@v1\nindex 1\n\nexample.com/log\n1\n")


def test_proof_values_are_checked() -> None:
    with pytest.raises(BadDataError):
        TlogProof(-1, (), _cosigned(3))
    with pytest.raises(BadDataError):
        TlogProof(0, (bytes(31),), _cosigned(3))
    with pytest.raises(BadDataError):
        TlogProof(0, (), _cosigned(3), b"")
    with pytest.raises(BadDataError):
        TlogProof(0, (), "note")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 2**64 - 2),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=64),
    extra=st.none() | st.binary(min_size=1, max_size=200),
)
def test_receipts_round_trip(index: int, proof: list[bytes], extra: bytes | None) -> None:
    receipt = tp.format_proof(TlogProof(index, tuple(proof), _cosigned(3), extra))
    assert receipt == ind.tlog_proof(index, proof, _cosigned(3), extra)
    assert tp.parse_proof(receipt) == TlogProof(index, tuple(proof), _cosigned(3), extra)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_entry_of_every_size_has_a_receipt_that_verifies(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, len(ENTRIES)))
    index = data.draw(st.integers(0, size - 1))
    verified = _verify(_receipt(index, size), ENTRIES[index])
    assert (verified.index, verified.checkpoint.size) == (index, size)
