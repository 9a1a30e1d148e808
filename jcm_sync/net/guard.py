"""The hub's connection-level defences: timeouts, a per-address limit, parser refusals.

Why this module exists: aiohttp reads a request's head and body before any of the
hub's code runs, so a client that never finishes either, or that opens connections
faster than it completes requests, holds the hub without ever being authenticated;
and a request aiohttp cannot parse is answered by aiohttp itself, ``text/plain``
with a traceback in the log. ``GuardedRequestHandler`` (aiohttp's per-connection
protocol, subclassed) closes those connections and answers those requests as the
rest of the hub does. ``HubServer.runner()`` builds an ``AppRunner`` whose connections
use it; every way the hub is run (``jcm-sync registry serve``, the tests, the fault
harness, the benchmarks) goes through that runner.

Rules (ADR 0016):

1. **Head timeout** (``header_timeout``, default 10 s): a request's head (request line
   and headers) must be complete within this many seconds of its first byte, and the
   first request's head within this many seconds of the connection being opened.
2. **Body timeout** (``body_timeout``, default 30 s): a request's whole body must have
   arrived within this many seconds of the end of its head, whether or not a handler
   reads it (a deadline, not an inactivity timer: 8 MiB in 30 s is 280 kB/s).
3. **Idle keep-alive** (``keepalive_timeout``, default 60 s): aiohttp's own timer,
   from the end of a response to the first byte of the next request.
4. A connection that misses rule 1 or 2 is closed; if nothing of a response has been
   sent on it yet, it is first answered ``408`` problem+json (``header-timeout`` or
   ``body-timeout``). Rule 3 closes silently (an idle client asked for nothing).
5. **Unauthenticated connections per client address** (``max_unauthenticated``,
   default 16, 0 for no limit): a connection counts from its opening until a request
   on it is authenticated (``authenticated()``, called by the hub once a signature
   verified) or it closes. A connection beyond the limit is answered ``503``
   problem+json ``too-many-connections`` with ``Retry-After`` and closed at once,
   before anything is read from it. Behind a reverse proxy every connection comes from
   the proxy's address: raise the limit or set it to 0 there, and let the proxy limit.
6. **Every refusal at this level is problem+json.** A request aiohttp's parser refuses
   (invalid method, request line or header over 8190 bytes, more than 128 headers,
   ``Content-Length`` with ``Transfer-Encoding``, a bad chunk, …) is answered ``400``
   with a type per cause (``bad-method``, ``line-too-long``, ``bad-body`` for a body
   aiohttp cannot decode, else ``bad-request``: aiohttp's C parser does not tell a bad
   request line from a bad header), and the connection closed.
7. Each refusal of rules 4-6 is one INFO line with the client's address and the reason,
   and one increment of ``jcm_sync_http_refused_total{reason}``; never a traceback.
   A handler exception that escaped the hub's middlewares (a bug) is still a 500
   problem+json logged at ERROR with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import http_exceptions as hx
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter

from jcm_sync.core.wire import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, Problem, encoder

log = logging.getLogger("jcm_sync.server")

_REFUSAL_STATUS = {"header-timeout": 408, "body-timeout": 408, "too-many-connections": 503}
REQUEST_ID_HEADER = "X-Request-Id"
"""As on every answer of the hub (``server`` rule 7, ADR 0019)."""


@dataclass(frozen=True)
class GuardSettings:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 60.0
    #: rule 5; 0 turns the limit off
    max_unauthenticated: int = 16
    #: the Retry-After of a connection refused by rule 5
    retry_after_seconds: int = 1


def problem_body(status: int, code: str, title: str, detail: str, request_id: str) -> bytes:
    return encoder.encode(
        Problem(
            type=PROBLEM_TYPE_PREFIX + code,
            title=title,
            status=status,
            detail=detail,
            code=code,
            request_id=request_id,
        )
    )


def raw_problem(
    status: int, code: str, title: str, detail: str, request_id: str, retry_after: int = 0
) -> bytes:
    """A whole HTTP/1.1 problem+json response, for a connection no handler answers."""
    body = problem_body(status, code, title, detail, request_id)
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {PROBLEM_CONTENT_TYPE}",
        f"Content-Length: {len(body)}",
        f"{REQUEST_ID_HEADER}: {request_id}",
        "Connection: close",
    ]
    if retry_after:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def parser_refusal(exc: BaseException) -> tuple[str, str]:
    """Rule 6: the problem code and a title for what aiohttp's parser refused."""
    if isinstance(exc, hx.BadHttpMethod):
        return "bad-method", "BadMethod"
    if isinstance(exc, hx.LineTooLong):
        return "line-too-long", "LineTooLong"
    if isinstance(exc, hx.PayloadEncodingError):
        return "bad-body", "BadBody"
    return "bad-request", "BadRequest"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConnectionGuard:
    """What every connection of one hub shares: the settings, the count of
    unauthenticated connections per address (rule 5) and the refusal counter."""

    def __init__(self, settings: GuardSettings, refused: Counter | None = None) -> None:
        self.settings = settings
        self.refused_total = refused
        self.unauthenticated: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        held = self.unauthenticated.get(address, 0)
        limit = self.settings.max_unauthenticated
        if limit and held >= limit:
            return False
        self.unauthenticated[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.unauthenticated.get(address, 0) - 1
        if held > 0:
            self.unauthenticated[address] = held
        else:
            self.unauthenticated.pop(address, None)

    def refused(self, reason: str, address: str, detail: str) -> str:
        """Rule 7: one INFO line and one count per refusal; returns the refusal's request
        id, for its problem details and ``X-Request-Id`` (``server`` rule 7)."""
        request_id = secrets.token_hex(8)
        log.info("refused", extra={  # the shape of net/refusals.py's event
            "reason": reason, "status": _REFUSAL_STATUS.get(reason, 400), "partner": None,
            "request_id": request_id, "remote": address, "detail": detail})  # fmt: skip
        if self.refused_total is not None:
            self.refused_total.labels(reason).inc()
        return request_id


class GuardedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with rules 1-7 of this module."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        #: the client's address while this connection counts as unauthenticated
        self._counted: str | None = None
        self._address = "unknown"
        self._deadline: asyncio.TimerHandle | None = None
        #: "head" while a request head is awaited against rule 1, "body" while a body is
        #: awaited against rule 2, "" otherwise (handling, or idle under rule 3)
        self._phase = ""
        self._body: Any = None

    # --- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._address = str(peer[0])
        if not self._guard.admit(self._address):
            limit = self._guard.settings.max_unauthenticated
            detail = f"{limit} connections from {self._address} are not authenticated yet"
            rid = self._guard.refused("too-many-connections", self._address, detail)
            retry = self._guard.settings.retry_after_seconds
            reply = raw_problem(
                503, "too-many-connections", "TooManyConnections", detail, rid, retry
            )
            self._close_with(reply)
            return
        self._counted = self._address
        self._arm("head", self._guard.settings.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._phase = ""
        self.authenticated()
        super().connection_lost(exc)

    def authenticated(self) -> None:
        """Rule 5: this connection no longer counts against its address."""
        if self._counted is not None:
            self._guard.release(self._counted)
            self._counted = None

    # --- rules 1 and 2 -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        reading_heads = self._payload_parser is None and not self._upgraded
        if reading_heads and data and not self._phase:
            self._arm("head", self._guard.settings.header_timeout)
        parsed = self._request_count
        super().data_received(data)
        if not reading_heads:
            return
        if self._request_count != parsed and self._messages:
            # one or more heads are complete; the last one's body is awaited (rule 2)
            self._body = self._messages[-1][1]
            self._disarm()
            self._phase = ""
            if not self._body.is_eof():
                self._arm("body", self._guard.settings.body_timeout)
        if self._phase == "body" and self._body is not None and self._body.is_eof():
            self._disarm()
            self._phase, self._body = "", None

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self._loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self._force_close or self.transport is None:
            return
        what = "request head" if phase == "head" else "request body"
        detail = f"the {what} was not complete within {seconds:g} s"
        code = f"{'header' if phase == 'head' else 'body'}-timeout"
        rid = self._guard.refused(code, self._address, detail)
        reply = b""
        if phase == "head" and not self._request_in_progress and not self._messages:
            reply = raw_problem(408, code, "RequestTimeout", detail, rid)
        current = self._current_request
        if phase == "body" and current is not None and current.writer.output_size == 0:
            reply = raw_problem(408, code, "RequestTimeout", detail, rid)
        self._close_with(reply)

    def _close_with(self, reply: bytes) -> None:
        if reply and self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)
        self.force_close()  # the transport sends what it holds, then closes

    # --- rules 6 and 7 -----------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late to answer
            raise ConnectionError("a response was already sent, cannot send an error")
        if isinstance(exc, hx.HttpProcessingError):
            code, title = parser_refusal(exc)
            status = exc.code if 400 <= exc.code < 500 else 400
            detail = f"not a valid HTTP/1.1 request: {_one_line(exc.message or str(exc))}"
            rid = self._guard.refused(code, self._address, detail)
        elif status == 504:
            code, title, detail = "timeout", "Timeout", "the request took too long"
            rid = secrets.token_hex(8)
            log.warning("request-timed-out", extra={"request_id": rid, "remote": self._address})
        else:
            code, title = "internal", "Internal"
            detail = "the hub could not answer; its log has the details under this request id"
            rid = secrets.token_hex(8)
            log.error(
                "request-failed",
                extra={"request_id": rid, "remote": self._address, "where": "outside handlers"},
                exc_info=exc,
            )
        response = web.Response(
            status=status,
            body=problem_body(status, code, title, detail, rid),
            content_type=PROBLEM_CONTENT_TYPE,
            headers={REQUEST_ID_HEADER: rid},
        )
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server, making ``GuardedRequestHandler`` connections."""

    def __init__(self, server: web.Server, guard: ConnectionGuard) -> None:
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


GUARD_KEY = web.AppKey("connection_guard", ConnectionGuard)
"""The guard of an application's connections (``HubServer.app()`` sets it)."""


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections follow this module's rules; the guard is the
    app's own (``GUARD_KEY``) unless one is given."""

    def __init__(
        self, app: web.Application, guard: ConnectionGuard | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.guard = app[GUARD_KEY] if guard is None else guard

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.guard)


def authenticated(request: web.BaseRequest) -> None:
    """Rule 5: the connection of ``request`` carried an authenticated request."""
    protocol = request.protocol
    if isinstance(protocol, GuardedRequestHandler):
        protocol.authenticated()


def run_app(
    app: web.Application | Awaitable[web.Application],
    *,
    sock: socket.socket,
    shutdown_timeout: float = 60.0,
    print: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> None:
    """``aiohttp.web.run_app`` for an app with a ``GUARD_KEY``, on a bound socket, through
    ``GuardedAppRunner``; SIGINT and SIGTERM stop it gracefully (``shutdown_timeout``
    for requests in flight). ``kwargs`` go to the runner (``access_log=None``)."""
    asyncio.run(_serve(app, sock, shutdown_timeout, print, kwargs))


async def _serve(
    app: web.Application | Awaitable[web.Application],
    sock: socket.socket,
    shutdown_timeout: float,
    print: Callable[[str], None] | None,
    kwargs: dict[str, Any],
) -> None:
    if not isinstance(app, web.Application):
        app = await app
    runner = GuardedAppRunner(app, shutdown_timeout=shutdown_timeout, **kwargs)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        for sig in signals:  # before the ready line: a stop right after it is graceful
            loop.add_signal_handler(sig, stop.set)
        if print is not None:
            print(f"======== Running on {site.name} ========")
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
