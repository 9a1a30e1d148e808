"""Reconciliation as a node runs it: snapshot from the store, history in it, metrics.

Why this module exists: ``jcm_sync.core.reconcile`` is pure (a snapshot in, a report out); a
node must also take the snapshot from its store, remember what it found before (when
each discrepancy was first seen, which ones have since been resolved), publish metrics,
and refuse to move quarantined credits. This is that orchestration,
shared by the scheduler (``run_scheduled``), the CLI (``jcm-sync reconcile``) and tests.

Rules:

1. **Snapshot.** A run reconciles both logs of the partnership at their latest stored
   **agreed** checkpoints: the node's own checkpoint of its log and the counterpart's
   checkpoint it verified for the replica, so both sides reconcile the same pair. A
   checkpoint is agreed once the cosignatures the trust root's quorum for its log names
   are stored with it (``agreement``, ADR 0035); with quorum 0 every checkpoint is, and
   a log that has never been checkpointed is taken at its head. A log with a quorum and
   no agreed checkpoint yet is taken empty. Entries are read from the store in chunks and
   decoded without re-verifying signatures (``reconcile.inputs`` rule 2: the store only
   holds verified entries); the entries must hash to the checkpoint roots.
2. **Incremental runs.** The folded state of a partnership is kept in memory with the
   (size, root) of each log it covers. The next run folds only the new suffix of each log
   if the new checkpoint extends the old one (the stored tree's root at the old size is
   the old root) and the trust root is unchanged; otherwise it rebuilds from scratch. A
   failed run drops the state, so a half-folded state is never reused.
3. **History.** The node-state value ``reconcile/<partnership>/history`` (in the store,
   ADR 0027) keeps every discrepancy ever
   found with ``first_seen`` (set once, when first found), ``last_seen`` and its status:
   ``open`` or ``explained`` as the last report says, ``resolved`` (with ``resolved_at``)
   once a later snapshot no longer finds it; a resolved discrepancy found again is open
   again with its original ``first_seen``. The last report is kept beside it
   (``reconcile/<partnership>/report``), and every run's report under its run number
   (``reconcile_state`` rule 5; the newest ``[reconcile] keep_runs`` runs, which the
   history keeps as many of). Each run's record is its own key, written only by that
   run, so runs finishing at once in two processes keep both (``run_history``, ADR 0047
   amendment). Each value is replaced atomically and durably (protocol rule 9); the
   reports first, then the run record, then the history value, merged with the value
   read just before: a crash in between leaves the discrepancies of the run before,
   which the next run brings up to date.
4. **Run status.** A run claims its number and is recorded as ``initiated`` before the
   snapshot is read, then updated to its final status (``reconcile.model.run_status``);
   a run that fails stays ``initiated`` with its error, and is counted as such.
5. **Resolutions** are ``resolution`` records signed with the node's signing key and
   appended to its own log (``own_log.resolve``); a new one for the same discrepancy
   supersedes the node's previous one. A discrepancy is ``explained`` only once both
   sides' logs hold an ``explain`` resolution for it, which the next run sees.
6. **Quarantine.** ``ReconcileService.check``, which every write to the node's own log
   runs (``own_log.append_own``), refuses a transaction touching a range held by a
   discrepancy that the last run found open and that is still open once the batch itself
   is folded in (``reconcile.quarantine`` rule 4, ADR 0011): a batch carrying the rest of
   an issuance or a missing decision may move what it settles.
7. **Off the event loop** (ADR 0010). A run's CPU work (decoding and folding each chunk,
   the report, merging the history, decoding and encoding the history and report)
   runs on one worker thread per node, a chunk at a time; store reads stay on the event
   loop between chunks. So a node keeps serving requests while it reconciles, and two
   runs of a node never fold at once (one thread; runs of one partnership also hold a
   lock). A run cancelled while a chunk is being folded drops the folded state (rule 2);
   the chunk finishes on the worker and is discarded.
8. **Scheduled runs** (``run_scheduled``) raise nothing but ``JcmSyncError`` (and
   cancellation): any other failure is logged with its traceback and raised as one, so
   the agent's daemon logs, counts and backs off, and the hub logs and counts it; neither
   lets it reach the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar, overload

import msgspec

from jcm_sync.core import merkle
from jcm_sync.core.reconcile import (
    Discrepancy,
    Quarantine,
    Reconciler,
    Report,
    check_batch,
    check_position,
    from_verification,
    iter_stored,
    signer_nodes,
    touching,
)
from jcm_sync.core.reconcile.model import Trail
from jcm_sync.core.trust import TrustRoot, Verification, encode_root
from jcm_sync.errors import JcmSyncError, NotFoundError, StoreError
from jcm_sync.services.agreement import agreed_checkpoint
from jcm_sync.services.node import Node
from jcm_sync.services.reconcile_state import KEEP_RUNS, Folded, grace_days
from jcm_sync.services.run_history import (  # noqa: F401 (re-exported: their home was here)
    History,
    RunRecord,
    begin_run,
    count_statuses,
    decode_history,
    encode_history,
    end_run,
    history_key,
    merge_history,
    put_record,
    read_history,
    record_key,
    report_key,
    write_history,
)
from jcm_sync.store import LogRef, Store

log = logging.getLogger("jcm_sync.core.reconcile")

CHUNK: Final = 2000
"""Entries read from the store and folded at a time: bounds memory on a full rebuild."""

MAX_RUNS: Final = KEEP_RUNS
"""Runs kept in a partnership's history by default (``[reconcile] keep_runs``)."""

