"""RFC 9421 HTTP Message Signatures on every request between a partner agent and the hub.

Why this module exists: TLS may end at a reverse proxy, and the hub must know from the
request itself which partner node is calling, so every request carries a signature by a
``transport`` key of the partnership's trust root (DESIGN §4, Transport). Building and
checking the signature is left to the ``http-message-signatures`` library; this module
holds the policy around it and translates the library's exceptions once, here.

Rules:

1. A request carries exactly one signature, Ed25519, covering ``@method``,
   ``@target-uri`` and ``content-digest``, with the parameters ``created``,
   ``expires``, ``nonce``, ``keyid`` and ``alg="ed25519"``. A bodiless request carries
   the digest of the empty body, so the digest is always covered.
2. ``Content-Digest`` (RFC 9530) has a ``sha-256`` member, and every member matches the
   body bytes as received (before any content decoding).
3. Time, with the window W (default 300 s): ``created`` lies in [now - W, now + W],
   ``now < expires`` and ``0 < expires - created <= W``.
4. ``keyid`` names a trust-root key that holds the role ``transport``, is usable now
   (``KeyEntry.usable_at``) and belongs to a root that has not expired; the caller is
   that key's node in that root's partnership. The key id is only a lookup hint: the
   signature must verify under the key the root holds for it. A key that is a usable
   transport key of several served roots is refused, since the partnership calling
   would be ambiguous.
5. A nonce is accepted once per key. It is remembered until the request could no longer
   pass rule 3, ``min(created + W, expires)``, then forgotten. The cache is bounded: when
   it is full, new requests are refused (``NonceCacheFullError``, a 503) rather than
   unexpired nonces being forgotten.
6. A server authenticates before it reads a body (ADR 0015): ``authenticate`` checks
   headers → signature under the resolved key (4) → parameters and coverage (1) → time
   (3) → the ``Content-Digest`` header's form (2) → nonce (5), and records the nonce;
   only then is the body read and ``check_body`` compares it with the digest. A forged
   copy (its signature fails) never uses up a nonce; a copy of genuine headers with
   another body does, and is refused: the agent signs every retry with a fresh nonce,
   so that costs one refused request. ``verify``, given the body at once, checks the
   digest before it records the nonce.
7. The client signs the URL aiohttp actually sends (``ClientRequest.url``, after yarl's
   encoding); the server checks it against its own origin (``own_origin``: the public
   origin a proxy serves it under, or else its listening address), never the Host
   header, followed by the request target exactly as received (``request.raw_path``),
   never a re-encoded copy. A signature that verifies only for the origin the client
   named (Host, or an absolute-form target) is refused as ``wrong-target``, saying both.

Authorisation (a partner node may push only its own log and read only its own
partnership) is the server's decision; this module tells it who is calling (``Caller``).

Errors raised here::

    UntrustedError
    ├── RequestSignatureError        bad-request-signature: a header, parameter or covered
    │   │                            component is missing, or the signature does not verify
    │   ├── SignatureMismatchError   bad-request-signature: the signature does not verify
    │   │   └── WrongTargetError     wrong-target: signed for another origin than this hub's
    │   ├── ContentDigestError       content-digest-mismatch: the body is not what was signed
    │   ├── ClockSkewError           clock-skew: created outside the window
    │   │   └── RequestExpiredError  request-expired: expires has passed
    │   └── ReplayError              replay: the nonce was already used
    ├── UnknownKeyError              unknown-key: no served root lists the key id
    ├── AuthorityError               not-authorised: no transport role, or ambiguous key
    └── ExpiredError                 expired: key revoked or outside its validity, root expired
    NonceCacheFullError              replay-cache-full: refuse for now (503, Retry-After)

A ``RequestVerifier`` holds mutable state (its nonce cache) and is meant for one event
loop; it takes no lock.
"""

from __future__ import annotations

import base64
import heapq
import re
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, TypeAlias

