"""End to end: a running hub publishes its logs as tlog-tiles on its schedule ([tiles]),
a plain static server serves them, and an agent pulls Japan's log from them over HTTP
(ADR 0041), reaching the hub's state."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jcm_sync.net.client import HubClient
from jcm_sync.net.server import ServerSettings
from jcm_sync.net.tiles_http import HttpTileSource
from jcm_sync.services.agent import Syncer
from jcm_sync.services.sample import provision
from jcm_sync.services.tiles_pull import TilesHubPort
from tests.exchange.conftest import Running
from tests.net.static_server import serve


async def test_a_hub_publishes_on_schedule_and_an_agent_pulls_from_a_static_server(
    tmp_path: Path,
) -> None:
    """The hub's [tiles] job writes Japan's log; the agent's pull reads every page from the
    static server and ends with the hub's tree head and checkpoint."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    www = tmp_path / "www"
    with net.configs["JP"].open("a") as f:
        f.write(f'\n[tiles]\ndir = "{www}"\ninterval_seconds = 0.2\n')
    running = Running(net, ServerSettings(), None)
    await running.start_hub()
    try:
        _, jp_records = await running.seed("MN", projects=2)
        assert running.hub is not None
        own = running.hub.logs("JP-MN").own
        published = www / "JP-MN" / "JP" / "checkpoint"
        latest = await running.hub.store.latest_checkpoint(own)
        assert latest is not None
        for _ in range(200):  # the job runs every 0.2 s (with the configured jitter)
            if published.exists() and published.read_bytes().startswith(
                latest.note.split(b"\n\n")[0]
            ):
                break
            await asyncio.sleep(0.05)
        assert published.exists()
        agent = await running.agent("MN")
        client = HubClient(running.url, agent.keys.transport)
        with serve(www) as base:
            port = TilesHubPort(client, HttpTileSource(base), agent, "JP-MN")
            try:
                pulled = await Syncer(agent, port, "JP-MN", batch_size=4).pull()
            finally:
                await port.close()
        assert pulled == jp_records
        assert port.served >= jp_records // 4
        rep = agent.logs("JP-MN").replica
        assert await agent.store.tree_head(rep) == await running.hub.store.tree_head(own)
    finally:
        await running.close()
