"""The hub as the partner agent sees it: the calls it makes, and nothing else.

Why this module exists: the agent (``services/agent.py``) must not depend on how the
hub is reached. Over the network it is ``net/client.py``'s ``HubClient`` (signed HTTP);
in process it is ``services/in_process_hub.py``'s ``InProcessHub`` over a real ``Hub``;
in tests it may be a hub that lies on purpose, so that every fork branch of the agent
runs (docs STYLE, "The peer you test against must be able to lie").

Rules every implementation keeps:

1. A refusal by the hub is a ``PeerRefusedError`` carrying the problem's ``code`` (and
   ``size`` for a ``gap``: where to resume) and the ``Retry-After`` asked for; a hub
   that cannot be reached, or answers nonsense, is a ``TransportError``. The agent
   tells a gap from a fork from an outage by these alone.
2. Answers are the ``core/wire.py`` values, exactly as the hub's HTTP API carries them.
3. ``requests`` counts the calls made, so anti-entropy can say how many round trips a
   pass took (one when both sides agree).
"""

from __future__ import annotations

from typing import Protocol

from jcm_sync.core.wire import (
    ConsistencyProofView,
    EntriesPage,
    PartnershipState,
    PushRequest,
    PushResponse,
)


class HubPort(Protocol):
    """One partner node's connection to Japan's hub (structural: ``HubClient`` and
    ``InProcessHub`` need not name it)."""

    @property
    def requests(self) -> int:
        """Calls made so far (rule 3)."""
        ...

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        """Both logs' heads; ``have`` tells the hub how much of Japan's log we hold."""
        ...

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        """Append a batch of the caller's own log to the hub's replica of it."""
        ...

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        """A page of a log's entries from ``start``."""
        ...

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        """An RFC 9162 consistency proof between two sizes of a log."""
        ...
