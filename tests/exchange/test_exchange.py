"""Push, pull and anti-entropy between a real hub and real agents over loopback."""

from __future__ import annotations

import pytest

from tests.exchange.conftest import Running


async def test_push_pull_converge(network: Running) -> None:
    """After one sync both sides hold identical copies of both logs."""
    n_mn, n_jp = await network.seed("MN")
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    result = await syncer.sync_once()
    assert (result.pushed, result.pulled, result.in_sync) == (n_mn, n_jp, True)
    hub = network.hub
    assert hub is not None
    mn = agent.logs("JP-MN")
    hub_logs = hub.logs("JP-MN")
    assert await hub.store.tree_head(hub_logs.replica) == await agent.store.tree_head(mn.own)
    assert await agent.store.tree_head(mn.replica) == await hub.store.tree_head(hub_logs.own)
    # the exact bytes travelled: every envelope is identical on both sides
    ours = [e.envelope for e in await agent.store.entries(mn.own)]
    theirs = [e.envelope for e in await hub.store.entries(hub_logs.replica)]
    assert ours == theirs


async def test_anti_entropy_in_sync_is_one_round_trip(network: Running) -> None:
    """When both sides agree, anti-entropy is a single request."""
    await network.seed("MN")
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    await syncer.sync_once()
    result = await syncer.anti_entropy()
    assert result.in_sync
    assert result.round_trips == 1
    assert result.pushed == result.pulled == 0


@pytest.mark.parametrize("batch_size", [1, 7, 1000], ids=["batch-1", "batch-7", "batch-1000"])
async def test_batches_of_any_size_converge(network: Running, batch_size: int) -> None:
    """Push and pull in small and large batches give the same result."""
    n_mn, n_jp = await network.seed("MN")
    agent = await network.agent("MN")
    result = await network.syncer(agent, batch_size=batch_size).sync_once()
    assert (result.pushed, result.pulled) == (n_mn, n_jp)
