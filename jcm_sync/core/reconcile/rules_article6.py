"""Article 6.2: authorizations, their versions, caps, scope and the two mirrors.

Why this module exists: Article 6.2 of the Paris Agreement adds records the Kyoto stages
never had (authorizations, ITMO actions), checked against each other and against the
registries' issuances and retirements (reconciler rule 6). These checks are this
module's, apart from the index that files the facts they read (``engine``, ``tables``);
the chronology and serial provenance of ITMO actions are ``rules_itmo_chronology``'s.

Three functions, one per kind of unit, each taking the index and the unit's key and
returning a ``Judgement``; they read the index and change nothing. Rules:

1. Authorizations change by new versions (``records.AuthorizationRecord``): a version with
   an ``effective_on`` (``withdrawn`` or ``amended``) ends the earlier ones on that day; a
   version without one is a correction that replaces them from the start (``terms``).
   A first transfer is judged under the version in force on its ``occurred_on``.
2. ``judge_authorization`` (unit: an authorization id): every ITMO action names an
   authorization held in the snapshot, a first transfer one of its own Party
   (``a6-authorization-unknown``); a first transfer dated before any version is in force
   is ``a6-before-authorization``, one dated on or after a withdrawal is
   ``a6-authorization-withdrawn`` (those before it stay valid); the others stay within
   the projects, vintages and purposes of the version in force (``a6-out-of-scope``).
3. The cap counts every first transfer under the authorization, in date order: the
   running total on a transfer's day is within the cap of the version in force then (the
   last one before a withdrawal; the first one before any), else ``a6-cap-exceeded``,
   naming the transfer that crossed it and every one after. The report's row states the
   latest version's cap.
4. Everything is listed in a stable order (dates, then slot positions; sorted keys),
   never in set order (reconciler rule 8).
5. ``judge_first_transfer_mirror`` (unit: a project and vintage): within the scope of a
   partner authorization (a version that is not a withdrawal), the partner's first
   transfers equal Japan's issued amount (``a6-first-transfer-mirror``). This is the
   working definition of ADR 0008 (the JCM has published none). Fewer is awaited: pending
   from Japan's issuance date of the first credits not yet first transferred until the
   grace ends (``model.GRACE_DEFAULTS``), then the finding; more is a finding at once.
   Without a day none at all stays pending and fewer is a finding (judged strictly).
6. ``judge_use_mirror`` (unit: a Party): a retirement or cancellation with a ``purpose``
   and the ITMO ``use`` or ``voluntary_cancellation`` reporting it have the same serial
   blocks; records that do not pair up are grouped by overlapping serials, one
   ``a6-use-mirror`` finding per group.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import (
    GRACE_DEFAULTS,
    AuthorizationRow,
    Deadline,
    Discrepancy,
    RecordRef,
    SerialRange,
    finding,
)
from jcm_sync.core.reconcile.slots import Action, Slot, Version, block_range, serial_registries
from jcm_sync.core.records import (
    AuthorizationRecord,
    IssuanceRecord,
    ItmoActionRecord,
    TransactionRecord,
)


@dataclass
class AuthorizationJudgement(Judgement):
    """An authorization id's findings, and its rows of the report's Article 6.2 stage."""

    rows: list[AuthorizationRow] = field(default_factory=list)


@dataclass
class TimedJudgement(Judgement):
    """A judgement that may depend on the day and a grace period (``model`` rule 5)."""

    timed: bool = False
    """Whether a later day or another grace could change it: judged again when they do."""


# --- an authorization's versions ----------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """A version of an authorization, in force from ``start`` until the next term's start."""

    start: date
    version: Version
    auth: AuthorizationRecord

    def ref(self) -> RecordRef:
        return self.version.ref()


def terms(index: Index, slot: Slot) -> list[Term]:
    """Rule 1: the versions of an authorization in force over time, oldest first.

    The chain is the current version and those it supersedes, in turn, within the slot.
    The first is in force from its ``effective_on``, or else its ``authorized_on``; a
    later version with an ``effective_on`` ends the earlier ones on that day (a
    withdrawal or an amendment); one without is a correction that replaces them all."""
    by_rid = {v.rid: v for v in slot.versions}
    chain: list[Version] = []
    v = slot.current
    while v is not None and v not in chain:
        chain.append(v)
        v = by_rid.get(v.supersedes) if v.supersedes is not None else None
    out: list[Term] = []
    for v in reversed(chain):
        auth = index.record(v)
        assert isinstance(auth, AuthorizationRecord)
        if auth.effective_on is None or not out:
            out = [Term(auth.effective_on or auth.authorized_on, v, auth)]
        else:
            out = [t for t in out if t.start < auth.effective_on]
            out.append(Term(auth.effective_on, v, auth))
    return out