import aiohttp
import http_sf
from aiohttp import web
from cryptography.exceptions import InvalidSignature as InvalidCryptoSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from yarl import URL

from jcm_sync.core.envelope import PrivateKey, PublicKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    ClockSkewError,
    ContentDigestError,
    ExpiredError,
    JcmSyncError,
    NonceCacheFullError,
    ReplayError,
    RequestExpiredError,
    RequestSignatureError,
    SignatureMismatchError,
    UnknownKeyError,
    UntrustedError,
    WrongTargetError,
)

DEFAULT_WINDOW: Final = 300
"""Seconds of allowed clock skew, and the longest lifetime of a request signature."""

MAX_NONCES: Final = 1_000_000
"""Nonces the replay cache holds at most (about 200 MB at the very worst)."""

SIGNATURE_LABEL: Final = "jcm"
ALGORITHM: Final = "ed25519"
TRANSPORT_ROLE: Final = "transport"
COVERED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
REQUIRED_PARAMETERS: Final = ("created", "expires", "nonce", "keyid", "alg")

# 128 random bits in base64url are 22 characters; the bounds keep cache entries small
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SIGNING_HEADERS: Final = frozenset({"content-digest", "signature-input", "signature"})


# --- errors -----------------------------------------------------------------------


# --- who is calling ---------------------------------------------------------------


KeyLookup: TypeAlias = Callable[[str, datetime], Caller | None]
"""``lookup(keyid, now)``: the caller owning a usable transport key, or None if the key
id is unknown. A lookup raises ``UntrustedError`` to say why a known key is refused."""


def trust_root_lookup(roots: Mapping[str, TrustRoot]) -> KeyLookup:
    """Rule 4 over the trust roots a node serves (any keys; roots name their partnership).

    The mapping is read on every call, so a server that replaces a root after a rotation
    is heard at once.
    """

    def lookup(keyid: str, now: datetime) -> Caller | None:
        usable: list[Caller] = []
        refusals: list[UntrustedError] = []
        for root in roots.values():
            entry = root.key(keyid)
            if entry is None:
                continue
            if root.expires <= now:
                refusals.append(
                    ExpiredError(
                        f"trust root {root.partnership} version {root.version} expired at "
                        f"{root.expires.isoformat()}"
                    )
                )
            elif TRANSPORT_ROLE not in entry.roles:
                refusals.append(
                    AuthorityError(
                        f"key {keyid[:16]} of {entry.node} in {root.partnership} does not hold "
                        f"the role {TRANSPORT_ROLE!r}"
                    )
                )
            elif not entry.usable_at(now):
                refusals.append(ExpiredError(f"{entry.why_unusable(now)} ({root.partnership})"))
            else:
                usable.append(
                    Caller(
                        partnership=root.partnership,
                        node=entry.node,
                        keyid=entry.keyid,
                        public_key=PublicKey.from_raw(entry.public_key),
                    )
                )
        if len(usable) == 1:
            return usable[0]
        if usable:
            names = ", ".join(sorted(c.partnership for c in usable))
            raise AuthorityError(
                f"key {keyid[:16]} is a transport key of several partnerships ({names}); "
                "a transport key must belong to one partnership"
            )
        if refusals:
            raise refusals[0]
        return None

    return lookup


# --- the library, wrapped ---------------------------------------------------------


@dataclass
class _Message:
    """The request view the library reads: method, encoded absolute URL, header fields.

    ``headers`` needs ``items()`` with every field line; signing also writes to it.
    """

    method: str
    url: str
    headers: Mapping[str, str] | MutableMapping[str, str]


