"""Article 6.2: authorizations, caps, scope and the two mirrors (reconciler rule 6).

Why this module exists: Article 6.2 of the Paris Agreement adds records the Kyoto stages
never had (authorizations, ITMO actions), checked against each other and against the
registries' issuances and retirements. These checks are this module's, apart from the
index that files the facts they read (``engine``, ``tables``).

Three functions, one per kind of unit, each taking the index and the unit's key and
returning a ``Judgement``; they read the index and change nothing:

* ``judge_authorization`` (unit: an authorization id): every ITMO action names an
  authorization held in the snapshot, a first transfer one of its own Party
  (``a6-authorization-unknown``); first transfers stay within the authorization's
  projects, vintages and purposes (``a6-out-of-scope``) and under its cap
  (``a6-cap-exceeded``, naming the transfer that crossed it and every one after);
* ``judge_first_transfer_mirror`` (unit: a project and vintage): within a partner
  authorization's scope, the partner's first transfers equal Japan's issued amount
  (``a6-first-transfer-mirror``); none yet is pending. This is the working definition of
  ADR 0008 (the JCM has published none): the one function to change when it is settled;
* ``judge_use_mirror`` (unit: a Party): a retirement or cancellation with a ``purpose``
  and the ITMO ``use`` or ``voluntary_cancellation`` reporting it have the same serial
  blocks; records that do not pair up are grouped by overlapping serials, one
  ``a6-use-mirror`` finding per group.

Everything they list is in a stable order (slot positions, sorted keys), never in set
order (reconciler rule 8).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import (
    AuthorizationRow,
    Discrepancy,
    Pending,
    SerialRange,
    finding,
)
from jcm_sync.core.reconcile.slots import Action, Slot, block_range
from jcm_sync.core.records import AuthorizationRecord, ItmoActionRecord, TransactionRecord


@dataclass
class AuthorizationJudgement(Judgement):
    """An authorization id's findings, and its rows of the report's Article 6.2 stage."""

    rows: list[AuthorizationRow] = field(default_factory=list)


def judge_authorization(index: Index, aid: str) -> AuthorizationJudgement:
    """Rule 6: actions naming ``aid`` against the authorizations holding that id."""
    auths: dict[str, AuthorizationRecord] = {}
    auth_slots = index.tables.auths.get(aid, {})
    for party, s in auth_slots.items():
        assert s.current is not None
        rec = index.record(s.current)
        assert isinstance(rec, AuthorizationRecord)
        auths[party] = rec
    actions = sorted(index.tables.actions.get(aid, {}).items(), key=lambda kv: kv[0].pos)
    findings: list[Discrepancy] = []
    first: dict[str, list[tuple[Slot, Action]]] = {}
    for slot, a in actions:
        label = f"itmo_action {slot.key}"
        own = auths.get(a.party)
        if a.action == "first_transfer":
            if own is None:
                others = sorted(auths)
                held = ", ".join(f"{p}'s {auth_slots[p].ref().describe()}" for p in others)
                why = (
                    f"authorization {aid} is held only as {held}, and a first "
                    f"transfer needs its own Party's ({a.party}). Settled when {a.party} "
                    f"records its authorization {aid}, or corrects the first transfer to "
                    f"name one of its own"
                    if others
                    else f"authorization {aid} is in neither log. Settled when {a.party} "
                    f"records authorization {aid}, or corrects the first transfer to name "
                    "one it recorded"
                )
                findings.append(finding(
                    "a6-authorization-unknown", [slot.key], label,
                    f"{a.party} first transfer {a.action_id} ({slot.ref().record_id[:12]}) of "
                    f"{a.quantity} ITMOs of {a.project} vintage {a.vintage}: {why}",
                    [slot.ref()],
                    index.action_ranges(a.party, [slot]),
                ))  # fmt: skip
                continue
            first.setdefault(a.party, []).append((slot, a))
            reasons = []
            if own.projects and a.project not in own.projects:
                reasons.append(f"project {a.project} is not among {', '.join(own.projects)}")
            if own.vintages and a.vintage not in own.vintages:
                listed = ", ".join(map(str, own.vintages))
                reasons.append(f"vintage {a.vintage} is not among {listed}")
            if a.purpose is not None and a.purpose not in own.purposes:
                reasons.append(f"purpose {a.purpose} is not among {', '.join(own.purposes)}")
            if reasons:
                findings.append(finding(
                    "a6-out-of-scope", [slot.key], label,
                    f"{a.party} first transfer {a.action_id} under {aid}: "
                    + "; ".join(reasons),
                    [auth_slots[a.party].ref(), slot.ref()],
                    index.action_ranges(a.party, [slot]),
                ))  # fmt: skip
        elif not auths:
            findings.append(finding(
                "a6-authorization-unknown", [slot.key], label,
                f"{a.party} {a.action.replace('_', ' ')} {a.action_id} names authorization "
                f"{aid}, which is in neither log",
                [slot.ref()], index.action_ranges(a.party, [slot]),
            ))  # fmt: skip
    rows = []
    for party, auth in sorted(auths.items()):
        total, crossed = 0, None
        transfers = first.get(party, [])
        for n, (_, a) in enumerate(transfers):
            total += a.quantity
            if crossed is None and total > auth.cap:
                crossed = n
        rows.append(AuthorizationRow(party, aid, auth.cap, total))
        if crossed is not None:
            over = [s for s, _ in transfers[crossed:]]
            findings.append(finding(
                "a6-cap-exceeded", [party, aid], f"authorization {party}/{aid}",
                f"{party}'s first transfers under {aid} total {total}, over its cap of "
                f"{auth.cap} by {total - auth.cap}",
                [auth_slots[party].ref(), *(s.ref() for s in over)],
                index.action_ranges(party, over), expected=auth.cap, found=total,
            ))  # fmt: skip
    return AuthorizationJudgement(findings, rows=rows)


def _covered(index: Index, project: str, vintage: int) -> bool:
    """Whether a partner authorization's scope holds ``project`` and ``vintage``."""
    for parties in index.tables.auths.values():
        slot = parties.get(index.partner)
        if slot is None or slot.current is None:
            continue
        auth = index.record(slot.current)
        assert isinstance(auth, AuthorizationRecord)
        if (not auth.projects or project in auth.projects) and (
            not auth.vintages or vintage in auth.vintages
        ):
            return True
    return False


