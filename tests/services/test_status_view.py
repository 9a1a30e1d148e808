"""The one status view: ``jcm-sync status`` and the hub's ``/status`` page read it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.local.alarms import new_alarm
from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.services.status_view import node_status, read_status

PID = "JP-ID"


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return provision(tmp_path / "net", ["ID"], hub_port=0, now=datetime.now(UTC))


async def test_a_running_node_and_its_configuration_give_the_same_view(net: Network) -> None:
    """``node_status`` of an open node equals ``read_status`` of its configuration, with
    the own log's size, root and checkpoint as the store holds them."""
    cfg = load_config(net.configs["ID"], env={})
    node = await open_node(cfg)
    try:
        records = partnership_records("ID", net.keys, projects=1, periods=1)
        result = await node.logs(PID).service.append(records.by_node["ID"])
        live = await node_status(node)
        head = await node.store.tree_head(node.logs(PID).own)
    finally:
        await node.close()
    assert live == await read_status(cfg)
    (p,) = live.partnerships
    assert (p.own.node, p.replica.node) == ("ID", "JP")
    assert (p.own.local_size, p.own.checkpoint) == (result.size, result.size)
    assert p.own.root == head.root.hex()
    assert (p.replica.local_size, p.replica.checkpoint) == (0, None)
    assert not live.alarmed


async def test_a_fork_alarm_shows_and_the_cli_exits_1(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alarm on the replica is in the view; ``jcm-sync status --json`` prints the view
    and exits 1."""
    cfg = load_config(net.configs["ID"], env={})
    node = await open_node(cfg)
    try:
        replica = node.logs(PID).replica
        await node.alarms.raise_alarm(new_alarm(replica.origin, PID, "JP", "two roots at size 3"))
        view = await node_status(node)
    finally:
        await node.close()
    assert view.alarmed
    assert view.partnerships[0].replica.alarm == "two roots at size 3"
    argv = ["status", "--config", str(net.configs["ID"]), "--json"]
    code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
    out, _ = capsys.readouterr()
    assert code == 1
    assert json.loads(out) == view.to_builtins()