class _VerifyingKey(HTTPSignatureKeyResolver):
    """Resolves the signature's key id once and keeps our typed reason for a refusal.

    The library turns whatever a resolver raises into its own ``InvalidSignature``;
    keeping the error here lets ``verify_signature`` raise it unchanged.
    """

    def __init__(self, resolve: Callable[[str], PublicKey | None]) -> None:
        self._resolve = resolve
        self.key: PublicKey | None = None
        self.error: JcmSyncError | None = None

    def resolve_public_key(self, key_id: str) -> ed25519.Ed25519PublicKey | None:
        try:
            key = self._resolve(key_id)
        except JcmSyncError as exc:
            self.error = exc
            return None
        if key is None:
            self.error = UnknownKeyError(
                f"request signed by key {key_id[:16]}, which no trust root served here lists"
            )
            return None
        self.key = key
        return key.key

    def resolve_private_key(self, key_id: str) -> NoReturn:
        raise TypeError("a verifying key resolver holds no private keys")


class _Verifier(HTTPMessageVerifier):
    """The library's verifier without its wall-clock checks.

    It compares ``created``/``expires`` with ``datetime.now()`` and a fixed skew; here
    time is policy (rule 3), checked against the ``now`` the caller passes in.
    """

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


@dataclass(frozen=True)
class VerifiedSignature:
    """What one verified signature authenticates.

    ``covered`` maps each serialized component id (``'"@method"'``) to its signed value,
    ``"@signature-params"`` included; ``parameters`` are the signed metadata.
    """

    label: str
    keyid: str
    key: PublicKey
    parameters: Mapping[str, int | str]
    covered: Mapping[str, str]


def _require_headers(headers: Mapping[str, str], names: Sequence[str]) -> None:
    present = {name.lower() for name in headers}
    for name in names:
        if name.lower() not in present:
            raise RequestSignatureError(f"missing {name} header")


def verify_signature(
    method: str,
    url: str,
    headers: Mapping[str, str],
    resolve: Callable[[str], PublicKey | None],
    *,
    require: Sequence[str] = (),
) -> VerifiedSignature:
    """Check the request's one Ed25519 signature; no time, nonce or body policy.

    The primitive under ``RequestVerifier``, usable on any RFC 9421 request (for
    example the RFC's own test vectors). ``resolve(keyid)`` returns the public key, None
    for an unknown key (``UnknownKeyError``), or raises a ``JcmSyncError`` that is
    passed on. ``require`` lists components the signature must cover.
    """
    _require_headers(headers, ("Signature-Input", "Signature"))
    resolver = _VerifyingKey(resolve)
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    try:
        results = verifier.verify(
            _Message(method, url, headers), max_age=None, require_components=tuple(require)
        )
    except InvalidSignature as exc:
        if resolver.error is not None:
            raise resolver.error from None
        if isinstance(exc.__cause__, InvalidCryptoSignature) and resolver.key is not None:
            raise SignatureMismatchError(
                f"request signature does not verify under key {resolver.key.key_id[:16]}"
            ) from None
        raise RequestSignatureError(f"request signature refused: {exc}") from exc
    except HTTPMessageSignaturesException as exc:
        raise RequestSignatureError(f"request signature cannot be checked: {exc}") from exc
    if len(results) != 1 or resolver.key is None:  # the library refuses several signatures
        raise RequestSignatureError("a request carries exactly one signature")
    result = results[0]
    return VerifiedSignature(
        label=result.label,
        keyid=str(result.parameters["keyid"]),
        key=resolver.key,
        parameters=dict(result.parameters),
        covered=dict(result.covered_components),
    )


# --- signing ----------------------------------------------------------------------


