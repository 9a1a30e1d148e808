"""Stage 1 (totals) and the decision checks of stage 2: reconciler rules 3 and 4.

Why this module exists: what a Joint Committee decision notified, and what each side's
registry issued under it, is the first thing both secretariats compare (DESIGN §5, the
Kyoto DES "totals" stage). This module holds that judgement, apart from the index that
gathers the facts (``engine``, ``tables``) and from the serial-level rules (``ledger``).

One function, ``judge_decision``: the index and a decision's key in, a
``DecisionJudgement`` out. It reads the index and changes nothing, so the same index,
key, day and grace give the same judgement. Rules (numbered as in ``reconciler``):

3. Per effective decision and side: the issued total equals the notified amount
   (``issued-vs-notified``); when it does, its split by account type equals the
   decision's allocations (``allocation-vs-issued``). A side that issued nothing yet is
   pending; one that issued part is pending until ``decided_on + grace`` (ADR 0011),
   judged on ``as_of``, or at once without a day. Issuing more is a discrepancy at once.
4. Issuances naming a decision that is not effective are
   ``issuance-before-decision-effective``; naming one in neither log,
   ``untraceable-issuance``.

The judgement says whether it depends on the day (``timed``), so the reconciler judges
again when the day or the grace changes, and only the decisions it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import Discrepancy, Pending, finding
from jcm_sync.core.reconcile.slots import Slot


@dataclass
class DecisionJudgement(Judgement):
    """A decision's findings and pending sides, and what the report's totals count of it."""

    stats: tuple[int, int, int] = (0, 0, 0)
    """1 if the decision is effective, its sides compared, its sides differing."""
    timed: bool = False
    """Whether the judgement depends on the day or the grace period (rule 3)."""


def _label(dkey: str) -> str:
    project, start, end = dkey.split("/")
    return f"{project} {start}..{end}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def judge_decision(index: Index, dk: str, as_of: date | None, grace: int) -> DecisionJudgement:
    """Rules 3 and 4 for the decision of key ``dk``, judged on the UTC day ``as_of`` (None:
    no day, a partly issued side is a discrepancy) with a grace period of ``grace`` days."""
    slot = index.slot("issuance_decision", dk)
    current = slot.current if slot is not None else None
    by_side: dict[str, dict[Slot, tuple[int, str]]] = {}
    for s, (registry, amount, atype) in index.tables.issuances.get(dk, ()):
        by_side.setdefault(registry, {})[s] = (amount, atype)
    findings: list[Discrepancy] = []
    pending: list[Pending] = []
    stats = [0, 0, 0]  # effective, sides compared, sides differing
    period = _label(dk)
    effective = slot is not None and current is not None and slot.effective
    for registry in sorted(by_side):
        issued = by_side[registry]
        if not issued or effective:
            continue
        refs = index.issuance_refs(issued)
        ranges = index.issuance_ranges(registry, issued)
        amount = sum(a for a, _ in issued.values())
        subject = f"{period} side {registry}"
        if slot is None or current is None:
            findings.append(finding(
                "untraceable-issuance", [dk, registry], subject,
                f"{registry} issued {amount} credits under a decision for {period} that is "
                "in neither log",
                refs, ranges, found=amount,
            ))  # fmt: skip
        else:
            findings.append(finding(
                "issuance-before-decision-effective", [dk, registry], subject,
                f"{registry} issued {amount} credits under the decision for {period} "
                f"({current.rid[:12]}), which still awaits "
                + index.awaited(
                    [v for v in slot.versions if v.payload == current.payload], slot.missing
                ),
                [current.ref(), *refs], ranges, found=amount,
            ))  # fmt: skip
    timed = False  # whether the judgement depends on the day (rule 3, grace period)
    if effective:
        assert slot is not None
        assert current is not None
        assert slot.contrib is not None
        shares: dict[str, tuple[int, dict[str, int] | None]] = {
            side: (notified, dict(allocated) if allocated is not None else None)
            for side, notified, allocated in slot.contrib[2]  # type: ignore[attr-defined]
        }
        decided_on = slot.contrib[3]
        assert isinstance(decided_on, date)
        age = None if as_of is None else max(0, (as_of - decided_on).days)
        due = decided_on + timedelta(days=grace)
        stats[0] = 1
        for side in index.sides:
            notified, allocated = shares.get(side, (0, None))
            issued = by_side.get(side, {})
            subject = f"{period} side {side}"
            if not issued:
                if notified:
                    timed = timed or age is not None
                    pending.append(Pending(
                        what="issuance", subject=subject,
                        summary=f"the decision for {period} notified {notified} credits "
                        f"to {side}, which has issued none yet"
                        + ("" if age is None else f" ({_days(age)} since {decided_on})"),
                        records=(current.ref(),), missing=(side,), since=decided_on,
                        age_days=age,
                    ))  # fmt: skip
                continue
            stats[1] += 1
            total = sum(a for a, _ in issued.values())
            diffs = ""
            if total == notified and allocated is not None:
                by_type: dict[str, int] = {}
                for amount, atype in issued.values():
                    by_type[atype] = by_type.get(atype, 0) + amount
                # an allocation of 0 is met by issuing nothing into that account type
                diffs = ", ".join(
                    f"{t} {by_type.get(t, 0)} (allocated {allocated.get(t, 0)})"
                    for t in sorted(set(by_type) | set(allocated))
                    if by_type.get(t, 0) != allocated.get(t, 0)
                )
            if total == notified and not diffs:
                continue
            refs = [current.ref(), *index.issuance_refs(issued)]
            ranges = index.issuance_ranges(side, issued)
            if total < notified:
                timed = True  # within or past the grace period: either way, by the day
            if total < notified and as_of is not None and as_of < due:
                assert age is not None
                pending.append(Pending(
                    what="issuance", subject=subject,
                    summary=f"{side} has issued {total} of the {notified} credits the "
                    f"decision for {period} notified ({notified - total} to go), pending "
                    f"for {_days(age)} since {decided_on}; an issued-vs-notified "
                    f"discrepancy from {due} ({_days(grace)} grace)",
                    records=tuple(refs), missing=(side,), since=decided_on,
                    age_days=age, due=due,
                ))  # fmt: skip
            elif total != notified:
                stats[2] += 1
                more = "more" if total > notified else "fewer"
                late = ""
                if total < notified and as_of is not None:
                    late = f"; the {_days(grace)} grace from {decided_on} ended on {due}"
                findings.append(finding(
                    "issued-vs-notified", [dk, side], subject,
                    f"{side} issued {total} credits where the decision for {period} "
                    f"notified {notified} ({abs(total - notified)} {more}){late}",
                    refs, ranges, expected=notified, found=total,
                ))  # fmt: skip
            else:
                findings.append(finding(
                    "allocation-vs-issued", [dk, side], subject,
                    f"{side} issued its {notified} credits for {period} as {diffs}",
                    refs, ranges,
                ))  # fmt: skip
    return DecisionJudgement(findings, pending, (stats[0], stats[1], stats[2]), timed)
