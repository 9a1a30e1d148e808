"""The Joint Committee's report of a partnership's last reconciliation, as plain values.

Why this module exists: the Joint Committee reads reconciliation in a spreadsheet or a
printed page, not in a terminal. ``jcm-sync reconcile report`` writes both (HTML:
``services.jc_report_html``, XLSX: ``services.jc_report_xlsx``) from one view built
here, so the two files always say the same thing and neither renderer interprets the
reconciliation model itself.

Rules:

1. **From the stored run only.** The view is read from what the node keeps
   (``services.reconciliation`` rule 3): the last report and the discrepancy history. It
   never reconciles, opens the store or reads a log, so it can be written beside a
   running daemon and describes exactly the run that ``reconcile status`` names. A
   partnership never reconciled on this node is refused (``NotReconciledError``). Of
   the report it decodes all but the findings (the history holds them) and the steps
   of its trails (``ReportHead``), which at volume are most of the file.
2. **Every finding ever found**, from the history: the open and explained ones of the
   last run and the resolved ones before it, each with both figures compared
   (``expected``/``found``) when its rule compares amounts, its records, the serial
   ranges it holds, the resolutions signed for it and its times (first seen, last seen,
   resolved at). Findings are ordered by stage (totals, blocks, article6, records), then
   open before explained before resolved, then rule and id.
3. **Held ranges** are the ranges of the findings that are open: what quarantine holds
   (``reconciliation`` rule 6). An explained or resolved finding holds nothing.
4. **Per stage**, the counts of findings by status and the figures the report has for
   that stage (stage 1: decisions and sides compared, balances; stage 2: blocks and
   serials, ranges traced; Article 6.2: actions and authorizations; records: none).
5. **Times are UTC**, as stored; renderers print them without a zone and say UTC in
   the heading, because a spreadsheet cell cannot hold a zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

import msgspec

from jcm_sync.core.reconcile.model import (
    RULES,
    STAGE_ORDER,
    Article6Stage,
    BalanceRow,
    BlocksStage,
    Discrepancy,
    LogPosition,
    Pending,
    Report,
    RunStatus,
    TotalsStage,
)
from jcm_sync.errors import NotReconciledError
from jcm_sync.services.reconciliation import read_report
from jcm_sync.services.run_history import History, RunRecord, read_history
from jcm_sync.store import Store

STAGE_TITLES: Final[dict[str, str]] = {
    "totals": "Stage 1, totals",
    "blocks": "Stage 2, serial blocks",
    "article6": "Article 6.2",
    "records": "Records",
}
"""How the report names each stage (rule 4), in ``STAGE_ORDER``."""

STATUSES: Final = ("open", "explained", "resolved")

SHORT_ID: Final = 12
"""Hex digits of a record id shown beside its kind and key (as ``RecordRef.describe``)."""


@dataclass(frozen=True)
class RecordRow:
    """A record a finding names."""

    finding: str
    kind: str
    key: str
    author: str
    record_id: str

    @property
    def short_id(self) -> str:
        return self.record_id[:SHORT_ID]


@dataclass(frozen=True)
class RangeRow:
    """A serial range a finding names; held while the finding is open (rule 3)."""

    finding: str
    rule: str
    registry: str
    first: str
    last: str
    quantity: int


@dataclass(frozen=True)
class ResolutionRow:
    """One side's signed resolution of a finding."""

    finding: str
    author: str
    action: str
    record_id: str
    text: str

    @property
    def short_id(self) -> str:
        return self.record_id[:SHORT_ID]


@dataclass(frozen=True)
class FindingRow:
    """A finding with everything the Joint Committee needs to judge it (rule 2)."""

    id: str
    rule: str
    rule_title: str
    stage: str
    status: str
    subject: str
    summary: str
    expected: int | None
    found: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    resolved_at: datetime | None
    records: tuple[RecordRow, ...]
    ranges: tuple[RangeRow, ...]
    resolutions: tuple[ResolutionRow, ...]

    @property
    def difference(self) -> int | None:
        if self.expected is None or self.found is None:
            return None
        return self.found - self.expected

    @property
    def held(self) -> bool:
        return self.status == "open" and bool(self.ranges)


