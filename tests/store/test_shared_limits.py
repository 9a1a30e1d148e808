"""Nonces, request counts and the singleton-job lock shared by hub processes on one
PostgreSQL database (``store/shared_limits.py``, ADR 0042). Each ``SharedLimits`` or
``LeaderLock`` below stands for one hub process: it has connections of its own."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from jcm_sync.errors import ReplayError, StoreError, TooManyRequestsError
from jcm_sync.store import open_store
from jcm_sync.store.shared_limits import (
    LeaderLock,
    LocalLimits,
    SharedLimits,
    leader_lock,
    request_limits,
)
from tests.store.conftest import PG_URL, drop_schema, make_schema, with_param

pytestmark = pytest.mark.postgres

T = 1_800_000_000.0  # a fixed "now" (seconds since the epoch)


@pytest.fixture
async def migrated(pg_url: str) -> str:
    """A schema with the store's tables (migration 5 included)."""
    store = await open_store(pg_url)
    await store.close()
    return pg_url


async def _rows(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_a_nonce_accepted_by_one_process_is_a_replay_at_another(migrated: str) -> None:
    a, b = SharedLimits(migrated), SharedLimits(migrated)
    try:
        await a.admit("JP-ID/ID", "k1 n1", until=T + 300, now=T)
        with pytest.raises(ReplayError, match="another hub process"):
            await b.admit("JP-ID/ID", "k1 n1", until=T + 300, now=T + 1)
        with pytest.raises(ReplayError):
            await a.admit("JP-ID/ID", "k1 n1", until=T + 300, now=T + 299)
        await b.admit("JP-ID/ID", "k2 n1", until=T + 300, now=T + 1)  # another key's nonce
        # once its time has passed the nonce no longer counts: the request it came with
        # fails the time window anyway, so the row is simply taken over
        await b.admit("JP-ID/ID", "k1 n1", until=T + 700, now=T + 301)
    finally:
        await a.close()
        await b.close()


async def test_two_processes_racing_on_one_nonce_accept_it_once(migrated: str) -> None:
    import asyncio

    procs = [SharedLimits(migrated) for _ in range(4)]
    try:
        outcomes = await asyncio.gather(
            *(p.admit("x", "k race", until=T + 300, now=T) for p in procs), return_exceptions=True
        )
    finally:
        for p in procs:
            await p.close()
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, ReplayError) for o in outcomes if o is not None)


async def test_requests_arriving_together_open_one_pool(migrated: str) -> None:
    import asyncio

    limits = SharedLimits(migrated)
    try:
        await asyncio.gather(
            *(limits.admit("x", f"k n{i}", until=T + 300, now=T) for i in range(10))
        )
        assert limits._pool._pool is not None
        opened = limits._pool._pool
        await limits.admit("x", "k last", until=T + 300, now=T)
        assert limits._pool._pool is opened
    finally:
        await limits.close()


async def test_the_request_rate_per_node_is_counted_across_processes(migrated: str) -> None:
    a, b = SharedLimits(migrated, per_second=3), SharedLimits(migrated, per_second=3)
    try:
        await a.admit("JP-ID/ID", "k n1", until=T + 300, now=T)
        await b.admit("JP-ID/ID", "k n2", until=T + 300, now=T + 0.2)
        await a.admit("JP-ID/ID", "k n3", until=T + 300, now=T + 0.4)
        with pytest.raises(TooManyRequestsError, match="4 requests this second; the limit is 3"):
            await b.admit("JP-ID/ID", "k n4", until=T + 300, now=T + 0.6)
        await b.admit("JP-MN/MN", "m n1", until=T + 300, now=T + 0.6)  # another node
        await a.admit("JP-ID/ID", "k n5", until=T + 300, now=T + 1.0)  # the next second
    finally:
        await a.close()
        await b.close()