_R = TypeVar("_R")


# --- the history (rule 3) ---------------------------------------------------------------


async def find_discrepancy(
    store: Store, partnerships: Sequence[str], discrepancy: str
) -> tuple[str, Discrepancy, list[Trail]]:
    """A discrepancy of the history of one of ``partnerships``, with the trails of the
    last report that follow its ranges; ``NotFoundError`` if no history holds it."""
    for pid in partnerships:
        d = (await read_history(store, pid, runs=False)).discrepancies.get(discrepancy)
        if d is None:
            continue
        report = await read_report(store, pid)
        trails = [t for t in (report.trails if report else ()) if t.discrepancy_id == d.id]
        return pid, d, trails
    raise NotFoundError(f"no discrepancy {discrepancy}; run `jcm-sync reconcile run` first")


def decode_report(data: bytes | None, partnership: str, as_type: type[Any] = Report) -> Any:
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=as_type)
    except msgspec.MsgspecError as exc:  # the cause is in the message
        raise StoreError(f"cannot read {report_key(partnership)}: {exc}") from None


@overload
async def read_report(store: Store, partnership: str) -> Report | None: ...
@overload
async def read_report(store: Store, partnership: str, as_type: type[_R]) -> _R | None: ...
async def read_report(store: Store, partnership: str, as_type: type[Any] = Report) -> Any:
    """The last stored report (None if the partnership never ran), decoded as ``as_type``:
    a ``Report``, or a struct of some of its fields (the rest are skipped, not built)."""
    return decode_report(await store.get_state(report_key(partnership)), partnership, as_type)


# --- per-node state (rules 2 and 7): kept on the node, ``Node.reconcile`` ----------


# --- the work done on the worker thread (rule 7) ------------------------------------------


def _fold_chunk(
    reconciler: Reconciler,
    root: TrustRoot,
    node: str,
    envelopes: list[bytes],
    keys: dict[str, str],
    start: int,
) -> None:
    reconciler.apply(node, iter_stored(root, envelopes, nodes=keys, validate=False), start=start)


def _fold_verified(
    reconciler: Reconciler, node: str, batch: Sequence[Verification], start: int
) -> None:
    reconciler.apply(node, map(from_verification, batch), start=start)


@dataclass(frozen=True)
class RunResult:
    """A finished run: the report, the run record and the whole history after it."""

    report: Report
    run: RunRecord
    history: History


# --- the snapshot (rule 1) ----------------------------------------------------------------


class Snapshot(NamedTuple):
    """Where rule 1 takes one log: its size and root, ``cut`` (``agreed``, ``checkpoint``,
    ``empty`` or ``head``) and ``reason`` in words (the evidence manifest states both)."""

    size: int
    root: bytes
    cut: str
    reason: str


async def snapshot_position(store: Store, root: TrustRoot, ref: LogRef) -> Snapshot:
    """Rule 1 for one log."""
    quorum = root.cosign_quorum.get(ref.node)
    cp = await agreed_checkpoint(store, root, ref)
    if cp is not None and quorum is None:
        why = "the newest stored checkpoint: the trust root states no cosignature quorum"
        return Snapshot(cp.size, cp.root, "checkpoint", why)
    if cp is not None:
        assert quorum is not None
        why = (f"the newest checkpoint agreed by the trust root's quorum: cosigned by "
               f"{quorum.threshold} of {', '.join(quorum.cosigners)}")  # fmt: skip
        return Snapshot(cp.size, cp.root, "agreed", why)
    if quorum is not None:
        why = "no checkpoint agreed by the trust root's quorum yet: taken empty"
        return Snapshot(0, merkle.EMPTY_ROOT, "empty", why)
    head = await store.tree_head(ref)
    return Snapshot(head.size, head.root, "head", "never checkpointed: taken at its head")


# --- the service ------------------------------------------------------------------------


