"""What a request signature covers at the hub (ADR 0015): the hub's own origin, never the
Host header; the body bytes as sent, never a decoded copy; a JSON body; and a signature
checked before any of the body is read. Each refusal leaves the store as it was."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from typing import Any

import aiohttp
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.wire import PushRequest, encoder
from jcm_sync.local.config import load_config
from jcm_sync.net.server import settings_from
from jcm_sync.net.signing import RequestSigner
from tests.exchange.conftest import Running
from tests.logs import rendered

PROBLEM = "application/problem+json"
PUSH = "/v1/partnerships/JP-MN/logs/MN/entries"
STATE = "/v1/partnerships/JP-MN/state"
STAGING = "http://staging.example:8443"


async def snapshot(network: Running) -> tuple[Any, list[bytes]]:
    """The hub's replica of Mongolia's log: tree head and every entry."""
    assert network.hub is not None
    replica = network.hub.logs("JP-MN").replica
    head = await network.hub.store.tree_head(replica)
    return head, [e.envelope for e in await network.hub.store.entries(replica)]


async def mn_entries(network: Running) -> list[bytes]:
    await network.seed("MN")
    agent = await network.agent("MN")
    return [e.envelope for e in await agent.store.entries(agent.logs("JP-MN").own)]


def push_body(entries: list[bytes]) -> bytes:
    return encoder.encode(PushRequest(start=0, entries=entries, checkpoint=None))


def sign(
    key: PrivateKey, method: str, url: str, body: bytes, headers: dict[str, str] | None = None
) -> dict[str, str]:
    out = {"Content-Type": "application/json", **(headers or {})}
    RequestSigner(key).sign(method, url, out, body)
    return out


async def send(
    network: Running, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, Any], str]:
    """Send exactly these headers and body bytes to the hub (no signing, no encoding)."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        s.request(method, network.url + path, data=body or None, headers=headers,
                  skip_auto_headers=("Content-Type",)) as r,
    ):  # fmt: skip
        data = await r.read()
        return r.status, json.loads(data) if data else {}, r.content_type


