"""Restarts, resumption and forks between a real hub and real agents."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import ForkError, PeerRefusedError, TransportError
from jcm_sync.services.sample import partnership_records
from tests.exchange.conftest import Running


async def heads_equal(network: Running, cc: str) -> bool:
    hub, agent = network.hub, await network.agent(cc)
    assert hub is not None
    pid = f"JP-{cc}"
    a, h = agent.logs(pid), hub.logs(pid)
    return await hub.store.tree_head(h.replica) == await agent.store.tree_head(
        a.own
    ) and await agent.store.tree_head(a.replica) == await hub.store.tree_head(h.own)


async def test_hub_restarted_in_the_middle_of_a_push(network: Running) -> None:
    """The hub goes down after the first batch; after it returns the push completes exactly."""
    n_mn, _ = await network.seed("MN", projects=6)
    agent = await network.agent("MN")
    syncer = network.syncer(agent, batch_size=5)
    original_push = syncer.client.push
    calls: list[int] = []

    async def push_then_stop(*a, **kw):  # type: ignore[no-untyped-def]
        resp = await original_push(*a, **kw)
        calls.append(resp.size)
        if len(calls) == 1:  # the hub stops right after acknowledging the first batch
            await network.stop_hub()
        return resp

    syncer.client.push = push_then_stop  # type: ignore[method-assign]
    with pytest.raises(TransportError):
        await syncer.push()
    assert calls[0] == 5  # acknowledged before the hub went down (a second may have been)
    syncer.client.push = original_push  # type: ignore[method-assign]
    await network.start_hub()
    hub = network.hub
    assert hub is not None
    held = (await hub.store.tree_head(hub.logs("JP-MN").replica)).size
    assert held >= max(calls)  # nothing acknowledged was lost
    assert held < n_mn
    pushed = await syncer.push()
    assert pushed == n_mn - held
    await syncer.pull()
    assert await heads_equal(network, "MN")


async def test_agent_restarted_resumes_where_it_stopped(network: Running) -> None:
    """An agent that stops after part of a push resumes from the hub's size, not from 0."""
    n_mn, n_jp = await network.seed("MN", projects=6)
    agent = await network.agent("MN")
    syncer = network.syncer(agent, batch_size=4)
    entries = [e.envelope for e in await agent.store.entries(agent.logs("JP-MN").own)]
    await syncer.client.push("JP-MN", "MN", PushRequest(start=0, entries=entries[:8]))
    agent = await network.restart_agent("MN")
    syncer = network.syncer(agent, batch_size=4)
    result = await syncer.sync_once()
    assert result.pushed == n_mn - 8
    assert result.pulled == n_jp
    assert await heads_equal(network, "MN")


async def test_new_records_after_sync_flow_both_ways(network: Running) -> None:
    """Records added on either side after a sync arrive on the next one."""
    await network.seed("MN", projects=2)
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    await syncer.sync_once()
    more = partnership_records("MN", network.net.keys, projects=4, seed=7)
    await agent.logs("JP-MN").service.append(more.by_node["MN"])
    assert network.hub is not None
    await network.hub.logs("JP-MN").service.append(more.by_node["JP"])
    result = await syncer.sync_once()
    assert (result.pushed, result.pulled) == (len(more.by_node["MN"]), len(more.by_node["JP"]))
    assert await heads_equal(network, "MN")


async def test_hub_refuses_a_different_entry_at_a_held_index(network: Running) -> None:
    """Another signed record at an index the hub holds is a fork: 409, alarm, nothing written."""
    await network.seed("MN", projects=2)
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    await syncer.push()
    hub = network.hub
    assert hub is not None
    before = await hub.store.tree_head(hub.logs("JP-MN").replica)
    other = partnership_records("MN", network.net.keys, projects=1, seed=99).by_node["MN"]
    with pytest.raises(PeerRefusedError) as exc:
        await syncer.client.push("JP-MN", "MN", PushRequest(start=1, entries=other[:1]))
    assert exc.value.status == 409
    assert exc.value.code == "fork"
    assert await hub.store.tree_head(hub.logs("JP-MN").replica) == before
    alarm = await hub.alarms.get(hub.logs("JP-MN").replica.origin)
    assert alarm is not None
    assert alarm.held_checkpoint is not None
    # replication of that log stays stopped until an operator clears the alarm
    with pytest.raises(PeerRefusedError) as exc:
        await syncer.client.push("JP-MN", "MN", PushRequest(start=before.size, entries=[]))
    assert exc.value.code == "fork"


async def test_agent_detects_japan_rewriting_its_log(network: Running, tmp_path: Path) -> None:
    """If the hub serves a history of Japan's log that does not extend the one the agent
    verified, the agent raises a fork alarm, keeps both checkpoints and stops pulling."""
    if network.hub_store is not None:
        pytest.skip("rewriting the hub's history is simulated on its SQLite file")
    await network.seed("MN", projects=2)
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    await syncer.sync_once()
    held = await agent.store.latest_checkpoint(agent.logs("JP-MN").replica)
    assert held is not None
    # Japan's hub loses its database and republishes a different history
    await network.stop_hub()
    for f in (network.net.configs["JP"].parent).glob("jcm-sync.db*"):
        f.unlink()
    await network.start_hub()
    assert network.hub is not None
    other = partnership_records("MN", network.net.keys, projects=5, seed=5)
    await network.hub.logs("JP-MN").service.append(other.by_node["JP"])
    with pytest.raises(ForkError):
        await syncer.pull()
    replica = agent.logs("JP-MN").replica
    alarm = await agent.alarms.get(replica.origin)
    assert alarm is not None
    assert alarm.held_checkpoint == held.note
    assert alarm.offered_checkpoint is not None
    assert alarm.offered_checkpoint != held.note
    # nothing held was overwritten, and the next pull refuses without asking
    assert await agent.store.latest_checkpoint(replica) == held
    with pytest.raises(ForkError):
        await syncer.pull()
    # the alarm shows in `jcm-sync status`, which exits 1
    await agent.close()
    network.agents.pop("MN")
    code = await asyncio.to_thread(
        main, ["status", "--config", str(network.net.configs["MN"]), "--json"]
    )
    assert code == 1


async def test_status_reports_sizes_and_last_sync(
    network: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jcm-sync status --json` shows each log's local and remote size and last sync."""
    n_mn, n_jp = await network.seed("MN", projects=2)
    agent = await network.agent("MN")
    await network.syncer(agent).sync_once()
    await agent.close()
    network.agents.pop("MN")
    capsys.readouterr()
    argv = ["status", "--config", str(network.net.configs["MN"]), "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    data = json.loads(capsys.readouterr().out)
    logs = {lg["node"]: lg for lg in data["partnerships"][0]["logs"]}
    assert (logs["MN"]["local_size"], logs["MN"]["remote_size"], logs["MN"]["lag"]) == (
        n_mn,
        n_mn,
        0,
    )
    assert (logs["JP"]["local_size"], logs["JP"]["remote_size"]) == (n_jp, n_jp)
    assert logs["MN"]["last_sync"] is not None
    assert datetime.fromisoformat(logs["MN"]["last_sync"]) <= datetime.now(UTC)