def judge_first_transfer_mirror(index: Index, project: str, vintage: int) -> Judgement:
    """Rule 6, mirror of the first transfer, for one (project, vintage)."""
    findings: list[Discrepancy] = []
    pending: list[Pending] = []
    jp = dict(index.tables.jp_vintage.get((project, vintage), ()))
    ft = dict(index.tables.first_transfers.get((project, vintage), ()))
    subject = f"{project} vintage {vintage}"
    if (jp or ft) and _covered(index, project, vintage):
        issued, transferred = sum(jp.values()), sum(ft.values())
        if not ft:
            if issued:
                pending.append(Pending(
                    what="first_transfer", subject=subject,
                    summary=f"Japan issued {issued} credits of {subject}, within "
                    f"{index.partner}'s authorization; {index.partner} has recorded no "
                    "first transfer of them yet",
                    records=tuple(index.issuance_refs(jp)), missing=(index.partner,),
                ))  # fmt: skip
        elif issued != transferred:
            ranges = [
                r for r in index.issuance_ranges("JP", jp)
                if _vintage_of(index, r, jp) in (vintage, None)
            ]  # fmt: skip
            findings.append(finding(
                "a6-first-transfer-mirror", [index.partner, project, str(vintage)], subject,
                f"{index.partner} recorded first transfers of {transferred} ITMOs of "
                f"{subject}; Japan issued {issued}",
                [*index.issuance_refs(ft), *index.issuance_refs(jp)], ranges,
                expected=issued, found=transferred,
            ))  # fmt: skip
    return Judgement(findings, pending)


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
