"""``services/agreement.py``: agreed snapshots over a real hub (aiohttp on 127.0.0.1) and agent.

The roots require the mutual cosignature (``provision(cosign=True)``): a checkpoint Japan
signed but the partner has not cosigned is not yet agreed, status says so and
reconciliation stays on the previous agreed snapshot; once the agent pulls and cosigns
it, it is agreed and reconciled. Under quorum 0 nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core.note import NoteSignature
from jcm_sync.services.agreement import (
    WitnessedTimes,
    agreed_checkpoint,
    cosigned_by,
    witnessed_times,
)
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import partnership_records
from jcm_sync.services.status_view import node_status
from jcm_sync.services.witness import cosigner_name
from tests.cli.conftest import run
from tests.exchange.conftest import Running
from tests.store.conftest import pg_reachable
from tests.witnessed_net import BACKENDS, witnessed_net

__all__ = ["pg_reachable"]

PID = "JP-MN"


@pytest.fixture(params=BACKENDS)
async def net(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Running]:
    """A hub on SQLite or PostgreSQL whose root requires the mutual cosignature."""
    async with witnessed_net(tmp_path, request.param, pg_reachable, cosign=True, seed=2) as running:
        yield running


async def _page_row(net: Running, node: str) -> str:
    """The console partnership page's row of ``node``'s log."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{net.ops_url}/partnerships/{PID}", headers={"Accept": "text/html"}) as page,
    ):
        assert page.status == 200
        html = await page.text()
    return html.split(f'data-log="{node}"', 1)[1].split("</tr>", 1)[0]


async def _more_japan(net: Running) -> int:
    """Japan appends and checkpoints more records; returns its log's new size."""
    assert net.hub is not None
    recs = partnership_records("MN", net.net.keys, projects=1, seed=11)
    service = net.hub.logs(PID).service
    await service.append(recs.by_node["JP"])
    return (await service.sign_checkpoint()).size