def in_force(history: list[Term], day: date) -> Term | None:
    """The term in force on ``day``: the last to start on or before it, if any."""
    found = None
    for t in history:
        if t.start <= day:
            found = t
    return found


def _cap_term(history: list[Term], term: Term | None) -> Term:
    """The term whose cap counts for a first transfer judged under ``term``: the term
    itself, the last one before a withdrawal, or the first one before any."""
    if term is None:
        return history[0]
    i = history.index(term)
    while i > 0 and history[i].auth.status == "withdrawn":
        i -= 1
    return history[i]


def not_issued(
    index: Index, registry: str, prefix: str, first: int, last: int
) -> list[tuple[int, int]]:
    """The parts of ``first..last`` of ``prefix`` the registry never issued."""
    ledger = index.ledgers.get(registry)
    held = ledger.maps.get(prefix) if ledger is not None else None
    segs = held.segs if held is not None else []
    i = bisect_right(segs, first, key=lambda s: s.first)
    if i > 0 and segs[i - 1].last >= first:
        i -= 1
    out, cursor = [], first
    while i < len(segs) and segs[i].first <= last:
        if segs[i].first > cursor:
            out.append((cursor, segs[i].first - 1))
        cursor = max(cursor, segs[i].last + 1)
        i += 1
    if cursor <= last:
        out.append((cursor, last))
    return out


def itmo_ranges(index: Index, slots: Iterable[Slot]) -> list[SerialRange]:
    """The serial ranges ITMO actions name, each in the registry that issued it: its
    Party's, or for a first transfer the first of ``slots.serial_registries`` that
    issued the whole block (else the first of them), for a finding's ``ranges``."""
    out = []
    for s in slots:
        assert s.current is not None
        rec = index.record(s.current)
        assert isinstance(rec, ItmoActionRecord)
        registries = serial_registries(rec, index.partner)
        for b in rec.blocks:
            registry = next(
                (r for r in registries
                 if not not_issued(index, r, b.prefix, b.first, b.first + b.quantity - 1)),
                registries[0],
            )  # fmt: skip
            out.append(block_range(registry, b))
    return out


def _ft_label(index: Index, slot: Slot, a: Action) -> str:
    return (
        f"{a.party} first transfer {a.action_id} ({slot.ref().record_id[:12]}) of "
        f"{a.quantity} ITMOs of {a.project} vintage {a.vintage} on {a.occurred_on}"
    )


def _unknown(index: Index, aid: str, auth_slots: dict[str, Slot], slot: Slot, a: Action) -> str:
    """Why a first transfer's authorization is unknown, and what settles it."""
    others = sorted(auth_slots)
    held = ", ".join(f"{p}'s {auth_slots[p].ref().describe()}" for p in others)
    if others:
        return (
            f"authorization {aid} is held only as {held}, and a first transfer needs its "
            f"own Party's ({a.party}). Settled when {a.party} records its authorization "
            f"{aid}, or corrects the first transfer to name one of its own"
        )
    return (
        f"authorization {aid} is in neither log. Settled when {a.party} records "
        f"authorization {aid}, or corrects the first transfer to name one it recorded"
    )


