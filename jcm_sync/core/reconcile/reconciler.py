"""The reconciler: folds both logs of a partnership into indexes and reports what disagrees.

Why this module exists: replication tells whether both sides hold the same records;
this tells whether those records agree with each other (DESIGN §5). It is pure: entries
in, a ``Report`` out, no clock, no I/O. It is also incremental, because a hub reconciles
31 partnerships on a schedule and their logs only grow: ``apply`` folds new entries into
indexes, ``report`` re-evaluates only what the new entries touched.

How: ``engine.Index``, which this class extends, keeps the indexes and knows which units
the new entries touched (its docstring is the theory of operation); the rules of each
stage judge those units; ``report`` asks them and assembles the findings (rules 5, 7, 8).

Rules (the numbered rules of this module; the findings are listed in ``model.RULES``):

1. The snapshot is what the checkpoints commit to: the reconciler recomputes each log's
   Merkle root from the entries it was given (``position``), and ``reconcile`` refuses a
   snapshot whose entries do not hash to its roots.
2. Supersession: a record replaces the one it names only if both are of one kind and the
   same side may author both (the registry of an issuance or transaction, the Party of an
   authorization or ITMO action, the author of a resolution; either secretariat for a JC
   record); otherwise the link is ignored and reported (``invalid-supersession``). A JC
   record replaces its predecessor only once it is itself effective: a proposed change to
   a decision is not a decision.
3. Stage 1, per effective decision and side: the issued total (the side's current
   issuance records naming the decision) equals the notified amount
   (``issued-vs-notified``), and, when it does, its split by account type equals the
   decision's allocations (``allocation-vs-issued``): a side off in total is reported once.
   A side that has issued nothing yet is pending, not a discrepancy: the JC notified it
   and each registry issues on its own schedule. A side that has issued part of its
   notified amount is pending too, for a grace period (ADR 0011): ``report(now,
   issuance_grace_days=g)`` judges on the UTC day ``as_of`` of ``now``, and the side is
   ``issued-vs-notified`` from the day ``decided_on + g`` on (the decision's signed date,
   so both sides judge alike on the same day). Pending items carry their age in days.
   Issuing more than notified is a discrepancy at once. Without ``now`` there is no day
   to measure a grace period against, and a partly issued side is judged strictly, as a
   discrepancy (the pure core reads no clock). The decisions whose judgement depends on
   the day are re-evaluated when the day or the grace period changes, and only then.
4. Stage 2, per decision and registry: issuance records naming a decision that is not
   effective are ``issuance-before-decision-effective``; naming one that is in neither
   log, ``untraceable-issuance``. The serial rules are ``ledger``'s.
5. Stage 3: each range a finding names is traced through every record of that registry
   that issued or moved part of it (``ledger.RegistryLedger.trail``).
6. Article 6.2. Vintages are calendar years; an issuance's credits count in the vintage
   its blocks state (an issuance without blocks, or blocks without vintage, counts in its
   monitoring period's year when the period lies in one year, and is not counted for
   Article 6.2 otherwise).

   * Every ITMO action names an authorization held in the snapshot; a first transfer
     names an authorization of its own Party (``a6-authorization-unknown``).
   * A first transfer stays within its authorization's projects, vintages and purposes,
     each when the authorization lists any (``a6-out-of-scope``); first transfers under
     one authorization sum to at most its cap, and the finding names the transfer that
     crossed it and every one after (``a6-cap-exceeded``).
   * Mirror of the first transfer (working definition, docs reference §4.5 and open
     question 3): Japan's share is issued straight into Japan's registry, so the partner's
     first transfer of ITMOs is that issuance. For each (project, vintage) within a
     partner authorization's scope, the partner's first transfers equal Japan's issued
     amount (``a6-first-transfer-mirror``); none at all yet is pending.
   * Mirror of use: a retirement or cancellation carrying a ``purpose`` is an Article 6.2
     use and the registry's Party reports it as an ITMO ``use`` or
     ``voluntary_cancellation`` with the same serial blocks, and the reverse. Records that
     do not pair up are grouped by overlapping serials, one finding per group
     (``a6-use-mirror``). Actions and transactions without blocks are not mirrored.
7. A finding is ``explained`` when both secretariats' current ``resolution`` records for
   its id say ``explain``; ``correct`` resolutions list the correcting records; either
   way the finding is reported while the data still produces it.
8. Everything a report lists is sorted by stable keys, never by set or dict order of
   objects, so the same snapshot gives an identical report (tested with Hypothesis).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import msgspec

from jcm_sync.core.reconcile.engine import Index
from jcm_sync.core.reconcile.model import (
    DEFAULT_ISSUANCE_GRACE_DAYS,
    STAGE_ORDER,
    Article6Stage,
    AuthorizationRow,
    BlocksStage,
    Discrepancy,
    Explanation,
    Pending,
    Report,
    SerialRange,
    TotalsStage,
    Trail,
    TrailStep,
    finding,
    run_status,
)
from jcm_sync.core.reconcile.slots import (
    Action,
    Slot,
    Unit,
    block_range,
)
from jcm_sync.core.records import (
    AuthorizationRecord,
    IssuanceRecord,
    ItmoActionRecord,
    ResolutionRecord,
    TransactionRecord,
)
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError


def _label(dkey: str) -> str:
    project, start, end = dkey.split("/")
    return f"{project} {start}..{end}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


# --- the reconciler ---------------------------------------------------------------------


class Reconciler(Index):
    """Folds a partnership's two logs and reports (see the module docstring)."""

    def __init__(self, root: TrustRoot) -> None:
        super().__init__(root)
        self._decision_stats: dict[str, tuple[int, int, int]] = {}
        # rule 3, grace period: the day and grace the decision units were judged with, and
        # the decisions whose judgement depends on them
        self._as_of: date | None = None
        self._grace = DEFAULT_ISSUANCE_GRACE_DAYS
        self._timed: set[str] = set()
        self._n_effective = self._n_compared = self._n_differing = 0
        self._auth_rows: dict[str, list[AuthorizationRow]] = {}

    # -- evaluation of units ---------------------------------------------------------

    def _eval_decision(self, dk: str) -> None:
        """Rules 3 and 4 for one decision."""
        unit: Unit = ("decision", dk)
        slot = self.slot("issuance_decision", dk)
        current = slot.current if slot is not None else None
        by_side: dict[str, dict[Slot, tuple[int, str]]] = {}
        for s, (registry, amount, atype) in self.tables.issuances.get(dk, ()):
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
            refs = self.issuance_refs(issued)
            ranges = self.issuance_ranges(registry, issued)
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
                    f"{registry} issued {amount} credits under the decision for {period}, "
                    "which still awaits the signature or endorsement of "
                    + " and ".join(slot.missing),
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
            as_of, grace = self._as_of, self._grace
            age = None if as_of is None else max(0, (as_of - decided_on).days)
            due = decided_on + timedelta(days=grace)
            stats[0] = 1
            for side in self.sides:
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
                refs = [current.ref(), *self.issuance_refs(issued)]
                ranges = self.issuance_ranges(side, issued)
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
        # running totals, so that a report costs what changed, not the number of decisions
        old = self._decision_stats.pop(dk, (0, 0, 0))
        self._n_effective += stats[0] - old[0]
        self._n_compared += stats[1] - old[1]
        self._n_differing += stats[2] - old[2]
        if any(stats):
            self._decision_stats[dk] = (stats[0], stats[1], stats[2])
        self.judged(unit, findings, pending)
        if timed:
            self._timed.add(dk)
        else:
            self._timed.discard(dk)

    def _eval_authorization(self, aid: str) -> None:
        """Rule 6: actions naming ``aid`` against the authorizations holding that id."""
        unit: Unit = ("auth", aid)
        auths: dict[str, AuthorizationRecord] = {}
        auth_slots = self.tables.auths.get(aid, {})
        for party, s in auth_slots.items():
            assert s.current is not None
            rec = self.record(s.current)
            assert isinstance(rec, AuthorizationRecord)
            auths[party] = rec
        actions = sorted(self.tables.actions.get(aid, {}).items(), key=lambda kv: kv[0].pos)
        findings: list[Discrepancy] = []
        first: dict[str, list[tuple[Slot, Action]]] = {}
        for slot, a in actions:
            label = f"itmo_action {slot.key}"
            own = auths.get(a.party)
            if a.action == "first_transfer":
                if own is None:
                    others = sorted(auths)
                    why = (
                        f"authorization {aid} is {'/'.join(others)}'s, and a first transfer "
                        f"needs its own Party's ({a.party})"
                        if others
                        else f"authorization {aid} is in neither log"
                    )
                    findings.append(finding(
                        "a6-authorization-unknown", [slot.key], label,
                        f"{a.party} first transfer {a.action_id}: {why}", [slot.ref()],
                        self.action_ranges(a.party, [slot]),
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
                        self.action_ranges(a.party, [slot]),
                    ))  # fmt: skip
            elif not auths:
                findings.append(finding(
                    "a6-authorization-unknown", [slot.key], label,
                    f"{a.party} {a.action.replace('_', ' ')} {a.action_id} names authorization "
                    f"{aid}, which is in neither log",
                    [slot.ref()], self.action_ranges(a.party, [slot]),
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
                    self.action_ranges(party, over), expected=auth.cap, found=total,
                ))  # fmt: skip
        self.judged(unit, findings, [])
        if rows:
            self._auth_rows[aid] = rows
        else:
            self._auth_rows.pop(aid, None)

    def _covered(self, project: str, vintage: int) -> bool:
        for parties in self.tables.auths.values():
            slot = parties.get(self.partner)
            if slot is None or slot.current is None:
                continue
            auth = self.record(slot.current)
            assert isinstance(auth, AuthorizationRecord)
            if (not auth.projects or project in auth.projects) and (
                not auth.vintages or vintage in auth.vintages
            ):
                return True
        return False

    def _eval_first_transfer_mirror(self, project: str, vintage: int) -> None:
        """Rule 6, mirror of the first transfer, for one (project, vintage)."""
        unit: Unit = ("ftm", project, str(vintage))
        findings: list[Discrepancy] = []
        pending: list[Pending] = []
        jp = dict(self.tables.jp_vintage.get((project, vintage), ()))
        ft = dict(self.tables.first_transfers.get((project, vintage), ()))
        subject = f"{project} vintage {vintage}"
        if (jp or ft) and self._covered(project, vintage):
            issued, transferred = sum(jp.values()), sum(ft.values())
            if not ft:
                if issued:
                    pending.append(Pending(
                        what="first_transfer", subject=subject,
                        summary=f"Japan issued {issued} credits of {subject}, within "
                        f"{self.partner}'s authorization; {self.partner} has recorded no "
                        "first transfer of them yet",
                        records=tuple(self.issuance_refs(jp)), missing=(self.partner,),
                    ))  # fmt: skip
            elif issued != transferred:
                ranges = [
                    r for r in self.issuance_ranges("JP", jp)
                    if self._vintage_of(r, jp) in (vintage, None)
                ]  # fmt: skip
                findings.append(finding(
                    "a6-first-transfer-mirror", [self.partner, project, str(vintage)], subject,
                    f"{self.partner} recorded first transfers of {transferred} ITMOs of "
                    f"{subject}; Japan issued {issued}",
                    [*self.issuance_refs(ft), *self.issuance_refs(jp)], ranges,
                    expected=issued, found=transferred,
                ))  # fmt: skip
        self.judged(unit, findings, pending)

    def _vintage_of(self, rng: SerialRange, slots: Iterable[Slot]) -> int | None:
        """The vintage stated for the issued block ``rng`` is (for a finding's ranges)."""
        for s in slots:
            assert s.current is not None
            rec = self.record(s.current)
            for b in getattr(rec, "blocks", ()):
                if block_range("JP", b) == rng:
                    vintage: int | None = b.vintage
                    return vintage
        return None

    def _eval_use_mirror(self, party: str) -> None:
        """Rule 6, mirror of use: group unpaired records by overlapping serials."""
        unit: Unit = ("use", party)
        mirror = self.tables.mirrors.get(party)
        members: dict[Slot, list[SerialRange]] = {}
        if mirror is not None:
            for sig in mirror.unmatched:
                for slot in (*mirror.txs.get(sig, ()), *mirror.actions.get(sig, ())):
                    members[slot] = self.action_ranges(party, [slot])
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
        findings = []
        for group in groups.values():
            refs = sorted((s.ref() for s in group), key=lambda r: (r.kind, r.key))
            retired = reported = 0
            for s in group:
                assert s.current is not None
                rec = self.record(s.current)
                if isinstance(rec, TransactionRecord):
                    retired += rec.amount
                elif isinstance(rec, ItmoActionRecord):
                    reported += rec.quantity
            findings.append(finding(
                "a6-use-mirror", [party, *(f"{r.kind}:{r.key}" for r in refs)],
                f"{party} use of " + ", ".join(r.key for r in refs),
                f"{party}'s registry retired or cancelled {retired} credits for Article 6.2 "
                f"purposes where its ITMO actions report {reported}, for other serials "
                "or in other blocks",
                refs, [r for s in group for r in members[s]], expected=retired, found=reported,
            ))  # fmt: skip
        self.judged(unit, findings, [])

    # -- the report ------------------------------------------------------------------

    def _trail(self, rng: SerialRange) -> list[TrailStep]:
        """Rule 5: the ledger's claims on ``rng``, with what each record did."""
        ledger = self.ledgers.get(rng.registry)
        steps = []
        for part, ref in ledger.trail(rng) if ledger is not None else ():
            rec = self.record(self.version_by_id(ref.record_id))
            if isinstance(rec, IssuanceRecord):
                action, source, dest, on = "issuance", "", rec.account.id, rec.issued_on
            elif isinstance(rec, TransactionRecord):
                action, source, dest = rec.type, rec.source.id, rec.destination.id
                on = rec.executed_on
            else:  # pragma: no cover - the ledger folds only these two kinds
                continue
            steps.append(TrailStep(record=ref, action=action, range=part, source=source,
                                   destination=dest, on=on.isoformat()))  # fmt: skip
        return steps

    def _resolve(self, d: Discrepancy) -> Discrepancy:
        """Rule 7: the resolutions both sides signed for this finding."""
        by_author = self.tables.resolutions.get(d.id)
        if not by_author:
            return d
        explanations = []
        for author in sorted(by_author):
            slot = by_author[author]
            assert slot.current is not None
            rec = self.record(slot.current)
            assert isinstance(rec, ResolutionRecord)
            explanations.append(
                Explanation(
                    author=author,
                    action=rec.action,
                    record_id=slot.current.rid,
                    explanation=rec.explanation,
                    corrections=rec.corrections,
                )
            )
        explained = {e.author for e in explanations if e.action == "explain"}
        status = "explained" if self.required <= explained else "open"
        corrections = sorted({c for e in explanations for c in e.corrections})
        return msgspec.structs.replace(
            d, status=status, explanations=tuple(explanations), corrections=tuple(corrections)
        )

    def report(
        self,
        now: datetime | None = None,
        *,
        issuance_grace_days: int = DEFAULT_ISSUANCE_GRACE_DAYS,
    ) -> Report:
        """The report of everything applied so far (rules 5, 7 and 8), judged on the UTC
        day of ``now`` with a grace period of ``issuance_grace_days`` (rule 3)."""
        if now is not None and now.utcoffset() is None:
            raise BadDataError("a reconciliation is judged at an aware time, not a naive one")
        if issuance_grace_days < 0:
            raise BadDataError(f"a grace period of {issuance_grace_days} days is negative")
        as_of = now.astimezone(UTC).date() if now is not None else None
        if (as_of, issuance_grace_days) != (self._as_of, self._grace):
            self._as_of, self._grace = as_of, issuance_grace_days
            self.mark_dirty(("decision", dk) for dk in self._timed)
        self.settle()
        units = self.take_dirty()
        for unit in units:
            if unit[0] == "decision":
                self._eval_decision(unit[1])
            elif unit[0] == "auth":
                self._eval_authorization(unit[1])
            elif unit[0] == "ftm":
                self._eval_first_transfer_mirror(unit[1], int(unit[2]))
            elif unit[0] == "use":
                self._eval_use_mirror(unit[1])
        found: dict[str, Discrepancy] = {}
        for d in self.unit_findings():
            found[d.id] = d
        for ledger in self.ledgers.values():
            found.update(ledger.findings)
        discrepancies = sorted(
            (self._resolve(d) for d in found.values()),
            key=lambda d: (STAGE_ORDER[d.stage], d.rule, d.subject, d.id),
        )
        trails = []
        for d in discrepancies:
            for rng in d.ranges:
                steps = self._trail(rng)
                trails.append(Trail(discrepancy_id=d.id, range=rng, steps=tuple(steps)))
        pending = sorted(
            self.unit_pending(),
            key=lambda p: (p.what, p.subject, p.summary, p.records),
        )
        self.release()
        ledgers = [self.ledgers[r] for r in sorted(self.ledgers)]
        return Report(
            partnership=self.partnership,
            logs=tuple(self.log_positions()),
            status=run_status(discrepancies),
            totals=TotalsStage(
                decisions=self._n_effective,
                sides_compared=self._n_compared,
                sides_differing=self._n_differing,
                balances=tuple(row for ledger in ledgers for row in ledger.balance_rows()),
            ),
            blocks=BlocksStage(
                registries=tuple(ledger.registry for ledger in ledgers),
                issued_blocks=sum(ledger.issued_blocks for ledger in ledgers),
                issued_serials=sum(ledger.issued_serials for ledger in ledgers),
                moved_blocks=sum(ledger.moved_blocks for ledger in ledgers),
                moved_serials=sum(ledger.moved_serials for ledger in ledgers),
            ),
            article6=Article6Stage(
                authorizations=tuple(
                    row for aid in sorted(self._auth_rows) for row in self._auth_rows[aid]
                ),
                actions=self.tables.action_count,
            ),
            trails=tuple(trails),
            pending=tuple(pending),
            discrepancies=tuple(discrepancies),
        )
