"""ML-DSA-44 keys (``jcm_sync.core.pq``): FIPS 204 sizes, seeds, key ids, refusals, the
availability check, and the algorithm requirement of a role.

The key pair of C2SP httpsig-pq's published vector (``tests/net/httpsig_pq_vector.py``)
checks that a seed is read as C2SP and pyca mean it. Sizes are FIPS 204, table 2:
public key 1,312 bytes, signature 2,420 bytes, seed 32 bytes.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from jcm_sync.core import pq
from jcm_sync.core.envelope import (
    PrivateKey,
    generate_key,
    private_key_from_pem,
    public_key_from_pem,
    public_key_from_raw,
)
from jcm_sync.core.pq import MLDSA44PrivateKey, MLDSA44PublicKey, check_algorithms
from jcm_sync.errors import AlgorithmRequiredError, ConfigError, KeyFormatError
from tests.net import httpsig_pq_vector as vector

KEY = MLDSA44PrivateKey.from_seed(bytes(range(32)))


def test_fips_204_sizes() -> None:
    """Public key 1,312 B, signature 2,420 B, seed 32 B (FIPS 204 table 2)."""
    assert len(KEY.public.raw) == 1312 == pq.ML_DSA_44_PUBLIC_KEY_SIZE
    assert len(KEY.sign(b"m")) == 2420 == pq.ML_DSA_44_SIGNATURE_SIZE
    assert KEY.seed == bytes(range(32))


def test_the_published_seed_gives_the_published_key_and_its_signature_verifies() -> None:
    """C2SP httpsig-pq's ML-DSA-44 vector: seed -> public key; sample signature verifies."""
    key = MLDSA44PrivateKey.from_seed(bytes.fromhex(vector.SEED_HEX))
    assert key.public.raw == base64.b64decode(vector.PUBLIC_KEY_B64)
    signature = base64.b64decode(vector.SIGNATURE_B64)
    assert key.public.verify(signature, vector.SIGNATURE_BASE.encode())
    assert not key.public.verify(signature, vector.SIGNATURE_BASE.encode() + b" ")


def test_signing_uses_the_empty_context() -> None:
    """A signature made with a non-empty context does not verify (httpsig-pq rule)."""
    with_context = KEY.key.sign(b"m", b"jcm")
    assert not KEY.public.verify(with_context, b"m")
    assert KEY.public.verify(KEY.sign(b"m"), b"m")


def test_key_id_is_the_sha256_of_the_spki_der() -> None:
    der = KEY.public.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert KEY.key_id == hashlib.sha256(der).hexdigest()
    assert KEY.key_id != PrivateKey.from_seed(bytes(range(32))).key_id


@pytest.mark.parametrize("size", [0, 64, 2419, 2421], ids=["empty", "ed25519", "short", "long"])
def test_a_signature_of_the_wrong_length_is_false_not_an_exception(size: int) -> None:
    assert KEY.public.verify(b"\x00" * size, b"m") is False


def test_a_tampered_signature_does_not_verify() -> None:
    sig = bytearray(KEY.sign(b"m"))
    sig[100] ^= 1
    assert KEY.public.verify(bytes(sig), b"m") is False


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_seeds_of_the_wrong_size_are_refused(size: int) -> None:
    with pytest.raises(KeyFormatError, match=f"ML-DSA-44 seed is 32 bytes, not {size}"):
        MLDSA44PrivateKey.from_seed(b"\x01" * size)


@pytest.mark.parametrize("size", [0, 31, 33, 1311, 1313, 1952])
def test_raw_public_keys_of_other_sizes_are_refused(size: int) -> None:
    """Only 32 (Ed25519) and 1,312 (ML-DSA-44) bytes are public keys."""
    with pytest.raises(KeyFormatError, match=str(size)):
        public_key_from_raw(b"\x01" * size)


