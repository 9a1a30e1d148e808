"""``net/client.py``: the agent's signed HTTP client of the hub, against a real hub on
127.0.0.1 (port 0) and against small aiohttp servers that answer what a hub, a proxy or
a broken network can: problem+json with ``Retry-After``, a plain-text 502, an answer
too large, one cut short, one that never comes, JSON of the wrong shape, TLS with a
private CA.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.payload import TOO_LARGE_BYTES_BODY
from aiohttp.test_utils import TestServer

from jcm_sync import __version__
from jcm_sync.core import checkpoint, merkle
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.wire import PROBLEM_CONTENT_TYPE, PushRequest
from jcm_sync.errors import ConfigError, PeerRefusedError, TransportError
from jcm_sync.net.client import (
    MAX_RESPONSE,
    USER_AGENT,
    Body,
    HubClient,
    ca_context,
    parse_retry_after,
)
from jcm_sync.net.server import SERVER_HEADER, ServerSettings
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.services.sample import free_port, provision
from tests.exchange.conftest import Running
from tests.exchange.test_tls_proxy import make_ca_and_certificate

PID = "JP-MN"


# --- against the real hub ---------------------------------------------------------------


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Running]:
    """A hub on SQLite whose pages are cut at 4 kB, with Japan's and MN's own logs seeded."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(max_page_bytes=4096, run_jobs=False), None)
    await running.start_hub()
    await running.seed("MN", projects=2)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def client(hub: Running) -> AsyncIterator[HubClient]:
    agent = await hub.agent("MN")
    async with HubClient(hub.url, agent.keys.transport) as c:
        yield c


async def test_pages_read_to_the_end_are_japans_log(hub: Running, client: HubClient) -> None:
    """Pages (cut by the hub at ``max_page_bytes``) read from where each ended make up
    Japan's whole log, in order."""
    assert hub.hub is not None
    own = hub.hub.logs(PID).own
    expected = [e.envelope for e in await hub.hub.store.entries(own)]
    got: list[bytes] = []
    pages = 0
    while len(got) < len(expected):
        page = await client.entries(PID, "JP", len(got), 500)
        assert page.start == len(got)
        assert page.size == len(expected)
        assert page.entries
        got += page.entries
        pages += 1
    assert got == expected
    assert pages > 1  # the 4 kB cut made several pages
    assert client.requests == pages
    assert client.bytes_received > sum(len(raw) for raw in expected)


async def test_the_hub_names_itself_in_every_answer(hub: Running, client: HubClient) -> None:
    """``Server: jcm-sync/<version>`` on an answer, not aiohttp's default naming Python's
    and aiohttp's versions (which also cost bytes on every anti-entropy round)."""
    async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/livez") as resp:
        assert resp.status == 200
        assert resp.headers["Server"] == SERVER_HEADER == f"jcm-sync/{__version__}"
    await client.state(PID)
    assert client.requests == 1


async def test_state_checkpoint_and_proofs_decode_and_verify(
    hub: Running, client: HubClient
) -> None:
    """The typed answers carry what the hub holds: a checkpoint Japan signed, and a
    consistency proof between two of its sizes."""
    assert hub.hub is not None
    logs = hub.hub.logs(PID)
    state = await client.state(PID, have=0)
    jp = next(s for s in state.logs if s.node == "JP")
    head = await hub.hub.store.tree_head(logs.own)
    assert (jp.size, jp.root) == (head.size, head.root)
    view = await client.checkpoint(PID, "JP")
    assert view.note is not None
    verifiers = checkpoint_verifiers(logs.root, logs.own, hub.hub.clock())
    opened = checkpoint.open_checkpoint(view.note, verifiers, origin=logs.own.origin)
    assert opened.checkpoint.size == head.size
    proof = await client.consistency(PID, "JP", 2, head.size)
    old = await hub.hub.store.root_at(logs.own, 2)
    assert merkle.verify_consistency(2, head.size, old, head.root, proof.proof)


async def test_a_push_is_signed_with_its_body(hub: Running, client: HubClient) -> None:
    """A push body reaches the hub intact and signed (its digest covered): it is stored."""
    agent = await hub.agent("MN")
    envs = [e.envelope for e in await agent.store.entries(agent.logs(PID).own)]
    resp = await client.push(PID, "MN", PushRequest(start=0, entries=envs[:3]))
    assert (resp.size, resp.appended) == (3, 3)
    assert client.bytes_sent > sum(len(raw) for raw in envs[:3])


