"""Signature checks of every push on every core, each piece of work done once.

Why this module exists: ingest at the hub is bound by Ed25519 verification (over half
of the hub's CPU per record). Python runs it on one core, and on the event loop's
thread, which a 500-entry push would block for tens of milliseconds. This pool runs
the expensive, self-contained part of a record's check (the envelope's shape, its
signatures, its hashes) in worker processes while the loop serves other partners; the
hub then completes the cheap part (schema, authority, partnership) in-process, with
the verdicts of ``trust.verify_record`` (ADR 0039, rule 14).

Rules:

1. A worker returns, per envelope, a compact answer: what the parent would otherwise
   compute again (record id, leaf hash, payload type, payload and the signers' key
   ids, in the envelope's order) or the error that refused it (class name, message,
   location). No exception, key or record object is pickled, nor the signatures (the
   parent needs them only to word a refusal, rule 14). Equal payload types and key-id
   tuples of one call are one object each, so a chunk's pickle carries each once and
   the parent unpickles them once (ADR 0057).
2. The parent rebuilds the same typed error from ``jcm_sync.errors`` (or the module
   that defines it), so a refused push answers exactly as it would without the pool.
3. Concurrent pushes are coalesced (ADR 0039): a push waits at most ``max_wait``
   (2 ms), or until ``flush_at`` records are waiting, then every waiting push's
   records are cut into one chunk per worker, whatever partnership they belong to, so
   many small pushes (the 31-partner fan-in's batches of 50) use every core. Each
   push gets its own answers back; one push's bad record refuses that push only.
   What is waiting when the window closes, under ``MIN_POOLED_BATCH`` records in all
   while no dispatch is in flight, is verified in-process: a lone small push is not
   worth the inter-process cost; under load it joins the workers, off the loop.
4. Workers are started with ``spawn``: the hub runs threads (the SQLite store's), which
   ``fork`` would copy in an undefined state.
5. The cheap part of a pooled batch (decode, schema, authority) is done for the whole
   batch on a thread before the verify function is returned, not record by record
   inside the store's append on the event loop (ADR 0010). The function returned then
   only looks results up, raising a record's error when the store asks for it, in the
   store's order, so a refused batch answers as before.
6. Revocation is judged at receipt (trust rule 3): at ``now``, the hub's clock when the
   push arrived, except for entries the replica already holds, which the caller maps to
   the time they were appended (a re-sent batch stays idempotent after a revocation).
7. Each piece of work is done once per envelope: the worker opens it (JSON shape,
   canonical form), checks its signatures, and hashes it (record id and leaf hash);
   the parent reuses those, never opening or hashing it again, for the revocation
   lookup, the record's judgement (rule 14), the hub's root check and the store
   (``log_sync`` rule 4). Only a record the judgement refuses is opened again, by
   ``verify_record``, for its error.
8. A worker keeps nothing between calls: it builds each segment's public keys from
   their raw bytes (microseconds, against milliseconds of signatures per chunk), so
   there is no per-process cache and no module-level state.
9. A root that has expired refuses every record in-process before any signature is
   checked, as ``verify_record`` does.
10. A worker that dies (killed, out of memory) breaks the process pool: the pushes of
    that dispatch are verified in-process instead, and the next dispatch starts new
    workers, so one lost worker never turns every later push into a 500.
11. The serving hub (``registry serve``) calls ``tune_gc``: its start-up objects are
    frozen out of the cyclic collector, and a young collection runs every
    ``GC_THRESHOLD`` net container allocations instead of 700. A push allocates a
    dozen containers per record, nearly all freed by reference counting; the
    collector's passes over the growing heap cost about 8 µs per record at ingest
    (ADR 0039, amendment).
12. A worker's common case is lean (ADR 0051): an envelope all of whose signatures are
    Ed25519 ones under the keys their ids name is checked by
    ``envelope.accepted_by_ed25519`` (the same checks, in the same order, as
    ``verify_envelope``, without the objects a refusal needs) and hashed inline (the
    record id and RFC 9162 leaf hash). Every other envelope (an ML-DSA-44 signature,
    an unknown key id, a refusal) goes through ``verify_envelope`` as before, which
    gives its verdict and its specific error.
13. A batch verified in-process (one worker configured, an expired root, or a lone
    small push under rule 3) is verified on a thread once it holds ``ON_THREAD_FROM``
    distinct envelopes: libsodium's verify runs without the interpreter lock, so the
    event loop keeps serving the other pushes (a lone push of 50 took some 5 ms of
    the loop, 7 % of its samples in the fan-in, ADR 0050). Fewer are verified inline,
    where a thread's hand-off would cost more than the work.
14. The parent judges a pooled batch's records with one ``record_judge.RecordJudge``
    (the batch's root, at ``now``): the authority (kind, author, side and signers'
    key ids) is decided once per distinct question and the key windows folded into
    one interval, each record checked against it; whatever the judge does not accept
    goes to ``verify_record``, so every verdict and error is ``verify_record``'s
    (ADR 0057).
15. A batch verified in-process (rules 3, 9, 10 and 13) takes the same steps as a
    worker and the parent: ``envelope.accepted_by_ed25519`` (or ``verify_envelope``
    for the verdict and error of anything else) and the batch's judge
    (``in_process_verifier``), so its verdicts are ``record_verifier``'s; under an
    expired root, ``record_verifier`` itself refuses every record first (rule 9).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jcm_sync import errors
from jcm_sync.core import checkpoint, merkle
from jcm_sync.core.ed25519 import PUBLIC_KEY_SIZE
from jcm_sync.core.envelope import (
    AnyPublicKey,
    Envelope,
    accepted_by_ed25519,
    public_key_from_raw,
    record_id,
    verify_envelope,
)
from jcm_sync.core.record_judge import RecordJudge
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

ON_THREAD_FROM = 8
"""Distinct envelopes from which an in-process batch is verified off the loop (rule 13)."""

GC_THRESHOLD = 50_000
"""Net container allocations between young collections in the serving hub (rule 11)."""

Keys = tuple[tuple[str, bytes], ...]
"""A root's keys as (key id, raw public key): what a worker needs of it."""

