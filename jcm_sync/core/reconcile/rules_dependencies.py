"""Dependencies and chronology: what a record rests on was in force, and came first.

Why this module exists: a Joint Committee decision and a registry's issuance rest on other
records (the project's registration, the methodologies it was registered under, the
decision the credits are issued under). Both sides' records can agree in every amount and
serial and still rest on something that was not in force on the day: credits issued under
a project the JC had withdrawn, a decision taken before its period was monitored. This
module judges those dependencies, apart from the amounts (``rules_totals``) and the
serials (``ledger``).

Two functions, each a unit in and a ``Judgement`` out; they read the index and change
nothing. ``judge_dependencies`` judges the unit ("dependencies", decision key): the
decision and the issuances naming it. ``judge_methodologies`` judges ("methodologies",
project). ``tables`` marks them dirty when a fact they read changes: a decision or an
issuance under the key, the project's record, a methodology the project names.

Rules (the findings are listed in ``model.RULES``; ``docs/reconciliation-rules.md`` says
where each comes from):

1. ``project-not-registered``. The project a decision or an issuance is under was
   registered on the day the decision was taken (``decided_on``) or the credits were
   issued (``issued_on``), by the project's current effective record (both secretariats
   signed): its status is ``registered`` and its ``registered_on``, when given, is not
   after that day; or it is ``withdrawn`` or ``suspended`` from a ``status_since`` after
   that day. A withdrawn or suspended record without ``status_since`` cannot show the day
   was before it, and is a finding. Only the current record's dates count: earlier
   statuses are not rebuilt from superseded versions. A decision under a project in
   neither log, or whose record still awaits a signature, is a finding too: registration
   is a JC record both logs hold, and a decision presupposes it. Issuances are judged
   under an effective decision that passed: credits issued on or after the project's
   withdrawal or suspension (it was registered when decided). Issuances under a decision
   found here are named in the decision's finding, not again one by one; issuances under
   a decision missing or not yet effective are ``rules_totals`` rule 4's.
2. ``methodology-not-valid``. A project whose current effective record is registered
   (or was: withdrawn, suspended) names only methodologies with a version that was valid
   on its ``registered_on``: an effective record, not ``proposed``, approved
   (``approved_on``) on or before that day, and not ``inactive`` from a ``status_since``
   on or before it. Without ``registered_on`` only the statuses are compared. A
   methodology in neither log is not a finding: most partnerships do not replicate
   methodologies. An ``inactive`` version without ``status_since`` counts as valid at
   registration: versions become inactive when the JC approves the next one, routinely
   after projects registered under them.
3. ``decision-before-period-end``. An effective decision is taken on or after the last
   day of its monitoring period: the JC decides on a monitored and verified period.
4. ``issuance-before-decision``. An issuance is made on or after the ``decided_on`` of
   its decision, when that decision is in the snapshot and effective (a decision that
   is not is ``rules_totals`` rule 4's).

Only effective decisions are judged by rules 1 and 3: a proposed decision is pending, not
a decision. The findings of rules 1, 3 and 4 name the serials of the issuances concerned
(the quarantine holds them); rule 2's name none (it questions a registration, not credits).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import Discrepancy, SerialRange, finding
from jcm_sync.core.reconcile.slots import Slot
from jcm_sync.core.records import IssuanceRecord

SETTLE_PROJECT = (
    "Settled when the JC records the project's status and dates as they were (a new "
    "version of its record, signed by both secretariats)"
)

SETTLE_UNRECORDED = (
    "Settled when the JC records the project's registration (signed by both secretariats)"
)


def _short(slot: Slot) -> str:
    assert slot.current is not None
    return slot.current.rid[:12]


def _local_id(slot: Slot) -> str:
    """An issuance's own id (its key is registry/issuance id)."""
    return slot.key.split("/", 1)[1]


def _project_lapse(index: Index, project: str, day: date) -> str | None:
    """Rule 1: why ``project`` was not registered on ``day``, or None if it was."""
    slot = index.slot("project", project)
    if slot is None or slot.current is None:
        return "is in neither log: no JC record registers it"
    rid = _short(slot)
    if not slot.effective:
        same = [v for v in slot.versions if v.payload == slot.current.payload]
        return f"has a JC record ({rid}) that still awaits {index.awaited(same, slot.missing)}"
    assert slot.contrib is not None
    _, _, status, registered_on, since, _ = slot.contrib
    assert registered_on is None or isinstance(registered_on, date)
    assert since is None or isinstance(since, date)
    if status == "planned":
        return f"is only planned by its JC record ({rid}), not registered"
    if status != "registered":
        if since is None:
            return (f"is {status} by its JC record ({rid}) from a day it does not state "
                    "(no status_since)")  # fmt: skip
        if since <= day:
            return f"was {status} from {since} by its JC record ({rid})"
    if registered_on is not None and registered_on > day:
        return f"was registered only on {registered_on} by its JC record ({rid})"
    return None


