"""The values reconciliation takes and gives: snapshots, findings, reports.

Why this module exists: both sides of a partnership must compute, store, print and compare
the same report, so its shape is fixed here once, as frozen msgspec Structs that encode the
same way everywhere (``--json``, the service's state file, tests comparing two runs).

Rules:

1. A report is a function of the snapshot and of the day it is judged on only: no field
   holds the time of the run, the host or anything else that differs between two runs on
   the same checkpoints on the same UTC day. The day (``as_of``, from the ``now`` passed to
   ``Reconciler.report``) and the grace period decide only whether a partly issued
   decision is still ``Pending`` and for how long it has been (ADR 0011). Times
   (``first_seen``, ``resolved_at``) exist on ``Discrepancy`` but only the service fills
   them, from its own history.
2. A discrepancy's id is the hash of its rule and the natural keys of what it is about
   (``discrepancy_id``), never of the run, the record ids or the amounts: the same finding
   has the same id on every run and on both sides, so each side can sign a ``resolution``
   naming it and the other side recognises it.
3. Serial ranges are kept as (registry, prefix, first, last): a range of the unit numbers
   of ``records.serial_parts``, which is what overlap, holding and quarantine compare.
   ``width`` only serves to print the registry's own serial strings back. A finding's
   ``ranges`` are the serials it holds (quarantine, stage 3 trails): those in doubt, no
   more; the records it names beside them are its ``records``.
4. Every rule is listed once in ``RULES`` with its stage and the run status it implies
   (``level``), so the report, the CLI, the metrics and the docs name rules the same way.
5. A rule that judges something awaited has a grace period in days, a default per rule in
   ``GRACE_DEFAULTS``: while it lasts the thing is ``Pending`` with its age and the day it
   is ``due``; from that day on it is that rule's finding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

import msgspec

Stage = Literal["totals", "blocks", "article6", "records"]
Level = Literal["totals", "blocks"]
Status = Literal["open", "explained", "resolved"]
RunStatus = Literal[
    "initiated",
    "totals_inconsistent",
    "blocks_inconsistent",
    "completed",
    "completed_with_manual_intervention",
]

RUN_STATUSES: Final[tuple[RunStatus, ...]] = (
    "initiated",
    "totals_inconsistent",
    "blocks_inconsistent",
    "completed",
    "completed_with_manual_intervention",
)
"""Run statuses, as in the Kyoto DES reconciliation (see ``run_status``)."""

STAGE_ORDER: Final[dict[str, int]] = {"totals": 1, "blocks": 2, "article6": 3, "records": 4}

DEFAULT_ISSUANCE_GRACE_DAYS: Final = 90
"""Days after a decision's ``decided_on`` during which a side that issued part of its
notified amount is pending rather than ``issued-vs-notified`` (ADR 0011; configured as
``[reconcile.grace] issued-vs-notified``, or its older name ``[reconcile]
issuance_grace_days``)."""

GRACE_DEFAULTS: Final[dict[str, int]] = {
    "issued-vs-notified": DEFAULT_ISSUANCE_GRACE_DAYS,
    "a6-first-transfer-mirror": 90,
    "a6-no-first-transfer": 90,
}
"""Rule 5: the rules that judge something awaited, and the days it may stay pending
(docs/reconciliation-rules.md, "Pending and grace periods"). Japan's issuance and the
partner's first transfer of it are one event recorded by two registries, as are a first
transfer and Japan's acquisition or use of those ITMOs: each side records it on its own
schedule, so the lag allowed is the same as between a decision and its issuances.
Read-only: a node's ``[reconcile.grace]`` table overrides entries per rule."""


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: its name (the ``rule`` of a finding), stage, run-status level and meaning."""

    name: str
    stage: Stage
    level: Level
    title: str


_RULE_LIST: Final = (
    # stage 1: totals
    Rule("issued-vs-notified", "totals", "totals",
         "a side issued another amount than the effective decision notified to it"),
    Rule("allocation-vs-issued", "totals", "totals",
         "a side issued its notified total, but not split among account types as allocated"),
    Rule("balance-overdrawn", "totals", "totals",
         "a transaction without serial blocks moves more than its source account holds"),
    # stage 2: serial blocks
    Rule("issuance-before-decision-effective", "blocks", "blocks",
         "credits issued under a decision that lacks a secretariat's signature"),
    Rule("untraceable-issuance", "blocks", "blocks",
         "credits issued under a decision that is in neither log"),
    Rule("overlapping-blocks", "blocks", "blocks",
         "an issued block overlaps part of a block issued before in the same registry"),
    Rule("double-issuance", "blocks", "blocks",
         "the same block of credits issued twice in the same registry"),
    Rule("vintage-outside-period", "blocks", "blocks",
         "an issued block's vintage is not a calendar year of its monitoring period"),
    Rule("transaction-block-not-issued", "blocks", "blocks",
         "a transaction moves serials its registry never issued"),
    Rule("transaction-not-held", "blocks", "blocks",
         "a transaction moves serials its source account does not hold"),
    Rule("transaction-vintage-mismatch", "blocks", "blocks",
         "a transaction's block states another vintage than its serials were issued with"),
    Rule("transaction-before-issuance", "blocks", "blocks",
         "a transaction is dated before the issuance of serials it moves"),
    Rule("transaction-of-retired-units", "blocks", "blocks",
         "a transaction moves credits out of a retirement or cancellation account"),
    # Article 6.2
    Rule("a6-authorization-unknown", "article6", "blocks",
         "an ITMO action names an authorization in neither log, or a first transfer one "
         "of another Party"),
    Rule("a6-out-of-scope", "article6", "blocks",
         "a first transfer outside its authorization's projects, vintages or purposes"),
    Rule("a6-cap-exceeded", "article6", "totals",
         "first transfers under an authorization exceed its cap"),
    Rule("a6-first-transfer-mirror", "article6", "totals",
         "the partner's first transfers differ from Japan's issuance in authorized scope"),
    Rule("a6-use-mirror", "article6", "blocks",
         "an ITMO use or cancellation and the registry's retirement or cancellation differ"),
    Rule("a6-authorization-withdrawn", "article6", "blocks",
         "a first transfer dated on or after its Party withdrew the authorization"),
    Rule("a6-before-authorization", "article6", "blocks",
         "a first transfer dated before its authorization"),
    Rule("a6-no-first-transfer", "article6", "totals",
         "ITMOs acquired, transferred onward or used beyond what the partner first "
         "transferred, past the grace period"),
    Rule("a6-use-before-first-transfer", "article6", "blocks",
         "an ITMO acquisition, onward transfer or use dated before the first transfer of "
         "its ITMOs"),
    Rule("a6-serials-not-issued", "article6", "blocks",
         "an ITMO action names serials its Party's registry never issued"),
    # records
    Rule("conflicting-versions", "records", "blocks",
         "two different versions of one record, neither superseding the other"),
    Rule("invalid-supersession", "records", "blocks",
         "a record claims to supersede a record its author may not replace"),
    # records: dependencies and chronology (rules_dependencies)
    Rule("project-not-registered", "records", "blocks",
         "a decision or issuance under a project not registered on its day"),
    Rule("methodology-not-valid", "records", "blocks",
         "a project registered under a methodology not valid on its registration day"),
    Rule("decision-before-period-end", "records", "blocks",
         "a decision taken before its monitoring period ended"),
    Rule("issuance-before-decision", "records", "blocks",
         "credits issued before the day their decision was taken"),
)  # fmt: skip

RULES: Final[dict[str, Rule]] = {r.name: r for r in _RULE_LIST}


def discrepancy_id(rule: str, keys: Iterable[str]) -> str:
    """Rule 2: a stable id from the rule and the natural keys of the finding's subject.

    16 hex digits (64 bits): short enough to type in ``jcm-sync reconcile show``, and a
    partnership holds far fewer than the 2^32 findings at which collisions would matter.
    """
    text = "\x1f".join([rule, *keys])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- findings ---------------------------------------------------------------------------


class SerialRange(msgspec.Struct, frozen=True, order=True, gc=False):
    """Rule 3: unit numbers ``first``..``last`` (inclusive) of ``prefix`` in ``registry``.

    Not tracked by the garbage collector: it holds only strings and ints."""

    registry: str
    prefix: str
    first: int
    last: int
    width: int = 0

    @property
    def quantity(self) -> int:
        return self.last - self.first + 1

    @property
    def start(self) -> str:
        return f"{self.prefix}{self.first:0{self.width}d}"

    @property
    def end(self) -> str:
        return f"{self.prefix}{self.last:0{self.width}d}"

    def overlaps(self, other: SerialRange) -> bool:
        return (
            self.registry == other.registry
            and self.prefix == other.prefix
            and self.first <= other.last
            and other.first <= self.last
        )

    def describe(self) -> str:
        if self.first == self.last:
            return f"{self.registry}:{self.start} (1)"
        return f"{self.registry}:{self.start}..{self.end} ({self.quantity})"


def merge_ranges(ranges: Iterable[SerialRange]) -> tuple[SerialRange, ...]:
    """Sorted ranges with overlapping and adjacent ones of one prefix joined: a finding
    names ``1..10``, not ``1..5`` and ``6..10`` because two records issued them."""
    out: list[SerialRange] = []
    for r in sorted(ranges):
        prev = out[-1] if out else None
        if (
            prev is not None
            and (prev.registry, prev.prefix) == (r.registry, r.prefix)
            and r.first <= prev.last + 1
        ):
            if r.last > prev.last:
                out[-1] = SerialRange(prev.registry, prev.prefix, prev.first, r.last, prev.width)
        else:
            out.append(r)
    return tuple(out)


class RecordRef(msgspec.Struct, frozen=True, order=True, gc=False):
    """A record named both ways: by id (the envelope hash) and by kind and natural key.

    Not tracked by the garbage collector (it holds only strings): a large partnership
    has one per record."""

    kind: str
    key: str
    record_id: str
    author: str

    def describe(self) -> str:
        return f"{self.kind} {self.key} ({self.record_id[:12]})"


class Explanation(msgspec.Struct, frozen=True):
    """One side's signed ``resolution`` of a finding."""

    author: str
    action: Literal["explain", "correct"]
    record_id: str
    explanation: str = ""
    corrections: tuple[str, ...] = ()


