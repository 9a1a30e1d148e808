"""``net/guard.py``'s own pieces: the parser-refusal table, the raw problem+json answer,
the per-address count of unauthenticated connections, the refusal record, and a
``GuardedAppRunner`` around a minimal aiohttp app (not the hub), reached by raw sockets
on 127.0.0.1. The hub's end-to-end behaviour is in ``tests/exchange/test_slow_clients.py``
and ``test_parser_refusals.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import http_exceptions as hx
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from jcm_sync.core.wire import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, Problem
from jcm_sync.net.guard import (
    GUARD_KEY,
    ConnectionGuard,
    GuardedAppRunner,
    GuardSettings,
    authenticated,
    parser_refusal,
    problem_body,
    raw_problem,
)

# --- pure pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (hx.BadHttpMethod("G\x00T"), "bad-method"),
        (hx.LineTooLong("line", "8190"), "line-too-long"),
        (hx.PayloadEncodingError("bad gzip"), "bad-body"),
        (hx.ContentLengthError("short"), "bad-body"),
        (hx.TransferEncodingError("bad chunk"), "bad-body"),
        (hx.BadStatusLine("nonsense"), "bad-request"),
        (hx.InvalidHeader("X Y"), "bad-request"),
        (hx.BadHttpMessage("anything else"), "bad-request"),
        (ValueError("not even HTTP"), "bad-request"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
)
def test_each_parser_refusal_has_its_problem_type(exc: BaseException, code: str) -> None:
    """Rule 6: a type per cause that aiohttp's parser tells apart, else ``bad-request``;
    the title is the code in CamelCase."""
    got, title = parser_refusal(exc)
    assert got == code
    assert title == "".join(w.title() for w in code.split("-"))


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("ascii").split("\r\n")
    headers = {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("retry_after", [0, 3], ids=["no-retry-after", "retry-after"])
def test_a_raw_problem_is_a_whole_http_response(retry_after: int) -> None:
    """Rule 4/5: status line, problem+json, exact length, the request id, closing; a
    ``Retry-After`` only when one is given."""
    raw = raw_problem(503, "too-many-connections", "TooManyConnections", "détail", "abc123",
                      retry_after)  # fmt: skip
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert int(headers["Content-Length"]) == len(body)
    assert headers["X-Request-Id"] == "abc123"
    assert headers["Connection"] == "close"
    assert headers.get("Retry-After") == (str(retry_after) if retry_after else None)
    problem = json.loads(body)
    expected = problem_body(503, "too-many-connections", "TooManyConnections", "détail", "abc123")
    assert problem == json.loads(expected)
    assert problem["type"] == PROBLEM_TYPE_PREFIX + "too-many-connections"
    assert (problem["status"], problem["code"], problem["detail"]) == (
        503, "too-many-connections", "détail",
    )  # fmt: skip


def guard(limit: int = 2) -> tuple[ConnectionGuard, CollectorRegistry]:
    registry = CollectorRegistry()
    counter = Counter("jcm_sync_http_refused_total", "refused", ["reason"], registry=registry)
    return ConnectionGuard(GuardSettings(max_unauthenticated=limit), counter), registry


def test_the_unauthenticated_limit_is_per_address() -> None:
    """Rule 5: up to the limit per address; another address has its own count; a
    release makes room again and forgets an address at zero."""
    g, _ = guard(limit=2)
    assert g.admit("10.0.0.1")
    assert g.admit("10.0.0.1")
    assert not g.admit("10.0.0.1")
    assert g.admit("10.0.0.2")
    assert g.unauthenticated == {"10.0.0.1": 2, "10.0.0.2": 1}
    g.release("10.0.0.1")
    assert g.admit("10.0.0.1")
    g.release("10.0.0.2")
    assert "10.0.0.2" not in g.unauthenticated
    g.release("10.0.0.9")  # never admitted: nothing to release, nothing goes negative
    assert "10.0.0.9" not in g.unauthenticated


def test_a_limit_of_zero_admits_everyone() -> None:
    """Rule 5: 0 turns the limit off (behind a reverse proxy)."""
    g, _ = guard(limit=0)
    assert all(g.admit("10.0.0.1") for _ in range(1000))


def test_a_refusal_is_one_info_line_and_one_count(caplog: pytest.LogCaptureFixture) -> None:
    """Rule 7: logged with the address, reason and request id; counted by reason."""
    g, registry = guard()
    with caplog.at_level(logging.INFO, logger="jcm_sync.server"):
        rid = g.refused("header-timeout", "10.0.0.7", "too slow")
        g.refused("header-timeout", "10.0.0.7", "too slow")
    assert len(rid) == 16
    int(rid, 16)
    (first, second) = caplog.records
    assert first.levelno == logging.INFO
    assert first.exc_info is None
    assert first.getMessage() == "refused"
    assert (first.request_id, first.reason, first.remote) == (rid, "header-timeout", "10.0.0.7")
    assert first.status == 408
    assert second.request_id != rid  # a new id per refusal
    assert registry.get_sample_value("jcm_sync_http_refused_total",
                                     {"reason": "header-timeout"}) == 2  # fmt: skip


# --- a guarded runner around a minimal app -----------------------------------------------


@dataclass
class Served:
    port: int
    guard: ConnectionGuard
    registry: CollectorRegistry

    def refused(self, reason: str) -> float:
        return self.registry.get_sample_value("jcm_sync_http_refused_total",
                                              {"reason": reason}) or 0.0  # fmt: skip


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def login(request: web.Request) -> web.Response:
    authenticated(request)  # what the hub does once a signature verified
    return web.Response(text="welcome")


async def upload(request: web.Request) -> web.Response:
    return web.Response(text=f"{len(await request.read())} bytes")


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug with a secret in it")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    runners: list[web.AppRunner] = []

    async def start(**settings: float) -> Served:
        g, registry = guard(limit=int(settings.pop("max_unauthenticated", 2)))
        g.settings = GuardSettings(max_unauthenticated=g.settings.max_unauthenticated,
                                   **settings)  # type: ignore[arg-type]  # fmt: skip
        app = web.Application()
        app[GUARD_KEY] = g
        app.router.add_get("/ok", ok)
        app.router.add_get("/login", login)
        app.router.add_get("/broken", broken)
        app.router.add_post("/upload", upload)
        runner = GuardedAppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Served(port, g, registry)

    yield start
    for r in runners:
        await r.cleanup()


async def talk(port: int, data: bytes, *, limit_s: float = 10) -> bytes:
    """Send ``data`` on a new connection and read until it is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunks: list[bytes] = []
    try:
        if data:
            writer.write(data)
            await writer.drain()
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return b"".join(chunks)


