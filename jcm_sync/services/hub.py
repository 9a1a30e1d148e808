"""Japan's registry hub: receives every partner's log, publishes Japan's own.

Why this module exists: for each partnership the hub keeps Japan's own log and a
verified replica of the partner's log (DESIGN §4). This module is the hub's
orchestration: what a push must satisfy before anything is stored, what the hub
signs, and what it serves. HTTP is ``net/server.py``'s business; this module takes
values and a verified caller, and raises typed errors.

Rules of a push (``Hub.push``):

1. The caller is the partner node of the partnership, pushing its own log (the
   server checked the request signature; authorization is checked here).
2. A batch has at most ``max_batch`` entries and starts at or before the replica's
   size: entries already held must be identical (no-op), a different one at a held
   index is a **fork**; a start past the size is a gap (409, with the size to resume
   from).
3. If the batch carries the partner's signed checkpoint, its signature is verified
   with the partner's checkpoint keys and the root the batch would produce is
   computed *before* anything is written; a mismatch is a fork. So a refused batch
   stores nothing.
4. Every entry is verified against the trust root (signature, schema, authority,
   author = the partner) before the lock is taken, its refusal raised when the store's
   append reaches it; one bad entry refuses the batch. Each entry is hashed once: the
   leaf hash its verification carries serves rule 3 and the store (``log_sync`` rule 4).
   A signing key must not have been revoked when the hub received the entry: at the
   hub's clock, or, for an entry the replica already holds, when it was appended
   (``key-revoked``; ADR 0018); under a cosignature quorum for the partner's log, when
   a checkpoint including it became agreed, else at the hub's clock (ADR 0035).
5. The answer carries the replica's new size and the partner's checkpoint
   countersigned by Japan's checkpoint key: the partner's proof of what Japan holds.
   Every checkpoint the hub serves carries the cosignatures held for it (ADR 0032).
   A push that closes nothing is answered from the read it made before its append
   when no checkpoint was put for the replica since (``replica_view``, ADR 0056).

Pushes to one replica are serialised by a lock; different partnerships never wait
for each other. Across hub processes on one PostgreSQL the store's row lock on the
log's head serialises the appends; nonces, request rates and the scheduled jobs are
shared through the database (``store/shared_limits.py``, ADR 0042). Entries are
verified before the lock is taken, their signatures in worker processes for large
batches (``verify_pool.py``), so an agent's next batch is verified while the previous
one is being written.

Reconciliation (ADR 0010):

6. Every partnership is reconciled on schedule at the newest snapshot its stored
   checkpoints cover (``reconcile_service`` rule 1), whatever the partner pushed after
   its last checkpoint: a partner cannot stall it by never closing a push.
7. A push that closes a catch-up (it carries the partner's checkpoint and appended
   entries) asks for a run soon; one that arrives during a run asks for one more after
   it. Runs of a partnership never overlap. "Soon" is once no push has been in
   progress for ``INGEST_QUIET_S``, or after ``RECONCILE_DEFER_S`` at the latest: a
   catch-up's run does not compete with other partners' pushes for the hub's process
   (31 of them closing during a fan-in cost it a third of its throughput, ADR 0039).
8. A scheduled run's failure (store down, corrupt snapshot, anything else) is logged and
   counted in ``jcm_sync_job_runs_total{job="reconcile",outcome="error"}``; nothing is
   raised into the scheduler, and the next interval tries again. Its CPU work runs off
   the event loop (``reconcile_service`` rule 7), so the hub keeps serving meanwhile.

Reads (ADR 0019):

9. A caller asking for a partnership that is not its own is refused 403 before
   anything else is looked up, whether or not the hub serves it and whatever log node
   the path names: a partner learns nothing about which partnerships exist.
10. A position past the log's size (``start``, ``index``, ``old``, ``new``, ``size``)
    is refused 400 ``past-log-size`` with the log's size; ``old`` above ``new`` and
    ``index`` not below ``size`` are 400 ``bad-parameter``. Nothing is read beyond them.
11. ``have`` (how much of Japan's log a partner holds) is clamped to the log's size,
    with a warning, so the lag metric is always between 0 and the log's size.
12. ``jcm-sync status`` is written (a commit) by every push closing a catch-up and every
    served state; other pushes update it in memory, and write it only ``STATUS_EVERY``
    (1 s) after its last write: not one more commit per small push (ADR 0039).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from jcm_sync.core import checkpoint
from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import (
    Caller,
    CheckpointView,
    ConsistencyProofView,
    EntriesPage,
    InclusionProofView,
    LogState,
    PartnershipState,
    PushRequest,
    PushResponse,
)
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    BadParameterError,
    BatchTooLargeError,
    ForbiddenError,
    ForkError,
    GapError,
    JcmSyncError,
    PastLogSizeError,
)
from jcm_sync.local.alarms import alarm_key
from jcm_sync.local.status import AgentStatus, JobStatus, read_status, write_status
from jcm_sync.services.agreement import witnessed_times
from jcm_sync.services.daemon import IntervalJob, interval_scheduler, stop_scheduler
from jcm_sync.services.hub_metrics import PushMetrics
from jcm_sync.services.log_service import open_log_checkpoint, prove_consistency, prove_inclusion
from jcm_sync.services.log_sync import VerifiedBatch, extended, note_log, stopped
from jcm_sync.services.node import Node
from jcm_sync.services.reconciliation import run_scheduled
from jcm_sync.services.replica_view import ReplicaViews
from jcm_sync.services.verify_pool import VerifyPool
from jcm_sync.services.witness import cosigned_note
from jcm_sync.services.witness_push import Connect, WitnessPusher
from jcm_sync.store import AppendResult, LogRef, TreeHead, Verify
from jcm_sync.store.shared_limits import leader_lock, request_limits

log = logging.getLogger("jcm_sync.services.hub")

MAX_PAGE = 1000

INGEST_QUIET_S = 0.2
"""Rule 7: how long no push must be in progress before a catch-up's run starts."""
RECONCILE_DEFER_S = 10.0
"""Rule 7: the longest a catch-up's run waits for pushes to pause."""
#: how often a batch waiting for its predecessor re-reads the replica's size when other
#: hub processes may append to it (ADR 0042): their wake-ups do not reach this process
SHARED_POLL_S = 0.02
STATUS_EVERY = 1.0  # rule 12: seconds between status writes of non-closing pushes


