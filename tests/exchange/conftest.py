"""A real hub (aiohttp on 127.0.0.1, port 0) and real agents over SQLite files or
PostgreSQL, provisioned with ``jcm_sync.services.sample``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.ops import OpsServer, bind
from jcm_sync.net.server import HubServer, ServerSettings
from jcm_sync.services.agent import Syncer
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, partnership_records, provision
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_reachable, with_param

__all__ = ["pg_reachable"]


@dataclass
class Running:
    """A running hub and the agents' nodes, with helpers to restart either."""

    net: Network
    settings: ServerSettings
    hub_store: str | None
    hub: Node | None = None
    runner: web.AppRunner | None = None
    port: int = 0
    server: HubServer | None = None
    agents: dict[str, Node] = field(default_factory=dict)
    clients: list[HubClient] = field(default_factory=list)
    #: the hub's operations listener (/status, /metrics), on a port of its own
    ops_runner: web.AppRunner | None = None
    ops_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_hub(self) -> None:
        self.hub = await open_node(load_config(self.net.configs["JP"], env={}))
        self.server = HubServer(Hub(self.hub), self.settings)
        self.runner = self.server.runner()
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            sockets = site._server.sockets  # type: ignore[union-attr]
            self.port = sockets[0].getsockname()[1]
        ops_sock = bind("127.0.0.1", self.ops_port)
        self.ops_port = ops_sock.getsockname()[1]
        self.ops_runner = await OpsServer(self.server.hub).start(ops_sock)

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    async def stop_hub(self) -> None:
        if self.ops_runner is not None:
            await self.ops_runner.cleanup()
            self.ops_runner = None
        if self.runner is not None:
            await self.runner.cleanup()  # closes the hub's store too
            self.runner, self.hub = None, None

    async def agent(self, cc: str) -> Node:
        if cc not in self.agents:
            self.agents[cc] = await open_node(load_config(self.net.configs[cc], env={}))
        return self.agents[cc]

    async def restart_agent(self, cc: str) -> Node:
        await self.agents.pop(cc).close()
        return await self.agent(cc)

    def syncer(self, node: Node, *, batch_size: int = 50, key: object = None) -> Syncer:
        client = HubClient(self.url, node.keys.transport)  # type: ignore[arg-type]
        self.clients.append(client)
        return Syncer(node, client, node.cfg.partnerships[0].id, batch_size=batch_size)

    async def seed(self, cc: str, **kw: object) -> tuple[int, int]:
        """Import sample records into the agent's and the hub's own logs."""
        recs = partnership_records(cc, self.net.keys, **kw)  # type: ignore[arg-type]
        agent = await self.agent(cc)
        await agent.logs(f"JP-{cc}").service.append(recs.by_node[cc])
        assert self.hub is not None
        await self.hub.logs(f"JP-{cc}").service.append(recs.by_node["JP"])
        return len(recs.by_node[cc]), len(recs.by_node["JP"])

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for a in self.agents.values():
            await a.close()
        await self.stop_hub()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def network(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Running]:
    """A hub on SQLite or PostgreSQL with agents for MN and ID, on SQLite files."""
    hub_store = None
    schema = None
    if request.param == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schema = await make_schema()
        hub_store = with_param(PG_URL, "search_path", schema)
    net = provision(tmp_path / "net", ["MN", "ID"], hub_port=0, hub_store=hub_store)
    running = Running(net, ServerSettings(max_body_bytes=256 * 1024, max_concurrency_per_node=4),
                      hub_store)  # fmt: skip
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()
        if schema is not None:
            await drop_schema(schema)
