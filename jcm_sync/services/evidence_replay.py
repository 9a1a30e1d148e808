"""Replaying an evidence bundle's reconciliation runs, each on its own snapshot.

Why this module exists: a bundle (``services.evidence``) states what each reconciliation
run found. A reviewer must not take that on trust: the runs are replayed with the pure
core on the entries of the bundle, and every run's recorded outcome (its status and
counts, and its full report where the bundle holds it) must come out the same.
``services.evidence_verify`` checks the rest of the bundle and calls ``replay_runs``;
the replay is its own module because it is its own responsibility (and that one is
long enough).

Rules (docs/adr/0034-evidence-bundles-and-offline-receipts.md, decision 5 and its
amendment):

1. The runs are replayed in order with one ``Reconciler`` folding each suffix, rebuilt
   when a snapshot does not extend the last (as the node does), each judged on the UTC
   day it finished with the bundle's grace periods.
2. A run's snapshot must be of both logs, within the bundle's entries, at roots rebuilt
   from them and at sizes of checkpoints the bundle holds and that verified.
3. A run's status and open, explained and pending counts must come out the same.
4. **Per-run reports.** A run that names its report (``report_seq``) must have it in the
   bundle (``reconciliation/runs/<SEQ>.json``), and every finding id, status and detail,
   the status and the pending count must come out the same; each difference is reported
   under that run. A report file no run names is a difference too.
5. The last report (``reconciliation/report.json``), when no run with its snapshot was
   replayed, is replayed on its own snapshot at the export time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

import msgspec

from jcm_sync.core.reconcile import Reconciler, Report, iter_stored, signer_nodes
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import JcmSyncError
from jcm_sync.services.evidence import (
    REPORT,
    RUN_REPORTS,
    RUNS,
    Manifest,
    decode_runs,
    run_report_path,
)
from jcm_sync.services.run_history import RunRecord

__all__ = ["Findings", "ReplayLog", "replay_runs"]

AREA = "reconciliation"


class ReplayLog(Protocol):
    """What the replay reads of a log rebuilt from the bundle."""

    @property
    def envelopes(self) -> list[bytes]: ...
    @property
    def roots(self) -> list[bytes]: ...  # roots[n]: the root of the first n entries
    @property
    def checkpoints(self) -> set[int]: ...  # sizes of the checkpoints that verified


class Findings(Protocol):
    """Where the replay reports what it checked and every difference it found."""

    def add(self, area: str, subject: str, detail: str) -> None: ...
    def count(self, what: str, n: int = 1) -> None: ...


def _read_report(directory: Path, rel: str, check: Findings) -> Report | None:
    try:
        return msgspec.json.decode((directory / rel).read_bytes(), type=Report)
    except msgspec.MsgspecError as exc:
        check.add(AREA, rel, f"is not a reconciliation report: {exc}")
    except OSError as exc:
        check.add(AREA, rel, f"cannot be read: {exc.strerror or exc}")
    return None


def replay_runs(
    directory: Path,
    manifest: Manifest,
    logs: Mapping[str, ReplayLog],
    root: TrustRoot,
    check: Findings,
) -> None:
    """Rules 1-5: replay every run, its report, and the recorded last report."""
    runs: list[RunRecord] = []
    if RUNS in manifest.files and (directory / RUNS).is_file():
        try:
            runs = decode_runs((directory / RUNS).read_bytes())
        except JcmSyncError as exc:
            check.add(AREA, RUNS, exc.diagnostics())
    report: Report | None = None
    if REPORT in manifest.files and (directory / REPORT).is_file():
        report = _read_report(directory, REPORT, check)
    named = {run_report_path(r.report_seq) for r in runs if r.report_seq is not None}
    for rel in sorted(r for r in manifest.files if r.startswith(RUN_REPORTS)):
        if rel not in named:
            check.add(AREA, rel, "is a run report that no run of runs.json names")
    replay = _Replay(root, logs, manifest.grace)
    matched = False
    for n, run in enumerate(runs, 1):
        if not run.logs:
            continue  # a run that never took a snapshot (it failed first)
        where = f"run {n} ({run.started_at.isoformat()})"
        got = _replay_run(replay, run, where, logs, check)
        if got is None:
            continue
        if run.report_seq is not None:
            rel = run_report_path(run.report_seq)
            if rel not in manifest.files or not (directory / rel).is_file():
                check.add(AREA, where, f"its report ({rel}) is not in the bundle")
            elif (recorded := _read_report(directory, rel, check)) is not None:
                if tuple(recorded.logs) != tuple(run.logs):
                    check.add(AREA, where, f"its report ({rel}) is of another snapshot")
                else:
                    _compare_report(recorded, got, check, where)
                    check.count("run reports compared")
        if report is not None and tuple(report.logs) == tuple(run.logs):
            matched = True
            _compare_report(report, got, check, REPORT)
            check.count("reports compared")
    if report is not None and not matched:
        positions = {p.node: (p.size, p.root) for p in report.logs}
        bad = replay.check_positions(positions)
        if bad:
            check.add(AREA, REPORT, bad)
            return
        try:
            got = replay.report(positions, manifest.exported_at)
        except JcmSyncError as exc:
            check.add(AREA, REPORT, f"cannot be replayed: {exc.diagnostics()}")
            return
        _compare_report(report, got, check, REPORT)
        check.count("reports compared")


def _replay_run(
    replay: _Replay,
    run: RunRecord,
    where: str,
    logs: Mapping[str, ReplayLog],
    check: Findings,
) -> Report | None:
    """Rules 2 and 3 for one run; its replayed report (None if it cannot be replayed)."""
    positions = {p.node: (p.size, p.root) for p in run.logs}
    bad = replay.check_positions(positions)
    if bad:
        check.add(AREA, where, bad)
        return None
    for node, (size, _) in sorted(positions.items()):
        if size and size not in logs[node].checkpoints:
            check.add(AREA, where, f"ran on {node}'s log at size {size}, and the bundle "
                      "holds no valid checkpoint of that size")  # fmt: skip
    try:
        got = replay.report(positions, run.finished_at or run.started_at)
    except JcmSyncError as exc:
        check.add(AREA, where, f"cannot be replayed: {exc.diagnostics()}")
        replay.reset()
        return None
    counts = _counts(got)
    recorded = {"status": run.status, "open": run.open, "explained": run.explained,
                "pending": run.pending}  # fmt: skip
    for key, value in recorded.items():
        if counts[key] != value:
            check.add(AREA, where, f"{key}: recorded {value}, the replay gives {counts[key]}")
    check.count("runs replayed")
    return got


def _counts(report: Report) -> dict[str, object]:
    return {
        "status": report.status,
        "open": sum(1 for d in report.discrepancies if d.status == "open"),
        "explained": sum(1 for d in report.discrepancies if d.status == "explained"),
        "pending": len(report.pending),
    }


def _compare_report(recorded: Report, got: Report, check: Findings, where: str) -> None:
    """Rule 4: every finding id, status and detail, the status and the pending count;
    each difference under ``where`` (a run, or ``report.json``)."""
    if recorded.status != got.status:
        check.add(AREA, where, f"status: recorded {recorded.status}, the replay gives {got.status}")
    mine = {d.id: d for d in recorded.discrepancies}
    theirs = {d.id: d for d in got.discrepancies}
    for did in sorted(mine.keys() - theirs.keys()):
        check.add(AREA, where, f"finding {did}: is in the recorded report ({mine[did].rule}: "
                  f"{mine[did].summary}) but the replay does not find it")  # fmt: skip
    for did in sorted(theirs.keys() - mine.keys()):
        check.add(AREA, where, f"finding {did}: the replay finds it ({theirs[did].rule}: "
                  f"{theirs[did].summary}) but the recorded report does not hold it")  # fmt: skip
    for did in sorted(mine.keys() & theirs.keys()):
        a, b = mine[did], theirs[did]
        if a.status != b.status:
            check.add(AREA, where, f"finding {did}: status: recorded {a.status}, replay {b.status}")
        elif a != b:
            check.add(AREA, where, f"finding {did}: differs from the replay's in its details")
    if len(recorded.pending) != len(got.pending):
        check.add(AREA, where, f"pending: recorded {len(recorded.pending)}, the replay gives "
                  f"{len(got.pending)}")  # fmt: skip


class _Replay:
    """Rule 1's fold: one ``Reconciler`` extended run by run, rebuilt when it cannot be."""

    def __init__(
        self, root: TrustRoot, logs: Mapping[str, ReplayLog], grace: dict[str, int]
    ) -> None:
        self.root, self.logs, self.grace = root, logs, grace
        self.keys = signer_nodes(root)
        self.reconciler = Reconciler(root)
        self.at: dict[str, int] = dict.fromkeys(logs, 0)

    def reset(self) -> None:
        self.reconciler, self.at = Reconciler(self.root), dict.fromkeys(self.logs, 0)

    def check_positions(self, positions: dict[str, tuple[int, str]]) -> str | None:
        if set(positions) != set(self.logs):
            return f"snapshot of {', '.join(sorted(positions))}, not of both logs"
        for node, (size, root) in positions.items():
            log = self.logs[node]
            if size > len(log.envelopes):
                return f"{node} size {size} is past the bundle's entries"
            if log.roots[size].hex() != root:
                return f"{node} root at size {size} is not the root rebuilt from the entries"
        return None

    def report(self, positions: dict[str, tuple[int, str]], at: datetime) -> Report:
        if any(positions[n][0] < self.at[n] for n in self.logs):
            self.reset()
        for node, (size, _) in positions.items():
            start = self.at[node]
            if size > start:
                envelopes = self.logs[node].envelopes[start:size]
                self.reconciler.apply(
                    node, iter_stored(self.root, envelopes, nodes=self.keys), start=start
                )
                self.at[node] = size
        return self.reconciler.report(at, grace=self.grace)
