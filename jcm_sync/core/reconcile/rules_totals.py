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

Holding: a finding holds the serials in doubt, and no more (its ``ranges``; the
issuances it names beside them are in its ``records``). Issuing more than notified: in
log order, the issuances whose running total stays within the notified amount are not in
doubt; the one that crosses it, and every later one, are held whole, since no record
says which serials of a block are the excess (a registry issues a block at once).
Issuing fewer (past the grace period): nothing is held, as each credit issued was
notified. ``allocation-vs-issued``: only the issuances into account types whose issued
amount differs from the allocation. Rule 4's findings hold every serial of the
issuances, since no effective decision backs any of them.

The judgement says whether it depends on the day (``timed``), so the reconciler judges
again when the day or the grace changes, and only the decisions it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import (
    Discrepancy,
    Pending,
    SerialRange,
    days,
    finding,
    merge_ranges,
)
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


_LISTED = 3
"""Issuances a summary names one by one; it counts the rest."""


def _name(slot: Slot) -> str:
    """An issuance as a summary names it: its local id and short record id."""
    assert slot.current is not None
    return f"{slot.key.split('/')[-1]} ({slot.current.rid[:12]})"


def _listed(items: list[str]) -> str:
    text = ", ".join(items[:_LISTED])
    return text + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _serials(ranges: list[SerialRange]) -> str:
    merged = merge_ranges(ranges)
    text = ", ".join(r.describe() for r in merged[:_LISTED])
    return text + (f" and {len(merged) - _LISTED} more ranges" if len(merged) > _LISTED else "")


def _over_issued(
    index: Index, side: str, issued: dict[Slot, tuple[int, str]], notified: int
) -> tuple[list[SerialRange], str]:
    """Holding: what an over-issued side's finding holds, and how its summary says so.

    In log order, the issuances whose running total stays within ``notified`` are not in
    doubt; the one that crosses it and every later one are held whole (which serials of
    the crossing one are the excess no record says: a block is issued at once)."""
    total = 0
    free: list[str] = []
    held: list[SerialRange] = []
    parts: list[str] = []
    unheld = 0  # excess credits of issuances without blocks, which nothing can hold
    unsure = False  # whether a held issuance is only partly in excess
    for slot in sorted(issued, key=lambda s: s.pos):
        amount = issued[slot][0]
        before, total = total, total + amount
        if total <= notified:
            free.append(f"{_name(slot)} of {amount}")
            continue
        excess = total - max(before, notified)
        ranges = index.issuance_ranges(side, [slot])
        if not ranges:
            unheld += excess
            continue
        held += ranges
        n = sum(r.quantity for r in merge_ranges(ranges))
        unsure = unsure or excess < n
        of_which = f"{excess} of which are" if excess < n else "all of which are"
        parts.append(f"{_serials(ranges)} of {_name(slot)}, {of_which} in excess")
    text = f"issuances {_listed(free)} stay within it; " if free else ""
    if parts:
        text += f"holds {_listed(parts)}"
        if unsure:
            text += " (which serials are the excess, no record says: a block is issued at once)"
    else:
        text += "holds no serials"
    if unheld:
        text += f"; {unheld} excess credits were issued without serial blocks and cannot be held"
    return held, text


def _off_types(
    by_type: dict[str, int], allocated: dict[str, int]
) -> list[tuple[str, tuple[int, int]]]:
    """The account types whose issued amount is not their allocation: (type, (issued,
    allocated)), sorted. An allocation of 0 is met by issuing nothing into that type."""
    if by_type == allocated:
        return []  # nearly every decision
    return [
        (t, (by_type.get(t, 0), allocated.get(t, 0)))
        for t in sorted(set(by_type) | set(allocated))
        if by_type.get(t, 0) != allocated.get(t, 0)
    ]


