"""Article 6.2: what an ITMO action relies on, by date and by serial (reconciler rule 6).

Why this module exists: an ITMO exists from its first transfer on (decision 2/CMA.3,
annex), and its serials are credits one registry issued. So an acquisition, an onward
transfer or a use relies on first transfers of as many ITMOs of its project and vintage,
made no later, and on serials the registry named issued. Both sides record these actions
on their own schedules, so what is missing may only be late: it is awaited for a grace
period before it is a finding (``model`` rule 5). The authorization's own checks are
``rules_article6``'s.

Two functions, each taking the index and the unit's key and returning a ``Judgement``;
they read the index and change nothing. Rules:

1. Backing (unit: a project and vintage, ``judge_itmo_backing``). A Party's actions fall
   in two groups: what it *acquired*, and what it *consumed* (transferred onward, used or
   voluntarily cancelled). Each group, on its own, adds up to at most the partner's first
   transfers of that project and vintage (the same ITMOs are acquired, then used: the
   groups are not added together). Beyond that, the ITMOs are awaited from the date of
   the action that went beyond, as pending ``unbacked_itmos``, and are
   ``a6-no-first-transfer`` once the grace has passed. Without a day they stay pending.
2. Chronology (same unit). Taking the actions of a group in date order, the first
   transfers dated on or before an action's day cover its running total, as far as all
   the first transfers do; an action that relies on a first transfer dated after it is
   ``a6-use-before-first-transfer``, at once: the dates are wrong or the order was.
3. Serial provenance (unit: a serial prefix, ``judge_serials``). Every serial block of an
   ITMO action was issued in the registry of its Party, or, for a first transfer, in the
   transferring or the acquiring Party's (Japan's share is issued straight into Japan's
   registry); any part issued in neither is ``a6-serials-not-issued``, at once. A block
   counts as issued when the registry's serial fold (``ledger``) holds every unit of it.
4. Everything is listed in a stable order: dates, then log positions.
"""

from __future__ import annotations

from datetime import date

from jcm_sync.core.reconcile.engine import Index
from jcm_sync.core.reconcile.model import (
    GRACE_DEFAULTS,
    Deadline,
    SerialRange,
    finding,
)
from jcm_sync.core.reconcile.rules_article6 import TimedJudgement, itmo_ranges, not_issued
from jcm_sync.core.reconcile.slots import Action, Slot
from jcm_sync.core.records import ItmoActionRecord

GROUPS = {
    "acquisition": "acquired",
    "transfer": "consumed",
    "use": "consumed",
    "voluntary_cancellation": "consumed",
}
"""Rule 1: the group of each action that relies on first transfers."""
_VERB = {"acquired": "acquired", "consumed": "transferred onward, used or cancelled"}
_LISTED = 3


def _name(slot: Slot, a: Action) -> str:
    return f"{a.action.replace('_', ' ')} {a.action_id} ({slot.ref().record_id[:12]})"


