"""Quarantine: credits named by an open discrepancy may not move until it is settled.

Why this module exists: a discrepancy says both registries' records disagree about some
credits. Moving those credits on would spread the disagreement (a transfer of credits that
were issued twice makes two holders of one credit), so they are held where they are. Only
the serials in doubt are held, never whole accounts nor whole issuances (DESIGN §5): the
rest of an account trades on.

Rules:

1. A transaction is refused when any of its blocks overlaps, in the same registry, a
   serial range of a discrepancy whose status is ``open``. ``explained`` (both sides
   signed why the records differ) and ``resolved`` discrepancies hold nothing. A
   finding's ``ranges`` are what it holds: each rule narrows them to the serials in
   doubt, and says in its summary what it holds and, where it cannot narrow further,
   why (``rules_totals``, "Holding"; ``ledger``; docs/reconciliation-rules.md,
   "Quarantine").
   Records the finding names without holding their serials are in its ``records``.
2. A ``cancellation`` is let through: taking erroneous credits out of circulation is how a
   registry corrects an over-issuance, and refusing it would keep the discrepancy open
   forever. Transfers and retirements are held.
3. Only blocks are compared: a transaction without blocks names no serials, so it cannot
   be matched to a range (its amount is checked by ``balance-overdrawn`` instead).
4. A batch (an import) is judged with its own records (ADR 0011): what is held is what
   the last run found open AND is still open once the batch is folded in
   (``check_batch``), so a batch carrying the rest of an issuance, or the decision an
   issuance lacked, may move the serials it settles. The ranges held are the ones the
   last run named (what operators were shown); a discrepancy the batch itself opens holds
   nothing until a run finds it, as for records that arrive by replication.
5. Lookups are indexed (``Quarantine``: ranges sorted per registry and prefix, searched by
   bisection), so checking a batch of n records against m held ranges costs
   O((n + m) log m), not O(n·m).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

from jcm_sync.core.reconcile.model import Discrepancy, SerialRange
from jcm_sync.core.records import Record, TransactionRecord, serial_parts
from jcm_sync.errors import QuarantineError


def quarantined_ranges(discrepancies: Iterable[Discrepancy]) -> list[tuple[SerialRange, str]]:
    """Every range held by an open discrepancy, with that discrepancy's id (rule 1)."""
    return [(r, d.id) for d in discrepancies if d.status == "open" for r in d.ranges]


def _ranges(record: Record) -> list[SerialRange]:
    """The serial ranges a transaction moves, if quarantine applies to it (rules 2, 3)."""
    if not isinstance(record, TransactionRecord) or record.type == "cancellation":
        return []
    out = []
    for block in record.blocks:
        prefix, first = serial_parts(block.start)
        out.append(SerialRange(record.registry, prefix, first, first + block.quantity - 1,
                               len(block.start) - len(prefix)))  # fmt: skip
    return out


class Quarantine:
    """The ranges open discrepancies hold, indexed for overlap queries (rule 5)."""

    def __init__(self, discrepancies: Iterable[Discrepancy]) -> None:
        by_prefix: dict[tuple[str, str], list[tuple[SerialRange, str]]] = {}
        for rng, did in quarantined_ranges(discrepancies):
            by_prefix.setdefault((rng.registry, rng.prefix), []).append((rng, did))
        # per (registry, prefix): ranges sorted by first serial, their firsts, and the
        # running maximum of their lasts (ranges of several findings may overlap)
        self._index: dict[tuple[str, str], tuple[list[tuple[SerialRange, str]], list[int],
                                                 list[int]]] = {}  # fmt: skip
        for key, held in by_prefix.items():
            held.sort(key=lambda h: (h[0].first, h[0].last, h[1]))
            reach, top = [], -1
            for rng, _ in held:
                top = max(top, rng.last)
                reach.append(top)
            self._index[key] = (held, [h[0].first for h in held], reach)

    def __bool__(self) -> bool:
        return bool(self._index)

    def holds(self, rng: SerialRange) -> tuple[SerialRange, str] | None:
        """A held range overlapping ``rng`` (the part of it inside ``rng``) and its id."""
        found = self._index.get((rng.registry, rng.prefix))
        if found is None:
            return None
        held, firsts, reach = found
        i = bisect_right(firsts, rng.last) - 1
        if i < 0 or reach[i] < rng.first:
            return None
        while i >= 0:  # reach[i] >= rng.first: some range at or before i overlaps
            q, did = held[i]
            if q.last >= rng.first:
                lo, hi = max(rng.first, q.first), min(rng.last, q.last)
                return SerialRange(q.registry, q.prefix, lo, hi, q.width), did
            i -= 1
        return None  # pragma: no cover - reach guarantees a hit

    def touches(self, record: Record) -> tuple[SerialRange, str] | None:
        """The first held part ``record`` would move, or None (rules 1-3)."""
        for rng in _ranges(record):
            hit = self.holds(rng)
            if hit is not None:
                return hit
        return None

    def check(self, record: Record, *, why: str = "") -> None:
        """Raise ``QuarantineError`` if ``record`` moves a held range."""
        hit = self.touches(record)
        if hit is None:
            return
        assert isinstance(record, TransactionRecord)
        part, did = hit
        raise QuarantineError(
            f"{record.registry} {record.type} {record.txn_id} moves {part.describe()}, "
            f"quarantined by open discrepancy {did}{why}; settle it first "
            f"(jcm-sync reconcile show {did})",
            where="blocks",
        )


def check_quarantine(record: Record, open_discrepancies: Iterable[Discrepancy]) -> None:
    """Raise ``QuarantineError`` if ``record`` is a transaction touching a held range."""
    Quarantine(open_discrepancies).check(record)


def touching(records: Iterable[Record], quarantine: Quarantine) -> list[Record]:
    """The records of a batch that move a range ``quarantine`` holds (rules 1-3)."""
    if not quarantine:
        return []
    return [r for r in records if quarantine.touches(r) is not None]


def check_batch(
    records: Sequence[Record],
    before: Iterable[Discrepancy],
    after: Iterable[Discrepancy],
) -> None:
    """Rule 4: refuse the batch if a record of it moves a range that a discrepancy open
    ``before`` it (the last run's) holds, and that discrepancy is still open ``after``
    it (a report of the store's logs with the batch folded in)."""
    still = {d.id for d in after if d.status == "open"}
    held = Quarantine(d for d in before if d.id in still)
    for record in records:
        held.check(record, why=", which this import does not settle")
