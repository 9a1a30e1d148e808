"""RFC 9421 request signatures: what is accepted, what is refused and why, over a real server.

Keys come from fixed seeds and roots from ``tests.builders``; every check passes an
explicit ``now`` (``builders.NOW``) except the one test of the default clocks.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from unittest import mock

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core.envelope import PrivateKey, PublicKey
from jcm_sync.core.trust import ROLES, TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.errors import (
    AuthorityError,
    ClockSkewError,
    ContentDigestError,
    ExpiredError,
    NonceCacheFullError,
    ReplayError,
    RequestExpiredError,
    RequestSignatureError,
    SignatureMismatchError,
    UnknownKeyError,
    UntrustedError,
    WrongTargetError,
)
from jcm_sync.net.auth import (
    COVERED_COMPONENTS,
    NonceCache,
    RequestSigner,
    RequestVerifier,
    SigningMiddleware,
    new_nonce,
    normalise_origin,
    own_origin,
    signed_request,
    target_uri,
    trust_root_lookup,
    verify_aiohttp_request,
    verify_signature,
)
from tests import builders

NOW = builders.NOW
T = NOW.timestamp()
WINDOW = 300

ID_KEY = PrivateKey.from_seed(b"\x01" * 32)  # Indonesia's transport key
JP_KEY = PrivateKey.from_seed(b"\x02" * 32)
MN_KEY = PrivateKey.from_seed(b"\x03" * 32)  # Mongolia: no transport role
JP_MN_KEY = PrivateKey.from_seed(b"\x04" * 32)
REVOKED_KEY = PrivateKey.from_seed(b"\x05" * 32)
EXPIRED_KEY = PrivateKey.from_seed(b"\x06" * 32)
STRANGER_KEY = PrivateKey.from_seed(b"\x07" * 32)  # in no root

JP_ID = builders.build_root(
    "JP-ID",
    {"JP": JP_KEY, "ID": [ID_KEY, REVOKED_KEY, EXPIRED_KEY]},
    revoked={REVOKED_KEY.key_id: NOW - timedelta(days=1)},
    windows={EXPIRED_KEY.key_id: (builders.KEYS_VALID_FROM, NOW - timedelta(days=1))},
)
JP_MN = builders.build_root(
    "JP-MN",
    {"JP": JP_MN_KEY, "MN": MN_KEY},
    roles={"JP": sorted(ROLES), "MN": ["issuance", "transaction", "checkpoint", "root"]},
)
ROOTS = {"JP-ID": JP_ID, "JP-MN": JP_MN}

URL = "http://127.0.0.1:8443/v1/partnerships/JP-ID/logs/ID/entries?from=12&limit=100"
BODY = b'{"entries": ["aGVsbG8="]}'


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def signed(
    *,
    key: PrivateKey = ID_KEY,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    at: float = T,
    lifetime: int = WINDOW,
    key_id: str | None = None,
) -> Req:
    headers = {"Content-Type": "application/json"}
    RequestSigner(key, key_id=key_id, lifetime=lifetime).sign(method, url, headers, body, now=at)
    return Req(method, url, headers, body)


def library_signed(
    req: Req,
    *,
    covered: tuple[str, ...] = COVERED_COMPONENTS,
    nonce: str | None = "bm9uY2Utbm9uY2Utbm9uY2U",
    expires: bool = True,
    include_alg: bool = True,
    append: bool = False,
    digest: str | None = None,
) -> Req:
    """Sign with the library directly, to make requests our signer never makes.

    ``append`` adds a second signature to the request's own; ``digest`` replaces its
    Content-Digest before signing.
    """
    headers = {k: v for k, v in req.headers.items() if append or k.lower() != "content-digest"}
    if digest is not None:
        headers["Content-Digest"] = digest
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={ID_KEY.key_id: ID_KEY.key}),
    )

    @dataclass
    class Message:
        method: str
        url: str
        headers: dict[str, str]

    message = Message(req.method, req.url, headers)
    reuse = append or digest is not None
    signer.sign(
        message,
        key_id=ID_KEY.key_id,
        created=NOW,
        expires=NOW + timedelta(seconds=60) if expires else None,
        nonce=nonce,
        label="second" if append else "jcm",
        include_alg=include_alg,
        covered_component_ids=covered,
        body=None if reuse else req.body,
        use_existing_digest=reuse,
        append_if_signature_exists=append,
    )
    return replace(req, headers=message.headers)


def without(req: Req, name: str) -> Req:
    return replace(req, headers={k: v for k, v in req.headers.items() if k.lower() != name})


def with_header(req: Req, name: str, value: str) -> Req:
    return replace(req, headers={**without(req, name.lower()).headers, name: value})


def sha256_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


@pytest.fixture
def verifier() -> RequestVerifier:
    return RequestVerifier(ROOTS, window=WINDOW)


def check(verifier: RequestVerifier, req: Req, at: float = T) -> Caller:
    return verifier.verify(req.method, req.url, req.headers, req.body, now=at)


# --- accepted ---------------------------------------------------------------------

ID_CALLER = Caller("JP-ID", "ID", ID_KEY.key_id, ID_KEY.public)


@pytest.mark.parametrize(
    ("req", "at"),
    [
        pytest.param(signed(method="GET", body=b""), T, id="good-get"),
        pytest.param(signed(), T, id="good-post-with-body"),
        pytest.param(signed(at=T - WINDOW + 1), T, id="created-299-s-ago"),
        pytest.param(signed(at=T + WINDOW), T, id="created-ahead-within-the-window"),
        pytest.param(signed(at=T - 30, lifetime=31), T, id="one-second-before-expiry"),
        pytest.param(signed(url="http://hub.example.org/v1/roots"), T, id="default-port"),
    ],
)
def test_accepted(verifier: RequestVerifier, req: Req, at: float) -> None:
    """A well-signed request is accepted and names its caller's partnership and node."""
    assert check(verifier, req, at) == ID_CALLER


