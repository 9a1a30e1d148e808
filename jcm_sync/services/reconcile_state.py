"""What a node keeps for reconciliation between runs: folded state, locks, thread, metrics.

Why this module exists: reconciliation (``services.reconciliation``) folds logs
incrementally and runs its CPU work on one thread per node; that state must live as long
as the node and no longer, and be shared by every caller (the scheduler, the CLI, the
import path, tests). The ``Node`` owns one ``ReconcileState`` (``Node.reconcile``),
created with it, so nothing is looked up in a module table and closing the node stops
the thread. It is its own module because ``services.node`` cannot import
``services.reconciliation`` (which imports the node).

Rules (the numbers are ``services.reconciliation``'s):

1. A partnership's folded state is kept only once complete (rule 2): a run takes it out
   while it folds and puts it back when done, so a failed run leaves none.
2. One lock per partnership serialises its runs; one worker thread per node runs every
   chunk (rule 7), started on first use and stopped by ``close``.
3. The metrics are registered once, in the node's own registry, when the node is made.
   ``ReconcileMetrics.publish`` sets the gauge of every rule of a partnership after each
   run, 0 included, from the whole history: a rule whose discrepancies were all resolved
   goes back to 0 instead of keeping its last count.
4. A discrepancy is past its grace period (``past_grace``) while it is open and was first
   seen at least its rule's grace days ago: the configured ``[reconcile.grace]`` days, the
   rule's default (``GRACE_DEFAULTS``), or 0 for a rule without one (a finding at once).
5. **Every run's report is kept** (issue 14: an auditor's bundle carries each run, not
   only the last): ``reconcile/<partnership>/runs/<SEQ>``, ``SEQ`` a zero-padded run
   number, holding the report as stored (its ``logs`` are the agreed snapshot sizes and
   roots it ran on). The run's record in the history names its number
   (``RunRecord.report_seq``) and is kept under it too (``run_history`` rule 1). Only
   the newest ``[reconcile] keep_runs`` (default ``KEEP_RUNS``) are kept; older ones are
   deleted after each run.
6. **A run number is claimed once, across processes** (``next_run_seq``): the daemon and a
   manual ``jcm-sync reconcile``, or two hub processes on one PostgreSQL (ADR 0042), may
   finish runs of one partnership at once, and the lock of rule 2 is per process. The
   counter ``reconcile/<partnership>/last-run`` (ASCII decimal) holds the last number
   claimed; a claim reads it and the newest kept report, and compare-and-sets the
   counter to one past the larger (the store's ``swap_state``, one statement), retrying
   when another claim won in between. The counter only rises, so every claim gets its
   own number, and concurrent claims get consecutive ones; a store from before the
   counter starts one past its newest kept report. A run claims its number when it
   starts, so a run that fails has one too (its record's key; no report under it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from jcm_sync.core.reconcile import RULES, Discrepancy, Reconciler
from jcm_sync.core.reconcile.model import GRACE_DEFAULTS
from jcm_sync.errors import ConflictError, CorruptStoreError
from jcm_sync.store import Store

KEEP_RUNS = 400
"""Rule 5: run reports (and run records in the history) kept per partnership."""

MAX_CLAIMS = 1000
"""Rule 6: compare-and-sets a run number claim tries before giving up (each failure
means another claim succeeded)."""


def runs_prefix(partnership: str) -> str:
    """Rule 5: the state keys of a partnership's run reports start with this."""
    return f"reconcile/{partnership}/runs/"


def run_report_key(partnership: str, seq: int) -> str:
    """Rule 5: the state key of run ``seq``'s report."""
    return f"{runs_prefix(partnership)}{seq:012d}"


def seq_of(key: str) -> int | None:
    """The run number of a run report's key (None for a key that is not one)."""
    tail = key.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


async def run_report_seqs(store: Store, partnership: str) -> list[int]:
    """Rule 5: the numbers of the kept run reports, oldest first."""
    keys = await store.state_keys(runs_prefix(partnership))
    return sorted(n for k in keys if (n := seq_of(k)) is not None)


def run_counter_key(partnership: str) -> str:
    """Rule 6: the state key of the last run number claimed."""
    return f"reconcile/{partnership}/last-run"


