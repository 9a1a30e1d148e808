"""``jcm-sync status`` (``cli/status.py``): exit codes 0, 1 and 3 against real nodes with
real SQLite stores, the text showing everything, ``--json`` the view."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.local.alarms import new_alarm
from jcm_sync.local.config import load_config
from jcm_sync.local.lock import DaemonLock
from jcm_sync.services.node import open_node
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import Network, free_port, provision
from tests.cli.conftest import run
from tests.services.test_reconciliation import PID, T0, Clock, Pair, dataset


@pytest.fixture
def net(tmp_path: Path) -> Network:
    """Japan's hub and Indonesia's agent; nobody listens at the hub's URL."""
    return provision(tmp_path / "net", ["ID"], hub_port=free_port(), now=datetime.now(UTC))


def status(capsys: pytest.CaptureFixture[str], cfg: Path) -> tuple[int, dict[str, object]]:
    code, out, err = run(capsys, "status", "--config", cfg, "--json")
    assert err == ""
    return code, json.loads(out)


async def arun(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``run`` from an async test: the CLI runs its own event loop, on another thread."""
    return await asyncio.to_thread(run, capsys, *argv)


async def astatus(capsys: pytest.CaptureFixture[str], cfg: Path) -> tuple[int, dict[str, object]]:
    return await asyncio.to_thread(status, capsys, cfg)


def test_a_fresh_node_is_healthy_and_says_everything(
    net: Network, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 0; the text names the node, the hub's URL, that no daemon runs, the table of
    both logs with the trust-root version, and when the root and the key expire."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(capsys, "status", "--config", net.configs["ID"])
    assert (code, err) == (0, "")
    assert "node ID (agent): health OK" in out
    assert f"hub: {net.hub_url}" in out
    assert "daemon: not running" in out
    assert "JP-ID (ID): OK, trust root v1" in out
    assert "ID (own)" in out
    assert "JP (replica)" in out
    assert "trust root of JP-ID expires at" in out
    assert "checkpoint, signing, transport key" in out  # one key serves all three roles
    assert "warning" not in out
    code, data = status(capsys, net.configs["ID"])
    assert (code, data["health"], data["daemon_running"]) == (0, "ok", False)


def test_a_running_daemon_is_shown(net: Network, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(net.configs["ID"], env={})
    with DaemonLock(cfg.data_dir, "jcm-sync agent run"):
        code, out, _ = run(capsys, "status", "--config", net.configs["ID"])
    assert code == 0
    assert "daemon: running (pid" in out


def test_a_failed_sync_exits_1(net: Network, capsys: pytest.CaptureFixture[str]) -> None:
    """``sync`` against a closed port fails; status then exits 1 with the error on the
    agent's own log and its replica, health ``lagging``."""
    code, _, _ = run(capsys, "sync", "--config", net.configs["ID"])
    assert code == 1
    code, data = status(capsys, net.configs["ID"])
    assert code == 1
    assert data["health"] == "lagging"
    (p,) = data["partnerships"]  # type: ignore[misc]
    assert all(net.hub_url in lg["last_error"] for lg in p["logs"])
    code, out, _ = run(capsys, "status", "--config", net.configs["ID"])
    assert code == 1
    assert "health LAGGING" in out
    assert net.hub_url in out


async def test_a_fork_alarm_exits_1(net: Network, capsys: pytest.CaptureFixture[str]) -> None:
    node = await open_node(load_config(net.configs["ID"], env={}))
    try:
        replica = node.logs(PID).replica
        await node.alarms.raise_alarm(new_alarm(replica.origin, PID, "JP", "two roots at size 3"))
    finally:
        await node.close()
    code, data = await astatus(capsys, net.configs["ID"])
    assert (code, data["health"]) == (1, "fork")
    assert [a["reason"] for a in data["alarms"]] == ["two roots at size 3"]  # type: ignore[attr-defined]
    code, out, _ = await arun(capsys, "status", "--config", net.configs["ID"])
    assert code == 1
    assert "FORK" in out
    assert "two roots at size 3" in out


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """Japan's hub and Indonesia's agent on their configured SQLite stores (the ones
    ``status`` reads), with a clock the test moves."""
    clock = Clock()
    net = provision(tmp_path / "net", ["ID"], hub_port=free_port(), now=T0 - timedelta(hours=1))
    nodes = [
        await open_node(load_config(net.configs[n], env={}), clock=clock) for n in ("JP", "ID")
    ]
    yield Pair(net, nodes[0], nodes[1], clock)
    for n in nodes:
        await n.close()


async def test_an_open_discrepancy_exits_3_and_its_resolution_0(
    pair: Pair, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indonesia over-issues: its reconciliation finds issued-vs-notified; status exits 3
    and names the discrepancy's id and rule. Indonesia corrects it; the next run resolves
    it: status exits 0, and the rule's ``jcm_sync_discrepancies_open`` gauge is 0."""
    monkeypatch.setenv("COLUMNS", "200")
    logs = await pair.seed(dataset(fault=True))
    service = ReconcileService(pair.id)
    first = await service.reconcile(PID)
    (d,) = first.report.discrepancies
    cfg = pair.net.configs["ID"]
    code, data = await astatus(capsys, cfg)
    assert (code, data["health"]) == (3, "discrepancies")
    (p,) = data["partnerships"]  # type: ignore[misc]
    assert [(x["id"], x["rule"]) for x in p["discrepancies_open"]] == [(d.id, d.rule)]
    code, out, _ = await arun(capsys, "status", "--config", cfg)
    assert code == 3
    assert f"1 open discrepancies in {PID}:" in out
    assert d.id in out
    assert "issued-vs-notified" in out
    sample = pair.id.metrics.registry.get_sample_value
    labels = {"partnership": PID, "rule": "issued-vs-notified"}
    assert sample("jcm_sync_discrepancies_open", labels) == 1

    await pair.correct_over_issuance(logs)
    pair.clock.tick()
    fixed = await service.reconcile(PID)
    assert (fixed.report.discrepancies, fixed.run.resolved) == ((), 1)
    code, data = await astatus(capsys, cfg)
    assert (code, data["health"]) == (0, "ok")
    assert sample("jcm_sync_discrepancies_open", labels) == 0
    assert sample("jcm_sync_discrepancies_past_grace", labels) == 0


def test_the_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--help")
    assert code == 0
    assert "0  healthy" in out
    assert "1  a log's last sync failed, or a fork alarm is raised" in out
    assert "3  reconciliation discrepancies are open" in out


def test_a_missing_configuration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", "--config", tmp_path / "nope.toml")
    assert (code, out) == (1, "")
    assert str(tmp_path / "nope.toml") in err
