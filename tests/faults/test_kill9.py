"""``kill -9`` of the hub and of the agent, at random moments during push and pull, while
both sides import records (ADR 0013).

A real hub (``jcm-sync registry serve``) and agent (``jcm-sync agent run``) run as
processes over loopback on SQLite files, with short schedule intervals and small
batches so that pushes and pulls span many requests. Two importers run ``jcm-sync
import`` on each side, a few projects' history at a time; a killer waits until a push
or a pull is pending, lets it run for a random moment, sends SIGKILL to the hub or the
agent (seeded), and restarts it. At the end, after convergence, every acknowledged
record is present exactly once, in import order, in its own log and in the other
side's replica, every log verifies, no fork alarm was raised, and both daemons still
stop cleanly (exit 0 on SIGTERM).

10 kills in ``make test``; 200 with ``JCM_SYNC_SLOW=1``; ``JCM_SYNC_FAULT_SEED`` replays.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.harness import SLOW, Exchange, project_chunks, run_seed, schedule_env, summary

CONVERGE_TIMEOUT_S = 90.0


async def run_kills(tmp_path: Path, kills: int, projects: int, per_chunk: int) -> None:
    seed = run_seed(f"kill -9 x{kills}")
    rng = random.Random(seed)
    env = schedule_env(push=0.2, pull=0.2, anti_entropy=1.0, reconcile=3.0,
                       backoff_initial=0.2, backoff_max=1.0, batch_size=10)  # fmt: skip
    ex = Exchange.create(tmp_path / "net", "MN", env=env)
    chunks = project_chunks(ex.records(projects=projects, periods=2, seed=seed), "MN", per_chunk)
    moments: Counter[str] = Counter()
    killed = asyncio.Event()
    started = time.monotonic()

    async def importer(node: str) -> None:
        mine = [envs for n, envs in chunks if n == node]
        for n, envs in enumerate(mine):
            if killed.is_set():
                return
            await ex.import_records(node, envs, f"{node.lower()}-{n:04d}")
            await asyncio.sleep(rng.uniform(0, 0.3))

    async def killer() -> None:
        try:
            for k in range(kills):
                # the hub and the agent in turn, with a random swap now and then
                target = ex.hub if (k % 2 == 0) != (rng.random() < 0.25) else ex.agent
                # wait for a transfer to be under way, let it run a random moment, and
                # kill if it still is (or after 10 s without one)
                deadline = time.monotonic() + 10
                while True:
                    while time.monotonic() < deadline and not any(await ex.pending()):
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(rng.uniform(0, 0.25))
                    push, pull = await ex.pending()
                    if push or pull or time.monotonic() >= deadline:
                        break
                moments[" and ".join(n for n, p in (("push", push), ("pull", pull)) if p)
                        or "idle"] += 1  # fmt: skip
                target.kill9()
                await asyncio.sleep(rng.uniform(0, 0.5))
                if target is ex.hub:
                    await ex.start_hub()
                else:
                    target.start()
                await asyncio.sleep(rng.uniform(0.2, 1.0))
        finally:
            killed.set()

    try:
        await ex.start()
        await asyncio.gather(killer(), importer("MN"), importer("JP"))
        kill_phase = time.monotonic() - started
        converged = await ex.wait_converged(CONVERGE_TIMEOUT_S)
        assert converged is not None, (
            f"seed {seed}: not converged after {CONVERGE_TIMEOUT_S:.0f} s: {await ex.sizes()}"
            f"\nhub:\n{ex.hub.tail()}\nagent:\n{ex.agent.tail()}"
        )
        codes = ex.stop()
        assert codes == {"agent": 0, "hub": 0}, f"seed {seed}: exit codes {codes}"
        outcome = await ex.check()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(seed {seed})") from exc
    finally:
        await ex.close()
    assert not ex.refused, f"seed {seed}: imports refused: {dict(ex.refused)}"
    assert ex.hub.kills + ex.agent.kills == kills
    assert ex.hub.kills, "the hub was never killed"
    assert ex.agent.kills, "the agent was never killed"
    mid = sum(v for k, v in moments.items() if k != "idle")
    assert mid >= kills // 2, f"seed {seed}: only {mid} of {kills} kills hit a transfer"
    summary(
        f"kill -9 (seed {seed}): {kills} kills (hub {ex.hub.kills}, agent {ex.agent.kills}; "
        f"pending then: {dict(moments)}), {ex.imports} imports, records acknowledged "
        f"{outcome.acked}, lost {outcome.lost}, duplicated {outcome.duplicated}, "
        f"{outcome.verified} logs verified; kill phase {kill_phase:.1f} s, converged "
        f"{converged:.1f} s later, total {time.monotonic() - started:.1f} s"
    )


async def test_kill9_hub_and_agent_10_times(tmp_path: Path) -> None:
    """10 SIGKILLs of the hub or the agent during push and pull lose nothing acknowledged."""
    await run_kills(tmp_path, 10, projects=200, per_chunk=5)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long fault run: set JCM_SYNC_SLOW=1")
async def test_kill9_hub_and_agent_200_times(tmp_path: Path) -> None:
    """200 SIGKILLs of the hub or the agent during push and pull lose nothing acknowledged."""
    await run_kills(tmp_path, 200, projects=999, per_chunk=3)