def new_nonce() -> str:
    """128 random bits, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


class RequestSigner:
    """Signs requests with one transport key (rule 1).

    ``lifetime`` is ``expires - created`` in seconds; it must not exceed the window of
    the verifier at the other end. ``key_id`` defaults to the key's own id.
    """

    def __init__(
        self,
        key: PrivateKey,
        *,
        key_id: str | None = None,
        lifetime: int = DEFAULT_WINDOW,
        label: str = SIGNATURE_LABEL,
    ) -> None:
        if lifetime <= 0:
            raise ValueError(
                f"a signature lifetime is a positive number of seconds, not {lifetime}"
            )
        self.key = key
        self.key_id = key.key_id if key_id is None else key_id
        self.lifetime = int(lifetime)
        self.label = label
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={self.key_id: key.key}),
        )

    def sign(
        self,
        method: str,
        url: str,
        headers: MutableMapping[str, str],
        body: bytes,
        now: float | None = None,
    ) -> None:
        """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``headers``.

        ``url`` is the encoded absolute URL that will be sent. Earlier signing headers
        are replaced, so a retried request can be signed again with a fresh nonce.
        """
        created = int(time.time() if now is None else now)
        for name in {n for n in headers if n.lower() in _SIGNING_HEADERS}:
            if name in headers:  # a case-insensitive mapping deletes every spelling at once
                del headers[name]
        try:
            self._signer.sign(
                _Message(method.upper(), url, headers),
                key_id=self.key_id,
                created=datetime.fromtimestamp(created, UTC),
                expires=datetime.fromtimestamp(created + self.lifetime, UTC),
                nonce=new_nonce(),
                label=self.label,
                covered_component_ids=COVERED_COMPONENTS,
                body=bytes(body),
            )
        except HTTPMessageSignaturesException as exc:
            raise BadDataError(f"cannot sign {method} {url}: {exc}", where="request") from exc


# --- replay cache -----------------------------------------------------------------


class NonceCache:
    """Nonces of accepted requests, each kept until a time after which it is forgotten.

    Pure: every call takes ``now``. Eviction pops a heap ordered by expiry, so memory
    follows the request rate over one window, up to ``max_entries``.
    """

    def __init__(self, *, max_entries: int = MAX_NONCES) -> None:
        if max_entries < 1:
            raise ValueError("a nonce cache holds at least one nonce")
        self.max_entries = max_entries
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    def evict(self, now: float) -> int:
        """Forget every nonce held until before ``now``; return how many."""
        evicted = 0
        while self._heap and self._heap[0][0] < now:
            until, nonce = heapq.heappop(self._heap)
            if self._until.get(nonce) == until:
                del self._until[nonce]
                evicted += 1
        return evicted

    def seen(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` is still held at ``now``."""
        until = self._until.get(nonce)
        return until is not None and until >= now

    def remember(self, nonce: str, *, until: float, now: float) -> None:
        """Hold ``nonce`` until ``until``; refuse one already held, or a full cache."""
        self.evict(now)
        if nonce in self._until:
            raise ReplayError("nonce already used: the request is a replay")
        if len(self._until) >= self.max_entries:
            retry_after = max(0.0, self._heap[0][0] - now)
            raise NonceCacheFullError(
                f"the replay cache holds {len(self._until)} unexpired nonces, its limit; "
                f"retry in {retry_after:.0f} s",
                retry_after=retry_after,
            )
        self._until[nonce] = until
        heapq.heappush(self._heap, (until, nonce))


# --- verifying --------------------------------------------------------------------


@dataclass(frozen=True)
class Authenticated:
    """A request whose headers passed (rule 6), its body not yet read or checked.

    ``covered`` holds the signed ``Content-Digest`` value ``check_body`` compares with.
    """

    caller: Caller
    covered: Mapping[str, str] = field(repr=False)
    nonce: str = field(repr=False)
    until: float = field(repr=False)


