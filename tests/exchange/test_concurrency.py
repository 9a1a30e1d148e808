"""Concurrency that fits the protocol (issue 8, ADR 0009): one agent stays within the
hub's per-node limit on its own, even right after it was killed mid-push; every 429
carries Retry-After and the agent honours it; a cancelled request frees its slot; an
agent job cancelled by anything but the shutdown is a recorded, backed-off failure."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from jcm_sync.errors import PeerRefusedError, TransportError
from jcm_sync.local.config import ScheduleSection
from jcm_sync.local.status import read_status
from jcm_sync.net.client import HubClient, parse_retry_after
from jcm_sync.net.server import ServerSettings
from jcm_sync.net.signing import RequestSigner, signed_request
from jcm_sync.services.agent import PUSH_WINDOW, AgentDaemon, Syncer
from jcm_sync.services.log_service import verify_log
from jcm_sync.services.node import Node
from jcm_sync.services.sample import free_port, partnership_records, provision
from tests.exchange.conftest import Running

FAST = ScheduleSection(
    push_seconds=0.2, pull_seconds=0.2, anti_entropy_seconds=0.3, jitter_seconds=0.05,
    backoff_initial_seconds=0.2, backoff_max_seconds=5.0, batch_size=10,
)  # fmt: skip
"""Every job at short intervals; small batches so that a push keeps its window full."""


def answers(node: Node, status: int) -> int:
    """How many requests the hub answered with ``status`` (its request metric)."""
    total = 0.0
    for metric in node.metrics.registry.collect():
        if metric.name != "jcm_sync_request_seconds":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels.get("status") == str(status):
                total += sample.value
    return int(total)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.1
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return await predicate()


@contextlib.asynccontextmanager
async def daemon_running(daemon: AgentDaemon) -> AsyncIterator[AgentDaemon]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_default_agent_never_trips_a_default_hub(tmp_path: Path) -> None:
    """All four jobs at short intervals while both sides keep appending: the hub never
    answers 429, and never sees more than PUSH_WINDOW requests of the agent at once."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    try:
        hub, server = running.hub, running.server
        assert hub is not None
        assert server is not None
        agent = await running.agent("MN")
        agent.cfg = msgspec.structs.replace(agent.cfg, schedule=FAST)
        recs = partnership_records("MN", net.keys, projects=40)
        mine, japan = recs.by_node["MN"], recs.by_node["JP"]
        daemon = AgentDaemon(running.syncer(agent, batch_size=FAST.batch_size))
        async with daemon_running(daemon):
            rounds = 12  # about 6 s of new records on both sides
            a, b = -(-len(mine) // rounds), -(-len(japan) // rounds)
            for k in range(rounds):
                if mine[k * a : (k + 1) * a]:
                    await agent.logs("JP-MN").service.append(mine[k * a : (k + 1) * a])
                if japan[k * b : (k + 1) * b]:
                    await hub.logs("JP-MN").service.append(japan[k * b : (k + 1) * b])
                await asyncio.sleep(0.5)

            async def converged() -> bool:
                theirs = await hub.store.tree_head(hub.logs("JP-MN").replica)
                ours = await agent.store.tree_head(agent.logs("JP-MN").replica)
                return theirs.size == len(mine) and ours.size == len(japan)

            assert await wait_until(converged, 30), daemon.syncer.status.logs
        assert answers(hub, 429) == 0
        assert answers(hub, 200) > 50  # the jobs did run, many times
        assert server.peak_in_flight[("JP-MN", "MN")] <= PUSH_WINDOW
        for name, job in (await read_status(agent.store, "JP-MN")).jobs.items():
            assert "429" not in (job.last_error or ""), (name, job.last_error)
    finally:
        await running.close()


async def test_an_agent_killed_mid_push_and_restarted_gets_no_429(tmp_path: Path) -> None:
    """``kill -9`` of an agent process while two of its push batches are being handled,
    then an immediate restart: the hub cancels the dead agent's handlers (its slots are
    freed), the new agent never gets a 429, and the replica ends equal to the agent's log
    and verifies."""
    port = free_port()
    net = provision(tmp_path / "net", ["MN"], hub_port=port)
    running = Running(net, ServerSettings(run_jobs=False), None)
    running.port = port
    await running.start_hub()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hub, server = running.hub, running.server
        assert hub is not None
        assert server is not None
        recs = partnership_records("MN", net.keys, projects=60)
        mine = recs.by_node["MN"]
        agent = await running.agent("MN")
        await agent.logs("JP-MN").service.append(mine)
        await running.agents.pop("MN").close()  # the agent process owns its store now
        # while ``hold`` is set, every push handler waits (a hub slow to verify)
        hold, held = asyncio.Event(), []
        push = server.hub.push

        async def slow_push(*args: Any, **kwargs: Any) -> Any:
            if hold.is_set():
                held.append(1)
                await asyncio.sleep(30)
            return await push(*args, **kwargs)

        server.hub.push = slow_push  # type: ignore[method-assign]
        env = {
            **os.environ,
            "JCM_SYNC_SCHEDULE_PUSH_SECONDS": "0.3",
            "JCM_SYNC_SCHEDULE_PULL_SECONDS": "0.3",
            "JCM_SYNC_SCHEDULE_ANTI_ENTROPY_SECONDS": "0.5",
            "JCM_SYNC_SCHEDULE_JITTER_SECONDS": "0.05",
            "JCM_SYNC_SCHEDULE_BATCH_SIZE": "10",
        }
        cmd = [sys.executable, "-m", "jcm_sync", "agent", "run", "--config", str(net.configs["MN"])]
        log_path = tmp_path / "agent.log"

        def start_agent() -> None:
            with log_path.open("ab") as out:
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=out))

        replica = hub.logs("JP-MN").replica

        async def replica_at_least(n: int) -> bool:
            return (await hub.store.tree_head(replica)).size >= n

        start_agent()
        assert await wait_until(lambda: replica_at_least(60), 30), log_path.read_text()
        hold.set()
        assert await wait_until(lambda: _true(len(held) >= PUSH_WINDOW), 10)
        assert server._in_flight[("JP-MN", "MN")] >= PUSH_WINDOW
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)

        async def slots_freed() -> bool:
            return server._in_flight.get(("JP-MN", "MN"), 0) == 0

        assert await wait_until(slots_freed, 5), "the dead agent's requests kept their slots"
        assert answers(hub, 499) >= PUSH_WINDOW  # cancelled, not left to sleep 30 s
        hold.clear()
        start_agent()
        assert await wait_until(lambda: replica_at_least(len(mine)), 60), log_path.read_text()
        assert answers(hub, 429) == 0, log_path.read_text()
        # a whole number 429, not the digits of a timestamp's fraction (".099429Z")
        assert re.search(r"\b429\b", log_path.read_text()) is None, log_path.read_text()
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(20) == 0
        assert [e.envelope for e in await hub.store.entries(replica)] == mine
        audit = await verify_log(hub.store, replica)
        assert audit.ok, audit.problems
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        await running.close()


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def busy_hub(tmp_path: Path) -> AsyncIterator[tuple[Running, asyncio.Event]]:
    """A hub that lets MN have one request in flight and asks for 2 s after a 429, with
    its one slot taken by a checkpoint request that waits until the event is set."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    settings = ServerSettings(run_jobs=False, max_concurrency_per_node=1, retry_after_seconds=2)
    running = Running(net, settings, None)
    await running.start_hub()
    assert running.server is not None
    release, entered = asyncio.Event(), asyncio.Event()
    checkpoint = running.server.hub.checkpoint

    async def parked(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await checkpoint(*args, **kwargs)

    running.server.hub.checkpoint = parked  # type: ignore[method-assign]
    session = aiohttp.ClientSession()
    url = running.url + "/v1/partnerships/JP-MN/logs/JP/checkpoint"
    holder = asyncio.create_task(signed_request(session, RequestSigner(net.keys["MN"]), "GET", url))
    await asyncio.wait_for(entered.wait(), 10)
    try:
        yield running, release
    finally:
        release.set()
        with contextlib.suppress(Exception):
            (await holder).release()
        await session.close()
        await running.close()


async def test_a_429_carries_retry_after_and_the_agent_waits_that_long(
    busy_hub: tuple[Running, asyncio.Event],
) -> None:
    """With the node's only slot taken, every request of the agent is refused with 429
    and ``Retry-After: 2``; after each refusal the agent sends nothing for 2 s (its
    initial back-off is 0.2 s), and once the slot is free it catches up."""
    running, release = busy_hub
    hub = running.hub
    assert hub is not None
    await running.seed("MN")
    agent = await running.agent("MN")
    agent.cfg = msgspec.structs.replace(agent.cfg, schedule=FAST)
    syncer = running.syncer(agent, batch_size=FAST.batch_size)
    client = syncer.client
    calls: list[tuple[float, float, int, float | None]] = []  # sent, answered, status, wait
    call = client._call

    async def timed(*args: Any, **kwargs: Any) -> Any:
        sent = time.monotonic()
        try:
            return await call(*args, **kwargs)
        except PeerRefusedError as exc:
            calls.append((sent, time.monotonic(), exc.status, exc.retry_after))
            raise

    client._call = timed  # type: ignore[method-assign]
    daemon = AgentDaemon(syncer)
    async with daemon_running(daemon):
        await asyncio.sleep(5)
        refused = list(calls)
        release.set()

        async def converged() -> bool:
            theirs = await hub.store.tree_head(hub.logs("JP-MN").replica)
            ours = await agent.store.tree_head(agent.logs("JP-MN").own)
            return theirs.size == ours.size

        assert await wait_until(converged, 20)
    assert len(refused) >= 2, refused
    assert all(status == 429 for _, _, status, _ in refused), refused
    assert all(retry == 2.0 for _, _, _, retry in refused), refused
    for (_, answered, _, _), (sent, _, _, _) in itertools.pairwise(refused):
        assert sent - answered >= 2.0 - 0.05, refused
    assert answers(hub, 429) >= len(refused)


async def test_every_429_and_503_carries_retry_after(
    busy_hub: tuple[Running, asyncio.Event],
) -> None:
    """A raw 429 is problem+json with ``Retry-After``; so is ``/readyz`` while the hub
    shuts down (a 503)."""
    running, _ = busy_hub
    assert running.server is not None
    async with aiohttp.ClientSession() as session:
        url = running.url + "/v1/partnerships/JP-MN/state"
        resp = await signed_request(session, RequestSigner(running.net.keys["MN"]), "GET", url)
        async with resp:
            body = await resp.json(content_type=None)
            assert resp.status == 429
            assert resp.content_type == "application/problem+json"
            assert body["code"] == "too-many-requests"
            assert resp.headers["Retry-After"] == "2"
        running.server.shutting_down = True
        async with session.get(running.url + "/readyz") as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) >= 1


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.fixture
async def stalling_hub(tmp_path: Path) -> AsyncIterator[tuple[Running, asyncio.Event]]:
    """A hub whose /state handler sleeps 3 s (past the agent's 0.5 s timeout) while the
    event is clear."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    assert running.server is not None
    fast = asyncio.Event()
    state = running.server.hub.state

    async def stalling(*args: Any, **kwargs: Any) -> Any:
        if not fast.is_set():
            await asyncio.sleep(3)
        return await state(*args, **kwargs)

    running.server.hub.state = stalling  # type: ignore[method-assign]
    try:
        yield running, fast
    finally:
        await running.close()


def _daemon(running: Running, agent: Node, timeout: float) -> AgentDaemon:
    client = HubClient(running.url, agent.keys.transport, timeout=timeout)  # type: ignore[arg-type]
    running.clients.append(client)
    return AgentDaemon(Syncer(agent, client, "JP-MN", batch_size=FAST.batch_size))


async def test_a_timed_out_or_cancelled_job_is_a_recorded_failure(
    stalling_hub: tuple[Running, asyncio.Event], caplog: pytest.LogCaptureFixture
) -> None:
    """A request that outlives the client's timeout, and a job cancelled mid-request by
    something other than the shutdown (what aiohttp's timer does when it loses its race
    with the answer): each is recorded in the job's status and backed off, nothing
    escapes to the scheduler, and the jobs go on and converge once the hub answers."""
    running, fast = stalling_hub
    await running.seed("MN")
    agent = await running.agent("MN")
    agent.cfg = msgspec.structs.replace(agent.cfg, schedule=FAST)
    daemon = _daemon(running, agent, timeout=0.5)
    caplog.set_level(logging.INFO)
    async with daemon_running(daemon):

        async def timed_out() -> bool:
            job = daemon.syncer.status.jobs.get("push")
            return job is not None and "did not answer in time" in (job.last_error or "")

        assert await wait_until(timed_out, 10)
        assert daemon.backoff["push"].failures >= 1
        # a stray cancellation of a job waiting on the hub
        await asyncio.sleep(0.1)
        assert await wait_until(lambda: _true(bool(daemon._running)), 10)
        for task in list(daemon._running):
            task.cancel()

        async def cancelled() -> bool:
            return any(
                "cancelled before the hub answered" in (job.last_error or "")
                for job in daemon.syncer.status.jobs.values()
            )

        assert await wait_until(cancelled, 10)
        fast.set()
        hub = running.hub
        assert hub is not None

        async def converged() -> bool:
            theirs = await hub.store.tree_head(hub.logs("JP-MN").replica)
            ours = await agent.store.tree_head(agent.logs("JP-MN").own)
            return theirs.size == ours.size

        assert await wait_until(converged, 20)

        async def recovered() -> bool:
            return all(job.failures == 0 for job in daemon.syncer.status.jobs.values())

        assert await wait_until(recovered, 10), daemon.syncer.status.jobs
    assert not [r for r in caplog.records if "raised an exception" in r.getMessage()]


async def test_shutdown_during_a_request_stops_cleanly(
    stalling_hub: tuple[Running, asyncio.Event], caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping the daemon while its jobs wait on the hub ends them at once, records no
    failure for them and logs no exception."""
    running, _ = stalling_hub
    agent = await running.agent("MN")
    agent.cfg = msgspec.structs.replace(agent.cfg, schedule=FAST)
    daemon = _daemon(running, agent, timeout=30)
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    assert await wait_until(lambda: _true(bool(daemon._running)), 10)
    await asyncio.sleep(0.2)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - started < 2
    assert not daemon._running
    for name, job in daemon.syncer.status.jobs.items():
        assert job.failures == 0, (name, job.last_error)
    assert not [r for r in caplog.records if "raised an exception" in r.getMessage()]
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("jcm_sync")
    ]
    assert not warned


async def test_a_push_whose_client_leaves_mid_write_is_written_whole(tmp_path: Path) -> None:
    """The client gives up (timeout) while the hub is writing its batch: the handler is
    cancelled, but the batch and its checkpoint are both stored (the write is shielded),
    the slot is freed, and the replica verifies; the next push finds it complete."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    try:
        hub, server = running.hub, running.server
        assert hub is not None
        assert server is not None
        await running.seed("MN")
        agent = await running.agent("MN")
        own = await agent.store.tree_head(agent.logs("JP-MN").own)
        put_checkpoint = hub.store.put_checkpoint

        async def slow_put(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(1.0)  # after the append, before the checkpoint is kept
            return await put_checkpoint(*args, **kwargs)

        hub.store.put_checkpoint = slow_put  # type: ignore[method-assign]
        client = HubClient(running.url, agent.keys.transport, timeout=0.5)  # type: ignore[arg-type]
        running.clients.append(client)
        syncer = Syncer(agent, client, "JP-MN", batch_size=1000)
        with pytest.raises(TransportError, match="did not answer in time"):
            await syncer.push()
        replica = hub.logs("JP-MN").replica

        async def written() -> bool:
            held = await hub.store.latest_checkpoint(replica)
            return held is not None and held.size == own.size

        assert await wait_until(written, 5)
        assert (await hub.store.tree_head(replica)).size == own.size
        assert answers(hub, 499) >= 1
        assert server._in_flight.get(("JP-MN", "MN"), 0) == 0
        audit = await verify_log(hub.store, replica)
        assert audit.ok, audit.problems
        hub.store.put_checkpoint = put_checkpoint  # type: ignore[method-assign]
        assert await syncer.push() == 0
    finally:
        await running.close()


async def test_a_checkpoint_the_hub_lost_is_sent_again(network: Running) -> None:
    """The hub stored a push's entries but not its checkpoint (it stopped between the two
    writes): the agent's next push sends the checkpoint again with no entries, the hub
    keeps it, and the agent holds Japan's receipt for the whole log."""
    hub = network.hub
    assert hub is not None
    await network.seed("MN")
    agent = await network.agent("MN")
    own = await agent.store.tree_head(agent.logs("JP-MN").own)
    put_checkpoint = hub.store.put_checkpoint

    async def lost(*args: Any, **kwargs: Any) -> None:
        return None

    hub.store.put_checkpoint = lost  # type: ignore[method-assign]
    syncer = network.syncer(agent, batch_size=1000)
    assert await syncer.push() == own.size
    replica = hub.logs("JP-MN").replica
    assert await hub.store.latest_checkpoint(replica) is None
    hub.store.put_checkpoint = put_checkpoint  # type: ignore[method-assign]
    syncer.status.hub_receipt = None
    assert await syncer.push() == 0
    held = await hub.store.latest_checkpoint(replica)
    assert held is not None
    assert held.size == own.size
    assert syncer.status.hub_receipt is not None
    assert await syncer.push() == 0  # in sync now: nothing more is sent
