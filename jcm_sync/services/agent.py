"""The partner agent: keeps its own log replicated at Japan's hub and a verified
replica of Japan's log, on a schedule.

Why this module exists: this is the product's main job (DESIGN §4, §6). The sync
logic (``Syncer``) is separate from the scheduling (``AgentDaemon``) so that the
``jcm-sync sync`` command, the daemon and the tests run exactly the same code.

Rules:

1. **Push** sends the own log from the hub's replica size onward, in batches of at
   most ``schedule.batch_size`` entries and ``schedule.batch_bytes`` of body (at least
   one entry), ``schedule.push_window`` in flight at a time (``Syncer(window=...)``
   overrides it; ``PUSH_WINDOW`` is the default, ADR 0061); the last batch carries the
   agent's signed checkpoint, so the hub can check the batch's root before storing
   anything. Before pushing, the hub's replica root at its size must equal the
   agent's own root at that size, or the hub holds another history of this log: a
   fork. When the hub holds every entry but no checkpoint of them (it stopped between
   the two writes), the checkpoint is sent again alone. The batches are cut from the
   own log read ahead in chunks (``push_batches``), not one store read per batch.
2. **Pull** accepts a new checkpoint of Japan's log only when it verifies under
   Japan's checkpoint keys and is consistent (RFC 9162 consistency proof, fetched
   from the hub) with the last checkpoint held; entries are fetched in pages, each
   page's root is proved consistent with the new checkpoint before the page is
   appended, and every entry is verified against the trust root by the store.
3. **Anti-entropy** is one request (``/state``) that returns both logs' heads; when
   both agree with the agent's, nothing else is sent, whatever the log sizes. It also
   finishes witnessing left undone (ADR 0032) and reports each log's newest cosigned size.
4. **A fork** stops replication of that log (``log_sync`` rule 1), keeps both signed
   checkpoints as evidence in an alarm file, logs it, counts it in a metric and shows
   it in ``jcm-sync status``. Nothing held is ever overwritten.
5. After a restart the agent resumes from what its store and the hub hold: no
   in-memory state is needed to continue.
6. Jobs run with jitter, ``max_instances=1`` and coalescing (``daemon.py``), a late
   run kept for up to one interval; a failing job backs off exponentially (capped)
   and one job's failure never stops another. Reconciliation runs on its own
   interval and also right after a pull that brought new records.
7. **One exchange at a time** (ADR 0009): push, pull and anti-entropy take turns on
   one lock, so the agent has at most its push window of requests in flight at the
   hub, within its per-node limit however the schedules line up.
8. **Retry-After is honoured**: a refusal carrying it (429, 503) backs that job off
   at least that long (up to ``backoff_max_seconds``), and no exchange job sends
   anything before it has passed.
9. **A cancellation is a failure unless it is the shutdown**: a job cancelled while
   the daemon runs (aiohttp's timeout can surface as a bare cancellation) is recorded
   and backed off like a timeout; once ``run`` is stopping, jobs end quietly, and the
   scheduler is paused first: its shutdown runs a loop step later, and would cancel
   the tasks a wake-up made meanwhile before their first step (logged as an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jcm_sync.core import checkpoint, merkle
from jcm_sync.core import note as signed_note
from jcm_sync.core.trust import TrustRoot, Verification, verify_record
from jcm_sync.core.wire import LogState, PartnershipState, PushRequest, PushResponse
from jcm_sync.errors import ConfigError, JcmSyncError, PeerRefusedError, TransportError
from jcm_sync.local.config import DEFAULT_PUSH_WINDOW, MAX_PUSH_WINDOW
from jcm_sync.local.status import AgentStatus, JobStatus, write_status
from jcm_sync.services.daemon import IntervalJob, interval_scheduler, stop_scheduler
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.log_service import checkpoint_verifiers, open_log_checkpoint
from jcm_sync.services.log_sync import (
    extended,
    is_stopped,
    note_log,
    refuse_if_stopped,
    verify_batch,
)
from jcm_sync.services.node import Node, PartnershipLogs
from jcm_sync.services.push_batches import OwnEntries, b64_size, cancel_all
from jcm_sync.services.reconciliation import run_scheduled
from jcm_sync.services.witness import witness_exchange
from jcm_sync.store import LogRef

log = logging.getLogger("jcm_sync.services.agent")

PUSH_WINDOW = DEFAULT_PUSH_WINDOW
"""Push batches in flight at once by default (rule 1; ``schedule.push_window``)."""

Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)`` for long catch-ups."""