@dataclass(frozen=True)
class PendingRow:
    """Something awaited, with its age and the day it becomes a finding."""

    what: str
    subject: str
    summary: str
    missing: tuple[str, ...]
    since: date | None
    age_days: int | None
    due: date | None
    records: tuple[str, ...]


@dataclass(frozen=True)
class StageRow:
    """A stage's counts of findings by status and its figures (rule 4)."""

    stage: str
    title: str
    open: int
    explained: int
    resolved: int
    figures: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return self.open + self.explained + self.resolved


@dataclass(frozen=True)
class AuthorizationRow:
    party: str
    authorization_id: str
    cap: int
    first_transferred: int
    remaining: int


@dataclass(frozen=True)
class RunRow:
    """One run of the partnership's history, oldest first."""

    started_at: datetime
    finished_at: datetime | None
    status: str
    incremental: bool
    open: int
    explained: int
    new: int
    resolved: int
    pending: int
    error: str


@dataclass(frozen=True)
class JcReport:
    """What ``reconcile report`` writes, whatever the format."""

    partnership: str
    node: str
    generated_at: datetime
    status: str
    logs: tuple[tuple[str, int, str], ...]
    stages: tuple[StageRow, ...]
    findings: tuple[FindingRow, ...]
    pending: tuple[PendingRow, ...]
    balances: tuple[BalanceRow, ...]
    authorizations: tuple[AuthorizationRow, ...]
    runs: tuple[RunRow, ...]

    @property
    def held(self) -> list[RangeRow]:
        """Rule 3: the ranges quarantine holds, by finding."""
        return [r for f in self.findings if f.status == "open" for r in f.ranges]

    @property
    def records(self) -> list[RecordRow]:
        return [r for f in self.findings for r in f.records]

    @property
    def resolutions(self) -> list[ResolutionRow]:
        return [r for f in self.findings for r in f.resolutions]

    def counts(self) -> dict[str, int]:
        """Findings by status, every status present."""
        return {s: sum(getattr(st, s) for st in self.stages) for s in STATUSES}


# --- reading the stored report (rule 1) -------------------------------------------------


class _Traced(msgspec.Struct):
    """A stage 3 trail, counted and not read: the view needs how many there are."""


class ReportHead(msgspec.Struct):
    """What the view reads of a stored ``Report``: all but its findings (the history has
    them) and its trails' steps. A report's trails can hold a step per record per
    traced range (hundreds of megabytes at volume); decoding them as empty structs
    skips them without building a value for each step."""

    partnership: str
    logs: tuple[LogPosition, ...]
    status: RunStatus
    totals: TotalsStage
    blocks: BlocksStage
    article6: Article6Stage
    trails: tuple[_Traced, ...] = ()
    pending: tuple[Pending, ...] = ()


async def read_report_head(store: Store, partnership: str) -> ReportHead | None:
    """The head of the last stored report (None if the partnership never ran)."""
    return await read_report(store, partnership, ReportHead)


# --- building the view ------------------------------------------------------------------


def utc(t: datetime | None) -> datetime | None:
    """Rule 5: a stored time as naive UTC (``None`` stays ``None``)."""
    if t is None:
        return None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _order(d: Discrepancy) -> tuple[int, int, str, str]:
    return STAGE_ORDER.get(d.stage, 99), STATUSES.index(d.status), d.rule, d.id


def _finding(d: Discrepancy) -> FindingRow:
    rule = RULES.get(d.rule)
    return FindingRow(
        id=d.id,
        rule=d.rule,
        rule_title=rule.title if rule else "",
        stage=d.stage,
        status=d.status,
        subject=d.subject,
        summary=d.summary,
        expected=d.expected,
        found=d.found,
        first_seen=utc(d.first_seen),
        last_seen=utc(d.last_seen),
        resolved_at=utc(d.resolved_at),
        records=tuple(RecordRow(d.id, r.kind, r.key, r.author, r.record_id) for r in d.records),
        ranges=tuple(
            RangeRow(d.id, d.rule, r.registry, r.start, r.end, r.quantity) for r in d.ranges
        ),
        resolutions=tuple(
            ResolutionRow(
                d.id,
                e.author,
                e.action,
                e.record_id,
                e.explanation if e.action == "explain" else ", ".join(e.corrections),
            )
            for e in d.explanations
        ),
    )


