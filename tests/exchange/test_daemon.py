"""The scheduled agent (APScheduler jobs, back-off) and the daemons' shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

from jcm_sync.local.config import ScheduleSection, load_config
from jcm_sync.local.status import read_status
from jcm_sync.services.agent import AgentDaemon
from jcm_sync.services.sample import free_port, partnership_records, provision
from jcm_sync.store import open_store
from tests.exchange.conftest import Running

FAST = ScheduleSection(
    push_seconds=0.2, pull_seconds=0.2, anti_entropy_seconds=0.5, jitter_seconds=0.05,
    backoff_initial_seconds=0.2, backoff_max_seconds=1.0, batch_size=10,
)  # fmt: skip


async def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_daemon_jobs_converge_and_back_off_while_hub_is_down(network: Running) -> None:
    """The scheduled jobs back off while the hub is down and converge once it is back."""
    await network.seed("MN")
    agent = await network.agent("MN")
    agent.cfg = msgspec.structs.replace(agent.cfg, schedule=FAST)
    await network.stop_hub()
    daemon = AgentDaemon(network.syncer(agent, batch_size=10))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:

        async def backed_off() -> bool:
            return daemon.backoff["push"].failures >= 2

        assert await wait_until(backed_off)
        status = await read_status(agent.store, "JP-MN")
        assert status.jobs["push"].failures >= 2
        assert "unreachable" in (status.jobs["push"].last_error or "")
        await network.start_hub()
        # the syncer's client still points at the old port: move it to the new one
        daemon.syncer.client.base_url = network.url
        hub = network.hub
        assert hub is not None

        async def converged() -> bool:
            mine = await agent.store.tree_head(agent.logs("JP-MN").own)
            theirs = await hub.store.tree_head(hub.logs("JP-MN").replica)
            rep = await agent.store.tree_head(agent.logs("JP-MN").replica)
            jp = await hub.store.tree_head(hub.logs("JP-MN").own)
            return mine == theirs and rep == jp

        assert await wait_until(converged)
        assert await wait_until(lambda: _true(daemon.backoff["push"].failures == 0))
    finally:
        stop.set()
        await task


async def _true(value: bool) -> bool:
    return value


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("daemon", ["registry", "agent"])
async def test_daemons_stop_cleanly_on_sigterm(tmp_path: Path, daemon: str) -> None:
    """SIGTERM stops the hub or agent process with exit code 0 and a consistent store."""
    port = free_port()
    net = provision(tmp_path / "net", ["MN"], hub_port=port)
    recs = partnership_records("MN", net.keys, projects=2)
    node = "JP" if daemon == "registry" else "MN"
    cfg = load_config(net.configs[node], env={})
    cmd = [sys.executable, "-m", "jcm_sync"]
    hub = subprocess.Popen([*cmd, "registry", "serve", "--config", str(net.configs["JP"])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    procs = [hub]
    try:
        deadline = time.monotonic() + 20
        while not _ready(net.hub_url):
            assert time.monotonic() < deadline, "hub did not start"
            await asyncio.sleep(0.2)
        if daemon == "agent":
            from jcm_sync.services.node import open_node

            n = await open_node(load_config(net.configs["MN"], env={}))
            await n.logs("JP-MN").service.append(recs.by_node["MN"])
            await n.close()
            agent = subprocess.Popen([*cmd, "agent", "run", "--config", str(net.configs["MN"])],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            procs.append(agent)
            await asyncio.sleep(3)
        target = procs[-1]
        target.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(target.wait, 20)
        assert code == 0, target.stderr.read().decode() if target.stderr else ""
        store = await open_store(cfg.store_url)
        try:
            from jcm_sync.services.log_service import verify_log

            for ref in await store.logs():
                audit = await verify_log(store, ref)
                assert audit.ok, audit
        finally:
            await store.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()


async def test_hub_sigterm_during_a_push_keeps_every_acknowledged_entry(tmp_path: Path) -> None:
    """SIGTERM while an agent is pushing: the hub exits 0, and every batch it acknowledged
    is in its store, whole, with a tree that verifies."""
    from jcm_sync.errors import TransportError
    from jcm_sync.net.client import HubClient
    from jcm_sync.services.agent import Syncer
    from jcm_sync.services.log_service import verify_log
    from jcm_sync.services.node import open_node

    port = free_port()
    net = provision(tmp_path / "net", ["MN"], hub_port=port)
    agent = await open_node(load_config(net.configs["MN"], env={}))
    recs = partnership_records("MN", net.keys, projects=60)
    await agent.logs("JP-MN").service.append(recs.by_node["MN"])
    hub = subprocess.Popen(
        [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config", str(net.configs["JP"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    client = HubClient(net.hub_url, agent.keys.transport)
    acked: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not _ready(net.hub_url):
            assert time.monotonic() < deadline, "hub did not start"
            await asyncio.sleep(0.2)
        syncer = Syncer(agent, client, "JP-MN", batch_size=20)
        push = client.push

        async def push_and_stop(*a, **kw):  # type: ignore[no-untyped-def]
            resp = await push(*a, **kw)
            acked.append(resp.size)
            if len(acked) == 3:
                hub.send_signal(signal.SIGTERM)
            return resp

        client.push = push_and_stop  # type: ignore[method-assign]
        with pytest.raises(TransportError):
            await syncer.push()
        assert await asyncio.to_thread(hub.wait, 30) == 0
    finally:
        await client.close()
        await agent.close()
        if hub.poll() is None:
            hub.kill()
        hub.wait()
        if hub.stderr:
            hub.stderr.close()
    assert len(acked) >= 3
    store = await open_store(load_config(net.configs["JP"], env={}).store_url)
    try:
        replica = next(r for r in await store.logs() if r.node == "MN")
        head = await store.tree_head(replica)
        assert head.size >= max(acked)
        assert head.size < len(recs.by_node["MN"])
        audit = await verify_log(store, replica)
        assert audit.ok, audit.problems
    finally:
        await store.close()
