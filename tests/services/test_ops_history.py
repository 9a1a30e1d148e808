"""The console's 7-day history (services.ops_history) on a real node over a SQLite file:
records appended per hour from the store, lag samples kept per hour in the node's state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.local.config import load_config
from jcm_sync.services import ops_history
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.ops_history import (
    HOUR,
    WINDOW_HOURS,
    LagHistory,
    LagSampler,
    hour_of,
    merge_lag,
    read_lag,
    record_lag,
    series,
    state_key,
)
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.services.status_view import NodeStatus, node_status
from jcm_sync.store import open_store
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_reachable, with_param

__all__ = ["pg_reachable"]

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
PID = "JP-MN"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def agent(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[tuple[Network, Node, Clock]]:
    """Mongolia's agent on a SQLite file, or on a schema of its own in PostgreSQL."""
    clock = Clock()
    net = provision(tmp_path / "net", ["MN"], hub_port=0, now=T0 - timedelta(days=12))
    schema = store = None
    if request.param == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schema = await make_schema()
        store = await open_store(with_param(PG_URL, "search_path", schema))
    node = await open_node(load_config(net.configs["MN"], env={}), clock=clock, store=store)
    try:
        yield net, node, clock
    finally:
        await node.close()
        if schema is not None:
            await drop_schema(schema)


def status(lags: dict[str, int | None]) -> dict[str, dict[str, int | None]]:
    """A sample of the one partnership's logs (``ops_history.lags_of``'s shape)."""
    return {PID: lags}


def test_merge_keeps_the_hours_maximum_and_prunes_the_window() -> None:
    h = LagHistory()
    assert merge_lag(h, "MN", 5, T0)
    assert not merge_lag(h, "MN", 3, T0 + timedelta(minutes=10))  # lower: no write
    assert merge_lag(h, "MN", 9, T0 + timedelta(minutes=20))
    assert h.logs["MN"] == {hour_of(T0): 9}
    later = T0 + timedelta(hours=WINDOW_HOURS)  # T0's hour just left the window
    assert merge_lag(h, "MN", 0, later)
    assert h.logs["MN"] == {hour_of(later): 0}
    assert hour_of(T0) % HOUR == 0
    assert hour_of(T0) == int(datetime(2026, 11, 20, 9, tzinfo=UTC).timestamp())


async def test_lag_samples_persist_in_the_node_state(agent: tuple[Network, Node, Clock]) -> None:
    _, node, clock = agent
    assert await record_lag(node.store, status({"MN": 4, "JP": None}), clock()) == 1
    assert await record_lag(node.store, status({"MN": 2, "JP": None}), clock()) == 0
    clock.now += timedelta(hours=2)
    assert await record_lag(node.store, status({"MN": 0, "JP": 7}), clock()) == 1
    stored = await read_lag(node.store, PID)
    assert stored.logs == {
        "MN": {hour_of(T0): 4, hour_of(clock.now): 0},
        "JP": {hour_of(clock.now): 7},
    }
    assert state_key(PID) in await node.store.state_keys("ops/lag/")


async def test_an_unreadable_value_is_replaced(agent: tuple[Network, Node, Clock]) -> None:
    _, node, clock = agent
    await node.store.put_state(state_key(PID), b"{not json")
    assert (await read_lag(node.store, PID)).logs == {}
    assert await record_lag(node.store, status({"MN": 1, "JP": 1}), clock()) == 1
    assert (await read_lag(node.store, PID)).logs["MN"] == {hour_of(T0): 1}


async def test_series_counts_records_per_hour_and_aligns_lags(
    agent: tuple[Network, Node, Clock],
) -> None:
    net, node, clock = agent
    recs = partnership_records("MN", net.keys, created=T0 - timedelta(days=10)).by_node["MN"]
    assert len(recs) > 6
    clock.now = T0 - timedelta(days=8)  # outside the window: not counted
    await append_own(node, PID, recs[:2])
    clock.now = T0 - timedelta(hours=5, minutes=59)
    await append_own(node, PID, recs[2:5])
    clock.now = T0
    await append_own(node, PID, recs[5:])
    await record_lag(node.store, status({"MN": 3, "JP": None}), clock())
    logs = node.logs(PID)
    got = await series(node.store, PID, (logs.own, logs.replica), "MN", clock())
    assert len(got.hours) == WINDOW_HOURS
    assert got.hours[-1] == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert got.hours[0] == got.hours[-1] - timedelta(hours=WINDOW_HOURS - 1)
    own, replica = got.logs
    assert (own.node, own.own, replica.node, replica.own) == ("MN", True, "JP", False)
    assert own.appended[-1] == len(recs) - 5
    assert own.appended[-7] == 3  # 03:31 is in the 03:00 hour, six hours before 09:00
    assert sum(own.appended) == len(recs) - 2
    assert sum(replica.appended) == 0
    assert own.lag[-1] == 3
    assert own.lag[:-1] == [None] * (WINDOW_HOURS - 1)
    assert replica.lag == [None] * WINDOW_HOURS


async def test_the_sampler_samples_until_stopped(agent: tuple[Network, Node, Clock]) -> None:
    """A running sampler writes the lag of the node's status (here a replica never pulled:
    lag unknown, so nothing) and stops cleanly; a failing sample does not kill it."""
    _, node, _ = agent
    calls: list[int] = []
    real = node_status

    async def counting(n: Node) -> NodeStatus:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the store hiccuped")
        return await real(n)

    sampler = LagSampler(node, interval=0.01)
    mp = pytest.MonkeyPatch()
    mp.setattr(ops_history, "node_status", counting)
    try:
        sampler.start()
        for _ in range(200):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        await sampler.stop()
    finally:
        mp.undo()
    assert len(calls) >= 3
    n = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == n  # stopped
