"""The stored status: per-partnership observations, written whole, read back or started afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.local.status import (
    AgentStatus,
    JobStatus,
    LogStatus,
    read_status,
    status_key,
    write_status,
)
from jcm_sync.store import Store, open_store
from tests.local.conftest import node_db_url

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def observed() -> AgentStatus:
    """A status with every kind of field set, as an agent leaves it after some jobs."""
    return AgentStatus(
        partnership="JP-MN",
        jobs={
            "push": JobStatus(last_run=T0, last_success=T0, failures=0),
            "pull": JobStatus(
                last_run=T0 + timedelta(seconds=30),
                last_success=T0,
                last_error="hub unreachable",
                last_error_at=T0 + timedelta(seconds=30),
                failures=2,
            ),
        },
        logs={
            "jcm-sync.example/JP-MN/MN": LogStatus(
                origin="jcm-sync.example/JP-MN/MN", local_size=12, remote_size=10, checked_at=T0
            ),
            "jcm-sync.example/JP-MN/JP": LogStatus(origin="jcm-sync.example/JP-MN/JP"),
        },
        hub_receipt=b"\x00signed receipt\xff",
    )


async def test_a_written_status_reads_back_equal(store: Store) -> None:
    """Every field written (times, errors, sizes, receipt bytes) is read back the same."""
    status = observed()
    await write_status(store, status)
    back = await read_status(store, "JP-MN")
    assert back == status
    assert back.jobs["pull"].last_error_at == T0 + timedelta(seconds=30)
    assert back.hub_receipt == b"\x00signed receipt\xff"


async def test_a_missing_status_is_a_fresh_one(store: Store) -> None:
    """Before any job has run, the status is empty for that partnership, not an error."""
    fresh = await read_status(store, "JP-MN")
    assert fresh == AgentStatus(partnership="JP-MN")
    assert (fresh.jobs, fresh.logs, fresh.hub_receipt) == ({}, {}, None)
    assert await store.state_keys("status/") == []


async def test_each_partnership_has_its_own_key(store: Store, tmp_path: Path) -> None:
    """Two partnerships of one node keep separate values in the store, no file beside it."""
    await write_status(store, observed())
    other = AgentStatus(partnership="JP-ID", jobs={"push": JobStatus(failures=5)})
    await write_status(store, other)
    assert await store.state_keys("status/") == [status_key("JP-ID"), status_key("JP-MN")]
    assert await read_status(store, "JP-ID") == other
    assert await read_status(store, "JP-MN") == observed()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("node.db")) == []


async def test_a_rewrite_replaces_the_whole_value(store: Store) -> None:
    """A later write replaces the earlier one entirely."""
    await write_status(store, observed())
    later = AgentStatus(partnership="JP-MN", jobs={"push": JobStatus(failures=1)})
    await write_status(store, later)
    assert await read_status(store, "JP-MN") == later


async def test_a_status_survives_reopening_the_store(tmp_path: Path) -> None:
    """What one process wrote, the next one (a restart) reads."""
    url = node_db_url(tmp_path)
    async with await open_store(url) as first:
        await write_status(first, observed())
    async with await open_store(url) as again:
        assert await read_status(again, "JP-MN") == observed()


@pytest.mark.parametrize(
    "content",
    [b"", b"{truncated", b'{"partnership": "JP-MN", "jobs": {"push": {"failures": "x"}}}'],
    ids=["empty", "truncated", "wrong-type"],
)
async def test_an_unreadable_status_starts_afresh(store: Store, content: bytes) -> None:
    """A damaged value loses only observations: it reads as a fresh status."""
    await store.put_state(status_key("JP-MN"), content)
    assert await read_status(store, "JP-MN") == AgentStatus(partnership="JP-MN")


async def test_another_partnerships_value_is_not_taken(store: Store) -> None:
    """A value naming another partnership (a misfiled import) reads as a fresh status."""
    await store.put_state(status_key("JP-ID"), b'{"partnership": "JP-MN"}')
    assert await read_status(store, "JP-ID") == AgentStatus(partnership="JP-ID")


async def test_unknown_fields_from_a_newer_version_are_ignored(store: Store) -> None:
    """A status written by a newer jcm-sync with extra fields still reads its known ones."""
    await store.put_state(
        status_key("JP-MN"),
        b'{"partnership": "JP-MN", "future": 1, "jobs": {"push": {"failures": 4, "new": true}}}',
    )
    assert (await read_status(store, "JP-MN")).jobs["push"].failures == 4
