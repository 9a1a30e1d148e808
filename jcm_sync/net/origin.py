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
(``WrongTargetError``), and are worked out only when a signature fails. An origin is
``scheme://host[:port]`` as yarl writes it. A server works out its own origin with
``ListenerOrigin``, which keeps each origin it worked out by the values it depends on
(the public origin, or the scheme, host and port), so a request pays for none of yarl's
parsing or building of it again (ADR 0063).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from aiohttp import web
from yarl import URL

from jcm_sync.core.wire import Caller
from jcm_sync.errors import RequestSignatureError
from jcm_sync.net.auth import Authenticated, RequestVerifier

_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})
"""Listening hosts that name no address: the connection's local address stands in."""
_KEPT_ORIGINS: Final = 64
"""Listening addresses a ``ListenerOrigin`` keeps the origin of (a wildcard host has one
per local address a client reached it on)."""


def target_uri(request: web.Request, *, origin: str | None = None) -> str:
    """A received request's ``@target-uri`` under ``origin`` (rule 7).

    The path and query are the request target exactly as received (``raw_path``), which
    is what an aiohttp client sends (``ClientRequest.url.raw_path_qs``) and signs. The
    origin is ``origin`` (``own_origin``: what a server checks against); without one, it
    is the origin the client named, the connection's scheme and its Host header (or an
    absolute-form target's), normalised by yarl as the client's URL is: only ever a
    hint for a refusal's message, since the client chooses it.
    """
    if origin is not None:
        path_qs = _path_qs(request)
        return normalise_origin(origin) + path_qs
    raw = request.raw_path
    if raw.startswith("/"):
        return str(request.url.origin()) + raw
    absolute = _absolute_target(raw)  # absolute-form (RFC 9112 §3.2.2): it names its origin
    return str(absolute.origin()) + absolute.raw_path_qs


def _absolute_target(raw: str) -> URL:
    absolute = URL(raw)
    if not absolute.absolute:
        raise RequestSignatureError(f"request target {raw[:100]!r} cannot be signed")
    return absolute


def _path_qs(request: web.Request) -> str:
    """The request target's path and query exactly as received (rule 7)."""
    raw = request.raw_path
    return raw if raw.startswith("/") else _absolute_target(raw).raw_path_qs


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
    scheme, name, port = _listening_address(request, host)
    return _address_origin(scheme, name, port)


def _listening_address(request: web.Request, host: str | None) -> tuple[str, str, int]:
    """``own_origin``'s scheme, host and port for a request without a public origin."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise RequestSignatureError(
            "this hub cannot tell its own address (not a TCP socket); set [server] public_origin"
        )
    assert transport is not None
    scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
    name = str(sockname[0]) if host is None or host in _WILDCARD_HOSTS else host
    return scheme, name, int(sockname[1])


def _address_origin(scheme: str, name: str, port: int) -> str:
    return str(URL.build(scheme=scheme, host=name, port=port).origin())


class ListenerOrigin:
    """``own_origin`` of one listener's ``public_origin`` and ``host``, each origin worked
    out once: the public origin's normal form, or that of each (scheme, host, port) a
    request arrived on (up to ``_KEPT_ORIGINS``; beyond, worked out per request)."""

    def __init__(self, *, public_origin: str | None = None, host: str | None = None) -> None:
        self.public_origin, self.host = public_origin, host
        self._public: str | None = None
        self._by_address: dict[tuple[str, str, int], str] = {}

    def __call__(self, request: web.Request) -> str:
        """``own_origin(request, public_origin=..., host=...)``."""
        if self.public_origin is not None:
            if self._public is None:  # a malformed one raises on every request, as before
                self._public = normalise_origin(self.public_origin)
            return self._public
        address = _listening_address(request, self.host)
        origin = self._by_address.get(address)
        if origin is None:
            origin = _address_origin(*address)
            if len(self._by_address) < _KEPT_ORIGINS:
                self._by_address[address] = origin
        return origin

    def target_uri(self, request: web.Request) -> str:
        """``target_uri(request, origin=self(request))``: the origin is already in its
        normal form, so it is not parsed again."""
        origin = self(request)  # its refusals first, as own_origin's before target_uri's
        return origin + _path_qs(request)


def _received_uris(request: web.Request) -> tuple[str, ...]:
    """What the client may have signed: the origin it named (Host, or an absolute-form
    target), under either scheme, since a proxy in front may have ended TLS."""
    try:
        named = URL(target_uri(request), encoded=True)
    except (RequestSignatureError, ValueError):
        return ()
    other = named.with_scheme("https" if named.scheme == "http" else "http")
    return (str(named), str(other))


def _received(request: web.Request) -> Callable[[], Sequence[str]]:
    """``_received_uris`` of ``request``, worked out only if a refusal needs them."""
    return lambda: _received_uris(request)


def authenticate_aiohttp_request(
    verifier: RequestVerifier,
    request: web.Request,
    *,
    origin: str | ListenerOrigin,
    now: float | None = None,
) -> Authenticated:
    """Rule 6 for a request received by an aiohttp server, before its body is read;
    ``origin`` is ``own_origin(request, ...)``, or the server's ``ListenerOrigin``. Then
    ``verifier.check_body``."""
    if isinstance(origin, ListenerOrigin):
        url = origin.target_uri(request)
    else:
        url = target_uri(request, origin=origin)
    return verifier.authenticate(
        request.method,
        url,
        request.headers,
        now=now,
        received_urls=_received(request),
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
        received_urls=_received(request),
    )
