"""The hub's operations listener: ``/status`` and ``/metrics``, off the partners' port.

Why this module exists: the partner-facing port serves the signed API, ``/livez`` and
``/readyz`` only; what an operator reads (each partnership's logs and fork alarms,
the Prometheus metrics) says more about the hub than a partner should learn, so it is
served on a listener of its own (ADR 0019).

Rules:

1. The listener binds ``[ops] host`` and ``[ops] port`` (127.0.0.1 and 8701 by default;
   ``port = 0`` picks a free port, which ``jcm-sync registry serve`` prints).
2. With ``[ops] token_file`` every request must carry ``Authorization: Bearer <token>``,
   the file's content without its trailing newline (at least ``MIN_TOKEN_BYTES``),
   read like a key file and compared in constant time; otherwise 401 problem+json
   ``unauthorized`` with ``WWW-Authenticate: Bearer``. Without a token file the
   listener trusts whoever can reach its address.
3. Every answer carries ``X-Request-Id``, and every refusal is problem+json with it, as
   on the partners' port (``server`` rule 7).
4. The listener lives and dies with the hub's app (``attach``): it starts after the hub
   has started and stops when the hub shuts down, before the store is closed.
"""

from __future__ import annotations

import hmac
import html
import logging
import socket
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jcm_sync.errors import ConfigError
from jcm_sync.local.keyfiles import read_small_file
from jcm_sync.net.server import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    Handler,
    new_request_id,
    problem,
)
from jcm_sync.services.hub import Hub
from jcm_sync.services.status_view import node_status

log = logging.getLogger("jcm_sync.ops")

MIN_TOKEN_BYTES = 16
"""A bearer token shorter than this is refused at start: it could be guessed."""


def load_token(cfg: Any) -> bytes | None:
    """The ``[ops] token_file``'s token, or None without one (rule 2)."""
    if not cfg.ops.token_file:
        return None
    path = cfg.path(cfg.ops.token_file)
    token = read_small_file(path, what="ops token file").rstrip(b"\r\n")
    if len(token) < MIN_TOKEN_BYTES:
        raise ConfigError(
            f"the ops token must be at least {MIN_TOKEN_BYTES} bytes", where=str(path)
        )
    if any(c <= 0x20 or c >= 0x7F for c in token):
        raise ConfigError("the ops token must be printable ASCII without spaces", where=str(path))
    return token


class OpsServer:
    """The operations app over a ``Hub``: the status page and the metrics."""

    def __init__(self, hub: Hub, token: bytes | None = None) -> None:
        self.hub = hub
        self.token = token

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = new_request_id()
        reset = REQUEST_ID.set(rid)
        try:
            response = await self._answer(request, handler)
            response.headers[REQUEST_ID_HEADER] = rid
            return response
        finally:
            REQUEST_ID.reset(reset)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and not self._authorised(request):
            log.info("request %s (%s %s) refused with 401: no valid bearer token",
                     REQUEST_ID.get(), request.method, request.path)  # fmt: skip
            response = problem(
                401, "unauthorized", "Unauthorized", "this listener needs its bearer token"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="jcm-sync ops"'
            return response
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status, "http-error")
            return problem(exc.status, code, exc.reason, exc.reason)
        except Exception:  # the store failing, or a bug: the cause stays in the log
            log.exception("request %s (%s %s) failed", REQUEST_ID.get(), request.method,
                          request.path)  # fmt: skip
            return problem(
                503, "unavailable", "Unavailable", "the hub could not answer; see its log"
            )

    def _authorised(self, request: web.Request) -> bool:
        assert self.token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    async def metrics(self, request: web.Request) -> web.Response:
        data = generate_latest(self.hub.node.metrics.registry)
        resp = web.Response(body=data)
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def status_page(self, request: web.Request) -> web.Response:
        status = await node_status(self.hub.node)
        rows = []
        for p in sorted(status.partnerships, key=lambda p: p.partnership):
            own, rep = p.own, p.replica
            cells = (
                p.partnership,
                own.local_size,
                own.root[:16],
                rep.local_size,
                "-" if rep.checkpoint is None else rep.checkpoint,
                "FORK: " + rep.alarm if rep.alarm else "ok",
            )
            rows.append(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>"
            )
        page = (
            "<!doctype html><meta charset=utf-8><title>jcm-sync hub</title>"
            "<h1>jcm-sync: Japan's registry hub</h1><table border=1 cellpadding=4>"
            "<tr><th>partnership</th><th>Japan's log size</th><th>root</th>"
            "<th>partner replica size</th><th>partner checkpoint</th><th>state</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        return web.Response(text=page, content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/status", self.status_page)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self, sock: socket.socket) -> web.AppRunner:
        """Serve on an already bound socket (rule 1); the caller cleans the runner up."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; raises ``OSError`` as ``socket`` does."""
    return socket.create_server((host, port))


def attach(app: web.Application, ops: OpsServer, sock: socket.socket) -> None:
    """Rule 4: serve ``ops`` on ``sock`` for as long as ``app`` runs."""
    runner: list[web.AppRunner] = []

    async def start(app: web.Application) -> None:
        runner.append(await ops.start(sock))

    async def stop(app: web.Application) -> None:
        while runner:
            await runner.pop().cleanup()

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop)
