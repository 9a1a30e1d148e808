"""``services/agent.py`` rule 1's push window: ``schedule.push_window`` batches in flight
(``Syncer(window=...)`` overrides it), appended in order by the hub however they
arrive, a ``gap`` refusal still resent from the size the hub names."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core.wire import PushRequest, PushResponse
from jcm_sync.errors import ConfigError
from jcm_sync.local.config import DEFAULT_PUSH_WINDOW, MAX_PUSH_WINDOW
from jcm_sync.services.agent import PUSH_WINDOW, Syncer
from jcm_sync.services.hub_port import HubPort
from tests.services.fakes import CC, PID, Lie, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path, projects=3) as p:
        yield p


@dataclass
class Shuffled:
    """A ``HubPort`` whose pushes reach the hub after a random delay each, so a later
    batch often arrives before an earlier one; it counts what is in flight."""

    inner: HubPort
    rng: random.Random = field(default_factory=lambda: random.Random(15))
    pushed: list[PushRequest] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    requests: int = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        self.requests += 1
        self.pushed.append(req)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.rng.uniform(0, 0.03))
            self.arrived.append(req.start)
            return await self.inner.push(pid, node, req)
        finally:
            self.in_flight -= 1


def agent_syncer(pair: Pair, port: object, **kw: int) -> Syncer:
    return Syncer(pair.agent, port, PID, **kw)  # type: ignore[arg-type]


async def replica_is_own(pair: Pair) -> bool:
    own, rep = pair.agent.logs(PID).own, pair.japan.logs(PID).replica
    mine = [e.envelope for e in await pair.agent.store.entries(own)]
    held = [e.envelope for e in await pair.japan.store.entries(rep)]
    return mine == held and (
        await pair.japan.store.tree_head(rep) == await pair.agent.store.tree_head(own)
    )


def test_the_window_defaults_to_the_schedule() -> None:
    """The default window is ``schedule.push_window``'s default, ``PUSH_WINDOW``."""
    assert PUSH_WINDOW == DEFAULT_PUSH_WINDOW


async def test_the_window_is_the_nodes_schedule_unless_given(pair: Pair) -> None:
    """``Syncer(window=None)`` takes ``schedule.push_window``; a window out of bounds
    is a ``ConfigError`` naming the setting."""
    cfg = pair.agent.cfg
    pair.agent.cfg = msgspec.structs.replace(
        cfg, schedule=msgspec.structs.replace(cfg.schedule, push_window=5)
    )
    assert agent_syncer(pair, pair.honest)._window == 5
    assert agent_syncer(pair, pair.honest, window=1)._window == 1
    for bad in (0, MAX_PUSH_WINDOW + 1):
        with pytest.raises(ConfigError, match="push_window"):
            agent_syncer(pair, pair.honest, window=bad)


@pytest.mark.parametrize("window", [3, 4])
async def test_batches_in_flight_out_of_order_are_appended_in_order(
    pair: Pair, window: int
) -> None:
    """Rule 1 with the hub's wait for a batch's start (``Hub._wait_for_start``): with
    three or four batches in flight, arriving in another order, every batch is appended
    after its predecessor, none refused, and the replica is the own log."""
    port = Shuffled(pair.honest)
    total = pair.sizes[CC]
    assert await agent_syncer(pair, port, batch_size=2, window=window).push() == total
    starts = [r.start for r in port.pushed]
    assert starts == list(range(0, total, 2))  # each batch sent once: no refusal
    assert port.most_in_flight == window
    assert port.arrived != sorted(port.arrived)  # some arrived before their predecessor
    assert await replica_is_own(pair)
    assert await pair.japan.alarms.active() == []


@pytest.mark.parametrize("window", [3, 4])
async def test_a_gap_refusal_is_resent_with_a_wide_window(pair: Pair, window: int) -> None:
    """Rule 1's gap path with more batches in flight: the hub acknowledged a batch it
    then lost and refuses the next ones as a gap naming its size; the agent cancels what
    is in flight and resends from there: no fork, the replica is the own log. A push
    that does not end in 20 s is a wedged hub: before ADR 0061's fix of
    ``Hub._wait_for_start`` a push cancelled while it waited could leave the log's lock
    held on Python 3.11 (3 of 6 runs at window 3 hung)."""
    liar = pair.liar(Lie.LOSE_FIRST_PUSH)
    syncer = agent_syncer(pair, liar, batch_size=5, window=window)
    assert await asyncio.wait_for(syncer.push(), 20) == pair.sizes[CC]
    assert liar.refusals
    assert {(r.code, r.problem.size) for r in liar.refusals} == {("gap", 0)}
    starts = [req.start for req in liar.pushed]
    assert starts[:window] == [5 * i for i in range(window)]
    assert starts.count(0) == 2  # batch 0 went twice
    assert await replica_is_own(pair)
    assert await pair.agent.alarms.active() == await pair.japan.alarms.active() == []
