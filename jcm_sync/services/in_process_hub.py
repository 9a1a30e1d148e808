"""Japan's hub reached in process: the agent's ``HubPort`` over a real ``Hub`` object.

Why this module exists: the agent's logic must be testable against a hub without a
socket, and against a hub that lies (``tests/services/fakes.py`` wraps this one), so
that each of its fork branches runs. It also lets two nodes in one process sync.

Rules:

1. Every call is made as one calling node (``Caller``), and the ``Hub`` authorizes it
   exactly as it does a call that ``net/server.py`` authenticated: a partner pushes
   only its own log and reads only its own partnership.
2. What the hub refuses reaches the caller as over HTTP (``HubPort`` rule 1): a
   ``PeerRefusedError`` carrying the problem details ``core/wire.problem_for`` gives
   (code, status, and the size to resume from after a gap), never the hub's own error.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import (
    Caller,
    ConsistencyProofView,
    EntriesPage,
    PartnershipState,
    PushRequest,
    PushResponse,
    problem_for,
)
from jcm_sync.core.witness_wire import WitnessRefusedError
from jcm_sync.errors import JcmSyncError, PeerRefusedError, UnknownKeyError
from jcm_sync.services.hub import Hub
from jcm_sync.services.witness import CosignedView, accept_cosignatures, add_checkpoint_as_witness

if TYPE_CHECKING:
    from jcm_sync.services.hub_port import HubPort

T = TypeVar("T")


def caller_of(root: TrustRoot, key: PrivateKey) -> Caller:
    """The caller a request signed with ``key`` comes from, by the partnership's trust
    root: the key's node in that partnership."""
    entry = root.key(key.key_id)
    if entry is None:
        raise UnknownKeyError(f"trust root {root.partnership} lists no key {key.key_id[:16]}")
    return Caller(root.partnership, entry.node, entry.keyid, key.public)


class InProcessHub:
    """A ``HubPort`` that calls ``hub`` directly, as ``caller`` (rule 1)."""

    def __init__(self, hub: Hub, caller: Caller) -> None:
        self.hub = hub
        self.caller = caller
        self.requests = 0

    async def _call(self, answer: Awaitable[T]) -> T:
        self.requests += 1
        try:
            return await answer
        except JcmSyncError as exc:  # rule 2
            raise PeerRefusedError(problem_for(exc)) from exc

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        return await self._call(self.hub.state(self.caller, pid, have=have))

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        return await self._call(self.hub.push(self.caller, pid, node, req))

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        return await self._call(self.hub.entries(self.caller, pid, node, start, limit))

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        return await self._call(self.hub.consistency(self.caller, pid, node, old, new))

    async def add_checkpoint(self, pid: str, body: bytes) -> bytes:
        """The hub's witness (ADR 0032); a 409 size mismatch stays ``WitnessRefusedError``
        (``WitnessPort``), any other refusal is its problem with the spec's status."""
        self.requests += 1
        try:
            return await add_checkpoint_as_witness(self.hub.node, self.caller, pid, body)
        except WitnessRefusedError as exc:
            if exc.witness_size is not None:
                raise
            raise PeerRefusedError(
                msgspec.structs.replace(problem_for(exc), status=exc.status)
            ) from exc
        except JcmSyncError as exc:
            raise PeerRefusedError(problem_for(exc)) from exc

    async def deliver_cosignatures(self, pid: str, node: str, note: bytes) -> CosignedView:
        return await self._call(accept_cosignatures(self.hub.node, self.caller, pid, node, note))


if TYPE_CHECKING:  # mypy proves here that the agent can be handed an InProcessHub
    _IMPLEMENTS_PORT: type[HubPort] = InProcessHub
