"""A hub and an agent in one process, and a hub that lies to the agent on purpose.

``open_pair`` provisions Japan's hub and one partner agent, each on its own SQLite
file, with sample records in both own logs; the agent reaches the real ``Hub`` through
an ``InProcessHub``. ``LyingHub`` wraps that honest port and, in the ``Lie`` modes it is
given, serves what a compromised or broken hub could: another history of Japan's log,
checkpoints that do not match their entries, pages with entries skipped, an older
checkpoint, proofs that do not verify, acknowledgements of batches it dropped (python-tuf's
``RepositorySimulator`` plays the same role for its client). Japan's checkpoint key signs
the false checkpoints, so the agent cannot refuse them for their signature alone: only
its fork checks can.
"""

from __future__ import annotations

import enum
import hashlib
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from msgspec.structs import replace

from jcm_sync.core import checkpoint
from jcm_sync.core.wire import (
    CheckpointView,
    ConsistencyProofView,
    EntriesPage,
    LogState,
    PartnershipState,
    PushRequest,
    PushResponse,
)
from jcm_sync.errors import PeerRefusedError
from jcm_sync.local.config import load_config
from jcm_sync.services.agent import Syncer
from jcm_sync.services.hub import Hub, Limits
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.in_process_hub import InProcessHub, caller_of
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, partnership_records, provision

CC = "MN"
PID = f"JP-{CC}"
OTHER_ROOT = hashlib.sha256(b"a history nobody signed").digest()


class Lie(enum.Enum):
    """What the lying hub does; each names the agent check it must trip."""

    #: /state: the hub claims more of the partner's log than the partner ever wrote
    INFLATE_REPLICA = enum.auto()
    #: /state: another root for the partner's log, at the size the hub holds
    REWRITE_REPLICA = enum.auto()
    #: /state: the hub's checkpoint of the partner's log is missing
    FORGET_REPLICA_CHECKPOINT = enum.auto()
    #: /state: the hub's checkpoint of the partner's log does not verify
    TAMPER_REPLICA_CHECKPOINT = enum.auto()
    #: /state: one log is missing from the answer
    OMIT_REPLICA = enum.auto()
    #: /state: Japan's checkpoint does not verify under Japan's keys
    TAMPER_JAPAN_CHECKPOINT = enum.auto()
    #: /state: Japan signed a checkpoint of the current size whose root is not its entries'
    MISMATCHED_JAPAN_CHECKPOINT = enum.auto()
    #: /state: Japan signed a checkpoint one entry smaller, of another history
    SMALLER_OTHER_JAPAN_CHECKPOINT = enum.auto()
    #: /state: Japan's log as in the first state this hub served (an older, genuine one)
    ROLLBACK = enum.auto()
    #: /state, entries and proofs of Japan's log come from another history of it
    REWRITE_JAPAN = enum.auto()
    #: entries: each page leaves out its first entry, but says it starts where asked
    SKIP_ENTRIES = enum.auto()
    #: entries: each page starts one entry later than asked (and says so)
    SHIFT_PAGE = enum.auto()
    #: entries: pages are empty
    EMPTY_PAGE = enum.auto()
    #: proofs: every consistency proof has a hash changed
    BAD_PROOF = enum.auto()
    #: push: the first batch is acknowledged but never stored (a lost suffix)
    LOSE_FIRST_PUSH = enum.auto()
    #: push: the receipt is the partner's own checkpoint, without Japan's countersignature
    FORGE_RECEIPT = enum.auto()