async def test_signed_but_not_cosigned_is_not_agreed_until_the_agent_cosigns(
    net: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the status table on one line per log
    assert net.hub is not None
    japan = net.hub
    agent = await net.agent("MN")
    syncer = net.syncer(agent)
    await syncer.sync_once()  # push, pull and witnessing both ways
    own = japan.logs(PID).own
    first = await agreed_checkpoint(japan.store, japan.logs(PID).root, own)
    assert first is not None
    assert first.size == await japan.store.cosigned_size(own)
    before = await ReconcileService(japan).positions(PID)
    assert before["JP"][0] == first.size

    new_size = await _more_japan(net)
    assert new_size > first.size
    latest = await japan.store.latest_checkpoint(own)
    assert latest is not None
    assert latest.size == new_size
    # signed by Japan, not cosigned by MN: not yet agreed; reconciliation stays put
    still = await agreed_checkpoint(japan.store, japan.logs(PID).root, own)
    assert still is not None
    assert still.size == first.size
    assert (await ReconcileService(japan).positions(PID))["JP"] == before["JP"]
    result = await ReconcileService(japan).reconcile(PID)
    assert {p.node: p.size for p in result.run.logs}["JP"] == first.size
    view = {lg.node: lg for lg in (await node_status(japan)).partnerships[0].logs}
    assert view["JP"].agreed is False
    assert view["JP"].agreed_size == first.size
    assert view["JP"].checkpoint == new_size
    assert view["MN"].agreed is True
    row = await _page_row(net, "JP")
    assert f'data-field="agreed_size">{first.size} <' in row
    assert 'data-field="agreed">not yet agreed<' in row
    assert "not yet agreed" not in await _page_row(net, "MN")
    code, out, _ = await asyncio.to_thread(run, capsys, "status", "--config", net.net.configs["JP"])
    assert code in (0, 3)
    jp_line = next(line for line in out.splitlines() if "JP (own)" in line)
    assert "not yet agreed" in jp_line
    assert f"not yet agreed ({first.size})" in jp_line

    await syncer.pull()  # the agent witnesses Japan's new checkpoint and delivers it
    agreed = await agreed_checkpoint(japan.store, japan.logs(PID).root, own)
    assert agreed is not None
    assert agreed.size == new_size
    assert (await ReconcileService(japan).positions(PID))["JP"][0] == new_size
    view = {lg.node: lg for lg in (await node_status(japan)).partnerships[0].logs}
    assert view["JP"].agreed is True
    assert view["JP"].agreed_size == new_size
    row = await _page_row(net, "JP")
    assert f'data-field="agreed_size">{new_size}<' in row
    assert "not yet agreed" not in row


async def test_with_no_cosignature_a_log_under_quorum_is_reconciled_empty(net: Running) -> None:
    """Nothing exchanged yet: Japan's own checkpoint exists but is not agreed."""
    assert net.hub is not None
    japan = net.hub
    await japan.logs(PID).service.sign_checkpoint()
    own = japan.logs(PID).own
    assert await japan.store.latest_checkpoint(own) is not None
    assert await agreed_checkpoint(japan.store, japan.logs(PID).root, own) is None
    positions = await ReconcileService(japan).positions(PID)
    assert positions["JP"][0] == 0
    view = {lg.node: lg for lg in (await node_status(japan)).partnerships[0].logs}
    assert view["JP"].agreed is False
    assert view["JP"].agreed_size is None


async def test_quorum_zero_agrees_every_checkpoint(tmp_path: Path) -> None:
    async with witnessed_net(tmp_path, seed=2) as running:
        assert running.hub is not None
        japan = running.hub
        cp = await japan.logs(PID).service.sign_checkpoint()
        own = japan.logs(PID).own
        agreed = await agreed_checkpoint(japan.store, japan.logs(PID).root, own)
        assert agreed is not None
        assert agreed.size == cp.size
        assert (await ReconcileService(japan).positions(PID))["JP"][0] == cp.size
        assert await witnessed_times(japan.store, japan.logs(PID).root, own) == WitnessedTimes()
        view = {lg.node: lg for lg in (await node_status(japan)).partnerships[0].logs}
        assert view["JP"].agreed is True
        assert view["JP"].agreed_size == cp.size


async def test_witnessed_times_take_the_earliest_agreed_checkpoint_covering_an_entry(
    net: Running,
) -> None:
    assert net.hub is not None
    japan = net.hub
    agent = await net.agent("MN")
    syncer = net.syncer(agent)
    await syncer.sync_once()
    own = japan.logs(PID).own
    first = await japan.store.cosigned_size(own)
    assert first is not None
    new_size = await _more_japan(net)
    await syncer.pull()
    times = await witnessed_times(japan.store, japan.logs(PID).root, own)
    assert times.sizes[-1] == new_size
    assert times.at(0) is not None
    assert times.at(first - 1) == times.times[times.sizes.index(first)]
    assert times.at(new_size - 1) is not None
    assert times.at(new_size) is None  # in no checkpoint yet


def test_witnessed_times_of_pairs() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = WitnessedTimes.of([(10, t0 + timedelta(hours=2)), (5, t0 + timedelta(hours=3))])
    # entry 3 is in both; the size-10 checkpoint was agreed first
    assert times.at(3) == t0 + timedelta(hours=2)
    assert times.at(7) == t0 + timedelta(hours=2)
    assert times.at(10) is None


def test_cosigned_by_maps_names_to_nodes_and_ignores_others(net: Running) -> None:
    assert net.hub is not None
    root = net.hub.logs(PID).root
    own = net.hub.logs(PID).own
    ts = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    sigs = [
        NoteSignature(cosigner_name("jcm-sync.example", "MN"), 1, ts.to_bytes(8, "big") + b"x"),
        NoteSignature(cosigner_name("jcm-sync.example", "JP"), 2, ts.to_bytes(8, "big")),
        NoteSignature("someone.else/witness", 3, ts.to_bytes(8, "big")),
    ]
    got = cosigned_by(root, own, sigs)
    assert got == [("MN", datetime.fromtimestamp(ts, UTC))]  # JP cannot witness its own log