Outcome = tuple[Any, ...]
"""("ok", record id, leaf hash, payload type, payload, (keyid, ...)) or
("error", class name, message, where)."""


def tune_gc() -> None:
    """Rule 11, for the serving hub's process (never raises the threshold's other terms)."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_THRESHOLD), middle, old)


# --- the worker side -------------------------------------------------------------------


def opened(
    raw: bytes, ed25519_keys: Mapping[str, bytes], pubs: Mapping[str, AnyPublicKey]
) -> tuple[str, Envelope, tuple[str, ...]]:
    """Rule 12's steps for one envelope: its record id, its envelope and its signers' key
    ids (in the envelope's order), by ``accepted_by_ed25519`` or else ``verify_envelope``,
    whose error it raises."""
    env = accepted_by_ed25519(raw, ed25519_keys)
    if env is not None:
        rid = record_id(raw)
    else:
        v = verify_envelope(raw, pubs)  # the verdict, and its specific error
        env, rid = v.envelope, v.record_id
    return rid, env, tuple([s.keyid for s in env.signatures])


def check_envelopes(keys: Keys, envelopes: Sequence[bytes]) -> list[Outcome]:
    """Rules 1, 7, 8 and 12: open, verify and hash every envelope under ``keys``."""
    pubs = {kid: public_key_from_raw(raw) for kid, raw in keys}
    ed25519_keys = {kid: raw for kid, raw in keys if len(raw) == PUBLIC_KEY_SIZE}
    same: dict[object, Any] = {}  # rule 1: one object per distinct type and signer ids
    out: list[Outcome] = []
    append, leaf_hash, one = out.append, merkle.leaf_hash, same.setdefault
    for raw in envelopes:
        try:
            rid, env, ids = opened(raw, ed25519_keys, pubs)
        except JcmSyncError as exc:
            append(("error", type(exc).__name__, exc.message, exc.where or ""))
            continue
        ptype = env.payloadType
        append(("ok", rid, leaf_hash(raw), one(ptype, ptype), env.payload, one(ids, ids)))
    return out


def check_chunk(segments: list[tuple[Keys, list[bytes]]]) -> list[list[Outcome]]:
    """Worker side of one chunk: segments of (perhaps) different partnerships' pushes."""
    return [check_envelopes(keys, envelopes) for keys, envelopes in segments]


# --- the parent side: rebuilding answers -----------------------------------------------


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


def complete(
    judge: RecordJudge, raw: bytes, outcome: Outcome, received: Mapping[str, datetime] | None
) -> Verification:
    """The parent's part of one record (rules 2, 6 and 7): its verification from the
    worker's answer, judged by ``judge`` (its root, at its ``now``), or the worker's
    refusal raised."""
    if outcome[0] == "error":
        raise _error(outcome[1], outcome[2], outcome[3])
    _, rid, leaf, ptype, payload, keyids = outcome
    v = judge.judge(raw, rid, ptype, payload, keyids, received.get(rid) if received else None)
    v.__dict__["leaf_hash"] = leaf  # the cached property, computed by the worker (rule 7)
    return v


def root_keys(root: TrustRoot) -> Keys:
    return tuple((k.keyid, k.public_key) for k in root.keys)


# --- coalescing (rule 3) ---------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    """One push's distinct envelopes waiting for the workers; its future gets their
    outcomes in order, or None when they are to be verified in-process."""

    keys: Keys
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


def in_process_verifier(
    root: TrustRoot, now: datetime, received: Mapping[str, datetime] | None
) -> Callable[[bytes], Verification]:
    """Rule 15: the verify function of a batch verified in this process: a worker's
    steps (rule 12) and the batch's judge (rule 14), or ``record_verifier`` under an
    expired root (rule 9)."""
    if root.expires <= now:
        return record_verifier(root, now, received)
    judge = RecordJudge(root, now)
    pubs = root.public_keys()
    ed25519_keys = {kid: raw for kid, raw in root_keys(root) if len(raw) == PUBLIC_KEY_SIZE}

    def verify(raw: bytes) -> Verification:
        rid, env, keyids = opened(raw, ed25519_keys, pubs)  # a worker's steps (rule 12)
        at = received.get(rid) if received else None
        return judge.judge(raw, rid, env.payloadType, env.payload, keyids, at)

    return verify


async def in_process(
    verify: Callable[[bytes], Verification], envelopes: Sequence[bytes], distinct: int
) -> VerifiedBatch:
    """Rule 13: a batch verified in this process, on a thread from ``ON_THREAD_FROM``
    distinct envelopes on, so the event loop serves other requests meanwhile."""
    if distinct < ON_THREAD_FROM:
        return verify_batch(verify, envelopes)
    return await asyncio.to_thread(verify_batch, verify, envelopes)


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
        #: how many distinct records were verified in-process instead (rules 3, 9, 10)
        self.inline_records = 0

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
        distinct = list(dict.fromkeys(e for e in envelopes if isinstance(e, bytes) and e))
        if self.workers < 2 or not distinct or root.expires <= now:  # rules 3 and 9
            self.inline_records += len(distinct)
            verify = in_process_verifier(root, now, received)  # rule 15
            return await in_process(verify, envelopes, len(distinct))
        outcomes = await self._submit(root_keys(root), distinct)
        if outcomes is None:  # rules 3 and 10: too few records waiting, or a worker died
            self.inline_records += len(distinct)
            verify = in_process_verifier(root, now, received)  # rule 15
            return await in_process(verify, envelopes, len(distinct))
        single = record_verifier(root, now, received)
        judge = RecordJudge(root, now)  # rule 14: authority decided once per question

        def complete_all() -> dict[bytes, Verification | JcmSyncError]:
            done: dict[bytes, Verification | JcmSyncError] = {}
            for raw, outcome in zip(distinct, outcomes, strict=True):
                try:
                    done[raw] = complete(judge, raw, outcome, received)
                except JcmSyncError as exc:
                    done[raw] = exc
            return done

        return VerifiedBatch(await asyncio.to_thread(complete_all), single)  # rule 5

    async def _submit(self, keys: Keys, envelopes: list[bytes]) -> list[Outcome] | None:
        """Rule 3: wait with other pushes for the workers; their outcomes, in order."""
        loop = asyncio.get_running_loop()
        job = _Job(keys, envelopes, loop.create_future())
        self._waiting.append(job)
        self._waiting_records += len(envelopes)
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
                        [(jobs[n].keys, jobs[n].envelopes[a:b]) for n, a, b in chunk],
                    )
                    for chunk in chunks
                )
            )
        except asyncio.CancelledError:  # the hub is closing
            for j in jobs:
                j.future.cancel()
            raise
        except BrokenProcessPool:  # rule 10: a worker died; these pushes go in-process
            self._discard(pool)
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(None)
            return
        except Exception as exc:  # anything else: every push waiting hears of it
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

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Rule 10: forget a broken pool (once), so the next dispatch starts new workers."""
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

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
