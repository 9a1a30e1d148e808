"""The hub's HTTP surface: routes, request authentication, limits, problem+json.

Why this module exists: it is the one place where HTTP meets the hub. Everything
that arrives is authenticated here (RFC 9421, ``net/auth.py``) before a handler
runs, bounded (body size 413, batch size 413, concurrent requests per node 429),
and every refusal leaves as ``application/problem+json`` (RFC 9457) with one type
per cause (``urn:jcm-sync:problem:<code>``). Handlers call ``registry.Hub`` and
never decide trust themselves.

Rules (ADR 0009):

1. Every 429 and 503 carries ``Retry-After`` (whole seconds): the replay cache's own
   figure when it is full, ``retry_after_seconds`` otherwise.
2. The app carries ``handler_cancellation=True`` in its own ``handler_args``, so it
   holds however it is run (``web.run_app`` in ``jcm-sync registry serve``, an
   ``AppRunner``, a test server): a request whose client went away is cancelled and
   its per-node slot is freed at once, not when its handler would have ended (the
   request metric counts it with status 499, client closed request). A push
   cancelled that way leaves no half-written batch: the store's append is one
   transaction, and the hub's write of a batch (append, checkpoint, wake-up of the
   next batch) is shielded from the cancellation (``registry.Hub.push``).
3. The per-node limit (default four push windows of the agent's default
   ``schedule.push_window``: 12 with 3) is sized for one agent's budget: its window of
   requests from its serialised jobs, as many left by a killed predecessor until the
   hub sees the disconnect, as many of a manual ``jcm-sync sync``, and as many spare;
   an agent config whose window does not fit three times in the limit is refused at
   load (config rule 3, ADR 0061).
4. A page of entries is cut at ``max_page_bytes`` of envelopes (at least one entry),
   so an answer stays far below the agent's ``hub.max_response_bytes`` whatever the
   record sizes; the agent asks again from where the page ended.
5. Malformed input is a 4xx, never a 500 (ADR 0014, ``tests/faults/test_fuzz.py``):
   a body nested too deeply or with invalid UTF-8 is a 400, a query integer is ASCII
   digits up to 2^63 - 1 (``bad-parameter``), and a position past the log is
   ``past-log-size`` (``registry`` rule 10). A request aiohttp cannot parse as HTTP is answered 400
   problem+json and logged as one INFO line (``net/guard.py``, ADR 0016).
6. ``/readyz`` is 503 while the store fails or takes over ``READYZ_TIMEOUT_S`` to
   answer, and 200 again by itself once it answers (ADR 0014).
7. Nothing internal crosses the wire (ADR 0019). Every request gets an id, sent as
   ``X-Request-Id`` and in its problem details, and every log line about the request
   names it. A store error or any other 5xx answers a generic detail (and
   ``Retry-After``): the store's URL, SQL and driver messages, and a bug's traceback,
   are logged under the request id only (ERROR ``request-failed``).
8. Every refusal (4xx) is logged exactly once, at INFO, from the outer middleware
   (``net/refusals.py``: event ``refused`` with reason, status, partner, request id).

Authentication (ADR 0015), on every ``/v1/`` request, in this order: the signature's
headers (``net/auth.py`` rule 6: key, role, time window, covered components, nonce)
against this hub's own origin, ``[server] public_origin`` or else its listening address,
never the Host header (a signature for another origin is 401 ``wrong-target``); then a
body's framing: any Content-Encoding is 415 ``unsupported-encoding``, a type other than
``application/json`` 415 ``unsupported-media-type``; then the per-node limit (429); then
the body, read as sent, 413 as soon as its Content-Length announces more than
``max_body_bytes`` or more has arrived; then its ``Content-Digest``. So an
unauthenticated client never gets a body read, and the digest covers the bytes as sent.

Unauthenticated routes: ``/livez`` and ``/readyz``. ``/status`` and ``/metrics`` are
served on the operations listener only (``net/ops.py``, ADR 0019); here they are 404.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from jcm_sync import __version__
from jcm_sync.core.wire import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    Caller,
    EntriesPage,
    Problem,
    PushRequest,
    encoder,
    query_int,
    status_of,
)
from jcm_sync.errors import (
    BadDataError,
    BadParameterError,
    GapError,
    JcmSyncError,
    NonceCacheFullError,
    PastLogSizeError,
    RequestAuthError,
    RequestSignatureError,
    StoreError,
    TooManyRequestsError,
    UntrustedError,
)
from jcm_sync.local.config import DEFAULT_PUSH_WINDOW, WINDOWS_PER_NODE
from jcm_sync.net.auth import Authenticated, RequestVerifier
from jcm_sync.net.body_intake import check_content as check_content
from jcm_sync.net.body_intake import read_body as read_body
from jcm_sync.net.guard import (
    GUARD_KEY,
    ConnectionGuard,
    GuardedAppRunner,
    GuardSettings,
    authenticated,
)
from jcm_sync.net.origin import ListenerOrigin, authenticate_aiohttp_request
from jcm_sync.net.per_request import LatencyChildren, RequestIds
from jcm_sync.net.refusals import log_refusal
from jcm_sync.net.sandbox import SandboxRoutes
from jcm_sync.net.witness import WitnessRoutes
from jcm_sync.services.hub import Hub
from jcm_sync.services.sandbox import SandboxHost, SandboxSettings
from jcm_sync.store.values import MAX_INDEX

log = logging.getLogger("jcm_sync.server")

READYZ_TIMEOUT_S = 5.0
"""``/readyz`` answers 503 when the store takes longer than this."""

REQUEST_ID_HEADER = "X-Request-Id"
#: what the hub names itself (aiohttp's default also names Python's and aiohttp's versions)
SERVER_HEADER = f"jcm-sync/{__version__}"
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
"""The id of the request being answered (rule 7): in its problem details, its
``X-Request-Id`` header and every log line about it."""
STORE_UNAVAILABLE = "the hub's store is unavailable; retry later"
INTERNAL_ERROR = "the hub could not answer; its log has the details under this request id"

CALLER_KEY = web.RequestKey("caller", Caller)
BODY_KEY = web.RequestKey("body", bytes)
REFUSAL_KEY = web.RequestKey("refusal", str)
PROBLEM_CODE = web.ResponseKey("problem_code", str)
"""The key under which a ``problem()`` response carries its code."""
"""Why a request was refused, in the operator's words, for its ``refused`` event (rule 8)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's per-connection log: an HTTP parsing error it logs itself (a bad chunk in
    a body nobody reads, or any parser refusal when the app runs without
    ``HubServer.runner()``) is one INFO line, not an ERROR with a traceback; any other
    error keeps its traceback (ADR 0014, 0016)."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            text = " ".join(str(exc).split())[:200]
            self.logger.info(
                "refused-malformed-http", extra={"reason": "bad-request", "detail": text}
            )
        else:
            super().exception(msg, *args, exc_info=exc_info, **kw)


