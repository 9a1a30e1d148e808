"""Tests for jcm_sync.services.tiles_pull: the agent's pull reading Japan's log from tiles,
the hub's API for everything else, through a real Hub in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core.wire import ConsistencyProofView, EntriesPage
from jcm_sync.errors import TilesMismatchError
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.tiles import DirectorySink, TilesPublisher
from jcm_sync.services.tiles_pull import TilesHubPort
from tests.services.fakes import PID, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


@dataclass
class Counted:
    """Forwards to the hub and counts the read calls that reached it."""

    inner: HubPort
    reads: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        self.reads.append(f"entries {node} {start}")
        return await self.inner.entries(pid, node, start, limit)

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        self.reads.append(f"consistency {node} {old} {new}")
        return await self.inner.consistency(pid, node, old, new)


async def _publish(pair: Pair, out: Path) -> None:
    await TilesPublisher(pair.japan.store, DirectorySink(out)).publish_all()


def _port(pair: Pair, out: Path) -> tuple[TilesHubPort, Counted]:
    counted = Counted(pair.honest)
    return TilesHubPort(counted, DirectorySink(out), pair.agent, PID), counted


async def _replica(pair: Pair) -> tuple[Any, bytes | None]:
    rep = pair.agent.logs(PID).replica
    held = await pair.agent.store.latest_checkpoint(rep)
    return await pair.agent.store.tree_head(rep), None if held is None else held.note


async def _japan(pair: Pair) -> tuple[Any, bytes | None]:
    own = pair.japan.logs(PID).own
    held = await pair.japan.store.latest_checkpoint(own)
    return await pair.japan.store.tree_head(own), None if held is None else held.note


async def test_a_pull_from_tiles_reaches_the_state_of_an_api_pull(
    pair: Pair, tmp_path: Path
) -> None:
    """Every page and proof comes from tiles (none from the hub's API), and the replica
    ends as Japan's log with Japan's checkpoint, then follows growth the same way."""
    out = tmp_path / "tiles"
    await _publish(pair, out)
    port, counted = _port(pair, out)
    pulled = await pair.syncer(port, batch_size=3).pull()
    assert pulled == pair.sizes["JP"]
    assert counted.reads == []
    assert port.served > 0
    assert await _replica(pair) == await _japan(pair)
    more = await pair.more_japan()
    await _publish(pair, out)
    assert await pair.syncer(port, batch_size=100).pull() == more
    assert counted.reads == []
    assert await _replica(pair) == await _japan(pair)


async def test_what_the_tiles_do_not_hold_yet_comes_from_the_hub(
    pair: Pair, tmp_path: Path
) -> None:
    """A mirror behind the hub serves what it has; the rest (and proofs to sizes past
    the tiles') is read from the API."""
    out = tmp_path / "tiles"
    await _publish(pair, out)
    held = pair.sizes["JP"]
    more = await pair.more_japan()  # not published
    port, counted = _port(pair, out)
    assert await pair.syncer(port, batch_size=held).pull() == held + more
    assert counted.reads == [f"consistency JP {held} {held + more}", f"entries JP {held}"]
    assert await _replica(pair) == await _japan(pair)


async def test_a_tampered_bundle_fails_the_pull_without_a_fork_alarm(
    pair: Pair, tmp_path: Path
) -> None:
    """An altered entry bundle is refused by name; nothing is stored and no fork alarm is
    raised (a bad mirror is not the log's fork)."""
    out = tmp_path / "tiles"
    await _publish(pair, out)
    [bundle] = list((out / PID / "JP" / "tile" / "entries").glob("*.p/*"))
    data = bytearray(bundle.read_bytes())
    data[10] ^= 1
    bundle.write_bytes(bytes(data))
    port, _ = _port(pair, out)
    with pytest.raises(TilesMismatchError):
        await pair.syncer(port).pull()
    rep = pair.agent.logs(PID).replica
    assert (await pair.agent.store.tree_head(rep)).size == 0
    assert await pair.agent.alarms.get(rep.origin) is None


async def test_the_own_log_and_other_calls_go_to_the_hub(pair: Pair, tmp_path: Path) -> None:
    """Only the replica's log is read from tiles: a read of the agent's own log, and
    state, go to the hub."""
    port, counted = _port(pair, tmp_path / "none")
    own = pair.agent.logs(PID).own.node
    await port.entries(PID, own, 0, 1)
    await port.consistency(PID, own, 0, 0)
    assert counted.reads == [f"entries {own} 0", f"consistency {own} 0 0"]
    assert (await port.state(PID)).logs
    assert port.requests == pair.honest.requests


async def test_a_pull_over_http_from_a_static_server(pair: Pair, tmp_path: Path) -> None:
    """The same pull, the tiles read over HTTP from a plain static server on loopback."""
    from jcm_sync.net.tiles_http import HttpTileSource
    from tests.net.static_server import serve

    out = tmp_path / "www"
    await _publish(pair, out)
    counted = Counted(pair.honest)
    with serve(out) as base:
        port = TilesHubPort(counted, HttpTileSource(base), pair.agent, PID)
        try:
            assert await pair.syncer(port, batch_size=4).pull() == pair.sizes["JP"]
        finally:
            await port.close()
    assert counted.reads == []
    assert await _replica(pair) == await _japan(pair)