class ReconcileService:
    """Reconciliation on a node (see the module rules). Cheap to create: what it keeps
    between runs is the node's (``Node.reconcile``), so the scheduler, the CLI and tests
    share it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._state = node.reconcile
        self.metrics = node.reconcile.metrics

    @property
    def store(self) -> Store:
        return self.node.store

    async def _cpu(self, fn: Callable[..., _R], *args: Any, **kw: Any) -> _R:
        """Rule 7: ``fn(*args, **kw)`` on the node's reconciliation thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kw)
        return await loop.run_in_executor(self._state.worker(), call)

    def _by_node(self, partnership: str) -> dict[str, LogRef]:
        logs = self.node.logs(partnership)
        return {logs.own.node: logs.own, logs.replica.node: logs.replica}

    async def positions(self, partnership: str) -> dict[str, tuple[int, bytes]]:
        """Rule 1: (size, root) of each log at its latest agreed checkpoint, or at its head."""
        root = self.node.logs(partnership).root
        out = {}
        for node, ref in self._by_node(partnership).items():
            snap = await snapshot_position(self.node.store, root, ref)
            out[node] = (snap.size, snap.root)
        return out

    async def _extends(self, ref: LogRef, old: tuple[int, bytes], new: tuple[int, bytes]) -> bool:
        """Rule 2: the new checkpoint of ``ref`` extends the one folded."""
        size, root = old
        if new[0] < size:
            return False
        if size == 0:
            return root == merkle.EMPTY_ROOT
        return await self.node.store.root_at(ref, size) == root

    async def _fold(self, partnership: str, target: dict[str, tuple[int, bytes]]) -> bool:
        """Bring the partnership's folded state to ``target``; True if it was incremental."""
        logs = self.node.logs(partnership)
        trust = encode_root(logs.root)
        refs = self._by_node(partnership)
        folded = self._state.folded.get(partnership)
        incremental = folded is not None and folded.trust == trust
        if folded is not None and incremental:
            for node, ref in refs.items():
                if not await self._extends(ref, folded.positions[node], target[node]):
                    incremental = False
        if folded is None or not incremental:
            folded = Folded(
                Reconciler(logs.root), trust, dict.fromkeys(refs, (0, merkle.EMPTY_ROOT))
            )
        self._state.folded.pop(partnership, None)  # rule 2: reused only once complete
        keys = signer_nodes(logs.root)
        for node, ref in refs.items():
            start, (size, root) = folded.positions[node][0], target[node]
            for lo in range(start, size, CHUNK):
                entries = await self.node.store.entries(ref, lo, min(size, lo + CHUNK))
                envelopes = [e.envelope for e in entries]
                await self._cpu(
                    _fold_chunk, folded.reconciler, logs.root, node, envelopes, keys, lo
                )
            check_position(folded.reconciler, node, size, root)
            folded.positions[node] = (size, root)
        self._state.folded[partnership] = folded
        return incremental

    async def reconcile(self, partnership: str) -> RunResult:
        """One run over the latest checkpoints (rules 1-4)."""
        async with self._state.lock(partnership):
            return await self._run(partnership)

    async def _run(self, partnership: str) -> RunResult:
        self.node.logs(partnership)  # NotFoundError before anything is written
        run = await begin_run(self.store, partnership, self.node.clock())
        try:
            target = await self.positions(partnership)
            run.incremental = await self._fold(partnership, target)
            report = await self._cpu(
                self._state.folded[partnership].reconciler.report,
                self.node.clock(),  # judged on today's date with the grace (ADR 0011)
                grace=self.node.cfg.reconcile.grace_days(),
            )
        except (JcmSyncError, OSError) as exc:
            self._state.folded.pop(partnership, None)
            run.error = str(exc)
            self.metrics.runs.labels(partnership, "initiated").inc()
            try:
                await put_record(self.store, partnership, run)
            except StoreError as again:  # the run's own error is the one to report
                log.error("reconcile-not-recorded", extra={"partnership": partnership,
                          "error": str(again)})  # fmt: skip
            raise
        now, keep = self.node.clock(), self.node.cfg.reconcile.keep_runs
        history = await end_run(self.store, partnership, run, report, now, keep, self._cpu)
        self._publish(partnership, report, now, history)
        return RunResult(report=report, run=run, history=history)

    def _publish(self, partnership: str, report: Report, now: datetime, history: History) -> None:
        grace = grace_days(self.node.cfg.reconcile.grace_days())
        self.metrics.publish(partnership, history.discrepancies.values(), grace, now)
        self.metrics.last_run.labels(partnership).set(now.timestamp())
        self.metrics.runs.labels(partnership, report.status).inc()

    async def refresh_metrics(self) -> None:
        """Set the discrepancy gauges of every partnership from its stored history.

        A run sets them (``_publish``), but a daemon that restarted has run nothing yet,
        and a resolution written by ``jcm-sync reconcile resolve`` in another process
        reaches the history, not this process's gauges: ``/metrics`` calls this so a
        scrape always counts what the history holds."""
        grace = grace_days(self.node.cfg.reconcile.grace_days())
        now = self.node.clock()
        for pid in sorted(self.node.partnerships):
            history = await read_history(self.store, pid, runs=False)
            self.metrics.publish(pid, history.discrepancies.values(), grace, now)

    # -- reading the history -------------------------------------------------------

    async def history(self, partnership: str, *, runs: bool = True) -> History:
        """The history (``run_history`` rule 3; ``runs=False``: the discrepancies only)."""
        self.node.logs(partnership)
        return await read_history(self.store, partnership, runs=runs)

    async def open_discrepancies(self, partnership: str) -> list[Discrepancy]:
        """The discrepancies open after the last run: what quarantine holds (rule 6)."""
        return (await self.history(partnership, runs=False)).open()

    async def find(
        self, discrepancy: str, partnership: str | None = None
    ) -> tuple[str, Discrepancy]:
        """The partnership and history entry of a discrepancy id (``NotFoundError`` if none)."""
        pids = [partnership] if partnership else sorted(self.node.partnerships)
        for pid in pids:
            d = (await self.history(pid, runs=False)).discrepancies.get(discrepancy)
            if d is not None:
                return pid, d
        raise NotFoundError(
            f"no discrepancy {discrepancy} in the reconciliation history of "
            f"{', '.join(pids)}; run `jcm-sync reconcile run` first"
        )

    # -- writing -------------------------------------------------------------------

    async def check(
        self, partnership: str, batch: Sequence[Verification], *, now: datetime | None = None
    ) -> None:
        """Rule 6: refuse a batch for the node's own log whose transactions move ranges
        held by a discrepancy that the last run found open and that is still open with the
        batch folded in (``reconcile.quarantine`` rule 4, ADR 0011).

        ``batch`` is the records as the own-log path verified them (``services.own_log``),
        so nothing is decoded again. Cheap unless it matters: with no open discrepancy, or
        no transaction of the batch touching a held range, nothing else is read.
        Otherwise both logs are folded from the store at their heads into a scratch
        ``Reconciler``, the batch after the own log's head, and judged at ``now`` (the
        node's clock by default) with the configured grace period. Folding and judging
        run on the node's reconciliation thread (rule 7), in chunks.
        """
        held = await self.open_discrepancies(partnership)
        if not held:
            return
        quarantine = Quarantine(held)
        moving = []
        for lo in range(0, len(batch), CHUNK):
            records = [v.record for v in batch[lo : lo + CHUNK]]
            moving += await self._cpu(touching, records, quarantine)
        if not moving:
            return
        logs = self.node.logs(partnership)
        root, store = logs.root, self.node.store
        keys = signer_nodes(root)
        scratch = Reconciler(root)
        sizes = {}
        for ref in (logs.replica, logs.own):
            size = sizes[ref.node] = (await store.tree_head(ref)).size
            for lo in range(0, size, CHUNK):
                entries = await store.entries(ref, lo, min(size, lo + CHUNK))
                chunk = [e.envelope for e in entries]
                await self._cpu(_fold_chunk, scratch, root, ref.node, chunk, keys, lo)
        own = logs.own.node
        for lo in range(0, len(batch), CHUNK):
            await self._cpu(_fold_verified, scratch, own, batch[lo : lo + CHUNK], sizes[own] + lo)
        judge = functools.partial(
            scratch.report,
            now if now is not None else self.node.clock(),
            grace=self.node.cfg.reconcile.grace_days(),
        )
        after = await self._cpu(judge)
        check_batch(moving, held, after.discrepancies)


# --- entry points for the lead's wiring -----------------------------------------------


async def reconcile_partnership(node: Node, partnership: str) -> Report:
    """Reconcile one partnership of ``node`` now and return the report."""
    return (await ReconcileService(node).reconcile(partnership)).report


async def run_scheduled(node: Node, partnership: str) -> None:
    """The scheduler's job: one run. Discrepancies are results, not failures; a
    ``JcmSyncError`` (store, corrupt snapshot) propagates so the daemon backs off, and any
    other failure is logged with its traceback and raised as one (rule 8)."""
    try:
        result = await ReconcileService(node).reconcile(partnership)
    except JcmSyncError:
        raise
    except Exception as exc:
        log.exception("reconcile-crashed", extra={"partnership": partnership})
        raise JcmSyncError(
            f"reconciliation of {partnership} failed: {type(exc).__name__}: {exc}"
        ) from exc
    run = result.run
    level = logging.WARNING if run.open else logging.INFO
    log.log(level, "reconciled", extra={
        "partnership": partnership, "run_status": run.status, "open": run.open,
        "explained": run.explained, "new": run.new, "resolved": run.resolved,
        "pending": run.pending})  # fmt: skip
