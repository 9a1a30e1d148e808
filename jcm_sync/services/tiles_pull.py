"""The agent's pull from tiles: Japan's entries and proofs from a static mirror, beside
the hub's HTTP API (docs/adr/0041).

Why this module exists: reads are most of a hub's load, and tiles move them to any static
server or CDN. ``TilesHubPort`` is a ``HubPort`` that answers the two read calls the pull
makes (``entries``, ``consistency``) for the counterpart's log from tiles, and passes
every other call (``state``, ``push``, witnessing) to the hub's API. The pull itself
(``services/agent.py``, rule 2) is unchanged: it still takes Japan's checkpoint from the
hub's ``/state``, proves each page consistent with it and verifies every envelope, so
what tiles serve is checked exactly as what the API serves.

Rules:

1. Only the replica's log (the counterpart's) is read from tiles; the agent's own log
   and every other call go to the hub.
2. The tiles' own checkpoint is opened under the trust root and their root checked
   (``tiles_read.open_tiled_log``), and every page is proved against it before it is
   handed to the pull; altered tiles raise ``TilesMismatchError``, which fails the pull
   (and backs it off) without raising a fork alarm: a bad mirror is not the log's fork.
3. A request beyond the tiles' size (the mirror is behind the hub), or for a log with no
   tiles published yet, goes to the hub's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jcm_sync.core.wire import (
    ConsistencyProofView,
    EntriesPage,
    PartnershipState,
    PushRequest,
    PushResponse,
)
from jcm_sync.errors import NotFoundError
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.node import Node
from jcm_sync.services.tiles_read import TiledLog, TileSource, open_tiled_log


@dataclass
class TilesHubPort:
    """A ``HubPort`` reading the counterpart's log from tiles (rules 1-3)."""

    inner: HubPort
    source: TileSource
    node: Node
    partnership: str
    _log: TiledLog | None = None
    #: pages and proofs served from tiles (for tests and the bench)
    served: int = 0

    @property
    def requests(self) -> int:
        return self.inner.requests

    async def close(self) -> None:
        """Close the tiles source, then the hub's port."""
        for close in (getattr(self.source, "close", None), getattr(self.inner, "close", None)):
            if close is not None:
                await close()

    def __getattr__(self, name: str) -> Any:
        """Rule 1: every other call (witnessing, closing) is the hub's."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        return await self.inner.state(pid, have=have)

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        return await self.inner.push(pid, node, req)

    async def _tiled(self, pid: str, node: str, need: int) -> TiledLog | None:
        """Rules 1 and 3: the tiled log if it holds ``need`` entries, else None."""
        logs = self.node.logs(self.partnership)
        if pid != self.partnership or node != logs.replica.node:
            return None
        if self._log is None or self._log.size < need:
            try:
                self._log = await open_tiled_log(
                    self.source, logs.root, logs.replica, self.node.clock()
                )
            except NotFoundError:
                return None
        return self._log if self._log.size >= need else None

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        log = await self._tiled(pid, node, start + 1)
        if log is None:
            return await self.inner.entries(pid, node, start, limit)
        end = min(start + limit, log.size)
        self.served += 1
        return EntriesPage(start=start, entries=await log.entries(start, end), size=log.size)

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        log = await self._tiled(pid, node, new)
        if log is None:
            return await self.inner.consistency(pid, node, old, new)
        self.served += 1
        proof = await log.consistency_proof(old, new)
        return ConsistencyProofView(old_size=old, new_size=new, proof=proof)