async def test_a_refusal_is_a_peer_refused_error_with_the_problem(
    hub: Running, client: HubClient
) -> None:
    """problem+json becomes ``PeerRefusedError``: status, code, size to resume from, and
    the hub's request id to quote."""
    with pytest.raises(PeerRefusedError) as exc:
        await client.entries(PID, "JP", 10_000, 10)
    e = exc.value
    assert (e.status, e.code, e.retry_after) == (400, "past-log-size", None)
    assert hub.hub is not None
    assert e.problem.size == (await hub.hub.store.tree_head(hub.hub.logs(PID).own)).size
    assert e.problem.request_id
    assert f"[hub request {e.problem.request_id}]" in str(e)
    with pytest.raises(PeerRefusedError) as forbidden:
        await client.state("JP-ID")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")


async def test_a_key_the_hub_does_not_know_is_refused_401(hub: Running) -> None:
    """The signature is made with the client's key; a stranger's is not authenticated."""
    async with HubClient(hub.url, PrivateKey.generate()) as stranger:
        with pytest.raises(PeerRefusedError) as exc:
            await stranger.state(PID)
    assert exc.value.status == 401


# --- against servers that misbehave -----------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start an aiohttp server on 127.0.0.1 answering every path with ``handler``."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for s in servers:
        await s.close()