def test_raw_public_keys_are_told_apart_by_length() -> None:
    ed = PrivateKey.generate()
    assert public_key_from_raw(KEY.public.raw) == KEY.public
    assert isinstance(public_key_from_raw(KEY.public.raw), MLDSA44PublicKey)
    assert public_key_from_raw(ed.public.raw) == ed.public
    assert pq.algorithm_of_raw(KEY.public.raw) == "ml-dsa-44"
    assert pq.algorithm_of_raw(ed.public.raw) == "ed25519"


def test_pem_round_trip_keeps_the_seed_and_the_passphrase_protects_it() -> None:
    """The private file is PKCS#8 in the seed-only form: the 32-byte seed, nothing else."""
    pem = KEY.pem()
    der = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert der.endswith(b"\x80\x20" + KEY.seed)  # [0] IMPLICIT OCTET STRING (32): the seed
    back = private_key_from_pem(pem)
    assert isinstance(back, MLDSA44PrivateKey)
    assert back.seed == KEY.seed
    locked = KEY.pem(b"pw")
    assert b"ENCRYPTED" in locked
    with pytest.raises(KeyFormatError, match="passphrase"):
        private_key_from_pem(locked)
    assert private_key_from_pem(locked, b"pw").key_id == KEY.key_id
    assert public_key_from_pem(KEY.public.pem()) == KEY.public


def test_generate_key_by_algorithm_name() -> None:
    assert generate_key("ml-dsa-44").algorithm == "ml-dsa-44"
    assert generate_key().algorithm == "ed25519"
    with pytest.raises(KeyFormatError, match="unknown key algorithm 'rsa'"):
        generate_key("rsa")


def test_the_start_up_check_passes_here_and_names_the_remedy_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pq.mldsa_unavailable() is None
    pq.require_mldsa()

    def missing() -> object:
        raise ConfigError("ML-DSA-44 needs the Python package cryptography 48 or later")

    monkeypatch.setattr(pq, "_mldsa", missing)
    with pytest.raises(ConfigError, match="cryptography 48 or later"):
        pq.require_mldsa()
    assert "cryptography 48" in (pq.mldsa_unavailable() or "")


@pytest.mark.parametrize(
    ("need", "signed", "refused"),
    [
        ("ed25519", [("JP", "ed25519")], None),
        ("ed25519", [("JP", "ml-dsa-44")], "no ed25519 signature"),
        ("ed25519", [("JP", "ed25519"), ("JP", "ml-dsa-44")], None),
        ("ml-dsa-44", [("JP", "ed25519")], "no ml-dsa-44 signature"),
        ("ml-dsa-44", [("JP", "ml-dsa-44")], None),
        ("both", [("JP", "ed25519")], "no ml-dsa-44 signature"),
        ("both", [("JP", "ml-dsa-44")], "no ed25519 signature"),
        ("both", [("JP", "ed25519"), ("JP", "ml-dsa-44")], None),
        ("both", [("ID", "ed25519"), ("JP", "ed25519"), ("JP", "ml-dsa-44")], "ID signed"),
    ],
)
def test_check_algorithms_per_signing_node(
    need: pq.Requirement, signed: list[tuple[str, str]], refused: str | None
) -> None:
    """Each node that signed must have used every algorithm the role requires."""
    if refused is None:
        check_algorithms(need, "issuance", signed, 3)
        return
    with pytest.raises(AlgorithmRequiredError, match=refused) as info:
        check_algorithms(need, "issuance", signed, 3)
    assert info.value.code == "algorithm-required"
    assert "version 3 requires" in str(info.value)


def test_requirements_name_only_requirable_roles_and_transport_takes_one() -> None:
    pq.check_requirements({"issuance": "both", "transport": "ml-dsa-44"}, {"issuance", "transport"})
    with pytest.raises(ValueError, match="'root'"):
        pq.check_requirements({"root": "both"}, {"issuance", "transport"})
    with pytest.raises(ValueError, match="one signature"):
        pq.check_requirements({"transport": "both"}, {"transport"})