def test_bodiless_get_covers_the_digest_of_the_empty_body() -> None:
    """A GET still carries and covers Content-Digest: the SHA-256 of no bytes."""
    req = signed(method="GET", body=b"")
    assert req.headers["Content-Digest"] == sha256_digest(b"")
    assert '"content-digest"' in req.headers["Signature-Input"]


def test_signature_input_names_every_required_parameter() -> None:
    """The signature covers method, target URI and digest, with all five parameters."""
    value = signed(at=T).headers["Signature-Input"]
    assert value.startswith('jcm=("@method" "@target-uri" "content-digest");')
    created = int(T)
    assert f";created={created};" in value
    assert f";expires={created + WINDOW};" in value
    assert f';keyid="{ID_KEY.key_id}";' in value
    assert ';alg="ed25519"' in value
    assert ";nonce=" in value


def test_nonces_are_128_bit_base64url() -> None:
    """Nonces are 22 base64url characters (128 bits) and differ every time."""
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) == 22 and "=" not in n and "+" not in n and "/" not in n for n in nonces)


def test_signing_again_replaces_the_signature_headers(verifier: RequestVerifier) -> None:
    """Re-signing (a retry) replaces the old headers, whatever their case, with new ones."""
    req = signed()
    headers = {k.lower(): v for k, v in req.headers.items()}
    RequestSigner(ID_KEY).sign(req.method, req.url, headers, req.body, now=T + 1)
    assert sorted(k.lower() for k in headers) == sorted(
        ["content-type", "content-digest", "signature-input", "signature"]
    )
    assert check(verifier, replace(req, headers=headers), T + 1) == ID_CALLER


def test_lowercase_header_names_are_accepted(verifier: RequestVerifier) -> None:
    """Header names are matched case-insensitively, as HTTP requires."""
    req = signed()
    assert check(verifier, replace(req, headers={k.lower(): v for k, v in req.headers.items()}))


def test_the_caller_of_the_other_partnership_is_named(verifier: RequestVerifier) -> None:
    """A key of the JP-MN root identifies JP in partnership JP-MN."""
    caller = check(verifier, signed(key=JP_MN_KEY))
    assert (caller.partnership, caller.node, caller.keyid) == ("JP-MN", "JP", JP_MN_KEY.key_id)


