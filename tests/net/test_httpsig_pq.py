"""``ml-dsa-44`` request signatures (``jcm_sync.net.httpsig_pq``, C2SP httpsig-pq): the
published vector through the hub's verifier, the algorithm class's refusals, and a
request signed and verified end to end under a root that requires ML-DSA-44 transport.
"""

from __future__ import annotations

import base64

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from http_message_signatures import HTTPMessageSignaturesException, algorithms

from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import key_entry
from jcm_sync.errors import AlgorithmRequiredError, RequestSignatureError, SignatureMismatchError
from jcm_sync.net.auth import RequestVerifier, verify_signature
from jcm_sync.net.httpsig_pq import ED25519, HTTPSIG_ALGORITHMS, MLDSA44
from jcm_sync.net.signing import RequestSigner
from tests import builders
from tests.net import httpsig_pq_vector as vector
from tests.net.signed_requests import BODY, ID_KEY, JP_ID, ROOTS, URL, WINDOW, T, check, signed

PQ_KEY = MLDSA44PrivateKey.from_seed(b"\x11" * 32)  # Indonesia's ML-DSA-44 transport key


def _root(requirement: str | None) -> dict[str, object]:
    """ROOTS with PQ_KEY added as ID's transport key and, if given, the requirement."""
    entry = key_entry(
        PQ_KEY.public, "ID", not_before=builders.KEYS_VALID_FROM,
        not_after=builders.KEYS_VALID_UNTIL, roles=["transport"],
    )  # fmt: skip
    need = {} if requirement is None else {"transport": requirement}
    root = msgspec.structs.replace(JP_ID, keys=(*JP_ID.keys, entry), required_algorithms=need)
    return {**ROOTS, "JP-ID": root}


def _vector_headers(signature: bytes) -> dict[str, str]:
    return {
        **vector.HEADERS,
        "Signature-Input": f"sig1={vector.SIGNATURE_PARAMS}",
        "Signature": f"sig1=:{base64.b64encode(signature).decode()}:",
    }


def test_the_published_vector_verifies_through_the_hubs_verifier() -> None:
    """c2sp.org/httpsig-pq, ML-DSA-44 vector: alg picks MLDSA44 and the signature verifies."""
    key = MLDSA44PrivateKey.from_seed(bytes.fromhex(vector.SEED_HEX)).public
    sig = base64.b64decode(vector.SIGNATURE_B64)
    got = verify_signature(
        "GET", vector.URL, _vector_headers(sig), lambda kid: key if kid == vector.KEY_ID else None
    )
    assert got.keyid == vector.KEY_ID
    assert got.parameters["alg"] == "ml-dsa-44"
    assert got.key == key
    tampered = bytearray(sig)
    tampered[7] ^= 1
    with pytest.raises(SignatureMismatchError):
        verify_signature("GET", vector.URL, _vector_headers(bytes(tampered)), lambda _: key)


def test_the_vector_under_an_ed25519_key_is_refused_as_the_wrong_algorithm() -> None:
    """httpsig-pq: alg must match the configured key's algorithm."""
    sig = base64.b64decode(vector.SIGNATURE_B64)
    with pytest.raises(RequestSignatureError, match=r"says alg=ml-dsa-44, but key .* is ed25519"):
        verify_signature("GET", vector.URL, _vector_headers(sig), lambda _: ID_KEY.public)


def test_the_registry_maps_alg_values_to_library_algorithm_classes() -> None:
    assert HTTPSIG_ALGORITHMS["ml-dsa-44"] is MLDSA44
    # the library's Ed25519 class, verifying under the project's one rule (ADR 0038)
    assert HTTPSIG_ALGORITHMS["ed25519"] is ED25519
    assert issubclass(ED25519, algorithms.ED25519)
    assert issubclass(MLDSA44, algorithms.HTTPSignatureAlgorithm)
    assert MLDSA44.algorithm_id == "ml-dsa-44"


def test_the_algorithm_class_refuses_other_keys_and_wrong_lengths() -> None:
    with pytest.raises(HTTPMessageSignaturesException, match="ML-DSA-44 public key"):
        MLDSA44(public_key=ID_KEY.public.key)
    with pytest.raises(HTTPMessageSignaturesException, match="ML-DSA-44 private key"):
        MLDSA44(private_key=ID_KEY.key)
    alg = MLDSA44(public_key=PQ_KEY.public.key, private_key=PQ_KEY.key)
    sig = alg.sign(b"base")
    assert len(sig) == 2420
    alg.verify(sig, b"base")
    with pytest.raises(InvalidSignature, match="2420 bytes, not 64"):
        alg.verify(sig[:64], b"base")
    with pytest.raises(InvalidSignature):
        alg.verify(sig, b"other base")


def test_a_request_signed_with_ml_dsa_44_is_accepted_when_the_root_requires_it() -> None:
    """The signer names alg="ml-dsa-44"; the verifier accepts it as ID's request."""
    req = signed(key=PQ_KEY)  # type: ignore[arg-type]
    assert ';alg="ml-dsa-44"' in req.headers["Signature-Input"]
    sig = req.headers["Signature"].split(":")[1]
    assert len(base64.b64decode(sig)) == 2420
    caller = check(RequestVerifier(_root("ml-dsa-44"), window=WINDOW), req)  # type: ignore[arg-type]
    assert (caller.partnership, caller.node, caller.keyid) == ("JP-ID", "ID", PQ_KEY.key_id)


def test_the_transport_requirement_decides_which_algorithm_a_hub_accepts() -> None:
    """Absent (ed25519): an ML-DSA-44 request is refused; ml-dsa-44: an Ed25519 one is."""
    with pytest.raises(AlgorithmRequiredError, match="requires ed25519 transport"):
        check(RequestVerifier(_root(None), window=WINDOW), signed(key=PQ_KEY))  # type: ignore[arg-type]
    with pytest.raises(AlgorithmRequiredError, match="requires ml-dsa-44 transport"):
        check(RequestVerifier(_root("ml-dsa-44"), window=WINDOW), signed())  # type: ignore[arg-type]
    assert check(RequestVerifier(_root(None), window=WINDOW), signed()).node == "ID"  # type: ignore[arg-type]


def test_an_ml_dsa_signature_under_an_ed25519_key_id_is_refused() -> None:
    """Signed by the ML-DSA key but naming the Ed25519 key's id: alg and key disagree."""
    headers = {"Content-Type": "application/json"}
    RequestSigner(PQ_KEY, key_id=ID_KEY.key_id).sign("POST", URL, headers, BODY, now=T)
    verifier = RequestVerifier(_root(None), window=WINDOW)  # type: ignore[arg-type]
    with pytest.raises(RequestSignatureError, match="says alg=ml-dsa-44, but key"):
        verifier.verify("POST", URL, headers, BODY, now=T)