class RequestVerifier:
    """Checks signed requests (rules 1-6) and says who sent them.

    ``keys`` is a ``KeyLookup`` or the trust roots this node serves (read live, see
    ``trust_root_lookup``). ``window`` is W of rule 3, in seconds.
    """

    def __init__(
        self,
        keys: KeyLookup | Mapping[str, TrustRoot],
        *,
        window: float = DEFAULT_WINDOW,
        nonces: NonceCache | None = None,
    ) -> None:
        if window <= 0:
            raise ValueError(f"the time window is a positive number of seconds, not {window}")
        self._lookup = trust_root_lookup(keys) if isinstance(keys, Mapping) else keys
        self.window = float(window)
        self.nonces = NonceCache() if nonces is None else nonces

    def authenticate(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        now: float | None = None,
        *,
        received_urls: Sequence[str] = (),
    ) -> Authenticated:
        """Rule 6: everything but the body, nonce recorded; then ``check_body``.

        ``url`` is this node's own target URI for the request (``target_uri`` with its
        origin). ``received_urls`` are target URIs the client may have signed (from its
        Host header); when the signature fails for ``url`` but verifies for one of them,
        the refusal is ``WrongTargetError`` naming both origins. They only name the
        cause of a refusal: nothing is ever accepted for them.
        """
        t = time.time() if now is None else now
        pending = self._check_headers(method, url, headers, t, received_urls=received_urls)
        self._remember(pending, t)
        return pending

    def check_body(self, pending: Authenticated, body: bytes) -> Caller:
        """Rule 2: the body bytes as received match the signed ``Content-Digest``."""
        try:
            ContentDigest.verify_components(pending.covered, bytes(body))
        except HTTPMessageSignaturesException:
            raise ContentDigestError("content-digest does not match the body") from None
        return pending.caller

    def verify(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float | None = None,
        *,
        received_urls: Sequence[str] = (),
    ) -> Caller:
        """Accept the request and return its caller, or raise why it is refused.

        ``url`` is the absolute target URI the request was sent to; ``body`` the bytes
        received, before content decoding. The digest is checked before the nonce is
        recorded, so a tampered copy never uses up the genuine request's nonce.
        ``received_urls`` are as for ``authenticate``.
        """
        t = time.time() if now is None else now
        pending = self._check_headers(method, url, headers, t, received_urls=received_urls)
        self.check_body(pending, body)
        self._remember(pending, t)
        return pending.caller

    def _check_headers(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        t: float,
        *,
        received_urls: Sequence[str] = (),
    ) -> Authenticated:
        at = datetime.fromtimestamp(t, UTC)
        _require_headers(headers, ("Signature-Input", "Signature", "Content-Digest"))
        callers: list[Caller] = []

        def resolve(keyid: str) -> PublicKey | None:
            caller = self._lookup(keyid, at)
            if caller is None:
                return None
            callers.append(caller)
            return caller.public_key

        try:
            sig = verify_signature(method, url, headers, resolve, require=COVERED_COMPONENTS)
        except SignatureMismatchError:
            for received in received_urls:
                if received != url:
                    self._refuse_other_target(method, url, received, headers, callers[-1])
            raise
        caller = callers[-1]
        created, expires, nonce = self._parameters(sig)
        self._check_time(created, expires, t)
        self._check_digest_header(sig)
        return Authenticated(
            caller=caller,
            covered=sig.covered,
            nonce=f"{caller.keyid} {nonce}",
            until=min(created + self.window, expires),
        )

    @staticmethod
    def _refuse_other_target(
        method: str, url: str, received_url: str, headers: Mapping[str, str], caller: Caller
    ) -> None:
        """Raise ``WrongTargetError`` if the signature verifies for the client's own URL."""
        try:
            verify_signature(
                method, received_url, headers, lambda _: caller.public_key,
                require=COVERED_COMPONENTS,
            )  # fmt: skip
        except JcmSyncError:
            return
        raise WrongTargetError(
            f"request signed for {URL(received_url).origin()}, but this hub's origin is "
            f"{URL(url).origin()} (behind a proxy, set [server] public_origin; a client "
            "signs the URL it sends to)"
        )

    def _remember(self, pending: Authenticated, t: float) -> None:
        self.nonces.remember(pending.nonce, until=pending.until, now=t)

    @staticmethod
    def _parameters(sig: VerifiedSignature) -> tuple[int, int, str]:
        params = sig.parameters
        for name in REQUIRED_PARAMETERS:
            if name not in params:
                raise RequestSignatureError(f"request signature lacks the {name!r} parameter")
        if params["alg"] != ALGORITHM:  # the library already refuses any other algorithm
            raise RequestSignatureError(f"request signature algorithm is not {ALGORITHM}")
        created, expires, nonce = params["created"], params["expires"], params["nonce"]
        # the library has checked that created/expires are integers and nonce a string
        assert isinstance(created, int)
        assert isinstance(expires, int)
        assert isinstance(nonce, str)
        if not _NONCE.fullmatch(nonce):
            raise RequestSignatureError("request nonce is not 16-128 base64url characters")
        return created, expires, nonce

    def _check_time(self, created: int, expires: int, now: float) -> None:
        window = self.window
        if created < now - window:
            raise ClockSkewError(
                f"request signature was created {now - created:.0f} s ago, outside the "
                f"{window:.0f} s window"
            )
        if created > now + window:
            raise ClockSkewError(
                f"request signature is dated {created - now:.0f} s in the future, outside "
                f"the {window:.0f} s window (are both clocks right?)"
            )
        if expires <= created:
            raise RequestSignatureError("request signature expires before it is created")
        if expires - created > window:
            raise RequestSignatureError(
                f"request signature lifetime of {expires - created} s exceeds the "
                f"{window:.0f} s window"
            )
        if expires <= now:
            raise RequestExpiredError(f"request signature expired {now - expires:.0f} s ago")

    @staticmethod
    def _check_digest_header(sig: VerifiedSignature) -> None:
        value = sig.covered['"content-digest"']  # covered, by verify_signature(require=...)
        try:
            digests = http_sf.parse(value.encode("ascii"), tltype="dictionary")
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ContentDigestError("malformed Content-Digest header") from None
        if not isinstance(digests, dict) or "sha-256" not in digests:
            raise ContentDigestError("Content-Digest has no sha-256 digest")


