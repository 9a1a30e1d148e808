"""The conformance sandbox over HTTP: the hub's routes and the partner's client.

Why this module exists: ``jcm-sync conformance run`` tests a partner against the live
hub (docs/adr/0021-conformance-sandbox.md), so the sandbox must be reached exactly as
production is: signed requests, the same push, pull and proof handlers, the same
problem details. The sessions are ``services/sandbox.py``'s; this module is their HTTP
edge, mounted by ``net/server.py`` when ``[conformance] enabled = true``.

Rules:

1. **Control routes are production routes.** ``/v1/conformance/sessions…`` (open, root,
   steps, reconcile, close) sit under ``/v1/`` and are authenticated by the server's
   middleware against the production trust roots: opening a session is the check of
   the partner's production transport key against the live hub.
2. **Exchange routes are the sandbox's.** ``/conformance/{session}/v1/partnerships/…``
   carries the production API's paths (state, push, entries, checkpoint, consistency
   and inclusion proofs) after a prefix, so the agent's own ``HubClient`` talks to it
   unchanged. Each request is authenticated by the server's own steps (``net/auth.py``
   rule 6: headers, framing, body, digest) against the session's sandbox root only, with
   a replay cache per session, and answered by the session's own ``Hub`` over its own
   store. A production key is unknown there, and a sandbox key is unknown on every
   production route.
3. Refusals are the server's problem+json (its middleware turns every ``JcmSyncError``
   into one), and a session another partnership opened is 403, as on production routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from aiohttp import web

from jcm_sync.core.envelope import AnyPrivateKey, PrivateKey
from jcm_sync.core.reconcile import Report
from jcm_sync.core.wire import Caller, PushRequest, encoder, query_int
from jcm_sync.errors import BadDataError, BadParameterError, NotFoundError
from jcm_sync.net.auth import RequestVerifier
from jcm_sync.net.client import HubClient
from jcm_sync.net.witness import Problem, answer_add_checkpoint, answer_cosignatures
from jcm_sync.services.sandbox import (
    OpenRequest,
    RootRequest,
    SandboxHost,
    SessionOpened,
    SessionState,
    StepAnswer,
)
from jcm_sync.store.values import MAX_INDEX

CONTROL = "/v1/conformance/sessions"
EXCHANGE = "/conformance/{sid}/v1/partnerships/{pid}"


class Authenticator(Protocol):
    """The server's own authentication of a request (``HubServer.authenticate_with``)."""

    def __call__(
        self, request: web.Request, verifier: RequestVerifier
    ) -> Awaitable[tuple[Caller, bytes]]: ...


def _decode(body: bytes, kind: type[Any], what: str) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError) as exc:
        raise BadDataError(f"not a {what} body: {exc}", where="body") from None


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    """A query integer: ASCII digits up to the stores' largest index (server rule 5)."""
    return query_int(request.query.get(name), name, default, MAX_INDEX)


def _json(data: Any) -> web.Response:
    return web.Response(body=encoder.encode(data), content_type="application/json")


