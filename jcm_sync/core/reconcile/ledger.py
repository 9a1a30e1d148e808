"""One registry's credits, serial by serial, folded from its issuances and transactions.

Why this module exists: stage 2 of reconciliation asks questions about individual credits
(was this serial issued? twice? who holds it now? which vintage is it?), and the answers
depend on the order in which the registry recorded its issuances and transactions. That
order is the order of the registry's own log, because only the registry may author them
(DESIGN §2). This module folds them in that order into an interval map and reports, as it
goes, every record that does not fit.

Theory of operation
-------------------

A registry's serials are strings; ``records.serial_parts`` splits each into a prefix and a
unit number (docs/adr/0002-serial-blocks.md), so a block is a range of unit numbers under
one prefix. Per prefix, ``SerialMap`` keeps sorted, disjoint segments; each segment says
which account holds those units now and which issuance created them (its ``Origin``: the
record, its block and vintage). Issuing inserts segments; a transaction re-labels the
part of its blocks the source account holds. Adjacent segments with the same holder and
origin are merged again, so a registry that retires credits block after block keeps a
short list.

Rules (the stage 2 rules of ``model.RULES`` this fold decides):

1. ``double-issuance``: an issued block equal to a block an earlier issuance issued.
2. ``overlapping-blocks``: an issued block that overlaps, without being equal to, serials
   issued before (by another issuance, or earlier in the same one). The overlapping units
   stay with their first issuer; only the new units are added.
3. ``vintage-outside-period``: an issued block whose vintage is not a calendar year of the
   monitoring period its decision covers. (A block whose quantity is not its span cannot
   reach this fold: ``records.SerialBlock`` refuses it on decode. A block cannot cross
   vintages either, having one ``vintage``; the vintage rules are this one and 6.)
4. ``transaction-block-not-issued``: a transaction names units never issued here.
5. ``transaction-not-held``: a transaction names issued units its source account does not
   hold at that point in the log (already moved, retired, or held by someone else). Those
   units are not moved; the units the source does hold are.
6. ``transaction-vintage-mismatch``: a transaction's block states a vintage other than the
   one its units were issued with.
7. ``balance-overdrawn``: a transaction WITHOUT blocks (amounts only) moves more than its
   source account holds by amounts. A transaction with blocks is judged by rules 4-6
   instead, so one fault is reported once: its amount is the sum of its blocks, and moving
   more than an account holds means moving units it does not hold.

Not findings: gaps between blocks (a registry's numbering is its own, docs/adr/0002, and
unused serials are no disagreement between the two sides), and serials that appear in
both registries (credits never move between registries, and each registry's serial
space is its own: the same string in both names two different credits).

Every finding is about the record being folded and names it; the same fold of the same
records always gives the same findings (the map is deterministic, origins are compared by
identity only to merge segments).
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from jcm_sync.core.reconcile.model import (
    BalanceRow,
    Discrepancy,
    RecordRef,
    SerialRange,
    finding,
    merge_ranges,
)
from jcm_sync.core.records import IssuanceRecord, SerialBlock, TransactionRecord, serial_parts

Pos = int
"""Where an entry sits: ``order << 48 | index``, ``order`` 0 for Japan's log and 1 for the
partner's. One int, not a tuple: a large partnership holds hundreds of thousands."""

LOG_SHIFT = 48


def position(order: int, index: int) -> Pos:
    return order << LOG_SHIFT | index


class Source(Protocol):
    """The record being folded, as the ledger names it: its natural key now, and a
    ``RecordRef`` only when a finding or trail quotes it (most never are, and a
    ``RecordRef`` per record would cost a large registry tens of megabytes)."""

    @property
    def key(self) -> str: ...

    def ref(self) -> RecordRef: ...


class Origin(msgspec.Struct, gc=False):
    """The issuance that created some units: kept on every segment those units form.

    This and ``Segment`` and ``Touch`` are msgspec Structs the garbage collector does not
    track: a large registry has hundreds of thousands, they reference no container, and
    tracking them made collection cost as much as the fold itself.
    """

    src: Source
    pos: Pos
    vintage: int | None
    first: int
    last: int


class Segment(msgspec.Struct, gc=False):
    """Units ``first``..``last`` of one prefix: who holds them, and where they came from."""

    first: int
    last: int
    account: str
    atype: str
    origin: Origin


class Touch(msgspec.Struct, gc=False):
    """A record's claim on a block, kept for stage 3's trails (the details of what the
    record did are read from the record when a trail is asked for)."""

    first: int
    last: int
    width: int
    pos: Pos
    src: Source