# --- the origin -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_request_signed_for_another_origin_is_wrong_target(
    network: Running, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed for ``http://staging.example:8443`` and sent with that Host header: 401
    ``wrong-target`` naming both origins, logged at INFO without a traceback, and nothing
    stored."""
    entries = await mn_entries(network)
    path, body = (PUSH, push_body(entries[:3])) if method == "POST" else (STATE, b"")
    before = await snapshot(network)
    headers = sign(network.net.keys["MN"], method, STAGING + path, body)
    headers["Host"] = "staging.example:8443"
    with caplog.at_level(logging.INFO, logger="jcm_sync"):
        status, problem, ctype = await send(network, method, path, headers, body)
    assert (status, ctype) == (401, PROBLEM)
    assert problem["type"] == "urn:jcm-sync:problem:wrong-target"
    assert STAGING in problem["detail"]
    assert network.url in problem["detail"]
    assert await snapshot(network) == before
    refusals = [r for r in caplog.records if "wrong-target" in rendered(r) or
                "this hub's origin" in rendered(r)]  # fmt: skip
    assert refusals
    assert all(r.levelno in (logging.INFO, logging.WARNING) for r in refusals)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_the_public_origin_replaces_the_listening_address(network: Running) -> None:
    """With ``public_origin`` set (as behind a proxy), a request signed for it is accepted
    whatever Host it carries, and one signed for the hub's own socket address is refused
    ``wrong-target``."""
    assert network.server is not None
    entries = await mn_entries(network)
    key = network.net.keys["MN"]
    network.server.settings.public_origin = "https://hub.example.org"
    before = await snapshot(network)
    body = push_body(entries[:2])
    status, problem, _ = await send(network, "POST", PUSH, sign(key, "POST", network.url + PUSH,
                                                                 body), body)  # fmt: skip
    assert (status, problem["code"]) == (401, "wrong-target")
    assert "https://hub.example.org" in problem["detail"]
    assert await snapshot(network) == before
    headers = sign(key, "POST", "https://hub.example.org" + PUSH, body)
    headers["Host"] = "anything.example"
    status, answer, _ = await send(network, "POST", PUSH, headers, body)
    assert status == 200, answer
    assert (await snapshot(network))[0].size == 2


async def test_a_plain_signature_mismatch_is_not_wrong_target(network: Running) -> None:
    """A signature that verifies for no origin (signed for one host, sent with the Host
    of another) stays ``bad-request-signature``: ``wrong-target`` only when it is so."""
    headers = sign(network.net.keys["MN"], "GET", STAGING + STATE, b"")
    headers["Host"] = "other.example"
    status, problem, _ = await send(network, "GET", STATE, headers)
    assert (status, problem["code"]) == (401, "bad-request-signature")
    assert "does not verify" in problem["detail"]


def test_public_origin_from_the_config_and_the_environment(network: Running) -> None:
    """``[server] public_origin`` and ``JCM_SYNC_SERVER_PUBLIC_ORIGIN`` reach the server's
    settings; a value that is not ``scheme://host[:port]`` is refused when loading."""
    from jcm_sync.errors import ConfigError

    path = network.net.configs["JP"]
    assert settings_from(load_config(path, env={})).public_origin is None
    env = {"JCM_SYNC_SERVER_PUBLIC_ORIGIN": "https://hub.example.org"}
    settings = settings_from(load_config(path, env=env))
    assert settings.public_origin == "https://hub.example.org"
    assert settings.host == "127.0.0.1"
    for bad in ("https://hub.example.org/jcm", "hub.example.org", "ftp://hub.example.org"):
        with pytest.raises(ConfigError, match="public_origin"):
            load_config(path, env={"JCM_SYNC_SERVER_PUBLIC_ORIGIN": bad})


# --- the body as sent -------------------------------------------------------------


@pytest.mark.parametrize("digest_of", ["plain", "encoded"])
async def test_a_content_encoding_is_refused_415(network: Running, digest_of: str) -> None:
    """A push sent gzip-encoded is 415 ``unsupported-encoding``, whether its digest covers
    the plain body (the tester's case, accepted before) or the bytes as sent: the hub
    reads no encoded body. Nothing is stored."""
    entries = await mn_entries(network)
    plain = push_body(entries[:3])
    sent = gzip.compress(plain)
    before = await snapshot(network)
    signed_over = plain if digest_of == "plain" else sent
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, signed_over,
                   {"Content-Encoding": "gzip"})  # fmt: skip
    status, problem, ctype = await send(network, "POST", PUSH, headers, sent)
    assert (status, ctype) == (415, PROBLEM)
    assert problem["type"] == "urn:jcm-sync:problem:unsupported-encoding"
    assert "Content-Encoding" in problem["detail"]
    assert await snapshot(network) == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "application/json; charset=latin-1", None],
)
async def test_a_body_that_is_not_json_is_refused_415(
    network: Running, content_type: str | None
) -> None:
    """A correctly signed push sent as ``text/plain`` (accepted before), another type, a
    charset other than UTF-8 or no Content-Type is 415 ``unsupported-media-type``."""
    entries = await mn_entries(network)
    body = push_body(entries[:3])
    before = await snapshot(network)
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, body)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    status, problem, ctype = await send(network, "POST", PUSH, headers, body)
    assert (status, ctype) == (415, PROBLEM)
    assert problem["type"] == "urn:jcm-sync:problem:unsupported-media-type"
    assert await snapshot(network) == before
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, body)
    assert (await send(network, "POST", PUSH, headers, body))[0] == 200


# --- authenticate before reading --------------------------------------------------


