"""The one status view: ``jcm-sync status`` and the console read it (real SQLite stores)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.core.reconcile import Discrepancy
from jcm_sync.core.reconcile.model import discrepancy_id
from jcm_sync.local.alarms import new_alarm
from jcm_sync.local.config import load_config
from jcm_sync.local.lock import DaemonLock
from jcm_sync.local.status import AgentStatus, JobStatus, LogStatus, write_status
from jcm_sync.services.node import open_node
from jcm_sync.services.reconciliation import History, write_history
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.services.status_view import node_status, read_status
from jcm_sync.store import open_store
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_reachable, with_param

__all__ = ["pg_reachable"]

PID = "JP-ID"
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def net(tmp_path: Path) -> Network:
    """Roots expire at T0 + 365 days; the agent pushes and pulls every 2 seconds."""
    return provision(tmp_path / "net", ["ID"], hub_port=0, now=T0)


async def put_status(net: Network, node: str, status: AgentStatus) -> None:
    store = await open_store(load_config(net.configs[node], env={}).store_url)
    try:
        await write_status(store, status)
    finally:
        await store.close()


async def put_history(net: Network, node: str, *found: Discrepancy) -> None:
    store = await open_store(load_config(net.configs[node], env={}).store_url)
    try:
        await write_history(store, History(PID, discrepancies={d.id: d for d in found}))
    finally:
        await store.close()


def finding(rule: str, first_seen: datetime, status: str = "open") -> Discrepancy:
    return Discrepancy(
        id=discrepancy_id(rule, [rule, status]), rule=rule, stage="blocks", subject="ID-1",
        summary=f"{rule} found", status=status, first_seen=first_seen,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_a_running_node_and_its_configuration_give_the_same_view(net: Network) -> None:
    """``node_status`` of an open node equals ``read_status`` of its configuration at the
    same time: sizes, roots and checkpoints from the store, role, hub URL, trust-root
    version, expiries; healthy, and no daemon holds the folder."""
    now = T0 + timedelta(days=1)
    cfg = load_config(net.configs["ID"], env={})
    node = await open_node(cfg, clock=lambda: now)
    try:
        records = partnership_records("ID", net.keys, projects=1, periods=1, created=T0)
        result = await node.logs(PID).service.append(records.by_node["ID"])
        live = await node_status(node)
        head = await node.store.tree_head(node.logs(PID).own)
    finally:
        await node.close()
    assert live == await read_status(cfg, now=now)
    assert (live.node, live.role, live.hub_url) == ("ID", "agent", net.hub_url)
    assert (live.daemon_running, live.daemon, live.generated_at) == (False, None, now)
    (p,) = live.partnerships
    assert (p.own.node, p.replica.node) == ("ID", "JP")
    assert (p.own.local_size, p.own.checkpoint) == (result.size, result.size)
    assert p.own.root == head.root.hex()
    assert (p.replica.local_size, p.replica.checkpoint) == (0, None)
    assert (p.trust_root_version, p.trust_root_expires) == (1, T0 + timedelta(days=365))
    assert (p.health, p.discrepancies_open, live.health, live.alarms) == ("ok", [], "ok", [])
    assert [e.what for e in live.expiries] == ["trust root", "key", "key", "key"]
    assert (live.warnings, live.exit_code) == ([], 0)


async def test_the_hub_names_its_own_address_and_both_partnerships(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["ID", "MN"], hub_port=8123, now=T0)
    view = await read_status(load_config(net.configs["JP"], env={}), now=T0)
    assert (view.role, view.hub_url) == ("registry", "http://127.0.0.1:8123")
    assert [p.partnership for p in view.partnerships] == ["JP-ID", "JP-MN"]


async def test_a_fork_alarm_shows_and_the_cli_exits_1(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alarm on the replica is in the log's row and the node's alarms; health ``fork``;
    ``jcm-sync status --json`` prints the same facts and exits 1."""
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
    assert [(a.origin, a.log, a.reason) for a in view.alarms] == [
        (replica.origin, "JP", "two roots at size 3")
    ]
    assert (view.partnerships[0].health, view.health, view.exit_code) == ("fork", "fork", 1)
    argv = ["status", "--config", str(net.configs["ID"]), "--json"]
    code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
    out, _ = capsys.readouterr()
    assert code == 1
    printed = json.loads(out)
    expected = view.to_builtins()
    for data in (printed, expected):  # taken a moment apart
        data.pop("generated_at")
        data.pop("expiries")
    assert printed == expected


@pytest.mark.parametrize(
    ("ago", "lagging"), [(3, False), (5, True)], ids=["within-2-intervals", "beyond"]
)
async def test_a_log_behind_for_longer_than_two_intervals_is_lagging(
    net: Network, ago: int, lagging: bool
) -> None:
    """Rule 3: the hub holds 10 entries of Japan's log that the replica lacks; pulled 3 s
    ago (pull every 2 s) it is not yet lagging, 5 s ago it is; lagging is exit 0."""
    now = T0 + timedelta(days=1)
    cfg = load_config(net.configs["ID"], env={})
    replica = f"{cfg.node.origin_prefix}/{PID}/JP"
    await put_status(net, "ID", AgentStatus(
        partnership=PID,
        jobs={"pull": JobStatus(last_run=now, last_success=now - timedelta(seconds=ago))},
        logs={"JP": LogStatus(origin=replica, local_size=0, remote_size=10, checked_at=now)},
    ))  # fmt: skip
    view = await read_status(cfg, now=now)
    (p,) = view.partnerships
    assert (p.replica.lag, p.replica.lagging) == (10, lagging)
    assert p.own.lagging is False
    assert view.health == ("lagging" if lagging else "ok")
    assert view.exit_code == 0