def _ranges(index: Index, slots: Iterable[Slot]) -> list[SerialRange]:
    out: list[SerialRange] = []
    for s in slots:
        assert s.current is not None
        out += index.issuance_ranges(s.current.side, [s])
    return out


def _amount(index: Index, slot: Slot) -> int:
    assert slot.current is not None
    rec = index.record(slot.current)
    assert isinstance(rec, IssuanceRecord)
    return rec.amount


def _issued(index: Index, registry: str, issued: list[tuple[Slot, date]]) -> str:
    """``ID issued 9 credits (ID-ISS-1 (short id) 5 on 2016-05-10, ...)``, for a summary."""
    amounts = [_amount(index, s) for s, _ in issued]
    parts = ", ".join(
        f"{_local_id(s)} ({_short(s)}) {n} on {day}"
        for (s, day), n in zip(issued, amounts, strict=True)
    )
    return f"{registry} issued {sum(amounts)} credits ({parts})"


def _issued_under(index: Index, issued: dict[str, list[tuple[Slot, date]]]) -> str:
    """``; under it, ID issued 9 credits (...); JP issued ...``: every issuance a decision's
    finding names, by local and short id, or nothing when none was issued yet."""
    if not issued:
        return ""
    return "; under it, " + "; ".join(
        _issued(index, r, sorted(issued[r], key=lambda e: e[0].key)) for r in sorted(issued)
    )


def _registered_window(index: Index, project: str) -> tuple[date | None, date | None] | None:
    """Rule 1, the common case at a glance: the days ``project`` was registered, from
    (None: any day) until (None: still), or None when no day can be shown registered."""
    slot = index.slot("project", project)
    if slot is None or slot.current is None or not slot.effective:
        return None
    assert slot.contrib is not None
    _, _, status, registered_on, since, _ = slot.contrib
    assert registered_on is None or isinstance(registered_on, date)
    assert since is None or isinstance(since, date)
    if status == "registered":
        return (registered_on, None)
    if status == "planned" or since is None:
        return None
    return (registered_on, since)


def _in_order(index: Index, dk: str, decided_on: date, period_end: date, project: str) -> bool:
    """Whether rules 1, 3 and 4 find nothing under ``dk``: a pass over plain dates, so the
    decisions in order (nearly all) cost little more than this."""
    if decided_on < period_end:
        return False
    window = _registered_window(index, project)
    if window is None:
        return False
    lo, hi = window
    if (lo is not None and decided_on < lo) or (hi is not None and decided_on >= hi):
        return False
    days: list[date] = [s.contrib[5] for s, _ in index.tables.issuances.get(dk, ())]  # type: ignore[index,misc]
    return not days or (min(days) >= decided_on and (hi is None or max(days) < hi))