def problem_answer(status: int, code: str, retry_after: str | None = None) -> web.Response:
    body = msgspec.json.encode(
        {"type": f"urn:jcm-sync:problem:{code}", "title": code, "status": status, "code": code}
    )
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return web.Response(
        status=status, body=body, content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


@pytest.mark.parametrize(
    ("status", "code", "header", "seconds"),
    [(429, "too-many-requests", "3", 3.0), (503, "replay-cache-full", "120", 120.0)],
    ids=["429-delay-seconds", "503-delay-seconds"],
)
async def test_retry_after_reaches_the_error(
    serve: Callable[[Handler], Awaitable[str]], status: int, code: str, header: str,
    seconds: float,
) -> None:  # fmt: skip
    """``Retry-After`` of a refusal is carried in seconds (``HubPort`` rule 1)."""

    async def refuse(request: web.Request) -> web.Response:
        return problem_answer(status, code, header)

    async with HubClient(await serve(refuse), PrivateKey.generate()) as c:
        with pytest.raises(PeerRefusedError) as exc:
            await c.state(PID)
    assert (exc.value.status, exc.value.code, exc.value.retry_after) == (status, code, seconds)
    assert f"retry after {seconds:.0f} s" in str(exc.value)


async def test_requests_carry_a_signature_and_a_content_digest(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """RFC 9421 headers on every request, a JSON body as sent; no redirect is followed."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        raise web.HTTPFound("/elsewhere")

    async with HubClient(await serve(record), PrivateKey.generate()) as c:
        with pytest.raises(TransportError, match="malformed answer"):
            await c.push(PID, "MN", PushRequest(start=0, entries=[b"{}"]))
    (req,) = seen
    assert {"Signature", "Signature-Input", "Content-Digest"} <= set(req.headers)
    assert req.headers["Content-Type"] == "application/json"
    # it names itself and asks for no content coding, which neither side uses
    assert req.headers["User-Agent"] == USER_AGENT == f"jcm-sync/{__version__}"
    assert "Accept-Encoding" not in req.headers
    assert "Accept" not in req.headers
    assert msgspec.json.decode(bodies[0], type=PushRequest).entries == [b"{}"]


async def test_a_plain_text_error_from_a_proxy_is_still_a_refusal(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A 502 that is not problem+json keeps its status, reason and the start of its text."""

    async def proxy(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream connect error")

    async with HubClient(await serve(proxy), PrivateKey.generate()) as c:
        with pytest.raises(PeerRefusedError) as exc:
            await c.state(PID)
    assert exc.value.status == 502
    assert exc.value.problem.title == "Bad Gateway"
    assert exc.value.problem.detail == "upstream connect error"


async def test_an_answer_of_the_wrong_shape_is_a_transport_error(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A 200 whose JSON is not the expected answer is nonsense from the hub."""

    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"partnership": PID})

    async with HubClient(await serve(wrong), PrivateKey.generate()) as c:
        with pytest.raises(TransportError, match=r"malformed answer from .*/state"):
            await c.state(PID)


@pytest.mark.parametrize("chunked", [False, True], ids=["announced", "streamed"])
async def test_an_answer_over_max_response_is_refused(
    serve: Callable[[Handler], Awaitable[str]], chunked: bool
) -> None:
    """``hub.max_response_bytes``: refused as soon as it is announced, or once more has
    arrived than the limit."""

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if not chunked:
            resp.content_length = 5000
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"x" * 1000)
        await resp.write_eof()
        return resp

    async with HubClient(await serve(big), PrivateKey.generate(), max_response=2048) as c:
        message = "larger than 2048 bytes" if chunked else "announces 5000 bytes; the limit is 2048"
        with pytest.raises(TransportError, match=message):
            await c.state(PID)
    assert MAX_RESPONSE == 64 * 1024 * 1024


async def test_an_answer_cut_short_says_so(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """A body that stops before its Content-Length is not decoded as a partial answer."""

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b'{"partnership": "JP-MN", "logs": [')
        assert request.transport is not None
        request.transport.close()
        return resp

    async with HubClient(await serve(cut), PrivateKey.generate()) as c:
        with pytest.raises(TransportError, match="cut short"):
            await c.state(PID)


async def test_a_hub_that_does_not_answer_in_time(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """The client's ``timeout`` bounds a request: a TransportError, not a hang."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    async with HubClient(await serve(slow), PrivateKey.generate(), timeout=0.3) as c:
        with pytest.raises(TransportError, match="did not answer in time"):
            await c.state(PID)


async def test_an_unreachable_hub_is_a_transport_error() -> None:
    """Nothing listening: ``hub unreachable``, naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    async with HubClient(url, PrivateKey.generate()) as c:
        with pytest.raises(TransportError, match=f"hub unreachable at {url}"):
            await c.state(PID)


async def test_close_ends_the_session_and_a_later_call_opens_another(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """The client can be closed between uses (the CLI's ``sync`` does)."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"partnership": PID, "logs": []})

    c = HubClient(await serve(ok) + "/", PrivateKey.generate())
    assert (await c.state(PID)).partnership == PID
    await c.close()
    assert (await c.state(PID)).logs == []
    assert c.requests == 2
    await c.close()
    await c.close()


# --- TLS with a private CA ---------------------------------------------------------------


async def test_an_https_hub_is_trusted_through_ca_file(tmp_path: Path) -> None:
    """``[hub] ca_file``: the private CA's certificate is checked; without it, refused."""
    ca, cert, key = make_ca_and_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"partnership": PID, "logs": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}"
    try:
        async with HubClient(url, PrivateKey.generate(), ca_file=str(ca)) as trusted:
            assert (await trusted.state(PID)).partnership == PID
        async with HubClient(url, PrivateKey.generate()) as untrusting:
            with pytest.raises(TransportError, match="hub unreachable"):
                await untrusting.state(PID)
    finally:
        await runner.cleanup()


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing or non-PEM ``ca_file`` is named, as the config section it came from."""
    with pytest.raises(ConfigError, match="cannot read CA certificates") as exc:
        ca_context(str(tmp_path / "missing.pem"))
    assert exc.value.where == "[hub] ca_file"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError):
        HubClient("https://hub.example", PrivateKey.generate(), ca_file=str(junk))


# --- parse_retry_after --------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("12345678901234", 123456789.0),
        (email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (email.utils.format_datetime(NOW - timedelta(minutes=5), usegmt=True), 0.0),
        ("Sun, 01 Mar 2026 12:00:01", 1.0),
        ("-3", None),
        ("soon", None),
        ("1.5", None),
    ],
    ids=[
        "absent", "delay-seconds", "spaces", "zero", "absurdly-long", "http-date",
        "http-date-past", "http-date-without-zone", "negative", "words", "fraction",
    ],
)  # fmt: skip
def test_retry_after_is_read_per_rfc_9110(value: str | None, seconds: float | None) -> None:
    """Delay-seconds or an HTTP-date (rounded up, never negative); None when unreadable."""
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("size", [0, 1000, TOO_LARGE_BYTES_BODY, TOO_LARGE_BYTES_BODY + 1])
def test_a_body_is_its_bytes_as_json_without_a_resource_warning(size: int) -> None:
    """``Body``: a push body of any size up to ``batch_bytes`` is one payload of its
    bytes, ``application/json``, with no ResourceWarning (aiohttp warns above 1 MiB), and
    the warning filters are as they were (set only around a body aiohttp warns about)."""
    before = list(warnings.filters)
    value = b"x" * size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = Body(value)
    assert body.size == size
    assert body.content_type == "application/json"
    assert bytes(body._value) == value
    assert warnings.filters == before