async def test_expired_nonces_and_past_windows_are_deleted_in_bulk(migrated: str) -> None:
    limits = SharedLimits(migrated, per_second=100, clean_every=3600)
    try:
        for i in range(50):
            await limits.admit("n", f"k old{i}", until=T + 10, now=T)
        await limits.admit("n", "k young", until=T + 500, now=T + 5)
        assert await _rows(migrated, "shared_nonces") == 51
        await limits.clean(T + 20)
        assert await _rows(migrated, "shared_nonces") == 1
        assert await _rows(migrated, "shared_request_counts") == 0
    finally:
        await limits.close()


async def test_cleaning_happens_by_itself_every_interval(migrated: str) -> None:
    limits = SharedLimits(migrated, clean_every=60)
    try:
        await limits.admit("n", "k a", until=T + 10, now=T)  # first call cleans
        await limits.admit("n", "k b", until=T + 10, now=T + 30)  # too soon to clean
        assert await _rows(migrated, "shared_nonces") == 2
        await limits.admit("n", "k c", until=T + 200, now=T + 61)
        assert await _rows(migrated, "shared_nonces") == 1
    finally:
        await limits.close()


async def test_an_unreachable_database_is_a_store_error() -> None:
    limits = SharedLimits("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="PostgreSQL failed checking a request nonce"):
        await limits.admit("n", "k a", until=T + 10, now=T)
    await limits.close()


async def test_one_process_holds_the_singleton_jobs_until_it_goes(migrated: str) -> None:
    first, second = LeaderLock(migrated), LeaderLock(migrated)
    try:
        assert await first.held()
        assert await first.held()  # asked again: still the leader
        assert not await second.held()
        await first.close()  # its session ends, as when the process is killed
        assert await second.held()
        assert not await first.held()  # closed: it takes no lock again
        third = LeaderLock(migrated)
        assert not await third.held()
        await third.close()
    finally:
        await first.close()
        await second.close()


async def test_jobs_asking_at_once_share_one_session(migrated: str) -> None:
    import asyncio

    lock, other = LeaderLock(migrated), LeaderLock(migrated)
    try:
        assert all(await asyncio.gather(*(lock.held() for _ in range(8))))
        assert not await other.held()
    finally:
        await lock.close()
        await other.close()


async def test_the_singleton_lock_is_per_schema(migrated: str) -> None:
    other = await make_schema()
    try:
        here, there = LeaderLock(migrated), LeaderLock(with_param(PG_URL, "search_path", other))
        assert await here.held()
        assert await there.held()
        await here.close()
        await there.close()
    finally:
        await drop_schema(other)


async def test_no_leader_while_the_database_is_unreachable() -> None:
    lock = LeaderLock("postgresql://nobody@127.0.0.1:1/none")
    assert not await lock.held()
    await lock.close()


async def test_sqlite_keeps_limits_in_memory_and_is_always_the_leader(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        limits = request_limits(store, per_second=2)
        assert isinstance(limits, LocalLimits)
        assert leader_lock(store) is None
    finally:
        await store.close()
    await limits.admit("JP-ID/ID", "k n1", until=T + 300, now=T)
    await limits.admit("JP-ID/ID", "k n1", until=T + 300, now=T)  # nonces: the verifier's
    with pytest.raises(TooManyRequestsError):
        await limits.admit("JP-ID/ID", "k n2", until=T + 300, now=T + 0.5)
    await limits.admit("JP-ID/ID", "k n3", until=T + 300, now=T + 1)
    assert await LocalLimits().admit("x", "k", until=T, now=T) is None  # 0: no limit


async def test_a_postgres_store_gets_shared_limits_and_a_leader_lock_closed_with_it(
    migrated: str,
) -> None:
    store = await open_store(migrated)
    try:
        limits, lock = request_limits(store, 5), leader_lock(store)
        assert isinstance(limits, SharedLimits)
        assert limits.per_second == 5
        assert isinstance(lock, LeaderLock)
        assert await lock.held()
        await limits.admit("n", "k a", until=T + 10, now=T)
    finally:
        await store.close()
    other = LeaderLock(migrated)  # the store's close ended the first lock's session
    assert await other.held()
    await other.close()
