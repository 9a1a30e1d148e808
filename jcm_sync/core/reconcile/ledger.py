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
one prefix. Per prefix, ``serial_map.SerialMap`` keeps sorted, disjoint segments; each
segment says which account holds those units now and which issuance created them (its
``Origin``: the record, its block, vintage and day of issue). Issuing inserts segments; a
transaction re-labels the part of its blocks the source account holds. Adjacent segments
with the same holder and origin are merged again, so a registry that retires credits
block after block keeps a short list.

Chronology has two clocks, and each rule reads one. The log's order is the registry's
own order of events: a transaction folded before the issuance of the units it names finds
them not issued (rule 4). The dates the records state (``issued_on``, ``executed_on``)
are the registry's account of when: a transaction logged after an issuance but dated
before it moved credits that did not exist yet (rule 8). Together they check that every
serial a transaction moves was issued by the registry that records the move (its own
serial space), before the move, and is held by the move's source (rule 5).

What a finding holds (its ``ranges``, which quarantine holds while it is open) is the
serials in doubt, and no more: the units issued twice or overlapping (1, 2), the blocks
of a wrong vintage (3), the units a transaction named but could not move or moved under
another vintage or before their issue (4, 5, 6, 8). A transaction without blocks names no
serial, so ``balance-overdrawn`` (7) holds nothing: an amount cannot be matched to
serials.

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
8. ``transaction-before-issuance``: a transaction whose ``executed_on`` is before the
   ``issued_on`` of the issuance that created units it moved (the segment's origin). The
   units are moved all the same (the registry says they were); the finding names each
   issuing record with its day, and holds the units moved early.
9. ``transaction-of-retired-units``: a transaction whose source is a retirement or
   cancellation account. Retired and cancelled credits have left circulation for good
   (ITL check "units previously retired or cancelled", decision 13/CMP.1, annex, para 42),
   so nothing moves them again: a retirement account never is a source. The units are
   moved all the same (the registry says they were) and held; a blockless one (7) names
   no serials and holds nothing.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from jcm_sync.core.reconcile.model import (
    BalanceRow,
    Discrepancy,
    RecordRef,
    SerialRange,
    finding,
    merge_ranges,
)
from jcm_sync.core.reconcile.serial_map import (
    TOUCH_TUPLE_MAX,
    Origin,
    SerialMap,
    Source,
    Touch,
    TouchIndex,
)

# the engine names positions through the ledger, which folds by them
from jcm_sync.core.reconcile.serial_map import Pos as Pos
from jcm_sync.core.reconcile.serial_map import position as position
from jcm_sync.core.records import IssuanceRecord, SerialBlock, TransactionRecord, serial_parts

FINAL_TYPES: Final = frozenset({"retirement", "cancellation"})
"""Account types credits never leave (rule 9)."""


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


_LISTED = 3
"""Serial ranges a summary lists; it counts the rest."""


def _serials(ranges: Iterable[SerialRange]) -> str:
    merged = merge_ranges(ranges)
    text = ", ".join(r.describe() for r in merged[:_LISTED])
    return text + (f" and {len(merged) - _LISTED} more ranges" if len(merged) > _LISTED else "")


def _named(src: Source) -> str:
    """A record as a summary names it: its local id and short record id."""
    return f"{src.key.split('/')[-1]} ({src.ref().record_id[:12]})"


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
    #: one object per day of issue, shared by the origins of that day (module rule 8)
    days: dict[date, date] = field(default_factory=dict, repr=False)
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
        self._map(prefix).touch(touch)

    def _add(self, d: Discrepancy) -> None:
        self.findings[d.id] = d

    # -- issuance ------------------------------------------------------------------

    def issue(self, pos: Pos, src: Source, rec: IssuanceRecord) -> None:
        """Fold an issuance: rules 1-3, then its units into its account."""
        self.last_pos = pos
        # interned: a registry has few accounts and many records naming them
        account, atype = sys.intern(rec.account.id), sys.intern(rec.account.type)
        amount = rec.amount
        self.balances[account] = self.balances.get(account, 0) + amount
        totals = self.types.get(atype) or self._type(atype)
        totals.issued += amount
        mp = rec.decision.monitoring_period
        y0, y1 = mp.start.year, mp.end.year
        key = src.key
        issued_on = self.days.setdefault(rec.issued_on, rec.issued_on)
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
            origin = Origin(src, pos, vintage, first, last, issued_on)
            m = self.maps.get(prefix)
            if m is None:
                m = self.maps[prefix] = SerialMap()
            existing, added = m.issue(first, last, account, atype, origin)
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
            m.touch(Touch(first, last, width, pos, src))
        if not (bad_vintage or overlaps):
            return  # nearly every issuance: no finding to write
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
                f"{self.registry} issuance {_named(src)} has blocks of vintage "
                f"{', '.join(map(str, vintages))}, outside the monitoring period {span} "
                f"(vintages {y0}-{y1}); holds those blocks ({_serials(bad_vintage)}). "
                f"Settled when {self.registry} corrects their vintage (a version superseding "
                "the issuance)",
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
                    f"{self.registry} issuance {_named(src)} issues again the {n} credits "
                    f"issuance {_named(o_src)} issued ({_serials(ranges)}); holds those {n} "
                    f"serials, each claimed by both. Settled when {self.registry} supersedes "
                    f"issuance {rec.issuance_id} with a version naming serials not issued before"
                )
            else:
                summary = (
                    f"{self.registry} issuance {_named(src)} overlaps {n} serials already "
                    f"issued by issuance {_named(o_src)} ({_serials(ranges)}); holds those "
                    f"{n}, its other serials are not in doubt. Settled when {self.registry} "
                    f"supersedes issuance {rec.issuance_id} with blocks that do not overlap"
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
                f"{self.registry} {rec.type} {_named(src_)} moves {rec.amount} credits out of "
                f"{src.id}, which holds {held}; it names no serial blocks, so no serial is "
                f"held. Settled when {self.registry} corrects the transaction's amount or "
                "source (a version superseding it)",
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
        final = src.type in FINAL_TYPES  # rule 9
        from_final: list[SerialRange] = []
        # rule 8: moved units whose issuance is dated after the move, by issuing record
        early: dict[str, tuple[Origin, list[SerialRange]]] = {}
        executed_on = rec.executed_on
        for block in rec.blocks:
            prefix, first = serial_parts(block.start)
            last = first + block.quantity - 1
            width = _width(block, prefix)
            moved, other, never = self._map(prefix).move(
                first, last, sys.intern(src.id), sys.intern(dst.id), sys.intern(dst.type)
            )
            if never:
                not_issued += _ranges(self.registry, prefix, width, never)
            for lo, hi, holder in other:
                not_held.append(SerialRange(self.registry, prefix, lo, hi, width))
                holders.add(holder)
            for lo, hi, seg in moved:
                n = hi - lo + 1
                if final:
                    from_final.append(SerialRange(self.registry, prefix, lo, hi, width))
                self._type(seg.atype).held_serials -= n
                dtype.held_serials += n
                self.moved_serials += n
                v = seg.origin.vintage
                if block.vintage is not None and v is not None and v != block.vintage:
                    mismatch.append(SerialRange(self.registry, prefix, lo, hi, width))
                    issued_as.add(v)
                o = seg.origin
                if o.issued_on is not None and executed_on < o.issued_on:
                    e = early.get(o.src.key)
                    if e is None:
                        e = early[o.src.key] = (o, [])
                    e[1].append(SerialRange(self.registry, prefix, lo, hi, width))
            self.moved_blocks += 1
            self._touch(prefix, Touch(first, last, width, pos, src_))
        if not (not_issued or not_held or mismatch or early or final):
            return  # nearly every transaction: no summary to write, no record to quote
        what = f"{self.registry} {rec.type} {_named(src_)}"
        subject = f"transaction {key}"
        settle = f"Settled when {self.registry} corrects the transaction (a version superseding it)"
        if not_issued:
            self._add(finding(
                "transaction-block-not-issued", [self.registry, key], subject,
                f"{what} moves {_quantity(not_issued)} serials {self.registry} had not issued "
                f"at that point in its log ({_serials(not_issued)}); holds them. {settle}",
                [src_.ref()], not_issued, found=_quantity(not_issued),
            ))  # fmt: skip
        if not_held:
            self._add(finding(
                "transaction-not-held", [self.registry, key], subject,
                f"{what} moves {_quantity(not_held)} serials out of {src.id}, which does not "
                f"hold them (held by {', '.join(sorted(holders))}: {_serials(not_held)}); "
                f"holds them, the serials {src.id} held moved. {settle}",
                [src_.ref()], not_held, found=_quantity(not_held),
            ))  # fmt: skip
        if mismatch:
            stated = sorted({b.vintage for b in rec.blocks if b.vintage is not None})
            self._add(finding(
                "transaction-vintage-mismatch", [self.registry, key], subject,
                f"{what} states vintage {', '.join(map(str, stated))} for "
                f"{_quantity(mismatch)} serials issued as vintage "
                f"{', '.join(map(str, sorted(issued_as)))} ({_serials(mismatch)}); holds "
                f"them. {settle}",
                [src_.ref()], mismatch, found=_quantity(mismatch),
            ))  # fmt: skip
        if early:
            self._add(self._before_issuance(src_, rec, early))
        if final:
            kind = "retired" if src.type == "retirement" else "cancelled"
            moved_what = (
                f"{_quantity(from_final)} {kind} serials ({_serials(from_final)}); holds them"
                if from_final
                else f"{rec.amount} {kind} credits, naming no serials; holds nothing"
            )
            self._add(finding(
                "transaction-of-retired-units", [self.registry, key], subject,
                f"{what} moves out of {src.type} account {src.id} into {dst.id} "
                f"({dst.type}): {moved_what}. Retired and cancelled credits never move "
                f"again. {settle}",
                [src_.ref()], from_final, found=_quantity(from_final) or rec.amount,
            ))  # fmt: skip

    def _before_issuance(
        self,
        src_: Source,
        rec: TransactionRecord,
        early: dict[str, tuple[Origin, list[SerialRange]]],
    ) -> Discrepancy:
        """Rule 8: the finding of a transaction dated before the issuance of units it moved:
        the serials, both dates, both records and what settles it."""
        ref = src_.ref()
        parts, held, issuers = [], [], []
        for o, ranges in sorted(early.values(), key=lambda e: e[0].pos):
            oref = o.src.ref()
            issuers.append(oref)
            held += ranges
            merged = merge_ranges(ranges)
            parts.append(
                f"{_quantity(merged)} of them ({', '.join(r.describe() for r in merged)}) "
                f"issued on {o.issued_on} by issuance {oref.key.split('/')[-1]} "
                f"({oref.record_id[:12]})"
            )
        n = _quantity(merge_ranges(held))
        return finding(
            "transaction-before-issuance", [self.registry, src_.key], f"transaction {src_.key}",
            f"{self.registry} {rec.type} {rec.txn_id} ({ref.record_id[:12]}) executed on "
            f"{rec.executed_on} moves {n} serials before they were issued: "
            + "; ".join(parts)
            + f"; holds those {n} serials. Settled when {self.registry} corrects the date of "
            "the transaction or of the issuance (a version superseding the wrong one)",
            [*issuers, ref], held, found=n,
        )  # fmt: skip

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
