"""Group commit (``store/group_commit.py``) on real SQLite files, alone and in the store.

The committer alone: jobs queued at once share transactions within the bounds, run in
the order submitted, a refused job rolls back alone, a failed COMMIT (a deferred foreign
key) fails every caller and keeps nothing, and every answer comes after the COMMIT (a
second connection sees the row). In ``SqliteStore``: concurrent appends to several logs
and to one log share transactions, a refused append among them raises its own error and
sinks nothing else, and ``kill -9`` of a process appending to two logs at once (with a
refused fork in the same groups) loses nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jcm_sync.errors import ConflictError, ForkError, StoreError
from jcm_sync.store.group_commit import GROUP_FAILED, GroupCommitter
from jcm_sync.store.sqlite import SqliteStore
from tests.store import World
from tests.store.test_durability import check_survivors

CHILD = Path(__file__).with_name("group_commit_child.py")
POOL = 10_000
"""Envelopes per log the kill test's child may append, more than its six rounds reach."""


class Db:
    """A WAL file with ``synchronous=FULL``, its connection owned by one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.conn: sqlite3.Connection | None = None
        self.executor.submit(self._open).result()

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )
        conn.execute("INSERT OR IGNORE INTO parent VALUES (1)")
        self.conn = conn

    def db(self) -> sqlite3.Connection:
        assert self.conn is not None
        return self.conn

    def committed(self) -> set[int]:
        """The keys a second connection sees: what is committed."""
        other = sqlite3.connect(self.path)
        try:
            return {k for (k,) in other.execute("SELECT k FROM t")}
        finally:
            other.close()

    def close(self) -> None:
        self.executor.submit(self.db().close).result()
        self.executor.shutdown()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    d = Db(tmp_path / "g.db")
    yield d
    d.close()


def insert(d: Db, k: int, parent: int = 1) -> int:
    d.db().execute("INSERT INTO t VALUES (?, ?)", (k, parent))
    return k


async def test_queued_jobs_share_transactions_and_answer_after_commit(db: Db) -> None:
    """40 jobs at once: fewer transactions than jobs, each caller sees its row committed."""
    g = GroupCommitter(db.executor, db.db)
    seen_after: dict[int, bool] = {}

    async def one(k: int) -> None:
        assert await g.run(lambda: insert(db, k)) == k
        seen_after[k] = k in db.committed()

    await asyncio.gather(*(one(k) for k in range(40)))
    assert len(seen_after) == 40
    assert all(seen_after.values())
    assert g.groups < 40  # queued in one tick: one group
    assert db.committed() == set(range(40))


async def test_a_refused_job_rolls_back_alone(db: Db) -> None:
    """A job that writes then raises keeps nothing and gets its own error; the rest commit."""
    g = GroupCommitter(db.executor, db.db)

    def bad() -> int:
        insert(db, 1000)
        insert(db, 3)  # the key of another job of the group: IntegrityError
        return 0

    jobs = [g.run(lambda k=k: insert(db, k)) for k in range(6)]  # type: ignore[misc]
    jobs.insert(4, g.run(bad))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[4], sqlite3.IntegrityError)
    assert [r for n, r in enumerate(results) if n != 4] == list(range(6))
    assert g.groups < 7
    assert db.committed() == set(range(6))


async def test_before_runs_ahead_of_each_group_told_if_a_job_is_heavy(db: Db) -> None:
    """``before`` (rule 7) runs on the connection's thread before each group's BEGIN,
    with True when any job of that group was submitted heavy, else False."""
    seen: list[tuple[bool, bool]] = []
    g = GroupCommitter(
        db.executor, db.db, before=lambda heavy: seen.append((heavy, db.db().in_transaction))
    )
    block = asyncio.ensure_future(g.run(lambda: insert(db, 100)))
    await asyncio.sleep(0)
    first = [g.run(lambda: insert(db, 1)), g.run(lambda: insert(db, 2), heavy=True)]
    assert await asyncio.gather(*first) == [1, 2]
    await block
    assert await g.run(lambda: insert(db, 3)) == 3
    assert seen == [(False, False), (True, False), (False, False)]
    assert db.committed() == {1, 2, 3, 100}


async def test_a_failed_commit_fails_every_caller(db: Db) -> None:
    """A deferred foreign key fails the COMMIT: every caller gets an error, none is kept."""
    g = GroupCommitter(db.executor, db.db)
    await g.run(lambda: insert(db, 100))  # the committer is busy with a group of one first
    block = asyncio.ensure_future(g.run(lambda: insert(db, 101)))
    await asyncio.sleep(0)
    jobs = [g.run(lambda k=k: insert(db, k)) for k in range(5)]  # type: ignore[misc]
    jobs.append(g.run(lambda: insert(db, 50, parent=2)))  # no parent 2: fails at COMMIT
    results = await asyncio.gather(*jobs, return_exceptions=True)
    await block
    assert all(str(r).startswith(GROUP_FAILED) for r in results), results
    assert all(isinstance(r.__cause__, sqlite3.IntegrityError) for r in results)  # type: ignore[union-attr]
    assert db.committed() == {100, 101}
    assert await g.run(lambda: insert(db, 7)) == 7  # the next group is not affected
    assert db.committed() == {7, 100, 101}


async def test_a_job_that_ends_the_transaction_fails_the_group(db: Db) -> None:
    """A job whose error ended the transaction itself: nothing of the group is kept."""
    g = GroupCommitter(db.executor, db.db)
    block = asyncio.ensure_future(g.run(lambda: insert(db, 100)))
    await asyncio.sleep(0)

    def ends() -> None:
        db.db().execute("ROLLBACK")
        raise sqlite3.OperationalError("the transaction is gone")

    jobs = [g.run(lambda k=k: insert(db, k)) for k in range(3)]  # type: ignore[misc]
    jobs.append(g.run(ends))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    await block
    assert [type(r) for r in results] == [sqlite3.OperationalError] * 4
    assert [str(r).startswith(GROUP_FAILED) for r in results] == [True] * 3 + [False]
    assert db.committed() == {100}


async def test_bounds_and_order(db: Db) -> None:
    """At most ``max_jobs`` jobs and ``max_weight`` per group, a heavier job alone; jobs
    run in the order submitted."""
    g = GroupCommitter(db.executor, db.db, max_jobs=4, max_weight=10)
    ran: list[tuple[int, int]] = []  # (job, group)

    def job(k: int) -> int:
        ran.append((k, g.groups))
        return insert(db, k)

    weights = [1] * 9 + [25] + [3] * 6
    await asyncio.gather(*(g.run(lambda k=k: job(k), w) for k, w in enumerate(weights)))
    assert [k for k, _ in ran] == list(range(len(weights)))
    groups: dict[int, list[int]] = {}
    for k, n in ran:
        groups.setdefault(n, []).append(k)
    assert all(len(ks) <= 4 for ks in groups.values())
    assert [9] in groups.values()  # the heavy job, alone
    assert all(sum(weights[k] for k in ks) <= 10 for ks in groups.values() if ks != [9])
    assert db.committed() == set(range(len(weights)))


# --- in the store ---------------------------------------------------------------------


async def test_store_appends_to_two_logs_and_one_log_share_commits(
    tmp_path: Path, world: World
) -> None:
    """Batches of one log submitted in order and of another log at once: all appended in
    order, in fewer transactions than appends; a fork and a gap among them are refused
    with their own errors and take nothing else down."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    jp, ids = world.envelopes("JP", 60), world.envelopes("ID", 60)
    store = await SqliteStore.open(url)
    try:
        for log in (world.jp_log, world.id_log):
            await store.ensure_log(log)
        await store.append_entries(world.jp_log, 0, jp[:5], world.verify)
        before = store._group.groups
        jobs = [
            store.append_entries(world.jp_log, s, jp[s : s + 5], world.verify)
            for s in range(5, 60, 5)
        ]
        jobs.insert(3, store.append_entries(world.jp_log, 0, [jp[7]], world.verify))  # fork
        jobs.insert(6, store.append_entries(world.id_log, 99, ids[:1], world.verify))  # gap
        jobs += [
            store.append_entries(world.id_log, s, ids[s : s + 10], world.verify)
            for s in range(0, 60, 10)
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(results.pop(6), ConflictError)
        assert isinstance(results.pop(3), ForkError | StoreError)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert store._group.groups - before < len(jobs) - 2
    finally:
        await store.close()
    for log, envs in ((world.jp_log, jp), (world.id_log, ids)):
        assert await check_survivors(url, log, envs, set(range(60))) == 60


async def test_kill_mid_group_loses_nothing_acknowledged(tmp_path: Path, world: World) -> None:
    """``kill -9`` of a process whose appends to two logs share transactions, six times:
    every acknowledged entry of both logs survives, whole, and the fork never got in."""
    d = tmp_path
    # six rounds of up to 0.3 s of appending reached 2,600 entries of a log on this
    # machine: the pools must outlast them, or the child ends before it is killed
    pools = {"JP": world.envelopes("JP", POOL), "ID": world.envelopes("ID", POOL)}
    for node, envs in pools.items():
        (d / node).write_bytes(b"\n".join(envs))
    (d / "root").write_bytes(world.root_envelope)
    url = f"sqlite:///{d / 'k.db'}"
    rng = random.Random()
    acked: dict[str, set[int]] = {"JP": set(), "ID": set()}
    grouped = 0
    for round_ in range(6):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), url, str(d / "JP"), str(d / "ID"), str(d / "root"),
            world.now.isoformat(), str(rng.random()), world.jp_log.partnership,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not ready.startswith(b"ready"):
            _, err = await proc.communicate()
            pytest.fail(f"child did not start: {ready!r} {err.decode()[-2000:]}")
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        proc.kill()
        out, err = await proc.communicate()
        assert b"Traceback" not in err, err.decode()[-2000:]
        lines = [line.split() for line in out.decode().splitlines()]
        assert ["done"] not in lines, "the pools ran out before the kill"
        assert ["fork-accepted"] not in lines
        appends = 0
        for words in lines:
            if words[0] in acked:
                acked[words[0]].add(int(words[1]))
            elif words[0] == "groups":
                appends += 1
                if int(words[1]) < appends:
                    grouped += 1
        for log, node in ((world.jp_log, "JP"), (world.id_log, "ID")):
            await check_survivors(url, log, pools[node], acked[node])
        assert acked["JP"], f"round {round_}: nothing of JP acknowledged"
        assert acked["ID"], f"round {round_}: nothing of ID acknowledged"
    assert grouped, "no append shared a transaction"
