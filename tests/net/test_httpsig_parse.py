"""The header readings ``net/auth.py`` takes from ``net/httpsig_parse.py`` agree with
the library's own: the algorithm a signature names, required coverage, body digests.

Each fast answer is compared with the library's full parse of the same fields, so a
change in the library's keys or refusals fails here.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from http_message_signatures import ContentDigest, HTTPMessageSignaturesException, InvalidSignature
from http_message_signatures._components import _component_identity, _parse_component_ids

from jcm_sync.net.auth import COVERED_COMPONENTS
from jcm_sync.net.httpsig_parse import (
    check_coverage,
    required_components,
    signed_algorithm,
    verify_digest,
)
from jcm_sync.net.httpsig_pq import HTTPSIG_ALGORITHMS, MLDSA44
from jcm_sync.net.signing import RequestSigner
from tests.net.signed_requests import BODY, ID_KEY, URL, T

ED25519 = HTTPSIG_ALGORITHMS["ed25519"]
PARAMS = ';created=1;keyid="k";nonce="n"'


def digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f'jcm=("@method");alg="ed25519"{PARAMS}', ED25519),
        (f'jcm=("@method");alg="ml-dsa-44"{PARAMS}', MLDSA44),
        (f'jcm=("@method"){PARAMS}', ED25519),  # no alg: the library refuses later
        (f'jcm=("@method");alg="rsa-v1_5-sha256"{PARAMS}', ED25519),
        (f'jcm=("@method");tag="ml-dsa-44";alg="ed25519"{PARAMS}', ED25519),  # parsed
        ('jcm=("@method";alg="ml-dsa-44"', ED25519),  # malformed: the library refuses
        ("", ED25519),
    ],
)
def test_the_algorithm_is_the_one_alg_names(value: str, expected: type) -> None:
    assert signed_algorithm({"Signature-Input": value}) is expected


def test_a_signed_request_names_its_keys_algorithm() -> None:
    headers: dict[str, str] = {}
    RequestSigner(ID_KEY).sign("POST", URL, headers, BODY, now=T)
    assert signed_algorithm(headers) is ED25519
    assert signed_algorithm({k.lower(): v for k, v in headers.items()}) is ED25519


def library_covers(require: tuple[str, ...], covered: dict[str, str]) -> bool:
    ids = {_component_identity(n) for n in _parse_component_ids(tuple(covered))}
    return all(_component_identity(n) in ids for n in _parse_component_ids(require))


@pytest.mark.parametrize(
    ("require", "covered"),
    [
        (COVERED_COMPONENTS, ['"@method"', '"@target-uri"', '"content-digest"']),
        (COVERED_COMPONENTS, ['"@method"', '"content-digest"']),
        (COVERED_COMPONENTS, ['"@method"', '"@target-uri"', '"content-digest";key="sha-256"']),
        (("@method", '"x";a=1;b=2'), ['"@method"', '"x";b=2;a=1']),  # order ignored
        (("@method", '"x";a=1'), ['"@method"', '"x";a=2']),
        ((), ['"@method"']),
    ],
)
def test_coverage_agrees_with_the_library(require: tuple[str, ...], covered: list[str]) -> None:
    components = dict.fromkeys([*covered, '"@signature-params"'], "v")
    expected = library_covers(require, components)
    if expected:
        check_coverage(required_components(require), components)
    else:
        with pytest.raises(InvalidSignature, match="was not covered"):
            check_coverage(required_components(require), components)


def test_a_repeated_or_malformed_required_id_is_refused() -> None:
    with pytest.raises(HTTPMessageSignaturesException, match="Duplicate"):
        required_components(("@method", '"@method"'))
    with pytest.raises(HTTPMessageSignaturesException):
        required_components(("@METHOD",))


def test_the_digest_is_checked_on_the_plain_and_the_general_path() -> None:
    plain = {'"@method"': "POST", '"content-digest"': digest(BODY), '"@signature-params"': "()"}
    assert verify_digest(plain, BODY) is True
    with pytest.raises(HTTPMessageSignaturesException):
        verify_digest(plain, BODY + b" ")
    # a digest member covered with key= is found by the library's own walk
    keyed = {**plain, '"content-digest";key="sha-256"': digest(BODY).split("=", 1)[1]}
    assert verify_digest(keyed, BODY) is ContentDigest.verify_components(keyed, BODY) is True
    with pytest.raises(HTTPMessageSignaturesException):
        verify_digest({**keyed, '"content-digest"': digest(b"other")}, BODY)
    assert verify_digest({'"@method"': "GET", '"@signature-params"': "()"}, BODY) is False
    with pytest.raises(HTTPMessageSignaturesException):
        verify_digest({**plain, '"content-digest"': "sha-256=:AAAA:"}, BODY)
