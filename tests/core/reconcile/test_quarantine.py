"""Quarantine: an open discrepancy holds exactly its serial ranges, nothing else; a batch
is held only by what stays open with the batch folded in."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core.reconcile import (
    Discrepancy,
    Quarantine,
    QuarantineError,
    SerialRange,
    check_batch,
    check_quarantine,
)
from jcm_sync.core.records import Account, SerialBlock, TransactionRecord
from jcm_sync.errors import ConflictError
from tests.core.reconcile.builders import CREATED, PARTNERSHIP

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
        (move(1, 3), [msgspec.structs.replace(HELD, ranges=())]),
    ],
    ids=[
        "adjacent-serials",
        "other-registry",
        "cancellation",
        "explained",
        "resolved",
        "none",
        "open-holding-nothing",
    ],
)
def test_only_open_ranges_of_the_same_registry_are_held(
    record: TransactionRecord, discrepancies: list[Discrepancy]
) -> None:
    """Other serials, the other registry, cancellations and settled findings pass."""
    check_quarantine(record, discrepancies)


# --- a batch judged with its own records (rule 4, ADR 0011) -------------------------------

OTHER = msgspec.structs.replace(
    HELD, id="fedcba9876543210", rule="transaction-not-held",
    ranges=(SerialRange("ID", "ID-ID002-2015-", 20, 29, 6),),
)  # fmt: skip


@pytest.mark.parametrize(
    ("after", "refused"),
    [
        ([HELD, OTHER], "0123456789abcdef"),
        ([msgspec.structs.replace(HELD, ranges=())], "0123456789abcdef"),
        ([OTHER], None),
        ([msgspec.structs.replace(HELD, status="explained"), OTHER], None),
        ([], None),
    ],
    ids=["still-open", "still-open-other-ranges", "settled", "explained-since", "all-settled"],
)
def test_a_batch_is_held_only_by_what_stays_open_after_it(
    after: list[Discrepancy], refused: str | None
) -> None:
    """The last run's open findings hold their ranges only if still open with the batch
    folded in; a batch that settles the one holding its serials passes."""
    batch = [move(1, 2, type_="cancellation"), move(3, 4), move(40, 41)]
    if refused is None:
        check_batch(batch, [HELD, OTHER], after)
        return
    with pytest.raises(QuarantineError, match=refused) as exc:
        check_batch(batch, [HELD, OTHER], after)
    assert "ID-ID002-2015-000003..ID-ID002-2015-000004 (2)" in str(exc.value)
    assert "which this import does not settle" in str(exc.value)


def test_a_finding_the_batch_itself_opens_holds_nothing_until_a_run_finds_it() -> None:
    """Only the last run's findings hold (what operators were shown); a batch's own new
    finding is for the next run, as for records that arrive by replication."""
    check_batch([move(3, 4)], [], [HELD])


@settings(max_examples=200, deadline=None)
@given(
    held=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30), st.sampled_from("AB")),
                  max_size=30),
    query=st.tuples(st.integers(0, 220), st.integers(0, 30), st.sampled_from("AB")),
)  # fmt: skip
def test_the_index_finds_an_overlap_exactly_when_one_exists(
    held: list[tuple[int, int, str]], query: tuple[int, int, str]
) -> None:
    """``Quarantine.holds`` against a scan of every held range, overlapping ones included."""
    findings = [
        msgspec.structs.replace(HELD, id=f"{n:016x}",
                                ranges=(SerialRange("ID", f"ID-{p}-", a, a + w, 6),))
        for n, (a, w, p) in enumerate(held)
    ]  # fmt: skip
    q = SerialRange("ID", f"ID-{query[2]}-", query[0], query[0] + query[1], 6)
    expected = {d.id for d in findings if d.ranges[0].overlaps(q)}
    hit = Quarantine(findings).holds(q)
    assert (hit is not None) == bool(expected)
    if hit is not None:
        part, did = hit
        assert did in expected
        (rng,) = next(d.ranges for d in findings if d.id == did)
        assert rng.first <= part.first <= part.last <= rng.last
        assert q.first <= part.first
        assert part.last <= q.last
    assert Quarantine(findings).holds(SerialRange("JP", q.prefix, q.first, q.last, 6)) is None