def new_request_id() -> str:
    return secrets.token_hex(8)


def problem(
    status: int, code: str, title: str, detail: str = "", *, where: str = "", **extra: Any
) -> web.Response:
    """A problem+json answer, carrying the current request's id (rule 7)."""
    rid = REQUEST_ID.get()
    body = Problem(
        type=PROBLEM_TYPE_PREFIX + code,
        title=title,
        status=status,
        detail=detail,
        where=where,
        code=code,
        size=extra.get("size"),
        request_id=rid,
    )
    headers = {REQUEST_ID_HEADER: rid} if rid else {}
    if extra.get("retry_after") is not None:
        headers["Retry-After"] = str(math.ceil(extra["retry_after"]))
    response = web.Response(
        body=encoder.encode(body),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
    response[PROBLEM_CODE] = code  # for the refusal's log event (rule 8)
    return response


def _problem_code(response: web.StreamResponse) -> str:
    """The ``code`` of a ``problem()`` answer (else ``http-<status>``)."""
    code = response.get(PROBLEM_CODE)
    return code if isinstance(code, str) else f"http-{response.status}"


def problem_of(exc: JcmSyncError) -> web.Response:
    """The problem+json of an error. A store error or any other 5xx says only that the hub
    cannot answer now (rule 7): the store's URL, SQL and driver text stay in the log."""
    status = status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, GapError | PastLogSizeError):
        extra["size"] = exc.size
    if isinstance(exc, NonceCacheFullError):
        extra["retry_after"] = max(1.0, exc.retry_after + 1)
    title = type(exc).__name__.removesuffix("Error") or "Error"
    if isinstance(exc, StoreError):
        return problem(status, exc.code, title, STORE_UNAVAILABLE, **extra)
    if status >= 500 and not isinstance(exc, NonceCacheFullError):
        return problem(status, exc.code, title, INTERNAL_ERROR, **extra)
    return problem(status, exc.code, title, exc.message, where=exc.where or "", **extra)


