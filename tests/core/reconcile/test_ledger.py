"""One registry's serial-level fold (``core.reconcile.ledger``) on its own: the interval
map against a unit-by-unit model, each stage 2 rule it decides, balances and trails."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core.reconcile.ledger import (
    Origin,
    RegistryLedger,
    SerialMap,
    Touch,
    TouchIndex,
    position,
)
from jcm_sync.core.reconcile.model import RecordRef, SerialRange
from jcm_sync.core.records import (
    Account,
    DecisionRef,
    IssuanceRecord,
    Period,
    SerialBlock,
    TransactionRecord,
)
from tests.core.reconcile.builders import PARTNER, build

BASE: dict[str, Any] = {
    "partnership": "JP-ID",
    "created": datetime(2020, 1, 15, tzinfo=UTC),
    "author": "ID",
}
PERIOD = Period(date(2016, 1, 1), date(2016, 12, 31))
GOV = Account("ID-GOV-001", "government_holding")
PP = Account("ID-PP-001", "participant_holding")
RET = Account("ID-RET-001", "retirement")
CAN = Account("ID-CAN-001", "cancellation")
PREFIX = "ID-ID001-2016-"


@dataclass(frozen=True)
class Src:
    """The ledger's view of a record: its natural key, and a reference when quoted."""

    key: str

    def ref(self) -> RecordRef:
        kind = "issuance" if "ISS" in self.key else "transaction"
        return RecordRef(kind, self.key, self.key.lower().ljust(64, "0"), "ID")


def block(first: int, n: int, vintage: int | None = 2016) -> SerialBlock:
    return SerialBlock(f"{PREFIX}{first:06d}", f"{PREFIX}{first + n - 1:06d}", n, vintage)


def issuance(name: str, *blocks: SerialBlock, account: Account = GOV) -> IssuanceRecord:
    return IssuanceRecord(
        **BASE, registry="ID", issuance_id=name, decision=DecisionRef("ID001", PERIOD),
        issued_on=date(2017, 5, 27), amount=sum(b.quantity for b in blocks), account=account,
        blocks=blocks,
    )  # fmt: skip


def transaction(
    name: str, *blocks: SerialBlock, source: Account = GOV, dest: Account = PP,
    type_: str = "transfer", amount: int | None = None,
) -> TransactionRecord:  # fmt: skip
    return TransactionRecord(
        **BASE, registry="ID", txn_id=name, type=type_,  # type: ignore[arg-type]
        executed_on=date(2017, 6, 1), source=source, destination=dest,
        amount=sum(b.quantity for b in blocks) if amount is None else amount, blocks=blocks,
    )  # fmt: skip


class Fold:
    """A ledger fed in log order, one position per record."""

    def __init__(self) -> None:
        self.ledger = RegistryLedger("ID")
        self.n = 0

    def issue(self, rec: IssuanceRecord) -> Fold:
        self.ledger.issue(position(1, self.n), Src(f"ID/{rec.issuance_id}"), rec)
        self.n += 1
        return self

    def move(self, rec: TransactionRecord) -> Fold:
        self.ledger.move(position(1, self.n), Src(f"ID/{rec.txn_id}"), rec)
        self.n += 1
        return self

    def findings(self) -> list[tuple[str, list[str], list[str]]]:
        """(rule, record keys, ranges) of each finding, sorted."""
        return sorted(
            (d.rule, [r.key for r in d.records], [r.describe() for r in d.ranges])
            for d in self.ledger.findings.values()
        )


def rng(first: int, last: int) -> str:
    return SerialRange("ID", PREFIX, first, last, 6).describe()


# --- the clean fold ---------------------------------------------------------------------


def test_a_clean_registry_folds_without_findings_and_balances_by_serials() -> None:
    """Indonesia's issuances and transactions of the clean partnership: no finding, every
    account type holds by serials what it holds by amounts, issued as the records say."""
    ledger = RegistryLedger(PARTNER)
    issued: dict[str, int] = {}
    for n, item in enumerate(build().logs[PARTNER]):
        rec = item.record
        if isinstance(rec, IssuanceRecord):
            ledger.issue(position(1, n), Src(f"ID/{rec.issuance_id}"), rec)
            issued[rec.account.type] = issued.get(rec.account.type, 0) + rec.amount
        elif isinstance(rec, TransactionRecord):
            ledger.move(position(1, n), Src(f"ID/{rec.txn_id}"), rec)
    assert ledger.findings == {}
    rows = ledger.balance_rows()
    assert [r.account_type for r in rows] == sorted(r.account_type for r in rows)
    assert {r.account_type: r.issued for r in rows if r.issued} == issued
    for r in rows:
        assert r.held == r.held_serials
        assert r.held == r.issued + r.moved_in - r.moved_out - r.cancelled - r.retired
    assert ledger.issued_serials == sum(issued.values())


# --- stage 2 rules ----------------------------------------------------------------------


