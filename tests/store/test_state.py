"""Node state in the store (protocol rule 9): get, put, delete and list by prefix on every
backend, values of any size in chunks, never half written, and entries counted per hour.

Set ``JCM_SYNC_SLOW=1`` for the 300 MB value (a reconciliation report at volume).
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from jcm_sync.errors import BadDataError
from jcm_sync.store import Store, open_store
from jcm_sync.store.base import STATE_CHUNK
from tests.store import World
from tests.store.state_child import check_value

SLOW = os.environ.get("JCM_SYNC_SLOW") == "1"
CHILD = Path(__file__).with_name("state_child.py")
MIB = 1024 * 1024


async def chunk_rows(url: str, key: str) -> list[tuple[int, int]]:
    """(chunk number, length) of a key's rows, read behind the store's back."""
    text = "SELECT chunk, length(value) FROM node_state WHERE key = ? ORDER BY chunk"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return [(int(a), int(b)) for a, b in conn.execute(text, (key,)).fetchall()]
        finally:
            conn.close()
    pconn = await asyncpg.connect(url)
    try:
        return [(int(a), int(b)) for a, b in await pconn.fetch(text.replace("?", "$1"), key)]
    finally:
        await pconn.close()


def persistent_only(url: str) -> None:
    if url == "memory://":
        pytest.skip("memory:// keeps nothing after close, by design")


# --- the API ---------------------------------------------------------------------------


async def test_put_get_replace_delete(store: Store) -> None:
    """A value reads back as written, a rewrite replaces it whole, a delete removes it
    (True once, then False), and a missing key reads None."""
    assert await store.get_state("status/JP-MN") is None
    await store.put_state("status/JP-MN", b'{"partnership": "JP-MN", "jobs": {}}')
    assert await store.get_state("status/JP-MN") == b'{"partnership": "JP-MN", "jobs": {}}'
    await store.put_state("status/JP-MN", b"shorter")
    assert await store.get_state("status/JP-MN") == b"shorter"
    await store.put_state("status/JP-MN", b"")
    assert await store.get_state("status/JP-MN") == b""  # empty is a value, not None
    assert await store.delete_state("status/JP-MN") is True
    assert await store.get_state("status/JP-MN") is None
    assert await store.delete_state("status/JP-MN") is False


async def test_concurrent_writers_of_one_key_leave_one_whole_value(store: Store) -> None:
    """Many writers of one key at once (a hub taking several pushes of a partnership
    together) all succeed, and the key ends holding exactly one of their values, whole.
    Before a per-key lock, two PostgreSQL writers could both insert chunk 0 and one
    failed on the primary key."""
    values = [bytes([n]) * (1000 + n) for n in range(24)]
    await asyncio.gather(*(store.put_state("status/JP-MN", v) for v in values))
    assert await store.get_state("status/JP-MN") in values


async def test_keys_are_listed_by_exact_prefix_in_code_point_order(store: Store) -> None:
    """``state_keys`` lists the keys that start with the prefix, sorted; LIKE's wildcards
    and case are taken literally."""
    keys = ["alarm/b", "alarm/a/x", "alarm/A", "alarmist", "status/JP-MN", "a%b", "a_b", "axb"]
    for k in keys:
        await store.put_state(k, k.encode())
    assert await store.state_keys("alarm/") == ["alarm/A", "alarm/a/x", "alarm/b"]
    assert await store.state_keys("alarm") == ["alarm/A", "alarm/a/x", "alarm/b", "alarmist"]
    assert await store.state_keys("a%") == ["a%b"]
    assert await store.state_keys("a_") == ["a_b"]
    assert await store.state_keys("") == sorted(keys)
    assert await store.state_keys("nothing/") == []


@pytest.mark.parametrize(
    "key",
    ["", "x" * 513, "tab\there", "new\nline", 7, None],
    ids=["empty", "too-long", "tab", "newline", "int", "none"],
)
async def test_a_bad_key_is_refused_and_nothing_stored(store: Store, key: object) -> None:
    """Keys are 1..512 printable characters; anything else is a BadDataError naming the
    rule, on every method, and nothing is written."""
    with pytest.raises(BadDataError, match="state key"):
        await store.put_state(key, b"v")  # type: ignore[arg-type]
    with pytest.raises(BadDataError, match="state key"):
        await store.get_state(key)  # type: ignore[arg-type]
    with pytest.raises(BadDataError, match="state key"):
        await store.delete_state(key)  # type: ignore[arg-type]
    assert await store.state_keys("") == []


@pytest.mark.parametrize("value", ["text", 12, None, ["a"]], ids=["str", "int", "none", "list"])
async def test_a_value_that_is_not_bytes_is_refused(store: Store, value: object) -> None:
    with pytest.raises(BadDataError, match="a value is bytes"):
        await store.put_state("status/JP-MN", value)  # type: ignore[arg-type]
    assert await store.get_state("status/JP-MN") is None


async def test_state_survives_reopening(store_url: str) -> None:
    """What one process wrote, the next one reads; a delete is durable too."""
    persistent_only(store_url)
    async with await open_store(store_url) as first:
        await first.put_state("alarm/o", b"evidence")
        await first.put_state("gone", b"x")
        assert await first.delete_state("gone")
    async with await open_store(store_url) as again:
        assert await again.get_state("alarm/o") == b"evidence"
        assert await again.get_state("gone") is None
        assert await again.state_keys("") == ["alarm/o"]


# --- large values ----------------------------------------------------------------------


async def large_round_trip(store: Store, url: str, size: int) -> None:
    rng = random.Random(size)
    block = rng.randbytes(MIB)
    value = (block * (size // MIB + 1))[:size]
    await store.put_state("reconcile/JP-MN/report", value)
    assert await store.get_state("reconcile/JP-MN/report") == value
    if not url.startswith("memory"):
        rows = await chunk_rows(url, "reconcile/JP-MN/report")
        n = -(-size // STATE_CHUNK)
        assert [c for c, _ in rows] == list(range(n))
        assert all(length <= STATE_CHUNK for _, length in rows)
        assert sum(length for _, length in rows) == size
    smaller = value[: STATE_CHUNK + 1]  # replacing with fewer chunks leaves none behind
    await store.put_state("reconcile/JP-MN/report", smaller)
    assert await store.get_state("reconcile/JP-MN/report") == smaller
    if not url.startswith("memory"):
        assert [c for c, _ in await chunk_rows(url, "reconcile/JP-MN/report")] == [0, 1]


async def test_a_64_mib_value_is_stored_in_chunks(store: Store, store_url: str) -> None:
    """64 MiB and a bit (a large reconciliation report) round-trips on every backend, as
    rows of at most ``STATE_CHUNK`` bytes; a smaller rewrite leaves no old chunk."""
    await large_round_trip(store, store_url, 64 * MIB + 12345)


@pytest.mark.skipif(not SLOW, reason="300 MB value: set JCM_SYNC_SLOW=1")
async def test_a_300_mb_value_is_stored(store: Store, store_url: str) -> None:
    await large_round_trip(store, store_url, 300 * 1000 * 1000)


# --- never half written ------------------------------------------------------------------


async def test_a_killed_writer_leaves_a_whole_value(store_url: str) -> None:
    """``kill -9`` of a process replacing a 12 MiB (two-chunk) value, at random moments:
    the stored value is always one whole generation, at least the last acknowledged one
    and at most the one after it."""
    persistent_only(store_url)
    rng = random.Random(os.environ.get("JCM_SYNC_DURABILITY_SEED", "state"))
    for _ in range(6 if SLOW else 3):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), store_url, "reconcile/JP-MN/report",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert ready.startswith(b"ready"), (await proc.communicate())[1].decode()[-2000:]
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        proc.kill()
        out, err = await proc.communicate()
        assert b"Traceback" not in err, err.decode()[-2000:]
        acked = [
            int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("ack")
        ]
        async with await open_store(store_url) as store:
            value = await store.get_state("reconcile/JP-MN/report")
        if value is None:
            assert acked == []
            continue
        g = check_value(value)
        last = acked[-1] if acked else 0
        assert last <= g <= last + 1


# --- entries appended per bucket ----------------------------------------------------------


async def test_append_counts_per_hour(store: Store, world: World) -> None:
    """Entries appended at chosen times are counted per hour from ``since``, oldest first,
    empty hours left out; entries before ``since`` are not counted, whatever the offset
    they were stamped with (SQLite keeps the text); an unknown log has none; a bad bucket
    or a naive time is refused."""
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    tokyo = timezone(timedelta(hours=9))
    log = world.jp_log
    await store.ensure_log(log)
    envs = world.envelopes("JP", 10)
    plan = [  # (minutes after t0, how many, stamped in Tokyo time)
        (-90, 1, True), (-1, 1, False), (5, 2, False), (59, 1, True), (60, 1, False),
        (185, 3, True), (186, 1, False),
    ]  # fmt: skip
    start = 0
    for minutes, n, in_tokyo in plan:
        at = t0 + timedelta(minutes=minutes)
        at = at.astimezone(tokyo) if in_tokyo else at
        store.set_clock(lambda at=at: at)
        await store.append_entries(log, start, envs[start : start + n], world.verify)
        start += n
    got = await store.append_counts(log, t0, 3600)
    assert got == [(t0, 3), (t0 + timedelta(hours=1), 1), (t0 + timedelta(hours=3), 4)]
    assert all(at.tzinfo is not None and at.utcoffset() == timedelta(0) for at, _ in got)
    assert await store.append_counts(log, t0 - timedelta(hours=2), 86400) == [
        (t0 - timedelta(hours=2), 10)
    ]
    assert await store.append_counts(world.id_log, t0, 3600) == []
    with pytest.raises(BadDataError, match="bucket_seconds"):
        await store.append_counts(log, t0, 0)
    with pytest.raises(BadDataError, match="timezone-aware"):
        await store.append_counts(log, t0.replace(tzinfo=None), 3600)
