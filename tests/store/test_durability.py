"""Acknowledged appends survive ``kill -9``; a killed append leaves nothing half written.

A child process (``durability_child.py``) appends in a loop and prints each acknowledged
index; the parent kills it with SIGKILL at a random moment, reopens the store and checks:
every acknowledged index holds its exact bytes, every entry hashes to its record id, the
root recomputed from the entries is the stored root, every perfect-subtree node is present
and right, and no row (entry, node, index) lies past the stored size. Several independent
lanes (one database each) run at once to keep the test short. Set ``JCM_SYNC_SLOW=1`` for
the long variant; ``JCM_SYNC_DURABILITY_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from jcm_sync.core import merkle, subtrees
from jcm_sync.store import LogRef, open_store, sparse, sql
from tests.store import World

CHILD = Path(__file__).with_name("durability_child.py")
SLOW = os.environ.get("JCM_SYNC_SLOW") == "1"
READY_TIMEOUT_S = 60.0


@dataclass
class Lane:
    """One database, killed ``rounds`` times in a row."""

    url: str
    seed: int
    acked: set[int] = field(default_factory=set)
    kills: int = 0
    mid_append: int = 0


@pytest.fixture(scope="module")
def pool(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[bytes]]:
    """Envelopes for the children to append, and the trust root to verify them with."""
    envs = world.envelopes("JP", 20_000 if SLOW else 2500)  # appends got faster (ADR 0058)
    d = tmp_path_factory.mktemp("durability")
    (d / "pool").write_bytes(b"\n".join(envs))
    (d / "root").write_bytes(world.root_envelope)
    return d / "pool", d / "root", envs


def expected_nodes(envs: list[bytes]) -> dict[tuple[int, int], bytes]:
    frontier = subtrees.Frontier.empty()
    nodes: dict[tuple[int, int], bytes] = {}
    for env in envs:
        frontier, created = frontier.append(merkle.leaf_hash(env))
        nodes.update({(n.level, n.index): n.hash for n in created})
    return nodes


async def raw_counts(url: str, origin: str) -> tuple[int, int, int]:
    """Rows of the log's entries, stored nodes and ids (all parts of the id index), read
    behind the store's back."""
    queries = [
        f"SELECT count(*) FROM {t} WHERE log_id = (SELECT id FROM logs WHERE origin = ?)"
        for t in ("log_entries", "log_nodes", *sql.ID_TABLES)
    ]
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            e, n, *ids = (conn.execute(q, (origin,)).fetchone()[0] for q in queries)
        finally:
            conn.close()
        return e, n, sum(ids)
    pg = await asyncpg.connect(url)
    try:
        e, n, *ids = [await pg.fetchval(q.replace("?", "$1"), origin) for q in queries]
    finally:
        await pg.close()
    return e, n, sum(ids)


async def check_survivors(url: str, log: LogRef, envs: list[bytes], acked: set[int]) -> int:
    """The checks of the module docstring; returns the size found."""
    async with await open_store(url) as store:
        await store.ensure_log(log)
        head = await store.tree_head(log)
        assert head.size >= max(acked, default=-1) + 1, "an acknowledged entry was lost"
        entries = await store.entries(log)  # checks each envelope against its record id
        assert [e.envelope for e in entries] == envs[: head.size]
        assert merkle.root([e.leaf_hash for e in entries]) == head.root
        want = expected_nodes(envs[: head.size])
        assert await store.tree_nodes(log, list(want)) == want
        for e in entries[-10:]:  # the index rows of the last appends point at their entries
            assert (await store.record(e.record_id)).index == e.index
    stored = sum(1 for level, _ in want if sparse.is_stored(level))
    # PostgreSQL finds ids through a hash index of the entries, its id tables stay empty
    keyed = head.size if url.startswith("sqlite:///") else 0
    assert await raw_counts(url, log.origin) == (head.size, stored, keyed)
    return head.size