def test_the_same_block_issued_twice_is_double_issuance_and_counts_once() -> None:
    """Rule 1: names both issuances and the whole block; no unit is added twice."""
    fold = (
        Fold().issue(issuance("ID-ISS-1", block(1, 10))).issue(issuance("ID-ISS-2", block(1, 10)))
    )
    assert fold.findings() == [
        ("double-issuance", ["ID/ID-ISS-1", "ID/ID-ISS-2"], [rng(1, 10)]),
    ]
    (d,) = fold.ledger.findings.values()
    assert d.found == 10
    assert fold.ledger.issued_serials == 10
    assert fold.ledger.issued_blocks == 2
    (row,) = fold.ledger.balance_rows()
    assert (row.issued, row.held, row.held_serials) == (20, 20, 10)


def test_a_block_overlapping_earlier_serials_adds_only_its_new_units() -> None:
    """Rule 2: 1..10 then 6..15 overlaps on 6..10; the first issuer keeps those units."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.issue(issuance("ID-ISS-2", block(6, 10), account=PP))
    assert fold.findings() == [
        ("overlapping-blocks", ["ID/ID-ISS-1", "ID/ID-ISS-2"], [rng(6, 10)]),
    ]
    assert fold.ledger.issued_serials == 15
    held = {r.account_type: r.held_serials for r in fold.ledger.balance_rows()}
    assert held == {"government_holding": 10, "participant_holding": 5}


def test_blocks_of_one_issuance_overlapping_each_other_name_it_once() -> None:
    """Rule 2 within one record: the finding names that issuance alone."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 5), block(4, 5)))
    assert fold.findings() == [("overlapping-blocks", ["ID/ID-ISS-1"], [rng(4, 5)])]


def test_a_vintage_outside_the_monitoring_period_is_found() -> None:
    """Rule 3: a 2017 block under a 2016 period; blocks without vintage are not judged."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 5), block(6, 5, 2017), block(11, 2, None)))
    assert fold.findings() == [("vintage-outside-period", ["ID/ID-ISS-1"], [rng(6, 10)])]
    (d,) = fold.ledger.findings.values()
    assert "vintage 2017" in d.summary
    assert "2016-2016" in d.summary


def test_moving_serials_never_issued_or_not_held_is_found_and_the_rest_moves() -> None:
    """Rules 4 and 5: of 1..20, 1..5 were issued to GOV and already moved, 6..10 are GOV's,
    11..20 were never issued: 6..10 move, the rest are findings naming the holder."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", block(1, 5)))
    fold.move(transaction("ID-TXN-2", block(1, 20), dest=RET, type_="retirement"))
    assert fold.findings() == [
        ("transaction-block-not-issued", ["ID/ID-TXN-2"], [rng(11, 20)]),
        ("transaction-not-held", ["ID/ID-TXN-2"], [rng(1, 5)]),
    ]
    not_held = next(d for d in fold.ledger.findings.values() if d.rule == "transaction-not-held")
    assert "held by ID-PP-001" in not_held.summary
    held = {r.account_type: r.held_serials for r in fold.ledger.balance_rows()}
    assert held == {"government_holding": 0, "participant_holding": 5, "retirement": 5}
    assert fold.ledger.moved_serials == 10


def test_a_transaction_stating_another_vintage_is_found() -> None:
    """Rule 6: serials issued as 2016 moved as 2015 (they still move)."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", block(3, 4, 2015)))
    assert fold.findings() == [("transaction-vintage-mismatch", ["ID/ID-TXN-1"], [rng(3, 6)])]
    held = {r.account_type: r.held_serials for r in fold.ledger.balance_rows()}
    assert held == {"government_holding": 6, "participant_holding": 4}


def test_only_a_transaction_without_blocks_can_overdraw_by_amounts() -> None:
    """Rule 7: 11 out of 10 without blocks is balance-overdrawn with both figures; with
    blocks, the excess is judged by serials (rule 4) instead."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", amount=11))
    assert fold.findings() == [("balance-overdrawn", ["ID/ID-TXN-1"], [])]
    (d,) = fold.ledger.findings.values()
    assert (d.expected, d.found) == (10, 11)

    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", block(1, 11)))
    assert [f[0] for f in fold.findings()] == ["transaction-block-not-issued"]