class Discrepancy(msgspec.Struct, frozen=True):
    """A finding: what rule failed, about which records and serials, and its status.

    ``expected``/``found`` are the two figures compared when the rule compares amounts.
    ``ranges`` are the serials it holds while open (module rule 3), which may be fewer than
    its ``records`` issued or moved: its summary says which it holds and why.
    ``status`` is ``open`` or ``explained`` in a report; the service turns a finding a later
    snapshot no longer produces into ``resolved`` and fills the times (module rule 1).
    """

    id: str
    rule: str
    stage: Stage
    subject: str
    summary: str
    records: tuple[RecordRef, ...] = ()
    ranges: tuple[SerialRange, ...] = ()
    expected: int | None = None
    found: int | None = None
    status: Status = "open"
    explanations: tuple[Explanation, ...] = ()
    corrections: tuple[str, ...] = ()
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def difference(self) -> int | None:
        if self.expected is None or self.found is None:
            return None
        return self.found - self.expected

    @property
    def level(self) -> Level:
        return RULES[self.rule].level


class Pending(msgspec.Struct, frozen=True):
    """Something awaited, not wrong: a JC record missing a signature, an issuance not yet made.

    Pending items are not discrepancies: a decision that lacks a secretariat's signature is
    simply not effective yet (DESIGN §2). They turn into findings only when something acts
    on them too early (``issuance-before-decision-effective``), or, for an issuance made in
    part, when the grace period passes (``issued-vs-notified``, ADR 0011).

    For an awaited issuance, ``since`` is the decision's signed ``decided_on``, ``age_days``
    the whole days from it to the day the report was judged on (none when the report was
    made without a ``now``), and ``due`` the day a partly made issuance becomes a
    discrepancy (none when nothing was issued: that stays pending, ADR 0008).

    For an awaited first transfer (``first_transfer``: Japan issued credits of a (project,
    vintage) within the partner's authorization, and the partner first transferred fewer
    or none), ``since`` is Japan's issuance date of the first credits not yet first
    transferred; for ITMOs acted on before any first transfer of them
    (``unbacked_itmos``: acquired, transferred onward or used beyond the first
    transfers), the date of the action that went beyond them. Either becomes its rule's
    finding on ``due`` (rule 5); without a ``now`` neither has an age or a due day.
    """

    what: Literal["signature", "issuance", "first_transfer", "unbacked_itmos"]
    subject: str
    summary: str
    records: tuple[RecordRef, ...] = ()
    missing: tuple[str, ...] = ()
    since: date | None = None
    age_days: int | None = None
    due: date | None = None


