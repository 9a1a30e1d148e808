"""Quarantine: credits named by an open discrepancy may not move until it is settled.

Why this module exists: a discrepancy says both registries' records disagree about some
credits. Moving those credits on would spread the disagreement (a transfer of credits that
were issued twice makes two holders of one credit), so they are held where they are. Only
the affected serial ranges are held, never whole accounts (DESIGN §5): the rest of an
account trades on.

Rules:

1. A transaction is refused when any of its blocks overlaps, in the same registry, a
   serial range of a discrepancy whose status is ``open``. ``explained`` (both sides
   signed why the records differ) and ``resolved`` discrepancies hold nothing.
2. A ``cancellation`` is let through: taking erroneous credits out of circulation is how a
   registry corrects an over-issuance, and refusing it would keep the discrepancy open
   forever. Transfers and retirements are held.
3. Only blocks are compared: a transaction without blocks names no serials, so it cannot
   be matched to a range (its amount is checked by ``balance-overdrawn`` instead).
"""

from __future__ import annotations

from collections.abc import Iterable

from jcm_sync.errors import ConflictError
from jcm_sync.reconcile.model import Discrepancy, SerialRange
from jcm_sync.records import Record, TransactionRecord, serial_parts


class QuarantineError(ConflictError):
    """A transaction moves credits an open discrepancy holds in quarantine."""

    code = "quarantined"


def quarantined_ranges(discrepancies: Iterable[Discrepancy]) -> list[tuple[SerialRange, str]]:
    """Every range held by an open discrepancy, with that discrepancy's id (rule 1)."""
    return [(r, d.id) for d in discrepancies if d.status == "open" for r in d.ranges]


def check_quarantine(record: Record, open_discrepancies: Iterable[Discrepancy]) -> None:
    """Raise ``QuarantineError`` if ``record`` is a transaction touching a held range."""
    if not isinstance(record, TransactionRecord) or record.type == "cancellation":
        return
    held = quarantined_ranges(open_discrepancies)
    if not held:
        return
    for block in record.blocks:
        prefix, first = serial_parts(block.start)
        rng = SerialRange(record.registry, prefix, first, first + block.quantity - 1,
                          len(block.start) - len(prefix))  # fmt: skip
        for q, did in held:
            if rng.overlaps(q):
                lo, hi = max(rng.first, q.first), min(rng.last, q.last)
                part = SerialRange(q.registry, q.prefix, lo, hi, q.width)
                raise QuarantineError(
                    f"{record.registry} {record.type} {record.txn_id} moves {part.describe()}, "
                    f"quarantined by open discrepancy {did}; settle it first "
                    f"(jcm-sync reconcile show {did})",
                    where="blocks",
                )
