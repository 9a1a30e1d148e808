"""RFC 9421 HTTP Message Signatures on every request between a partner agent and the hub:
the rules, and the server's side of them.

Why this module exists: TLS may end at a reverse proxy, and the hub must know from the
request itself which partner node is calling, so every request carries a signature by a
``transport`` key of the partnership's trust root (DESIGN §4, Transport). Building and
checking the signature is left to the ``http-message-signatures`` library; this module
holds the policy around it and translates the library's exceptions once, here. The
client's side (signing, rule 1) is ``net/signing.py``; which URI a received request is
checked for, and the aiohttp glue (rule 7), are ``net/origin.py``. This module keeps the
rules for all three and the verifying: key lookup (``net/key_lookup.py``), the wrapped
library, the replay cache.

Rules:

1. A request carries exactly one signature, covering ``@method``, ``@target-uri`` and
   ``content-digest``, with the parameters ``created``, ``expires``, ``nonce``,
   ``keyid`` and ``alg``: ``ed25519``, or ``ml-dsa-44`` (C2SP httpsig-pq,
   ``net/httpsig_pq.py``) for an ML-DSA-44 transport key. ``alg`` must name the
   algorithm of the key ``keyid`` names, and the root's transport requirement
   (``core/trust.py`` rule 7). A bodiless request carries the digest of the empty
   body, so the digest is always covered.
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
   unexpired nonces being forgotten. This cache is one process's; hub processes sharing
   one PostgreSQL also record each nonce there (``store/shared_limits.py``, ADR 0042).
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

import heapq
import re
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, TypeAlias

import http_sf
from cryptography.exceptions import InvalidSignature as InvalidCryptoSignature
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)
from yarl import URL

from jcm_sync.core.envelope import AnyPublicKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.errors import (
    ClockSkewError,
    ContentDigestError,
    JcmSyncError,
    NonceCacheFullError,
    ReplayError,
    RequestExpiredError,
    RequestSignatureError,
    SignatureMismatchError,
    UnknownKeyError,
    WrongTargetError,
)
from jcm_sync.net.httpsig_fast import body_matches, fast_verify, sha256_digest
from jcm_sync.net.httpsig_parse import (
    check_coverage,
    required_components,
    signed_algorithm,
    verify_digest,
)
from jcm_sync.net.key_lookup import TRANSPORT_ROLE as TRANSPORT_ROLE
from jcm_sync.net.key_lookup import KeyLookup as KeyLookup
from jcm_sync.net.key_lookup import trust_root_lookup as trust_root_lookup

DEFAULT_WINDOW: Final = 300
"""Seconds of allowed clock skew, and the longest lifetime of a request signature."""

MAX_NONCES: Final = 1_000_000
"""Nonces the replay cache holds at most (about 200 MB at the very worst)."""

SIGNATURE_LABEL: Final = "jcm"
ALGORITHM: Final = "ed25519"
COVERED_COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
REQUIRED_PARAMETERS: Final = ("created", "expires", "nonce", "keyid", "alg")

Received: TypeAlias = Sequence[str] | Callable[[], Sequence[str]]
"""Target URIs a client may have signed, or a function giving them (``authenticate``)."""

# 128 random bits in base64url are 22 characters; the bounds keep cache entries small
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")


# --- who is calling: rule 4, ``net/key_lookup.py`` -----------------------------------


# --- the library, wrapped ---------------------------------------------------------


@dataclass
class HttpMessage:
    """The request view the library reads: method, encoded absolute URL, header fields.

    ``headers`` needs ``items()`` with every field line; signing (``net/signing.py``)
    also writes to it.
    """

    method: str
    url: str
    headers: Mapping[str, str] | MutableMapping[str, str]


class _VerifyingKey(HTTPSignatureKeyResolver):
    """Resolves the signature's key id once and keeps our typed reason for a refusal.

    The library turns whatever a resolver raises into its own ``InvalidSignature``;
    keeping the error here lets ``verify_signature`` raise it unchanged.
    """

    def __init__(self, resolve: Callable[[str], AnyPublicKey | None], alg: str) -> None:
        self._resolve = resolve
        self._alg = alg
        self.key: AnyPublicKey | None = None
        self.error: JcmSyncError | None = None

    def resolve_public_key(self, key_id: str) -> object:
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
        if key.algorithm != self._alg:  # httpsig-pq: alg must match the key (rule 1)
            self.error = RequestSignatureError(
                f"request signature says alg={self._alg}, but key {key_id[:16]} is {key.algorithm}"
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
    key: AnyPublicKey
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
    resolve: Callable[[str], AnyPublicKey | None],
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
    if set(require) <= set(COVERED_COMPONENTS):  # our agents' own form (ADR 0043)
        fast_key = _VerifyingKey(resolve, ALGORITHM)
        fast = fast_verify(method, url, headers, fast_key.resolve_public_key)
        if fast is not None and fast_key.key is not None:
            label, params, covered = fast
            return VerifiedSignature(label, str(params["keyid"]), fast_key.key, params, covered)
    # the one signature's alg picks the class; without a known alg the library checks
    # as Ed25519 and refuses with its own reason
    algorithm = signed_algorithm(headers)
    resolver = _VerifyingKey(resolve, algorithm.algorithm_id)
    verifier = _Verifier(signature_algorithm=algorithm, key_resolver=resolver)
    try:
        required = required_components(tuple(require))
        # coverage is checked on the verified result's component ids (httpsig_parse
        # rule 2), not by the library, which would parse every covered id again
        results = verifier.verify(HttpMessage(method, url, headers), max_age=None)
        for result in results:
            check_coverage(required, result.covered_components)
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
        received_urls: Received = (),
    ) -> Authenticated:
        """Rule 6: everything but the body, nonce recorded; then ``check_body``.

        ``url`` is this node's own target URI for the request (``target_uri`` with its
        origin). ``received_urls`` are target URIs the client may have signed (from its
        Host header), or a function giving them, called only when the signature fails;
        when it fails for ``url`` but verifies for one of them, the refusal is
        ``WrongTargetError`` naming both origins. They only name the cause of a
        refusal: nothing is ever accepted for them.
        """
        t = time.time() if now is None else now
        pending = self._check_headers(method, url, headers, t, received_urls=received_urls)
        self._remember(pending, t)
        return pending

    def check_body(self, pending: Authenticated, body: bytes) -> Caller:
        """Rule 2: the body bytes as received match the signed ``Content-Digest``."""
        data = bytes(body)
        matches = body_matches(pending.covered, data)  # our agents' form (ADR 0050)
        if matches is None:  # any other form: the library's check
            try:
                verify_digest(pending.covered, data)
                matches = True
            except HTTPMessageSignaturesException:
                matches = False
        if not matches:
            raise ContentDigestError("content-digest does not match the body")
        return pending.caller

    def verify(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float | None = None,
        *,
        received_urls: Received = (),
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
        received_urls: Received = (),
    ) -> Authenticated:
        at = datetime.fromtimestamp(t, UTC)
        _require_headers(headers, ("Signature-Input", "Signature", "Content-Digest"))
        callers: list[Caller] = []

        def resolve(keyid: str) -> AnyPublicKey | None:
            caller = self._lookup(keyid, at)
            if caller is None:
                return None
            callers.append(caller)
            return caller.public_key

        try:
            sig = verify_signature(method, url, headers, resolve, require=COVERED_COMPONENTS)
        except SignatureMismatchError:
            for received in received_urls() if callable(received_urls) else received_urls:
                if received != url:
                    self._refuse_other_target(method, url, received, headers, callers[-1])
            raise
        caller = callers[-1]
        created, expires, nonce = self._parameters(sig)
        self._check_time(created, expires, t)
        if sha256_digest(sig.covered['"content-digest"']) is None:  # else our agents' form
            self._check_digest_header(sig)  # (ADR 0050: read without the RFC 8941 parser)
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
        if params["alg"] != sig.key.algorithm:  # verify_signature already refused others
            raise RequestSignatureError(f"request signature algorithm is not {sig.key.algorithm}")
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