def judge_authorization(index: Index, aid: str) -> AuthorizationJudgement:
    """Rules 1-4: actions naming ``aid`` against the authorizations holding that id."""
    auth_slots = index.tables.auths.get(aid, {})
    histories = {party: terms(index, s) for party, s in auth_slots.items()}
    actions = sorted(
        index.tables.actions.get(aid, {}).items(), key=lambda kv: (kv[1].occurred_on, kv[0].pos)
    )
    findings: list[Discrepancy] = []
    first: dict[str, list[tuple[Slot, Action, Term | None]]] = {}
    for slot, a in actions:
        label = f"itmo_action {slot.key}"
        history = histories.get(a.party)
        if a.action != "first_transfer":
            if not histories:
                findings.append(finding(
                    "a6-authorization-unknown", [slot.key], label,
                    f"{a.party} {a.action.replace('_', ' ')} {a.action_id} names "
                    f"authorization {aid}, which is in neither log",
                    [slot.ref()], itmo_ranges(index, [slot]),
                ))  # fmt: skip
            continue
        if not history:
            findings.append(finding(
                "a6-authorization-unknown", [slot.key], label,
                f"{_ft_label(index, slot, a)}: {_unknown(index, aid, auth_slots, slot, a)}",
                [slot.ref()], itmo_ranges(index, [slot]),
            ))  # fmt: skip
            continue
        term = in_force(history, a.occurred_on)
        first.setdefault(a.party, []).append((slot, a, term))
        if term is None:
            t0 = history[0]
            findings.append(finding(
                "a6-before-authorization", [slot.key], label,
                f"{_ft_label(index, slot, a)} is dated before {a.party}'s authorization "
                f"{aid} was in force: {t0.ref().describe()} authorized it on "
                f"{t0.auth.authorized_on}, in force from {t0.start}. Settled when "
                f"{a.party} corrects the first transfer's date (a superseding record), or "
                "its authorization's if that one is wrong",
                [t0.ref(), slot.ref()], itmo_ranges(index, [slot]),
            ))  # fmt: skip
            continue
        if term.auth.status == "withdrawn":
            before = [t for t in history if t.start < term.start]
            kept = (
                f"; its first transfers dated before {term.start} stay valid under "
                f"{before[-1].ref().describe()}"
                if before
                else ""
            )
            findings.append(finding(
                "a6-authorization-withdrawn", [slot.key], label,
                f"{_ft_label(index, slot, a)} is dated on or after {term.start}, from when "
                f"{a.party} withdrew authorization {aid} ({term.ref().describe()}){kept}. "
                f"Settled when {a.party} corrects the first transfer (a superseding "
                "record), or records a version of the authorization in force on "
                f"{a.occurred_on}",
                [term.ref(), slot.ref()], itmo_ranges(index, [slot]),
            ))  # fmt: skip
            continue
        own = term.auth
        reasons = []
        if own.projects and a.project not in own.projects:
            reasons.append(f"project {a.project} is not among {', '.join(own.projects)}")
        if own.vintages and a.vintage not in own.vintages:
            listed = ", ".join(map(str, own.vintages))
            reasons.append(f"vintage {a.vintage} is not among {listed}")
        if a.purpose is not None and a.purpose not in own.purposes:
            reasons.append(f"purpose {a.purpose} is not among {', '.join(own.purposes)}")
        if reasons:
            since = f", in force from {term.start}" if len(history) > 1 else ""
            findings.append(finding(
                "a6-out-of-scope", [slot.key], label,
                f"{a.party} first transfer {a.action_id} ({slot.ref().record_id[:12]}) under "
                f"{aid} on {a.occurred_on}: "
                + "; ".join(reasons)
                + f" ({term.ref().describe()}{since}). Settled when {a.party} corrects the "
                "first transfer, or amends the authorization's scope",
                [term.ref(), slot.ref()], itmo_ranges(index, [slot]),
            ))  # fmt: skip
    rows = []
    for party, history in sorted(histories.items()):
        if not history:
            continue
        total, over = 0, list[tuple[Slot, Action, int, Term]]()
        cap_at = history[-1]
        for slot, a, term in first.get(party, []):
            total += a.quantity
            cap_at = _cap_term(history, term)
            if over or total > cap_at.auth.cap:
                over.append((slot, a, total, cap_at))
        current = history[-1].auth
        rows.append(AuthorizationRow(party, aid, current.cap, total))
        if over:
            slot0, a0, run0, cap0 = over[0]
            caps = "" if len(history) == 1 else f" (in force from {cap0.start})"
            findings.append(finding(
                "a6-cap-exceeded", [party, aid], f"authorization {party}/{aid}",
                f"{party}'s first transfers under {aid} ({cap_at.ref().record_id[:12]}) "
                f"total {total}, over its cap of "
                f"{cap_at.auth.cap} by {total - cap_at.auth.cap}; {a0.action_id} "
                f"({slot0.ref().record_id[:12]}) on {a0.occurred_on} crossed the cap of "
                f"{cap0.auth.cap}{caps} with {run0} in all"
                + (f", and {len(over) - 1} later first transfers add to it" if len(over) > 1
                   else "")
                + f". Settled when {party} amends the authorization's cap or corrects "
                "the first transfers",
                [cap_at.ref(), *(s.ref() for s, *_ in over)],
                itmo_ranges(index, [s for s, *_ in over]),
                expected=cap_at.auth.cap, found=total,
            ))  # fmt: skip
    return AuthorizationJudgement(findings, rows=rows)


# --- the mirror of the first transfer -------------------------------------------------