# --- aiohttp ----------------------------------------------------------------------


async def _request_body(request: aiohttp.ClientRequest) -> bytes:
    payload = request.body
    if isinstance(payload, bytes):
        return payload
    if request.compress:
        raise TypeError("a signed request cannot use compress=: the digest covers the bytes sent")
    if isinstance(payload, aiohttp.BytesPayload):  # also str and JSON payloads
        return bytes(await payload.as_bytes())
    raise TypeError(f"cannot sign a streamed request body ({type(payload).__name__}); send bytes")


class SigningMiddleware:
    """aiohttp client middleware that signs every request it sends.

    ``ClientSession(middlewares=(SigningMiddleware(signer),))``; put it last, so it
    signs what earlier middlewares made. It signs the request actually sent (its
    final URL and body bytes), again for each retry or redirect, with a fresh nonce.
    ``clock`` gives the signing time (tests pass a fixed one).
    """

    def __init__(self, signer: RequestSigner, *, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.clock = clock

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        body = await _request_body(request)
        self.signer.sign(request.method, str(request.url), request.headers, body, now=self.clock())
        return await handler(request)


async def signed_request(
    session: aiohttp.ClientSession,
    signer: RequestSigner,
    method: str,
    url: str | URL,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> aiohttp.ClientResponse:
    """Send one signed request; the caller releases the response (``async with``).

    Redirects are not followed: a signature covers one target URI. This request's
    middlewares replace the session's; to combine them, install ``SigningMiddleware``
    on the session instead. A body is sent as ``application/json`` unless ``headers``
    name another Content-Type.
    """
    clock: Callable[[], float] = time.time if now is None else (lambda: now)
    sent = dict(headers or {})
    if body and not any(name.lower() == "content-type" for name in sent):
        sent["Content-Type"] = "application/json"
    return await session.request(
        method,
        url,
        data=body or None,
        headers=sent,
        allow_redirects=False,
        middlewares=(SigningMiddleware(signer, clock=clock),),
    )


def target_uri(request: web.Request, *, origin: str | None = None) -> str:
    """A received request's ``@target-uri`` under ``origin`` (rule 7).

    The path and query are the request target exactly as received (``raw_path``), which
    is what an aiohttp client sends (``ClientRequest.url.raw_path_qs``) and signs. The
    origin is ``origin`` (``own_origin``: what a server checks against); without one, it
    is the origin the client named, the connection's scheme and its Host header (or an
    absolute-form target's), normalised by yarl as the client's URL is: only ever a
    hint for a refusal's message, since the client chooses it.
    """
    raw = request.raw_path
    if raw.startswith("/"):
        path_qs, received = raw, request.url.origin()
    else:  # absolute-form (RFC 9112 §3.2.2): the target names its own origin
        absolute = URL(raw)
        if not absolute.absolute:
            raise RequestSignatureError(f"request target {raw[:100]!r} cannot be signed")
        path_qs, received = absolute.raw_path_qs, absolute.origin()
    if origin is None:
        return str(received) + path_qs
    return normalise_origin(origin) + path_qs


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` as yarl writes it (default port dropped, host lowercased);
    ``ValueError`` for anything else (a path, query, fragment or user)."""
    base = URL(origin)
    if (
        not base.absolute
        or base.scheme not in ("http", "https")
        or base.raw_path not in ("", "/")
        or base.raw_query_string
        or base.raw_fragment
        or base.raw_user is not None
    ):
        raise ValueError(f"an origin is http(s)://host[:port], not {origin!r}")
    return str(base.origin())


_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})


def own_origin(
    request: web.Request, *, public_origin: str | None = None, host: str | None = None
) -> str:
    """The origin clients reach this server under (rule 7), never the Host header.

    ``public_origin`` when configured (a proxy terminates TLS: ``https://hub.example.org``);
    otherwise the listening address: ``http`` (``https`` on a TLS connection), ``host``
    as configured (the connection's local address when it is unset or a wildcard), and
    the port the socket is actually bound to (so port 0 works).
    """
    if public_origin is not None:
        return normalise_origin(public_origin)
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise RequestSignatureError(
            "this hub cannot tell its own address (not a TCP socket); set [server] public_origin"
        )
    assert transport is not None
    scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
    name = str(sockname[0]) if host is None or host in _WILDCARD_HOSTS else host
    return str(URL.build(scheme=scheme, host=name, port=int(sockname[1])).origin())


def _received_uris(request: web.Request) -> tuple[str, ...]:
    """What the client may have signed: the origin it named (Host, or an absolute-form
    target), under either scheme, since a proxy in front may have ended TLS."""
    try:
        named = URL(target_uri(request), encoded=True)
    except (RequestSignatureError, ValueError):
        return ()
    other = named.with_scheme("https" if named.scheme == "http" else "http")
    return (str(named), str(other))


def authenticate_aiohttp_request(
    verifier: RequestVerifier,
    request: web.Request,
    *,
    origin: str,
    now: float | None = None,
) -> Authenticated:
    """Rule 6 for a request received by an aiohttp server, before its body is read;
    ``origin`` is ``own_origin(request, ...)``. Then ``verifier.check_body``."""
    return verifier.authenticate(
        request.method,
        target_uri(request, origin=origin),
        request.headers,
        now=now,
        received_urls=_received_uris(request),
    )


async def verify_aiohttp_request(
    verifier: RequestVerifier,
    request: web.Request,
    body: bytes,
    *,
    origin: str,
    now: float | None = None,
) -> Caller:
    """Verify a request received by an aiohttp server whose body was already read, as
    bytes received (no content decoding); ``origin`` is ``own_origin(request, ...)``."""
    return verifier.verify(
        request.method,
        target_uri(request, origin=origin),
        request.headers,
        body,
        now=now,
        received_urls=_received_uris(request),
    )