# --- sync -----------------------------------------------------------------------------


@dataclass
class SyncResult:
    pushed: int = 0
    pulled: int = 0
    in_sync: bool = False
    round_trips: int = 0
    cosigned: dict[str, int | None] = field(default_factory=dict)  # by node; None: never


@dataclass
class Syncer:
    """One partnership's push, pull and anti-entropy through a ``HubPort``: the signed
    HTTP ``HubClient``, an ``InProcessHub``, or a test's lying hub."""

    node: Node
    client: HubPort
    partnership: str
    batch_size: int = 500
    progress: Progress | None = None
    #: push batches in flight at once (rule 1); None: the node's ``schedule.push_window``
    window: int | None = None
    status: AgentStatus = field(init=False)

    def __post_init__(self) -> None:
        window = self.node.cfg.schedule.push_window if self.window is None else self.window
        if not 1 <= window <= MAX_PUSH_WINDOW:
            raise ConfigError(
                f"a push window is 1 to {MAX_PUSH_WINDOW} batches, not {window}",
                where="schedule.push_window",
            )
        self._window: int = window
        # loaded from the store by open_node; shared, so every syncer of it sees one status
        self.status = self.node.job_status.setdefault(
            self.partnership, AgentStatus(partnership=self.partnership)
        )

    @property
    def logs(self) -> PartnershipLogs:
        return self.node.logs(self.partnership)

    def _now(self) -> datetime:
        return self.node.clock()

    async def _save(self) -> None:
        await write_status(self.node.store, self.status)

    def _note_log(self, ref: LogRef, local: int, remote: int) -> None:
        note_log(self.node, self.status, ref, local, remote)
        self.node.metrics.log_size.labels(self.partnership, ref.node).set(local)

    async def stopped(self, ref: LogRef) -> bool:
        return await is_stopped(self.node, ref)

    def _remote(self, state: PartnershipState, node: str) -> LogState:
        for s in state.logs:
            if s.node == node:
                return s
        raise TransportError(f"the hub's state lists no log of {node}")

    async def fetch_state(self) -> PartnershipState:
        # tell the hub how much of Japan's log this agent holds, for the hub's status
        held = await self.node.store.tree_head(self.logs.replica)
        return await self.client.state(self.partnership, have=held.size)

    # --- push ------------------------------------------------------------------------

    async def push(self, state: PartnershipState | None = None) -> int:
        """Rule 1. Returns the number of entries the hub appended."""
        own = self.logs.own
        await refuse_if_stopped(self.node, own)
        state = state or await self.fetch_state()
        remote = self._remote(state, own.node)
        store = self.node.store
        head = await store.tree_head(own)
        if remote.size > head.size:
            raise await self.node.raise_fork(
                own,
                f"the hub holds {remote.size} entries of this log, but it has only {head.size}",
                hub_size=remote.size,
            )
        if remote.size and await store.root_at(own, remote.size) != remote.root:
            differs = f"the hub's replica of this log differs from it at size {remote.size}"
            raise await self.node.raise_fork(own, differs, offered=remote.checkpoint)
        if remote.size == head.size:
            if head.size and self._held_size(remote) != head.size:
                await self._resend_checkpoint(head.size)
            self._note_log(own, head.size, remote.size)
            return 0
        cp = await self.logs.service.sign_checkpoint()
        if cp.size != head.size:  # appended meanwhile: push up to what is signed
            head = await store.tree_head(own)
        total, start, pushed = cp.size - remote.size, remote.size, 0
        # body bytes left for entries once the checkpoint and the JSON around them are in
        budget = self.node.cfg.schedule.batch_bytes - b64_size(len(cp.note)) - 256
        in_flight: deque[asyncio.Task[PushResponse]] = deque()
        sent = start  # next index to send; ``start`` is what the hub acknowledged
        entries = OwnEntries(store, own, cp.size)  # read ahead, not per batch (ADR 0056)
        window = self._window
        try:
            while start < cp.size:
                # keep the window's batches in flight: the hub verifies the next ones
                # while it writes this one (it waits for an early batch's predecessor)
                while len(in_flight) < window and sent < cp.size:
                    batch = await entries.batch(sent, self.batch_size, budget)
                    end = sent + len(batch)
                    req = PushRequest(
                        start=sent,
                        entries=[e.envelope for e in batch],
                        checkpoint=cp.note if end == cp.size else None,
                        source_size=cp.size,
                    )
                    in_flight.append(
                        asyncio.create_task(self.client.push(self.partnership, own.node, req))
                    )
                    sent = end
                try:
                    resp = await in_flight.popleft()
                except PeerRefusedError as exc:
                    if exc.code == "gap" and exc.problem.size is not None:
                        await cancel_all(in_flight)
                        start = sent = exc.problem.size  # the hub lost a suffix: resend it
                        continue
                    raise
                pushed += resp.appended
                start = max(start, resp.size)
                if self.progress:
                    self.progress("push", min(total, start - remote.size), total)
                if resp.checkpoint.note is not None and resp.size == cp.size:
                    self._check_receipt(resp.checkpoint.note)
        finally:
            await cancel_all(in_flight)
        self._note_log(own, cp.size, start)
        self.node.metrics.pushes.labels(self.partnership, "accepted").inc()
        await witness_exchange(self.node, self.client, self.partnership)  # ADR 0032
        return pushed

    def _held_size(self, remote: LogState) -> int | None:
        """The size of the hub's latest checkpoint of our log, if it verifies."""
        if remote.checkpoint is None:
            return None
        own = self.logs.own
        verifiers = checkpoint_verifiers(self.logs.root, own, self._now())
        try:
            opened = checkpoint.open_checkpoint(remote.checkpoint, verifiers, origin=own.origin)
        except JcmSyncError:
            return None
        return opened.checkpoint.size

    async def _resend_checkpoint(self, size: int) -> None:
        """Rule 1's checkpoint again, with no entries: the hub holds every entry but not
        the checkpoint of them (it stopped between the two writes), so it could neither
        countersign a receipt nor know the replica complete."""
        cp = await self.logs.service.sign_checkpoint()
        if cp.size != size:  # appended meanwhile: the next push carries a newer one
            return
        req = PushRequest(start=size, entries=[], checkpoint=cp.note, source_size=size)
        resp = await self.client.push(self.partnership, self.logs.own.node, req)
        if resp.checkpoint.note is not None and resp.size == size:
            self._check_receipt(resp.checkpoint.note)

    def _check_receipt(self, note: bytes) -> None:
        """The hub's countersignature of our checkpoint: its receipt of what it holds."""
        jp_origin = self.logs.replica.origin
        verifiers = [
            signed_note.Verifier(jp_origin, v.public_key)
            for v in checkpoint_verifiers(self.logs.root, self.logs.replica, self._now())
        ]
        checkpoint.open_checkpoint(note, verifiers, origin=self.logs.own.origin)
        self.status.hub_receipt = note

    # --- pull ------------------------------------------------------------------------

    async def pull(self, state: PartnershipState | None = None) -> int:
        """Rule 2. Returns the number of entries appended to the replica."""
        rep = self.logs.replica
        await refuse_if_stopped(self.node, rep)
        state = state or await self.fetch_state()
        remote = self._remote(state, rep.node)
        if remote.checkpoint is None:
            return 0
        store, now = self.node.store, self._now()
        cp = open_log_checkpoint(self.logs.root, rep, remote.checkpoint, now).checkpoint
        head = await store.tree_head(rep)
        held = await store.latest_checkpoint(rep)
        if cp.size < head.size:
            # a stale answer (delayed in transit, or fetched before another job pulled) is
            # a prefix of what is held; only another history at that size is a fork
            if await store.root_at(rep, cp.size) == cp.root_hash:
                return 0
            raise await self.node.raise_fork(
                rep,
                f"Japan's checkpoint of size {cp.size} is not a prefix of the {head.size} "
                "entries held",
                offered=remote.checkpoint,
            )
        if cp.size == head.size:
            if cp.root_hash != head.root:
                raise await self.node.raise_fork(
                    rep, f"Japan's checkpoint of size {cp.size} has another root",
                    offered=remote.checkpoint,
                )  # fmt: skip
            if held is None or held.size != cp.size:
                await store.put_checkpoint(rep, remote.checkpoint)
            self._note_log(rep, head.size, cp.size)
            return 0
        if held is not None and held.size > 0 and held.size <= head.size:
            proof = await self.client.consistency(self.partnership, rep.node, held.size, cp.size)
            if not merkle.verify_consistency(held.size, cp.size, held.root, cp.root_hash,
                                             proof.proof):  # fmt: skip
                raise await self.node.raise_fork(
                    rep,
                    f"Japan's checkpoint of size {cp.size} is not consistent with the one "
                    f"of size {held.size} held",
                    offered=remote.checkpoint,
                )
        pulled = await self._fetch_pages(rep, head.size, cp, remote.checkpoint)
        await store.put_checkpoint(rep, remote.checkpoint)
        self._note_log(rep, cp.size, cp.size)
        await witness_exchange(self.node, self.client, self.partnership)  # ADR 0032
        await self.fetch_state()  # tells the hub what we now hold (its status and lag)
        return pulled

    async def _fetch_pages(
        self, rep: LogRef, size: int, cp: checkpoint.Checkpoint, note: bytes
    ) -> int:
        store = self.node.store
        frontier = await store.frontier(rep, size)
        start, total, pulled = size, cp.size - size, 0
        root = self.logs.root
        while start < cp.size:
            page = await self.client.entries(
                self.partnership, rep.node, start, min(self.batch_size, cp.size - start)
            )
            entries = page.entries[: cp.size - start]
            if page.start != start or not entries:
                raise TransportError(f"the hub sent no entries from {start} of {rep.origin}")
            verify = verify_batch(self._verifier(root), entries)  # log_sync rule 4
            frontier = extended(frontier, verify.leaf_hashes(entries))
            end = start + len(entries)
            if end < cp.size:
                proof = await self.client.consistency(self.partnership, rep.node, end, cp.size)
                ok = merkle.verify_consistency(end, cp.size, frontier.root(), cp.root_hash,
                                               proof.proof)  # fmt: skip
            else:
                ok = frontier.root() == cp.root_hash
            if not ok:
                raise await self.node.raise_fork(
                    rep,
                    f"entries {start}..{end - 1} served by the hub are not those of Japan's "
                    f"signed checkpoint of size {cp.size}",
                    offered=note,
                )
            result = await store.append_entries(rep, start, entries, verify)
            pulled += result.appended
            start = end
            if self.progress:
                self.progress("pull", start - size, total)
        return pulled

    def _verifier(self, root: TrustRoot) -> Callable[[bytes], Verification]:
        now = self._now()
        return lambda raw: verify_record(root, raw, now)

    # --- anti-entropy ----------------------------------------------------------------

    async def anti_entropy(self) -> SyncResult:
        """Rule 3: one request when in sync; otherwise push and pull what differs."""
        before = self.client.requests
        state = await self.fetch_state()
        own, rep = self.logs.own, self.logs.replica
        store = self.node.store
        own_head, rep_head = await store.tree_head(own), await store.tree_head(rep)
        remote_own, remote_rep = self._remote(state, own.node), self._remote(state, rep.node)
        result = SyncResult()
        own_ok = (remote_own.size, remote_own.root) == (own_head.size, own_head.root)
        rep_ok = (remote_rep.size, remote_rep.root) == (rep_head.size, rep_head.root)
        if not own_ok and not await self.stopped(own):
            result.pushed = await self.push(state)
        if not rep_ok and not await self.stopped(rep):
            result.pulled = await self.pull(state)
        if own_ok:
            self._note_log(own, own_head.size, remote_own.size)
        if rep_ok:
            self._note_log(rep, rep_head.size, remote_rep.size)
        if not (await self.stopped(own) or await self.stopped(rep)):  # rules 3, 4
            await witness_exchange(self.node, self.client, self.partnership)
        result.cosigned = {r.node: await store.cosigned_size(r) for r in (own, rep)}
        result.in_sync, result.round_trips = own_ok and rep_ok, self.client.requests - before
        return result

    async def sync_once(self) -> SyncResult:
        """One push, one pull and one anti-entropy pass (``jcm-sync sync``)."""
        result = SyncResult()
        errors: list[JcmSyncError] = []
        for name, job in (("push", self.push), ("pull", self.pull)):
            try:
                setattr(result, "pushed" if name == "push" else "pulled", await job())
                self.record(name, None)
            except JcmSyncError as exc:
                self.record(name, exc)
                errors.append(exc)
        try:
            ae = await self.anti_entropy()
            result.in_sync, result.cosigned = ae.in_sync, ae.cosigned
            self.record("anti_entropy", None)
        except JcmSyncError as exc:
            self.record("anti_entropy", exc)
            errors.append(exc)
        await self._save()
        if errors:
            raise errors[0]
        return result

    def record(self, job: str, error: BaseException | None) -> None:
        st = self.status.jobs.setdefault(job, JobStatus())
        now = self._now()
        st.last_run = now
        if error is None:
            st.last_success, st.failures = now, 0
            self.node.metrics.last_sync.labels(self.partnership, job).set(now.timestamp())
            self.node.metrics.job_runs.labels(self.partnership, job, "ok").inc()
        else:
            st.last_error, st.last_error_at = str(error), now
            st.failures += 1
            self.node.metrics.job_runs.labels(self.partnership, job, "error").inc()
            self.node.metrics.sync_failed(
                self.partnership, job, self.logs.own.node, self.logs.replica.node
            )


