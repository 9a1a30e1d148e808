"""Hybrid DSSE envelopes (Ed25519 + ML-DSA-44, ``core/envelope.py`` rule 7) and the
per-role algorithm requirement of trust roots (``core/trust.py`` rule 7).

A root below lists an Ed25519 and an ML-DSA-44 key for each node; records are signed
with one or both and verified under each requirement: ``ed25519`` (the default when a
root states none), ``ml-dsa-44`` and ``both``.
"""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from jcm_sync.core.envelope import (
    PrivateKey,
    add_signature,
    open_envelope,
    sign_payload,
    verify_envelope,
)
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import TrustRoot, decode_root, encode_root, verify_record, verify_root
from jcm_sync.errors import (
    AlgorithmRequiredError,
    BadDataError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
)
from tests import builders
from tests.builders import NOW, record_for, signed

ED = {n: PrivateKey.from_seed(bytes([n + 1]) * 32) for n in range(2)}
PQ = {n: MLDSA44PrivateKey.from_seed(bytes([n + 41]) * 32) for n in range(3)}
JP_ED, ID_ED, JP_PQ, ID_PQ, STRANGER_PQ = ED[0], ED[1], PQ[0], PQ[1], PQ[2]
PTYPE = "application/vnd.in-toto+json"


def _root(**required: str) -> TrustRoot:
    root = builders.build_root(
        "JP-ID",
        {"JP": [JP_ED, JP_PQ], "ID": [ID_ED, ID_PQ]},  # type: ignore[list-item]
    )
    return msgspec.structs.replace(root, required_algorithms=required)


# --- envelopes --------------------------------------------------------------------


def test_a_hybrid_envelope_carries_and_verifies_both_signatures() -> None:
    env = sign_payload(PTYPE, b"{}", [JP_ED, JP_PQ])
    got = verify_envelope(env, [JP_ED.public, JP_PQ.public])
    assert [k.algorithm for k in got.signers] == ["ed25519", "ml-dsa-44"]
    sigs = open_envelope(env).signatures
    assert [len(s.sig) for s in sigs] == [64, 2420]  # FIPS 204: 2,420-byte signatures


def test_the_ml_dsa_signature_costs_its_base64_and_key_id_in_bytes() -> None:
    """Bytes per record: the hybrid envelope is the Ed25519 one plus one signature entry."""
    ed_only = sign_payload(PTYPE, b"{}", [JP_ED])
    hybrid = sign_payload(PTYPE, b"{}", [JP_ED, JP_PQ])
    sig_b64 = "x" * len(base64.b64encode(b"\0" * 2420))
    entry = f',{{"keyid":"{JP_PQ.key_id}","sig":"{sig_b64}"}}'
    assert len(hybrid) - len(ed_only) == len(entry) == 3228 + 64 + 22


def test_countersigning_with_ml_dsa_makes_a_hybrid_envelope() -> None:
    env = add_signature(sign_payload(PTYPE, b"{}", [JP_ED]), JP_PQ)
    assert verify_envelope(env, [JP_ED.public, JP_PQ.public]).signer_ids == (
        JP_ED.key_id,
        JP_PQ.key_id,
    )
    with pytest.raises(SignatureError, match="already signed"):
        add_signature(env, JP_PQ)


def test_a_forged_ml_dsa_part_refuses_the_whole_envelope() -> None:
    doc = json.loads(sign_payload(PTYPE, b"{}", [JP_ED, JP_PQ]))
    sig = bytearray(base64.b64decode(doc["signatures"][1]["sig"]))
    sig[0] ^= 1
    doc["signatures"][1]["sig"] = base64.b64encode(bytes(sig)).decode()
    forged = json.dumps(doc, separators=(",", ":")).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(forged, [JP_ED.public, JP_PQ.public])


def test_an_ml_dsa_signature_by_an_unknown_key_is_refused() -> None:
    env = sign_payload(PTYPE, b"{}", [JP_ED, STRANGER_PQ])
    with pytest.raises(UnknownKeyError):
        verify_envelope(env, [JP_ED.public, JP_PQ.public])