def test_default_clocks_sign_and_verify_now() -> None:
    """Without ``now``, signer and verifier both read the system clock."""
    real_now = datetime.now(UTC)
    root = builders.build_root(
        "JP-ID",
        {"JP": JP_KEY, "ID": ID_KEY},
        expires=real_now + timedelta(days=1),
        windows={ID_KEY.key_id: (real_now - timedelta(days=1), real_now + timedelta(days=1))},
    )
    headers: dict[str, str] = {}
    RequestSigner(ID_KEY).sign("GET", URL, headers, b"")
    caller = RequestVerifier({"JP-ID": root}).verify("GET", URL, headers, b"")
    assert caller.node == "ID"


def test_a_custom_lookup_is_used(verifier: RequestVerifier) -> None:
    """A ``lookup(keyid, now)`` callable can stand in for trust roots."""
    seen: list[tuple[str, datetime]] = []

    def lookup(keyid: str, now: datetime) -> Caller | None:
        seen.append((keyid, now))
        return Caller("JP-TH", "TH", keyid, STRANGER_KEY.public) if keyid == "th-1" else None

    caller = check(RequestVerifier(lookup), signed(key=STRANGER_KEY, key_id="th-1"))
    assert caller == Caller("JP-TH", "TH", "th-1", STRANGER_KEY.public)
    assert seen == [("th-1", NOW)]


# --- refused ----------------------------------------------------------------------


def tampered_body(req: Req) -> Req:
    return replace(req, body=req.body.replace(b"aGVsbG8=", b"aGVsbG9="))


def body_and_digest_replaced(req: Req) -> Req:
    body = b'{"entries": []}'
    return replace(with_header(req, "Content-Digest", sha256_digest(body)), body=body)