def test_cancellations_and_retirements_count_apart_from_transfers() -> None:
    """Stage 1 balances: the source type's moved_out, cancelled and retired columns."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", block(1, 2)))
    fold.move(transaction("ID-TXN-2", block(3, 3), dest=RET, type_="retirement"))
    fold.move(transaction("ID-TXN-3", block(6, 4), dest=CAN, type_="cancellation"))
    gov = next(r for r in fold.ledger.balance_rows() if r.account_type == "government_holding")
    assert (gov.moved_out, gov.retired, gov.cancelled, gov.held, gov.held_serials) == (
        2, 3, 4, 1, 1,
    )  # fmt: skip


# --- trails -----------------------------------------------------------------------------


def test_a_trail_names_every_record_that_claimed_part_of_a_range_in_log_order() -> None:
    """Stage 3: the issuance and both transactions touching 4..6, each with its part."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.move(transaction("ID-TXN-1", block(1, 4)))
    fold.move(transaction("ID-TXN-2", block(8, 3)))
    fold.move(transaction("ID-TXN-3", block(5, 2), dest=RET, type_="retirement"))
    trail = fold.ledger.trail(SerialRange("ID", PREFIX, 4, 6, 6))
    assert [(r.key, part.first, part.last) for part, r in trail] == [
        ("ID/ID-ISS-1", 4, 6),
        ("ID/ID-TXN-1", 4, 4),
        ("ID/ID-TXN-3", 5, 6),
    ]
    assert fold.ledger.trail(SerialRange("ID", "OTHER-", 1, 9, 6)) == []


def test_a_trail_of_a_much_claimed_prefix_uses_its_index_and_finds_the_same() -> None:
    """Past the tuple size, touches are indexed; the trail equals a scan of all claims."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 200)))
    for k in range(100):
        fold.move(transaction(f"ID-TXN-{k}", block(1 + 2 * k, 2)))
    touches = fold.ledger.maps[PREFIX].touches
    assert isinstance(touches, list)
    q = SerialRange("ID", PREFIX, 37, 52, 6)
    want = [t.src.key for t in touches if t.first <= 52 and t.last >= 37]
    assert [r.key for _, r in fold.ledger.trail(q)] == want
    assert [r.key for _, r in fold.ledger.trail(q)] == want  # cached index, same answer


@pytest.mark.parametrize("seed", range(5))
def test_the_trail_index_finds_what_a_scan_finds(seed: int) -> None:
    """``TouchIndex.overlapping`` against a scan of every touch, on random intervals."""
    rnd = random.Random(seed)
    for _ in range(40):
        touches = []
        for pos in range(rnd.randint(0, 300)):
            first = rnd.randint(0, 2000)
            last = first + rnd.choice([0, 1, 9, 100, 1500])
            touches.append(Touch(first, last, 9, pos, None))  # type: ignore[arg-type]
        index = TouchIndex(touches)
        for _ in range(30):
            lo = rnd.randint(-5, 2100)
            hi = lo + rnd.choice([0, 3, 50, 700])
            want = [t.pos for t in touches if t.first <= hi and t.last >= lo]
            assert [t.pos for t in index.overlapping(lo, hi)] == want


# --- the interval map against a model ---------------------------------------------------

ACCOUNTS = ["A", "B", "C"]
ops = st.lists(
    st.tuples(
        st.sampled_from(["issue", "move"]),
        st.integers(0, 40),
        st.integers(0, 12),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(ACCOUNTS),
    ),
    max_size=25,
)


@given(ops)
def test_the_serial_map_agrees_with_a_unit_by_unit_model(
    steps: list[tuple[str, int, int, str, str]],
) -> None:
    """Issuing and moving on the segment map gives, unit by unit, what a dict of unit to
    holder gives; segments stay sorted, disjoint, and merged where they can be."""
    smap = SerialMap()
    holder: dict[int, tuple[str, int]] = {}  # unit -> (account, issuing step)
    origins: dict[int, Origin] = {}
    for n, (op, first, width, a, b) in enumerate(steps):
        last = first + width
        span = range(first, last + 1)
        if op == "issue":
            origin = origins[n] = Origin(None, n, None, first, last)  # type: ignore[arg-type]
            existing, added = smap.issue(first, last, a, "t", origin)
            new = [u for u in span if u not in holder]
            assert added == len(new)
            assert {u for s in existing for u in range(s.first, s.last + 1)} >= (
                set(span) - set(new)
            )
            for u in new:
                holder[u] = (a, n)
        else:
            moved, other, never = smap.move(first, last, a, b, "t")
            got_moved = {u for lo, hi, _ in moved for u in range(lo, hi + 1)}
            got_other = {u for lo, hi, _ in other for u in range(lo, hi + 1)}
            got_never = {u for lo, hi in never for u in range(lo, hi + 1)}
            assert got_moved == {u for u in span if holder.get(u, ("",))[0] == a}
            assert got_never == {u for u in span if u not in holder}
            assert got_other == set(span) - got_moved - got_never
            assert all(holder[lo][0] == acct for lo, _, acct in other)
            for u in got_moved:
                holder[u] = (b, holder[u][1])
        segs = smap.segs
        assert [(s.first, s.last) for s in segs] == sorted((s.first, s.last) for s in segs)
        for s, t in itertools.pairwise(segs):
            assert s.last < t.first
            assert not (s.last + 1 == t.first and s.account == t.account
                        and s.origin is t.origin)  # fmt: skip
        mapped = {u: (s.account, s.origin.pos) for s in segs for u in range(s.first, s.last + 1)}
        assert mapped == holder