# --- roots and records ------------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "keys", "refused"),
    [
        (None, [JP_ED], None),
        (None, [JP_PQ], "requires ed25519 signatures for issuance; JP signed with ml-dsa-44"),
        (None, [JP_ED, JP_PQ], None),
        ("ed25519", [JP_PQ], "no ed25519 signature"),
        ("ml-dsa-44", [JP_ED], "requires ml-dsa-44 signatures for issuance"),
        ("ml-dsa-44", [JP_PQ], None),
        ("ml-dsa-44", [JP_PQ, JP_ED], None),
        ("both", [JP_ED], "requires both signatures for issuance; JP signed with ed25519 only"),
        ("both", [JP_PQ], "no ed25519 signature"),
        ("both", [JP_ED, JP_PQ], None),
        ("both", [JP_PQ, JP_ED], None),
    ],
)
def test_a_record_is_verified_under_the_roles_requirement(
    need: str | None, keys: list[PrivateKey], refused: str | None
) -> None:
    root = _root() if need is None else _root(issuance=need)
    env = signed(record_for("issuance", "JP"), *keys)
    if refused is None:
        v = verify_record(root, env, NOW)
        assert {s.algorithm for s in v.signers} == {k.algorithm for k in keys}
        return
    with pytest.raises(AlgorithmRequiredError, match=refused) as info:
        verify_record(root, env, NOW)
    assert isinstance(info.value, ThresholdError)
    assert info.value.code == "algorithm-required"


def test_the_requirement_binds_each_role_on_its_own() -> None:
    """``both`` for issuance leaves transaction records at the default, Ed25519."""
    root = _root(issuance="both")
    assert root.requirement("issuance") == "both"
    assert root.requirement("transaction") == "ed25519"
    verify_record(root, signed(record_for("transaction", "JP"), JP_ED), NOW)


def test_a_joint_record_needs_the_requirement_of_each_signing_node() -> None:
    root = _root(methodology="both")
    record = record_for("methodology", "JP")
    verify_record(root, signed(record, JP_ED, JP_PQ, ID_ED, ID_PQ), NOW)
    with pytest.raises(AlgorithmRequiredError, match="ID signed with ed25519 only"):
        verify_record(root, signed(record, JP_ED, JP_PQ, ID_ED), NOW)


def test_a_root_without_requirements_encodes_as_before_and_one_with_them_round_trips() -> None:
    plain = _root()
    assert b"required_algorithms" not in encode_root(plain)
    pq_root = _root(issuance="both", transport="ml-dsa-44")
    back = decode_root(encode_root(pq_root))
    assert back.required_algorithms == {"issuance": "both", "transport": "ml-dsa-44"}
    assert [k.algorithm for k in back.keys] == ["ed25519", "ml-dsa-44"] * 2


def test_ml_dsa_root_keys_sign_and_verify_a_root() -> None:
    """A root signed by Ed25519 and ML-DSA-44 root keys counts every one of them."""
    root = msgspec.structs.replace(_root(), root_threshold=4)
    env = builders.signed_root(root, [JP_ED, JP_PQ, ID_ED, ID_PQ])  # type: ignore[list-item]
    assert len(verify_root(env, NOW).signers) == 4


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"required_algorithms": {"root": "both"}}, "'root'"),
        ({"required_algorithms": {"transport": "both"}}, "one signature"),
        ({"required_algorithms": {"issuance": "rsa"}}, "Invalid enum value 'rsa'"),
    ],
)
def test_bad_requirements_are_refused_when_the_root_is_read(
    change: dict[str, object], says: str
) -> None:
    doc = {**builders.root_document(_root()), **change}
    with pytest.raises(BadDataError, match="not a valid trust root") as info:
        decode_root(msgspec.json.encode(doc))
    assert says in str(info.value)


def test_a_key_that_is_neither_32_nor_1312_bytes_is_refused() -> None:
    doc = builders.root_document(_root())
    doc["keys"][0]["public_key"] = base64.b64encode(b"\x01" * 64).decode()
    with pytest.raises(BadDataError, match="64 bytes"):
        decode_root(msgspec.json.encode(doc))
