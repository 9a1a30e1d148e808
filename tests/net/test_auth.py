"""RFC 9421 request signatures, the verifying side: what is accepted, what is refused and
why, the replay cache, and the RFC's own test vector.

Keys come from fixed seeds and roots from ``tests.builders`` (``tests/net/signed_requests.py``);
every check passes an explicit ``now`` (``builders.NOW``) except the one test of the
default clocks.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core.envelope import PublicKey
from jcm_sync.core.trust import TrustRoot
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
    RequestVerifier,
    trust_root_lookup,
    verify_signature,
)
from jcm_sync.net.signing import RequestSigner
from tests import builders
from tests.net.signed_requests import (
    BODY,
    EXPIRED_KEY,
    ID_CALLER,
    ID_KEY,
    JP_ID,
    JP_KEY,
    JP_MN_KEY,
    MN_KEY,
    NOW,
    REVOKED_KEY,
    ROOTS,
    STRANGER_KEY,
    URL,
    WINDOW,
    Req,
    T,
    check,
    sha256_digest,
    signed,
)


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


@pytest.fixture
def verifier() -> RequestVerifier:
    return RequestVerifier(ROOTS, window=WINDOW)


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
