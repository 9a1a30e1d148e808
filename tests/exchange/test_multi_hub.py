"""Three hub processes behind one address over one PostgreSQL database (ADR 0042).

Three ``jcm-sync registry serve --reuse-port`` processes listen on one port (the kernel
spreads connections among them) and share a throwaway schema. Five agents push 2,000
records each at once through that address, every request on a connection of its own
so that each lands on any of the three. One hub is killed (``SIGKILL``) mid-push; the
agents retry until the hub holds their whole log. Then:

- every replica and Japan's own logs verify as one history: every entry, node and
  stored checkpoint recomputed, and a consistency proof between each two successive
  checkpoints any process signed or kept, including every checkpoint a process
  countersigned in an answer to an agent;
- no fork alarm, on the hub or at any agent;
- every acknowledged record is held, in the agent's order;
- a request accepted through the shared address and replayed to a fourth process (on a
  port of its own, never seen the nonce) is refused as a replay: only the database can
  have told it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core import merkle
from jcm_sync.core.wire import CheckpointView, PushRequest, PushResponse
from jcm_sync.errors import JcmSyncError, PeerRefusedError
from jcm_sync.local.alarms import AlarmBook
from jcm_sync.local.config import load_config
from jcm_sync.local.status import read_status
from jcm_sync.net.client import HubClient
from jcm_sync.net.signing import RequestSigner, SigningMiddleware
from jcm_sync.services.agent import Syncer
from jcm_sync.services.daemon import IntervalJob
from jcm_sync.services.hub import Hub
from jcm_sync.services.log_service import checkpoint_verifiers, verify_log
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import fill_own_log, free_port, provision, signed_issuances
from jcm_sync.services.tiles import DirectorySink, TilesJob, TilesPublisher
from jcm_sync.store import LogRef, Store, open_store
from tests.exchange.conftest import Running
from tests.store.conftest import pg_url  # noqa: F401  (the fixture: a schema of its own)

pytestmark = pytest.mark.postgres

PARTNERS = ["MN", "ID", "VN", "TH", "PH"]
RECORDS = 2000
BATCH = 100
HUBS = 3
KILL_AT = 0.25  # of all records acknowledged
DEADLINE_S = 150.0


class SpreadClient(HubClient):
    """A ``HubClient`` whose every request opens a new connection (so that SO_REUSEPORT
    hands it to any hub process), remembering what each push acknowledged."""

    def __init__(self, base_url: str, key: object) -> None:
        super().__init__(base_url, key, timeout=60)  # type: ignore[arg-type]
        self.acknowledged = 0
        self.countersigned: list[CheckpointView] = []

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                middlewares=(SigningMiddleware(self._signer),),
                connector=aiohttp.TCPConnector(force_close=True),
            )
        return self._session

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        resp = await super().push(pid, node, req)
        self.acknowledged = max(self.acknowledged, resp.size)
        self.countersigned.append(resp.checkpoint)
        return resp


@dataclass
class HubProc:
    config: Path
    log: Path
    reuse_port: bool = True
    proc: subprocess.Popen[bytes] | None = None
    ops_url: str = ""

    def start(self) -> None:
        cmd = [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config", str(self.config)]
        if self.reuse_port:
            cmd.append("--reuse-port")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    async def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hub exited {self.proc.returncode}: {self.tail()}")
            found = re.search(r'"ops_address":\s*"(http://[^"]+)"', self.tail())
            if found:
                self.ops_url = found.group(1)
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"hub not listening after {timeout} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Agent:
    cc: str
    node: Node
    client: SpreadClient
    syncer: Syncer
    retries: list[str] = field(default_factory=list)


@contextlib.contextmanager
def hubs_running(procs: list[HubProc]) -> Iterator[list[HubProc]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def direct_config(jp: Path, shared_url: str, port: int) -> Path:
    """Japan's configuration with a port of its own, checking signatures against the
    shared address (as a process behind a load balancer does with public_origin)."""
    text = jp.read_text()
    text = re.sub(r"(?m)^port = \d+$", f"port = {port}", text, count=1)
    text = text.replace("[server]\n", f'[server]\npublic_origin = "{shared_url}"\n', 1)
    path = jp.with_name("jp-direct.toml")
    path.write_text(text)
    return path


async def push_until_held(agent: Agent, total: int, deadline: float) -> None:
    """Push, and after a refusal or a cut connection push again, until the hub holds all."""
    while True:
        try:
            await agent.syncer.push()
            state = await agent.syncer.fetch_state()
            held = next(s.size for s in state.logs if s.node == agent.cc)
            if held == total:
                return
        except JcmSyncError as exc:
            agent.retries.append(f"{type(exc).__name__}: {exc}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{agent.cc}: not all pushed; {agent.retries[-3:]}")
        await asyncio.sleep(0.05)


async def check_one_history(store: Store, log: LogRef, verifiers: list[object]) -> int:
    """Every entry, node and checkpoint recomputed, and each two successive stored
    checkpoints joined by a consistency proof; returns how many checkpoints there are."""
    audit = await verify_log(store, log, verifiers=verifiers)  # type: ignore[arg-type]
    assert audit.problems == [], (log.origin, audit.problems[:5])
    cps = await store.checkpoints(log)
    for old, new in itertools.pairwise(cps):
        proof = await store.consistency_proof(log, old.size, new.size)
        assert merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    return len(cps)


async def metric(session: aiohttp.ClientSession, ops_url: str, name: str) -> float:
    async with session.get(ops_url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and 'outcome="accepted"' in line
    )


@pytest.mark.slow
async def test_three_hubs_five_agents_one_killed_one_history(
    tmp_path: Path,
    pg_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    port = free_port()
    net = provision(tmp_path / "net", PARTNERS, hub_port=port, hub_store=pg_url)
    shared = f"http://127.0.0.1:{port}"
    created = datetime.now(UTC) - timedelta(hours=1)
    agents: list[Agent] = []
    for cc in PARTNERS:
        pid = f"JP-{cc}"
        envs, checked = signed_issuances(pid, cc, net.keys[cc], RECORDS, created)
        node = await open_node(load_config(net.configs[cc], env={}))
        await fill_own_log(node, pid, envs, checked)
        client = SpreadClient(shared, node.keys.transport)
        agents.append(Agent(cc, node, client, Syncer(node, client, pid, batch_size=BATCH)))

    procs = [HubProc(net.configs["JP"], tmp_path / f"hub{i}.log") for i in range(HUBS)]
    direct_port = free_port()
    direct = HubProc(
        direct_config(net.configs["JP"], shared, direct_port), tmp_path / "direct.log", False
    )
    total = len(PARTNERS) * RECORDS
    try:
        with hubs_running([*procs, direct]):
            for p in [*procs, direct]:
                p.start()
            await asyncio.gather(*(p.wait_listening() for p in [*procs, direct]))
            deadline = time.monotonic() + DEADLINE_S
            pushing = asyncio.gather(*(push_until_held(a, RECORDS, deadline) for a in agents))
            while sum(a.client.acknowledged for a in agents) < KILL_AT * total:
                assert not pushing.done(), pushing.exception() if pushing.done() else None
                await asyncio.sleep(0.01)
            at_kill = sum(a.client.acknowledged for a in agents)
            procs[0].kill()  # mid-push: batches in flight to it are cut
            assert at_kill < total, "every push was over before the kill"
            await asyncio.wait_for(pushing, DEADLINE_S)
            acknowledged = {a.cc: a.client.acknowledged for a in agents}

            async with aiohttp.ClientSession() as session:
                served = [await metric(session, p.ops_url, "jcm_sync_pushes_total")
                          for p in procs[1:]]  # fmt: skip
                assert all(n > 0 for n in served), f"a surviving hub served no push: {served}"
                await check_replay_refused(session, agents[0], shared, direct_port)
    finally:
        for a in agents:
            await a.client.close()

    assert acknowledged == dict.fromkeys(PARTNERS, RECORDS)
    store = await open_store(pg_url)
    try:
        assert await AlarmBook(store).active() == []
        hub = await open_node(load_config(net.configs["JP"], env={}))  # roots and keys
        try:
            for a in agents:
                pid = f"JP-{a.cc}"
                replica = hub.logs(pid).replica
                root = hub.logs(pid).root
                own = a.node.logs(pid).own
                assert (await store.tree_head(replica)).size == RECORDS
                held = [e.envelope for e in await store.entries(replica, 0, RECORDS)]
                sent = [e.envelope for e in await a.node.store.entries(own, 0, RECORDS)]
                assert held == sent  # every acknowledged record, in the agent's order
                verifiers = checkpoint_verifiers(root, replica, hub.clock())
                assert await check_one_history(store, replica, verifiers) >= 1
                jp_own = hub.logs(pid).own
                jp_verifiers = checkpoint_verifiers(root, jp_own, hub.clock())
                await check_one_history(store, jp_own, jp_verifiers)
                for cp in a.client.countersigned:  # what each process answered
                    assert await store.root_at(replica, cp.size) == cp.root
                assert await AlarmBook(a.node.store).active() == []
        finally:
            await hub.close()
    finally:
        await store.close()
        for a in agents:
            await a.node.close()


async def check_replay_refused(
    session: aiohttp.ClientSession, agent: Agent, shared: str, direct_port: int
) -> None:
    """One signed request accepted through the shared address, then replayed to the
    direct process (whose own cache never saw it) and to the shared address again."""
    path = f"/v1/partnerships/JP-{agent.cc}/state"
    headers: dict[str, str] = {}
    RequestSigner(agent.node.keys.transport).sign("GET", shared + path, headers, b"")
    async with session.get(shared + path, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    for target in (f"http://127.0.0.1:{direct_port}", shared):
        async with session.get(target + path, headers=headers) as resp:
            body = await resp.json(content_type=None)
            assert (resp.status, body.get("code")) == (401, "replay"), (target, body)
    # a fresh signature for the direct process's public origin is accepted there
    fresh: dict[str, str] = {}
    RequestSigner(agent.node.keys.transport).sign("GET", shared + path, fresh, b"")
    async with session.get(f"http://127.0.0.1:{direct_port}{path}", headers=fresh) as resp:
        assert resp.status == 200, await resp.text()


# --- the pieces, fast ------------------------------------------------------------------


def _reconciled(hub: Hub, pid: str) -> float:
    labels = {"partnership": pid, "job": "reconcile", "outcome": "ok"}
    return hub.node.metrics.registry.get_sample_value("jcm_sync_job_runs_total", labels) or 0.0


@pytest.mark.parametrize("network", ["postgres"], indirect=True)
async def test_only_the_process_holding_the_lock_reconciles(
    network: Running, tmp_path: Path
) -> None:
    """Two hubs on one database: the first to ask runs the scheduled reconciliation (and
    any other job that must run once), the other skips it until the first has gone."""
    assert network.server is not None
    first = network.server.hub
    second = Hub(await open_node(load_config(network.net.configs["JP"], env={})))
    pid = "JP-MN"
    try:
        before = _reconciled(first, pid)  # its scheduler may have run one already
        await first._reconcile(pid)
        await second._reconcile(pid)
        assert _reconciled(first, pid) >= before + 1
        assert _reconciled(second, pid) == 0
        ran: list[str] = []

        async def job(who: str) -> None:
            ran.append(who)

        witness_like = IntervalJob("witness-JP-MN", 60.0, job)  # any job run once
        await first._singleton(witness_like).run("first")
        await second._singleton(witness_like).run("second")
        assert ran == ["first"]
        tiles = tmp_path / "tiles"  # tiles have one writer: the lock holder (ADR 0041)
        publisher = TilesPublisher(second.node.store, DirectorySink(tiles))
        assert await TilesJob(publisher, 60.0, only_if=second.runs_singletons).run_once() == []
        assert not tiles.exists()
        published = await TilesJob(publisher, 60.0, only_if=first.runs_singletons).run_once()
        assert {p.origin for p in published} >= {second.node.logs(pid).replica.origin}
        await network.stop_hub()  # the first process goes: its session, and lock, with it
        await second._reconcile(pid)
        assert _reconciled(second, pid) == 1
    finally:
        second.close()
        await second.node.close()


def test_reuse_port_without_postgresql_is_refused(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())  # SQLite
    out = subprocess.run(
        [sys.executable, "-m", "jcm_sync", "registry", "serve", "--reuse-port",
         "--config", str(net.configs["JP"]), "--log-format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "reuse_port needs a PostgreSQL store" in out.stdout + out.stderr


async def test_a_partner_over_its_request_rate_is_refused_429(network: Running) -> None:
    """``[server] requests_per_node_per_second``: shared through PostgreSQL, in memory on
    SQLite; of five requests in a row at a limit of 2, one second window holds at least
    three, so at least one is refused, and never one of the first two."""
    jp = network.net.configs["JP"]
    jp.write_text(
        jp.read_text().replace("[server]\n", "[server]\nrequests_per_node_per_second = 2\n", 1)
    )
    await network.stop_hub()
    await network.start_hub()
    node = await network.agent("MN")
    client = HubClient(network.url, node.keys.transport)
    network.clients.append(client)
    outcomes: list[str] = []
    for _ in range(5):
        try:
            await client.state("JP-MN")
            outcomes.append("ok")
        except PeerRefusedError as exc:
            outcomes.append(str(exc))
    assert outcomes[:2] == ["ok", "ok"]
    refused = [o for o in outcomes if o != "ok"]
    assert refused
    assert all("429 too-many-requests" in o and "the limit is 2" in o for o in refused)


@pytest.mark.parametrize("network", ["postgres"], indirect=True)
async def test_the_status_each_process_writes_keeps_what_the_others_saw(
    network: Running,
) -> None:
    """``jcm-sync status`` of the hub: a process re-reads the stored status before adding
    what it saw, so one process's push and another's served state both show."""
    assert network.server is not None
    assert network.hub is not None
    first = network.server.hub
    second = Hub(await open_node(load_config(network.net.configs["JP"], env={})))
    try:
        await first._observe("JP-MN", "MN", 7, 7, "push_received")
        await second._observe("JP-MN", "JP", 3, 2, "served")
        status = await read_status(network.hub.store, "JP-MN")
        assert {n: (s.local_size, s.remote_size) for n, s in status.logs.items()} == {
            "MN": (7, 7), "JP": (3, 2)
        }  # fmt: skip
        assert {"push_received", "served"} <= set(status.jobs)
    finally:
        second.close()
        await second.node.close()