# --- the daemon -----------------------------------------------------------------------


@dataclass
class Backoff:
    """Capped exponential back-off with full jitter, by consecutive failures."""

    initial: float
    maximum: float
    failures: int = 0
    until: float = 0.0

    def blocked(self, now: float) -> bool:
        return now < self.until

    def failed(self, now: float, at_least: float = 0.0) -> float:
        """Back off after a failure; never less than ``at_least`` (the hub's Retry-After,
        honoured up to ``maximum``)."""
        self.failures += 1
        delay = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        delay = max(random.uniform(delay / 2, delay), min(at_least, self.maximum))
        self.until = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0


EXCHANGE_JOBS = frozenset({"push", "pull", "anti_entropy"})
"""The jobs that talk to the hub; they run one at a time (rule 7)."""


class AgentDaemon:
    """APScheduler jobs for push, pull, anti-entropy (and reconcile) of one partnership."""

    def __init__(self, syncer: Syncer) -> None:
        self.syncer = syncer
        sch = syncer.node.cfg.schedule
        self.backoff = {
            name: Backoff(sch.backoff_initial_seconds, sch.backoff_max_seconds)
            for name in ("push", "pull", "anti_entropy", "reconcile")
        }
        #: rule 7: the exchange jobs take turns, so the agent has at most its push
        #: window of requests in flight at the hub
        self.exchange = asyncio.Lock()
        #: rule 8: no exchange job sends anything before this (monotonic) time
        self.hub_quiet_until = 0.0
        self.stopping = False
        self._running: set[asyncio.Task[Any]] = set()
        jobs: dict[str, tuple[float, Callable[[], Awaitable[Any]]]] = {
            "push": (sch.push_seconds, self._job("push", syncer.push)),
            "pull": (sch.pull_seconds, self._pull_then_reconcile),
            "anti_entropy": (
                sch.anti_entropy_seconds,
                self._job("anti_entropy", syncer.anti_entropy),
            ),
            "reconcile": (sch.reconcile_seconds, self._job("reconcile", self._reconcile)),
        }
        self.scheduler = interval_scheduler(
            [
                IntervalJob(name, seconds, fn, misfire_grace_time=max(1, int(seconds)))
                for name, (seconds, fn) in jobs.items()
            ],
            jitter=sch.jitter_seconds,
        )

    def _job(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            return await self._run(name, fn)

        return job

    async def _reconcile(self) -> None:
        await run_scheduled(self.syncer.node, self.syncer.partnership)

    async def _pull_then_reconcile(self) -> None:
        """Pull; after a catch-up (anything new arrived), reconcile at once (outside the
        exchange turn: reconciliation reads only the local store)."""
        if await self._run("pull", self.syncer.pull):
            await self._run("reconcile", self._reconcile)

    async def _run(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run one job unless it is backing off; record how it ended (rule 6). Returns
        what ``fn`` returned, or None when it did not run or failed."""
        b = self.backoff[name]
        if self.stopping or b.blocked(time.monotonic()):  # rule 9: none starts at shutdown
            return None
        exchange = name in EXCHANGE_JOBS
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            async with self.exchange if exchange else contextlib.nullcontext():
                now = time.monotonic()
                if b.blocked(now) or (exchange and now < self.hub_quiet_until):
                    return None
                return await self._attempt(name, fn, b)
        except asyncio.CancelledError:
            if self.stopping:
                log.info("job-stopped", extra={"job": name})  # rule 9: not a failure
                return None
            # rule 9: a cancellation that is not the daemon's shutdown (aiohttp's timeout
            # losing its race with the answer) is a failed attempt, not the job's end
            if task is not None:
                while task.cancelling():
                    task.uncancel()
            timeout = TransportError(f"{name} was cancelled before the hub answered (a timeout)")
            self._failed(name, timeout, b.failed(time.monotonic()))
            await self.syncer._save()
            return None
        finally:
            if task is not None:
                self._running.discard(task)

    async def _attempt(self, name: str, fn: Callable[[], Awaitable[Any]], b: Backoff) -> Any:
        result: Any = None
        try:
            result = await fn()
        except PeerRefusedError as exc:
            now = time.monotonic()  # Retry-After counts from the answer, not the attempt
            wait = exc.retry_after or 0.0
            delay = b.failed(now, at_least=wait)
            if exc.retry_after is not None:  # rule 8: the hub asked every job to wait
                self.hub_quiet_until = max(self.hub_quiet_until, now + min(wait, b.maximum))
            self._failed(name, exc, delay)
        except JcmSyncError as exc:
            self._failed(name, exc, b.failed(time.monotonic()))
        else:
            b.succeeded()
            self.syncer.record(name, None)
        await self.syncer._save()
        return result

    def _failed(self, name: str, exc: JcmSyncError, delay: float) -> None:
        self.syncer.record(name, exc)
        if isinstance(exc, TransportError):
            log.warning("job-failed", extra={"job": name, "reason": exc.code,
                        "error": str(exc), "backoff_s": round(delay, 1)})  # fmt: skip
        else:
            log.error("job-refused", extra={"job": name, "reason": exc.code,
                      "error": exc.diagnostics(), "backoff_s": round(delay, 1)})  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = False
        self.scheduler.start()
        try:
            await stop.wait()
        finally:
            self.stopping = True  # rule 9: from now on a cancellation is the shutdown
            stop_scheduler(self.scheduler)  # rule 9: a wake-up due now makes no job's task
            running = list(self._running)
            for task in running:
                task.cancel()
            if running:  # let them unwind (cancel their requests) before the caller closes
                await asyncio.wait(running, timeout=10)
