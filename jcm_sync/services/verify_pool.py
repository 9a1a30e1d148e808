"""Every record of every push checked on every core, each piece of work done once.

Why this module exists: ingest at the hub is bound by Ed25519 verification (over half
of the hub's CPU per record), and the rest of a record's check (decode, schema,
authority) is as much again. Python runs it on one core, and on the event loop's
thread, which a 500-entry push would block for tens of milliseconds. This pool runs
each record's whole check (``trust.verify_record``: envelope, signatures, decode,
schema, authority, revocation at receipt, and its hashes) in worker processes while
the loop serves other partners, and hands the hub back each record's verification,
so the hub's own process, which also runs HTTP and the store, decodes nothing
(ADR 0039).

Rules:

1. A worker returns, per envelope, its ``Verification`` (record id and leaf hash
   computed there, the decoded record inside) or the error that refused it (class
   name, message, location). No exception or key object is pickled.
2. The parent rebuilds the same typed error from ``jcm_sync.errors`` (or the module
   that defines it), so a refused push answers exactly as it would without the pool.
3. Concurrent pushes are coalesced: a push waits at most ``max_wait`` (2 ms), or
   until ``flush_at`` records are waiting, then every waiting push's records are cut
   into one chunk per worker, whatever partnership they belong to, so many small
   pushes (the 31-partner fan-in's batches of 50) use every core. Each push is
   checked under its own root and gets its own answers back; one push's bad record
   refuses that push only. What is waiting when the window closes, under
   ``MIN_POOLED_BATCH`` records in all while no dispatch is in flight, is verified
   in-process: a lone small push is not worth the inter-process cost; under load it
   joins the workers, off the loop.
4. Workers are started with ``spawn``: the hub runs threads (the SQLite store's), which
   ``fork`` would copy in an undefined state.
5. The function returned only looks results up, raising a record's error when the
   store asks for it, in the store's order, so a refused batch answers as before.
6. Revocation is judged at receipt (trust rule 3): at ``now``, the hub's clock when the
   push arrived, except for entries the replica already holds, which the caller maps to
   the time they were appended (a re-sent batch stays idempotent after a revocation).
7. Each piece of work is done once per envelope, in the worker: it is opened, its
   signatures checked, its payload decoded and judged, and it is hashed once for its
   record id and once for its leaf hash; the hub reuses both (revocation lookup, the
   hub's root check, the store: ``log_sync`` rule 4).
8. A worker keeps nothing between calls: each segment brings its trust root (a few
   hundred bytes, parsed in microseconds against milliseconds of signatures), so there
   is no per-process cache and no module-level state.
9. A root that has expired refuses every record in-process before any signature is
   checked, as ``verify_record`` does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from jcm_sync import errors
from jcm_sync.core import checkpoint
from jcm_sync.core.trust import TrustRoot, Verification
from jcm_sync.errors import JcmSyncError, UntrustedError
from jcm_sync.services.log_service import record_verifier
from jcm_sync.services.log_sync import VerifiedBatch, verify_batch

MIN_POOLED_BATCH = 64
"""Fewer records than this, all pushes waiting together, are verified in-process."""

MAX_WAIT = 0.002
"""Seconds a push waits for others to share the workers with (rule 3)."""

FLUSH_AT = 256
"""Records waiting that send them to the workers at once, without waiting longer."""

Outcome = Verification | tuple[str, str, str, str]
"""A record's verification, or ("error", class name, message, where)."""

Segment = tuple[TrustRoot, datetime, Mapping[str, datetime] | None, list[bytes]]
"""Envelopes of one push and what they are judged by: root, clock, receipt times."""


# --- the worker side -------------------------------------------------------------------


def check_records(
    root: TrustRoot,
    now: datetime,
    received: Mapping[str, datetime] | None,
    envelopes: Sequence[bytes],
) -> list[Outcome]:
    """Rules 1, 6 and 7: every envelope's verification under ``root``, or its refusal."""
    verify = record_verifier(root, now, received)
    out: list[Outcome] = []
    for raw in envelopes:
        try:
            v = verify(raw)
        except JcmSyncError as exc:
            out.append(("error", type(exc).__name__, exc.message, exc.where or ""))
        else:
            v.leaf_hash  # noqa: B018 (rule 7: hashed here, carried back in the answer)
            out.append(v)
    return out


def check_chunk(segments: list[Segment]) -> list[list[Outcome]]:
    """Worker side of one chunk: segments of (perhaps) different partnerships' pushes."""
    return [check_records(*segment) for segment in segments]


def _error(name: str, message: str, where: str) -> JcmSyncError:
    """Rule 2: the typed error a worker reported."""
    for module in (errors, checkpoint):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, JcmSyncError):
            try:
                return cls(message, where=where or None)
            except TypeError:
                break
    return UntrustedError(message, where=where or None)