def _pending(p: Pending) -> PendingRow:
    return PendingRow(
        what=p.what,
        subject=p.subject,
        summary=p.summary,
        missing=p.missing,
        since=p.since,
        age_days=p.age_days,
        due=p.due,
        records=tuple(r.describe() for r in p.records),
    )


def _figures(report: Report | ReportHead) -> dict[str, tuple[tuple[str, int], ...]]:
    """Rule 4: what each stage compared, as (label, number) pairs."""
    t, b, a = report.totals, report.blocks, report.article6
    return {
        "totals": (
            ("effective decisions", t.decisions),
            ("sides compared (notified vs issued)", t.sides_compared),
            ("sides differing", t.sides_differing),
            ("balance rows", len(t.balances)),
        ),
        "blocks": (
            ("registries", len(b.registries)),
            ("blocks issued", b.issued_blocks),
            ("serials issued", b.issued_serials),
            ("blocks moved", b.moved_blocks),
            ("serials moved", b.moved_serials),
            ("ranges traced (stage 3)", len(report.trails)),
        ),
        "article6": (
            ("ITMO actions", a.actions),
            ("authorizations", len(a.authorizations)),
            ("authorizations over their cap", sum(r.remaining < 0 for r in a.authorizations)),
        ),
        "records": (),
    }


def _stages(report: Report | ReportHead, findings: Iterable[FindingRow]) -> tuple[StageRow, ...]:
    counts = {s: dict.fromkeys(STATUSES, 0) for s in STAGE_ORDER}
    for f in findings:
        counts.setdefault(f.stage, dict.fromkeys(STATUSES, 0))[f.status] += 1
    figures = _figures(report)
    return tuple(
        StageRow(
            stage=s,
            title=STAGE_TITLES.get(s, s),
            open=c["open"],
            explained=c["explained"],
            resolved=c["resolved"],
            figures=figures.get(s, ()),
        )
        for s, c in sorted(counts.items(), key=lambda kv: STAGE_ORDER.get(kv[0], 99))
    )


def _run(r: RunRecord) -> RunRow:
    return RunRow(
        started_at=utc(r.started_at) or r.started_at,
        finished_at=utc(r.finished_at),
        status=r.status,
        incremental=r.incremental,
        open=r.open,
        explained=r.explained,
        new=r.new,
        resolved=r.resolved,
        pending=r.pending,
        error=r.error or "",
    )


def build_view(
    report: Report | ReportHead, history: History, node: str, generated_at: datetime
) -> JcReport:
    """Rules 2-5: the view of a stored report and history, as of ``generated_at``."""
    found = sorted(history.discrepancies.values(), key=_order)
    findings = tuple(_finding(d) for d in found)
    t = report.totals
    return JcReport(
        partnership=report.partnership,
        node=node,
        generated_at=utc(generated_at) or generated_at,
        status=report.status,
        logs=tuple((lg.node, lg.size, lg.root) for lg in report.logs),
        stages=_stages(report, findings),
        findings=findings,
        pending=tuple(_pending(p) for p in report.pending),
        balances=t.balances,
        authorizations=tuple(
            AuthorizationRow(a.party, a.authorization_id, a.cap, a.first_transferred, a.remaining)
            for a in report.article6.authorizations
        ),
        runs=tuple(_run(r) for r in history.runs),
    )


async def load_view(store: Store, partnership: str, node: str, generated_at: datetime) -> JcReport:
    """Rule 1: the view of the last run stored in the node's store."""
    report = await read_report_head(store, partnership)
    if report is None:
        raise NotReconciledError(
            f"{partnership} has never been reconciled on this node: there is no run to report"
        )
    return build_view(report, await read_history(store, partnership), node, generated_at)