@dataclass
class ServerSettings:
    max_body_bytes: int = 8 * 1024 * 1024
    #: rule 3: an agent's budget (its window + one left by a killed one + one of a
    #: manual sync) + one spare, as ``[server] max_concurrency_per_node`` defaults
    max_concurrency_per_node: int = WINDOWS_PER_NODE * DEFAULT_PUSH_WINDOW
    clock_skew_seconds: float = 300.0
    #: the ``Retry-After`` of a 429 and of a 503 that has no better figure (rule 1)
    retry_after_seconds: int = 1
    #: rule 4: a page of entries holds at most this many envelope bytes (at least one)
    max_page_bytes: int = 8 * 1024 * 1024
    #: the origin signatures' ``@target-uri`` is checked against (ADR 0015):
    #: ``https://hub.example.org`` behind a TLS-terminating proxy; None is the listening
    #: address (``host`` and the bound port), never the Host header
    public_origin: str | None = None
    #: the configured listening host (None or a wildcard: the connection's local address)
    host: str | None = None
    #: connection-level defences (``net/guard.py``, ADR 0016): a request's head within
    #: this many seconds, its body within that many more, idle keep-alive, and the
    #: connections per client address not yet authenticated (0: no limit)
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keepalive_timeout_seconds: float = 60.0
    max_unauthenticated_per_address: int = 16
    #: run the hub's scheduled jobs (reconciliation); tests turn them off
    run_jobs: bool = True
    #: serve the go-live conformance sandbox (``net/sandbox.py``, ADR 0021)
    conformance: SandboxSettings | None = None


