"""Scheduled reconciliation cannot be stalled by a partner or broken by the store (ADR 0010).

A real hub (aiohttp on 127.0.0.1, port 0, SQLite files) runs its APScheduler jobs every
second; the tests wait for what those jobs record (history, metrics, logs) rather than
calling the job themselves.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import StoreError
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.agent import AgentDaemon
from jcm_sync.services.node import Node
from jcm_sync.services.reconciliation import ReconcileService, read_history
from jcm_sync.services.sample import partnership_records, provision
from tests.exchange.conftest import Running

PID = "JP-MN"
INTERVAL = 1.0
WAIT = 30.0  # seconds a test waits for a scheduled job: generous on a loaded machine


@pytest.fixture
async def net(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """A hub reconciling every second (or every ``request.param`` seconds; no jitter;
    the first run at start-up), and an agent for MN."""
    interval = getattr(request, "param", INTERVAL)
    network = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg = network.configs["JP"]
    text, n = re.subn(
        r"(?m)^reconcile_seconds = .*$",
        f"reconcile_seconds = {interval}\njitter_seconds = 0",
        cfg.read_text(),
    )
    assert n == 1
    cfg.write_text(text)
    running = Running(network, ServerSettings(run_jobs=True), None)
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()


def hub_of(net: Running) -> Node:
    assert net.hub is not None
    return net.hub


def job_runs(node: Node, outcome: str) -> float:
    labels = {"partnership": PID, "job": "reconcile", "outcome": outcome}
    return node.metrics.registry.get_sample_value("jcm_sync_job_runs_total", labels) or 0.0


async def wait_for(what: str, check: Callable[[], bool | Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT:.0f} s for {what}")
        await asyncio.sleep(0.1)


async def seed_and_push(net: Running) -> tuple[Node, int]:
    """MN's records pushed with a closing checkpoint; returns the agent and that size."""
    await net.seed("MN", projects=2, periods=1)
    agent = await net.agent("MN")
    await net.syncer(agent).push()
    hub = hub_of(net)
    held = await hub.store.latest_checkpoint(hub.logs(PID).replica)
    assert held is not None
    return agent, held.size


async def test_a_push_without_closing_checkpoint_does_not_stall_reconciliation(
    net: Running,
) -> None:
    """The partner pushes entries past its last checkpoint, without a checkpoint and
    saying more are coming: the scheduled job still reconciles, at that checkpoint."""
    agent, closed = await seed_and_push(net)
    hub = hub_of(net)
    replica = hub.logs(PID).replica
    # more of MN's records, pushed raw: no checkpoint, and a source size promising more
    extra = partnership_records("MN", net.net.keys, projects=1, periods=1, seed=7)
    await agent.logs(PID).service.append(extra.by_node["MN"])
    own = agent.logs(PID).own
    more = [e.envelope for e in await agent.store.entries(own, closed)]
    assert more
    client = net.clients[0]
    answer = await client.push(
        PID, "MN", PushRequest(start=closed, entries=more, source_size=closed + len(more) + 5)
    )
    assert answer.size == closed + len(more)
    assert (await hub.store.tree_head(replica)).size == closed + len(more)
    pushed_at = hub.clock()

    async def reconciled_after_push() -> bool:
        runs = (await read_history(hub.store, PID)).runs
        return any(r.started_at > pushed_at and r.status != "initiated" for r in runs)

    await wait_for("a scheduled run after the open-ended push", reconciled_after_push)
    run = next(r for r in (await read_history(hub.store, PID)).runs if r.started_at > pushed_at)
    assert run.finished_at is not None
    assert run.error is None
    sizes = {p.node: p.size for p in run.logs}
    # the partner's log at its last signed checkpoint, not at the replica's head
    assert sizes["MN"] == closed
    assert sizes["JP"] == (await hub.store.tree_head(hub.logs(PID).own)).size
    assert job_runs(hub, "ok") >= 1
    assert job_runs(hub, "error") == 0