def answer(outcome: Outcome) -> Verification | JcmSyncError:
    """A worker's answer as the verification or the typed error (rule 2)."""
    if isinstance(outcome, Verification):
        return outcome
    return _error(outcome[1], outcome[2], outcome[3])


# --- coalescing (rule 3) ---------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """One push's distinct envelopes waiting for the workers, with what they are judged
    by; its future gets their outcomes in order, or None when they are to be verified
    in-process."""

    root: TrustRoot
    now: datetime
    received: Mapping[str, datetime] | None
    envelopes: list[bytes]
    future: asyncio.Future[list[Outcome] | None]


def cut(jobs: Sequence[_Job], parts: int) -> list[list[tuple[int, int, int]]]:
    """Cut the jobs' records into ``parts`` chunks of near-equal size; a chunk is a list
    of (job number, start, end) segments, in order."""
    total = sum(len(j.envelopes) for j in jobs)
    step = -(-total // parts)
    chunks: list[list[tuple[int, int, int]]] = [[]]
    room = step
    for n, job in enumerate(jobs):
        pos, size = 0, len(job.envelopes)
        while pos < size:
            if room == 0:
                chunks.append([])
                room = step
            take = min(room, size - pos)
            chunks[-1].append((n, pos, pos + take))
            pos += take
            room -= take
    return chunks


class VerifyPool:
    """A process pool that checks the signatures of concurrent pushes together."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        max_wait: float = MAX_WAIT,
        flush_at: int = FLUSH_AT,
    ) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.max_wait = max_wait
        self.flush_at = flush_at
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: list[_Job] = []
        self._waiting_records = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: how many dispatches went to the workers and how many records they carried
        self.dispatches = 0
        self.pooled_records = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def verifier(
        self,
        root: TrustRoot,
        envelopes: Sequence[bytes],
        now: datetime,
        received: Mapping[str, datetime] | None = None,
    ) -> VerifiedBatch:
        """The batch verified, as a verify function for ``store.append_entries`` that
        also gives the root check its leaf hashes (``log_sync`` rule 4).

        Records are judged as received at ``now`` (rule 6), except those ``received``
        maps (by record id) to the time this node first received them.
        """
        single = record_verifier(root, now, received)
        distinct = list(dict.fromkeys(e for e in envelopes if isinstance(e, bytes) and e))
        if self.workers < 2 or not distinct or root.expires <= now:  # rules 3 and 9
            return verify_batch(single, envelopes)
        job = _Job(
            root, now, received or None, distinct, asyncio.get_running_loop().create_future()
        )
        outcomes = await self._submit(job)
        if outcomes is None:  # rule 3: too few records waiting to be worth a worker
            return verify_batch(single, envelopes)
        done = {raw: answer(o) for raw, o in zip(distinct, outcomes, strict=True)}
        return VerifiedBatch(done, single)  # rule 5

    async def _submit(self, job: _Job) -> list[Outcome] | None:
        """Rule 3: wait with other pushes for the workers; their outcomes, in order."""
        loop = asyncio.get_running_loop()
        self._waiting.append(job)
        self._waiting_records += len(job.envelopes)
        if self._waiting_records >= self.flush_at:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await job.future

    def _flush(self) -> None:
        """Send what is waiting to the workers (or back to be verified in-process)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        jobs = [j for j in self._waiting if not j.future.done()]  # a push may be gone
        self._waiting, self._waiting_records = [], 0
        if not jobs:
            return
        if sum(len(j.envelopes) for j in jobs) < MIN_POOLED_BATCH and not self._tasks:
            for j in jobs:
                j.future.set_result(None)
            return
        task = asyncio.get_running_loop().create_task(self._dispatch(jobs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, jobs: list[_Job]) -> None:
        """One chunk per worker; each job's answers reassembled in its order."""
        chunks = cut(jobs, self.workers)
        loop = asyncio.get_running_loop()
        self.dispatches += 1
        self.pooled_records += sum(len(j.envelopes) for j in jobs)
        try:
            pool = self._executor()
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        pool,
                        check_chunk,
                        [
                            (jobs[n].root, jobs[n].now, jobs[n].received, jobs[n].envelopes[a:b])
                            for n, a, b in chunk
                        ],
                    )
                    for chunk in chunks
                )
            )
        except asyncio.CancelledError:  # the hub is closing
            for j in jobs:
                j.future.cancel()
            raise
        except Exception as exc:  # a broken pool, say: every push waiting hears of it
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        answers: list[list[Outcome]] = [[] for _ in jobs]
        for chunk, result in zip(chunks, results, strict=True):
            for (n, _, _), outcomes in zip(chunk, result, strict=True):
                answers[n].extend(outcomes)
        for j, a in zip(jobs, answers, strict=True):
            if not j.future.done():
                j.future.set_result(a)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for j in self._waiting:
            if not j.future.done():
                j.future.cancel()
        self._waiting, self._waiting_records = [], 0
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