def _covered(index: Index, project: str, vintage: int) -> str | None:
    """The id of a partner authorization whose scope, in any version not a withdrawal,
    holds ``project`` and ``vintage``; None if none does."""
    for aid in sorted(index.tables.auths):
        slot = index.tables.auths[aid].get(index.partner)
        if slot is None or slot.current is None:
            continue
        for t in terms(index, slot):
            auth = t.auth
            if auth.status == "withdrawn":
                continue
            if (not auth.projects or project in auth.projects) and (
                not auth.vintages or vintage in auth.vintages
            ):
                return aid
    return None


def _listed(items: list[str]) -> str:
    head = ", ".join(items[:_LISTED])
    return head + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def judge_first_transfer_mirror(
    index: Index,
    project: str,
    vintage: int,
    as_of: date | None = None,
    grace: int = GRACE_DEFAULTS["a6-first-transfer-mirror"],
) -> TimedJudgement:
    """Rule 5, mirror of the first transfer, for one (project, vintage), judged on the
    day ``as_of`` (None: no day) with a grace period of ``grace`` days."""
    pv = (project, vintage)
    jp = dict(index.tables.jp_vintage.get(pv, ()))
    ft = dict(index.tables.first_transfers.get(pv, ()))
    subject = f"{project} vintage {vintage}"
    aid = _covered(index, project, vintage) if (jp or ft) else None
    verdict = TimedJudgement()
    if aid is None:
        return verdict
    issued, transferred = sum(jp.values()), sum(ft.values())
    if issued == transferred or (not issued and not ft):
        return verdict
    partner = index.partner
    dated = []  # Japan's issuances of this vintage, by day
    for s, n in jp.items():
        assert s.current is not None
        rec = index.record(s.current)
        assert isinstance(rec, IssuanceRecord)
        dated.append((rec.issued_on, s.pos, s, n))
    dated.sort(key=lambda d: (d[0], d[1]))
    actions = dict(index.tables.pv_actions.get(pv, ()))
    ft_text = _listed([
        f"{actions[s].action_id} ({s.ref().record_id[:12]}) of {n} on {actions[s].occurred_on}"
        for s, n in sorted(ft.items(), key=lambda kv: (actions[kv[0]].occurred_on, kv[0].pos))
    ]) or "none"  # fmt: skip
    jp_text = _listed([
        f"{s.ref().key.split('/')[-1]} ({s.ref().record_id[:12]}) of {n} on {day}"
        for day, _, s, n in dated
    ])  # fmt: skip
    refs = [*index.issuance_refs(ft), *index.issuance_refs(jp)]
    since = None
    running = 0
    for day, _, _, n in dated:  # the first of Japan's credits not yet first transferred
        running += n
        if running > transferred:
            since = day
            break
    if transferred < issued and since is not None and (as_of is not None or not ft):
        verdict.timed = as_of is not None
        clock = Deadline(since, grace, as_of)
        if not clock.passed:
            when = clock.awaited("a6-first-transfer-mirror")
            verdict.pending.append(clock.pending(
                what="first_transfer", subject=subject,
                summary=f"Japan issued {issued} credits of {subject} ({jp_text}), within "
                f"{partner}'s authorization {aid}; {partner} has recorded first transfers "
                f"of {transferred} ({ft_text}), {issued - transferred} to go"
                + (f", awaited{when}" if when else ""),
                records=tuple(refs), missing=(partner,),
            ))  # fmt: skip
            return verdict
    late = ""
    if as_of is not None and since is not None and transferred < issued:
        late = "; " + Deadline(since, grace, as_of).ended()
    # what is in doubt: with fewer first transfers, which of Japan's credits are not ITMOs
    # cannot be told (a first transfer states a quantity, not serials), so all of them;
    # with more, every credit Japan issued is first transferred and none is in doubt
    ranges = []
    if transferred < issued:
        ranges = [
            r for r in index.issuance_ranges("JP", jp)
            if _vintage_of(index, r, jp) in (vintage, None)
        ]  # fmt: skip
    held = (
        f"; holds Japan's {sum(r.quantity for r in ranges)} issued serials of {subject}, as "
        "no record says which of them are not first transferred"
        if ranges
        else "; holds nothing, as every credit Japan issued is first transferred"
    )
    verdict.findings.append(finding(
        "a6-first-transfer-mirror", [partner, project, str(vintage)], subject,
        f"{partner} recorded first transfers of {transferred} ITMOs of {subject} "
        f"({ft_text}); Japan issued {issued} ({jp_text}), within {partner}'s authorization "
        f"{aid}{late}{held}. Settled when {partner}'s first transfers add up to Japan's issuance "
        "(the missing first transfer, or a correction of the wrong record)",
        refs, ranges, expected=issued, found=transferred,
    ))  # fmt: skip
    return verdict