async def test_a_failing_sync_is_lagging_and_exit_1(net: Network) -> None:
    """Rules 4 and 5: the last push failed: its error shows, health ``lagging``, exit 1."""
    now = T0 + timedelta(days=1)
    await put_status(net, "ID", AgentStatus(partnership=PID, jobs={
        "push": JobStatus(last_run=now, last_error="hub unreachable", last_error_at=now,
                          failures=2)}))  # fmt: skip
    view = await read_status(load_config(net.configs["ID"], env={}), now=now)
    assert view.partnerships[0].own.last_error == "hub unreachable"
    assert (view.health, view.exit_code) == ("lagging", 1)


async def test_open_discrepancies_are_listed_with_grace_and_exit_3(net: Network) -> None:
    """Open findings of the history are listed oldest first with their id, rule, stage,
    summary and whether past grace (double-issuance: none; issued-vs-notified: 90 days);
    explained and resolved ones are not. Health ``discrepancies``, exit 3."""
    now = T0 + timedelta(days=30)
    late = finding("double-issuance", T0)
    young = finding("issued-vs-notified", T0 + timedelta(days=1))
    await put_history(net, "ID", young, late, finding("overlapping-blocks", T0, "explained"),
                      finding("untraceable-issuance", T0, "resolved"))  # fmt: skip
    view = await read_status(load_config(net.configs["ID"], env={}), now=now)
    (p,) = view.partnerships
    assert [(d.id, d.rule, d.first_seen, d.past_grace) for d in p.discrepancies_open] == [
        (late.id, "double-issuance", T0, True),
        (young.id, "issued-vs-notified", T0 + timedelta(days=1), False),
    ]
    assert p.discrepancies_open[0].summary == "double-issuance found"
    assert (p.health, view.health, view.exit_code) == ("discrepancies", "discrepancies", 3)


async def test_a_fork_outranks_discrepancies_and_a_failure_outranks_them_in_the_exit(
    net: Network,
) -> None:
    """Rules 4 and 5: fork > discrepancies > lagging; exit 1 wins over 3."""
    now = T0 + timedelta(days=1)
    await put_history(net, "ID", finding("double-issuance", T0))
    await put_status(net, "ID", AgentStatus(partnership=PID, jobs={
        "pull": JobStatus(last_error="refused", failures=1)}))  # fmt: skip
    cfg = load_config(net.configs["ID"], env={})
    view = await read_status(cfg, now=now)
    assert (view.health, view.exit_code) == ("discrepancies", 1)
    node = await open_node(cfg)
    try:
        own = node.logs(PID).own
        await node.alarms.raise_alarm(new_alarm(own.origin, PID, "ID", "rewritten"))
    finally:
        await node.close()
    view = await read_status(cfg, now=now)
    assert (view.health, view.exit_code) == ("fork", 1)


async def test_a_running_daemon_is_named(net: Network) -> None:
    """Rule 6: while the data directory's lock is held, the view names its holder."""
    cfg = load_config(net.configs["ID"], env={})
    with DaemonLock(cfg.data_dir, "jcm-sync agent run"):
        view = await read_status(cfg, now=T0)
    assert view.daemon_running
    assert view.daemon is not None
    assert (view.daemon["pid"], view.daemon["command"]) == (os.getpid(), "jcm-sync agent run")
    assert not (await read_status(cfg, now=T0)).daemon_running


async def test_a_root_expiring_within_30_days_is_a_warning(net: Network) -> None:
    """Rule 7: 340 days on, the root has 25 days left: a warning line, health unchanged."""
    view = await read_status(load_config(net.configs["ID"], env={}),
                             now=T0 + timedelta(days=340))  # fmt: skip
    assert view.warnings == [
        f"trust root of {PID} expires at {(T0 + timedelta(days=365)).isoformat()} (25 days left)"
    ]
    assert (view.health, view.exit_code) == ("ok", 0)
    assert [e.warning for e in view.expiries] == [True, False, False, False]


@pytest.mark.postgres
async def test_a_hub_on_postgresql_gives_the_same_view(
    tmp_path: Path, pg_reachable: str | None
) -> None:
    """The hub's store on PostgreSQL (a schema of its own): an alarm, a failing job and
    an open discrepancy read back from it as from SQLite; the running node's view and
    the configuration's agree."""
    if pg_reachable is not None:
        pytest.skip(pg_reachable)
    schema = await make_schema()
    try:
        net = provision(tmp_path / "net", ["ID"], hub_port=0, now=T0,
                        hub_store=with_param(PG_URL, "search_path", schema))  # fmt: skip
        now = T0 + timedelta(days=2)
        cfg = load_config(net.configs["JP"], env={})
        node = await open_node(cfg, clock=lambda: now)
        try:
            replica = node.logs(PID).replica
            await node.alarms.raise_alarm(new_alarm(replica.origin, PID, "ID", "two roots"))
            await write_status(node.store, AgentStatus(partnership=PID, jobs={
                "push_received": JobStatus(last_error="refused", failures=1)}))  # fmt: skip
            found = finding("double-issuance", T0)
            await write_history(node.store, History(PID, discrepancies={found.id: found}))
            live = await node_status(node)
        finally:
            await node.close()
        assert live == await read_status(cfg, now=now)
        (p,) = live.partnerships
        assert (p.replica.alarm, p.replica.last_error) == ("two roots", "refused")
        assert [d.id for d in p.discrepancies_open] == [found.id]
        assert (live.role, live.health, live.exit_code) == ("registry", "fork", 1)
    finally:
        await drop_schema(schema)