async def raw_request(network: Running, head: str, body: bytes = b"") -> tuple[int, float, bytes]:
    """Send a request head (and maybe part of a body) over a raw socket and wait for the
    answer without sending more: (status, seconds it took, answer bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", network.port)
    try:
        started = time.monotonic()
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        async with asyncio.timeout(10):
            answer_head = await reader.readuntil(b"\r\n\r\n")
        took = time.monotonic() - started
        return int(answer_head.split(b" ", 2)[1]), took, answer_head
    finally:
        writer.close()


def head_of(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


async def test_an_unsigned_post_announcing_8_mb_is_refused_without_its_body(
    network: Running,
) -> None:
    """An unsigned POST announcing 8,000,000 bytes and sending none gets its 401 at once:
    the signature is checked before any of the body is read (the tester's connection got
    no answer before)."""
    before = await snapshot(network)
    head = head_of("POST", PUSH, {"Host": f"127.0.0.1:{network.port}",
                                  "Content-Type": "application/json",
                                  "Content-Length": "8000000"})  # fmt: skip
    status, took, answer = await raw_request(network, head)
    assert status == 401, answer
    assert b"application/problem+json" in answer.lower()
    assert took < 5.0  # answered on the headers alone; a body read would wait for ever
    assert await snapshot(network) == before


async def test_a_signed_request_announcing_too_large_a_body_is_413_at_once(
    network: Running,
) -> None:
    """A signed push whose Content-Length exceeds ``max_body_bytes`` is 413 before any
    of its body is read."""
    before = await snapshot(network)
    limit = network.settings.max_body_bytes
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, b"{}")
    headers.update({"Host": f"127.0.0.1:{network.port}", "Content-Length": str(limit + 1)})
    status, took, answer = await raw_request(network, head_of("POST", PUSH, headers))
    assert status == 413, answer
    assert took < 5.0
    assert await snapshot(network) == before


async def test_a_chunked_body_past_the_limit_is_413_while_reading(network: Running) -> None:
    """A signed push without Content-Length whose chunks pass ``max_body_bytes`` is 413
    once the limit is passed, not after the whole body."""
    before = await snapshot(network)
    limit = network.settings.max_body_bytes
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, b"{}")
    headers.update({"Host": f"127.0.0.1:{network.port}", "Transfer-Encoding": "chunked"})
    chunk = b"x" * (64 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    status, _, answer = await raw_request(network, head_of("POST", PUSH, headers), chunks)
    assert status == 413, answer
    assert await snapshot(network) == before


async def test_a_replayed_signature_is_refused_before_its_body(network: Running) -> None:
    """The headers of a request already accepted, sent again announcing a body it never
    sends, are refused as a replay on the headers alone."""
    entries = await mn_entries(network)
    body = push_body(entries[:1])
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, body)
    assert (await send(network, "POST", PUSH, headers, body))[0] == 200
    after_first = await snapshot(network)
    headers.update({"Host": f"127.0.0.1:{network.port}", "Content-Length": str(len(body))})
    status, took, answer = await raw_request(network, head_of("POST", PUSH, headers))
    assert status == 401, answer
    assert took < 5.0
    assert await snapshot(network) == after_first


async def test_a_signed_push_with_malformed_chunks_is_400_bad_body(
    network: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed push whose chunked framing is broken (a chunk size that is not hex) is a
    400 ``bad-body`` problem, logged without a traceback, and nothing is stored: the
    framing error surfaces while the hub reads the body, after the signature passed."""
    before = await snapshot(network)
    headers = sign(network.net.keys["MN"], "POST", network.url + PUSH, b"{}")
    headers.update({"Host": f"127.0.0.1:{network.port}", "Transfer-Encoding": "chunked"})
    status, _, answer = await raw_request(
        network, head_of("POST", PUSH, headers), b"2\r\n{}\r\nzz\r\nxx\r\n0\r\n\r\n"
    )
    assert status == 400, answer
    assert b"application/problem+json" in answer.lower()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert await snapshot(network) == before
