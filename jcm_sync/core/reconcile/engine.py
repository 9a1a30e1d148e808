"""The reconciler's index: both logs of a partnership, folded incrementally.

Why this module exists: a hub reconciles 31 partnerships on a schedule and their logs only
grow, so reconciliation is incremental: ``apply`` folds new entries into indexes and marks
what they touched, and ``reconciler.Reconciler.report`` re-evaluates only that. This module
is the bookkeeping half (which version of each record counts, what each contributes to the
indexes, what changed); what each stage checks is the rules' (``rules_totals``,
``rules_article6``). Pure: entries in, indexes out, no clock, no I/O.

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

Rules decided here (numbered as in ``reconciler``): 1, each log's Merkle root over the
entries given (``position``); 2, supersession, with ``invalid-supersession`` and
``conflicting-versions`` and the signatures a JC record still awaits.

The interface with the rules: they read, and never change, ``partner``, ``sides``,
``slot``, ``record``, the contribution tables (``tables``, a ``tables.Tables``) and the
quoting helpers (``issuance_refs``, ``issuance_ranges``, ``action_ranges``); they return a
unit's findings and pending items, which ``judged`` files under the unit. ``take_dirty``
hands over the units to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TypeVar

from jcm_sync.core import merkle
from jcm_sync.core.reconcile.inputs import VerifiedEntry, decode_stored_payload
from jcm_sync.core.reconcile.ledger import Pos, RegistryLedger
from jcm_sync.core.reconcile.model import (
    Discrepancy,
    LogPosition,
    Pending,
    RecordRef,
    SerialRange,
    finding,
)
from jcm_sync.core.reconcile.serial_map import LOG_SHIFT
from jcm_sync.core.reconcile.slots import (
    Slot,
    Unit,
    Version,
    block_range,
    side_of,
    version,
)
from jcm_sync.core.reconcile.tables import Tables
from jcm_sync.core.records import (
    JC_KINDS,
    EndorsementRecord,
    IssuanceRecord,
    Record,
    TransactionRecord,
)
from jcm_sync.core.subtrees import push_leaf
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError

LEDGER_KINDS: Final = frozenset({"issuance", "transaction"})
KEEP_DECODED: Final = frozenset({"authorization", "resolution"})
"""Kinds read on every evaluation of their units, and few: they stay decoded."""
REPLAY_DECODED: Final = 4096
"""Records a ledger replay decodes before it drops them again (bounds its memory)."""

_T = TypeVar("_T")


@dataclass
class Judgement:
    """A rule's verdict on one unit: what ``Index.judged`` files under it. Rules that say
    more about a unit (``rules_totals``, ``rules_article6``) extend it."""

    findings: list[Discrepancy] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)


class _LogAcc:
    """A log's size and Merkle frontier (rule 1), kept as a mutable stack for speed."""

    __slots__ = ("node", "order", "size", "stack")

    def __init__(self, node: str, order: int) -> None:
        self.node = node
        self.order = order
        self.size = 0
        self.stack: list[bytes] = []

    def root(self) -> bytes:
        return merkle.EMPTY_ROOT if not self.size else merkle.hash_from_subtrees(self.stack)


# --- the index --------------------------------------------------------------------------