# --- the report -------------------------------------------------------------------------


class LogPosition(msgspec.Struct, frozen=True):
    """The checkpoint a log was reconciled at: its node, size and root (hex)."""

    node: str
    size: int
    root: str


class BalanceRow(msgspec.Struct, frozen=True):
    """Stage 1 holdings of one account type in one registry, by amounts and by serials.

    ``held = issued + moved_in - moved_out - cancelled - retired`` by the amounts the
    records state; ``held_serials`` counts the serials the block-level fold has in
    accounts of this type. They differ only where transactions carry no blocks or a block
    could not be moved (a stage 2 finding says which).
    """

    registry: str
    account_type: str
    issued: int = 0
    moved_in: int = 0
    moved_out: int = 0
    cancelled: int = 0
    retired: int = 0
    held: int = 0
    held_serials: int = 0


class TotalsStage(msgspec.Struct, frozen=True):
    """What stage 1 compared: effective decisions × sides, and the balances per account type."""

    decisions: int = 0
    sides_compared: int = 0
    sides_differing: int = 0
    balances: tuple[BalanceRow, ...] = ()


class BlocksStage(msgspec.Struct, frozen=True):
    """What stage 2 checked: issued and moved blocks and serials, per registry."""

    registries: tuple[str, ...] = ()
    issued_blocks: int = 0
    issued_serials: int = 0
    moved_blocks: int = 0
    moved_serials: int = 0


