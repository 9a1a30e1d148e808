"""Tests for jcm_sync.core.witness_wire: C2SP tlog-witness add-checkpoint bodies and decisions.

The spec's example request and response (c2sp.org/tlog-witness, "add-checkpoint", cited in
``c2sp_vectors``) are parsed and written back byte for byte; requests built by the
independent implementation (``c2sp_independent``) over a real tree are judged, and every
refusal the spec prescribes is checked with its status.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import cosignature as cs
from jcm_sync.core import note as signed_note
from jcm_sync.core import witness_wire as ww
from jcm_sync.core.witness_wire import WitnessRefusedError
from jcm_sync.errors import BadDataError, NoteFormatError, SignatureError
from tests.core import c2sp_independent as ind
from tests.core import c2sp_vectors as vec

ORIGIN = "jcm-sync.example/JP-MN/JP"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"log").digest())
LOG = signed_note.Verifier(ORIGIN, LOG_KEY.public_key())
LOGS = {ORIGIN: [LOG]}
W_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness").digest())
W_NAME = "jcm-sync.example/MN/witness"
W = cs.CosignatureVerifier(W_NAME, W_KEY.public_key())
ENTRIES = [b"entry %d" % i for i in range(40)]
T = 1_764_547_200


def _note(size: int, key: Ed25519PrivateKey = LOG_KEY, origin: str = ORIGIN) -> bytes:
    text = ind.checkpoint_text(origin, size, ind.mth(ENTRIES[:size]))
    return ind.sign_note_ed25519(text, origin, key)


def _state(size: int) -> tuple[int, bytes]:
    return size, ind.mth(ENTRIES[:size])


def _body(old: int, new: int, proof: list[bytes] | None = None) -> bytes:
    if proof is None:
        proof = ind.consistency(old, ENTRIES[:new])
    return ind.add_checkpoint_body(old, proof, _note(new))


def _refused(witnessed: tuple[int, bytes] | None, body: bytes) -> WitnessRefusedError:
    with pytest.raises(WitnessRefusedError) as info:
        ww.judge_add_checkpoint(witnessed, body, LOGS)
    return info.value


# ---------------------------------------------------------------------------------------------
# The spec's examples
# ---------------------------------------------------------------------------------------------


def test_the_spec_example_request_parses_and_formats_back() -> None:
    request = ww.parse_add_checkpoint(vec.WITNESS_SPEC_REQUEST)
    assert request.old_size == 20852014
    assert len(request.proof) == 4
    assert request.origin == "example.com/behind-the-sofa"
    assert len(signed_note.parse_note(request.note).signatures) == 2
    again = ww.format_add_checkpoint(request.old_size, request.proof, request.note)
    assert again == vec.WITNESS_SPEC_REQUEST


def test_the_spec_example_response_parses_and_formats_back() -> None:
    lines = ww.parse_cosignature_response(vec.WITNESS_SPEC_RESPONSE)
    assert [s.name for s in lines] == [
        "witness.example/w1",
        "witness.example/w1",
        "witness.example/w2",
    ]
    assert ww.format_cosignature_response(lines) == vec.WITNESS_SPEC_RESPONSE


def test_an_independent_request_parses_to_the_same_values() -> None:
    proof = ind.consistency(9, ENTRIES[:30])
    request = ww.parse_add_checkpoint(ind.add_checkpoint_body(9, proof, _note(30)))
    assert (request.old_size, list(request.proof), request.note) == (9, proof, _note(30))
    assert ww.format_add_checkpoint(9, proof, _note(30)) == ind.add_checkpoint_body(
        9, proof, _note(30)
    )


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("witnessed", "old", "new"),
    [(None, 0, 0), (None, 0, 17), (_state(17), 17, 17), (_state(17), 17, 40), (_state(1), 1, 2)],
)
def test_consistent_checkpoints_are_accepted(
    witnessed: tuple[int, bytes] | None, old: int, new: int
) -> None:
    accepted = ww.judge_add_checkpoint(witnessed, _body(old, new), LOGS)
    assert accepted.checkpoint.size == new
    assert accepted.checkpoint.root_hash == ind.mth(ENTRIES[:new])
    assert accepted.verified_by == (ORIGIN,)
    assert accepted.note == _note(new)


def test_an_unknown_origin_is_404() -> None:
    body = ind.add_checkpoint_body(0, [], _note(3, origin="other.example/log"))
    assert _refused(None, body).status == 404


def test_no_trusted_signature_is_403() -> None:
    stranger = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"stranger").digest())
    assert _refused(None, ind.add_checkpoint_body(0, [], _note(3, key=stranger))).status == 403
    # Signed under the log's name and key ID but altered: the known key's signature fails.
    body = _body(0, 3).replace(b"\n3\n", b"\n4\n")
    assert _refused(None, body).status == 403


@pytest.mark.parametrize(("old", "new"), [(20, 10), (11, 10), (1, 0)])
def test_old_larger_than_the_checkpoint_is_400(old: int, new: int) -> None:
    refusal = _refused(_state(old), _body(old, new, proof=[]))
    assert refusal.status == 400
    assert "larger" in refusal.message


def test_a_signed_but_malformed_checkpoint_is_400() -> None:
    note = ind.sign_note_ed25519(f"{ORIGIN}\n007\nxx\n".encode(), ORIGIN, LOG_KEY)
    assert _refused(None, ind.add_checkpoint_body(0, [], note)).status == 400


@pytest.mark.parametrize(("witnessed", "old"), [(None, 5), (_state(17), 0), (_state(17), 16)])
def test_an_old_size_other_than_ours_is_409_with_our_size(
    witnessed: tuple[int, bytes] | None, old: int
) -> None:
    refusal = _refused(witnessed, _body(old, 30))
    assert (refusal.status, refusal.code) == (409, "witness-size-mismatch")
    assert refusal.witness_size == (0 if witnessed is None else witnessed[0])
    assert ww.format_size_conflict(refusal.witness_size) == b"%d\n" % refusal.witness_size


def test_the_same_size_with_another_root_is_409() -> None:
    refusal = _refused((30, hashlib.sha256(b"fork").digest()), _body(30, 30))
    assert (refusal.status, refusal.code) == (409, "witness-root-mismatch")


@pytest.mark.parametrize(
    ("witnessed", "old", "new", "proof"),
    [
        (_state(17), 17, 30, [hashlib.sha256(b"x").digest()] * 4),
        (_state(17), 17, 30, ind.consistency(17, ENTRIES[:30])[:-1]),
        (_state(17), 17, 30, ind.consistency(16, ENTRIES[:30])),
        (None, 0, 30, [hashlib.sha256(b"x").digest()]),
        (_state(17), 17, 17, [hashlib.sha256(b"x").digest()]),
    ],
    ids=["wrong-hashes", "truncated", "other-old-size", "proof-with-old-0", "proof-for-same-size"],
)
def test_a_bad_consistency_proof_is_422(
    witnessed: tuple[int, bytes] | None, old: int, new: int, proof: list[bytes]
) -> None:
    assert _refused(witnessed, _body(old, new, proof)).status == 422


def test_a_forked_log_gets_422_even_with_a_proof_of_its_own() -> None:
    forked = [*ENTRIES[:10], b"rewritten", *ENTRIES[11:30]]
    text = ind.checkpoint_text(ORIGIN, 30, ind.mth(forked))
    body = ind.add_checkpoint_body(
        17, ind.consistency(17, forked), ind.sign_note_ed25519(text, ORIGIN, LOG_KEY)
    )
    assert _refused(_state(17), body).status == 422


# ---------------------------------------------------------------------------------------------
# Malformed bodies: 400, each with what is wrong
# ---------------------------------------------------------------------------------------------

_HASH = ind.b64(hashlib.sha256(b"h").digest())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"old 3", "newline"),
        (b"new 3\n\n", "old <size>"),
        (b"old 03\n\n", "leading zeros"),
        (b"old -1\n\n", "decimal"),
        (b"old 18446744073709551616\n\n", "uint64"),
        (b"old 3\n" + f"{_HASH}\n".encode() * 64 + b"\n", "more than 63"),
        (b"old 3\n!!!!\n\n", "canonical base64"),
        (b"old 3\n" + ind.b64(bytes(31)).encode() + b"\n\n", "32-byte"),
        (b"old 3\n" + _HASH.encode() + b"\n", "no empty line"),
        (b"old 3\n\nnot a note\n", "signed note"),
        (b"old 3\r\n\n", "control character"),
        (b"old 3\n\n" + b"\xff", "UTF-8"),
    ],
)
def test_malformed_requests_are_400(body: bytes, match: str) -> None:
    with pytest.raises(WitnessRefusedError, match=match) as info:
        ww.parse_add_checkpoint(body)
    assert info.value.status == 400


def test_sixty_three_proof_lines_are_allowed() -> None:
    body = b"old 3\n" + f"{_HASH}\n".encode() * 63 + b"\n" + _note(3)
    assert len(ww.parse_add_checkpoint(body).proof) == 63


def test_format_refuses_what_it_could_not_send() -> None:
    with pytest.raises(BadDataError):
        ww.format_add_checkpoint(-1, [], _note(3))
    with pytest.raises(BadDataError):
        ww.format_add_checkpoint(3, [bytes(32)] * 64, _note(3))
    with pytest.raises(NoteFormatError):
        ww.format_add_checkpoint(3, [], b"not a note\n")


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def test_a_cosignature_answer_is_attached_and_verifies_independently() -> None:
    accepted = ww.judge_add_checkpoint(_state(17), _body(17, 30), LOGS)
    other_key = Ed25519PrivateKey.generate()
    response = ww.format_cosignature_response(
        [
            cs.cosign(accepted.text, W_NAME, W_KEY, T),
            cs.cosign(accepted.text, "other", other_key, T),
        ]
    )
    note, cosigs = ww.attach_cosignatures(_note(30), response, [W])
    assert [(c.name, c.timestamp) for c in cosigs] == [(W_NAME, T)]
    assert b"other" not in note.split(b"\n\n")[-1]  # untrusted lines are dropped
    assert ind.verify_note(note, W.vkey()) == T
    # An answer made over another checkpoint does not verify over ours.
    with pytest.raises(SignatureError):
        ww.attach_cosignatures(_note(29), response, [W])


@pytest.mark.parametrize("body", [b"", b"- w1 AAAA\n", "— w1 AAAAAA==".encode(), b"12\n"])
def test_malformed_answers_are_refused(body: bytes) -> None:
    with pytest.raises(NoteFormatError):
        ww.parse_cosignature_response(body)
    with pytest.raises(BadDataError):
        ww.format_cosignature_response([])


@pytest.mark.parametrize("body", [b"12", b"012\n", b"-1\n", b"x\n", b"18446744073709551616\n"])
def test_malformed_size_answers_are_refused(body: bytes) -> None:
    with pytest.raises(BadDataError):
        ww.parse_size_conflict(body)


def test_size_answers_round_trip() -> None:
    assert ww.TLOG_SIZE_CONTENT_TYPE == "text/x.tlog.size"
    assert ww.parse_size_conflict(ww.format_size_conflict(20852014)) == 20852014


@settings(max_examples=60, deadline=None)
@given(
    old=st.integers(0, 2**64 - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=63),
)
def test_requests_round_trip(old: int, proof: list[bytes]) -> None:
    body = ww.format_add_checkpoint(old, proof, _note(5))
    assert body == ind.add_checkpoint_body(old, proof, _note(5))
    request = ww.parse_add_checkpoint(body)
    assert (request.old_size, list(request.proof), request.note, request.origin) == (
        old,
        proof,
        _note(5),
        ORIGIN,
    )