async def kill_once(
    lane: Lane, log: LogRef, pool_path: Path, root_path: Path, world: World
) -> None:
    rng = random.Random(f"{lane.seed}/{lane.kills}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), lane.url, str(pool_path), str(root_path),
        world.now.isoformat(), str(rng.random()), log.partnership, log.node, log.origin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    early: list[bytes] = []
    if rng.random() < 0.15:
        # now and then, kill it while it starts: opening and creating tables
        await asyncio.sleep(rng.uniform(0.0, 0.15))
    else:
        ready = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
        if not ready.startswith(b"ready"):
            _, err = await proc.communicate()
            pytest.fail(f"child did not start: {ready!r} {err.decode()[-2000:]}")
        # the kill lands mid-append: after the child's first acknowledgement (on a loaded
        # machine a fixed delay after "ready" could precede every append), a random while on
        first = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
        early.append(first)
        await asyncio.sleep(rng.uniform(0.0, 0.1))
    if proc.returncode is None:
        proc.kill()
    out, err = await proc.communicate()
    lines = b"".join([*early, out]).decode().split()
    assert b"Traceback" not in err, err.decode()[-2000:]
    assert "done" not in lines, "the pool ran out before the kill: make it larger"
    acks = {int(x) for x in lines if x.isdigit()}
    lane.mid_append += bool(acks)
    lane.acked |= acks
    lane.kills += 1


async def run_lanes(
    lanes: list[Lane], rounds: int, pool: tuple[Path, Path, list[bytes]], world: World
) -> None:
    pool_path, root_path, envs = pool

    async def one(lane: Lane) -> None:
        for _ in range(rounds):
            await kill_once(lane, world.jp_log, pool_path, root_path, world)
            size = await check_survivors(lane.url, world.jp_log, envs, lane.acked)
            assert size < len(envs)

    await asyncio.gather(*(one(lane) for lane in lanes))
    total = sum(lane.kills for lane in lanes)
    assert total == len(lanes) * rounds
    assert sum(lane.mid_append for lane in lanes) >= total // 2, "few kills landed mid-append"


def base_seed() -> int:
    return int(os.environ.get("JCM_SYNC_DURABILITY_SEED", random.randrange(2**32)))


def sqlite_lanes(tmp_path: Path, n: int) -> list[Lane]:
    seed = base_seed()
    return [Lane(f"sqlite:///{tmp_path / f'lane{i}.db'}", seed + i) for i in range(n)]


async def test_sqlite_survives_20_kills(
    tmp_path: Path, pool: tuple[Path, Path, list[bytes]], world: World
) -> None:
    """SQLite: 20 SIGKILLs at random moments lose no acknowledged append (4 lanes x 5)."""
    lanes = sqlite_lanes(tmp_path, 4)
    try:
        await run_lanes(lanes, 5, pool, world)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (JCM_SYNC_DURABILITY_SEED={lanes[0].seed})") from exc


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="long durability run: set JCM_SYNC_SLOW=1")
async def test_sqlite_survives_200_kills(
    tmp_path: Path, pool: tuple[Path, Path, list[bytes]], world: World
) -> None:
    """SQLite: 200 SIGKILLs at random moments lose no acknowledged append (4 lanes x 50)."""
    lanes = sqlite_lanes(tmp_path, 4)
    try:
        await run_lanes(lanes, 50, pool, world)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (JCM_SYNC_DURABILITY_SEED={lanes[0].seed})") from exc


@pytest.mark.postgres
async def test_postgres_survives_5_kills(
    pg_url: str, pool: tuple[Path, Path, list[bytes]], world: World
) -> None:
    """PostgreSQL: 5 SIGKILLs of the client at random moments lose no acknowledged append."""
    lane = Lane(pg_url, base_seed())
    try:
        await run_lanes([lane], 5, pool, world)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (JCM_SYNC_DURABILITY_SEED={lane.seed})") from exc
