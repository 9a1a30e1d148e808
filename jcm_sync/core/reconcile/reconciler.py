"""The reconciler: folds both logs of a partnership into indexes and reports what disagrees.

Why this module exists: replication tells whether both sides hold the same records;
this tells whether those records agree with each other (DESIGN §5). It is pure: entries
in, a ``Report`` out, no clock, no I/O. It is also incremental, because a hub reconciles
31 partnerships on a schedule and their logs only grow: ``apply`` folds new entries into
indexes, ``report`` re-evaluates only what the new entries touched.

How: ``engine.Index``, which ``Reconciler`` extends, keeps the indexes, decides rules 1
and 2 and knows which units new entries touched (its docstring is the theory of
operation). The rules of each stage judge a unit from the index and return a
``Judgement``: ``rules_totals`` a decision (rules 3 and 4), ``ledger`` the serials of a
registry (stage 2), ``rules_article6`` an authorization, a (project, vintage) or a
Party's use (rule 6), ``rules_dependencies`` what a decision and its issuances rest on
and when (the project's registration, the decision's dates) and a project's
methodologies. ``report`` has the touched units judged, and assembles the report
with the trails and resolutions (rules 5, 7 and 8).

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
5. Stage 3: each range a finding holds (its ``ranges``: the serials in doubt) is traced
   through every record of that registry that issued or moved part of it
   (``ledger.RegistryLedger.trail``).
6. Article 6.2. Vintages are calendar years; an issuance's credits count in the vintage
   its blocks state (an issuance without blocks, or blocks without vintage, counts in its
   monitoring period's year when the period lies in one year, and is not counted for
   Article 6.2 otherwise).

   * Every ITMO action names an authorization held in the snapshot; a first transfer
     names an authorization of its own Party (``a6-authorization-unknown``).
   * A first transfer is judged under the version of its authorization in force on its
     date: before any, ``a6-before-authorization``; after a withdrawal,
     ``a6-authorization-withdrawn``; otherwise it stays within that version's projects,
     vintages and purposes (``a6-out-of-scope``). First transfers under one authorization
     sum, in date order, to at most the cap in force, and the finding names the transfer
     that crossed it and every one after (``a6-cap-exceeded``). (``rules_article6``.)
   * Mirror of the first transfer (working definition, docs reference §4.5 and open
     question 3): Japan's share is issued straight into Japan's registry, so the partner's
     first transfer of ITMOs is that issuance. For each (project, vintage) within a
     partner authorization's scope, the partner's first transfers equal Japan's issued
     amount (``a6-first-transfer-mirror``); fewer or none is pending for a grace period
     from Japan's issuance date, like rule 3's (without a day: none stays pending).
   * What ITMO actions rely on (``rules_itmo_chronology``): a Party's acquisitions, and
     its onward transfers, uses and cancellations, each add up to at most the partner's
     first transfers of their project and vintage (beyond is pending for a grace period,
     then ``a6-no-first-transfer``), and rely on none dated after them
     (``a6-use-before-first-transfer``); their serials were issued in their Party's
     registry, or for a first transfer in either Party's (``a6-serials-not-issued``).
   * Grace periods are per rule (``model.GRACE_DEFAULTS``, ``report(grace=...)``); the
     units whose judgement depends on the day are judged again when the day changes, and
     those depending on a rule's grace when that grace changes, and only then.
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

from collections.abc import Mapping
from datetime import UTC, date, datetime

import msgspec

from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import (
    GRACE_DEFAULTS,
    STAGE_ORDER,
    Article6Stage,
    AuthorizationRow,
    BlocksStage,
    Discrepancy,
    Explanation,
    Report,
    SerialRange,
    TotalsStage,
    Trail,
    TrailStep,
    run_status,
)
from jcm_sync.core.reconcile.rules_article6 import (
    judge_authorization,
    judge_first_transfer_mirror,
    judge_use_mirror,
)
from jcm_sync.core.reconcile.rules_dependencies import judge_dependencies, judge_methodologies
from jcm_sync.core.reconcile.rules_itmo_chronology import judge_itmo_backing, judge_serials
from jcm_sync.core.reconcile.rules_totals import judge_decision
from jcm_sync.core.reconcile.slots import Unit
from jcm_sync.core.records import IssuanceRecord, ResolutionRecord, TransactionRecord
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError

# --- the reconciler ---------------------------------------------------------------------

_TIMED_RULES: dict[str, frozenset[str]] = {
    "decision": frozenset({"issued-vs-notified"}),
    "ftm": frozenset({"a6-first-transfer-mirror", "a6-no-first-transfer"}),
}
"""The rules whose grace period a timed unit of each kind depends on (rules 3 and 6)."""


def resolve_grace(
    grace: Mapping[str, int] | None, issuance_grace_days: int | None = None
) -> dict[str, int]:
    """The grace period of every rule that has one: ``model.GRACE_DEFAULTS`` overridden
    by ``grace``, and by ``issuance_grace_days`` for ``issued-vs-notified`` (its older
    name). ``BadDataError`` for a rule without a grace period, a negative number of days,
    or two different figures for ``issued-vs-notified``."""
    days = dict(GRACE_DEFAULTS)
    for rule, n in (grace or {}).items():
        if rule not in days:
            raise BadDataError(
                f"rule {rule!r} has no grace period; the rules with one are "
                + ", ".join(sorted(days))
            )
        if n < 0:
            raise BadDataError(f"a grace period of {n} days is negative ({rule})")
        days[rule] = n
    if issuance_grace_days is not None:
        if issuance_grace_days < 0:
            raise BadDataError(f"a grace period of {issuance_grace_days} days is negative")
        named = (grace or {}).get("issued-vs-notified")
        if named is not None and named != issuance_grace_days:
            raise BadDataError(
                f"issued-vs-notified is given two grace periods, {named} and "
                f"{issuance_grace_days} days (issuance_grace_days is its older name)"
            )
        days["issued-vs-notified"] = issuance_grace_days
    return days


class Reconciler(Index):
    """Folds a partnership's two logs and reports (see the module docstring)."""

    def __init__(self, root: TrustRoot) -> None:
        super().__init__(root)
        self._decision_stats: dict[str, tuple[int, int, int]] = {}
        # rules 3 and 6, grace periods: the day and the grace per rule the units were
        # judged with, and the units whose judgement depends on them
        self._as_of: date | None = None
        self._grace: dict[str, int] = dict(GRACE_DEFAULTS)
        self._timed: set[Unit] = set()
        self._n_effective = self._n_compared = self._n_differing = 0
        self._auth_rows: dict[str, list[AuthorizationRow]] = {}

    # -- judging units ---------------------------------------------------------------

    def _judge(self, unit: Unit) -> None:
        """Ask the unit's rule for its judgement, and keep what the report counts of it."""
        if unit[0] == "decision":
            dk = unit[1]
            verdict = judge_decision(self, dk, self._as_of, self._grace["issued-vs-notified"])
            # running totals, so that a report costs what changed, not the number of decisions
            stats = verdict.stats
            old = self._decision_stats.pop(dk, (0, 0, 0))
            self._n_effective += stats[0] - old[0]
            self._n_compared += stats[1] - old[1]
            self._n_differing += stats[2] - old[2]
            if any(stats):
                self._decision_stats[dk] = stats
            self.judged(unit, verdict)
            self._set_timed(unit, verdict.timed)
        elif unit[0] == "auth":
            aid = unit[1]
            auth = judge_authorization(self, aid)
            self.judged(unit, auth)
            if auth.rows:
                self._auth_rows[aid] = auth.rows
            else:
                self._auth_rows.pop(aid, None)
        elif unit[0] == "ftm":
            project, vintage, day = unit[1], int(unit[2]), self._as_of
            mirror = judge_first_transfer_mirror(
                self, project, vintage, day, self._grace["a6-first-transfer-mirror"]
            )
            backing = judge_itmo_backing(
                self, project, vintage, day, self._grace["a6-no-first-transfer"]
            )
            self.judged(unit, Judgement(mirror.findings + backing.findings,
                                        mirror.pending + backing.pending))  # fmt: skip
            self._set_timed(unit, mirror.timed or backing.timed)
        elif unit[0] == "serials":
            self.judged(unit, judge_serials(self, unit[1]))
        elif unit[0] == "use":
            self.judged(unit, judge_use_mirror(self, unit[1]))
        elif unit[0] == "dependencies":
            self.judged(unit, judge_dependencies(self, unit[1]))
        elif unit[0] == "methodologies":
            self.judged(unit, judge_methodologies(self, unit[1]))

    def _set_timed(self, unit: Unit, timed: bool) -> None:
        if timed:
            self._timed.add(unit)
        else:
            self._timed.discard(unit)

    def _set_day(self, as_of: date | None, grace: dict[str, int]) -> None:
        """Rules 3 and 6: have the units judged again whose judgement the new day or a
        changed grace period may change, and only those."""
        changed = {r for r in grace if grace[r] != self._grace[r]}
        if as_of != self._as_of:
            self.mark_dirty(self._timed)
        elif changed:
            self.mark_dirty(u for u in self._timed if changed & _TIMED_RULES.get(u[0], frozenset()))
        self._as_of, self._grace = as_of, grace

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
        issuance_grace_days: int | None = None,
        grace: Mapping[str, int] | None = None,
    ) -> Report:
        """The report of everything applied so far (rules 5, 7 and 8), judged on the UTC
        day of ``now`` with the grace periods of ``grace`` (days by rule id, defaults
        ``model.GRACE_DEFAULTS``); ``issuance_grace_days`` is ``issued-vs-notified``'s."""
        if now is not None and now.utcoffset() is None:
            raise BadDataError("a reconciliation is judged at an aware time, not a naive one")
        days = resolve_grace(grace, issuance_grace_days)
        self._set_day(now.astimezone(UTC).date() if now is not None else None, days)
        self.settle()
        units = self.take_dirty()
        for unit in units:
            self._judge(unit)
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
