"""PostgreSQL restarted twice while an agent pushes 20,000 records into a running hub.

The hub (aiohttp on 127.0.0.1, port 0) keeps its logs in a throwaway cluster of its own
(``pgcluster.py``; never the shared server). While the agent pushes, the cluster is
stopped and started once (the test watches ``/readyz`` answer 503 problem+json, and a
signed request answer 503 with ``Retry-After``, while it is down) and restarted once with
``pg_ctl restart -m fast`` at whatever moment the push is in. The hub is never restarted:
its asyncpg pool must drop the connections the restarts broke and reconnect. The agent
retries as its daemon would. At the end the hub's replica must equal the agent's log
entry for entry (nothing lost, nothing duplicated), verify from its entries, and no
request may have been answered 500 nor logged a traceback.

``JCM_SYNC_SLOW=1`` adds a run that pushes 100,000 records and restarts four times.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from jcm_sync.core import merkle
from jcm_sync.errors import PeerRefusedError, StoreError, TransportError
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import READYZ_TIMEOUT_S, HubServer, ServerSettings
from jcm_sync.net.signing import RequestSigner, signed_request
from jcm_sync.services.agent import Syncer
from jcm_sync.services.hub import Hub
from jcm_sync.services.log_service import verify_log
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import fill_own_log, provision, signed_issuances
from tests.faults.fuzzing import Captured
from tests.faults.harness import summary
from tests.faults.pgcluster import REQUIRE_PG, PgCluster, start_cluster, unavailable

SLOW = os.environ.get("JCM_SYNC_SLOW") == "1"
PUSH_DEADLINE_S = 900
PROBLEM = "application/problem+json"
PID, CC = "JP-MN", "MN"
BASELINE = "ID"  # the partner whose push, with no fault, is the same-run baseline


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    reason = unavailable()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"JCM_SYNC_REQUIRE_PG=1 but {reason}")
        pytest.skip(reason)
    c = start_cluster()
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured().install()
    try:
        yield handler
    finally:
        handler.remove()


@dataclass
class HubUnderTest:
    node: Node
    runner: web.AppRunner
    url: str

    @classmethod
    async def start(cls, config: Path) -> HubUnderTest:
        node = await open_node(load_config(config, env={}))
        server = HubServer(Hub(node), ServerSettings(run_jobs=False))
        runner = server.runner()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return cls(node, runner, f"http://127.0.0.1:{port}")

    async def replica_size(self) -> int | None:
        try:
            return (await self.node.store.tree_head(self.node.logs(PID).replica)).size
        except StoreError:
            return None

    def statuses(self) -> Counter[str]:
        """Responses by status code, from the hub's own request metric."""
        seen: Counter[str] = Counter()
        for metric in self.node.metrics.request_seconds.collect():
            for s in metric.samples:
                if s.name.endswith("_count"):
                    seen[s.labels["status"]] += int(s.value)
        return seen


@dataclass
class Watch:
    """What the test saw of the outage."""

    readyz: Counter[int] = field(default_factory=Counter)
    readyz_not_problem: list[str] = field(default_factory=list)
    refusals: Counter[tuple[int, str]] = field(default_factory=Counter)
    down_answers: list[tuple[int, str, str | None]] = field(default_factory=list)
    sizes_at_restart: list[int] = field(default_factory=list)
    outage_seen: int = 0


async def readyz(session: aiohttp.ClientSession, url: str, watch: Watch) -> int:
    async with session.get(url + "/readyz") as resp:
        await resp.read()
        watch.readyz[resp.status] += 1
        if resp.status != 200 and resp.content_type != PROBLEM:
            body = (await resp.read())[:300]
            watch.readyz_not_problem.append(f"{resp.status} {resp.content_type} {body!r}")
        return resp.status


async def until_ready(session: aiohttp.ClientSession, url: str, watch: Watch) -> float:
    """Seconds until ``/readyz`` answers 200 again (the hub reconnected by itself)."""
    t0 = time.monotonic()
    while await readyz(session, url, watch) != 200:
        assert time.monotonic() - t0 < 60, "the hub did not become ready after PostgreSQL returned"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def test_postgres_restarted_twice_mid_ingest(
    cluster: PgCluster, tmp_path: Path, captured: Captured, session: aiohttp.ClientSession
) -> None:
    """20,000 records pushed while PostgreSQL is restarted twice: nothing lost."""
    await run_restarts(cluster, tmp_path, captured, session, records=20_000, restarts=2)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fault run: set JCM_SYNC_SLOW=1")