def judge_decision(index: Index, dk: str, as_of: date | None, grace: int) -> DecisionJudgement:
    """Rules 3 and 4 for the decision of key ``dk``, judged on the UTC day ``as_of`` (None:
    no day, a partly issued side is a discrepancy) with a grace period of ``grace`` days."""
    slot = index.slot("issuance_decision", dk)
    current = slot.current if slot is not None else None
    by_side: dict[str, dict[Slot, tuple[int, str]]] = {}
    for s, fact in index.tables.issuances.get(dk, ()):
        by_side.setdefault(fact.registry, {})[s] = (fact.amount, fact.atype)
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
        names = _listed([_name(s) for s in sorted(issued, key=lambda s: s.pos)])
        holds = (
            f"; holds all their serials ({_serials(ranges)}): no effective decision backs "
            "any of them"
            if ranges
            else "; they state no serial blocks, so nothing is held"
        )
        if slot is None or current is None:
            findings.append(finding(
                "untraceable-issuance", [dk, registry], subject,
                f"{registry} issued {amount} credits (issuances {names}) under a decision "
                f"for {period} that is in neither log{holds}. Settled when the Joint "
                f"Committee's decision for {period} is recorded and signed by both, or "
                f"{registry} corrects the issuances' decision",
                refs, ranges, found=amount,
            ))  # fmt: skip
        else:
            findings.append(finding(
                "issuance-before-decision-effective", [dk, registry], subject,
                f"{registry} issued {amount} credits (issuances {names}) under the decision "
                f"for {period} ({current.rid[:12]}), which still awaits "
                + index.awaited(
                    [v for v in slot.versions if v.payload == current.payload], slot.missing
                )
                + holds
                + f". Settled when {' and '.join(slot.missing) or 'both secretariats'} "
                f"signs or endorses the decision, or {registry} corrects the issuances "
                "(versions superseding them)",
                [current.ref(), *refs], ranges, found=amount,
            ))  # fmt: skip
    timed = False  # whether the judgement depends on the day (rule 3, grace period)
    if effective:
        assert slot is not None
        assert current is not None
        assert slot.contrib is not None
        shares: dict[str, tuple[int, dict[str, int] | None]] = {
            sh.side: (sh.notified, dict(sh.allocated) if sh.allocated is not None else None)
            for sh in slot.contrib[2]  # type: ignore[attr-defined]
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
                        + ("" if age is None else f" ({days(age)} since {decided_on})"),
                        records=(current.ref(),), missing=(side,), since=decided_on,
                        age_days=age,
                    ))  # fmt: skip
                continue
            stats[1] += 1
            total = sum(a for a, _ in issued.values())
            diffs = ""
            by_type: dict[str, int] = {}
            if total == notified and allocated is not None:
                for amount, atype in issued.values():
                    by_type[atype] = by_type.get(atype, 0) + amount
                diffs = ", ".join(
                    f"{t} {got} (allocated {want})"
                    for t, (got, want) in _off_types(by_type, allocated)
                )
            if total == notified and not diffs:
                continue
            refs = [current.ref(), *index.issuance_refs(issued)]
            if total < notified:
                timed = True  # within or past the grace period: either way, by the day
            if total < notified and as_of is not None and as_of < due:
                assert age is not None
                pending.append(Pending(
                    what="issuance", subject=subject,
                    summary=f"{side} has issued {total} of the {notified} credits the "
                    f"decision for {period} notified ({notified - total} to go), pending "
                    f"for {days(age)} since {decided_on}; an issued-vs-notified "
                    f"discrepancy from {due} ({days(grace)} grace)",
                    records=tuple(refs), missing=(side,), since=decided_on,
                    age_days=age, due=due,
                ))  # fmt: skip
            elif total != notified:
                stats[2] += 1
                gap = abs(total - notified)
                said = (
                    f"{side} issued {total} credits where the decision for {period} "
                    f"({current.rid[:12]}) notified {notified}"
                )
                if total > notified:
                    ranges, holds = _over_issued(index, side, issued, notified)
                    summary = (
                        f"{said} ({gap} more): {holds}. Settled when {side} corrects its "
                        f"issuances to {notified} in all (a version superseding the one that "
                        f"crossed it), or the Joint Committee supersedes the decision with "
                        f"one notifying {side} {total}"
                    )
                else:
                    # holding: each credit issued was notified; none is in doubt
                    ranges = []
                    late = ""
                    if as_of is not None:
                        late = f"; the {days(grace)} grace from {decided_on} ended on {due}"
                    names = _listed(
                        [
                            f"{_name(s)} of {issued[s][0]}"
                            for s in sorted(issued, key=lambda s: s.pos)
                        ]
                    )
                    summary = (
                        f"{said} ({gap} fewer){late}: issuances {names}; holds no serials, as "
                        f"each credit issued was notified. Settled when {side} issues the "
                        f"other {gap}, or the Joint Committee supersedes the decision with "
                        f"one notifying {side} {total}"
                    )
                findings.append(finding(
                    "issued-vs-notified", [dk, side], subject, summary,
                    refs, ranges, expected=notified, found=total,
                ))  # fmt: skip
            else:
                # holding: only the issuances into account types off their allocation
                off = {t for t, _ in _off_types(by_type, allocated or {})}
                wrong = [s for s in sorted(issued, key=lambda s: s.pos) if issued[s][1] in off]
                ranges = index.issuance_ranges(side, wrong)
                holds = (
                    f"holds {_serials(ranges)} of {_listed([_name(s) for s in wrong])}"
                    if ranges
                    else "holds no serials (the issuances into those types state none)"
                )
                findings.append(finding(
                    "allocation-vs-issued", [dk, side], subject,
                    f"{side} issued its {notified} credits for {period} "
                    f"({current.rid[:12]}) as {diffs}; {holds}; issuances into account "
                    f"types as allocated stay free. Settled when {side} corrects the account "
                    "of the issuances off their allocation (a superseding version), or the "
                    "Joint Committee supersedes the decision with one allocating as issued",
                    refs, ranges,
                ))  # fmt: skip
    return DecisionJudgement(findings, pending, (stats[0], stats[1], stats[2]), timed)
