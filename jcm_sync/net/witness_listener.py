"""An agent's partner-facing witness listener: C2SP tlog-witness for Japan's log (ADR 0037).

Why this module exists: an agent witnesses Japan's log of its partnership. Without a
listener it can only do so after a pull (``services/witness.py``, ``witness_counterpart``);
with ``[witness] listen`` it serves the spec's endpoint itself, so the hub can submit each
new checkpoint of Japan's log as soon as it has one (``services/witness_push.py``), and
Japan's log is agreed without waiting for the agent's next pull. The routes and the
judging are the hub's own (``net/witness.py``, ``services/witness.py``); this module is
only the listener around them, with the hub's request checks.

Rules:

1. The listener serves ``POST /v1/partnerships/{pid}/witness/add-checkpoint`` and
   ``POST /v1/partnerships/{pid}/logs/{node}/cosignatures`` exactly as the hub does
   (``WitnessRoutes``, one implementation), and ``GET /livez``. Nothing else: any other
   path is 404 problem+json.
2. Every ``/v1/`` request is authenticated as on the hub, by the same functions
   (``server.authenticate_request``: RFC 9421 signature by a ``transport`` key of the
   partnership's trust root, checked against this listener's own origin, the body's
   framing, its size, its ``Content-Digest``). An unsigned request, such as a generic
   C2SP witness client's, is 401, as on the hub (ADR 0032). Only the counterpart, Japan,
   may then ask (``add_checkpoint_as_witness``: 403 otherwise).
3. Refusals are the hub's: problem+json with a request id, ``X-Request-Id`` on every
   answer, one INFO ``refused`` event per 4xx (``net/refusals.py``), a generic detail for
   a 5xx; the connection guard's timeouts and per-address limit (ADR 0016) apply, from
   the node's ``[server]`` settings (their defaults on an agent).
4. The listener binds ``[witness] listen``; a signature's target URI is checked against
   ``[witness] public_origin``, or else that listening address.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from jcm_sync.errors import TransportError
from jcm_sync.local.config import listen_address
from jcm_sync.net.auth import RequestVerifier
from jcm_sync.net.guard import GUARD_KEY, ConnectionGuard, GuardedAppRunner, GuardSettings
from jcm_sync.net.guard import authenticated as mark_authenticated
from jcm_sync.net.refusals import log_refusal
from jcm_sync.net.server import (
    BODY_KEY,
    CALLER_KEY,
    PROBLEM_CODE,
    REFUSAL_KEY,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    Handler,
    HubServer,
    ServerSettings,
    authenticate_request,
    new_request_id,
    problem,
    settings_from,
)
from jcm_sync.net.witness import WitnessRoutes
from jcm_sync.services.node import Node

__all__ = ["WitnessListener", "agent_witness_listener", "listener_settings"]

log = logging.getLogger("jcm_sync.witness_listener")


def listener_settings(node: Node) -> ServerSettings:
    """Rules 3 and 4: the node's ``[server]`` limits, ``[witness]``'s address and origin."""
    cfg = node.cfg
    host, _ = listen_address(cfg.witness.listen) if cfg.witness.listen else (None, 0)
    s = settings_from(cfg)
    s.host, s.public_origin, s.conformance = host, cfg.witness.public_origin or None, None
    return s


class WitnessListener:
    """The aiohttp application of an agent's witness listener (rules 1-3)."""

    def __init__(self, node: Node, settings: ServerSettings) -> None:
        self.node = node
        self.settings = settings
        self.verifier = RequestVerifier(node.live_roots(), window=settings.clock_skew_seconds)
        limits = GuardSettings(
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.keepalive_timeout_seconds,
            settings.max_unauthenticated_per_address,
            settings.retry_after_seconds,
        )
        self.guard = ConnectionGuard(limits, node.metrics.http_refused)

    @web.middleware
    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rules 2 and 3: a request id, the hub's authentication, the hub's refusals."""
        rid = new_request_id()
        token = REQUEST_ID.set(rid)

        async def signed(request: web.Request) -> web.StreamResponse:
            if request.path.startswith("/v1/"):
                _, request[BODY_KEY] = await authenticate_request(
                    request, self.verifier, self.settings
                )
            return await handler(request)

        try:
            response = await HubServer._answer(request, signed)  # the hub's problem+json
            response.headers[REQUEST_ID_HEADER] = rid
            if 400 <= response.status < 500:  # once, as on the hub (net/refusals.py)
                caller = request.get(CALLER_KEY)
                code = response.get(PROBLEM_CODE) or f"http-{response.status}"
                log_refusal(
                    request, response.status, code, caller.node if caller else None,
                    request_id=rid, detail=request.get(REFUSAL_KEY, ""),
                    partnership=caller.partnership if caller else None,
                )  # fmt: skip
            return response
        finally:
            REQUEST_ID.reset(token)
            if CALLER_KEY in request:  # its connection is no longer unauthenticated
                mark_authenticated(request)

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._serve],
            client_max_size=self.settings.max_body_bytes,
            handler_args={"handler_cancellation": True},
        )
        app[GUARD_KEY] = self.guard
        app.router.add_get("/livez", self.livez)
        WitnessRoutes(self.node, lambda r: r[CALLER_KEY], lambda r: r[BODY_KEY], problem).mount(
            app
        )  # rule 1: the hub's routes, one implementation
        return app

    async def start(self, sock: socket.socket) -> web.AppRunner:
        """Serve on an already bound socket; the caller cleans the runner up."""
        runner = GuardedAppRunner(self.app(), self.guard, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner


@contextlib.asynccontextmanager
async def agent_witness_listener(node: Node) -> AsyncIterator[str | None]:
    """Serve ``node``'s witness listener for the ``async with`` block and yield its URL,
    or None without ``[witness] listen`` (rule 4); ``TransportError`` if the address
    cannot be bound."""
    listen = node.cfg.witness.listen
    if not listen:
        yield None
        return
    host, port = listen_address(listen)
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        cause = "the port is already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise TransportError(
            f"cannot listen on {listen}: {cause}", where="[witness] listen"
        ) from None
    with sock:
        runner = await WitnessListener(node, listener_settings(node)).start(sock)
        bound = sock.getsockname()[1]
        try:
            yield f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        finally:
            await runner.cleanup()