REFUSED = [
    pytest.param(
        signed(at=T - WINDOW - 1), ClockSkewError, "created 301 s ago", id="created-too-old"
    ),
    pytest.param(
        signed(at=T + WINDOW + 1), ClockSkewError, "301 s in the future", id="created-in-the-future"
    ),
    pytest.param(
        signed(at=T - 100, lifetime=60), RequestExpiredError, "expired 40 s ago", id="expired"
    ),
    pytest.param(
        signed(at=T - 60, lifetime=60), RequestExpiredError, "expired 0 s", id="expires-now"
    ),
    pytest.param(
        signed(lifetime=WINDOW + 1),
        RequestSignatureError,
        "lifetime of 301 s",
        id="lifetime-too-long",
    ),
    pytest.param(
        tampered_body(signed()),
        ContentDigestError,
        "content-digest does not match the body",
        id="body-tampered-after-signing",
    ),
    pytest.param(
        replace(signed(method="GET", body=b""), body=b"x"),
        ContentDigestError,
        "does not match",
        id="body-added-to-a-get",
    ),
    pytest.param(
        body_and_digest_replaced(signed()),
        SignatureMismatchError,
        "does not verify",
        id="body-and-digest-replaced",
    ),
    pytest.param(
        replace(signed(), method="PUT"),
        SignatureMismatchError,
        "does not verify",
        id="method-changed",
    ),
    pytest.param(
        replace(signed(), url=URL.replace("logs/ID", "logs/JP")),
        SignatureMismatchError,
        "does not verify",
        id="url-path-changed",
    ),
    pytest.param(
        replace(signed(), url=URL.replace("from=12", "from=0")),
        SignatureMismatchError,
        "does not verify",
        id="url-query-changed",
    ),
    pytest.param(
        replace(signed(), url=URL + "&extra=1"),
        SignatureMismatchError,
        "does not verify",
        id="url-query-added",
    ),
    pytest.param(
        replace(signed(), url=URL.replace("127.0.0.1:8443", "127.0.0.1:9443")),
        SignatureMismatchError,
        "does not verify",
        id="url-port-changed",
    ),
    pytest.param(
        replace(signed(), url=URL.replace("http:", "https:")),
        SignatureMismatchError,
        "does not verify",
        id="url-scheme-changed",
    ),
    pytest.param(signed(key=STRANGER_KEY), UnknownKeyError, "no trust root", id="unknown-keyid"),
    pytest.param(
        signed(key=MN_KEY), AuthorityError, "role 'transport'", id="key-without-transport-role"
    ),
    pytest.param(signed(key=REVOKED_KEY), ExpiredError, "was revoked at", id="revoked-key"),
    pytest.param(signed(key=EXPIRED_KEY), ExpiredError, "expired at", id="expired-key"),
    pytest.param(
        signed(key=STRANGER_KEY, key_id=ID_KEY.key_id),
        SignatureMismatchError,
        "does not verify under key " + ID_KEY.key_id[:16],
        id="signed-by-another-key-than-keyid",
    ),
    pytest.param(
        without(signed(), "signature-input"),
        RequestSignatureError,
        "missing Signature-Input header",
        id="missing-signature-input",
    ),
    pytest.param(
        without(signed(), "signature"),
        RequestSignatureError,
        "missing Signature header",
        id="missing-signature",
    ),
    pytest.param(
        without(signed(), "content-digest"),
        RequestSignatureError,
        "missing Content-Digest header",
        id="missing-content-digest",
    ),
    pytest.param(
        with_header(signed(), "Signature-Input", "jcm=(garbage"),
        RequestSignatureError,
        "Malformed",
        id="garbled-signature-input",
    ),
    pytest.param(
        with_header(signed(), "Signature", "other=:AAAA:"),
        RequestSignatureError,
        "different labels",
        id="signature-labels-differ",
    ),
    pytest.param(
        library_signed(signed(), nonce=None),
        RequestSignatureError,
        "lacks the 'nonce' parameter",
        id="no-nonce",
    ),
    pytest.param(
        library_signed(signed(), expires=False),
        RequestSignatureError,
        "lacks the 'expires' parameter",
        id="no-expires",
    ),
    pytest.param(
        library_signed(signed(), include_alg=False),
        RequestSignatureError,
        "lacks the 'alg' parameter",
        id="no-alg",
    ),
    pytest.param(
        library_signed(signed(), nonce="short"),
        RequestSignatureError,
        "nonce is not",
        id="nonce-too-short",
    ),
    pytest.param(
        library_signed(signed(), covered=("@method", "@target-uri"), digest=sha256_digest(BODY)),
        RequestSignatureError,
        "content-digest",
        id="digest-not-covered",
    ),
    pytest.param(
        library_signed(signed(), covered=("@method", "@path", "@authority", "content-digest")),
        RequestSignatureError,
        "@target-uri",
        id="target-uri-not-covered",
    ),
    pytest.param(
        library_signed(signed(), append=True),
        RequestSignatureError,
        "Multiple signatures",
        id="two-signatures",
    ),
    pytest.param(
        library_signed(
            signed(),
            digest="sha-512=:" + base64.b64encode(hashlib.sha512(BODY).digest()).decode() + ":",
        ),
        ContentDigestError,
        "no sha-256",
        id="digest-without-sha-256",
    ),
]


@pytest.mark.parametrize(("req", "error", "message"), REFUSED)
def test_refused(
    verifier: RequestVerifier, req: Req, error: type[UntrustedError], message: str
) -> None:
    """A request that breaks a rule is refused with the typed error naming the rule."""
    with pytest.raises(error, match=message) as info:
        check(verifier, req)
    assert type(info.value) is error
    assert len(verifier.nonces) == 0


def test_replayed_request_is_refused(verifier: RequestVerifier) -> None:
    """The same signed request a second time (same headers) is refused as a replay."""
    req = signed()
    check(verifier, req)
    with pytest.raises(ReplayError, match="nonce already used") as info:
        check(verifier, req, T + 1)
    assert info.value.code == "replay"


def test_a_tampered_copy_does_not_use_up_the_nonce(verifier: RequestVerifier) -> None:
    """A refused copy records no nonce, so the genuine request still gets through."""
    req = signed()
    with pytest.raises(ContentDigestError):
        check(verifier, tampered_body(req))
    assert check(verifier, req) == ID_CALLER


def test_nonce_is_forgotten_once_the_request_is_dead(verifier: RequestVerifier) -> None:
    """A nonce is held no longer than the request could pass the time checks."""
    req = signed(lifetime=60)
    check(verifier, req)
    assert len(verifier.nonces) == 1
    with pytest.raises(RequestExpiredError):
        check(verifier, req, T + 60)
    verifier.nonces.evict(T + 61)
    assert len(verifier.nonces) == 0