def judge_dependencies(index: Index, dk: str) -> Judgement:
    """Rules 1, 3 and 4 for the decision of key ``dk`` and the issuances naming it."""
    dslot = index.slot("issuance_decision", dk)
    if dslot is None or dslot.current is None or not dslot.effective:
        return Judgement()  # pending, or in neither log: rules_totals rule 4's
    assert dslot.contrib is not None
    decided_on = dslot.contrib[3]
    assert isinstance(decided_on, date)
    project, start, end = dk.split("/")
    period_end = date.fromisoformat(end)
    if _in_order(index, dk, decided_on, period_end, project):
        return Judgement()
    label = f"{project} {start}..{end}"
    issued: dict[str, list[tuple[Slot, date]]] = {}
    for s, fact in index.tables.issuances.get(dk, ()):
        assert s.contrib is not None
        day = s.contrib[5]
        assert isinstance(day, date)
        issued.setdefault(fact.registry, []).append((s, day))
    every = sorted((s for group in issued.values() for s, _ in group), key=lambda s: s.key)
    findings: list[Discrepancy] = []
    what = f"the decision for {label} ({_short(dslot)}), decided on {decided_on}"
    under = _issued_under(index, issued)
    records = [dslot.ref(), *index.issuance_refs(every)]
    pslot = index.slot("project", project)
    lapse = _project_lapse(index, project, decided_on)
    if lapse is not None:
        settle = SETTLE_UNRECORDED
        if pslot is not None and pslot.current is not None:
            records.insert(1, pslot.ref())
            settle = SETTLE_PROJECT
        findings.append(finding(
            "project-not-registered", [dk], label,
            f"{what}, is under project {project}, which {lapse}{under}. {settle}, or "
            "the decision is withdrawn",
            records, _ranges(index, every),
        ))  # fmt: skip
    if decided_on < period_end:
        days = (period_end - decided_on).days
        findings.append(finding(
            "decision-before-period-end", [dk], label,
            f"{what}, {days} day{'s' if days != 1 else ''} before its monitoring period "
            f"ended on {period_end}: the JC decides on a monitored and verified period"
            f"{under}. "
            "Settled when the JC records the decision's correct decided_on or monitoring "
            "period (a new version, signed by both secretariats)",
            records, _ranges(index, every),
        ))  # fmt: skip
    for registry in sorted(issued):
        group = sorted(issued[registry], key=lambda e: e[0].key)
        subject = f"{label} side {registry}"
        if lapse is None:  # else the decision's finding names these issuances
            assert pslot is not None
            lapsed = [(s, day) for s, day in group if _project_lapse(index, project, day)]
            if lapsed:
                # registered when decided, so the one reason left is the withdrawal or
                # suspension every lapsed issuance came on or after
                slots = [s for s, _ in lapsed]
                why = _project_lapse(index, project, lapsed[0][1])
                findings.append(finding(
                    "project-not-registered", [dk, registry], subject,
                    f"{_issued(index, registry, lapsed)} under project {project} for "
                    f"{label}, which {why}. {SETTLE_PROJECT}, or {registry} "
                    "corrects the issuance (a new version superseding it)",
                    [pslot.ref(), *index.issuance_refs(slots)], _ranges(index, slots),
                ))  # fmt: skip
        early = [(s, day) for s, day in group if day < decided_on]
        if early:
            slots = [s for s, _ in early]
            findings.append(finding(
                "issuance-before-decision", [dk, registry], subject,
                f"{_issued(index, registry, early)} under the decision for {label} "
                f"({_short(dslot)}) before it was decided on {decided_on}. Settled when "
                f"{registry} corrects the issuance's date (a new version superseding it) "
                "or the JC the decision's decided_on",
                [dslot.ref(), *index.issuance_refs(slots)], _ranges(index, slots),
            ))  # fmt: skip
    return Judgement(findings)


def _valid_at(slot: Slot, day: date | None) -> bool:
    """Rule 2: whether a methodology version counted as valid on ``day``."""
    if not slot.effective:
        return False
    assert slot.contrib is not None
    _, _, status, approved_on, since = slot.contrib
    if status == "proposed":
        return False
    if day is None:
        return True
    if isinstance(approved_on, date) and approved_on > day:
        return False
    return not (status == "inactive" and isinstance(since, date) and since <= day)


def _describe_version(index: Index, slot: Slot) -> str:
    assert slot.current is not None
    assert slot.contrib is not None
    version = slot.key.split("/", 1)[1]
    head = f"{version} ({_short(slot)})"
    if not slot.effective:
        same = [v for v in slot.versions if v.payload == slot.current.payload]
        return f"{head} awaits {index.awaited(same, slot.missing)}"
    _, _, status, approved_on, since, *_ = slot.contrib
    text = f"{head} {status}"
    if approved_on is not None:
        text += f", approved on {approved_on}"
    if status == "inactive" and since is not None:
        text += f", inactive from {since}"
    return text


def judge_methodologies(index: Index, project: str) -> Judgement:
    """Rule 2 for ``project``: its methodologies were valid when it was registered."""
    pslot = index.slot("project", project)
    if pslot is None or pslot.current is None or not pslot.effective:
        return Judgement()
    assert pslot.contrib is not None
    _, _, status, registered_on, _, methodologies = pslot.contrib
    assert registered_on is None or isinstance(registered_on, date)
    if status == "planned":
        return Judgement()
    findings: list[Discrepancy] = []
    on = f"on {registered_on}" if registered_on is not None else "(no registered_on)"
    for mid in methodologies:  # type: ignore[attr-defined]
        versions = sorted(
            (s for s, _ in index.tables.methodology_versions.get(mid, ()) if s.current),
            key=lambda s: s.key,
        )
        if not versions:
            continue  # in neither log: not replicated, not a finding
        if any(_valid_at(s, registered_on) for s in versions):
            continue
        described = "; ".join(_describe_version(index, s) for s in versions)
        findings.append(finding(
            "methodology-not-valid", [project, mid], f"project {project}",
            f"project {project} ({_short(pslot)}), registered {on}, names methodology {mid}, "
            f"no version of which was valid then: {described}. Settled when the JC records "
            "the methodology's status and approval date, or the project's registration date "
            "or methodologies, as they were (new versions, signed by both secretariats)",
            [pslot.ref(), *(s.ref() for s in versions)],
        ))  # fmt: skip
    return Judgement(findings)