class Index:
    """The incremental index of a partnership's two logs (see the module docstring).

    The rules read ``partner``, ``sides``, ``required``, ``tables``, ``ledgers``, ``slot``,
    ``record``, ``version_by_id`` and the quoting helpers; only ``apply``, ``settle`` and
    ``judged`` change the index.
    """

    def __init__(self, root: TrustRoot) -> None:
        self.root = root
        self.partnership = root.partnership
        self.partner = root.partner
        self.sides = ("JP", self.partner)
        self.required = frozenset(self.sides)
        self._logs = {"JP": _LogAcc("JP", 0), self.partner: _LogAcc(self.partner, 1)}
        self._by_id: dict[str, Version] = {}
        # by kind, then natural key: a (kind, key) tuple per record would cost 56 bytes each
        self._slots: dict[str, dict[str, Slot]] = {}
        self._superseders: dict[str, list[Version]] = {}
        # endorsed record id -> (endorser, endorsed kind, endorsement record id)
        self._endorsements: dict[str, list[tuple[str, str, str]]] = {}
        self._dirty: set[Slot] = set()
        self._decoded: list[Version] = []
        self.ledgers: dict[str, RegistryLedger] = {}
        self._ledger_slots: dict[str, list[Slot]] = {}
        self._replay: set[str] = set()
        # contributions (module theory: "Contributions")
        self.tables = Tables(self.partner)
        # units
        self._findings: dict[Unit, list[Discrepancy]] = {}
        self._pending: dict[Unit, list[Pending]] = {}

    # -- input ---------------------------------------------------------------------

    def position(self) -> dict[str, tuple[int, bytes]]:
        """Each log's size and Merkle root over the entries applied so far (rule 1)."""
        return {node: (acc.size, acc.root()) for node, acc in self._logs.items()}

    def log_positions(self) -> list[LogPosition]:
        """``position`` as the report states it, Japan's log first."""
        return [
            LogPosition(node, acc.size, acc.root().hex())
            for node, acc in sorted(self._logs.items(), key=lambda kv: kv[1].order)
        ]

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
        order = acc.order << LOG_SHIFT
        stack = acc.stack
        for entry in entries:
            size = acc.size
            push_leaf(stack, size, entry.leaf_hash)  # the log's frontier, in place
            acc.size = size + 1
            self._add(entry, order | size)  # ledger.position(acc.order, size), inlined
            # settled entry by entry, so its decoded record can be dropped right away
            # (module theory: "Memory"); a registry fold to replay waits for the report,
            # so a run of corrections replays it once, not once per correction. Nearly
            # always the entry's own slot alone is dirty: settled here without a call
            dirty = self._dirty
            if len(dirty) == 1:
                self._recompute(dirty.pop())  # which may mark others
            if self._dirty:
                self.settle(replay=False)
            elif self._decoded:
                self.release()
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
                (v.author, record.endorsed_kind, rid)
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
        side = side_of(record, kind)
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

    def slot(self, kind: str, key: str) -> Slot | None:
        """The slot of the record of ``kind`` with natural key ``key``, if any."""
        return self._slots.get(kind, {}).get(key)

    def version_by_id(self, record_id: str) -> Version:
        return self._by_id[record_id]

    def _slot_of(self, v: Version) -> Slot | None:
        return self._slots.get(v.kind, {}).get(v.key)

    def _dirty_slot_of(self, v: Version) -> None:
        slot = self._slot_of(v)
        if slot is not None:
            self._dirty.add(slot)

    def record(self, v: Version) -> Record:
        """The version's record, decoded again from its payload if it was dropped."""
        r = v.record
        if r is None:
            # its shape only: it was validated when it was applied (``inputs`` rule 2)
            r = v.record = decode_stored_payload(v.payload, v.kind)
            self._decoded.append(v)
        return r

    def release(self) -> None:
        """Drop the records decoded since the last release (module theory: "Memory")."""
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
            for author, endorsed_kind, _ in self._endorsements.get(v.rid, ()):
                if endorsed_kind == kind:
                    nodes.add(author)
        return nodes

    def awaited(self, versions: Iterable[Version], missing: Iterable[str]) -> str:
        """What a JC record still awaits, for a summary: the signature or endorsement of the
        ``missing`` secretariats, and any endorsement of theirs that does not count because
        it names another kind of record (with its short id, and how to settle it)."""
        missing = tuple(missing)
        wrong = [
            (author, endorsed_kind, rid, v)
            for v in versions
            for author, endorsed_kind, rid in self._endorsements.get(v.rid, ())
            if author in missing and endorsed_kind != v.kind
        ]
        text = "the signature or endorsement of " + " and ".join(missing)
        if not wrong:
            return text
        notes = "; ".join(
            f"{author}'s endorsement {rid[:12]} of {v.kind} {v.key} ({v.rid[:12]}) does not "
            f"count, as it names the kind {endorsed_kind}"
            for author, endorsed_kind, rid, v in wrong
        )
        authors = " and ".join(sorted({a for a, *_ in wrong}))
        return (
            f"{text} ({notes}; settled when {authors} records an endorsement naming the "
            f"kind {wrong[0][3].kind}, or the JC record is signed by both)"
        )

    @staticmethod
    def _may_replace(new: Version, old: Version) -> bool:
        return new.kind == old.kind and new.side == old.side

    def _effective(self, v: Version) -> bool:
        """Whether ``v``'s payload has taken effect (its slot's envelopes of that payload)."""
        if v.kind not in JC_KINDS:
            return True
        slot = self._slot_of(v)
        same = [v] if slot is None else [w for w in slot.versions if w.payload == v.payload]
        return self.required <= self._nodes(same, v.kind)

    def _superseded(self, v: Version) -> bool:
        claims = self._superseders.get(v.rid)
        if not claims:
            return False  # nearly every version: nothing names it
        return any(self._may_replace(s, v) and self._effective(s) for s in claims)

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
                    f"{label} ({v.rid[:12]}) by {v.author} claims to supersede "
                    f"{target.kind} {target.key} ({target.rid[:12]}) by {target.author}, "
                    "which it may not replace; the claim is ignored. Settled when "
                    f"{v.author} records a version of its record that names none of "
                    f"{target.author}'s records, or {target.author} corrects its own",
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
                    missing = tuple(sorted(self.required - self._nodes(same, slot.kind)))
                groups.append((tuple(same), missing))
            groups.sort(key=lambda g: g[0][-1].pos)
        effective = [g for g in groups if not g[1]]
        chosen = effective[-1] if effective else (groups[-1] if groups else None)
        if len(effective) > 1:
            findings.append(finding(
                "conflicting-versions", [slot.kind, slot.key], label,
                f"{len(effective)} different versions of {label} ("
                + ", ".join(g[0][-1].rid[:12] for g in effective)
                + f"), none superseding the others; the latest "
                f"({effective[-1][0][-1].rid[:12]}) counts meanwhile. Settled when "
                f"{effective[-1][0][-1].author} records a version superseding the others",
                [g[0][-1].ref() for g in effective],
            ))  # fmt: skip
        if findings or unit in self._findings:
            self._set(self._findings, unit, findings)
        if jc:
            self._set(self._pending, ("jc", slot.kind, slot.key), [
                Pending(
                    what="signature", subject=label,
                    summary=f"{label} awaits " + self.awaited(vs, m),
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

    # -- units -----------------------------------------------------------------------

    def mark_dirty(self, units: Iterable[Unit]) -> None:
        """Have these units judged again, though nothing they read changed."""
        self.tables.dirty.update(units)

    def take_dirty(self) -> set[Unit]:
        """The units to judge again, forgotten here: the caller judges every one."""
        units, self.tables.dirty = self.tables.dirty, set()
        return units

    def judged(self, unit: Unit, judgement: Judgement) -> None:
        """File a rule's judgement of ``unit``, replacing the previous one."""
        self._set(self._findings, unit, judgement.findings)
        self._set(self._pending, unit, judgement.pending)

    def unit_findings(self) -> Iterator[Discrepancy]:
        """Every unit's findings (the ledgers' are theirs), in the order units were filed."""
        for items in self._findings.values():
            yield from items

    def unit_pending(self) -> Iterator[Pending]:
        for items in self._pending.values():
            yield from items

    # -- contributions -------------------------------------------------------------

    def _contribute(self, slot: Slot, v: Version) -> None:
        """File the slot's current version ``v`` in the tables, and in its registry's fold."""
        record = self.record(v)
        registry = self.tables.add(slot, record)
        if registry is not None:
            self._ledger_add(slot, registry, record)

    def _retract(self, slot: Slot) -> None:
        """Withdraw what ``_contribute`` filed; a registry's fold is replayed without it."""
        registry = self.tables.retract(slot)
        if registry is not None:
            self._replay.add(registry)

    def _ledger_add(self, slot: Slot, registry: str, record: Record) -> None:
        """Extend the registry's fold with a new record (the slot's current version's), or
        replay it when one changed."""
        ledger = self.ledgers.get(registry)
        if ledger is None:
            ledger = self.ledgers[registry] = RegistryLedger(registry)
        if slot.folded or slot.pos < ledger.last_pos or registry in self._replay:
            self._replay.add(registry)
            return
        slot.folded = True
        self._fold(ledger, slot, record)

    def _fold(self, ledger: RegistryLedger, slot: Slot, record: Record | None = None) -> None:
        assert slot.current is not None
        if record is None:
            record = self.record(slot.current)
        if isinstance(record, IssuanceRecord):
            ledger.issue(slot.pos, slot.current, record)
        elif isinstance(record, TransactionRecord):
            ledger.move(slot.pos, slot.current, record)

    def _replay_ledger(self, registry: str) -> None:
        ledger = self.ledgers[registry] = RegistryLedger(registry)
        for slot in sorted(self._ledger_slots.get(registry, ()), key=lambda s: s.pos):
            slot.folded = slot.current is not None
            if slot.current is not None:
                self._fold(ledger, slot)
                if len(self._decoded) >= REPLAY_DECODED:
                    self.release()

    def settle(self, *, replay: bool = True) -> None:
        """Bring every dirty slot and registry fold up to date, then drop decoded records.

        With ``replay=False`` a registry fold that must be replayed stays marked (its
        ledger is read only by the report, and records folded meanwhile join the replay).
        """
        while self._dirty:
            if len(self._dirty) == 1:  # an entry's own slot, nearly always: no new set
                self._recompute(self._dirty.pop())  # which may mark others in the same set
                continue
            batch = sorted(self._dirty, key=lambda s: s.pos)
            self._dirty = set()
            for slot in batch:
                self._recompute(slot)
        if self._replay and replay:
            for registry in sorted(self._replay):
                self._replay_ledger(registry)
            self._replay.clear()
        if self._decoded:
            self.release()

    # -- quoting records, for the rules -----------------------------------------------

    def issuance_refs(self, slots: Iterable[Slot]) -> list[RecordRef]:
        return sorted((s.ref() for s in slots), key=lambda r: r.key)

    def issuance_ranges(self, registry: str, slots: Iterable[Slot]) -> list[SerialRange]:
        out = []
        for s in slots:
            assert s.current is not None
            rec = self.record(s.current)
            assert isinstance(rec, IssuanceRecord)
            out += [block_range(registry, b) for b in rec.blocks]
        return out

    def action_ranges(self, party: str, slots: Iterable[Slot]) -> list[SerialRange]:
        out = []
        for s in slots:
            assert s.current is not None
            rec = self.record(s.current)
            out += [block_range(party, b) for b in getattr(rec, "blocks", ())]
        return out