def test_root_expired_refuses_its_keys() -> None:
    """Keys of an expired trust root are refused, whatever their own validity."""
    root = builders.build_root("JP-ID", {"JP": JP_KEY, "ID": ID_KEY}, expires=NOW)
    with pytest.raises(ExpiredError, match="trust root JP-ID version 1 expired"):
        check(RequestVerifier({"JP-ID": root}), signed())


def test_a_key_in_two_partnerships_is_ambiguous() -> None:
    """A transport key usable in two served roots is refused: which partnership calls?"""
    roots = {
        "JP-ID": builders.build_root("JP-ID", {"JP": JP_KEY, "ID": ID_KEY}),
        "JP-MN": builders.build_root("JP-MN", {"JP": JP_KEY, "MN": MN_KEY}),
    }
    with pytest.raises(AuthorityError, match=r"several partnerships \(JP-ID, JP-MN\)"):
        check(RequestVerifier(roots), signed(key=JP_KEY))


def test_trust_root_lookup_reads_the_mapping_live() -> None:
    """A root added to the served mapping after construction is used at once."""
    roots: dict[str, TrustRoot] = {}
    lookup = trust_root_lookup(roots)
    assert lookup(ID_KEY.key_id, NOW) is None
    roots["JP-ID"] = JP_ID
    assert lookup(ID_KEY.key_id, NOW) == ID_CALLER


def test_full_replay_cache_refuses_new_requests() -> None:
    """With the cache full of live nonces a request is refused (503), not a nonce forgotten."""
    verifier = RequestVerifier(ROOTS, nonces=NonceCache(max_entries=1))
    first = signed()
    check(verifier, first)
    with pytest.raises(NonceCacheFullError, match="replay cache") as info:
        check(verifier, signed())
    assert info.value.code == "replay-cache-full"
    assert info.value.retry_after == pytest.approx(WINDOW)
    with pytest.raises(ReplayError):  # the first nonce is still remembered
        check(verifier, first, T + 1)


@given(st.data())
def test_any_tampered_body_byte_is_refused(data: st.DataObject) -> None:
    """Changing any one byte of the body after signing is refused as a digest mismatch."""
    req = signed()
    i = data.draw(st.integers(0, len(req.body) - 1))
    flip = data.draw(st.integers(1, 255))
    body = bytearray(req.body)
    body[i] ^= flip
    with pytest.raises(ContentDigestError):
        check(RequestVerifier(ROOTS), replace(req, body=bytes(body)))


def test_error_codes_are_stable() -> None:
    """Each refusal class carries the stable code the server's problem types use."""
    assert {
        cls.__name__: cls.code
        for cls in (
            RequestSignatureError,
            ContentDigestError,
            ClockSkewError,
            RequestExpiredError,
            ReplayError,
            NonceCacheFullError,
        )
    } == {
        "RequestSignatureError": "bad-request-signature",
        "ContentDigestError": "content-digest-mismatch",
        "ClockSkewError": "clock-skew",
        "RequestExpiredError": "request-expired",
        "ReplayError": "replay",
        "NonceCacheFullError": "replay-cache-full",
    }
    assert issubclass(ReplayError, UntrustedError)
    assert not issubclass(NonceCacheFullError, UntrustedError)


# --- NonceCache -------------------------------------------------------------------


def test_nonce_cache_refuses_a_held_nonce_and_evicts_by_time() -> None:
    """A nonce is refused while held and accepted again once its time has passed."""
    cache = NonceCache()
    cache.remember("a", until=100.0, now=0.0)
    cache.remember("b", until=50.0, now=0.0)
    with pytest.raises(ReplayError):
        cache.remember("a", until=120.0, now=10.0)
    assert cache.seen("b", 50.0)
    assert cache.evict(50.0) == 0  # held up to and including its time
    assert cache.evict(50.5) == 1
    assert not cache.seen("b", 50.5)
    assert len(cache) == 1
    cache.remember("b", until=200.0, now=60.0)
    cache.remember("a", until=300.0, now=101.0)  # evicted on the way in, then held anew
    assert len(cache) == 2
    assert cache.evict(1000.0) == 2
    assert len(cache) == 0


