"""The witness endpoints over HTTP (C2SP tlog-witness, ADR 0032 and 0037).

Why this module exists: the hub is a tlog-witness of each partner's log, an agent of
Japan's, and the spec fixes the wire: ``POST <prefix>/add-checkpoint`` with a text body,
a 200 of signature lines, and refusals by status code, the 409 of a size mismatch
carrying the witness's size as ``text/x.tlog.size``. The judging is
``services/witness.py``'s; this module is its HTTP edge, one implementation mounted by
the hub (``net/server.py``, and a conformance session's ``net/sandbox.py``) and by an
agent's witness listener (``net/witness_listener.py``).

Rules:

1. ``POST /v1/partnerships/{pid}/witness/add-checkpoint`` answers exactly as tlog-witness
   says: 200 ``text/plain`` signature lines; 409 of a size mismatch ``text/x.tlog.size``,
   the size in decimal and a newline; 400, 403, 404, 409 (another root) and 422 as
   problem+json with that status (the spec sets the status, not the body).
2. ``POST /v1/partnerships/{pid}/logs/{node}/cosignatures`` takes the partner's cosigned
   copy of one of Japan's checkpoints (a signed note) and answers JSON
   ``{"size": N, "cosignatures": K}``.
3. Both are under ``/v1/``: the server's middleware (the hub's, or the agent listener's,
   which runs the same steps) authenticates them (RFC 9421) before anything here runs;
   their bodies are ``text/plain`` (UTF-8), not JSON (``is_text_route``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from jcm_sync.core.wire import Caller, encoder
from jcm_sync.core.witness_wire import TLOG_SIZE_CONTENT_TYPE, WitnessRefusedError
from jcm_sync.core.witness_wire import format_size_conflict as size_body
from jcm_sync.net.client import HubClient
from jcm_sync.services.node import Node
from jcm_sync.services.witness import accept_cosignatures, add_checkpoint_as_witness

__all__ = [
    "ADD_CHECKPOINT",
    "COSIGNATURES",
    "TEXT_TYPE",
    "WitnessRoutes",
    "is_text_route",
    "refusal_response",
    "witness_client",
]

ADD_CHECKPOINT = "/v1/partnerships/{pid}/witness/add-checkpoint"
COSIGNATURES = "/v1/partnerships/{pid}/logs/{node}/cosignatures"
#: The media type of the witness routes' request bodies and of the 200 answer.
TEXT_TYPE = "text/plain"


def is_text_route(path: str) -> bool:
    """Rule 3: a witness route, whose body is text rather than JSON: the hub's own, or a
    conformance session's (``/conformance/<session>/v1/partnerships/...``)."""
    return path.startswith(("/v1/partnerships/", "/conformance/")) and path.endswith(
        ("/witness/add-checkpoint", "/cosignatures")
    )


class Problem(Protocol):
    """The server's ``problem()``: a problem+json answer carrying the request id."""

    def __call__(
        self, status: int, code: str, title: str, detail: str = "", *, where: str = "", **extra: Any
    ) -> web.Response: ...


def refusal_response(exc: WitnessRefusedError, problem: Problem) -> web.Response:
    """Rule 1: the spec's answer to a refused add-checkpoint."""
    if exc.status == 409 and exc.witness_size is not None:
        response = web.Response(status=409, body=size_body(exc.witness_size))
        response.headers["Content-Type"] = TLOG_SIZE_CONTENT_TYPE
        return response
    return problem(exc.status, exc.code, "WitnessRefused", exc.message, where=exc.where or "")


class WitnessRoutes:
    """The witness endpoints of one node, hub or agent (rules 1 and 2)."""

    def __init__(
        self,
        node: Node,
        caller: Callable[[web.Request], Caller],
        body: Callable[[web.Request], bytes],
        problem: Problem,
    ) -> None:
        self.node = node
        self._caller = caller
        self._body = body
        self._problem = problem

    def mount(self, app: web.Application) -> None:
        app.router.add_post(ADD_CHECKPOINT, self.add_checkpoint)
        app.router.add_post(COSIGNATURES, self.cosignatures)

    async def add_checkpoint(self, request: web.Request) -> web.Response:
        return await answer_add_checkpoint(
            self.node, self._caller(request), request, self._body(request), self._problem
        )

    async def cosignatures(self, request: web.Request) -> web.Response:
        return await answer_cosignatures(
            self.node, self._caller(request), request, self._body(request)
        )


async def answer_add_checkpoint(
    node: Node, caller: Caller, request: web.Request, body: bytes, problem: Problem
) -> web.Response:
    """Rule 1 for ``node``: the hub's, a conformance session's hub's (``net/sandbox.py``)
    or an agent's."""
    pid = request.match_info["pid"]
    try:
        answer = await add_checkpoint_as_witness(node, caller, pid, body)
    except WitnessRefusedError as exc:
        return refusal_response(exc, problem)
    response = web.Response(status=200, body=answer)
    response.headers["Content-Type"] = TEXT_TYPE + "; charset=utf-8"
    return response


async def answer_cosignatures(
    node: Node, caller: Caller, request: web.Request, body: bytes
) -> web.Response:
    """Rule 2 for ``node``, as ``answer_add_checkpoint``."""
    m = request.match_info
    view = await accept_cosignatures(node, caller, m["pid"], m["node"], body)
    return web.Response(body=encoder.encode(view), content_type="application/json")


def witness_client(node: Node) -> Callable[[str], HubClient]:
    """The hub's signed client of a partner agent's witness listener (ADR 0037): the same
    ``HubClient`` an agent uses, its requests signed with the hub's transport key, for
    ``services/witness_push.py``. The listener serves the same paths as the hub."""
    timeout = node.cfg.hub.timeout_seconds if node.cfg.hub is not None else 30.0
    return lambda url: HubClient(url, node.keys.transport, timeout=timeout)