def _first(s: Segment) -> int:
    return s.first


TOUCH_TUPLE_MAX = 32
"""Touches of one prefix kept as a tuple; more are kept in a list (``SerialMap``)."""


class TouchIndex:
    """The touches of one prefix, indexed for overlap queries (stage 3's trails).

    A static interval tree over the touches sorted by first unit: the node of
    ``[lo, hi)`` is its middle element, and ``reach[mid]`` is the largest last unit in
    that subtree. A query visits only subtrees that can overlap it: O(log n + k) for k
    touches found, so the trails of many discrepancies in one prefix are not quadratic.
    """

    def __init__(self, touches: Iterable[Touch]) -> None:
        self.items = sorted(touches, key=lambda t: (t.first, t.pos))
        self.reach = [0] * len(self.items)
        # fill ``reach`` bottom-up: children's subtrees before their parent's
        order: list[tuple[int, int]] = []
        stack = [(0, len(self.items))]
        while stack:
            lo, hi = stack.pop()
            if lo < hi:
                order.append((lo, hi))
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid + 1, hi)]
        for lo, hi in reversed(order):
            mid = (lo + hi) // 2
            best = self.items[mid].last
            if lo < mid:
                best = max(best, self.reach[(lo + mid) // 2])
            if mid + 1 < hi:
                best = max(best, self.reach[(mid + 1 + hi) // 2])
            self.reach[mid] = best

    def overlapping(self, first: int, last: int) -> list[Touch]:
        """The touches that share a unit with ``first``..``last``, in log order."""
        out = []
        stack = [(0, len(self.items))]
        while stack:
            lo, hi = stack.pop()
            if lo >= hi:
                continue
            mid = (lo + hi) // 2
            if self.reach[mid] < first:
                continue  # every touch of this subtree ends before the range
            t = self.items[mid]
            stack.append((lo, mid))
            if t.first <= last:
                if t.last >= first:
                    out.append(t)
                stack.append((mid + 1, hi))
        out.sort(key=lambda t: t.pos)
        return out


class SerialMap(msgspec.Struct, gc=False):
    """Sorted, disjoint segments of one prefix (see the module's theory of operation),
    and the claims records made on the prefix (``touches``, for stage 3's trails).

    Touches are a tuple, grown by copying, while they are few: a prefix usually holds a
    registry's issuance of one project and year, a handful of blocks, and a tuple of
    untracked items is itself not tracked by the garbage collector where a list always
    is. Past ``TOUCH_TUPLE_MAX`` they become a list, so a prefix that thousands of
    records claim is not copied once per record (quadratic).
    """

    segs: list[Segment] = msgspec.field(default_factory=list)
    touches: tuple[Touch, ...] | list[Touch] = ()

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """Indices ``[i0, i1)`` of the segments overlapping ``first..last``.

        Segments are disjoint and sorted, so those starting at or before ``last`` and
        ending at or after ``first`` are contiguous, ending just before ``i1``.
        """
        i1 = bisect_right(self.segs, last, key=_first)
        i0 = i1
        while i0 > 0 and self.segs[i0 - 1].last >= first:
            i0 -= 1
        return i0, i1

    def _splice(self, i0: int, i1: int, new: list[Segment]) -> None:
        """Replace segments ``[i0, i1)`` by ``new``, merging equal neighbours."""
        if i0 > 0:
            i0 -= 1
            new.insert(0, self.segs[i0])
        if i1 < len(self.segs):
            new.append(self.segs[i1])
            i1 += 1
        merged: list[Segment] = []
        for s in new:
            prev = merged[-1] if merged else None
            if (
                prev is not None
                and prev.last + 1 == s.first
                and prev.account == s.account
                and prev.origin is s.origin
            ):
                merged[-1] = Segment(prev.first, s.last, s.account, s.atype, s.origin)
            else:
                merged.append(s)
        self.segs[i0:i1] = merged

    def issue(
        self, first: int, last: int, account: str, atype: str, origin: Origin
    ) -> tuple[list[Segment], int]:
        """Add the units of ``first..last`` not yet issued; return the overlapped segments
        and the number of units added."""
        i0, i1 = self._span(first, last)
        if i0 == i1:
            # nothing issued there yet, the usual case: no neighbour can share this
            # origin, so no merge and no splice
            self.segs.insert(i0, Segment(first, last, account, atype, origin))
            return [], last - first + 1
        existing = self.segs[i0:i1]
        out: list[Segment] = []
        cursor, added = first, 0
        for s in existing:
            if s.first > cursor:
                out.append(Segment(cursor, s.first - 1, account, atype, origin))
                added += s.first - cursor
            out.append(s)
            cursor = max(cursor, s.last + 1)
        if cursor <= last:
            out.append(Segment(cursor, last, account, atype, origin))
            added += last - cursor + 1
        if added:
            self._splice(i0, i1, out)
        return existing, added

    def move(
        self, first: int, last: int, source: str, dest: str, dtype: str
    ) -> tuple[list[tuple[int, int, Segment]], list[tuple[int, int, str]], list[tuple[int, int]]]:
        """Move the units of ``first..last`` that ``source`` holds to ``dest``.

        Returns the moved parts (with the segment they came from), the parts held by
        another account (with that account) and the parts never issued.
        """
        i0, i1 = self._span(first, last)
        out: list[Segment] = []
        moved: list[tuple[int, int, Segment]] = []
        not_held: list[tuple[int, int, str]] = []
        not_issued: list[tuple[int, int]] = []
        cursor = first
        for s in self.segs[i0:i1]:
            lo, hi = max(s.first, first), min(s.last, last)
            if lo > cursor:
                not_issued.append((cursor, lo - 1))
            cursor = hi + 1
            if s.account != source:
                out.append(s)
                not_held.append((lo, hi, s.account))
                continue
            if s.first < lo:
                out.append(Segment(s.first, lo - 1, s.account, s.atype, s.origin))
            out.append(Segment(lo, hi, dest, dtype, s.origin))
            moved.append((lo, hi, s))
            if hi < s.last:
                out.append(Segment(hi + 1, s.last, s.account, s.atype, s.origin))
        if cursor <= last:
            not_issued.append((cursor, last))
        if moved:
            self._splice(i0, i1, out)
        return moved, not_held, not_issued


@dataclass
class TypeTotals:
    """Stage 1 figures of one account type (see ``model.BalanceRow``)."""

    issued: int = 0
    moved_in: int = 0
    moved_out: int = 0
    cancelled: int = 0
    retired: int = 0
    held_serials: int = 0


def _width(block: SerialBlock, prefix: str) -> int:
    return len(block.start) - len(prefix)


def _ranges(
    registry: str, prefix: str, width: int, parts: Iterable[tuple[int, int]]
) -> list[SerialRange]:
    return [SerialRange(registry, prefix, f, last, width) for f, last in parts]


def _quantity(ranges: Iterable[SerialRange]) -> int:
    return sum(r.quantity for r in ranges)


@dataclass
class RegistryLedger:
    """One registry's fold (module docstring): serial map, balances, findings, touches."""

    registry: str
    maps: dict[str, SerialMap] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    types: dict[str, TypeTotals] = field(default_factory=dict)
    findings: dict[str, Discrepancy] = field(default_factory=dict)
    last_pos: Pos = -1
    #: per prefix: (touches indexed, their index), built on a trail's first query
    indexes: dict[str, tuple[int, TouchIndex]] = field(default_factory=dict, repr=False)
    issued_blocks: int = 0
    issued_serials: int = 0
    moved_blocks: int = 0
    moved_serials: int = 0

    def _type(self, atype: str) -> TypeTotals:
        t = self.types.get(atype)
        if t is None:
            t = self.types[atype] = TypeTotals()
        return t

    def _map(self, prefix: str) -> SerialMap:
        m = self.maps.get(prefix)
        if m is None:
            m = self.maps[prefix] = SerialMap()
        return m

    def _touch(self, prefix: str, touch: Touch) -> None:
        m = self._map(prefix)
        if isinstance(m.touches, list):
            m.touches.append(touch)
        elif len(m.touches) < TOUCH_TUPLE_MAX:
            m.touches = (*m.touches, touch)
        else:
            m.touches = [*m.touches, touch]

    def _add(self, d: Discrepancy) -> None:
        self.findings[d.id] = d

    # -- issuance ------------------------------------------------------------------

    def issue(self, pos: Pos, src: Source, rec: IssuanceRecord) -> None:
        """Fold an issuance: rules 1-3, then its units into its account."""
        self.last_pos = pos
        # interned: a registry has few accounts and many records naming them
        account, atype = sys.intern(rec.account.id), sys.intern(rec.account.type)
        self.balances[account] = self.balances.get(account, 0) + rec.amount
        totals = self._type(atype)
        totals.issued += rec.amount
        mp = rec.decision.monitoring_period
        y0, y1 = mp.start.year, mp.end.year
        key = src.key
        bad_vintage: list[SerialRange] = []
        # overlapped units, by the issuance that issued them first: (src, pos, ranges, same)
        overlaps: dict[str, tuple[Source, Pos, list[SerialRange], bool]] = {}
        for block in rec.blocks:
            prefix, first = serial_parts(block.start)
            last = first + block.quantity - 1
            width = len(block.start) - len(prefix)
            vintage = block.vintage
            if vintage is not None and not y0 <= vintage <= y1:
                bad_vintage.append(SerialRange(self.registry, prefix, first, last, width))
            origin = Origin(src, pos, vintage, first, last)
            existing, added = self._map(prefix).issue(first, last, account, atype, origin)
            for seg in existing:
                lo, hi = max(seg.first, first), min(seg.last, last)
                o = seg.origin
                # "the same credits issued twice": this block is exactly a block issued before
                same = o.first == first and o.last == last
                prev = overlaps.get(o.src.key)
                ranges = prev[2] if prev else []
                ranges.append(SerialRange(self.registry, prefix, lo, hi, width))
                overlaps[o.src.key] = (o.src, o.pos, ranges, same and (prev is None or prev[3]))
            totals.held_serials += added
            self.issued_blocks += 1
            self.issued_serials += added
            self._touch(prefix, Touch(first, last, width, pos, src))
        if bad_vintage:
            span = f"{mp.start.isoformat()}..{mp.end.isoformat()}"
            vintages = sorted(
                {
                    b.vintage
                    for b in rec.blocks
                    if b.vintage is not None and not y0 <= b.vintage <= y1
                }
            )
            self._add(finding(
                "vintage-outside-period", [self.registry, key], f"issuance {key}",
                f"{self.registry} issuance {rec.issuance_id} has blocks of vintage "
                f"{', '.join(map(str, vintages))}, outside the monitoring period {span} "
                f"(vintages {y0}-{y1})",
                [src.ref()], bad_vintage,
            ))  # fmt: skip
        for o_src, _, ranges, same in sorted(overlaps.values(), key=lambda t: t[1]):
            rule = "double-issuance" if same else "overlapping-blocks"
            other = o_src.key
            n = _quantity(ranges)
            if other == key:
                summary = self._self_overlap(src, rec, ranges, same)
            elif same:
                summary = (
                    f"{self.registry} issuance {rec.issuance_id} issues again the {n} credits "
                    f"issuance {other.split('/')[-1]} issued"
                )
            else:
                summary = (
                    f"{self.registry} issuance {rec.issuance_id} overlaps {n} serials already "
                    f"issued by issuance {other.split('/')[-1]}"
                )
            records = [o_src.ref()] if o_src.key == key else [o_src.ref(), src.ref()]
            self._add(finding(rule, [self.registry, other, key], f"issuance {key}", summary,
                               records, ranges, found=n))  # fmt: skip

    def _self_overlap(
        self, src: Source, rec: IssuanceRecord, ranges: list[SerialRange], same: bool
    ) -> str:
        """The summary of blocks of one issuance that overlap each other: the blocks, the
        serials they share, its stated amount against its blocks' sum, and the remedy."""
        shared = merge_ranges(ranges)
        blocks = [
            b
            for b in rec.blocks
            if any(
                r.prefix == serial_parts(b.start)[0]
                and r.first <= serial_parts(b.start)[1] + b.quantity - 1
                and serial_parts(b.start)[1] <= r.last
                for r in shared
            )
        ]
        listed = ", ".join(f"{b.start}..{b.end} ({b.quantity})" for b in blocks)
        what = "states the same block twice" if same else "states blocks that overlap each other"
        stated = sum(b.quantity for b in rec.blocks)
        n = _quantity(shared)
        return (
            f"{self.registry} issuance {rec.issuance_id} ({src.ref().record_id[:12]}) {what}: "
            f"{listed} share {n} serials ({', '.join(r.describe() for r in shared)}), so its "
            f"blocks of {stated} in all issue {stated - n} distinct serials where it states "
            f"an amount of {rec.amount}. Settled when {self.registry} corrects the "
            "issuance's blocks so that each serial is issued once"
        )

    # -- transactions --------------------------------------------------------------

    def move(self, pos: Pos, src_: Source, rec: TransactionRecord) -> None:
        """Fold a transaction: rules 4-7, then move the units its source holds."""
        self.last_pos = pos
        src, dst = rec.source, rec.destination
        key = src_.key
        held = self.balances.get(src.id, 0)
        if not rec.blocks and rec.amount > held:
            self._add(finding(
                "balance-overdrawn", [self.registry, key], f"transaction {key}",
                f"{self.registry} {rec.type} {rec.txn_id} moves {rec.amount} credits out of "
                f"{src.id}, which holds {held}",
                [src_.ref()], [], expected=held, found=rec.amount,
            ))  # fmt: skip
        self.balances[src.id] = held - rec.amount
        self.balances[dst.id] = self.balances.get(dst.id, 0) + rec.amount
        stype = self._type(src.type)
        if rec.type == "cancellation":
            stype.cancelled += rec.amount
        elif rec.type == "retirement":
            stype.retired += rec.amount
        else:
            stype.moved_out += rec.amount
        dtype = self._type(dst.type)
        dtype.moved_in += rec.amount
        not_issued: list[SerialRange] = []
        not_held: list[SerialRange] = []
        holders: set[str] = set()
        mismatch: list[SerialRange] = []
        issued_as: set[int] = set()
        for block in rec.blocks:
            prefix, first = serial_parts(block.start)
            last = first + block.quantity - 1
            width = _width(block, prefix)
            moved, other, never = self._map(prefix).move(
                first, last, sys.intern(src.id), sys.intern(dst.id), sys.intern(dst.type)
            )
            not_issued += _ranges(self.registry, prefix, width, never)
            for lo, hi, holder in other:
                not_held.append(SerialRange(self.registry, prefix, lo, hi, width))
                holders.add(holder)
            for lo, hi, seg in moved:
                n = hi - lo + 1
                self._type(seg.atype).held_serials -= n
                dtype.held_serials += n
                self.moved_serials += n
                v = seg.origin.vintage
                if block.vintage is not None and v is not None and v != block.vintage:
                    mismatch.append(SerialRange(self.registry, prefix, lo, hi, width))
                    issued_as.add(v)
            self.moved_blocks += 1
            self._touch(prefix, Touch(first, last, width, pos, src_))
        what = f"{self.registry} {rec.type} {rec.txn_id}"
        subject = f"transaction {key}"
        if not_issued:
            self._add(finding(
                "transaction-block-not-issued", [self.registry, key], subject,
                f"{what} moves {_quantity(not_issued)} serials {self.registry} never issued",
                [src_.ref()], not_issued, found=_quantity(not_issued),
            ))  # fmt: skip
        if not_held:
            self._add(finding(
                "transaction-not-held", [self.registry, key], subject,
                f"{what} moves {_quantity(not_held)} serials out of {src.id}, which does not "
                f"hold them (held by {', '.join(sorted(holders))})",
                [src_.ref()], not_held, found=_quantity(not_held),
            ))  # fmt: skip
        if mismatch:
            stated = sorted({b.vintage for b in rec.blocks if b.vintage is not None})
            self._add(finding(
                "transaction-vintage-mismatch", [self.registry, key], subject,
                f"{what} states vintage {', '.join(map(str, stated))} for "
                f"{_quantity(mismatch)} serials issued as vintage "
                f"{', '.join(map(str, sorted(issued_as)))}",
                [src_.ref()], mismatch, found=_quantity(mismatch),
            ))  # fmt: skip

    # -- reading -------------------------------------------------------------------

    def balance_rows(self) -> list[BalanceRow]:
        rows = []
        for atype, t in sorted(self.types.items()):
            held = t.issued + t.moved_in - t.moved_out - t.cancelled - t.retired
            rows.append(
                BalanceRow(
                    registry=self.registry,
                    account_type=atype,
                    issued=t.issued,
                    moved_in=t.moved_in,
                    moved_out=t.moved_out,
                    cancelled=t.cancelled,
                    retired=t.retired,
                    held=held,
                    held_serials=t.held_serials,
                )
            )
        return rows

    def trail(self, rng: SerialRange) -> list[tuple[SerialRange, RecordRef]]:
        """Stage 3: every record that claimed part of ``rng`` (and which part), in log order."""
        out = []
        held = self.maps.get(rng.prefix)
        touches: Iterable[Touch] = ()
        if held is not None and len(held.touches) > TOUCH_TUPLE_MAX:
            cached = self.indexes.get(rng.prefix)
            if cached is None or cached[0] != len(held.touches):
                cached = self.indexes[rng.prefix] = (len(held.touches), TouchIndex(held.touches))
            touches = cached[1].overlapping(rng.first, rng.last)
        elif held is not None:
            touches = sorted(held.touches, key=lambda t: t.pos)
        for t in touches:
            lo, hi = max(t.first, rng.first), min(t.last, rng.last)
            if lo <= hi:
                out.append((SerialRange(self.registry, rng.prefix, lo, hi, t.width), t.src.ref()))
        return out