def test_nonce_cache_full_waits_for_the_oldest() -> None:
    """A full cache refuses until its earliest nonce expires, and says how long that is."""
    cache = NonceCache(max_entries=2)
    cache.remember("a", until=30.0, now=0.0)
    cache.remember("b", until=40.0, now=0.0)
    with pytest.raises(NonceCacheFullError) as info:
        cache.remember("c", until=50.0, now=10.0)
    assert info.value.retry_after == 20.0
    assert len(cache) == 2
    cache.remember("c", until=50.0, now=31.0)
    assert not cache.seen("a", 31.0)
    assert cache.seen("c", 31.0)


# --- RFC 9421 test vector ---------------------------------------------------------

# RFC 9421 Appendix B.1.4 "test-key-ed25519" (public half) and Appendix B.2.6, "Signing a
# Request Using ed25519": the example request of Appendix B.2 and its published signature.
RFC_PUBLIC_KEY = b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="
RFC_B26_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVL"
        "vRwEmTHWXvJwew==:"
    ),
    "Content-Length": "18",
    "Signature-Input": (
        'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"'
    ),
    "Signature": (
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5"
        "WPpBKRCw==:"
    ),
}


def rfc_key(keyid: str) -> PublicKey | None:
    key = serialization.load_der_public_key(base64.b64decode(RFC_PUBLIC_KEY))
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return PublicKey(key) if keyid == "test-key-ed25519" else None


def test_rfc9421_b26_ed25519_vector_verifies() -> None:
    """The RFC's own Ed25519 example signature verifies through our primitive."""
    sig = verify_signature(
        "POST", "https://example.com/foo?param=Value&Pet=dog", RFC_B26_HEADERS, rfc_key
    )
    assert sig.label == "sig-b26"
    assert sig.keyid == "test-key-ed25519"
    assert sig.parameters["created"] == 1618884473
    assert sig.covered['"@path"'] == "/foo"
    assert sig.covered['"@authority"'] == "example.com"


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        pytest.param("PUT", RFC_B26_HEADERS, id="method"),
        pytest.param(
            "POST", {**RFC_B26_HEADERS, "Date": "Wed, 21 Apr 2021 02:07:55 GMT"}, id="date"
        ),
    ],
)
def test_rfc9421_b26_vector_changed_is_refused(method: str, headers: dict[str, str]) -> None:
    """Changing a covered component of the RFC example breaks its signature."""
    with pytest.raises(RequestSignatureError, match="does not verify"):
        verify_signature(method, "https://example.com/foo?param=Value&Pet=dog", headers, rfc_key)


# --- aiohttp: target URI ----------------------------------------------------------


def test_target_uri_from_the_request_url() -> None:
    """Without an origin, the target URI is the one the client named: scheme, Host, then
    path and query as received (only ever a hint in a refusal's message)."""
    request = make_mocked_request("GET", "/v1/a%20b?x=1&y=%2F", headers={"Host": "Hub:8080"})
    assert target_uri(request) == "http://hub:8080/v1/a%20b?x=1&y=%2F"


def test_target_uri_of_an_absolute_form_request() -> None:
    """An absolute-form request target names its own origin (RFC 9112 §3.2.2)."""
    request = make_mocked_request("GET", "http://hub:8080/v1/x?y=1", headers={"Host": "other"})
    assert target_uri(request) == "http://hub:8080/v1/x?y=1"


def test_target_uri_from_a_public_origin() -> None:
    """Behind a TLS-terminating proxy the configured public origin replaces scheme and Host."""
    request = make_mocked_request("GET", "/v1/roots?x=1", headers={"Host": "10.0.0.5:8080"})
    assert target_uri(request, origin="https://hub.example.org") == (
        "https://hub.example.org/v1/roots?x=1"
    )
    assert target_uri(request, origin="https://hub.example.org:443/") == (
        "https://hub.example.org/v1/roots?x=1"
    )
    with pytest.raises(ValueError, match="an origin is"):
        target_uri(request, origin="https://hub.example.org/api")


@pytest.mark.parametrize(
    "origin",
    ["https://hub.example.org/api", "https://hub.example.org?x=1", "https://u@hub.example.org",
     "ftp://hub.example.org", "hub.example.org", "https://hub.example.org#f"],
)  # fmt: skip
def test_an_origin_is_scheme_host_and_port_only(origin: str) -> None:
    """A public origin with a path, query, user or fragment, or not http(s), is refused."""
    with pytest.raises(ValueError, match="an origin is"):
        normalise_origin(origin)