async def next_run_seq(store: Store, partnership: str) -> int:
    """Rule 6: claim the next run number (1 for the first), never the one another claim
    got, in this process or another."""
    key = run_counter_key(partnership)
    for _ in range(MAX_CLAIMS):
        held = await store.get_state(key)
        last = 0 if held is None else _counter(held, key)
        seqs = await run_report_seqs(store, partnership)
        seq = max(last, seqs[-1] if seqs else 0) + 1
        if await store.swap_state(key, held, str(seq).encode()):
            return seq
    raise ConflictError(
        f"no run number claimed in {MAX_CLAIMS} tries: other runs claimed each one first",
        where=key,
    )


def _counter(held: bytes, key: str) -> int:
    if not held.isdigit() or len(held) > 18:
        raise CorruptStoreError(f"the run counter is not a number: {held[:40]!r}", where=key)
    return int(held)


async def keep_run_report(
    store: Store, partnership: str, seq: int, report: bytes, keep: int = KEEP_RUNS
) -> None:
    """Rule 5: store run ``seq``'s report, then drop all but the newest ``keep``."""
    await store.put_state(run_report_key(partnership, seq), report)
    seqs = await run_report_seqs(store, partnership)
    for old in seqs[: max(0, len(seqs) - keep)]:
        await store.delete_state(run_report_key(partnership, old))


def grace_days(configured: Mapping[str, int]) -> dict[str, int]:
    """Rule 4: the grace days of each rule that has some, the configured ones winning."""
    return {**GRACE_DEFAULTS, **configured}


def past_grace(d: Discrepancy, grace: Mapping[str, int], now: datetime) -> bool:
    """Rule 4: open, and first seen at least the rule's grace days before ``now``."""
    if d.status != "open":
        return False
    first = d.first_seen or now
    return now - first >= timedelta(days=grace.get(d.rule, 0))


class ReconcileMetrics:
    """The reconciliation metrics, registered in a node's metrics registry (rule 3)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "jcm_sync_discrepancies_open",
            "Open reconciliation discrepancies, by rule",
            ["partnership", "rule"],
            registry=registry,
        )
        self.past_grace = Gauge(
            "jcm_sync_discrepancies_past_grace",
            "Open reconciliation discrepancies past their rule's grace period, by rule",
            ["partnership", "rule"],
            registry=registry,
        )
        self.last_run = Gauge(
            "jcm_sync_reconcile_last_run_timestamp_seconds",
            "When reconciliation of a partnership last finished",
            ["partnership"],
            registry=registry,
        )
        self.runs = Counter(
            "jcm_sync_reconcile_runs_total",
            "Reconciliation runs, by the status they ended in",
            ["partnership", "status"],
            registry=registry,
        )

    def publish(
        self,
        partnership: str,
        found: Iterable[Discrepancy],
        grace: Mapping[str, int],
        now: datetime,
    ) -> None:
        """Rule 3: set both gauges of every rule of ``partnership`` from ``found`` (the
        history after a run: resolved and explained discrepancies count for nothing)."""
        opened = dict.fromkeys(RULES, 0)
        late = dict.fromkeys(RULES, 0)
        for d in found:
            if d.status == "open":
                opened[d.rule] = opened.get(d.rule, 0) + 1
                late[d.rule] = late.get(d.rule, 0) + past_grace(d, grace, now)
        for rule, n in opened.items():
            self.open.labels(partnership, rule).set(n)
            self.past_grace.labels(partnership, rule).set(late[rule])


@dataclass
class Folded:
    """A partnership's folded state and what it covers: the encoded trust root it was
    folded under and the (size, root) of each log."""

    reconciler: Reconciler
    trust: bytes
    positions: dict[str, tuple[int, bytes]]


@dataclass
class ReconcileState:
    """A node's reconciliation state (see the module rules)."""

    metrics: ReconcileMetrics
    folded: dict[str, Folded] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    executor: ThreadPoolExecutor | None = None

    def lock(self, partnership: str) -> asyncio.Lock:
        lock = self.locks.get(partnership)
        if lock is None:
            lock = self.locks[partnership] = asyncio.Lock()
        return lock

    def worker(self) -> ThreadPoolExecutor:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jcm-reconcile")
        return self.executor

    def forget(self, partnership: str) -> None:
        """Drop a partnership's folded state: its next run folds from scratch."""
        self.folded.pop(partnership, None)

    def close(self) -> None:
        """Stop the worker thread once its current chunk is done; drop queued work. A
        later run starts a new one."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