def _flip(data: bytes, at: int = 0) -> bytes:
    """``data`` with one bit changed (by default in a note's first line, which its
    signature covers)."""
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@dataclass
class LyingHub:
    """A ``HubPort`` that forwards to ``honest`` and lies as ``lies`` say."""

    honest: InProcessHub
    japan: Node
    #: another history of Japan's log, for ``Lie.REWRITE_JAPAN``
    history: InProcessHub | None = None
    lies: set[Lie] = field(default_factory=set)
    requests: int = 0
    #: what was sent and refused, for the tests to look at
    pushed: list[PushRequest] = field(default_factory=list)
    refusals: list[PeerRefusedError] = field(default_factory=list)
    served: list[PartnershipState] = field(default_factory=list)
    _lost: bool = False

    def _japan_note(self, size: int, root: bytes) -> bytes:
        """A checkpoint of Japan's log that Japan's own key signs."""
        origin = self.japan.logs(PID).own.origin
        cp = checkpoint.Checkpoint(origin, size, root)
        return checkpoint.sign_checkpoint(cp, self.japan.keys.checkpoint.key)

    def _japan(self, state: PartnershipState) -> LogState:
        return next(s for s in state.logs if s.node == "JP")

    def _partner(self, state: PartnershipState) -> LogState:
        return next(s for s in state.logs if s.node != "JP")

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        self.requests += 1
        state = await self.honest.state(pid, have=have)
        jp, rep = self._japan(state), self._partner(state)
        if Lie.REWRITE_JAPAN in self.lies:
            assert self.history is not None
            jp = self._japan(await self.history.state(pid))
        if Lie.ROLLBACK in self.lies:
            jp = self._japan(self.served[0])
        if Lie.TAMPER_JAPAN_CHECKPOINT in self.lies and jp.checkpoint is not None:
            jp = replace(jp, checkpoint=_flip(jp.checkpoint))
        if Lie.MISMATCHED_JAPAN_CHECKPOINT in self.lies:
            jp = replace(jp, root=OTHER_ROOT, checkpoint=self._japan_note(jp.size, OTHER_ROOT))
        if Lie.SMALLER_OTHER_JAPAN_CHECKPOINT in self.lies:
            note = self._japan_note(jp.size - 1, OTHER_ROOT)
            jp = replace(jp, size=jp.size - 1, root=OTHER_ROOT, checkpoint=note)
        if Lie.INFLATE_REPLICA in self.lies:
            rep = replace(rep, size=rep.size + 5, root=OTHER_ROOT)
        if Lie.REWRITE_REPLICA in self.lies:
            rep = replace(rep, root=OTHER_ROOT)
        if Lie.FORGET_REPLICA_CHECKPOINT in self.lies:
            rep = replace(rep, checkpoint=None)
        if Lie.TAMPER_REPLICA_CHECKPOINT in self.lies and rep.checkpoint is not None:
            rep = replace(rep, checkpoint=_flip(rep.checkpoint))
        logs = [jp] if Lie.OMIT_REPLICA in self.lies else [jp, rep]
        served = PartnershipState(partnership=state.partnership, logs=logs)
        self.served.append(served)
        return served

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        self.requests += 1
        self.pushed.append(req)
        if Lie.LOSE_FIRST_PUSH in self.lies and not self._lost:
            self._lost = True
            end = req.start + len(req.entries)
            view = CheckpointView(origin="", size=end, root=OTHER_ROOT)
            return PushResponse(size=end, appended=0, checkpoint=view)
        try:
            resp = await self.honest.push(pid, node, req)
        except PeerRefusedError as exc:
            self.refusals.append(exc)
            raise
        if Lie.FORGE_RECEIPT in self.lies and req.checkpoint is not None:
            forged = replace(resp.checkpoint, note=req.checkpoint)
            resp = replace(resp, checkpoint=forged)
        return resp

    def _source(self, node: str) -> InProcessHub:
        if node == "JP" and Lie.REWRITE_JAPAN in self.lies:
            assert self.history is not None
            return self.history
        return self.honest

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        self.requests += 1
        page = await self._source(node).entries(pid, node, start, limit)
        if Lie.SKIP_ENTRIES in self.lies:
            page = replace(page, entries=page.entries[1:])
        if Lie.SHIFT_PAGE in self.lies:
            later = await self._source(node).entries(pid, node, start + 1, limit)
            page = replace(later, start=start + 1)
        if Lie.EMPTY_PAGE in self.lies:
            page = replace(page, entries=[])
        return page

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        self.requests += 1
        proof = await self._source(node).consistency(pid, node, old, new)
        if Lie.BAD_PROOF in self.lies:
            hashes = proof.proof or [OTHER_ROOT]
            proof = replace(proof, proof=[_flip(hashes[0], 0), *hashes[1:]])
        return proof


