"""Which URI a received request was signed for, and the aiohttp server's glue around
``RequestVerifier``.

Why this module exists: rule 7 of ``net/auth.py`` makes a server check a signature
against its own origin (``own_origin``: the public origin a proxy serves it under, or
else its listening address), never the Host header, followed by the request target
exactly as received (``raw_path``). Working that out needs the aiohttp request and its
socket, which the verifier in ``net/auth.py`` must not depend on; here it is done once,
for the server (``net/server.py``) and for tests.

Invariants: nothing read from the request itself (Host, an absolute-form target) is
ever accepted as the origin; such received URIs only name the cause of a refusal
(``WrongTargetError``). An origin is ``scheme://host[:port]`` as yarl writes it.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from yarl import URL

from jcm_sync.core.wire import Caller
from jcm_sync.errors import RequestSignatureError
from jcm_sync.net.auth import Authenticated, RequestVerifier

_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})
"""Listening hosts that name no address: the connection's local address stands in."""


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