def _listed(items: list[str]) -> str:
    head = "; ".join(items[:_LISTED])
    return head + (f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def judge_itmo_backing(
    index: Index,
    project: str,
    vintage: int,
    as_of: date | None = None,
    grace: int = GRACE_DEFAULTS["a6-no-first-transfer"],
) -> TimedJudgement:
    """Rules 1 and 2 for one (project, vintage), judged on the day ``as_of`` (None: no
    day) with a grace period of ``grace`` days."""
    verdict = TimedJudgement()
    acts = sorted(
        index.tables.pv_actions.get((project, vintage), ()),
        key=lambda e: (e[1].occurred_on, e[0].pos),
    )
    groups: dict[tuple[str, str], list[tuple[Slot, Action]]] = {}
    firsts: list[tuple[Slot, Action]] = []
    for slot, a in acts:
        if a.action == "first_transfer":
            if a.party == index.partner:
                firsts.append((slot, a))
        else:
            groups.setdefault((a.party, GROUPS[a.action]), []).append((slot, a))
    if not groups:
        return verdict
    partner = index.partner
    total = sum(a.quantity for _, a in firsts)
    subject_pv = f"{project} vintage {vintage}"
    ft_text = (
        _listed([f"{_name(s, a)} of {a.quantity} on {a.occurred_on}" for s, a in firsts]) or "none"
    )
    for (party, group), members in sorted(groups.items()):
        running, beyond = 0, None
        for i, (slot, a) in enumerate(members):
            running += a.quantity
            if beyond is None and running > total:
                beyond = i
            need = min(running, total)
            covered, relied = 0, None
            for fs, fa in firsts:  # the first transfers that cover ``need``, by date
                covered += fa.quantity
                if covered >= need:
                    relied = (fs, fa)
                    break
            if relied is None or relied[1].occurred_on <= a.occurred_on or need <= 0:
                continue
            fs, fa = relied
            verdict.findings.append(finding(
                "a6-use-before-first-transfer", [slot.key], f"itmo_action {slot.key}",
                f"{party} {_name(slot, a)} of {a.quantity} ITMOs of {subject_pv} on "
                f"{a.occurred_on} brings what {party} {_VERB[group]} to {running}, which "
                f"relies on {partner}'s first transfers up to {_name(fs, fa)} of "
                f"{fa.quantity} on {fa.occurred_on}, dated after it ({partner}'s first "
                f"transfers: {ft_text}). Settled when the wrong date is corrected (a "
                "superseding record of either action)",
                [slot.ref(), fs.ref()], itmo_ranges(index, [slot]),
            ))  # fmt: skip
        if beyond is None:
            continue
        over = members[beyond:]
        since = over[0][1].occurred_on
        subject = f"{subject_pv} {party} {group}"
        acted = _listed([f"{_name(s, a)} of {a.quantity} on {a.occurred_on}" for s, a in over])
        what = (
            f"{party} {_VERB[group]} {running} ITMOs of {subject_pv}, {running - total} "
            f"beyond {partner}'s first transfers of {total} ({ft_text}); from {acted}"
        )
        refs = [*(s.ref() for s, _ in over), *(s.ref() for s, _ in firsts)]
        clock = Deadline(since, grace, as_of)
        if as_of is not None:
            verdict.timed = True
        if not clock.passed:
            verdict.pending.append(clock.pending(
                what="unbacked_itmos", subject=subject,
                summary=f"{what}: {partner}'s first transfer of them awaited"
                + clock.awaited("a6-no-first-transfer"),
                records=tuple(refs), missing=(partner,),
            ))  # fmt: skip
            continue
        verdict.findings.append(finding(
            "a6-no-first-transfer", [project, str(vintage), party, group], subject,
            f"{what}; {clock.ended()}. Settled when "
            f"{partner} records the first transfer of these ITMOs, or {party} corrects "
            "its actions",
            refs, itmo_ranges(index, [s for s, _ in over]),
            expected=total, found=running,
        ))  # fmt: skip
    return verdict


def _issued_count(index: Index, registry: str, prefix: str) -> int:
    ledger = index.ledgers.get(registry)
    held = ledger.maps.get(prefix) if ledger is not None else None
    return sum(s.last - s.first + 1 for s in held.segs) if held is not None else 0


def judge_serials(index: Index, prefix: str) -> TimedJudgement:
    """Rule 3 for the ITMO actions naming serials of ``prefix``."""
    verdict = TimedJudgement()
    claims = sorted(index.tables.serial_claims.get(prefix, ()), key=lambda e: e[0].pos)
    for slot, registries in claims:
        assert slot.current is not None
        rec = index.record(slot.current)
        assert isinstance(rec, ItmoActionRecord)
        missing: list[SerialRange] = []
        where = registries[0]
        for b in rec.blocks:
            if b.prefix != prefix:
                continue
            width = len(b.start) - len(prefix)
            best: tuple[str, list[tuple[int, int]]] | None = None
            for registry in registries:
                gaps = not_issued(index, registry, prefix, b.first, b.first + b.quantity - 1)
                size = sum(hi - lo + 1 for lo, hi in gaps)
                if best is None or size < sum(hi - lo + 1 for lo, hi in best[1]):
                    best = (registry, gaps)
            assert best is not None
            where = best[0]
            missing += [SerialRange(where, prefix, lo, hi, width) for lo, hi in best[1]]
        if not missing:
            continue
        nor = "".join(f" nor in {r}'s" for r in registries if r != where)
        names = ", ".join(r.describe() for r in missing)
        n = sum(r.quantity for r in missing)
        issued = _issued_count(index, where, prefix)
        verdict.findings.append(finding(
            "a6-serials-not-issued", [slot.key, prefix], f"itmo_action {slot.key}",
            f"{rec.party} {rec.action.replace('_', ' ')} {rec.action_id} "
            f"({slot.current.rid[:12]}) of {rec.quantity} ITMOs of {rec.project_id} "
            f"vintage {rec.vintage} on {rec.occurred_on} names {n} serials never issued "
            f"in {where}'s registry{nor}: {names} ({where} issued {issued} serials of "
            f"{prefix} in all). Settled when {rec.party} corrects the action's serial "
            f"blocks (a superseding record), or {where} records the issuance of them",
            [slot.ref()], missing,
        ))  # fmt: skip
    return verdict