async def test_postgres_restarted_4_times_in_100000_records(
    cluster: PgCluster, tmp_path: Path, captured: Captured, session: aiohttp.ClientSession
) -> None:
    await run_restarts(cluster, tmp_path, captured, session, records=100_000, restarts=4)


async def run_restarts(
    cluster: PgCluster,
    tmp_path: Path,
    captured: Captured,
    session: aiohttp.ClientSession,
    *,
    records: int,
    restarts: int,
) -> None:
    net = provision(tmp_path / "net", [CC, BASELINE], hub_port=0, hub_store=cluster.url)
    hub = await HubUnderTest.start(net.configs["JP"])
    agent = await open_node(load_config(net.configs[CC], env={}))
    client = HubClient(hub.url, agent.keys.transport)
    other = await open_node(load_config(net.configs[BASELINE], env={}))
    other_client = HubClient(hub.url, other.keys.transport)
    watch = Watch()
    try:
        # the same-run baseline: as many records, the same hub, PostgreSQL left alone
        base_envs, base_checked = signed_issuances(
            f"JP-{BASELINE}", BASELINE, net.keys[BASELINE], records, datetime.now(UTC)
        )
        await fill_own_log(other, f"JP-{BASELINE}", base_envs, base_checked)
        t0 = time.monotonic()
        assert await Syncer(other, other_client, f"JP-{BASELINE}", batch_size=500).push() == records
        baseline_s = time.monotonic() - t0

        envelopes, checked = signed_issuances(PID, CC, net.keys[CC], records, datetime.now(UTC))
        own = agent.logs(PID).own
        await fill_own_log(agent, PID, envelopes, checked)
        syncer = Syncer(agent, client, PID, batch_size=500)
        pushing_done = asyncio.Event()

        async def push_until_done() -> int:
            """The agent's retry loop: push again after every refusal or outage."""
            deadline = time.monotonic() + PUSH_DEADLINE_S
            attempts = 0
            try:
                while True:
                    attempts += 1
                    try:
                        await syncer.push()
                        if await hub.replica_size() == records:
                            return attempts
                    except PeerRefusedError as exc:
                        watch.refusals[(exc.status, exc.code)] += 1
                    except TransportError as exc:
                        watch.refusals[(0, type(exc).__name__)] += 1
                    assert time.monotonic() < deadline, f"push not done in {PUSH_DEADLINE_S} s"
                    await asyncio.sleep(0.2)
            finally:
                pushing_done.set()

        async def wait_for_size(at_least: int) -> int:
            while True:
                size = await hub.replica_size()
                if size is not None and size >= at_least:
                    return size
                assert not pushing_done.is_set(), "the push ended before the restart point"
                await asyncio.sleep(0.02)

        async def outage_probe() -> None:
            """While PostgreSQL is stopped: /readyz and a signed request both say 503."""
            status = await readyz(session, hub.url, watch)
            assert status == 503, f"/readyz answered {status} while PostgreSQL was down"
            watch.outage_seen += 1
            signer = RequestSigner(agent.keys.transport)
            async with await signed_request(
                session, signer, "GET", f"{hub.url}/v1/partnerships/{PID}/state"
            ) as resp:
                await resp.read()
                watch.down_answers.append(
                    (resp.status, resp.content_type, resp.headers.get("Retry-After"))
                )

        async def restart_cluster() -> None:
            for k in range(restarts):
                size = await wait_for_size(records * (k + 1) // (restarts + 2))
                watch.sizes_at_restart.append(size)
                if k % 2 == 0:  # stop, look at the outage from outside, start
                    await asyncio.to_thread(cluster.stop, "fast")
                    await outage_probe()
                    await asyncio.sleep(0.5)  # the agent meets the outage too
                    await asyncio.to_thread(cluster.start)
                    cluster.restarts += 1
                else:  # a restart at whatever moment, /readyz polled throughout
                    before = watch.readyz[503]
                    poller = asyncio.create_task(poll_readyz())
                    await asyncio.to_thread(cluster.restart, "fast")
                    poller.cancel()
                    await asyncio.gather(poller, return_exceptions=True)
                    if watch.readyz[503] > before:
                        watch.outage_seen += 1
                await until_ready(session, hub.url, watch)

        async def poll_readyz() -> None:
            while True:
                await readyz(session, hub.url, watch)
                await asyncio.sleep(0.01)

        started = time.monotonic()
        pusher = asyncio.create_task(push_until_done())
        try:
            await restart_cluster()
            attempts = await pusher
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)
        elapsed = time.monotonic() - started

        # the hub recovered without being restarted, and says so
        assert await readyz(session, hub.url, watch) == 200
        assert cluster.restarts == restarts
        assert all(s < records for s in watch.sizes_at_restart), watch.sizes_at_restart
        assert watch.outage_seen >= (restarts + 1) // 2
        assert not captured.tracebacks(), "\n".join(captured.tracebacks()[:3])
        assert not watch.readyz_not_problem, watch.readyz_not_problem
        for status, ctype, retry_after in watch.down_answers:
            assert (status, ctype) == (503, PROBLEM)
            assert retry_after is not None
            assert int(retry_after) > 0
        statuses = hub.statuses()
        assert not [s for s in statuses if s.startswith("5") and s != "503"], statuses
        assert not captured.tracebacks(), captured.tracebacks()[:3]

        # nothing lost, nothing duplicated: the replica is the agent's log, entry for entry
        replica = hub.node.logs(PID).replica
        mine = await agent.store.entries(own, 0, records)
        theirs = await hub.node.store.entries(replica, 0, records)
        assert (await hub.node.store.tree_head(replica)).size == records
        assert [(e.index, e.envelope) for e in theirs] == [(e.index, e.envelope) for e in mine]
        assert len({e.record_id for e in theirs}) == records
        assert await hub.node.store.tree_head(replica) == await agent.store.tree_head(own)
        audit = await verify_log(hub.node.store, replica)
        assert audit.ok, audit.problems[:5]
        assert audit.root == merkle.root([merkle.leaf_hash(e) for e in envelopes])
        held = await hub.node.store.latest_checkpoint(replica)
        assert held is not None
        assert held.size == records
        summary(
            f"PostgreSQL restarts: {cluster.restarts} at replica sizes {watch.sizes_at_restart};"
            f" records pushed: {records} in {elapsed:.1f} s ({attempts} push attempts; the"
            f" same push without restarts, same run: {baseline_s:.1f} s);"
            f" lost 0, duplicated 0; outage seen on /readyz: {watch.outage_seen}"
            f" (readyz {dict(watch.readyz)}); agent saw {dict(watch.refusals)};"
            f" hub answers {dict(statuses)}"
        )
    finally:
        for c in (client, other_client):
            await c.close()
        for n in (agent, other):
            await n.close()
        await hub.runner.cleanup()


async def test_readyz_says_503_while_postgres_hangs(
    cluster: PgCluster, tmp_path: Path, captured: Captured, session: aiohttp.ClientSession
) -> None:
    """A server that stops answering (SIGSTOP) is not ready; it is again once it answers."""
    net = provision(tmp_path / "net", [CC], hub_port=0, hub_store=cluster.url)
    hub = await HubUnderTest.start(net.configs["JP"])
    watch = Watch()
    try:
        assert await readyz(session, hub.url, watch) == 200
        cluster.freeze()
        try:
            t0 = time.monotonic()
            status = await readyz(session, hub.url, watch)
            waited = time.monotonic() - t0
        finally:
            cluster.thaw()
        assert status == 503
        assert READYZ_TIMEOUT_S <= waited < READYZ_TIMEOUT_S + 10
        assert not watch.readyz_not_problem, watch.readyz_not_problem
        assert await until_ready(session, hub.url, watch) < 30
        assert not captured.tracebacks(), "\n".join(captured.tracebacks()[:3])
    finally:
        await hub.runner.cleanup()
