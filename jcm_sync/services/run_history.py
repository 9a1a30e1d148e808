"""A partnership's reconciliation history in the store: what was found, and every run.

Why this module exists: the history was one node-state value, read when a run started
and replaced when it ended. Two processes finishing runs of one partnership at once (the
daemon and a manual ``jcm-sync reconcile``; two hub processes on one PostgreSQL, ADR
0042) each wrote the history they had read plus their own run, so the later write
dropped the other's run record: its report stayed in the store but the evidence export
(issue 14) and the console never named it. A run record is now its own state key,
written only by its run, so no write can drop another run's (ADR 0047, amendment).

Rules (``services.reconciliation`` rule 3 says what the history means):

1. **One key per run.** A run claims its number when it starts (``reconcile_state``
   rule 6) and keeps its record under ``reconcile/<partnership>/records/<SEQ>``
   (``RunRecord.seq``): written ``initiated`` when it starts, replaced with the error if
   it fails or with its final status when it ends. Only that run writes that key.
2. **The value** ``reconcile/<partnership>/history`` holds the discrepancies (replaced by
   each finishing run, merged against the value read just before) and, as a cache, the
   records of runs that were *settled* (finished, or failed with their error) when it
   was written: a settled record never changes, so a cached copy is as good as its key.
3. **Reading** (``read_history``) lists the record keys: a run whose key is listed is
   taken from the cache when settled there, else read from its key (a run still going,
   or one a concurrent write did not see); a cached record whose key is gone was pruned
   and is dropped. Records without ``seq`` are from before this rule (a store written
   by an older version): they come first, as stored, unless a keyed record has their
   report number (the same run, re-encoded by an older process).
4. **Pruning.** A finishing run keeps the newest ``[reconcile] keep_runs`` records (the
   older ones first, then by run number), writes the value with those, then deletes the
   keys of the others. A reader never gets more than ``keep_runs`` plus the runs that
   finished at the same moment.
5. ``runs=False`` reads the discrepancies only (``runs`` empty): what the own-log
   quarantine check, metrics and discrepancy look-ups need, with no key listed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from jcm_sync.core.reconcile import Discrepancy, Report
from jcm_sync.core.reconcile.model import LogPosition, RunStatus
from jcm_sync.errors import StoreError
from jcm_sync.services.reconcile_state import KEEP_RUNS, keep_run_report, next_run_seq, seq_of
from jcm_sync.store import Store

__all__ = [
    "History",
    "RunRecord",
    "begin_run",
    "count_statuses",
    "decode_history",
    "encode_history",
    "end_run",
    "finish_history",
    "history_key",
    "merge_history",
    "put_record",
    "read_history",
    "record_key",
    "records_prefix",
    "report_key",
    "write_history",
]

Cpu = Callable[..., Awaitable[Any]]


class RunRecord(msgspec.Struct):
    """One run: when, at which checkpoints, how it ended, what it found."""

    started_at: datetime
    status: RunStatus = "initiated"
    finished_at: datetime | None = None
    logs: tuple[LogPosition, ...] = ()
    incremental: bool = False
    open: int = 0
    explained: int = 0
    new: int = 0
    resolved: int = 0
    pending: int = 0
    error: str | None = None
    report_seq: int | None = None  # its report's run number (reconcile_state rule 5)
    seq: int | None = None  # rule 1: its run number and key; None: from an older store

    @property
    def settled(self) -> bool:
        """Rule 2: finished, or failed with its error: the record will not change."""
        return self.finished_at is not None or self.error is not None


class History(msgspec.Struct):
    """What a node remembers of a partnership's reconciliation."""

    partnership: str
    runs: list[RunRecord] = msgspec.field(default_factory=list)
    discrepancies: dict[str, Discrepancy] = msgspec.field(default_factory=dict)

    def open(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies.values() if d.status == "open"]

    def counts(self) -> dict[str, int]:
        """How many discrepancies are open, explained and resolved."""
        return count_statuses(self.discrepancies.values())

    @property
    def last_run(self) -> RunRecord | None:
        return self.runs[-1] if self.runs else None


def count_statuses(found: Iterable[Discrepancy]) -> dict[str, int]:
    """Discrepancies by status: open, explained, resolved (every key present)."""
    counts = dict.fromkeys(("open", "explained", "resolved"), 0)
    for d in found:
        counts[d.status] += 1
    return counts


def history_key(partnership: str) -> str:
    """Rule 2: the state key of a partnership's history value."""
    return f"reconcile/{partnership}/history"


def report_key(partnership: str) -> str:
    """The state key of a partnership's last report."""
    return f"reconcile/{partnership}/report"


def records_prefix(partnership: str) -> str:
    """Rule 1: the state keys of a partnership's run records start with this."""
    return f"reconcile/{partnership}/records/"


def record_key(partnership: str, seq: int) -> str:
    """Rule 1: the state key of run ``seq``'s record."""
    return f"{records_prefix(partnership)}{seq:012d}"


def decode_history(data: bytes | None, partnership: str) -> History:
    """A stored history value (None: a fresh one); ``StoreError`` if it is not one."""
    if data is None:
        return History(partnership=partnership)
    try:
        return msgspec.json.decode(data, type=History)
    except msgspec.MsgspecError as exc:  # the decoder's text is in the message
        raise StoreError(
            f"{history_key(partnership)} is not a reconciliation history: {exc}"
        ) from None


def _decode_record(data: bytes, key: str) -> RunRecord:
    try:
        return msgspec.json.decode(data, type=RunRecord)
    except msgspec.MsgspecError as exc:
        raise StoreError(f"{key} is not a reconciliation run record: {exc}") from None


