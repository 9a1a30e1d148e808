"""The reconciler: folds both logs of a partnership into indexes and reports what disagrees.

Why this module exists: replication tells whether both sides hold the same records;
this tells whether those records agree with each other (DESIGN §5). It is pure: entries
in, a ``Report`` out, no clock, no I/O. It is also incremental, because a hub reconciles
31 partnerships on a schedule and their logs only grow: ``apply`` folds new entries into
indexes, ``report`` re-evaluates only what the new entries touched.

Theory of operation
-------------------

**Positions.** An entry's position is (0 for Japan's log or 1 for the partner's, index),
packed in one int (``ledger.position``).
The two logs are independent sequences; nothing here depends on how their entries were
interleaved when applied, only on positions, so any chunking of the same snapshot gives
the same report (tested).

**Slots and versions.** Records of one kind and natural key are versions of one record
(a *slot*). A version drops out when a record that may replace it names it in
``supersedes`` (rule 2). Of the versions left, envelopes of one payload are one record
with the union of their signers (a proposal and its co-signed copy, ADR 0001). One
record left is the slot's *current* version; two different ones are a
``conflicting-versions`` finding, and the later one counts.

**Effect.** A Joint Committee record (methodology, project, issuance decision) takes
effect when both secretariats signed it, or the one missing endorsed it (trust rule 6).
Until then it is *pending*, which is reported but is not a discrepancy.

**Contributions.** When a slot's current version changes (arrives, is superseded, takes
effect) its old version's contribution to the indexes is withdrawn and the new one's
added, and the *units* it contributes to are marked dirty: a decision (project and
monitoring period), an authorization id, a (project, vintage) of Article 6.2, a Party's
use mirror. ``report`` re-evaluates dirty units only and keeps every unit's findings, so
its cost follows what changed, not the size of the logs.

**Registries.** Issuances and transactions are folded per registry, in log order, into a
``ledger.RegistryLedger``. New records extend the fold; a record replaced after it was
folded (superseded, or a conflicting version) makes the registry's fold be replayed
from the start over current versions, in position order. Replays are rare: a registry
corrects a record by superseding it. A replay waits for the next ``report``, so a batch
of corrections costs one replay, not one per correction (540 corrections in a log of
8,000 once cost 100 s of replays).

**Memory.** A decoded record is some twenty Python objects; a large partnership has
hundreds of thousands. So ``apply`` settles each entry as it comes and then drops its
decoded record: a version keeps its payload bytes, its natural key and the few fields
the indexes need (amounts, accounts, vintages), and a record is decoded again only when a
finding must quote it or a registry's fold is replayed. Only the few kinds read on every
evaluation (authorizations, resolutions) stay decoded. The per-record objects (versions,
slots, the ledger's segments) are msgspec Structs the garbage collector does not track,
and form no reference cycle; index values are tuples rather than dicts or lists for the
same reason. Without this, collection cost as much as the fold (bench/reconcile.py).

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

import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Final, TypeVar

import msgspec

from jcm_sync.core import merkle
from jcm_sync.core.reconcile.inputs import VerifiedEntry, decode_payload
from jcm_sync.core.reconcile.ledger import Pos, RegistryLedger, position
from jcm_sync.core.reconcile.model import (
    DEFAULT_ISSUANCE_GRACE_DAYS,
    STAGE_ORDER,
    Article6Stage,
    AuthorizationRow,
    BlocksStage,
    Discrepancy,
    Explanation,
    LogPosition,
    Pending,
    RecordRef,
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
    Bag,
    Mirror,
    Slot,
    Unit,
    Version,
    bag_add,
    bag_remove,
    block_range,
    decision_key,
    mirror_sig,
    side_of,
    version,
    vintages_of,
)
from jcm_sync.core.records import (
    JC_KINDS,
    AuthorizationRecord,
    EndorsementRecord,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    Record,
    ResolutionRecord,
    TransactionRecord,
)
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError

LEDGER_KINDS: Final = frozenset({"issuance", "transaction"})
KEEP_DECODED: Final = frozenset({"authorization", "resolution"})
"""Kinds read on every evaluation of their units, and few: they stay decoded."""
REPLAY_DECODED: Final = 4096
"""Records a ledger replay decodes before it drops them again (bounds its memory)."""

MIRRORED: Final = {"retirement": "use", "cancellation": "voluntary_cancellation"}
"""Rule 6, use mirror: registry transaction type -> the ITMO action that reports it."""

_T = TypeVar("_T")


def _label(dkey: str) -> str:
    project, start, end = dkey.split("/")
    return f"{project} {start}..{end}"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


class _LogAcc:
    """A log's size and Merkle frontier (rule 1), kept as a mutable stack for speed."""

    __slots__ = ("node", "order", "size", "stack")

    def __init__(self, node: str, order: int) -> None:
        self.node = node
        self.order = order
        self.size = 0
        self.stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        acc, carry = leaf, self.size
        while carry & 1:
            acc = merkle.node_hash(self.stack.pop(), acc)
            carry >>= 1
        self.stack.append(acc)
        self.size += 1

    def root(self) -> bytes:
        return merkle.EMPTY_ROOT if not self.size else merkle.hash_from_subtrees(self.stack)