@dataclass
class Limits:
    max_batch: int = 1000
    #: how long a batch that arrived ahead of its predecessor waits for it (seconds)
    gap_wait: float = 5.0


class Hub:
    """The hub's per-partnership logic over a ``Node`` whose id is JP."""

    def __init__(
        self,
        node: Node,
        limits: Limits | None = None,
        pool: VerifyPool | None = None,
        witness: Connect | None = None,
    ) -> None:
        if node.id != "JP":
            raise AuthorityError(f"the registry hub runs as node JP, not {node.id}")
        self.node = node
        self.limits = limits or Limits(max_batch=node.cfg.server.max_batch)
        # one condition per replica: its lock serialises appends, and a batch that
        # arrives ahead of its predecessor waits on it instead of being refused
        self._appended = {pid: asyncio.Condition() for pid in node.partnerships}
        self._status = node.job_status  # loaded from the store by open_node
        self._status_written: dict[str, float] = {}  # rule 12: loop time of the last write
        self.views = ReplicaViews(node)  # rule 5's answers (ADR 0043, 0056)
        self._push_metrics = PushMetrics(node)  # an accepted push's metrics (ADR 0063)
        self._heads: dict[str, TreeHead] = {}  # _wait_for_start: read or appended here
        self.pool = pool or VerifyPool()
        self._scheduler: Any = None
        self._reconciling: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # rule 7: a closing push arrived during a run
        self._pushing = 0  # rule 7: pushes in progress, and when the last one ended
        self._last_push = 0.0
        self._closed = False
        #: asks partner agents' witness listeners to cosign Japan's log (ADR 0037)
        self.witness = None if witness is None else WitnessPusher(node, witness)
        # several hub processes on one PostgreSQL (ADR 0042): nonces and request rates
        # shared through the database, singleton jobs run by the holder of its lock;
        # their connections close with the store
        self.request_limits = request_limits(
            node.store, node.cfg.server.requests_per_node_per_second
        )
        self.leader = leader_lock(node.store)

    def close(self) -> None:
        """Stop the scheduled jobs, the reconciliation thread and the verification workers."""
        self._closed = True
        if self._scheduler is not None and self._scheduler.running:
            stop_scheduler(self._scheduler)
        for task in self._reconciling.values():
            task.cancel()
        self.node.reconcile.close()
        self.pool.close()

    # --- reconciliation --------------------------------------------------------------

    def start_jobs(self) -> None:
        """Reconcile every partnership on the configured interval (APScheduler); ask the
        partners' witness listeners to cosign Japan's log (``witness_push``)."""
        sch = self.node.cfg.schedule
        self._scheduler = interval_scheduler(
            [
                *(
                    IntervalJob(f"reconcile-{pid}", sch.reconcile_seconds, self._reconcile, (pid,))
                    for pid in self.node.partnerships
                ),
                *(self._singleton(j) for j in (self.witness.jobs() if self.witness else ())),
            ],
            jitter=sch.jitter_seconds,
        )
        self._scheduler.start()

    async def runs_singletons(self) -> bool:
        """ADR 0042: whether this process runs the jobs that must run once per database:
        the holder of its lock when several hub processes share one PostgreSQL, else
        always."""
        return self.leader is None or await self.leader.held()

    def _singleton(self, job: IntervalJob) -> IntervalJob:
        """ADR 0042: a job that must run once per database runs only where
        ``runs_singletons``."""
        if self.leader is None:
            return job
        run = job.run

        async def in_leader(*args: Any) -> Any:
            return await run(*args) if await self.runs_singletons() else None

        return replace(job, run=in_leader)

    async def _reconcile(self, partnership: str) -> None:
        """Rules 6 and 8: one run at the latest checkpoints; never raises but cancellation
        at shutdown, which it logs."""
        m = self.node.metrics
        try:
            if not await self.runs_singletons():
                return  # another hub process on this database runs it (ADR 0042)
            await run_scheduled(self.node, partnership)
        except asyncio.CancelledError:
            # shutdown: the run is abandoned and stays recorded as "initiated"; the
            # next run after a restart starts from the stores again
            log.info("reconcile-stopped", extra={"partnership": partnership})
        except JcmSyncError as exc:  # logged and counted; the next interval tries again
            m.job_runs.labels(partnership, "reconcile", "error").inc()
            log.error("reconcile-failed", extra={"partnership": partnership,
                      "reason": exc.code, "error": exc.diagnostics()})  # fmt: skip
        except Exception:  # run_scheduled raises only JcmSyncError; never the scheduler
            m.job_runs.labels(partnership, "reconcile", "error").inc()
            log.exception("reconcile-failed", extra={"partnership": partnership})
        else:
            m.job_runs.labels(partnership, "reconcile", "ok").inc()
            m.last_sync.labels(partnership, "reconcile").set(self.node.clock().timestamp())

    def _reconcile_soon(self, partnership: str) -> None:
        """Rule 7: after a catch-up, reconcile once more; during a run, once after it."""
        running = self._reconciling.get(partnership)
        if self._scheduler is None or self._closed:
            return
        if running is not None and not running.done():
            self._again.add(partnership)
            return
        self._reconciling[partnership] = asyncio.create_task(self._reconcile_again(partnership))

    async def _reconcile_again(self, partnership: str) -> None:
        """Runs until no closing push arrived during the last one."""
        while True:
            await self._ingest_paused()
            self._again.discard(partnership)
            await self._reconcile(partnership)
            if partnership not in self._again or self._closed:
                return

    async def _ingest_paused(self) -> None:
        """Rule 7: wait until no push has been in progress for ``INGEST_QUIET_S``, or
        ``RECONCILE_DEFER_S`` at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECONCILE_DEFER_S
        while (now := loop.time()) < deadline:
            quiet = now - self._last_push
            if not self._pushing and quiet >= INGEST_QUIET_S:
                return
            wait = INGEST_QUIET_S - quiet if not self._pushing else INGEST_QUIET_S
            await asyncio.sleep(min(wait, deadline - now))

    # --- authorization ---------------------------------------------------------------

    def _check_member(self, caller: Caller, partnership: str) -> None:
        """Rule 9: another partnership is 403 whether or not the hub serves it; only
        then is an unserved one (the caller's own, dropped from the hub) a 404."""
        if caller.partnership != partnership:
            raise ForbiddenError(
                f"{caller.node} of {caller.partnership} may read only partnership "
                f"{caller.partnership}"
            )
        self.node.logs(partnership)

    async def _log_size(self, caller: Caller, partnership: str, node: str) -> tuple[LogRef, int]:
        """Rule 9, then the log a read names and its size."""
        self._check_member(caller, partnership)
        ref = self.node.log_ref(partnership, node)
        return ref, (await self.node.store.tree_head(ref)).size

    @staticmethod
    def _within(log_size: int, name: str, value: int) -> None:
        """Rule 10: a position past the log's size is refused, naming the size."""
        if value > log_size:
            raise PastLogSizeError(
                f"{name} {value} is past the log's size {log_size}", size=log_size, where=name
            )

    # --- push ------------------------------------------------------------------------

    async def push(
        self, caller: Caller, partnership: str, log_node: str, req: PushRequest
    ) -> PushResponse:
        """Rules 1-5 of the module docstring; a refused push of a member's replica is a
        sync error of that log (``jcm_sync_sync_errors_total``)."""
        self._pushing += 1
        try:
            return await self._push(caller, partnership, log_node, req)
        except JcmSyncError:
            if partnership in self.node.partnerships and caller.node == log_node:
                self.node.metrics.sync_errors.labels(partnership, log_node).inc()
            raise
        finally:
            self._pushing -= 1
            self._last_push = asyncio.get_running_loop().time()

    async def _push(
        self, caller: Caller, partnership: str, log_node: str, req: PushRequest
    ) -> PushResponse:
        self._check_member(caller, partnership)
        logs = self.node.logs(partnership)
        replica = logs.replica
        if log_node != replica.node or caller.node != replica.node:
            raise ForbiddenError(
                f"{caller.node} may push only its own log, not the log of {log_node}"
            )
        if len(req.entries) > self.limits.max_batch:
            raise BatchTooLargeError(
                f"{len(req.entries)} entries in one push; the limit is {self.limits.max_batch}"
            )
        # the fork alarm (log_sync rule 1), the replica's head and its held checkpoint in
        # one read (ADR 0050), which serves the answer if nothing is put since (ADR 0056)
        generation = self.views.generation(replica)
        view = await self.node.store.log_view(replica, state_key=alarm_key(replica.origin))
        if view.state is not None:
            raise stopped(replica)
        self._head_seen(replica, view.head)
        # signatures are checked before taking the lock, on every core for large batches;
        # revocation is judged at the hub's clock, entries already held as when received
        received = await self._held_since(logs.root, replica, req)
        verify = await self.pool.verifier(logs.root, req.entries, self.node.clock(), received)
        appended = self._appended[partnership]
        async with appended:
            head = await self._wait_for_start(appended, replica, req.start)
            offered = None
            if req.checkpoint is not None:
                offered = await self._check_offered(logs.root, replica, req, head.size, verify)
            # the write runs to its end, under the lock, even if the client goes away and
            # the handler is cancelled (ADR 0009): the batch, its checkpoint and the
            # wake-up of the next batch are never left half done
            write = asyncio.ensure_future(self._write(replica, req, verify, offered is not None))
            try:
                result = await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])
                if not write.cancelled():
                    write.exception()  # seen here; the caller sees the cancellation
                raise
        closing = req.checkpoint is not None  # rules 7 and 12
        await self._observe(
            partnership, replica.node, result.size, req.source_size, "push_received", closing
        )
        if result.appended and closing:
            self._reconcile_soon(partnership)
        counted = self._push_metrics.of(partnership, replica.node)  # hub_metrics rule 1
        counted.entries_accepted.inc(result.appended)
        counted.pushes_accepted.inc()
        counted.log_size.set(result.size)
        if req.source_size is not None:
            lag = self._push_metrics.lag(partnership, replica.node)
            lag.set(max(0, req.source_size - result.size))
        log.info("push-accepted", extra={"partnership": partnership, "start": req.start,
                 "appended": result.appended, "size": result.size})  # fmt: skip
        reuse = req.checkpoint is None and self.leader is None  # replica_view rule 3
        head = TreeHead(result.size, result.root)
        answer = await self.views.answer(replica, view, generation, head, reuse=reuse)
        return PushResponse(size=result.size, appended=result.appended, checkpoint=answer)

    async def _held_since(
        self, root: TrustRoot, replica: LogRef, req: PushRequest
    ) -> dict[str, datetime]:
        """Rule 4: when the replica appended the entries of a re-sent batch it already
        holds, so that a key revoked since does not refuse them (ADR 0018). Read only
        when the root revokes a key; an entry appended meanwhile is judged as received
        now, which can only refuse, never accept, more."""
        if all(k.revoked_at is None for k in root.keys):
            return {}
        size = (await self.node.store.tree_head(replica)).size
        end = min(size, req.start + len(req.entries))
        if req.start >= end:
            return {}
        held = await self.node.store.entries(replica, req.start, end)
        if root.cosign_quorum.get(replica.node) is not None:  # ADR 0035: witnessed time
            times = await witnessed_times(self.node.store, root, replica)
            return {e.record_id: t for e in held if (t := times.at(e.index)) is not None}
        return {e.record_id: e.appended_at for e in held}

    async def _write(
        self, replica: LogRef, req: PushRequest, verify: Verify, keep_checkpoint: bool
    ) -> AppendResult:
        """Append a verified batch, keep its checkpoint, wake the batches waiting on it."""
        m, partnership = self.node.metrics, replica.partnership
        appended = self._appended[partnership]
        try:
            result = await self.node.store.append_entries(replica, req.start, req.entries, verify)
        except ForkError as exc:
            await self.node.raise_fork(replica, str(exc), offered=req.checkpoint)
            raise
        except JcmSyncError as exc:
            m.entries.labels(partnership, "refused", exc.code).inc(len(req.entries))
            m.pushes.labels(partnership, "refused").inc()
            raise
        if keep_checkpoint and req.checkpoint is not None:
            # the store keeps it only if it agrees with the replica's tree
            await self.node.store.put_checkpoint(replica, req.checkpoint)
            self.views.wrote(replica)  # replica_view rule 2: after the store committed it
        self._head_seen(replica, TreeHead(result.size, result.root))
        appended.notify_all()
        return result

    def _head_seen(self, replica: LogRef, head: TreeHead) -> None:  # _wait_for_start
        known = self._heads.get(replica.origin)
        if known is None or head.size > known.size:
            self._heads[replica.origin] = head

    async def _wait_for_start(
        self, appended: asyncio.Condition, replica: LogRef, start: int
    ) -> TreeHead:
        """Rule 2's gap, with patience: an agent keeps several batches in flight
        (``schedule.push_window``), so batch N+1 may arrive while batch N is still being
        verified. It waits (holding
        nothing) up to ``gap_wait`` seconds for the replica to reach its start. A head seen
        before serves if it reaches the start (ADR 0050): the log only grows."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.gap_wait
        while True:
            head = self._heads.get(replica.origin)
            if head is None or start > head.size:
                head = await self.node.store.tree_head(replica)
                self._head_seen(replica, head)
            if start <= head.size:
                return head
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise GapError(
                    f"push starts at {start} but the replica holds {head.size} entries",
                    size=head.size,
                )
            if self.leader is not None:  # ADR 0042: another process may be the writer
                remaining = min(remaining, SHARED_POLL_S)
            # not asyncio.wait_for: on 3.11 a push cancelled while it waits there can
            # leave the Condition's lock held, and every later push of the log waits
            # forever (ADR 0061, "Found"); a timeout scope cancels the wait itself
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await appended.wait()

    async def _check_offered(
        self, root: TrustRoot, replica: LogRef, req: PushRequest, size: int, verify: VerifiedBatch
    ) -> checkpoint.Checkpoint:
        """Rule 3: verify the partner's checkpoint and the root the batch would produce."""
        note = req.checkpoint or b""
        opened = open_log_checkpoint(root, replica, note, self.node.clock())
        cp = opened.checkpoint
        end = req.start + len(req.entries)
        if cp.size != end:
            raise BadDataError(
                f"the checkpoint is of size {cp.size}, but the batch ends at {end}",
                where="checkpoint",
            )
        if end <= size:
            expected = await self.node.store.root_at(replica, end)
        else:  # the root after this batch: what is held, plus the new leaves
            frontier = await self.node.store.frontier(replica, size)
            new = verify.leaf_hashes(req.entries[size - req.start :])
            expected = extended(frontier, new).root()
        if expected != cp.root_hash:
            held = await self.node.store.latest_checkpoint(replica)
            reason = (
                f"the partner's signed checkpoint of size {cp.size} does not match the "
                "entries it sent"
            )
            raise await self.node.raise_fork(replica, reason, offered=note, held=held)
        return cp

    async def _observe(
        self,
        partnership: str,
        node: str,
        local: int,
        remote: int | None,
        job: str,
        durable: bool = True,
    ) -> None:
        """Record for ``jcm-sync status`` what the hub last saw of a log (rule 12)."""
        ref = self.node.log_ref(partnership, node)
        if self.leader is not None:  # ADR 0042: other hub processes write it too
            self._status[partnership] = await read_status(self.node.store, partnership)
        st = self._status.setdefault(partnership, AgentStatus(partnership=partnership))
        note_log(self.node, st, ref, local, remote)
        job_status = st.jobs.setdefault(job, JobStatus())
        job_status.last_run = job_status.last_success = self.node.clock()
        now = asyncio.get_running_loop().time()
        last = self._status_written.get(partnership)
        if durable or self.leader is not None or last is None or now - last >= STATUS_EVERY:
            self._status_written[partnership] = now
            await write_status(self.node.store, st)

    # --- reads -----------------------------------------------------------------------

    async def _own_view(self, partnership: str) -> CheckpointView:
        service = self.node.logs(partnership).service
        cp = await service.sign_checkpoint()
        note = await cosigned_note(self.node.store, service.log, cp.size, cp.note)  # ADR 0032
        return CheckpointView(origin=service.log.origin, size=cp.size, root=cp.root, note=note)

    async def checkpoint(self, caller: Caller, partnership: str, node: str) -> CheckpointView:
        self._check_member(caller, partnership)
        ref = self.node.log_ref(partnership, node)
        if ref.node == "JP":
            return await self._own_view(partnership)
        return await self.views.read(ref)

    async def state(
        self, caller: Caller, partnership: str, *, have: int | None = None
    ) -> PartnershipState:
        """Both logs' heads and checkpoints in one answer (anti-entropy).

        ``have`` is how much of Japan's log the partner says it holds (for status)."""
        self._check_member(caller, partnership)
        own = await self._own_view(partnership)
        replica = self.node.logs(partnership).replica
        view = await self.node.store.log_view(replica)  # its head and checkpoint in one read
        rep = self.views.of(replica, view, view.head)
        if have is not None:
            if have > own.size:  # rule 11: clamped, so the lag stays a real figure
                ahead = {"partner": caller.node, "partnership": partnership, "have": have}
                log.warning("partner-ahead-of-log", extra=ahead | {"size": own.size})
            await self._observe(partnership, "JP", own.size, min(have, own.size), "served")
        return PartnershipState(partnership=partnership, logs=[
            LogState(node="JP", origin=own.origin, size=own.size, root=own.root,
                     checkpoint=own.note),
            LogState(node=replica.node, origin=rep.origin,
                     size=view.head.size, root=view.head.root, checkpoint=rep.note),
        ])  # fmt: skip

    async def entries(
        self, caller: Caller, partnership: str, node: str, start: int, limit: int
    ) -> EntriesPage:
        self._check_member(caller, partnership)
        ref = self.node.log_ref(partnership, node)
        head = await self.node.store.tree_head(ref)
        self._within(head.size, "start", start)
        end = min(head.size, start + max(1, min(limit, MAX_PAGE)))
        rows = await self.node.store.entries(ref, start, end)
        return EntriesPage(start=start, entries=[e.envelope for e in rows], size=head.size)

    async def consistency(
        self, caller: Caller, partnership: str, node: str, old: int, new: int | None
    ) -> ConsistencyProofView:
        ref, size = await self._log_size(caller, partnership, node)
        self._within(size, "old", old)
        if new is not None:
            self._within(size, "new", new)
            if old > new:
                raise BadParameterError(f"old {old} is larger than new {new}", where="old")
        p = await prove_consistency(self.node.store, ref, old, size if new is None else new)
        return ConsistencyProofView(old_size=p.old_size, new_size=p.new_size, proof=p.path)

    async def inclusion(
        self, caller: Caller, partnership: str, node: str, index: int, size: int | None
    ) -> InclusionProofView:
        ref, log_size = await self._log_size(caller, partnership, node)
        if size is not None:
            self._within(log_size, "size", size)
        tree = log_size if size is None else size
        if index >= tree:
            if size is None:
                raise PastLogSizeError(
                    f"index {index} is not below the log's size {log_size}",
                    size=log_size,
                    where="index",
                )
            raise BadParameterError(f"index {index} is not below size {size}", where="index")
        p = await prove_inclusion(self.node.store, ref, index, tree)
        return InclusionProofView(index=p.index, size=p.size, leaf_hash=p.leaf_hash, proof=p.path)
