"""``services/witness_push.py``: the hub submits Japan's checkpoints to the partner agent's
witness listener (ADR 0037), over real HTTP on 127.0.0.1 with real stores.

Japan's log becomes agreed without the agent pulling; a 409 is recovered from the size the
agent returns; a Japan log of 10,000 entries is witnessed in steps, each step proved from
the last; the hub's schedule does it by itself; pull-side witnessing still works beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from jcm_sync.core.cosignature import verify_cosignatures
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.witness import witness_client
from jcm_sync.services.agreement import agreed_checkpoint
from jcm_sync.services.hub import Hub
from jcm_sync.services.witness import CosignedView, WitnessPort, cosigner_name, cosigner_verifiers
from jcm_sync.services.witness_push import Connect, WitnessPusher
from tests.net.witness_agents import PID, Listening, open_listening
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_reachable, with_param

__all__ = ["pg_reachable"]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Listening]:
    async with open_listening(tmp_path / "net") as p:
        yield p


async def agreed_size(p: Listening) -> int | None:
    logs = p.hub.logs(PID)
    cp = await agreed_checkpoint(p.hub.store, logs.root, logs.own)
    return None if cp is None else cp.size


async def replica_size(p: Listening) -> int:
    return (await p.agent.store.tree_head(p.agent.logs(PID).replica)).size


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_japans_log_is_agreed_without_the_agent_pulling(
    tmp_path: Path, backend: str, pg_reachable: str | None
) -> None:
    schema = None
    if backend == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schema = await make_schema()
    store = None if schema is None else with_param(PG_URL, "search_path", schema)
    try:
        async with open_listening(tmp_path / "net", store) as p:
            size = await p.append_japan(25)
            assert await agreed_size(p) is None  # the root requires MN's cosignature
            assert await p.pusher().submit(PID) == size
            assert await agreed_size(p) == size
            assert await replica_size(p) == 0  # the agent never pulled
            held = await p.agent.store.witnessed(p.hub.logs(PID).own.origin)
            assert held is not None
            assert held.size == size
            # the hub publishes the checkpoint with the agent's cosignature attached
            async with HubClient(p.running.url, p.agent.keys.transport) as c:
                view = await c.checkpoint(PID, "JP")
            assert view.note is not None
            root = p.agent.logs(PID).root
            mn = cosigner_verifiers(root, "jcm-sync.example", "MN", p.agent.clock())
            assert [x.name for x in verify_cosignatures(view.note, mn)] == [
                cosigner_name("jcm-sync.example", "MN")
            ]
            # nothing new: no request at all
            sent: list[bytes] = []
            assert await WitnessPusher(p.hub, recording(p, sent)).submit(PID) == size
            assert sent == []
            # the agent's pull later finds Japan's log cosigned on its side too
            await p.running.syncer(p.agent).sync_once()
            assert await replica_size(p) == size
            rep = p.agent.logs(PID).replica
            mine = await agreed_checkpoint(p.agent.store, root, rep)
            assert mine is not None
            assert mine.size == size
    finally:
        if schema is not None:
            await drop_schema(schema)


class Recording:
    """A witness client that records each add-checkpoint body it sends."""

    def __init__(self, inner: HubClient, sent: list[bytes]) -> None:
        self.inner, self.sent = inner, sent

    async def add_checkpoint(self, pid: str, body: bytes) -> bytes:
        self.sent.append(body)
        return await self.inner.add_checkpoint(pid, body)

    async def deliver_cosignatures(self, pid: str, node: str, note: bytes) -> CosignedView:
        return await self.inner.deliver_cosignatures(pid, node, note)


def recording(p: Listening, sent: list[bytes]) -> Connect:
    make = witness_client(p.hub)

    @asynccontextmanager
    async def connect(url: str) -> AsyncIterator[WitnessPort]:
        async with make(url) as client:
            yield Recording(client, sent)

    return connect


def old_sizes(sent: list[bytes]) -> list[int]:
    return [int(b.split(b"\n", 1)[0].removeprefix(b"old ")) for b in sent]


async def test_a_409_is_recovered_from_the_agents_size(pair: Listening) -> None:
    """The agent witnessed size 12 through a request whose answer the hub never kept (a
    lost answer): the hub asks from 0, hears 409 ``12``, asks again from 12 with a proof."""
    size = await pair.append_japan(30)
    await pair.client().add_checkpoint(PID, await pair.japan_body(0, 12))
    assert await pair.hub.store.cosigned_size(pair.hub.logs(PID).own) is None
    sent: list[bytes] = []
    assert await WitnessPusher(pair.hub, recording(pair, sent)).submit(PID) == size
    assert old_sizes(sent) == [0, 12]
    assert await agreed_size(pair) == size


async def test_ten_thousand_entries_witnessed_in_steps(pair: Listening) -> None:
    """Japan's log grows to 10,000 entries in five steps; each step is one request, proved
    from the size the agent cosigned at the step before."""
    sent: list[bytes] = []
    pusher = WitnessPusher(pair.hub, recording(pair, sent))
    started, done = time.perf_counter(), 0
    for step in range(1, 6):
        size = await pair.append_japan(2_000, start=done)
        done = size
        assert size == 2_000 * step
        assert await pusher.submit(PID) == size
        assert await agreed_size(pair) == size
    assert old_sizes(sent) == [0, 2_000, 4_000, 6_000, 8_000]
    assert all(b.count(b"\n") < 80 for b in sent)  # a proof is at most 63 lines
    held = await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin)
    assert held is not None
    assert held.size == 10_000
    assert await replica_size(pair) == 0
    assert time.perf_counter() - started < 120


async def test_no_url_or_no_agent_is_no_failure(tmp_path: Path) -> None:
    async with open_listening(tmp_path / "net") as p:
        size = await p.append_japan(3)
        assert [j.id for j in p.pusher().jobs()] == [f"witness-{PID}"]
        await p.listener.cleanup()  # the agent's listener is down: logged, not raised
        assert await p.pusher().submit(PID) is None
        assert await p.pusher().submit("JP-ID") is None  # not a partnership of this hub
        cfg = load_config(p.running.net.configs["JP"], env={})
        assert cfg.partnerships[0].witness_url == p.url
        assert await agreed_size(p) is None
        assert size == 3


async def test_the_hubs_schedule_witnesses_new_entries(tmp_path: Path) -> None:
    """``Hub.start_jobs`` runs the pusher every ``push_seconds``: entries appended (by
    another process, as an import would) become agreed without any call."""
    async with open_listening(tmp_path / "net") as p:
        env = {"JCM_SYNC_SCHEDULE_PUSH_SECONDS": "0.2"}
        p.hub.cfg = load_config(p.running.net.configs["JP"], env=env)
        hub = Hub(p.hub, witness=witness_client(p.hub))
        hub.start_jobs()
        try:
            size = await p.append_japan(7)
            for _ in range(100):
                if await agreed_size(p) == size:
                    break
                await asyncio.sleep(0.05)
            assert await agreed_size(p) == size
            more = await p.append_japan(5, start=size)
            for _ in range(100):
                if await agreed_size(p) == more:
                    break
                await asyncio.sleep(0.05)
            assert await agreed_size(p) == more
        finally:
            if hub._scheduler is not None:
                hub._scheduler.shutdown(wait=False)