class HubServer:
    """Builds the aiohttp application around a ``Hub``."""

    def __init__(self, hub: Hub, settings: ServerSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.verifier = RequestVerifier(hub.node.live_roots(), window=settings.clock_skew_seconds)
        self._origin = ListenerOrigin(public_origin=settings.public_origin, host=settings.host)
        self._request_ids = RequestIds()  # per_request rules 1-2 (ADR 0063)
        self._latency = LatencyChildren(lambda: hub.node.metrics.request_seconds)
        self._in_flight: dict[tuple[str, str], int] = {}
        #: the most requests each (partnership, node) had in flight at once
        self.peak_in_flight: dict[tuple[str, str], int] = {}
        self.shutting_down = False
        self.guard = ConnectionGuard(
            GuardSettings(
                header_timeout=settings.header_timeout_seconds,
                body_timeout=settings.body_timeout_seconds,
                keepalive_timeout=settings.keepalive_timeout_seconds,
                max_unauthenticated=settings.max_unauthenticated_per_address,
                retry_after_seconds=settings.retry_after_seconds,
            ),
            hub.node.metrics.http_refused,
        )

    def origin(self) -> ListenerOrigin:
        """This listener's own origin, of the settings as they are now: a reload or a
        test may change ``public_origin`` or ``host`` while the server runs."""
        kept, s = self._origin, self.settings
        if kept.public_origin != s.public_origin or kept.host != s.host:
            kept = self._origin = ListenerOrigin(public_origin=s.public_origin, host=s.host)
        return kept

    # --- middlewares -------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        status = 500
        rid = self._request_ids()
        token = REQUEST_ID.set(rid)
        try:
            response = await self._answer(request, handler)
            status = response.status
            if status in (429, 503) and "Retry-After" not in response.headers:
                response.headers["Retry-After"] = str(self.settings.retry_after_seconds)
            response.headers[REQUEST_ID_HEADER] = rid
            response.headers.setdefault("Server", SERVER_HEADER)
            if 400 <= status < 500:  # rule 8: the one place a refusal is logged
                caller = request.get(CALLER_KEY)
                log_refusal(
                    request, status, _problem_code(response), caller.node if caller else None,
                    request_id=rid, detail=request.get(REFUSAL_KEY, ""),
                    partnership=caller.partnership if caller else None,
                )  # fmt: skip
            return response
        except web.HTTPException as exc:  # a redirect or another non-error status
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        except asyncio.CancelledError:  # the client went away (rule 2), or shutdown
            status = 499
            raise
        finally:
            REQUEST_ID.reset(token)
            if CALLER_KEY in request:  # its connection is no longer unauthenticated
                authenticated(request)
            seconds = time.perf_counter() - started
            self._latency.observe(name, request.method, status, seconds)

    @staticmethod
    async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's response, or the problem+json of what it raised, logged under
        the request's id (rule 7)."""
        try:
            return await handler(request)
        except JcmSyncError as exc:
            response = problem_of(exc)
            if response.status >= 500:
                log.error("request-failed", extra={
                    "request_id": REQUEST_ID.get(), "method": request.method,
                    "path": request.path[:300], "status": response.status,
                    "reason": exc.code, "error": exc.diagnostics()})  # fmt: skip
            else:  # logged once by _errors (rule 8)
                request[REFUSAL_KEY] = exc.diagnostics()
            return response
        except web.HTTPRequestEntityTooLarge as exc:
            return problem(413, "body-too-large", "BodyTooLarge", exc.text or "body too large")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status, "http-error")
            return problem(exc.status, code, exc.reason, exc.text or exc.reason)
        except Exception:  # a bug: the traceback goes to the log, not to the client
            log.exception("request-failed", extra={
                "request_id": REQUEST_ID.get(), "method": request.method,
                "path": request.path[:300], "status": 500, "reason": "internal"})  # fmt: skip
            return problem(500, "internal", "Internal", INTERNAL_ERROR)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """ADR 0015: the signature's headers, then the body's framing, then the body."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        pending = authenticate_headers(request, self.verifier, self.settings, self.origin())
        check_content(request)
        caller = pending.caller
        key = (caller.partnership, caller.node)
        # nonce and request rate across every hub process on one PostgreSQL (ADR 0042)
        await self.hub.request_limits.admit("/".join(key), pending.nonce, pending.until)
        if self._in_flight.get(key, 0) >= self.settings.max_concurrency_per_node:
            raise TooManyRequestsError(
                f"{caller.node} of {caller.partnership} already has "
                f"{self.settings.max_concurrency_per_node} requests in flight"
            )
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), self._in_flight[key])
        try:
            body = await read_body(request, self.settings.max_body_bytes)
            self.verifier.check_body(pending, body)
            request[CALLER_KEY] = caller
            request[BODY_KEY] = body
            return await handler(request)
        finally:
            self._in_flight[key] -= 1

    async def authenticate_with(
        self, request: web.Request, verifier: RequestVerifier
    ) -> tuple[Caller, bytes]:
        """``_authenticate``'s steps under another verifier (the conformance sandbox's
        root): the signature's headers, the body's framing, the body, its digest."""
        return await authenticate_request(request, verifier, self.settings)

    # --- handlers ----------------------------------------------------------------------

    @staticmethod
    def _caller(request: web.Request) -> Caller:
        return request[CALLER_KEY]

    @staticmethod
    def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
        return query_int(request.query.get(name), name, default, MAX_INDEX)

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(body=encoder.encode(data), content_type="application/json")

    async def push(self, request: web.Request) -> web.Response:
        try:
            req = msgspec.json.decode(request[BODY_KEY], type=PushRequest)
        except msgspec.MsgspecError as exc:
            raise BadDataError(f"not a push body: {exc}", where="body") from None
        except RecursionError:  # msgspec's nesting limit (found by tests/faults/test_fuzz.py)
            raise BadDataError("not a push body: JSON nested too deeply", where="body") from None
        except UnicodeDecodeError as exc:  # msgspec's answer to invalid UTF-8 in a string
            raise BadDataError(f"not a push body: {exc}", where="body") from None
        m = request.match_info
        return self._json(await self.hub.push(self._caller(request), m["pid"], m["node"], req))

    async def state(self, request: web.Request) -> web.Response:
        have = self._int(request, "have")
        pid = request.match_info["pid"]
        return self._json(await self.hub.state(self._caller(request), pid, have=have))

    async def checkpoint(self, request: web.Request) -> web.Response:
        m = request.match_info
        return self._json(await self.hub.checkpoint(self._caller(request), m["pid"], m["node"]))

    async def entries(self, request: web.Request) -> web.Response:
        m = request.match_info
        start = self._int(request, "start", 0) or 0
        limit = self._int(request, "limit", 500) or 500
        page = await self.hub.entries(self._caller(request), m["pid"], m["node"], start, limit)
        return self._json(cut_page(page, self.settings.max_page_bytes))

    @classmethod
    def _required_int(cls, request: web.Request, name: str) -> int:
        value = cls._int(request, name)
        if value is None:
            raise BadParameterError(f"query parameter {name} is required", where=name)
        return value

    async def consistency(self, request: web.Request) -> web.Response:
        m, old = request.match_info, self._required_int(request, "old")
        new = self._int(request, "new")
        view = await self.hub.consistency(self._caller(request), m["pid"], m["node"], old, new)
        return self._json(view)

    async def inclusion(self, request: web.Request) -> web.Response:
        m, index = request.match_info, self._required_int(request, "index")
        size = self._int(request, "size")
        view = await self.hub.inclusion(self._caller(request), m["pid"], m["node"], index, size)
        return self._json(view)

    async def livez(self, request: web.Request) -> web.Response:
        return self._json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.shutting_down:
            return problem(503, "shutting-down", "ShuttingDown", "the hub is shutting down")
        # ready = the store answers, within READYZ_TIMEOUT_S (a hung server is not ready);
        # a restarted PostgreSQL turns this back to 200 by itself (ADR 0014)
        try:
            async with asyncio.timeout(READYZ_TIMEOUT_S):
                for p in self.hub.node.partnerships.values():
                    await self.hub.node.store.tree_head(p.own)
        except JcmSyncError as exc:  # rule 7: the store's own message stays in the log
            log.warning("not-ready", extra={
                "request_id": REQUEST_ID.get(), "error": exc.diagnostics()})  # fmt: skip
            return problem(503, "store-unavailable", "StoreUnavailable", STORE_UNAVAILABLE)
        except TimeoutError:
            log.warning("not-ready", extra={"request_id": REQUEST_ID.get(),
                        "error": f"no answer within {READYZ_TIMEOUT_S:g} s"})  # fmt: skip
            detail = f"the store did not answer within {READYZ_TIMEOUT_S:g} s"
            return problem(503, "store-unavailable", "StoreUnavailable", detail)
        return self._json({"status": "ready", "partnerships": sorted(self.hub.node.partnerships)})

    # --- the application ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, self._authenticate],
            client_max_size=self.settings.max_body_bytes,
            handler_args={
                "handler_cancellation": True,  # rule 2
                "logger": ProtocolLog(log),
                "keepalive_timeout": self.settings.keepalive_timeout_seconds,
            },
        )
        app[GUARD_KEY] = self.guard
        logs = "/v1/partnerships/{pid}/logs/{node}"
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/v1/partnerships/{pid}/state", self.state)
        app.router.add_post(f"{logs}/entries", self.push)
        app.router.add_get(f"{logs}/entries", self.entries)
        app.router.add_get(f"{logs}/checkpoint", self.checkpoint)
        app.router.add_get(f"{logs}/proofs/consistency", self.consistency)
        app.router.add_get(f"{logs}/proofs/inclusion", self.inclusion)
        witness = WitnessRoutes(self.hub.node, self._caller, lambda r: r[BODY_KEY], problem)
        witness.mount(app)  # ADR 0032

        if self.settings.conformance is not None:  # ADR 0021
            sandbox = SandboxHost(self.hub, self.settings.conformance)
            SandboxRoutes(
                sandbox, self.authenticate_with, self._caller, lambda r: r[BODY_KEY],
                window=self.settings.clock_skew_seconds, problem=problem,
            ).mount(app)  # fmt: skip

        tiles_jobs: list[Any] = []  # [tiles] publishing (ADR 0041)

        async def on_startup(app: web.Application) -> None:
            if self.settings.run_jobs:
                self.hub.start_jobs()
                from jcm_sync.net.tiles_http import start_tiles_job

                tiles_jobs.extend(
                    j for j in [start_tiles_job(self.hub.node, self.hub.runs_singletons)] if j
                )  # one writer per database (ADR 0042)

        async def on_shutdown(app: web.Application) -> None:
            self.shutting_down = True

        async def on_cleanup(app: web.Application) -> None:
            for job in tiles_jobs:
                await job.close()
            self.hub.close()
            await self.hub.node.close()

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)
        app.on_cleanup.append(on_cleanup)
        return app

    def runner(self, **kwargs: Any) -> web.AppRunner:
        """An ``AppRunner`` of ``app()`` whose connections have the head and body timeouts,
        the per-address limit and the problem+json parser refusals of ``net/guard.py``:
        run the hub with this or ``guard.run_app``, never a bare ``AppRunner`` or
        ``web.run_app``."""
        return GuardedAppRunner(self.app(), self.guard, **kwargs)


def authenticate_headers(
    request: web.Request,
    verifier: RequestVerifier,
    settings: ServerSettings,
    origin: ListenerOrigin | None = None,
) -> Authenticated:
    """The signature of a request whose body is still unread (``net/auth.py`` rule 6),
    checked against this listener's own origin (``origin``, of ``settings``' public origin
    and host), never the Host header."""
    if origin is None:
        origin = ListenerOrigin(public_origin=settings.public_origin, host=settings.host)
    try:
        return authenticate_aiohttp_request(verifier, request, origin=origin)
    except RequestSignatureError:
        raise
    except UntrustedError as exc:  # unknown, expired or role-less key: not authenticated
        raise RequestAuthError(exc) from None


async def authenticate_request(
    request: web.Request, verifier: RequestVerifier, settings: ServerSettings
) -> tuple[Caller, bytes]:
    """ADR 0015's steps, in order, under ``verifier``: the signature's headers against the
    origin ``settings`` give, the body's framing, the body, its digest. For a listener with
    no per-node limit (the conformance sandbox's routes, an agent's witness listener)."""
    pending = authenticate_headers(request, verifier, settings)
    check_content(request)
    body = await read_body(request, settings.max_body_bytes)
    caller = request[CALLER_KEY] = verifier.check_body(pending, body)  # rule 7's guard
    return caller, body


def cut_page(page: EntriesPage, max_bytes: int) -> EntriesPage:
    """Rule 4: the longest prefix of the page within ``max_bytes`` (at least one entry)."""
    total = 0
    for i, raw in enumerate(page.entries):
        total += len(raw)
        if total > max_bytes and i > 0:
            return EntriesPage(start=page.start, entries=page.entries[:i], size=page.size)
    return page


def settings_from(cfg: Any) -> ServerSettings:
    s = cfg.server
    return ServerSettings(
        public_origin=s.public_origin or None,
        host=s.host,
        max_body_bytes=s.max_body_bytes,
        max_concurrency_per_node=s.max_concurrency_per_node,
        clock_skew_seconds=s.clock_skew_seconds,
        retry_after_seconds=s.retry_after_seconds,
        max_page_bytes=s.max_page_bytes,
        header_timeout_seconds=s.header_timeout_seconds,
        body_timeout_seconds=s.body_timeout_seconds,
        keepalive_timeout_seconds=s.keepalive_timeout_seconds,
        max_unauthenticated_per_address=s.max_unauthenticated_per_address,
        conformance=SandboxSettings(cfg.conformance.max_sessions, cfg.conformance.session_seconds)
        if cfg.conformance.enabled
        else None,
    )