def encode_history(history: History, keep: int = KEEP_RUNS) -> bytes:
    """The history value to store, its runs cut to the last ``keep``."""
    history.runs = history.runs[-keep:]
    return msgspec.json.encode(history)


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def read_history(
    store: Store, partnership: str, *, runs: bool = True, cpu: Cpu = _inline
) -> History:
    """Rules 3 and 5: the history with every kept run (or none, ``runs=False``);
    ``cpu`` runs the decoding (the reconciliation thread, or here)."""
    stored = await store.get_state(history_key(partnership))
    history: History = await cpu(decode_history, stored, partnership)
    if not runs:
        history.runs = []
        return history
    keys = await store.state_keys(records_prefix(partnership))
    listed = sorted(n for k in keys if (n := seq_of(k)) is not None)
    cached = {r.seq: r for r in history.runs if r.seq is not None and r.settled}
    fetched: dict[int, bytes] = {}
    for seq in listed:
        if seq not in cached and (data := await store.get_state(record_key(partnership, seq))):
            fetched[seq] = data
    return await cpu(_assemble, history, listed, cached, fetched)  # type: ignore[no-any-return]


def _assemble(
    history: History,
    listed: list[int],
    cached: Mapping[int, RunRecord],
    fetched: Mapping[int, bytes],
) -> History:
    """Rule 3: the older records, then each listed run's, by number."""
    keyed: list[RunRecord] = []
    for seq in listed:
        if seq in cached:
            keyed.append(cached[seq])
        elif seq in fetched:
            keyed.append(_decode_record(fetched[seq], record_key(history.partnership, seq)))
    numbers = {r.seq for r in keyed}
    older = [r for r in history.runs if r.seq is None and r.report_seq not in numbers]
    history.runs = older + keyed
    return history


async def write_history(store: Store, history: History) -> None:
    """Replace the history value as given (tests, tools): the keyed records stay."""
    await store.put_state(history_key(history.partnership), encode_history(history))


async def put_record(store: Store, partnership: str, run: RunRecord) -> None:
    """Rule 1: store run ``run.seq``'s record (only that run calls this)."""
    assert run.seq is not None, "a run claims its number before it is recorded"
    await store.put_state(record_key(partnership, run.seq), msgspec.json.encode(run))


def merge_history(history: History, report: Report, now: datetime) -> tuple[int, int]:
    """Fold a report into the history's discrepancies; return (new, resolved) counts."""
    new = resolved = 0
    seen = {d.id for d in report.discrepancies}
    for d in report.discrepancies:
        prev = history.discrepancies.get(d.id)
        first = prev.first_seen if prev is not None and prev.first_seen else None
        if first is None:
            new += 1
        history.discrepancies[d.id] = msgspec.structs.replace(
            d, first_seen=first or now, last_seen=now, resolved_at=None
        )
    for did, prev in list(history.discrepancies.items()):
        if did not in seen and prev.status != "resolved":
            resolved += 1
            history.discrepancies[did] = msgspec.structs.replace(
                prev, status="resolved", resolved_at=now
            )
    return new, resolved


def finish_history(
    history: History, run: RunRecord, report: Report, now: datetime, keep: int = KEEP_RUNS
) -> tuple[bytes, bytes, list[int]]:
    """Rules 2 and 4 for a run ending: fold the report into ``history`` (as just read),
    set the run's final fields and put it in its place; the report and history value to
    store and the run numbers whose records to delete."""
    run.new, run.resolved = merge_history(history, report, now)
    run.status, run.finished_at, run.logs = report.status, now, report.logs
    run.open = sum(1 for d in report.discrepancies if d.status == "open")
    run.explained = sum(1 for d in report.discrepancies if d.status == "explained")
    run.pending = len(report.pending)
    older = [r for r in history.runs if r.seq is None]
    keyed = {r.seq: r for r in history.runs if r.seq is not None}
    assert run.seq is not None, "a run claims its number before it is recorded"
    keyed[run.seq] = run
    every = older + [keyed[n] for n in sorted(keyed)]
    kept = every[-keep:] if keep > 0 else []
    gone = [r.seq for r in every[: len(every) - len(kept)] if r.seq is not None]
    history.runs = kept
    value = History(
        partnership=history.partnership,
        runs=[r for r in kept if r.seq is None or r.settled],
        discrepancies=history.discrepancies,
    )
    return msgspec.json.encode(report), msgspec.json.encode(value), gone


async def begin_run(store: Store, partnership: str, started: datetime) -> RunRecord:
    """Rule 1: claim the run's number and record it ``initiated``."""
    run = RunRecord(started_at=started, seq=await next_run_seq(store, partnership))
    await put_record(store, partnership, run)
    return run


async def end_run(
    store: Store,
    partnership: str,
    run: RunRecord,
    report: Report,
    now: datetime,
    keep: int = KEEP_RUNS,
    cpu: Cpu = _inline,
) -> History:
    """Rules 1, 2 and 4 for a run that produced ``report``: the history read now, the
    report folded in; the last report, the run's report, its record, the history value
    stored in that order, then the pruned records deleted. The history after it."""
    assert run.seq is not None, "a run claims its number before it is recorded"
    run.report_seq = run.seq
    history = await read_history(store, partnership, cpu=cpu)
    report_data, value, gone = await cpu(finish_history, history, run, report, now, keep)
    await store.put_state(report_key(partnership), report_data)
    await keep_run_report(store, partnership, run.seq, report_data, keep)
    await put_record(store, partnership, run)
    await store.put_state(history_key(partnership), value)
    for seq in gone:
        await store.delete_state(record_key(partnership, seq))
    return history
