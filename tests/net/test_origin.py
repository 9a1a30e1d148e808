"""Rule 7 of the request signatures: the target URI a server checks a signature for is
its own origin and the request target as received, and an aiohttp client and server agree
on it byte for byte.
"""

from __future__ import annotations

from unittest import mock

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from jcm_sync.errors import RequestSignatureError, WrongTargetError
from jcm_sync.net.auth import RequestVerifier
from jcm_sync.net.origin import (
    ListenerOrigin,
    _received_uris,
    authenticate_aiohttp_request,
    normalise_origin,
    own_origin,
    target_uri,
)
from jcm_sync.net.signing import signed_request
from tests.net.signed_requests import (
    BODY,
    ID_CALLER,
    ROOTS,
    SIGNER,
    WINDOW,
    Hub,
    T,
    hub,
    session,
    signed,
)

__all__ = ["hub", "session"]  # fixtures, used by name

OWN = "https://hub.example.org"
"""The own origin of the hub the wrong-target tests sign for."""


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


def _transport(sockname: object, tls: bool = False) -> mock.Mock:
    transport = mock.Mock()
    extra = {"sockname": sockname, "sslcontext": object() if tls else None}
    transport.get_extra_info.side_effect = lambda name, default=None: extra.get(name, default)
    return transport


@pytest.mark.parametrize("public_origin", [None, "HTTPS://Hub.Example.org:443", "http://h:81/"])
@pytest.mark.parametrize("host", [None, "0.0.0.0", "::", "Hub.Internal", "127.0.0.1"])
def test_a_listener_origin_is_own_origin_request_after_request(
    public_origin: str | None, host: str | None
) -> None:
    """``ListenerOrigin`` answers what ``own_origin`` does for the same settings, for
    requests arriving on several addresses (kept or not), schemes and targets."""
    listener = ListenerOrigin(public_origin=public_origin, host=host)
    addresses = [("127.0.0.1", 8080), ("::1", 9000, 0, 0), ("10.0.0.7", 443)]
    for _ in range(2):  # the second time from what it kept
        for sockname in addresses:
            for tls in (False, True):
                for path in ("/v1/x?a=1", "/v1/a%20b/~x", "http://other.example/v1/y?q"):
                    request = make_mocked_request(
                        "GET", path, headers={"Host": "evil:1"}, transport=_transport(sockname, tls)
                    )
                    own = own_origin(request, public_origin=public_origin, host=host)
                    assert listener(request) == own
                    assert listener.target_uri(request) == target_uri(request, origin=own)


def test_a_listener_origin_refuses_as_own_origin_does() -> None:
    """No TCP address and no public origin: the same refusal on every request; a
    malformed public origin is the same ``ValueError`` on every request."""
    request = make_mocked_request("GET", "/v1/x", transport=_transport("/run/hub.sock"))
    listener = ListenerOrigin()
    for _ in range(2):
        with pytest.raises(RequestSignatureError, match="public_origin"):
            listener(request)
    bad = ListenerOrigin(public_origin="https://hub.example.org/api")
    for _ in range(2):
        with pytest.raises(ValueError, match="an origin is"):
            bad.target_uri(request)


def _state_requests() -> list[tuple[web.Request, bool]]:
    """A GET of a state route whose Host names ``hub.example.org``, signed for the own
    origin ``OWN`` (accepted) and for the origin Host names behind a proxy that ended TLS
    (refused as ``wrong-target``)."""
    path = "/v1/partnerships/JP-ID/state"
    out = []
    for signed_for, accepted in ((OWN, True), ("http://hub.example.org", False)):
        req = signed(method="GET", url=signed_for + path, body=b"")
        headers = {**req.headers, "Host": "hub.example.org"}
        out.append((make_mocked_request("GET", path, headers=headers), accepted))
    return out


def test_received_uris_are_worked_out_only_for_a_failed_signature() -> None:
    """The origin the client named (for a ``wrong-target`` refusal's message) is read
    from the request only when its signature fails for the own origin."""
    for request, accepted in _state_requests():
        verifier = RequestVerifier(ROOTS, window=WINDOW)
        listener = ListenerOrigin(public_origin=OWN)
        with mock.patch("jcm_sync.net.origin._received_uris", wraps=_received_uris) as read:
            if accepted:
                authenticate_aiohttp_request(verifier, request, origin=listener, now=T)
                assert read.call_count == 0
                continue
            with pytest.raises(WrongTargetError, match=r"http://hub\.example\.org, but"):
                authenticate_aiohttp_request(verifier, request, origin=listener, now=T)
            assert read.call_count == 1


# --- aiohttp: a real server on 127.0.0.1 ------------------------------------------


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


def test_authenticate_aiohttp_request_checks_the_own_origin_and_names_the_received_one() -> None:
    """A request signed for the own origin passes before its body is read; signed for the
    origin its Host header names (here behind a proxy that ended TLS), it is refused as
    ``wrong-target`` naming both origins, and its nonce is not used."""
    for request, accepted in _state_requests():
        verifier = RequestVerifier(ROOTS, window=WINDOW)
        if accepted:
            pending = authenticate_aiohttp_request(verifier, request, origin=OWN, now=T)
            assert verifier.check_body(pending, b"") == ID_CALLER
            continue
        with pytest.raises(WrongTargetError, match=r"http://hub\.example\.org, but this hub's"):
            authenticate_aiohttp_request(verifier, request, origin=OWN, now=T)
        assert len(verifier.nonces) == 0
