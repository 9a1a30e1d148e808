"""Tests for jcm_sync.core.cosignature: C2SP tlog-cosignature, types 0x04 and 0x06.

Vectors come from the C2SP spec texts and from transparency-dev/formats (``c2sp_vectors``,
which cites each); interoperability is checked both ways against ``c2sp_independent``, an
implementation written from the spec text that imports nothing of jcm_sync.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import cosignature as cs
from jcm_sync.core import note as signed_note
from jcm_sync.core.checkpoint import Checkpoint, format_body, sign_checkpoint
from jcm_sync.core.cosignature import CosignatureVerifier
from jcm_sync.errors import (
    AmbiguousKeyError,
    BadDataError,
    CheckpointFormatError,
    KeyFormatError,
    SignatureError,
    UnknownKeyError,
)
from tests.core import c2sp_independent as ind
from tests.core import c2sp_vectors as vec

ORIGIN = "jcm-sync.example/JP-MN/JP"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"log").digest())
LOG = signed_note.Verifier(ORIGIN, LOG_KEY.public_key())
ED_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness ed").digest())
ML_KEY = MLDSA44PrivateKey.from_seed_bytes(hashlib.sha256(b"witness ml").digest())
ED_NAME = "jcm-sync.example/MN/witness"
ML_NAME = "jcm-sync.example/MN/witness-pq"
ED = CosignatureVerifier(ED_NAME, ED_KEY.public_key())
ML = CosignatureVerifier(ML_NAME, ML_KEY.public_key())
ROOT = hashlib.sha256(b"root").digest()
T = 1_764_547_200


def _note(size: int = 7, extensions: tuple[str, ...] = ()) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, ROOT, extensions), LOG_KEY)


# ---------------------------------------------------------------------------------------------
# Published vectors
# ---------------------------------------------------------------------------------------------


def test_the_signed_message_is_the_one_of_the_spec_example() -> None:
    # tlog-cosignature, "Ed25519 signed message".
    text, _ = ind.split_note(vec.COSIG_SPEC_NOTE)
    assert cs.cosignature_message(text, vec.COSIG_SPEC_TIME) == vec.COSIG_SPEC_MESSAGE


def test_the_spec_example_cosignature_is_found_with_its_time() -> None:
    # tlog-cosignature, introduction: the w1 line states 1679315147; the log's line is no cosig.
    assert cs.cosignatures_present(vec.COSIG_SPEC_NOTE) == (
        ("witness.example.com/w1", vec.COSIG_SPEC_TIME),
    )


def test_a_published_type_0x04_vkey_and_timestamp() -> None:
    # transparency-dev/formats TestCoSigV1NewVerifier and TestCosignatureTimestamp.
    v = CosignatureVerifier.from_vkey(vec.REMORA_VKEY)
    assert (v.name, v.key_id, v.signature_type) == ("remora.n621.de", 0xDA77ADE7, 0x04)
    assert v.vkey() == vec.REMORA_VKEY
    raw = base64.b64decode(vec.FORMATS_COSIG_B64)
    assert v.timestamp_of(raw[4:]) == vec.FORMATS_COSIG_TIME


def test_a_torchwood_ml_dsa_subtree_cosignature_verifies() -> None:
    # transparency-dev/formats TestMLDSAVerifyTorchwood: made by filippo.io/torchwood.
    v = CosignatureVerifier.from_vkey(vec.TORCHWOOD_VKEY)
    assert (v.name, v.key_id, v.signature_type) == ("witness.example/w1", 0x7118E8F9, 0x06)
    assert v.vkey() == vec.TORCHWOOD_VKEY
    raw = base64.b64decode(vec.TORCHWOOD_SIGNATURE_B64)
    assert raw[:4] == v.key_id.to_bytes(4, "big")
    root = base64.b64decode(vec.TORCHWOOD_ROOT_B64)
    args = (vec.TORCHWOOD_ORIGIN, vec.TORCHWOOD_START, vec.TORCHWOOD_END)
    assert v.verify_subtree(*args, root, raw[4:])
    assert v.timestamp_of(raw[4:]) == 0
    assert not v.verify_subtree(vec.TORCHWOOD_ORIGIN, 8, 14, root, raw[4:])
    assert not v.verify_subtree("example.com/other", 8, 13, root, raw[4:])
    assert not v.verify_subtree(*args, hashlib.sha256(root).digest(), raw[4:])
    renamed = CosignatureVerifier("witness.example/w2", v.public_key)
    assert not renamed.verify_subtree(*args, root, raw[4:])  # the message commits to the name


# ---------------------------------------------------------------------------------------------
# Interoperability with the independent implementation, both ways
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED_KEY, ML_KEY], ids=["ed25519", "ml-dsa-44"])
def test_key_ids_and_vkeys_match_the_independent_implementation(
    key: Ed25519PrivateKey | MLDSA44PrivateKey,
) -> None:
    sig_type = 0x04 if isinstance(key, Ed25519PrivateKey) else 0x06
    public = ind.public_raw(key)
    assert cs.cosigner_key_id("w", key.public_key()).to_bytes(4, "big") == ind.key_id(
        "w", sig_type, public
    )
    assert cs.cosigner_vkey("w", key.public_key()) == ind.vkey("w", sig_type, public)


@pytest.mark.parametrize(("name", "key"), [(ED_NAME, ED_KEY), (ML_NAME, ML_KEY)])
def test_our_cosignatures_verify_with_the_independent_implementation(
    name: str, key: Ed25519PrivateKey | MLDSA44PrivateKey
) -> None:
    note = cs.add_cosignature(_note(extensions=("ext one",)), name, key, T)
    vkey = cs.cosigner_vkey(name, key.public_key())
    assert ind.verify_note(note, vkey) == T
    assert ind.verify_note(note, LOG.vkey()) == 0  # the log's signature is untouched
    # One bit of the root changed: the independent verifier refuses it.
    text, _ = ind.split_note(note)
    forged = note.replace(text.split(b"\n")[1], b"8", 1)
    assert ind.verify_note(forged, vkey) is None


@pytest.mark.parametrize(("name", "key"), [(ED_NAME, ED_KEY), (ML_NAME, ML_KEY)])
def test_independent_cosignatures_verify_with_ours(
    name: str, key: Ed25519PrivateKey | MLDSA44PrivateKey
) -> None:
    text = ind.checkpoint_text(ORIGIN, 12, ROOT)
    note = ind.sign_note_ed25519(text, ORIGIN, LOG_KEY) + ind.cosign(text, name, key, T).encode()
    witness = CosignatureVerifier.from_vkey(
        ind.vkey(name, 4 if name == ED_NAME else 6, ind.public_raw(key))
    )
    (cosig,) = cs.verify_cosignatures(note, [witness])
    assert (cosig.name, cosig.timestamp, cosig.signature_type) == (name, T, witness.signature_type)
    # A cosignature verifier is a note verifier: open_note takes it beside the log's key.
    assert signed_note.open_note(note, [LOG, witness]).verified_by == (ORIGIN, name)


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


def test_ed25519_covers_extension_lines_and_ml_dsa_does_not() -> None:
    # tlog-cosignature: extension lines are in the Ed25519 message, not in cosigned_message.
    note = _note(extensions=("ext one",))
    note = cs.add_cosignature(cs.add_cosignature(note, ED_NAME, ED_KEY, T), ML_NAME, ML_KEY, T)
    altered = note.replace(b"ext one", b"ext two")
    with pytest.raises(SignatureError, match=ED_NAME):
        cs.verify_cosignatures(altered, [ED, ML])
    assert [c.name for c in cs.verify_cosignatures(altered, [ML])] == [ML_NAME]


def test_a_new_cosignature_replaces_the_old_one_of_the_same_key() -> None:
    note = cs.add_cosignature(_note(), ED_NAME, ED_KEY, T)
    note = cs.add_cosignature(note, ED_NAME, ED_KEY, T + 60)
    assert [c.timestamp for c in cs.verify_cosignatures(note, [ED])] == [T + 60]
    assert note.count(ED_NAME.encode()) == 1


def test_unknown_witnesses_are_ignored_and_a_bad_known_one_refuses() -> None:
    note = cs.add_cosignature(_note(), ED_NAME, ED_KEY, T)
    other = CosignatureVerifier("other.example", Ed25519PrivateKey.generate().public_key())
    assert cs.verify_cosignatures(note, [other]) == ()
    # Same name and key ID, another timestamp: the signature no longer matches.
    line = note.rsplit(b"\n", 2)[1].decode()
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1
    forged = note.replace(line.encode(), f"— {ED_NAME} {ind.b64(bytes(raw))}".encode())
    with pytest.raises(SignatureError):
        cs.verify_cosignatures(forged, [ED])
    with pytest.raises(UnknownKeyError):
        signed_note.open_note(note, [other])


def test_two_witness_keys_under_one_name_and_id_are_ambiguous() -> None:
    impostor = CosignatureVerifier(ED_NAME, Ed25519PrivateKey.generate().public_key())
    object.__setattr__(impostor, "key_id", ED.key_id)  # a key ID collision, made by hand
    note = cs.add_cosignature(_note(), ED_NAME, ED_KEY, T)
    with pytest.raises(AmbiguousKeyError):
        cs.verify_cosignatures(note, [ED, impostor])
    assert len(cs.verify_cosignatures(note, [ED, ED])) == 1  # the same key twice is harmless


def test_ml_dsa_subtree_signing_round_trips() -> None:
    sig = cs.sign_subtree(ML_NAME, ML_KEY, ORIGIN, 256, 512, ROOT)
    assert ML.verify_subtree(ORIGIN, 256, 512, ROOT, sig)
    assert not ML.verify_subtree(ORIGIN, 0, 512, ROOT, sig)
    assert not ED.verify_subtree(ORIGIN, 256, 512, ROOT, sig)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((ML_NAME, 5, ORIGIN, 1, 2, ROOT), "timestamp 0"),
        ((ML_NAME, 0, ORIGIN, 3, 2, ROOT), "after its end"),
        ((ML_NAME, -1, ORIGIN, 0, 2, ROOT), "outside"),
        ((ML_NAME, 2**63, ORIGIN, 0, 2, ROOT), "outside"),
        ((ML_NAME, True, ORIGIN, 0, 2, ROOT), "must be an int"),
        ((ML_NAME, 0, ORIGIN, 0, 2**64, ROOT), "uint64"),
        ((ML_NAME, 0, ORIGIN, 0, 2, ROOT[:31]), "32 bytes"),
        (("x" * 256, 0, ORIGIN, 0, 2, ROOT), "1 to 255"),
        ((ML_NAME, 0, "", 0, 2, ROOT), "1 to 255"),
    ],
)
def test_subtree_messages_refuse_what_the_spec_forbids(args: tuple, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadDataError, match=match):
        cs.subtree_message(*args)


def test_signing_refuses_bad_input() -> None:
    text = format_body(Checkpoint(ORIGIN, 3, ROOT))
    with pytest.raises(CheckpointFormatError):
        cs.cosign(b"not\na checkpoint\n", ED_NAME, ED_KEY, T)
    with pytest.raises(BadDataError, match="outside"):
        cs.cosign(text, ED_NAME, ED_KEY, 2**63)
    with pytest.raises(KeyFormatError):
        cs.cosign(text, "bad name", ED_KEY, T)
    with pytest.raises(KeyFormatError):
        cs.cosign(text, ED_NAME, LOG.public_key, T)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        cs.sign_subtree(ML_NAME, ED_KEY, ORIGIN, 0, 1, ROOT)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        cs.verify_cosignatures(_note(), [LOG])  # type: ignore[list-item]


def test_verify_is_false_on_malformed_signatures() -> None:
    text = format_body(Checkpoint(ORIGIN, 3, ROOT))
    good = cs.cosign(text, ED_NAME, ED_KEY, T).signature
    assert ED.verify(text, good)
    assert not ED.verify(text, good[:-1])
    assert not ED.verify(text, (2**63).to_bytes(8, "big") + good[8:])
    assert not ML.verify(text, good)
    assert not ML.verify(b"garbage\n", cs.cosign(text, ML_NAME, ML_KEY, T).signature)


_SEED = ind.b64(bytes([0x04]) + ED_KEY.public_key().public_bytes_raw())


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        (f"{ED_NAME}+00000000+{_SEED}", "does not match"),
        (f"{ED_NAME}+0000000+{_SEED}", "8 hex"),
        (f"{ED_NAME}+zzzzzzzz+{_SEED}", "8 hex"),
        (f"{ED_NAME}+{ED.key_id:08x}", "form"),
        (f"{ED_NAME}+{ED.key_id:08x}+!!!", "base64"),
        (f"{ED_NAME}+{ED.key_id:08x}+{_SEED[:-2]}", "base64|type"),
        (f"bad name+{ED.key_id:08x}+{_SEED}", "key name"),
        (LOG.vkey(), "signature type 0x01"),
        (f"{ED_NAME}+{ED.key_id:08x}+{ind.b64(bytes([6]) + bytes(32))}", "0x06"),
    ],
)
def test_malformed_vkeys_are_refused(vkey: str, match: str) -> None:
    with pytest.raises(KeyFormatError, match=match):
        CosignatureVerifier.from_vkey(vkey)


def test_a_vkey_must_be_a_string() -> None:
    with pytest.raises(KeyFormatError, match="str"):
        CosignatureVerifier.from_vkey(b"x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 2**64 - 1),
    timestamp=st.integers(0, 2**63 - 1),
    pq=st.booleans(),
    name=st.from_regex(r"[a-z0-9./-]{1,40}", fullmatch=True),
)
def test_cosign_then_verify_round_trips(size: int, timestamp: int, pq: bool, name: str) -> None:
    key = ML_KEY if pq else ED_KEY
    note = cs.add_cosignature(_note(size), name, key, timestamp)
    witness = CosignatureVerifier.from_vkey(cs.cosigner_vkey(name, key.public_key()))
    (cosig,) = cs.verify_cosignatures(note, [witness])
    assert (cosig.name, cosig.timestamp) == (name, timestamp)
    assert ind.verify_note(note, witness.vkey()) == timestamp
    assert cs.cosignatures_present(note) == ((name, timestamp),)
