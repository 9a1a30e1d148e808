"""The index tables: what the current version of each record contributes, by unit.

Why this module exists: the rules judge units (a decision, an authorization, a (project,
vintage), a Party's use mirror, a decision's dependencies, a project's methodologies)
from facts filed by many records; this is where those facts are filed and withdrawn as
versions come and go (``engine`` theory: "Contributions"), apart from the choice of which
version counts (``engine``) and from the judging (the rules).

Invariants:

1. ``add`` and ``retract`` are inverse: ``add`` remembers on ``slot.contrib`` exactly what
   it filed, so ``retract`` withdraws it without decoding the record again.
2. Every unit whose facts change is added to ``dirty``; nothing else is. The reconciler
   judges the dirty units and only them, so a report costs what changed.
3. Tables hold tuples of untracked items (``slots.Bag``), never a container per record.
4. The tables are read by the rules and written only here.
5. What the tables keep of a record shares its strings and days with the other records:
   registries, sides and account types are interned, days are one object per day
   (``days``). A decoded string or date is a new object per record, and the facts
   outlive their records (ADR 0055).
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Final

from jcm_sync.core.reconcile.slots import (
    Action,
    Bag,
    Issued,
    Mirror,
    Share,
    Slot,
    Unit,
    bag_add,
    bag_remove,
    decision_key,
    mirror_sig,
    serial_registries,
    vintages_of,
)
from jcm_sync.core.records import (
    AuthorizationRecord,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    MethodologyRecord,
    ProjectRecord,
    Record,
    ResolutionRecord,
    TransactionRecord,
)

MIRRORED: Final = {"retirement": "use", "cancellation": "voluntary_cancellation"}
"""Rule 6, use mirror: registry transaction type -> the ITMO action that reports it."""


class Tables:
    """The facts the rules read, filed per unit, and the units changed since last judged."""

    def __init__(self, partner: str) -> None:
        self.partner = partner
        # "bags": tuples of (slot, value), not dicts: one dict per decision would be a
        # tracked container each, where a tuple of untracked items is untracked
        self.issuances: dict[str, Bag[Issued]] = {}
        """Per decision key: (registry, amount, account type) of each current issuance."""
        self.jp_vintage: dict[tuple[str, int], Bag[int]] = {}
        """Per (project, vintage): the credits of each of Japan's issuances."""
        self.first_transfers: dict[tuple[str, int], Bag[int]] = {}
        """Per (project, vintage): the quantity of each of the partner's first transfers."""
        self.auths: dict[str, dict[str, Slot]] = {}
        """Per authorization id: the authorization of each Party holding that id."""
        self.actions: dict[str, dict[Slot, Action]] = {}
        """Per authorization id: the ITMO actions naming it."""
        self.pv_actions: dict[tuple[str, int], Bag[Action]] = {}
        """Per (project, vintage): every ITMO action of either Party (chronology, rule 6)."""
        self.serial_claims: dict[str, Bag[tuple[str, ...]]] = {}
        """Per serial prefix: the ITMO actions naming serials of it, each with the
        registries its serials may have been issued in (serial provenance, rule 6)."""
        self.action_count = 0
        self.mirrors: dict[str, Mirror] = {}
        """Per Party: its use mirror (rule 6)."""
        self.resolutions: dict[str, dict[str, Slot]] = {}
        """Per discrepancy id: each author's resolution of it (rule 7)."""
        # dependencies and chronology (``rules_dependencies``): a project's and a
        # methodology's facts are on their slot's ``contrib``, an issuance's day too
        self.project_decisions: dict[str, dict[str, int]] = {}
        """Per project: the decision keys its current decisions and issuances name, with
        how many name each (a project's change is judged in those "dependencies" units)."""
        self.methodology_versions: dict[str, Bag[None]] = {}
        """Per methodology id: the slot of each of its versions."""
        self.methodology_users: dict[str, Bag[str]] = {}
        """Per methodology id: the projects whose current record names it."""
        self.dirty: set[Unit] = set()
        self.days: dict[date, date] = {}
        """One object per day the facts name (a decided_on, an issued_on): hundreds of
        thousands of facts name a few thousand days (invariant 5)."""

    def add(self, slot: Slot, record: Record) -> str | None:
        """File ``record``, the slot's current version, and remember it on ``slot.contrib``.

        Returns the registry whose serial fold the record joins (issuances and
        transactions), or None."""
        if isinstance(record, IssuanceRecord):
            decision, registry = record.decision, sys.intern(record.registry)
            project = sys.intern(decision.project_id)
            dk = sys.intern(decision_key(project, decision.monitoring_period))
            fact = Issued(registry, record.amount, sys.intern(record.account.type))
            bag_add(self.issuances, dk, slot, fact)
            self.dirty.add(("decision", dk))
            vintages = vintages_of(record) if registry == "JP" else {}
            for vintage, n in vintages.items():
                bag_add(self.jp_vintage, (project, vintage), slot, n)
                self.dirty.add(("ftm", project, str(vintage)))
            if self.serial_claims:  # ITMO actions naming these serials are judged again
                for b in record.blocks:
                    if b.prefix in self.serial_claims:
                        self.dirty.add(("serials", b.prefix))
            self._named(project, dk, +1)
            issued_on = self.days.setdefault(record.issued_on, record.issued_on)
            slot.contrib = ("issuance", dk, registry, project, tuple(vintages),
                            issued_on)  # fmt: skip
            return registry
        if isinstance(record, TransactionRecord):
            mirrored = MIRRORED.get(record.type)
            sig = None
            if mirrored and record.purpose is not None and record.blocks:
                sig = mirror_sig(mirrored, record.blocks)
                self._mirror(record.registry).change("txs", sig, slot, +1)
                self.dirty.add(("use", record.registry))
            registry = sys.intern(record.registry)
            slot.contrib = ("transaction", registry, sig)
            return registry
        if isinstance(record, IssuanceDecisionRecord):
            shares = []
            for share in record.shares:
                by_type: dict[str, int] = {}
                for a in share.allocations:
                    atype = sys.intern(a.account_type)
                    by_type[atype] = by_type.get(atype, 0) + a.amount
                allocated = tuple(sorted(by_type.items())) if share.allocations else None
                shares.append(Share(sys.intern(share.side), share.notified, allocated))
            decided_on = self.days.setdefault(record.decided_on, record.decided_on)
            slot.contrib = ("decision", slot.key, tuple(shares), decided_on)
            self.dirty.add(("decision", slot.key))
            self._named(sys.intern(record.project_id), slot.key, +1)
        elif isinstance(record, AuthorizationRecord):
            aid, party = record.authorization_id, record.party
            self.auths.setdefault(aid, {})[party] = slot
            slot.contrib = ("authorization", aid, party)
            self._authorization_changed(aid, party)
        elif isinstance(record, ItmoActionRecord):
            action = Action(record.party, record.action_id, record.action, record.project_id,
                            record.vintage, record.purpose, record.quantity,
                            record.occurred_on)  # fmt: skip
            aid = record.authorization_id
            self.actions.setdefault(aid, {})[slot] = action
            self.action_count += 1
            self.dirty.add(("auth", aid))
            pv = (sys.intern(record.project_id), record.vintage)
            bag_add(self.pv_actions, pv, slot, action)
            self.dirty.add(("ftm", pv[0], str(pv[1])))
            prefixes = tuple(sorted({sys.intern(b.prefix) for b in record.blocks}))
            if prefixes:
                registries = serial_registries(record, self.partner)
                for prefix in prefixes:
                    bag_add(self.serial_claims, prefix, slot, registries)
                    self.dirty.add(("serials", prefix))
            if record.action == "first_transfer" and record.party == self.partner:
                bag_add(self.first_transfers, pv, slot, record.quantity)
                self.dirty.add(("ftm", pv[0], str(pv[1])))
            sig = None
            if record.action in MIRRORED.values() and record.blocks:
                sig = mirror_sig(record.action, record.blocks)
                self._mirror(record.party).change("actions", sig, slot, +1)
                self.dirty.add(("use", record.party))
            slot.contrib = ("itmo_action", aid, action, sig, prefixes)
        elif isinstance(record, ResolutionRecord):
            self.resolutions.setdefault(record.discrepancy_id, {})[record.author] = slot
            slot.contrib = ("resolution", record.discrepancy_id, record.author)
        elif isinstance(record, ProjectRecord):
            pid = sys.intern(record.project_id)
            methodologies = tuple(sorted(set(record.methodologies)))
            for m in methodologies:
                bag_add(self.methodology_users, m, slot, pid)
            slot.contrib = ("project", pid, record.status, record.registered_on,
                            record.status_since, methodologies)  # fmt: skip
            self._project_changed(pid)
        elif isinstance(record, MethodologyRecord):
            mid = record.methodology_id
            bag_add(self.methodology_versions, mid, slot, None)
            slot.contrib = ("methodology", mid, record.status, record.approved_on,
                            record.status_since)  # fmt: skip
            self._methodology_changed(mid)
        return None

    def retract(self, slot: Slot) -> str | None:
        """Withdraw what ``add`` filed for this slot.

        Returns the registry whose serial fold must be replayed without it, or None."""
        c, slot.contrib = slot.contrib, None
        assert c is not None
        what = c[0]
        if what == "decision":
            self.dirty.add(("decision", str(c[1])))
            self._named(str(c[1]).split("/", 1)[0], str(c[1]), -1)
        elif what == "issuance":
            _, dk, registry, project, vintages, _issued_on = c
            assert isinstance(dk, str)
            assert isinstance(registry, str)
            assert isinstance(project, str)
            bag_remove(self.issuances, dk, slot)
            self.dirty.add(("decision", dk))
            self._named(project, dk, -1)
            for vintage in vintages:  # type: ignore[attr-defined]
                bag_remove(self.jp_vintage, (project, vintage), slot)
                self.dirty.add(("ftm", project, str(vintage)))
            # rare (a correction): its serials are not kept, so every claim is judged again
            self.dirty.update(("serials", prefix) for prefix in self.serial_claims)
            return registry
        elif what == "transaction":
            _, registry, sig = c
            assert isinstance(registry, str)
            if sig is not None:
                self._mirror(registry).change("txs", sig, slot, -1)  # type: ignore[arg-type]
                self.dirty.add(("use", registry))
            return registry
        elif what == "authorization":
            _, aid, party = c
            assert isinstance(aid, str)
            assert isinstance(party, str)
            self.auths.get(aid, {}).pop(party, None)
            self._authorization_changed(aid, party)
        elif what == "itmo_action":
            _, aid, fact, sig, prefixes = c
            assert isinstance(aid, str)
            assert isinstance(fact, Action)
            self.actions.get(aid, {}).pop(slot, None)
            self.action_count -= 1
            self.dirty.add(("auth", aid))
            pv = (fact.project, fact.vintage)
            bag_remove(self.pv_actions, pv, slot)
            self.dirty.add(("ftm", pv[0], str(pv[1])))
            for prefix in prefixes:  # type: ignore[attr-defined]
                bag_remove(self.serial_claims, prefix, slot)
                self.dirty.add(("serials", prefix))
            if bag_remove(self.first_transfers, pv, slot):
                self.dirty.add(("ftm", pv[0], str(pv[1])))
            if sig is not None:
                self._mirror(fact.party).change("actions", sig, slot, -1)  # type: ignore[arg-type]
                self.dirty.add(("use", fact.party))
        elif what == "resolution":
            _, did, author = c
            assert isinstance(did, str)
            assert isinstance(author, str)
            self.resolutions.get(did, {}).pop(author, None)
        elif what == "project":
            pid, methodologies = str(c[1]), c[5]
            for m in methodologies:  # type: ignore[attr-defined]
                bag_remove(self.methodology_users, m, slot)
            self._project_changed(pid)
        elif what == "methodology":
            bag_remove(self.methodology_versions, str(c[1]), slot)
            self._methodology_changed(str(c[1]))
        return None

    def _named(self, project: str, dk: str, n: int) -> None:
        """A decision or issuance under ``dk`` came (``n`` 1) or went (-1): count it for
        its project, and have the decision's dependencies judged again."""
        keys = self.project_decisions.get(project)
        if keys is None:
            keys = self.project_decisions[project] = {}
        left = keys.get(dk, 0) + n
        if left > 0:
            keys[dk] = left
        else:
            keys.pop(dk, None)
            if not keys:
                del self.project_decisions[project]
        self.dirty.add(("dependencies", dk))

    def _project_changed(self, pid: str) -> None:
        self.dirty.update(("dependencies", dk) for dk in self.project_decisions.get(pid, ()))
        self.dirty.add(("methodologies", pid))

    def _methodology_changed(self, mid: str) -> None:
        self.dirty.update(("methodologies", pid) for _, pid in self.methodology_users.get(mid, ()))

    def _authorization_changed(self, aid: str, party: str) -> None:
        self.dirty.add(("auth", aid))
        if party == self.partner:  # its scope decides which units mirror (rule 6)
            self.dirty.update(
                ("ftm", p, str(v)) for p, v in (*self.jp_vintage, *self.first_transfers)
            )

    def _mirror(self, party: str) -> Mirror:
        m = self.mirrors.get(party)
        if m is None:
            m = self.mirrors[party] = Mirror()
        return m