@pytest.mark.parametrize(
    "failure",
    [StoreError("connection to PostgreSQL refused"), ConnectionRefusedError(111, "refused")],
    ids=["store-error", "raw-os-error"],
)
async def test_a_store_failure_is_logged_and_counted_not_raised_into_the_scheduler(
    net: Running,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    """While the store fails, every scheduled run fails: logged at ERROR by the hub,
    counted, never raised into APScheduler; once it is back, the next run succeeds."""
    caplog.set_level(logging.INFO)
    await seed_and_push(net)
    hub = hub_of(net)
    await wait_for("a first successful run", lambda: job_runs(hub, "ok") >= 1)

    async def down(*args: object, **kw: object) -> object:
        raise failure

    for method in ("latest_checkpoint", "tree_head", "entries", "root_at"):
        monkeypatch.setattr(hub.store, method, down)
    await wait_for("two failed runs", lambda: job_runs(hub, "error") >= 2)
    # a run already past its reads when the store went down may still have succeeded;
    # from now on none can
    ok_down = job_runs(hub, "ok")
    await wait_for("a third failed run", lambda: job_runs(hub, "error") >= 3)
    assert job_runs(hub, "ok") == ok_down
    monkeypatch.undo()
    await wait_for("a run after the store is back", lambda: job_runs(hub, "ok") > ok_down)
    last = (await read_history(hub.store, PID)).runs[-1]
    assert last.status == "completed"
    assert last.error is None
    failed = [r for r in (await read_history(hub.store, PID)).runs if r.error is not None]
    assert failed
    assert all(r.status == "initiated" for r in failed)

    escaped = [
        r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= logging.ERROR
    ]
    assert escaped == [], [r.getMessage() for r in escaped]
    logged = [
        r
        for r in caplog.records
        if r.name == "jcm_sync.services.hub"
        and r.levelno == logging.ERROR
        and (r.getMessage(), getattr(r, "partnership", None)) == ("reconcile-failed", PID)
    ]
    assert len(logged) >= 2


async def test_the_agents_reconcile_job_survives_a_raw_store_failure(
    net: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's job: an error that is not a JcmSyncError (a driver's OSError) is
    logged with its traceback, counted, backed off, and not raised."""
    caplog.set_level(logging.INFO)
    agent, _ = await seed_and_push(net)
    daemon = AgentDaemon(net.syncer(agent))
    job = daemon._job("reconcile", daemon._reconcile)

    async def down(*args: object, **kw: object) -> object:
        raise ConnectionResetError(104, "connection reset by peer")

    monkeypatch.setattr(agent.store, "latest_checkpoint", down)
    assert await job() is None  # nothing raised
    assert job_runs(agent, "error") == 1
    assert daemon.backoff["reconcile"].failures == 1
    assert any(
        r.levelno == logging.ERROR and r.exc_info is not None and r.msg == "reconcile-crashed"
        for r in caplog.records
        if r.name == "jcm_sync.core.reconcile"
    )
    monkeypatch.undo()
    daemon.backoff["reconcile"].succeeded()  # skip the back-off delay
    await job()
    assert job_runs(agent, "ok") == 1
    assert (await read_history(agent.store, PID)).runs[-1].status == "completed"


@pytest.mark.parametrize("net", [3600.0], indirect=True)
async def test_a_closing_push_is_reconciled_soon_and_one_during_a_run_after_it(
    net: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an hour between scheduled runs: a push that closes a catch-up is reconciled
    at once, and one that closes while that run is folding gets a run of its own."""
    hub = hub_of(net)
    await wait_for("the start-up run", lambda: job_runs(hub, "ok") >= 1)
    slow = asyncio.Event()
    original = ReconcileService._fold

    async def slow_fold(self: ReconcileService, partnership: str, target: Any) -> bool:
        if not slow.is_set():  # the first run after the push folds for a while
            slow.set()
            await asyncio.sleep(1.5)
        return await original(self, partnership, target)

    monkeypatch.setattr(ReconcileService, "_fold", slow_fold)
    agent, first = await seed_and_push(net)
    await wait_for("the run after the first push to start", slow.is_set)
    extra = partnership_records("MN", net.net.keys, projects=1, periods=1, seed=7)
    await agent.logs(PID).service.append(extra.by_node["MN"])
    await net.syncer(agent).push()  # closing: carries MN's checkpoint
    second = (await hub.store.tree_head(hub.logs(PID).replica)).size
    assert second > first

    async def sizes() -> list[int]:
        runs = (await read_history(hub.store, PID)).runs
        return [p.size for r in runs if r.status != "initiated" for p in r.logs if p.node == "MN"]

    async def both() -> bool:
        return {first, second} <= set(await sizes())

    await wait_for("runs at both pushes", both)
    assert job_runs(hub, "error") == 0


@pytest.mark.parametrize("net", [3600.0], indirect=True)
async def test_a_closing_push_is_reconciled_once_pushes_pause(net: Running) -> None:
    """Hub rule 7 (ADR 0039): while other pushes are in progress, the run a closing push
    asks for waits; it starts once pushes have paused for ``INGEST_QUIET_S``."""
    from jcm_sync.services.hub import INGEST_QUIET_S, RECONCILE_DEFER_S

    assert net.server is not None
    registry = net.server.hub
    hub = hub_of(net)
    await wait_for("the start-up run", lambda: job_runs(hub, "ok") >= 1)
    before = job_runs(hub, "ok")
    registry._pushing += 1  # another partner's push, in progress throughout
    try:
        await seed_and_push(net)
        await asyncio.sleep(min(1.0, RECONCILE_DEFER_S / 2))
        assert job_runs(hub, "ok") == before  # deferred while a push is in progress
    finally:  # that push ends, as Hub.push ends one
        registry._pushing -= 1
        registry._last_push = asyncio.get_running_loop().time()
    paused = time.monotonic()
    await wait_for("the deferred run", lambda: job_runs(hub, "ok") > before)
    assert time.monotonic() - paused >= INGEST_QUIET_S * 0.9
