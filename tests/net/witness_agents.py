"""A provisioned hub and an MN agent that serves its witness listener (ADR 0037).

``open_listening`` provisions Japan's hub (SQLite, or PostgreSQL when given a store URL)
and one agent on SQLite, with the mutual cosignature quorum in the root (so "agreed" is
meaningful), starts the agent's ``WitnessListener`` on 127.0.0.1 port 0, writes that URL
into the hub's configuration as the partnership's ``witness_url``, then opens the hub.
The hub's HTTP server runs too, so the agent can also push and pull as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from jcm_sync.core import checkpoint
from jcm_sync.core.witness_wire import format_add_checkpoint
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.ops import bind
from jcm_sync.net.server import ServerSettings
from jcm_sync.net.witness import witness_client
from jcm_sync.net.witness_listener import WitnessListener, listener_settings
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import fill_own_log, provision, signed_issuances
from jcm_sync.services.witness_push import WitnessPusher
from tests.exchange.conftest import Running

PID = "JP-MN"
ADD = f"/v1/partnerships/{PID}/witness/add-checkpoint"


@dataclass
class Listening:
    """The running hub, the agent's node and its witness listener."""

    running: Running
    agent: Node
    listener: web.AppRunner
    url: str

    @property
    def hub(self) -> Node:
        assert self.running.hub is not None
        return self.running.hub

    def client(self, key: object = None) -> HubClient:
        """A client of the agent's listener, signed by the hub's transport key (or ``key``)."""
        c = HubClient(self.url, key or self.hub.keys.transport)  # type: ignore[arg-type]
        self.running.clients.append(c)
        return c

    def pusher(self) -> WitnessPusher:
        """The hub's pusher, over HTTP as in ``registry serve``."""
        return WitnessPusher(self.hub, witness_client(self.hub))

    async def append_japan(self, n: int, start: int = 0) -> int:
        """``n`` more signed records in Japan's log and a checkpoint; the new size."""
        envs, checked = signed_issuances(
            PID, "JP", self.running.net.keys["JP"], start + n, datetime.now(UTC)
        )
        await fill_own_log(self.hub, PID, envs[start:], checked)
        return (await self.hub.logs(PID).service.sign_checkpoint()).size

    async def japan_body(self, old: int, size: int) -> bytes:
        """An add-checkpoint body of Japan's log at ``size``, proved from ``old``."""
        own = self.hub.logs(PID).own
        root = await self.hub.store.root_at(own, size)
        note = checkpoint.sign_checkpoint(
            checkpoint.Checkpoint(own.origin, size, root), self.hub.keys.checkpoint.key
        )
        proof = await self.hub.store.consistency_proof(own, old, size) if 0 < old < size else []
        return format_add_checkpoint(old, proof, note)


@asynccontextmanager
async def open_listening(
    directory: Path, hub_store: str | None = None, *, run_jobs: bool = False
) -> AsyncIterator[Listening]:
    net = provision(directory, ["MN"], hub_port=0, hub_store=hub_store, cosign=True)
    agent = await open_node(load_config(net.configs["MN"], env={}))
    sock = bind("127.0.0.1", 0)
    listener = await WitnessListener(agent, listener_settings(agent)).start(sock)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    hub_cfg = net.configs["JP"]
    hub_cfg.write_text(hub_cfg.read_text() + f'witness_url = "{url}"\n')  # the last table
    running = Running(net, ServerSettings(run_jobs=run_jobs), hub_store)
    running.agents["MN"] = agent
    try:
        await running.start_hub()
        yield Listening(running, agent, listener, url)
    finally:
        await listener.cleanup()
        sock.close()
        await running.close()
