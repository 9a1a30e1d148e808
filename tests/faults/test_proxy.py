"""A faulty network between the agent and the hub (ADR 0013).

An asyncio TCP proxy on 127.0.0.1 (``harness.FaultProxy``) sits between a real agent
process and a real hub process. For 20 % of the requests (seeded) it closes the
connection before forwarding, closes it after forwarding (the hub acted, the answer is
lost), delays the answer 0.5–2 s, or truncates the answer, while both sides import
records, and holds the requests (a brief partition) while a last import lands on each
side. Once faults stop, both sides converge within two anti-entropy periods, with
no fork alarm, nothing lost and nothing duplicated, and every log verifies.

``JCM_SYNC_SLOW=1`` runs a longer import phase; ``JCM_SYNC_FAULT_SEED`` replays.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    FAULTS,
    SLOW,
    Exchange,
    FaultProxy,
    project_chunks,
    run_seed,
    schedule_env,
    summary,
)

ANTI_ENTROPY_S = 4.0


async def run_proxy(
    tmp_path: Path, *, chunks_per_side: int, min_requests: int, max_seconds: float
) -> None:
    seed = run_seed("fault proxy")
    rng = random.Random(seed)
    # back-off stays under one anti-entropy period, so a job that failed at the last
    # fault runs again within the period
    env = schedule_env(push=0.3, pull=0.3, anti_entropy=ANTI_ENTROPY_S, reconcile=5.0,
                       backoff_initial=0.2, backoff_max=1.5, batch_size=10)  # fmt: skip
    proxy = FaultProxy(0, random.Random(rng.random()))
    await proxy.start()
    # the agent signs for the proxy's address, which is the hub's public origin (ADR 0015)
    env["JCM_SYNC_SERVER_PUBLIC_ORIGIN"] = proxy.url
    ex = Exchange.create(tmp_path / "net", "VN", env=env, agent_hub_url=proxy.url)
    proxy.upstream_port = ex.hub_port
    recs = ex.records(projects=3 * chunks_per_side + 12, periods=2, seed=seed)
    chunks = project_chunks(recs, "VN", 3)
    started = time.monotonic()

    def mine(node: str) -> list[list[bytes]]:
        return [e for c, e in chunks if c == node]

    async def importer(node: str) -> None:
        for n, envs in enumerate(mine(node)[:chunks_per_side]):
            await ex.import_records(node, envs, f"{node.lower()}-{n:04d}")
            await asyncio.sleep(rng.uniform(0.2, 0.8))

    try:
        await ex.start()
        await asyncio.gather(importer("VN"), importer("JP"))
        while proxy.requests < min_requests and time.monotonic() - started < max_seconds:
            await asyncio.sleep(0.2)
        # a last, larger import on each side behind a brief partition, so that the faults
        # stop with both transfers certainly pending (not racing the importers)
        proxy.hold()
        for node in ("VN", "JP"):
            tail = [e for envs in mine(node)[chunks_per_side:] for e in envs]
            await ex.import_records(node, tail, f"{node.lower()}-tail")
        pending = await ex.pending()
        proxy.faults_on = False
        proxy.release()
        fault_phase = time.monotonic() - started
        requests_with_faults, faults = proxy.requests, sum(proxy.faults.values())
        converged = await ex.wait_converged(2 * ANTI_ENTROPY_S)
        assert converged is not None, (
            f"not converged within two anti-entropy periods ({2 * ANTI_ENTROPY_S:.0f} s) "
            f"after the faults stopped: {await ex.sizes()}\nagent:\n{ex.agent.tail()}"
        )
        # one more anti-entropy period: the agent compares both heads and finds no fork
        await asyncio.sleep(ANTI_ENTROPY_S + 0.5)
        assert await ex.converged()
        codes = ex.stop()
        assert codes == {"agent": 0, "hub": 0}, f"exit codes {codes}"
        outcome = await ex.check()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(seed {seed}; {proxy.requests} requests, "
                             f"faults {dict(proxy.faults)})") from exc  # fmt: skip
    finally:
        await ex.close()
        await proxy.close()
    assert not ex.refused, f"seed {seed}: imports refused: {dict(ex.refused)}"
    assert all(pending), f"the faults should stop with both transfers pending: {pending}"
    assert requests_with_faults >= min_requests
    # every kind of fault was injected, at about the rate asked for
    assert set(proxy.faults) == set(FAULTS), proxy.faults
    assert 0.08 < faults / requests_with_faults < 0.35, (faults, requests_with_faults)
    summary(
        f"fault proxy (seed {seed}): {requests_with_faults} requests with faults on, "
        f"pending when they stopped: push {pending[0]}, pull {pending[1]}; "
        f"{faults} faults injected {dict(proxy.faults)}, {proxy.requests} requests in all; "
        f"{ex.imports} imports, records acknowledged {outcome.acked}, lost {outcome.lost}, "
        f"duplicated {outcome.duplicated}, {outcome.verified} logs verified, no fork alarm; "
        f"fault phase {fault_phase:.1f} s, converged {converged:.1f} s after the faults "
        f"stopped (bound {2 * ANTI_ENTROPY_S:.0f} s), total {time.monotonic() - started:.1f} s"
    )


async def test_faulty_network_converges_after_faults_stop(tmp_path: Path) -> None:
    """20 % of requests dropped, answered late, lost or truncated: nothing lost, no fork."""
    await run_proxy(tmp_path, chunks_per_side=8, min_requests=150, max_seconds=120)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fault run: set JCM_SYNC_SLOW=1")
async def test_faulty_network_long_run(tmp_path: Path) -> None:
    """The same over a longer import phase (some 2,000 requests)."""
    await run_proxy(tmp_path, chunks_per_side=120, min_requests=2000, max_seconds=900)


async def test_a_stale_answer_is_not_a_fork(tmp_path: Path) -> None:
    """A state answer that arrives after a newer pull (the proxy's delay fault) offers a
    checkpoint that is a prefix of what the agent holds: not a fork, nothing to pull."""
    from jcm_sync.net.server import ServerSettings
    from jcm_sync.services.sample import partnership_records, provision
    from tests.exchange.conftest import Running

    running = Running(provision(tmp_path / "net", ["VN"], hub_port=0), ServerSettings(), None)
    await running.start_hub()
    try:
        await running.seed("VN")
        agent = await running.agent("VN")
        syncer = running.syncer(agent)
        await syncer.pull()
        stale = await syncer.fetch_state()
        assert running.hub is not None
        more = partnership_records("VN", running.net.keys, projects=2, seed=7)
        await running.hub.logs("JP-VN").service.append(more.by_node["JP"])
        assert await syncer.pull() == len(more.by_node["JP"])
        assert await syncer.pull(stale) == 0
        assert await agent.alarms.active() == []
        await syncer.anti_entropy()  # pushes the agent's own log
        assert (await syncer.anti_entropy()).in_sync
    finally:
        await running.close()