class TrailStep(msgspec.Struct, frozen=True):
    """One record that touched a traced range: issued it or moved part of it."""

    record: RecordRef
    action: str
    range: SerialRange
    source: str = ""
    destination: str = ""
    on: str = ""


class Trail(msgspec.Struct, frozen=True):
    """Stage 3: the records that touched a range a finding names, in log order."""

    discrepancy_id: str
    range: SerialRange
    steps: tuple[TrailStep, ...] = ()


class AuthorizationRow(msgspec.Struct, frozen=True):
    """An authorization's cap against what was first transferred under it."""

    party: str
    authorization_id: str
    cap: int
    first_transferred: int

    @property
    def remaining(self) -> int:
        return self.cap - self.first_transferred


class Article6Stage(msgspec.Struct, frozen=True):
    authorizations: tuple[AuthorizationRow, ...] = ()
    actions: int = 0


class Report(msgspec.Struct, frozen=True):
    """The result of reconciling one snapshot (module rule 1: a function of it only)."""

    partnership: str
    logs: tuple[LogPosition, ...]
    status: RunStatus
    totals: TotalsStage
    blocks: BlocksStage
    article6: Article6Stage
    trails: tuple[Trail, ...] = ()
    pending: tuple[Pending, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = ()

    @property
    def open(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.status == "open"]

    def by_stage(self, stage: str) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.stage == stage]


def run_status(discrepancies: Iterable[Discrepancy]) -> RunStatus:
    """The status a finished run ends in, as the Kyoto DES reconciliation names them.

    * ``totals_inconsistent``: at least one OPEN finding of a totals-level rule (stage 1,
      or an Article 6.2 amount check: cap, first-transfer mirror);
    * ``blocks_inconsistent``: no open totals-level finding, but at least one open finding
      of a block-level rule (stage 2, Article 6.2 scope and use checks, record versions);
    * ``completed_with_manual_intervention``: no open finding, and at least one that both
      secretariats explained with signed ``resolution`` records;
    * ``completed``: no finding at all.

    ``initiated`` is never returned here: the service records it when it takes the
    snapshot, so a run that died before its end is seen as such.
    """
    found = list(discrepancies)
    levels = {d.level for d in found if d.status == "open"}
    if "totals" in levels:
        return "totals_inconsistent"
    if "blocks" in levels:
        return "blocks_inconsistent"
    if any(d.status == "explained" for d in found):
        return "completed_with_manual_intervention"
    return "completed"


def days(n: int) -> str:
    """``1 day``, ``12 days``: for summaries."""
    return f"{n} day" if n == 1 else f"{n} days"


@dataclass(frozen=True, slots=True)
class Deadline:
    """The clock of something pending: counted from ``since``, a finding of its rule from
    ``due`` (``since`` + ``grace`` days), judged on ``as_of`` (None: no day to judge on,
    so no age and no deadline reached)."""

    since: date
    grace: int
    as_of: date | None

    @property
    def due(self) -> date:
        return self.since + timedelta(days=self.grace)

    @property
    def age(self) -> int | None:
        return None if self.as_of is None else max(0, (self.as_of - self.since).days)

    @property
    def passed(self) -> bool:
        return self.as_of is not None and self.as_of >= self.due

    def awaited(self, rule: str) -> str:
        """`` for 12 days since 2026-01-05; an <rule> discrepancy from 2026-04-05 (90 days
        grace)``, or nothing without a day."""
        age = self.age
        if age is None:
            return ""
        return (
            f" for {days(age)} since {self.since}; an {rule} discrepancy from {self.due} "
            f"({days(self.grace)} grace)"
        )

    def ended(self) -> str:
        """``the 90 days grace from 2026-01-05 ended on 2026-04-05``."""
        return f"the {days(self.grace)} grace from {self.since} ended on {self.due}"

    def pending(self, **fields: object) -> Pending:
        """A ``Pending`` carrying this clock (``due`` only when judged on a day)."""
        return Pending(
            since=self.since,
            age_days=self.age,
            due=None if self.as_of is None else self.due,
            **fields,  # type: ignore[arg-type]
        )


def finding(
    rule: str,
    keys: Iterable[str],
    subject: str,
    summary: str,
    records: Iterable[RecordRef],
    ranges: Iterable[SerialRange] = (),
    expected: int | None = None,
    found: int | None = None,
) -> Discrepancy:
    """A discrepancy of ``rule`` about the finding named by ``keys`` (its stable id)."""
    return Discrepancy(
        id=discrepancy_id(rule, keys),
        rule=rule,
        stage=RULES[rule].stage,
        subject=subject,
        summary=summary,
        records=tuple(records),
        ranges=merge_ranges(ranges),
        expected=expected,
        found=found,
    )
