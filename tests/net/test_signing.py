"""The client's side of request signatures: what a signed request carries, and that the
aiohttp middleware signs what is actually sent, every time, or refuses to send it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import msgspec
import pytest

from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import key_entry
from jcm_sync.net.auth import RequestVerifier
from jcm_sync.net.server import ServerSettings
from jcm_sync.net.signing import RequestSigner, SigningMiddleware, new_nonce
from jcm_sync.services.sample import provision
from tests.exchange.conftest import Running
from tests.net.signed_requests import (
    BODY,
    ID_CALLER,
    ID_KEY,
    ROOTS,
    SIGNER,
    WINDOW,
    Hub,
    T,
    check,
    hub,
    session,
    sha256_digest,
    signed,
)

__all__ = ["hub", "session"]  # fixtures, used by name


@pytest.fixture
def verifier() -> RequestVerifier:
    return RequestVerifier(ROOTS, window=WINDOW)


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


@pytest.mark.parametrize("lifetime", [0, -1], ids=["zero", "negative"])
def test_a_signature_lifetime_is_positive(lifetime: int) -> None:
    """A signer refuses a lifetime that would make every signature expire at once."""
    with pytest.raises(ValueError, match="positive number of seconds"):
        RequestSigner(ID_KEY, lifetime=lifetime)


async def test_a_compressed_body_cannot_be_signed(hub: Hub) -> None:
    """``compress=`` changes the bytes after they are digested, so signing refuses it."""
    middleware = SigningMiddleware(SIGNER, clock=lambda: T)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as s:
        with pytest.raises(TypeError, match="compress="):
            await s.post(hub.base + "/v1/x", data=BODY, compress="deflate")


# --- ml-dsa-44 against a real hub ---------------------------------------------------


@pytest.fixture
async def live_hub(tmp_path: Path) -> AsyncIterator[Running]:
    """The real hub (``HubServer``, SQLite, 127.0.0.1 port 0) of a provisioned JP-MN."""
    running = Running(provision(tmp_path / "net", ["MN"], hub_port=0),
                      ServerSettings(run_jobs=False), None)  # fmt: skip
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()


async def test_a_real_hub_accepts_an_ml_dsa_44_signed_request(live_hub: Running) -> None:
    """Once the root lists MN's ML-DSA-44 transport key and requires ml-dsa-44 for
    transport, the hub serves MN's ml-dsa-44 request and refuses its Ed25519 one."""
    pq_key = MLDSA44PrivateKey.generate()
    assert live_hub.hub is not None
    logs = live_hub.hub.partnerships["JP-MN"]
    mn = next(k for k in logs.root.keys if k.node == "MN")
    entry = key_entry(pq_key.public, "MN", not_before=mn.not_before, not_after=mn.not_after,
                      roles=["transport"])  # fmt: skip
    logs.root = msgspec.structs.replace(
        logs.root, keys=(*logs.root.keys, entry), required_algorithms={"transport": "ml-dsa-44"}
    )  # what a reload of a rotated root does
    path = "/v1/partnerships/JP-MN/logs/JP/entries?start=0"
    signer = SigningMiddleware(RequestSigner(pq_key))
    async with (
        aiohttp.ClientSession(live_hub.url, middlewares=(signer,)) as s,
        s.get(path) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert ';alg="ml-dsa-44"' in resp.request_info.headers["Signature-Input"]
    agent = await live_hub.agent("MN")
    ed_signer = SigningMiddleware(RequestSigner(agent.keys.transport))
    async with (
        aiohttp.ClientSession(live_hub.url, middlewares=(ed_signer,)) as s,
        s.get(path) as resp,
    ):
        problem = await resp.json(content_type=None)
    assert resp.status in (401, 403)
    assert problem["code"] == "algorithm-required"
    assert "requires ml-dsa-44 transport signatures" in problem["detail"]
