"""The client's side of RFC 9421 request signatures: sign every request a node sends.

Why this module exists: an agent (and any tool talking to the hub) must sign the request
aiohttp actually sends, its final URL and body bytes, again for every retry with a fresh
nonce, or the hub refuses it (``net/auth.py`` rules 1 and 7). The rules, and the server
that checks them, live in ``net/auth.py``; this module only builds signatures, so a
client imports no verifier state.

The algorithm is the transport key's: ``ed25519``, or ``ml-dsa-44`` as C2SP httpsig-pq
defines it (``net/httpsig_pq.py``) when the node's transport key is ML-DSA-44.

Invariants: a signature covers ``@method``, ``@target-uri`` and ``content-digest`` with
all five parameters (rule 1); signing again replaces every earlier signing header; a
body that cannot be digested up front (a stream, ``compress=``) is refused with
``TypeError`` rather than sent unsigned.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import aiohttp
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPSignatureKeyResolver,
)
from yarl import URL

from jcm_sync.core.envelope import AnyPrivateKey
from jcm_sync.errors import BadDataError
from jcm_sync.net.auth import COVERED_COMPONENTS, DEFAULT_WINDOW, SIGNATURE_LABEL, HttpMessage
from jcm_sync.net.httpsig_fast import signed_form
from jcm_sync.net.httpsig_pq import HTTPSIG_ALGORITHMS

_SIGNING_HEADERS: Final = frozenset({"content-digest", "signature-input", "signature"})


def new_nonce() -> str:
    """128 random bits, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


class _SigningKey(HTTPSignatureKeyResolver):
    """The one private key a signer holds, of either algorithm, under its key id."""

    def __init__(self, key_id: str, key: AnyPrivateKey) -> None:
        self._key_id, self._key = key_id, key

    def resolve_private_key(self, key_id: str) -> object:
        if key_id != self._key_id:
            raise HTTPMessageSignaturesException(f"no private key {key_id[:16]} here")
        return self._key.key

    def resolve_public_key(self, key_id: str) -> NoReturn:
        raise TypeError("a signing key resolver holds no public keys")


class _Signer(HTTPMessageSigner):
    """The library's signer with the covered component ids parsed once per tuple.

    ``prepare`` parses them on every call; the parsed items are copied into a new list
    each time (``prepare`` appends to it). Lists naming ``set-cookie`` are parsed anew,
    since the library may add a parameter to that item.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parsed: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def _parse_covered_component_ids(self, covered_component_ids: Any) -> Any:
        ids = tuple(covered_component_ids)
        parsed = self._parsed.get(ids)
        if parsed is None:
            nodes = super()._parse_covered_component_ids(covered_component_ids)  # type: ignore[no-untyped-call]
            if any(node.value == "set-cookie" for node in nodes):
                return nodes
            parsed = self._parsed[ids] = tuple(nodes)
        return list(parsed)


class RequestSigner:
    """Signs requests with one transport key (rule 1), Ed25519 or ML-DSA-44.

    ``lifetime`` is ``expires - created`` in seconds; it must not exceed the window of
    the verifier at the other end. ``key_id`` defaults to the key's own id.
    """

    def __init__(
        self,
        key: AnyPrivateKey,
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
        algorithm = HTTPSIG_ALGORITHMS[key.algorithm]
        self._signer = _Signer(
            signature_algorithm=algorithm,
            key_resolver=_SigningKey(self.key_id, key),
        )
        self._algorithm = algorithm(private_key=key.key)  # one instance for every request

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
        nonce, expires = new_nonce(), created + self.lifetime
        form = None
        if self.key.algorithm == "ed25519":  # our agents' one form, written directly
            form = signed_form(
                method.upper(), url, bytes(body), label=self.label, keyid=self.key_id,
                created=created, expires=expires, nonce=nonce,
            )  # fmt: skip
        if form is not None:  # byte for byte what the library writes (ADR 0056)
            headers["Content-Digest"], params, base = form
            signature = self._algorithm.sign(base)
            headers["Signature-Input"] = f"{self.label}={params}"
            headers["Signature"] = f"{self.label}=:{base64.b64encode(signature).decode('ascii')}:"
            return
        try:
            # the library builds the signature base (and Content-Digest) once; its
            # sign() would build it a second time in apply() to check it, for headers
            # that are one dictionary member each (RFC 8941 sections 3.2 and 4.1.8)
            prepared = self._signer.prepare(
                HttpMessage(method.upper(), url, headers),
                key_id=self.key_id,
                created=datetime.fromtimestamp(created, UTC),
                expires=datetime.fromtimestamp(expires, UTC),
                nonce=nonce,
                label=self.label,
                covered_component_ids=COVERED_COMPONENTS,
                body=bytes(body),
            )
            signature = self._algorithm.sign(prepared.signature_base)
        except HTTPMessageSignaturesException as exc:
            raise BadDataError(f"cannot sign {method} {url}: {exc}", where="request") from exc
        label = prepared.label
        headers["Signature-Input"] = f"{label}={prepared.signature_params}"
        headers["Signature"] = f"{label}=:{base64.b64encode(signature).decode('ascii')}:"


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
