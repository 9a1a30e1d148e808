"""Group commit: concurrent write jobs on one SQLite connection share one durable COMMIT.

Why this module exists: with ``synchronous=FULL`` every COMMIT waits for an fsync of the
WAL (milliseconds), and a store has one connection on one thread. When 31 partners push
small batches at once, one transaction per push makes that fsync the serial part of the
hub (issue 15, ADR 0043). Jobs that arrive while the thread is busy are run together in
one transaction and paid for with one fsync.

Invariants:

1. A group is one job on the connection's thread (the store's one-worker executor), so
   nothing else on that thread sees it half done, and groups run one after another.
2. A group is ``BEGIN IMMEDIATE``, each job under its own ``SAVEPOINT``, one ``COMMIT``.
   A job that raises is rolled back to its savepoint alone and its caller gets its own
   exception; the other jobs of the group go on and commit.
3. Nothing is acknowledged before it is durable: no caller's answer, success or refusal,
   is given before the group's COMMIT returned. If BEGIN or COMMIT fails, or a job's
   error ends the transaction itself (SQLite rolls back the whole transaction on some
   I/O errors), nothing of the group is kept and every caller gets a ``sqlite3.Error``
   (the cause for its author; for the others an ``sqlite3.OperationalError`` saying
   "the shared transaction failed", caused by it). No error class of its own: the store
   translates every ``sqlite3.Error`` into ``StoreError`` (errors.py holds the classes).
4. No timer: the first job of an idle committer runs at once, alone; the jobs that queue
   while a group runs form the next group, up to ``max_jobs`` jobs and ``max_weight``
   (for appends: entries; a single heavier job still runs, alone).
5. Jobs run in the order they were submitted, within a group and across groups, so two
   appends to one log submitted in order are applied in order.
6. A caller cancelled while waiting gets no answer; its job still runs (as a job handed
   to an executor does) and commits or not with its group.
7. ``before``, if given, runs on the connection's thread before each group's BEGIN,
   told whether any job of the group was submitted ``heavy`` (one its caller expects to
   change many pages), so the connection can be set up for that transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

__all__ = ["GROUP_FAILED", "MAX_JOBS", "MAX_WEIGHT", "GroupCommitter"]

T = TypeVar("T")

MAX_JOBS: Final = 64
"""Jobs in one transaction at most: a group's latency stays that of a few pushes."""
MAX_WEIGHT: Final = 4096
"""Weight (entries) in one transaction at most, unless one job alone is heavier."""
SAVEPOINT: Final = "jcm_group_job"


GROUP_FAILED: Final = "the shared transaction failed"
"""How the error of a job whose group failed, not by its own doing, begins: nothing of the
group, this job included, was kept."""


@dataclass
class _Job(Generic[T]):
    fn: Callable[[], T]
    weight: int
    future: asyncio.Future[T]
    heavy: bool = False
    outcome: tuple[bool, Any] = field(default=(False, None))


class GroupCommitter:
    """Runs write jobs on ``executor`` (one worker, owning the connection ``db()``) in
    shared transactions; ``await run(job)`` answers after the job's group committed."""

    def __init__(
        self,
        executor: Executor,
        db: Callable[[], sqlite3.Connection],
        *,
        max_jobs: int = MAX_JOBS,
        max_weight: int = MAX_WEIGHT,
        before: Callable[[bool], None] | None = None,
    ) -> None:
        if max_jobs < 1 or max_weight < 1:
            raise ValueError("a group holds at least one job")
        self._executor = executor
        self._db = db
        self._before = before
        self.max_jobs = max_jobs
        self.max_weight = max_weight
        self._pending: deque[_Job[Any]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.groups = 0
        """Transactions committed or attempted (for tests and benchmarks)."""

    async def run(self, fn: Callable[[], T], weight: int = 1, *, heavy: bool = False) -> T:
        """Run ``fn()`` on the connection's thread inside a group's transaction; return
        its result once the group committed, or raise its exception (rules 2 and 3)."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(fn, max(1, weight), loop.create_future(), heavy)
        self._pending.append(job)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await job.future

    def _take(self) -> list[_Job[Any]]:
        """The next group: queued jobs in order, within the bounds of rule 4."""
        group = [self._pending.popleft()]
        weight = group[0].weight
        while self._pending and len(group) < self.max_jobs:
            nxt = self._pending[0]
            if weight + nxt.weight > self.max_weight:
                break
            weight += nxt.weight
            group.append(self._pending.popleft())
        return group

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group = self._take()
            try:
                await loop.run_in_executor(self._executor, self._run_group, group)
            except asyncio.CancelledError:
                for job in [*group, *self._pending]:
                    job.future.cancel()
                self._pending.clear()
                raise
            except BaseException as exc:  # every caller of the group is told
                for job in group:
                    job.outcome = (False, exc)
            for job in group:
                if job.future.done():  # its caller was cancelled (rule 6)
                    continue
                ok, value = job.outcome
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _run_group(self, group: list[_Job[Any]]) -> None:
        """On the connection's thread: rules 2 and 3; each job's outcome is set."""
        db = self._db()
        self.groups += 1
        if self._before is not None:
            self._before(any(job.heavy for job in group))
        db.execute("BEGIN IMMEDIATE")
        try:
            for job in group:
                db.execute(f"SAVEPOINT {SAVEPOINT}")
                try:
                    job.outcome = (True, job.fn())
                except Exception as exc:
                    job.outcome = (False, exc)
                    if not db.in_transaction:  # SQLite ended the transaction (rule 3)
                        raise
                    db.execute(f"ROLLBACK TO {SAVEPOINT}")
                db.execute(f"RELEASE {SAVEPOINT}")
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for job in group:
                ok, own = job.outcome
                if not ok and own is exc:
                    continue
                failed = sqlite3.OperationalError(f"{GROUP_FAILED}: {exc}")
                failed.__cause__ = exc
                job.outcome = (False, failed)
