"""After a full sync, reconciliation and a fork alarm on a real hub and agent, the nodes'
data folders hold nothing new but the store: every piece of node state is in it, so a
backup of the store misses none (ADR 0027)."""

from __future__ import annotations

from pathlib import Path

from jcm_sync.local.config import load_config
from jcm_sync.local.lock import LOCK_NAME
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.reconcile_state import run_counter_key, run_report_key
from jcm_sync.services.reconciliation import ReconcileService, history_key, report_key
from jcm_sync.services.run_history import record_key
from jcm_sync.services.sample import provision
from tests.exchange.conftest import Running

ALLOWED = {"jcm-sync.db", "jcm-sync.db-wal", "jcm-sync.db-shm", LOCK_NAME, "conformance"}


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


async def test_sync_and_reconcile_leave_nothing_beside_the_store(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    dirs = {cc: load_config(net.configs[cc], env={}).data_dir for cc in ("JP", "MN")}
    before = {cc: listing(d) for cc, d in dirs.items()}
    running = Running(net, ServerSettings(), None)
    await running.start_hub()
    try:
        await running.seed("MN", projects=2)
        agent = await running.agent("MN")
        syncer = running.syncer(agent)
        await syncer.sync_once()
        assert (await syncer.anti_entropy()).in_sync
        hub = running.hub
        assert hub is not None
        for node in (agent, hub):
            result = await ReconcileService(node).reconcile("JP-MN")
            assert result.run.status != "initiated"
        await agent.raise_fork(agent.logs("JP-MN").replica, "a test fork")
        # what used to be files is in the stores
        assert await agent.store.state_keys("") == sorted(
            [
                f"alarm/{agent.logs('JP-MN').replica.origin}",
                history_key("JP-MN"),
                report_key("JP-MN"),
                run_report_key("JP-MN", 1),
                run_counter_key("JP-MN"),
                record_key("JP-MN", 1),
                "status/JP-MN",
            ]
        )
        assert "status/JP-MN" in await hub.store.state_keys("status/")
        assert await hub.store.get_state(report_key("JP-MN")) is not None
    finally:
        await running.close()
    for cc, folder in dirs.items():
        new = {p.split("/")[0] for p in listing(folder) - before[cc]}
        assert new <= ALLOWED, (cc, sorted(new - ALLOWED))
        assert "jcm-sync.db" in new
