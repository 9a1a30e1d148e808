"""A node's operations listener: the console pages and ``/metrics``, off the partners' port.

Why this module exists: the hub's partner-facing port serves the signed API, ``/livez``
and ``/readyz`` only, and an agent serves nothing to its partners at all; what an
operator reads (each partnership's logs, discrepancies and fork alarms, the Prometheus
metrics) says more about a node than a partner should learn, so it is served on a
listener of its own (ADR 0019), by the hub and by every agent alike.

Rules:

1. The listener binds ``[ops] host`` and ``[ops] port`` (127.0.0.1 and 8701 by default,
   on the hub and on an agent alike: the two rarely share a machine, and where they do,
   one of them sets its port); ``port = 0`` picks a free port, which
   ``jcm-sync registry serve`` and ``jcm-sync agent run`` print.
2. With ``[ops] token_file`` every request must carry ``Authorization: Bearer <token>``,
   the file's content without its trailing newline (at least ``MIN_TOKEN_BYTES``),
   read like a key file and compared in constant time; otherwise 401 problem+json
   ``unauthorized`` with ``WWW-Authenticate: Bearer``. Without a token file the
   listener trusts whoever can reach its address. The token guards every page.
3. Every answer carries ``X-Request-Id``, and every refusal is problem+json with it, as
   on the partners' port (``server`` rule 7), except rule 5's HTML 404. Each refusal is
   one INFO ``refused`` event (``net/refusals.py``).
4. The listener lives and dies with its node: on the hub with the hub's app (``attach``),
   starting after the hub has started and stopping when it shuts down, before the store
   is closed; on an agent around the daemon's run (``agent_listener``). While it runs,
   ``services.ops_history.LagSampler`` samples the lag for the console's chart.
5. Pages (``net.console``): ``/`` (and ``/status``, its first address), ``/partnerships/
   {id}`` and ``/partnerships/{id}/discrepancies/{did}``. An unknown partnership,
   discrepancy or path is 404: an HTML page when the request's ``Accept`` names
   ``text/html`` (a browser following a stale link), else problem+json ``not-found``.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jcm_sync.core.reconcile import Discrepancy
from jcm_sync.errors import ConfigError, NotFoundError, TransportError
from jcm_sync.local.keyfiles import read_small_file
from jcm_sync.net import console
from jcm_sync.net.refusals import log_refusal
from jcm_sync.net.server import (
    PROBLEM_CODE,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    Handler,
    new_request_id,
    problem,
)
from jcm_sync.services import ops_history
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node
from jcm_sync.services.ops_history import LagSampler, sample
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.run_history import read_history
from jcm_sync.services.status_view import NodeStatus, PartnershipView, node_status

log = logging.getLogger("jcm_sync.ops")

METRICS_REFRESH_SECONDS = 15.0
"""How stale the discrepancy gauges of ``/metrics`` may be: a scrape reads the stored
history again once this long has passed (Prometheus scrapes every 15-60 s)."""

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
    """The operations app of a running node, hub or agent: the console and the metrics."""

    def __init__(self, source: Node | Hub, token: bytes | None = None) -> None:
        self.node = source.node if isinstance(source, Hub) else source
        self.token = token
        self.sampler = LagSampler(self.node)
        self._metrics_refreshed = -METRICS_REFRESH_SECONDS

    @property
    def role(self) -> str:
        return self.node.cfg.node.role

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = new_request_id()
        reset = REQUEST_ID.set(rid)
        try:
            response = await self._answer(request, handler)
            response.headers[REQUEST_ID_HEADER] = rid
            if 400 <= response.status < 500:  # once, as on the partners' port (net/refusals.py)
                code = response.get(PROBLEM_CODE) or {404: "not-found"}.get(response.status, "")
                log_refusal(request, response.status, code or f"http-{response.status}",
                            request_id=rid)  # fmt: skip
            return response
        finally:
            REQUEST_ID.reset(reset)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and not self._authorised(request):
            response = problem(
                401, "unauthorized", "Unauthorized", "this listener needs its bearer token"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="jcm-sync ops"'
            return response
        try:
            return await handler(request)
        except NotFoundError as exc:  # rule 5
            return await self._not_found(request, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 404:
                return await self._not_found(request, f"no page at {request.path}")
            code = {405: "method-not-allowed"}.get(exc.status, "http-error")
            return problem(exc.status, code, exc.reason, exc.reason)
        except Exception:  # the store failing, or a bug: the cause stays in the log
            log.exception("request-failed", extra={"request_id": REQUEST_ID.get(),
                          "method": request.method, "path": request.path[:300]})  # fmt: skip
            return problem(
                503, "unavailable", "Unavailable", "the node could not answer; see its log"
            )

    async def _not_found(self, request: web.Request, detail: str) -> web.Response:
        """Rule 5: HTML for a browser, problem+json for everyone else."""
        if _accepts_html(request):
            try:
                status = await node_status(self.node)
                page = console.render_not_found(
                    status, detail, role=self.role, now=self.node.clock()
                )
            except Exception:  # the 404 stands even if the page cannot be drawn
                log.exception("page-failed", extra={"request_id": REQUEST_ID.get(), "page": "404"})
            else:
                return web.Response(status=404, text=page, content_type="text/html")
        return problem(404, "not-found", "Not Found", detail)

    def _authorised(self, request: web.Request) -> bool:
        assert self.token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    async def metrics(self, request: web.Request) -> web.Response:
        # The discrepancy gauges follow the stored history (a restart, a resolution
        # written by another process), read at most once per METRICS_REFRESH_SECONDS.
        now = time.monotonic()
        if now - self._metrics_refreshed >= METRICS_REFRESH_SECONDS:
            self._metrics_refreshed = now
            await ReconcileService(self.node).refresh_metrics()
        data = generate_latest(self.node.metrics.registry)
        resp = web.Response(body=data)
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def index(self, request: web.Request) -> web.Response:
        """``/`` and ``/status``: every partnership (``console`` rules)."""
        status = await sample(self.node)
        page = console.render_index(status, role=self.role, now=self.node.clock())
        return web.Response(text=page, content_type="text/html")

    def _partnership(self, status: NodeStatus, pid: str) -> PartnershipView:
        for p in status.partnerships:
            if p.partnership == pid:
                return p
        raise NotFoundError(f"this node serves no partnership {pid}")

    async def partnership(self, request: web.Request) -> web.Response:
        """``/partnerships/{id}``: logs, open discrepancies, checkpoints, 7-day charts."""
        status = await sample(self.node)
        p = self._partnership(status, request.match_info["pid"])
        logs = self.node.logs(p.partnership)
        refs = (logs.own, logs.replica)
        checkpoints: dict[str, str | None] = {}
        for ref in refs:
            held = await self.node.store.latest_checkpoint(ref)
            checkpoints[ref.node] = held.note.decode("utf-8", "replace") if held else None
        now = self.node.clock()
        history = await ops_history.series(self.node.store, p.partnership, refs, logs.own.node, now)
        page = console.render_partnership(
            status, p, role=self.role, now=now, checkpoints=checkpoints,
            series=history,
        )  # fmt: skip
        return web.Response(text=page, content_type="text/html")

    async def discrepancy(self, request: web.Request) -> web.Response:
        """``/partnerships/{id}/discrepancies/{did}``: one finding in full."""
        status = await node_status(self.node)
        p = self._partnership(status, request.match_info["pid"])
        did = request.match_info["did"]
        found = await _discrepancy(self.node, p.partnership, did)
        page = console.render_discrepancy(
            status, p.partnership, found, role=self.role, now=self.node.clock()
        )
        return web.Response(text=page, content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/status", self.index)  # the page's first address (ADR 0019)
        app.router.add_get("/partnerships/{pid}", self.partnership)
        app.router.add_get("/partnerships/{pid}/discrepancies/{did}", self.discrepancy)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def start(self, sock: socket.socket) -> web.AppRunner:
        """Serve on an already bound socket (rule 1); the caller cleans the runner up.
        The lag sampler (``services.ops_history``) runs as long as the runner."""
        app = self.app()

        async def start_sampler(app: web.Application) -> None:
            self.sampler.start()

        async def stop_sampler(app: web.Application) -> None:
            await self.sampler.stop()

        app.on_startup.append(start_sampler)
        app.on_shutdown.append(stop_sampler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner


def _accepts_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


async def _discrepancy(node: Node, pid: str, did: str) -> Discrepancy:
    found = (await read_history(node.store, pid)).discrepancies.get(did)
    if found is None:
        raise NotFoundError(f"partnership {pid} has no discrepancy {did}")
    return found


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; raises ``OSError`` as ``socket`` does.
    ``reuse_port``: hub processes sharing one address also share it (ADR 0042)."""
    return socket.create_server((host, port), reuse_port=reuse_port)


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


@contextlib.asynccontextmanager
async def agent_listener(node: Node) -> AsyncIterator[str]:
    """Rule 4 on an agent: serve the ops listener of ``node`` for the ``async with``
    block and yield its URL; ``TransportError`` if ``[ops]``'s address cannot be bound,
    ``ConfigError`` on a bad token file."""
    cfg = node.cfg
    token = load_token(cfg)
    port = cfg.ops.port
    try:
        sock = bind(cfg.ops.host, port)
    except OSError as exc:
        cause = "the port is already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise TransportError(  # the cause is in the message
            f"cannot listen on http://{cfg.ops.host}:{port}: {cause}", where="[ops]"
        ) from None
    with sock:
        runner = await OpsServer(node, token).start(sock)
        try:
            yield f"http://{cfg.ops.host}:{sock.getsockname()[1]}"
        finally:
            await runner.cleanup()