@dataclass
class Pair:
    """Japan's hub and one partner agent in one process, each on its own SQLite file."""

    net: Network
    japan: Node
    hub: Hub
    agent: Node
    honest: InProcessHub
    #: the records each side's own log was seeded with
    sizes: dict[str, int]
    #: opened by ``with_history``: a second JP node holding another history of its log
    other_japan: Node | None = None
    other_hub: Hub | None = None

    def port(self, hub: Hub | None = None) -> InProcessHub:
        """A port to ``hub`` (the real one by default) as the agent's node."""
        root = self.agent.logs(PID).root
        return InProcessHub(hub or self.hub, caller_of(root, self.agent.keys.transport))

    def liar(self, *lies: Lie) -> LyingHub:
        history = None if self.other_hub is None else self.port(self.other_hub)
        return LyingHub(self.honest, self.japan, history, set(lies))

    def syncer(self, port: HubPort | None = None, *, batch_size: int = 5) -> Syncer:
        """The agent's syncer through ``port`` (the honest hub by default)."""
        return Syncer(self.agent, port or self.honest, PID, batch_size=batch_size)

    async def with_history(self, *, projects: int, seed: int) -> None:
        """Open a second Japan node (same keys and roots, its own store) whose own log
        is another history: what a hub that rewrites Japan's log serves."""
        src = self.net.configs["JP"]
        other = src.parent.parent / "jp-rewritten"
        other.mkdir()
        shutil.copy(src, other / "config.toml")
        self.other_japan = await open_node(load_config(other / "config.toml", env={}))
        recs = partnership_records(CC, self.net.keys, projects=projects, seed=seed)
        await self.other_japan.logs(PID).service.append(recs.by_node["JP"])
        self.other_hub = Hub(self.other_japan)

    async def more_japan(self, *, projects: int = 1, seed: int = 7) -> int:
        """Japan appends more records to its own log; returns how many."""
        recs = partnership_records(CC, self.net.keys, projects=projects, seed=seed)
        await self.japan.logs(PID).service.append(recs.by_node["JP"])
        return len(recs.by_node["JP"])

    async def close(self) -> None:
        for hub in (self.hub, self.other_hub):
            if hub is not None:
                hub.close()
        for node in (self.agent, self.japan, self.other_japan):
            if node is not None:
                await node.close()


@asynccontextmanager
async def open_pair(directory: Path, *, projects: int = 2) -> AsyncIterator[Pair]:
    """A provisioned hub and ``MN`` agent with sample records in both own logs. The hub
    waits only briefly for a batch's predecessor, so a lost batch is a quick gap."""
    net = provision(directory / "net", [CC], hub_port=0)
    japan = await open_node(load_config(net.configs["JP"], env={}))
    agent = await open_node(load_config(net.configs[CC], env={}))
    hub = Hub(japan, Limits(max_batch=1000, gap_wait=0.2))
    recs = partnership_records(CC, net.keys, projects=projects)
    await agent.logs(PID).service.append(recs.by_node[CC])
    await japan.logs(PID).service.append(recs.by_node["JP"])
    sizes = {CC: len(recs.by_node[CC]), "JP": len(recs.by_node["JP"])}
    root = agent.logs(PID).root
    honest = InProcessHub(hub, caller_of(root, agent.keys.transport))
    pair = Pair(net, japan, hub, agent, honest, sizes)
    try:
        yield pair
    finally:
        await pair.close()