def test_own_origin_is_the_socket_or_the_public_origin_never_host() -> None:
    """The own origin is the connection's local address and port (the configured host
    instead, unless a wildcard) or the public origin; the Host header is never used."""
    request = make_mocked_request("GET", "/v1/x", headers={"Host": "hub:8080"})
    assert request.transport is not None
    sockname = request.transport.get_extra_info("sockname")
    assert own_origin(request) == f"http://{sockname[0]}:{sockname[1]}".replace(":80", "")
    assert own_origin(request, host="0.0.0.0") == own_origin(request)
    assert own_origin(request, host="Hub.Internal").startswith("http://hub.internal")
    assert own_origin(request, public_origin="HTTPS://Hub.Example.org:443") == (
        "https://hub.example.org"
    )


def test_own_origin_without_a_tcp_socket_asks_for_a_public_origin() -> None:
    """A connection with no TCP address (a Unix socket) needs a configured public origin."""
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        "/run/hub.sock" if name == "sockname" else default
    )
    request = make_mocked_request("GET", "/v1/x", transport=transport)
    with pytest.raises(RequestSignatureError, match="public_origin"):
        own_origin(request)
    assert own_origin(request, public_origin="https://hub.example.org") == (
        "https://hub.example.org"
    )


# --- authenticate before the body; the target checked against the own origin -------


def test_authenticate_records_the_nonce_before_the_body_is_read(verifier: RequestVerifier) -> None:
    """``authenticate`` checks everything but the body and uses up the nonce; a body that
    then fails the digest is refused, and the same headers cannot be sent again."""
    req = signed()
    pending = verifier.authenticate(req.method, req.url, req.headers, now=T)
    assert pending.caller == ID_CALLER
    assert len(verifier.nonces) == 1
    with pytest.raises(ContentDigestError, match="does not match the body"):
        verifier.check_body(pending, req.body + b" ")
    with pytest.raises(ReplayError):
        verifier.authenticate(req.method, req.url, req.headers, now=T + 1)
    fresh = signed(at=T + 1)  # the agent signs its retry with a fresh nonce
    pending = verifier.authenticate(fresh.method, fresh.url, fresh.headers, now=T + 1)
    assert verifier.check_body(pending, fresh.body) == ID_CALLER


def test_authenticate_refuses_a_malformed_digest_before_the_body() -> None:
    """A Content-Digest without sha-256 is refused from the headers alone, nonce unused."""
    verifier = RequestVerifier(ROOTS, window=WINDOW)
    req = library_signed(signed(), digest="sha-512=:" + base64.b64encode(b"x" * 64).decode() + ":")
    with pytest.raises(ContentDigestError, match="no sha-256"):
        verifier.authenticate(req.method, req.url, req.headers, now=T)
    assert len(verifier.nonces) == 0


STAGING = "http://staging.example:8443/v1/partnerships/JP-ID/state"
OWN = "https://hub.example.org/v1/partnerships/JP-ID/state"


def test_a_request_signed_for_another_origin_is_wrong_target(verifier: RequestVerifier) -> None:
    """Signed for the staging origin it names, checked against the hub's own: refused as
    ``wrong-target``, naming both origins, and the nonce is not used."""
    req = signed(method="GET", url=STAGING, body=b"")
    with pytest.raises(WrongTargetError) as info:
        verifier.authenticate(req.method, OWN, req.headers, now=T, received_urls=(STAGING,))
    assert info.value.code == "wrong-target"
    assert "http://staging.example:8443" in info.value.message
    assert "https://hub.example.org" in info.value.message
    assert len(verifier.nonces) == 0
    with pytest.raises(WrongTargetError):
        verifier.verify(req.method, OWN, req.headers, b"", now=T, received_urls=(STAGING,))