def _vintage_of(index: Index, rng: SerialRange, slots: Iterable[Slot]) -> int | None:
    """The vintage stated for the issued block ``rng`` is (for a finding's ranges)."""
    for s in slots:
        assert s.current is not None
        rec = index.record(s.current)
        for b in getattr(rec, "blocks", ()):
            if block_range("JP", b) == rng:
                vintage: int | None = b.vintage
                return vintage
    return None


def judge_use_mirror(index: Index, party: str) -> Judgement:
    """Rule 6, mirror of use: group ``party``'s unpaired records by overlapping serials."""
    mirror = index.tables.mirrors.get(party)
    members: dict[Slot, list[SerialRange]] = {}
    if mirror is not None:
        for sig in mirror.unmatched:
            for slot in (*mirror.txs.get(sig, ()), *mirror.actions.get(sig, ())):
                members[slot] = index.action_ranges(party, [slot])
    ordered = sorted(members, key=lambda s: s.pos)
    parent = {s: s for s in ordered}

    def find(s: Slot) -> Slot:
        while parent[s] is not s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if any(x.overlaps(y) for x in members[a] for y in members[b]):
                parent[find(b)] = find(a)
    groups: dict[Slot, list[Slot]] = {}
    for s in ordered:
        groups.setdefault(find(s), []).append(s)
    amounts: dict[Slot, tuple[bool, int]] = {}  # registry side?, its amount
    for s in ordered:
        assert s.current is not None
        rec = index.record(s.current)
        if isinstance(rec, TransactionRecord):
            amounts[s] = (True, rec.amount)
        elif isinstance(rec, ItmoActionRecord):
            amounts[s] = (False, rec.quantity)
    findings = []
    for root, group in groups.items():
        refs = sorted((s.ref() for s in group), key=lambda r: (r.kind, r.key))
        retired = sum(n for s in group for reg, n in [amounts[s]] if reg)
        reported = sum(n for s in group for reg, n in [amounts[s]] if not reg)
        findings.append(finding(
            "a6-use-mirror", [party, *(f"{r.kind}:{r.key}" for r in refs)],
            f"{party} use of " + ", ".join(r.key for r in refs),
            _use_mirror_summary(party, group, [s for s in ordered if find(s) is not root],
                                amounts, members),
            refs, [r for s in group for r in members[s]], expected=retired, found=reported,
        ))  # fmt: skip
    return Judgement(findings)


_LISTED = 3
"""Records of the other side a use-mirror summary lists by name; it counts the rest."""


def _use_mirror_summary(
    party: str,
    group: list[Slot],
    others: list[Slot],
    amounts: dict[Slot, tuple[bool, int]],
    members: dict[Slot, list[SerialRange]],
) -> str:
    """Both sides of an ``a6-use-mirror`` group: the registry's retirements and the ITMO
    actions among its records, each with its amount, record and serials; when one side is
    missing from the group, the party's unpaired records of that side elsewhere (what the
    group would pair with if their serials were corrected); and what would settle it."""

    def listed(slots: list[Slot]) -> str:
        text = "; ".join(
            f"{s.ref().describe()}, {amounts[s][1]} on "
            + ", ".join(r.describe() for r in members[s])
            for s in slots[:_LISTED]
        )
        return text + (f"; and {len(slots) - _LISTED} more" if len(slots) > _LISTED else "")

    sides = {
        True: ("registry retired or cancelled", "retirement or cancellation"),
        False: ("ITMO actions report", "ITMO use or voluntary cancellation"),
    }
    parts = []
    for reg in (True, False):
        mine = [s for s in group if amounts[s][0] is reg]
        verb, noun = sides[reg]
        if mine:
            total = sum(amounts[s][1] for s in mine)
            parts.append(f"{party}'s {verb} {total} ({listed(mine)})")
            continue
        elsewhere = [s for s in others if amounts[s][0] is reg]
        if elsewhere:
            total = sum(amounts[s][1] for s in elsewhere)
            parts.append(
                f"no {noun} of {party} names these serials, while {party}'s unpaired "
                f"{verb.replace('registry', 'registry records')} {total} for other serials "
                f"({listed(elsewhere)})"
            )
        else:
            parts.append(f"no {noun} of {party} names these serials, and none is unpaired")
    return (
        f"{parts[0]}; {parts[1]}. Settled when {party} records the "
        "retirement and its ITMO action with the same serial blocks (a correction of the "
        "wrong one, or the missing record)"
    )
