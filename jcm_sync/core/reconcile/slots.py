"""What the reconciler's index keeps per record: versions, slots and their small facts.

Why this module exists: the index (``engine``) holds one ``Version`` per entry and one
``Slot`` per record of a partnership, hundreds of thousands of each, and the rules
(``rules_totals``, ``rules_article6``) read them. Their shape, and the few pure helpers
that turn a record into the keys and facts the index files it under, are shared by both,
so they live here, apart from the code that changes them.

Invariants:

1. ``Version`` and ``Slot`` are msgspec Structs the garbage collector does not track, and
   they form no reference cycle: a version names its slot by (kind, key), never by
   reference. Index values built from them are tuples (``Bag``), not dicts or lists, for
   the same reason (``engine``, theory: "Memory"), and at most two deep: the facts in
   them are untracked Structs (``Issued``, ``Share``) or flat tuples. The collector
   untracks a tuple of untracked items one level per pass, so a deeper one reached its
   oldest generation and set off full passes over the whole index (ADR 0055).
2. Slots and versions compare by identity (``eq=False``): two records with equal fields
   are still two records.
3. The helpers are pure and total over decoded records: the same record gives the same
   keys, the same side and the same facts on every run and on both sides.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final, TypeVar

import msgspec

from jcm_sync.core.reconcile.inputs import VerifiedEntry
from jcm_sync.core.reconcile.ledger import Pos
from jcm_sync.core.reconcile.model import RecordRef, SerialRange
from jcm_sync.core.records import (
    JC_KINDS,
    IssuanceRecord,
    ItmoActionRecord,
    Period,
    Record,
    SerialBlock,
    serial_parts,
)

Unit = tuple[str, ...]
"""What ``report`` re-evaluates as one: ("decision", key), ("auth", id), ("ftm", project,
vintage), ("use", party), ("serials", prefix), ("dependencies", decision key),
("methodologies", project); and ("slot", kind, key) or ("jc", kind, key) for a slot's own
findings and pending signatures."""
MirrorSig = tuple[object, ...]
"""Rule 6, use mirror: an ITMO action type and its serial blocks, as a record pairs up."""

LEDGER_SIDES: Final = frozenset({"issuance", "transaction"})
"""Kinds a registry authors and only it may replace: their side is their ``registry``."""

_K = TypeVar("_K")
_V = TypeVar("_V")
Bag = tuple[tuple["Slot", _V], ...]
"""An index value: (slot, fact) pairs. A tuple of untracked items is itself untracked,
where a dict per key would be one tracked container each."""


def bag_add(table: dict[_K, Bag[_V]], key: _K, slot: Slot, value: _V) -> None:
    """File ``value`` for ``slot`` under ``key``."""
    table[key] = (*table.get(key, ()), (slot, value))


def bag_remove(table: dict[_K, Bag[_V]], key: _K, slot: Slot) -> bool:
    """Remove ``slot``'s entry; True if there was one."""
    held = table.get(key, ())
    kept = tuple(e for e in held if e[0] is not slot)
    if kept:
        table[key] = kept
    else:
        table.pop(key, None)
    return len(kept) != len(held)


def side_of(record: Record, kind: str | None = None) -> str:
    """Rule 2: who may replace this record (of ``kind``, when the caller knows it: the
    record's ``kind`` property reads its class's configuration on every call)."""
    if kind is None:
        kind = record.kind
    if kind in LEDGER_SIDES:
        return record.registry  # type: ignore[union-attr]
    if kind in JC_KINDS:
        return "JC"
    for attr in ("registry", "party"):
        value = getattr(record, attr, None)
        if isinstance(value, str):
            return value
    return record.author


def block_range(registry: str, block: SerialBlock) -> SerialRange:
    """The unit numbers a serial block names in ``registry`` (``model`` rule 3)."""
    prefix, first = serial_parts(block.start)
    return SerialRange(registry, prefix, first, first + block.quantity - 1,
                       len(block.start) - len(prefix))  # fmt: skip


def decision_key(project: str, period: Period) -> str:
    """A decision's natural key, as ``records.IssuanceDecisionRecord.key`` joins it."""
    return f"{project}/{period.start.isoformat()}/{period.end.isoformat()}"


def vintages_of(rec: IssuanceRecord) -> dict[int, int]:
    """Rule 6: an issuance's credits by vintage, where the records say it."""
    mp = rec.decision.monitoring_period
    single = mp.start.year if mp.start.year == mp.end.year else None
    out: dict[int, int] = {}
    if not rec.blocks:
        if single is not None:
            out[single] = rec.amount
        return out
    for b in rec.blocks:
        v = b.vintage if b.vintage is not None else single
        if v is not None:
            out[v] = out.get(v, 0) + b.quantity
    return out


