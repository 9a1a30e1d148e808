"""Quarantine: an open discrepancy holds exactly its serial ranges, nothing else."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from jcm_sync.errors import ConflictError
from jcm_sync.reconcile import Discrepancy, QuarantineError, SerialRange, check_quarantine
from jcm_sync.records import Account, SerialBlock, TransactionRecord
from tests.reconcile.builders import CREATED, PARTNERSHIP

HELD = Discrepancy(
    id="0123456789abcdef", rule="issued-vs-notified", stage="totals", subject="ID002",
    summary="ID issued 10 where 9 were notified",
    ranges=(SerialRange("ID", "ID-ID002-2015-", 1, 10, 6),),
)  # fmt: skip


def move(first: int, last: int, registry: str = "ID", type_: str = "transfer") -> TransactionRecord:
    n = last - first + 1
    dest = Account(f"{registry}-RET-001", "retirement") if type_ == "retirement" else (
        Account(f"{registry}-CAN-001", "cancellation") if type_ == "cancellation"
        else Account(f"{registry}-PP-ID002", "participant_holding"))  # fmt: skip
    return TransactionRecord(
        partnership=PARTNERSHIP, author=registry, created=CREATED, registry=registry,
        txn_id=f"{registry}-T-1", type=type_, executed_on=date(2020, 1, 1),  # type: ignore[arg-type]
        source=Account(f"{registry}-GOV-001", "government_holding"), destination=dest, amount=n,
        blocks=(SerialBlock(f"ID-ID002-2015-{first:06d}", f"ID-ID002-2015-{last:06d}", n),),
    )  # fmt: skip


@pytest.mark.parametrize("type_", ["transfer", "retirement"])
def test_moving_a_held_serial_is_refused(type_: str) -> None:
    """A transfer or retirement overlapping an open finding's range is a QuarantineError."""
    with pytest.raises(QuarantineError, match="0123456789abcdef") as exc:
        check_quarantine(move(10, 12, type_=type_), [HELD])
    assert isinstance(exc.value, ConflictError)
    assert "ID-ID002-2015-000010 (1)" in str(exc.value)


@pytest.mark.parametrize(
    ("record", "discrepancies"),
    [
        (move(11, 12), [HELD]),
        (move(1, 3, registry="JP"), [HELD]),
        (move(1, 3, type_="cancellation"), [HELD]),
        (move(1, 3), [msgspec.structs.replace(HELD, status="explained")]),
        (move(1, 3), [msgspec.structs.replace(HELD, status="resolved")]),
        (move(1, 3), []),
    ],
    ids=["adjacent-serials", "other-registry", "cancellation", "explained", "resolved", "none"],
)
def test_only_open_ranges_of_the_same_registry_are_held(
    record: TransactionRecord, discrepancies: list[Discrepancy]
) -> None:
    """Other serials, the other registry, cancellations and settled findings pass."""
    check_quarantine(record, discrepancies)
