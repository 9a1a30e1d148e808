"""Requests aiohttp's HTTP parser refuses are answered problem+json, logged once at INFO
and counted, never a traceback (``net/guard.py`` rule 6, ADR 0016). Each case is sent
over a raw socket: no HTTP client would send it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.net.server import ServerSettings
from jcm_sync.services.sample import provision
from tests.exchange.conftest import Running
from tests.logs import rendered

PROBLEM = "application/problem+json"
TYPE = "urn:jcm-sync:problem:"

CASES = {
    "invalid method": (b"G@T /livez HTTP/1.1\r\nHost: h\r\n\r\n", "bad-method"),
    "TLS on the HTTP port": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
        "bad-method",
    ),
    "request line over 8 KB": (
        b"GET /livez?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        "line-too-long",
    ),
    "header over 8 KB": (
        b"GET /livez HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        "line-too-long",
    ),
    "header flood": (
        b"GET /livez HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(300)) + b"\r\n",
        "bad-request",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /v1/partnerships/JP-MN/logs/MN/entries HTTP/1.1\r\nHost: h\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad-request",
    ),
    "space in the target": (b"GET /v1/ ?x HTTP/1.1\r\nHost: h\r\n\r\n", "bad-request"),
    "raw non-ASCII target": (b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n", "bad-request"),
    "malformed header": (b"GET /livez HTTP/1.1\r\nBad Header: x\r\n\r\n", "bad-request"),
    "bad chunk size": (
        b"POST /v1/partnerships/JP-MN/logs/MN/entries HTTP/1.1\r\nHost: h\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        "bad-request",
    ),
}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Running]:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the hub closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    except ConnectionResetError:
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def refused(hub: Running, reason: str) -> float:
    assert hub.hub is not None
    value = hub.hub.metrics.registry.get_sample_value(
        "jcm_sync_http_refused_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize("case", list(CASES))
async def test_parser_refusal_is_problem_json(
    hub: Running, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    data, code = CASES[case]
    caplog.set_level(logging.DEBUG)
    before = refused(hub, code)
    answer = await exchange(hub.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), answer[:300]
    assert lines[0][8:13] == " 400 ", answer[:300]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"].startswith(PROBLEM), headers
    problem = json.loads(body[: int(headers["content-length"])])
    assert problem["type"] == TYPE + code, problem
    assert problem["status"] == 400
    assert problem["detail"]
    assert refused(hub, code) == before + 1
    mine = [r for r in caplog.records if r.name.startswith(("jcm_sync", "aiohttp"))]
    assert not [r for r in mine if r.levelno >= logging.WARNING], [rendered(r) for r in mine]
    assert not [r for r in mine if r.exc_info], [rendered(r) for r in mine]
    said = [r for r in mine if r.levelno == logging.INFO and code in rendered(r)]
    assert len(said) == 1, [rendered(r) for r in mine]
    # the refusal's request id: in the problem, its X-Request-Id and the hub's log line
    assert len(problem["request_id"]) == 16, problem
    assert headers["x-request-id"] == problem["request_id"]
    assert problem["request_id"] in rendered(said[0])


async def test_the_hub_still_answers_after_refusals(hub: Running) -> None:
    """Refusals close only their own connection."""
    for data, _ in CASES.values():
        await exchange(hub.port, data)
    answer = await exchange(
        hub.port, b"GET /livez HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