def serial_registries(record: ItmoActionRecord, partner: str) -> tuple[str, ...]:
    """Rule 6, serial provenance: the registries an ITMO action's serials may have been
    issued in. Its Party's; for a first transfer, the transferring or the acquiring
    Party's, since Japan's share is issued straight into Japan's registry."""
    if record.action != "first_transfer":
        return (record.party,)
    other = "JP" if record.party != "JP" else partner
    out = (record.transferring_party or record.party, record.acquiring_party or other)
    return out if out[0] != out[1] else out[:1]


def mirror_sig(kind: str, blocks: Sequence[SerialBlock]) -> MirrorSig:
    """Rule 6, use mirror: what a transaction and the ITMO action reporting it share."""
    return (kind, *sorted((serial_parts(b.start), b.quantity) for b in blocks))


# --- facts filed per record -------------------------------------------------------------


class Issued(msgspec.Struct, frozen=True, gc=False):
    """What an issuance files under its decision (``tables.Tables.issuances``).

    A Struct, not a tuple: a tuple nested two deep in an index value is untracked by the
    garbage collector only after two or three of its passes, so some hundred thousand
    of them reached the oldest generation during a full run and set off its full
    passes (ADR 0055); an untracked Struct is never tracked at all."""

    registry: str
    amount: int
    atype: str


class Share(msgspec.Struct, frozen=True, gc=False):
    """A decision's share of one side, as its slot's contribution keeps it (rule 3): the
    amount notified and, when the decision allocates it, the amount per account type,
    sorted. A Struct for the reason ``Issued`` is."""

    side: str
    notified: int
    allocated: tuple[tuple[str, int], ...] | None


# --- versions and slots -----------------------------------------------------------------


class Version(msgspec.Struct, gc=False, eq=False):
    """One entry of the snapshot: what the indexes need of it, and its payload bytes."""

    rid: str
    pos: Pos
    payload: bytes
    signers: frozenset[str]
    kind: str
    key: str
    author: str
    side: str
    supersedes: str | None
    # decoded while its apply settles, then dropped (``engine`` theory: "Memory")
    record: Record | None = None
    ref_: RecordRef | None = None

    def ref(self) -> RecordRef:
        if self.ref_ is None:
            self.ref_ = RecordRef(kind=self.kind, key=self.key, record_id=self.rid,
                                  author=self.author)  # fmt: skip
        return self.ref_


def version(entry: VerifiedEntry, pos: Pos, key: str, side: str) -> Version:
    """The version of a verified entry at ``pos``, still holding its decoded record."""
    r = entry.record
    # positional: a Struct's keywords cost more to match than the fields themselves
    return Version(entry.record_id, pos, entry.payload, entry.signers, entry.kind, key,
                   sys.intern(r.author), sys.intern(side), r.supersedes, r)  # fmt: skip


class Slot(msgspec.Struct, gc=False, eq=False):
    """Every version of one record (kind and natural key) and which one counts now."""

    kind: str
    key: str
    pos: Pos
    versions: tuple[Version, ...] = ()
    current: Version | None = None
    group: tuple[Version, ...] = ()
    effective: bool = False
    missing: tuple[str, ...] = ()
    effective_groups: tuple[str, ...] = ()
    folded: bool = False
    contrib: tuple[object, ...] | None = None

    def ref(self) -> RecordRef:
        assert self.current is not None
        return self.current.ref()


# --- Article 6.2 facts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """What the Article 6.2 checks read of an ITMO action."""

    party: str
    action_id: str
    action: str
    project: str
    vintage: int
    purpose: str | None
    quantity: int
    occurred_on: date
    """The day the Party states the action took place (chronology, rule 6)."""


@dataclass
class Mirror:
    """Rule 6, use mirror: records by (type, serial blocks), on each side."""

    txs: dict[MirrorSig, set[Slot]] = field(default_factory=dict)
    actions: dict[MirrorSig, set[Slot]] = field(default_factory=dict)
    unmatched: set[MirrorSig] = field(default_factory=set)

    def change(self, side: str, sig: MirrorSig, slot: Slot, sign: int) -> None:
        table = self.txs if side == "txs" else self.actions
        members = table.setdefault(sig, set())
        if sign > 0:
            members.add(slot)
        else:
            members.discard(slot)
        t, a = self.txs.get(sig, set()), self.actions.get(sig, set())
        if (len(t) == 1 and len(a) == 1) or not (t or a):
            self.unmatched.discard(sig)
        else:
            self.unmatched.add(sig)