# --- the reconciler ---------------------------------------------------------------------


class Reconciler:
    """Folds a partnership's two logs and reports (see the module docstring)."""

    def __init__(self, root: TrustRoot) -> None:
        self.root = root
        self.partnership = root.partnership
        self.partner = root.partner
        self.sides = ("JP", self.partner)
        self._required = frozenset(self.sides)
        self._logs = {"JP": _LogAcc("JP", 0), self.partner: _LogAcc(self.partner, 1)}
        self._by_id: dict[str, Version] = {}
        # by kind, then natural key: a (kind, key) tuple per record would cost 56 bytes each
        self._slots: dict[str, dict[str, Slot]] = {}
        self._superseders: dict[str, list[Version]] = {}
        self._endorsements: dict[str, list[tuple[str, str]]] = {}
        self._dirty: set[Slot] = set()
        self._decoded: list[Version] = []
        self._ledgers: dict[str, RegistryLedger] = {}
        self._ledger_slots: dict[str, list[Slot]] = {}
        self._replay: set[str] = set()
        # contributions (module: "Contributions")
        # "bags": tuples of (slot, value), not dicts: one dict per decision would be a
        # tracked container each, where a tuple of untracked items is untracked
        self._issuances: dict[str, Bag[tuple[str, int, str]]] = {}
        self._jp_vintage: dict[tuple[str, int], Bag[int]] = {}
        self._first_transfers: dict[tuple[str, int], Bag[int]] = {}
        self._auths: dict[str, dict[str, Slot]] = {}
        self._actions: dict[str, dict[Slot, Action]] = {}
        self._action_count = 0
        self._mirrors: dict[str, Mirror] = {}
        self._resolutions: dict[str, dict[str, Slot]] = {}
        # units
        self._dirty_units: set[Unit] = set()
        self._findings: dict[Unit, list[Discrepancy]] = {}
        self._pending: dict[Unit, list[Pending]] = {}
        self._decision_stats: dict[str, tuple[int, int, int]] = {}
        # rule 3, grace period: the day and grace the decision units were judged with, and
        # the decisions whose judgement depends on them
        self._as_of: date | None = None
        self._grace = DEFAULT_ISSUANCE_GRACE_DAYS
        self._timed: set[str] = set()
        self._n_effective = self._n_compared = self._n_differing = 0
        self._auth_rows: dict[str, list[AuthorizationRow]] = {}

    # -- input ---------------------------------------------------------------------

    def position(self) -> dict[str, tuple[int, bytes]]:
        """Each log's size and Merkle root over the entries applied so far (rule 1)."""
        return {node: (acc.size, acc.root()) for node, acc in self._logs.items()}

    def apply(self, node: str, entries: Iterable[VerifiedEntry], start: int | None = None) -> int:
        """Fold the next entries of ``node``'s log (from ``start``, which must be its size).

        Returns the log's new size. Entries must be verified (see ``inputs``).
        """
        acc = self._logs.get(node)
        if acc is None:
            raise BadDataError(f"{self.partnership} has no log of node {node}")
        if start is not None and start != acc.size:
            raise BadDataError(
                f"entries of {node}'s log start at {start}, but {acc.size} are folded",
                where=node,
            )
        for entry in entries:
            pos = position(acc.order, acc.size)
            acc.append(entry.leaf_hash)
            self._add(entry, pos)
            # settled entry by entry, so its decoded record can be dropped right away
            # (module theory: "Memory"); a registry fold to replay waits for the report,
            # so a run of corrections replays it once, not once per correction
            self._settle_slots(replay=False)
        return acc.size

    def _add(self, entry: VerifiedEntry, pos: Pos) -> None:
        rid = entry.record_id
        if rid in self._by_id:  # a store holds a record once per log; be idempotent anyway
            return
        record = entry.record
        if isinstance(record, EndorsementRecord):
            v = version(entry, pos, "/".join(record.key()), record.author)
            v.record = None
            self._by_id[rid] = v
            self._endorsements.setdefault(record.endorses, []).append(
                (v.author, record.endorsed_kind)
            )
            target = self._by_id.get(record.endorses)
            if target is not None:
                self._dirty_slot_of(target)
            return
        kind = entry.kind
        key = "/".join(record.key())
        of_kind = self._slots.get(kind)
        if of_kind is None:
            of_kind = self._slots[kind] = {}
        side = side_of(record)
        slot = of_kind.get(key)
        if slot is None:
            slot = of_kind[key] = Slot(kind, key, pos)
            if kind in LEDGER_KINDS:
                self._ledger_slots.setdefault(side, []).append(slot)
        v = version(entry, pos, slot.key, side)  # one key string for the slot and its versions
        self._decoded.append(v)
        self._by_id[rid] = v
        slot.versions = (*slot.versions, v)
        self._dirty.add(slot)
        if v.supersedes is not None:
            self._superseders.setdefault(v.supersedes, []).append(v)
            old = self._by_id.get(v.supersedes)
            if old is not None:
                self._dirty_slot_of(old)
        for s in self._superseders.get(rid, ()):
            self._dirty_slot_of(s)  # it may now be judged (rule 2)

    def _slot_of(self, v: Version) -> Slot | None:
        return self._slots.get(v.kind, {}).get(v.key)

    def _dirty_slot_of(self, v: Version) -> None:
        slot = self._slot_of(v)
        if slot is not None:
            self._dirty.add(slot)

    def _record(self, v: Version) -> Record:
        """The version's record, decoded again from its payload if it was dropped."""
        r = v.record
        if r is None:
            r = v.record = decode_payload(v.payload, v.kind)
            self._decoded.append(v)
        return r

    def _release(self) -> None:
        for v in self._decoded:
            if v.kind not in KEEP_DECODED:
                v.record = None
        self._decoded.clear()

    # -- slots -----------------------------------------------------------------------

    def _nodes(self, versions: Iterable[Version], kind: str) -> set[str]:
        """Signers of these envelopes, plus the secretariats that endorsed any of them."""
        nodes: set[str] = set()
        for v in versions:
            nodes |= v.signers
            for author, endorsed_kind in self._endorsements.get(v.rid, ()):
                if endorsed_kind == kind:
                    nodes.add(author)
        return nodes

    @staticmethod
    def _may_replace(new: Version, old: Version) -> bool:
        return new.kind == old.kind and new.side == old.side

    def _effective(self, v: Version) -> bool:
        """Whether ``v``'s payload has taken effect (its slot's envelopes of that payload)."""
        if v.kind not in JC_KINDS:
            return True
        slot = self._slot_of(v)
        same = [v] if slot is None else [w for w in slot.versions if w.payload == v.payload]
        return self._required <= self._nodes(same, v.kind)

    def _superseded(self, v: Version) -> bool:
        return any(
            self._may_replace(s, v) and self._effective(s) for s in self._superseders.get(v.rid, ())
        )

    def _recompute(self, slot: Slot) -> None:
        """Rules 2 and 6 of the slot: its current version, conflicts, pending signatures."""
        jc = slot.kind in JC_KINDS
        versions = slot.versions
        if len(versions) == 1 and not jc:
            # nearly every record: one version of a registry's or Party's record, which
            # names nothing it supersedes and which nothing supersedes yet
            v = versions[0]
            if v.supersedes is None and v.rid not in self._superseders:
                if slot.current is not v:
                    slot.group = versions
                    if slot.contrib is not None:
                        self._retract(slot)
                    slot.current, slot.effective = v, True
                    self._contribute(slot, v)
                return
        unit: Unit = ("slot", slot.kind, slot.key)
        findings: list[Discrepancy] = []
        label = f"{slot.kind} {slot.key}"
        for v in slot.versions:
            target = self._by_id.get(v.supersedes) if v.supersedes else None
            if target is not None and not self._may_replace(v, target):
                findings.append(finding(
                    "invalid-supersession", [slot.kind, slot.key, target.rid], label,
                    f"{label} by {v.author} claims to supersede {target.kind} {target.key}, "
                    "which it may not replace; the claim is ignored",
                    [v.ref(), target.ref()],
                ))  # fmt: skip
        # groups of live versions by payload, each with the nodes that made it effective
        groups: list[tuple[tuple[Version, ...], tuple[str, ...]]] = []
        if len(slot.versions) == 1 and not jc:  # the common case, without the dicts
            v = slot.versions[0]
            if not self._superseded(v):
                groups.append(((v,), ()))
        else:
            by_payload: dict[bytes, list[Version]] = {}
            for v in sorted(slot.versions, key=lambda v: v.pos):
                if not self._superseded(v):
                    by_payload.setdefault(v.payload, []).append(v)
            for same in by_payload.values():
                missing: tuple[str, ...] = ()
                if jc:
                    missing = tuple(sorted(self._required - self._nodes(same, slot.kind)))
                groups.append((tuple(same), missing))
            groups.sort(key=lambda g: g[0][-1].pos)
        effective = [g for g in groups if not g[1]]
        chosen = effective[-1] if effective else (groups[-1] if groups else None)
        if len(effective) > 1:
            findings.append(finding(
                "conflicting-versions", [slot.kind, slot.key], label,
                f"{len(effective)} different versions of {label}, none superseding the others; "
                "the latest counts",
                [g[0][-1].ref() for g in effective],
            ))  # fmt: skip
        if findings or unit in self._findings:
            self._set(self._findings, unit, findings)
        if jc:
            self._set(self._pending, ("jc", slot.kind, slot.key), [
                Pending(
                    what="signature", subject=label,
                    summary=f"{label} awaits the signature or endorsement of " + " and ".join(m),
                    records=tuple(v.ref() for v in vs), missing=m,
                )
                for vs, m in groups if m
            ])  # fmt: skip
            groups_now = tuple(sorted(g[0][0].rid for g in effective))
            if groups_now != slot.effective_groups:
                slot.effective_groups = groups_now
                # rule 2: a JC record that took effect now replaces what it supersedes
                for v in slot.versions:
                    old = self._by_id.get(v.supersedes) if v.supersedes else None
                    old_slot = self._slot_of(old) if old is not None else None
                    if old_slot is not None and old_slot is not slot:
                        self._dirty.add(old_slot)
        current = chosen[0][-1] if chosen else None
        is_effective = chosen is not None and not chosen[1]
        changed = current is not slot.current or is_effective != slot.effective
        # the versions tuple itself when it is the group, as for nearly every record
        group = chosen[0] if chosen else ()
        slot.group = slot.versions if group == slot.versions else group
        slot.missing = chosen[1] if chosen else ()
        if not changed:
            return
        if slot.contrib is not None:
            self._retract(slot)
        slot.current, slot.effective = current, is_effective
        if current is not None:
            self._contribute(slot, current)

    @staticmethod
    def _set(table: dict[Unit, list[_T]], unit: Unit, items: list[_T]) -> None:
        if items:
            table[unit] = items
        else:
            table.pop(unit, None)

    # -- contributions -------------------------------------------------------------

    def _contribute(self, slot: Slot, v: Version) -> None:
        """Add the current version's part in the indexes; ``slot.contrib`` remembers it,
        so that ``_retract`` can withdraw it without decoding the record again."""
        record = self._record(v)
        if isinstance(record, IssuanceRecord):
            dk = sys.intern(
                decision_key(record.decision.project_id, record.decision.monitoring_period)
            )
            fact = (record.registry, record.amount, sys.intern(record.account.type))
            bag_add(self._issuances, dk, slot, fact)
            self._dirty_units.add(("decision", dk))
            vintages = vintages_of(record) if record.registry == "JP" else {}
            project = sys.intern(record.decision.project_id)
            for vintage, n in vintages.items():
                bag_add(self._jp_vintage, (project, vintage), slot, n)
                self._dirty_units.add(("ftm", project, str(vintage)))
            slot.contrib = ("issuance", dk, record.registry, project, tuple(vintages))
            self._ledger_add(slot, record.registry)
        elif isinstance(record, TransactionRecord):
            mirrored = MIRRORED.get(record.type)
            sig = None
            if mirrored and record.purpose is not None and record.blocks:
                sig = mirror_sig(mirrored, record.blocks)
                self._mirror(record.registry).change("txs", sig, slot, +1)
                self._dirty_units.add(("use", record.registry))
            slot.contrib = ("transaction", record.registry, sig)
            self._ledger_add(slot, record.registry)
        elif isinstance(record, IssuanceDecisionRecord):
            shares = []
            for share in record.shares:
                by_type: dict[str, int] = {}
                for a in share.allocations:
                    by_type[a.account_type] = by_type.get(a.account_type, 0) + a.amount
                allocated = tuple(sorted(by_type.items())) if share.allocations else None
                shares.append((share.side, share.notified, allocated))
            slot.contrib = ("decision", slot.key, tuple(shares), record.decided_on)
            self._dirty_units.add(("decision", slot.key))
        elif isinstance(record, AuthorizationRecord):
            aid, party = record.authorization_id, record.party
            self._auths.setdefault(aid, {})[party] = slot
            slot.contrib = ("authorization", aid, party)
            self._authorization_changed(aid, party)
        elif isinstance(record, ItmoActionRecord):
            action = Action(record.party, record.action_id, record.action, record.project_id,
                           record.vintage, record.purpose, record.quantity)  # fmt: skip
            aid = record.authorization_id
            self._actions.setdefault(aid, {})[slot] = action
            self._action_count += 1
            self._dirty_units.add(("auth", aid))
            if record.action == "first_transfer" and record.party == self.partner:
                pv = (record.project_id, record.vintage)
                bag_add(self._first_transfers, pv, slot, record.quantity)
                self._dirty_units.add(("ftm", pv[0], str(pv[1])))
            sig = None
            if record.action in MIRRORED.values() and record.blocks:
                sig = mirror_sig(record.action, record.blocks)
                self._mirror(record.party).change("actions", sig, slot, +1)
                self._dirty_units.add(("use", record.party))
            slot.contrib = ("itmo_action", aid, action, sig)
        elif isinstance(record, ResolutionRecord):
            self._resolutions.setdefault(record.discrepancy_id, {})[record.author] = slot
            slot.contrib = ("resolution", record.discrepancy_id, record.author)
        else:  # methodologies and projects: only their pending state, set in _recompute
            slot.contrib = ("jc",)

    def _retract(self, slot: Slot) -> None:
        """Withdraw what ``_contribute`` added for this slot."""
        c, slot.contrib = slot.contrib, None
        assert c is not None
        what = c[0]
        if what == "decision":
            self._dirty_units.add(("decision", str(c[1])))
        elif what == "issuance":
            _, dk, registry, project, vintages = c
            assert isinstance(dk, str)
            assert isinstance(registry, str)
            assert isinstance(project, str)
            bag_remove(self._issuances, dk, slot)
            self._dirty_units.add(("decision", dk))
            for vintage in vintages:  # type: ignore[attr-defined]
                bag_remove(self._jp_vintage, (project, vintage), slot)
                self._dirty_units.add(("ftm", project, str(vintage)))
            self._replay.add(registry)
        elif what == "transaction":
            _, registry, sig = c
            assert isinstance(registry, str)
            if sig is not None:
                self._mirror(registry).change("txs", sig, slot, -1)  # type: ignore[arg-type]
                self._dirty_units.add(("use", registry))
            self._replay.add(registry)
        elif what == "authorization":
            _, aid, party = c
            assert isinstance(aid, str)
            assert isinstance(party, str)
            self._auths.get(aid, {}).pop(party, None)
            self._authorization_changed(aid, party)
        elif what == "itmo_action":
            _, aid, fact, sig = c
            assert isinstance(aid, str)
            assert isinstance(fact, Action)
            self._actions.get(aid, {}).pop(slot, None)
            self._action_count -= 1
            self._dirty_units.add(("auth", aid))
            pv = (fact.project, fact.vintage)
            if bag_remove(self._first_transfers, pv, slot):
                self._dirty_units.add(("ftm", pv[0], str(pv[1])))
            if sig is not None:
                self._mirror(fact.party).change("actions", sig, slot, -1)  # type: ignore[arg-type]
                self._dirty_units.add(("use", fact.party))
        elif what == "resolution":
            _, did, author = c
            assert isinstance(did, str)
            assert isinstance(author, str)
            self._resolutions.get(did, {}).pop(author, None)

    def _authorization_changed(self, aid: str, party: str) -> None:
        self._dirty_units.add(("auth", aid))
        if party == self.partner:  # its scope decides which units mirror (rule 6)
            self._dirty_units.update(
                ("ftm", p, str(v)) for p, v in (*self._jp_vintage, *self._first_transfers)
            )

    def _mirror(self, party: str) -> Mirror:
        m = self._mirrors.get(party)
        if m is None:
            m = self._mirrors[party] = Mirror()
        return m

    def _ledger_add(self, slot: Slot, registry: str) -> None:
        """Extend the registry's fold with a new record, or replay it when one changed."""
        ledger = self._ledgers.get(registry)
        if ledger is None:
            ledger = self._ledgers[registry] = RegistryLedger(registry)
        if slot.folded or slot.pos < ledger.last_pos or registry in self._replay:
            self._replay.add(registry)
            return
        slot.folded = True
        self._fold(ledger, slot)

    def _fold(self, ledger: RegistryLedger, slot: Slot) -> None:
        assert slot.current is not None
        record = self._record(slot.current)
        if isinstance(record, IssuanceRecord):
            ledger.issue(slot.pos, slot.current, record)
        elif isinstance(record, TransactionRecord):
            ledger.move(slot.pos, slot.current, record)

    def _replay_ledger(self, registry: str) -> None:
        ledger = self._ledgers[registry] = RegistryLedger(registry)
        for slot in sorted(self._ledger_slots.get(registry, ()), key=lambda s: s.pos):
            slot.folded = slot.current is not None
            if slot.current is not None:
                self._fold(ledger, slot)
                if len(self._decoded) >= REPLAY_DECODED:
                    self._release()

    def _settle_slots(self, *, replay: bool = True) -> None:
        """Bring every dirty slot and registry fold up to date, then drop decoded records.

        With ``replay=False`` a registry fold that must be replayed stays marked (its
        ledger is read only by the report, and records folded meanwhile join the replay).
        """
        while self._dirty:
            batch = (
                sorted(self._dirty, key=lambda s: s.pos) if len(self._dirty) > 1 else self._dirty
            )
            self._dirty = set()
            for slot in batch:
                self._recompute(slot)
        if self._replay and replay:
            for registry in sorted(self._replay):
                self._replay_ledger(registry)
            self._replay.clear()
        if self._decoded:
            self._release()

    # -- evaluation of units ---------------------------------------------------------

    def _issuance_refs(self, slots: Iterable[Slot]) -> list[RecordRef]:
        return sorted((s.ref() for s in slots), key=lambda r: r.key)

    def _issuance_ranges(self, registry: str, slots: Iterable[Slot]) -> list[SerialRange]:
        out = []
        for s in slots:
            assert s.current is not None
            rec = self._record(s.current)
            assert isinstance(rec, IssuanceRecord)
            out += [block_range(registry, b) for b in rec.blocks]
        return out

    def _eval_decision(self, dk: str) -> None:
        """Rules 3 and 4 for one decision."""
        unit: Unit = ("decision", dk)
        slot = self._slots.get("issuance_decision", {}).get(dk)
        current = slot.current if slot is not None else None
        by_side: dict[str, dict[Slot, tuple[int, str]]] = {}
        for s, (registry, amount, atype) in self._issuances.get(dk, ()):
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
            refs = self._issuance_refs(issued)
            ranges = self._issuance_ranges(registry, issued)
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
                refs = [current.ref(), *self._issuance_refs(issued)]
                ranges = self._issuance_ranges(side, issued)
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
        self._set(self._findings, unit, findings)
        self._set(self._pending, unit, pending)
        if timed:
            self._timed.add(dk)
        else:
            self._timed.discard(dk)

    def _action_ranges(self, party: str, slots: Iterable[Slot]) -> list[SerialRange]:
        out = []
        for s in slots:
            assert s.current is not None
            rec = self._record(s.current)
            out += [block_range(party, b) for b in getattr(rec, "blocks", ())]
        return out

    def _eval_authorization(self, aid: str) -> None:
        """Rule 6: actions naming ``aid`` against the authorizations holding that id."""
        unit: Unit = ("auth", aid)
        auths: dict[str, AuthorizationRecord] = {}
        auth_slots = self._auths.get(aid, {})
        for party, s in auth_slots.items():
            assert s.current is not None
            rec = self._record(s.current)
            assert isinstance(rec, AuthorizationRecord)
            auths[party] = rec
        actions = sorted(self._actions.get(aid, {}).items(), key=lambda kv: kv[0].pos)
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
                        self._action_ranges(a.party, [slot]),
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
                        self._action_ranges(a.party, [slot]),
                    ))  # fmt: skip
            elif not auths:
                findings.append(finding(
                    "a6-authorization-unknown", [slot.key], label,
                    f"{a.party} {a.action.replace('_', ' ')} {a.action_id} names authorization "
                    f"{aid}, which is in neither log",
                    [slot.ref()], self._action_ranges(a.party, [slot]),
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
                    self._action_ranges(party, over), expected=auth.cap, found=total,
                ))  # fmt: skip
        self._set(self._findings, unit, findings)
        if rows:
            self._auth_rows[aid] = rows
        else:
            self._auth_rows.pop(aid, None)

    def _covered(self, project: str, vintage: int) -> bool:
        for parties in self._auths.values():
            slot = parties.get(self.partner)
            if slot is None or slot.current is None:
                continue
            auth = self._record(slot.current)
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
        jp = dict(self._jp_vintage.get((project, vintage), ()))
        ft = dict(self._first_transfers.get((project, vintage), ()))
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
                        records=tuple(self._issuance_refs(jp)), missing=(self.partner,),
                    ))  # fmt: skip
            elif issued != transferred:
                ranges = [
                    r for r in self._issuance_ranges("JP", jp)
                    if self._vintage_of(r, jp) in (vintage, None)
                ]  # fmt: skip
                findings.append(finding(
                    "a6-first-transfer-mirror", [self.partner, project, str(vintage)], subject,
                    f"{self.partner} recorded first transfers of {transferred} ITMOs of "
                    f"{subject}; Japan issued {issued}",
                    [*self._issuance_refs(ft), *self._issuance_refs(jp)], ranges,
                    expected=issued, found=transferred,
                ))  # fmt: skip
        self._set(self._findings, unit, findings)
        self._set(self._pending, unit, pending)

    def _vintage_of(self, rng: SerialRange, slots: Iterable[Slot]) -> int | None:
        """The vintage stated for the issued block ``rng`` is (for a finding's ranges)."""
        for s in slots:
            assert s.current is not None
            rec = self._record(s.current)
            for b in getattr(rec, "blocks", ()):
                if block_range("JP", b) == rng:
                    vintage: int | None = b.vintage
                    return vintage
        return None

    def _eval_use_mirror(self, party: str) -> None:
        """Rule 6, mirror of use: group unpaired records by overlapping serials."""
        unit: Unit = ("use", party)
        mirror = self._mirrors.get(party)
        members: dict[Slot, list[SerialRange]] = {}
        if mirror is not None:
            for sig in mirror.unmatched:
                for slot in (*mirror.txs.get(sig, ()), *mirror.actions.get(sig, ())):
                    members[slot] = self._action_ranges(party, [slot])
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
                rec = self._record(s.current)
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
        self._set(self._findings, unit, findings)

    # -- the report ------------------------------------------------------------------

    def _trail(self, rng: SerialRange) -> list[TrailStep]:
        """Rule 5: the ledger's claims on ``rng``, with what each record did."""
        ledger = self._ledgers.get(rng.registry)
        steps = []
        for part, ref in ledger.trail(rng) if ledger is not None else ():
            rec = self._record(self._by_id[ref.record_id])
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
        by_author = self._resolutions.get(d.id)
        if not by_author:
            return d
        explanations = []
        for author in sorted(by_author):
            slot = by_author[author]
            assert slot.current is not None
            rec = self._record(slot.current)
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
        status = "explained" if self._required <= explained else "open"
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
            self._dirty_units.update(("decision", dk) for dk in self._timed)
        self._settle_slots()
        units, self._dirty_units = self._dirty_units, set()
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
        for items in self._findings.values():
            for d in items:
                found[d.id] = d
        for ledger in self._ledgers.values():
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
            (p for items in self._pending.values() for p in items),
            key=lambda p: (p.what, p.subject, p.summary, p.records),
        )
        self._release()
        ledgers = [self._ledgers[r] for r in sorted(self._ledgers)]
        return Report(
            partnership=self.partnership,
            logs=tuple(
                LogPosition(node, acc.size, acc.root().hex())
                for node, acc in sorted(self._logs.items(), key=lambda kv: kv[1].order)
            ),
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
                actions=self._action_count,
            ),
            trails=tuple(trails),
            pending=tuple(pending),
            discrepancies=tuple(discrepancies),
        )