def problem_in(answer: bytes) -> tuple[int, Problem]:
    status, headers, body = split_response(answer)
    length = int(headers["Content-Length"])
    problem = Problem(**json.loads(body[:length]))
    assert headers["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    assert headers["X-Request-Id"] == problem.request_id
    return int(status.split()[1]), problem


async def test_the_runner_uses_the_apps_guard(serve: Callable[..., Awaitable[Served]]) -> None:
    """``GuardedAppRunner`` takes ``GUARD_KEY`` from the app; connections go through it."""
    served = await serve()
    answer = await talk(served.port, b"GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert served.guard.unauthenticated == {}  # the closed connection released its count


async def test_a_head_not_complete_in_time_is_answered_408(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    """Rules 1 and 4: a half-sent head is closed after ``header_timeout`` with a 408."""
    served = await serve(header_timeout=0.3)
    status, problem = problem_in(await talk(served.port, b"GET /ok HTTP/1.1\r\nHost:"))
    assert (status, problem.code) == (408, "header-timeout")
    assert "within 0.3 s" in problem.detail
    assert served.refused("header-timeout") == 1


async def test_a_body_not_complete_in_time_is_answered_408(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    """Rules 2 and 4: a body shorter than announced is closed after ``body_timeout``."""
    served = await serve(body_timeout=0.3)
    opening = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc"
    status, problem = problem_in(await talk(served.port, opening))
    assert (status, problem.code) == (408, "body-timeout")
    assert served.refused("body-timeout") == 1
    whole = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    assert (await talk(served.port, whole)).endswith(b"3 bytes")  # in time: served


async def test_connections_beyond_the_limit_are_refused_503_until_authenticated(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    """Rule 5: the third idle connection from one address is refused with Retry-After;
    once one authenticates, its place is free."""
    served = await serve(max_unauthenticated=2, header_timeout=30)
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
    try:
        answer = await talk(served.port, b"")
        status, problem = problem_in(answer)
        assert (status, problem.code) == (503, "too-many-connections")
        assert split_response(answer)[1]["Retry-After"] == "1"
        assert served.refused("too-many-connections") == 1
        reader, writer = idle[0]
        writer.write(b"GET /login HTTP/1.1\r\nHost: h\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"welcome")).startswith(b"HTTP/1.1 200")
        assert served.guard.unauthenticated == {"127.0.0.1": 1}
        again = await talk(served.port, b"GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200")
    finally:
        for _, w in idle:
            w.close()


async def test_a_request_the_parser_refuses_is_problem_json(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    """Rule 6: 400 problem+json with the cause's type, counted, and the connection closed."""
    served = await serve()
    status, problem = problem_in(await talk(served.port, b"G@T /ok HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert (status, problem.code) == (400, "bad-method")
    assert problem.detail.startswith("not a valid HTTP/1.1 request")
    assert served.refused("bad-method") == 1


async def test_a_handler_bug_is_a_500_without_its_text(
    serve: Callable[..., Awaitable[Served]], caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 7: an exception no middleware caught is a generic 500 problem+json; its
    traceback goes to the log at ERROR under the request id."""
    served = await serve()
    with caplog.at_level(logging.INFO, logger="jcm_sync.server"):
        answer = await talk(served.port, b"GET /broken HTTP/1.1\r\nHost: h\r\n\r\n")
    status, problem = problem_in(answer)
    assert (status, problem.code) == (500, "internal")
    assert b"secret" not in answer
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(getattr(r, "request_id", None) == problem.request_id and r.exc_info for r in errors)