class SandboxRoutes:
    """The sandbox's routes on the hub's application (module rules); the application
    holds it under ``SANDBOX_KEY``."""

    def __init__(
        self,
        host: SandboxHost,
        authenticate: Authenticator,
        caller_of: Callable[[web.Request], Caller],
        body_of: Callable[[web.Request], bytes],
        *,
        window: float = 300.0,
        problem: Problem | None = None,
    ) -> None:
        self.host = host
        self.problem = problem
        self.authenticate = authenticate
        self.caller_of = caller_of
        self.body_of = body_of
        self.window = window
        self._verifiers: dict[str, RequestVerifier] = {}

    def mount(self, app: web.Application) -> None:
        app[SANDBOX_KEY] = self
        r = app.router
        r.add_post(CONTROL, self.open)
        r.add_post(CONTROL + "/{sid}/root", self.root)
        r.add_post(CONTROL + "/{sid}/steps/{step}", self.step)
        r.add_post(CONTROL + "/{sid}/reconcile", self.reconcile)
        r.add_delete(CONTROL + "/{sid}", self.close)
        logs = EXCHANGE + "/logs/{node}"
        r.add_get(EXCHANGE + "/state", self.state)
        r.add_post(logs + "/entries", self.push)
        r.add_get(logs + "/entries", self.entries)
        r.add_get(logs + "/checkpoint", self.checkpoint)
        r.add_get(logs + "/proofs/consistency", self.consistency)
        r.add_get(logs + "/proofs/inclusion", self.inclusion)
        if self.problem is not None:  # the session's hub witnesses too (ADR 0032)
            r.add_post(EXCHANGE + "/witness/add-checkpoint", self.add_checkpoint)
            r.add_post(logs + "/cosignatures", self.cosignatures)

        async def on_cleanup(app: web.Application) -> None:
            await self.host.close_all()

        app.on_cleanup.append(on_cleanup)

    # --- control (rule 1) --------------------------------------------------------------

    async def open(self, request: web.Request) -> web.Response:
        req = _decode(self.body_of(request), OpenRequest, "session")
        return _json(await self.host.open(self.caller_of(request), req))

    async def root(self, request: web.Request) -> web.Response:
        req = _decode(self.body_of(request), RootRequest, "root")
        sid = request.match_info["sid"]
        return _json(await self.host.activate(self.caller_of(request), sid, req.root))

    async def step(self, request: web.Request) -> web.Response:
        m = request.match_info
        return _json(await self.host.step(self.caller_of(request), m["sid"], m["step"]))

    async def reconcile(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        return _json(await self.host.reconcile(self.caller_of(request), sid))

    async def close(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self._verifiers.pop(sid, None)
        return _json(await self.host.close(self.caller_of(request), sid))

    # --- exchange (rule 2) -------------------------------------------------------------

    async def _exchange(self, request: web.Request) -> tuple[Any, Caller, bytes]:
        """The session's hub, and the caller and body authenticated under its root."""
        sid = request.match_info["sid"]
        s = self.host.sessions.get(sid)
        if s is None or s.node is None or s.hub is None:
            raise NotFoundError(f"no active conformance session {sid}", where="session")
        verifier = self._verifiers.get(sid)
        if verifier is None:
            for gone in set(self._verifiers) - set(self.host.sessions):  # closed meanwhile
                del self._verifiers[gone]
            verifier = RequestVerifier(s.node.roots(), window=self.window)
            self._verifiers[sid] = verifier
        caller, body = await self.authenticate(request, verifier)
        s.last_used = self.host.node.clock()
        return s.hub, caller, body

    async def state(self, request: web.Request) -> web.Response:
        hub, caller, _ = await self._exchange(request)
        pid = request.match_info["pid"]
        return _json(await hub.state(caller, pid, have=_int(request, "have")))

    async def push(self, request: web.Request) -> web.Response:
        hub, caller, body = await self._exchange(request)
        req = _decode(body, PushRequest, "push")
        m = request.match_info
        return _json(await hub.push(caller, m["pid"], m["node"], req))

    async def entries(self, request: web.Request) -> web.Response:
        hub, caller, _ = await self._exchange(request)
        m = request.match_info
        start = _int(request, "start", 0) or 0
        limit = _int(request, "limit", 500) or 500
        return _json(await hub.entries(caller, m["pid"], m["node"], start, limit))

    async def add_checkpoint(self, request: web.Request) -> web.Response:
        hub, caller, body = await self._exchange(request)
        assert self.problem is not None  # mounted only with one
        return await answer_add_checkpoint(hub.node, caller, request, body, self.problem)

    async def cosignatures(self, request: web.Request) -> web.Response:
        hub, caller, body = await self._exchange(request)
        return await answer_cosignatures(hub.node, caller, request, body)

    async def checkpoint(self, request: web.Request) -> web.Response:
        hub, caller, _ = await self._exchange(request)
        m = request.match_info
        return _json(await hub.checkpoint(caller, m["pid"], m["node"]))

    async def consistency(self, request: web.Request) -> web.Response:
        hub, caller, _ = await self._exchange(request)
        m = request.match_info
        old = _int(request, "old")
        if old is None:
            raise BadParameterError("query parameter old is required", where="old")
        return _json(await hub.consistency(caller, m["pid"], m["node"], old, _int(request, "new")))

    async def inclusion(self, request: web.Request) -> web.Response:
        hub, caller, _ = await self._exchange(request)
        m = request.match_info
        index = _int(request, "index")
        if index is None:
            raise BadParameterError("query parameter index is required", where="index")
        return _json(await hub.inclusion(caller, m["pid"], m["node"], index, _int(request, "size")))


SANDBOX_KEY = web.AppKey("sandbox", SandboxRoutes)


# --- the partner's client -------------------------------------------------------------


class SandboxClient(HubClient):
    """The partner's signed client of the sandbox's control routes (production key),
    and the factory of its exchange clients (sandbox key)."""

    def __init__(self, base_url: str, transport_key: AnyPrivateKey, **kw: Any) -> None:
        super().__init__(base_url, transport_key, **kw)
        self._kw = kw
        self._exchanges: list[HubClient] = []

    async def open(self, partnership: str, public_key: bytes) -> SessionOpened:
        body = encoder.encode(OpenRequest(partnership=partnership, public_key=public_key))
        return await self._call("POST", CONTROL, SessionOpened, body=body)

    async def activate(self, session: str, root: bytes) -> SessionState:
        body = encoder.encode(RootRequest(root=root))
        return await self._call("POST", f"{CONTROL}/{session}/root", SessionState, body=body)

    async def step(self, session: str, step: str) -> StepAnswer:
        return await self._call("POST", f"{CONTROL}/{session}/steps/{step}", StepAnswer,
                                body=b"{}")  # fmt: skip

    async def reconcile(self, session: str) -> Report:
        return await self._call("POST", f"{CONTROL}/{session}/reconcile", Report, body=b"{}")

    async def close_session(self, session: str) -> SessionState:
        return await self._call("DELETE", f"{CONTROL}/{session}", SessionState)

    def exchange(self, session: str, key: PrivateKey) -> HubClient:
        """A ``HubPort`` of the session's sandbox, signing with the sandbox key."""
        client = HubClient(f"{self.base_url}/conformance/{session}", key, **self._kw)
        self._exchanges.append(client)
        return client

    async def close(self) -> None:
        for c in self._exchanges:
            await c.close()
        self._exchanges.clear()
        await super().close()