def test_a_signature_valid_for_no_origin_is_not_called_wrong_target(
    verifier: RequestVerifier,
) -> None:
    """A signature that verifies neither for the own nor for the named origin is a plain
    mismatch: ``wrong-target`` is said only when it is the cause."""
    req = signed(method="GET", url=STAGING, body=b"")
    other = "http://other.example/v1/partnerships/JP-ID/state"
    with pytest.raises(SignatureMismatchError) as info:
        verifier.authenticate(req.method, OWN, req.headers, now=T, received_urls=(other,))
    assert type(info.value) is SignatureMismatchError
    assert info.value.code == "bad-request-signature"


# --- aiohttp: a real server on 127.0.0.1 ------------------------------------------


@dataclass
class Hub:
    base: str
    verifier: RequestVerifier


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A real aiohttp server on 127.0.0.1, port 0, that verifies every request."""
    verifier = RequestVerifier(ROOTS, window=WINDOW)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        origin = own_origin(request)
        try:
            caller = await verify_aiohttp_request(verifier, request, body, origin=origin, now=T)
        except UntrustedError as exc:
            return web.json_response({"code": exc.code, "detail": str(exc)}, status=401)
        return web.json_response(
            {
                "partnership": caller.partnership,
                "node": caller.node,
                "bytes": len(body),
                "target": target_uri(request, origin=origin),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Hub(f"http://{host}:{port}", verifier)
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


SIGNER = RequestSigner(ID_KEY)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/v1/partnerships/JP-ID/checkpoint", b"", id="get"),
        pytest.param("POST", "/v1/partnerships/JP-ID/logs/ID/entries", BODY, id="post"),
        pytest.param("GET", "/v1/a%20b/~x/%7Ey?q=a b&r=%2F+&s=~&e=", b"", id="odd-encodings"),
        pytest.param("DELETE", "/v1/x?", b"", id="empty-query"),
    ],
)
async def test_client_and_server_agree(
    hub: Hub, session: aiohttp.ClientSession, method: str, path: str, body: bytes
) -> None:
    """A request signed by the aiohttp client verifies in an aiohttp handler, byte for byte."""
    async with await signed_request(
        session, SIGNER, method, hub.base + path, body=body, now=T
    ) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    assert answer["partnership"] == "JP-ID"
    assert answer["node"] == "ID"
    assert answer["bytes"] == len(body)
    assert answer["target"] == str(yarl.URL(hub.base + path))


async def test_replay_through_the_server_is_refused(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    """The exact headers of an accepted request, sent again, are refused with 401."""
    sent: list[dict[str, str]] = []

    async def record(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        sent.append(dict(request.headers))
        return await handler(request)

    url = hub.base + "/v1/partnerships/JP-ID/logs/ID/entries"
    async with session.post(
        url,
        data=BODY,
        middlewares=(SigningMiddleware(SIGNER, clock=lambda: T), record),
    ) as resp:
        assert resp.status == 200
    replayed = {k: v for k, v in sent[0].items() if k.lower() not in {"host", "content-length"}}
    async with session.post(url, data=BODY, headers=replayed) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "replay"


async def test_tampered_body_through_the_server_is_refused(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    """A body changed in transit (here by a middleware after signing) is refused."""

    async def tamper(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        await request.update_body(b'{"entries": []}')
        return await handler(request)

    async with session.post(
        hub.base + "/v1/x",
        data=BODY,
        middlewares=(SigningMiddleware(SIGNER, clock=lambda: T), tamper),
    ) as resp:
        answer = await resp.json()
    assert resp.status == 401
    assert answer["code"] == "content-digest-mismatch"


async def test_session_middleware_signs_json_and_text(hub: Hub) -> None:
    """Installed on the session, the middleware signs json= and str bodies too."""
    middleware = SigningMiddleware(SIGNER, clock=lambda: T)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as s:
        async with s.post(hub.base + "/v1/json", json={"a": [1, 2]}) as resp:
            assert resp.status == 200, await resp.text()
        async with s.put(hub.base + "/v1/text", data="héllo") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["bytes"] == len("héllo".encode())


async def test_streamed_bodies_cannot_be_signed(hub: Hub) -> None:
    """A streamed body has no bytes to digest up front, so signing it is refused."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"

    middleware = SigningMiddleware(SIGNER, clock=lambda: T)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as s:
        with pytest.raises(TypeError, match="streamed request body"):
            await s.post(hub.base + "/v1/stream", data=chunks())
