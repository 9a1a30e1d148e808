"""A partnership at realistic volume, end to end through the real daemons (ADR 0013).

The sample history of one partnership is scaled (``jcm_sync.services.sample.partnership_records``
with many projects, monitoring periods and a consortium of Japanese participants) to
more than 20,000 records in each side's log. Both sides import it with ``jcm-sync
import``; a real hub (``jcm-sync registry serve``) and agent (``jcm-sync agent run``)
exchange it both ways with batches of the maximum size (1,000). At the end both logs
verify at both sides and hold the same entries, and the real ``jcm-sync reconcile run``
finds nothing: the scaled data stays valid (serials never overlap, every decision is
issued in full, every retirement moves credits its account holds).

The same run with fewer records runs in ``make test``; ``JCM_SYNC_SLOW=1`` runs the
full volume.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.reconcile import LogSnapshot, Snapshot, reconcile
from jcm_sync.core.trust import verify_root
from jcm_sync.services.sample import partnership_records, provision
from tests.faults.harness import PYTHON, SLOW, Exchange, schedule_env, summary

MAX_BATCH = 1000


def test_sample_scales_and_stays_valid(tmp_path: Path) -> None:
    """The counts of the docstring of ``partnership_records``, unique serials, and a clean
    reconciliation of the scaled history by the pure reconciler."""
    net = provision(tmp_path, ["KE"], hub_port=0)
    keys = net.keys
    recs = partnership_records("KE", keys, projects=40, periods=3, jp_participants=3)
    ke, jp = recs.by_node["KE"], recs.by_node["JP"]
    assert len(ke) == 40 * (1 + 4 * 3)
    assert 0.95 * 40 * 3 * 4 <= len(jp) <= 40 * 3 * 4
    assert len(set(ke + jp)) == len(ke) + len(jp)
    with pytest.raises(ValueError, match="three digits"):
        partnership_records("KE", keys, projects=1000)
    now = datetime.now(UTC)
    root = verify_root(net.roots["JP-KE"].read_bytes(), now)
    logs = tuple(
        LogSnapshot(node, len(envs), merkle.root([merkle.leaf_hash(e) for e in envs]), envs)
        for node, envs in (("JP", jp), ("KE", ke))
    )
    report = reconcile(Snapshot(root.root, logs), now=now)
    assert report.discrepancies == ()
    assert report.status == "completed"


async def run_volume(tmp_path: Path, *, projects: int, periods: int, per_side: int) -> None:
    t0 = time.monotonic()
    env = schedule_env(push=0.5, pull=0.5, anti_entropy=5.0, reconcile=600.0,
                       backoff_initial=0.2, backoff_max=1.0, batch_size=MAX_BATCH)  # fmt: skip
    ex = Exchange.create(tmp_path / "net", "ID", env=env)
    recs = ex.records(projects=projects, periods=periods, seed=2016, jp_participants=3)
    sizes = {n: len(v) for n, v in recs.by_node.items()}
    assert min(sizes.values()) >= per_side, sizes
    try:
        for node in ("ID", "JP"):
            assert await ex.import_records(node, recs.by_node[node], node.lower()), ex.refused
        imported = time.monotonic() - t0
        await ex.start()
        t1 = time.monotonic()
        synced = await ex.wait_converged(600.0)
        assert synced is not None, f"not converged: {await ex.sizes()}\n{ex.agent.tail()}"
        assert ex.stop() == {"agent": 0, "hub": 0}
        outcome = await ex.check()
        t2 = time.monotonic()
        # the scaled data reconciles clean, judged by the real command at the agent
        proc = await asyncio.create_subprocess_exec(
            *PYTHON, "reconcile", "run", "--config", str(ex.net.configs["ID"]), "--exit-code",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()[-3000:]
    finally:
        await ex.close()
    summary(
        f"volume: {sizes} records, batches of {MAX_BATCH}; imported in {imported:.1f} s, "
        f"synced both ways in {synced:.1f} s, checked in {t2 - t1 - synced:.1f} s, "
        f"reconciled in {time.monotonic() - t2:.1f} s; lost {outcome.lost}, duplicated "
        f"{outcome.duplicated}, {outcome.verified} logs verified; total "
        f"{time.monotonic() - t0:.1f} s"
    )


async def test_partnership_volume_end_to_end(tmp_path: Path) -> None:
    """Some 2,500 records a side through the real daemons, with 1,000-entry batches."""
    await run_volume(tmp_path, projects=120, periods=5, per_side=2300)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long volume run: set JCM_SYNC_SLOW=1")
async def test_partnership_volume_20000_a_side(tmp_path: Path) -> None:
    """More than 20,000 records a side through the real daemons, both ways."""
    await run_volume(tmp_path, projects=999, periods=6, per_side=20_000)
