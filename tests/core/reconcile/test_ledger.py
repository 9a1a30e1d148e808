"""One registry's serial-level fold (``core.reconcile.ledger``) on its own: the interval
map against a unit-by-unit model, each stage 2 rule it decides, balances and trails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from jcm_sync.core.reconcile.ledger import RegistryLedger, position
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


def issuance(
    name: str, *blocks: SerialBlock, account: Account = GOV, on: date = date(2017, 5, 27)
) -> IssuanceRecord:
    return IssuanceRecord(
        **BASE, registry="ID", issuance_id=name, decision=DecisionRef("ID001", PERIOD),
        issued_on=on, amount=sum(b.quantity for b in blocks), account=account,
        blocks=blocks,
    )  # fmt: skip


def transaction(
    name: str, *blocks: SerialBlock, source: Account = GOV, dest: Account = PP,
    type_: str = "transfer", amount: int | None = None, on: date = date(2017, 6, 1),
) -> TransactionRecord:  # fmt: skip
    return TransactionRecord(
        **BASE, registry="ID", txn_id=name, type=type_,  # type: ignore[arg-type]
        executed_on=on, source=source, destination=dest,
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


def test_a_transaction_dated_before_the_issuance_of_its_units_holds_those_units() -> None:
    """Rule 8: a transfer of 5..14 on 1 June, logged after both issuances, moves 11..14
    that ID-ISS-2 issued only on 5 June: the finding names both records and both days and
    holds 11..14 alone (5..10 were issued on 27 May). The units still move."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10)))
    fold.issue(issuance("ID-ISS-2", block(11, 10), on=date(2017, 6, 5)))
    fold.move(transaction("ID-TXN-1", block(5, 10), on=date(2017, 6, 1)))
    assert fold.findings() == [
        ("transaction-before-issuance", ["ID/ID-ISS-2", "ID/ID-TXN-1"], [rng(11, 14)]),
    ]
    (d,) = fold.ledger.findings.values()
    assert d.found == 4
    assert "executed on 2017-06-01 moves 4 serials before they were issued" in d.summary
    assert f"({rng(11, 14)}) issued on 2017-06-05 by issuance ID-ISS-2" in d.summary
    assert "id-iss-2" in d.summary  # the issuance's short id
    assert "Settled when ID corrects the date" in d.summary
    held = {r.account_type: r.held_serials for r in fold.ledger.balance_rows()}
    assert held == {"government_holding": 10, "participant_holding": 10}


def test_a_transaction_on_the_day_of_issue_or_later_is_in_order() -> None:
    """Rule 8 compares days: a move on the day of issue is not before it."""
    fold = Fold().issue(issuance("ID-ISS-1", block(1, 10), on=date(2017, 6, 1)))
    fold.move(transaction("ID-TXN-1", block(1, 10), on=date(2017, 6, 1)))
    fold.move(transaction("ID-TXN-2", block(1, 5), source=PP, dest=GOV, on=date(2017, 6, 2)))
    assert fold.findings() == []


def _faulty_folds() -> dict[str, Fold]:
    """One fold per stage 2 rule of the ledger, each with one finding."""
    folds = {
        "double-issuance": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .issue(issuance("ID-ISS-2", block(1, 10))),
        "overlapping-blocks": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .issue(issuance("ID-ISS-2", block(6, 10))),
        "vintage-outside-period": Fold().issue(issuance("ID-ISS-1", block(1, 5, 2017))),
        "transaction-block-not-issued": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .move(transaction("ID-TXN-1", block(8, 5))),
        "transaction-not-held": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .move(transaction("ID-TXN-1", block(1, 4), source=PP)),
        "transaction-vintage-mismatch": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .move(transaction("ID-TXN-1", block(3, 4, 2015))),
        "balance-overdrawn": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .move(transaction("ID-TXN-1", amount=11)),
        "transaction-before-issuance": Fold()
        .issue(issuance("ID-ISS-1", block(1, 10)))
        .move(transaction("ID-TXN-1", block(1, 3), on=date(2017, 5, 1))),
    }
    return folds


@pytest.mark.parametrize("rule", sorted(_faulty_folds()))
def test_each_finding_names_its_records_what_it_holds_and_what_settles_it(rule: str) -> None:
    """Explanations a secretariat can act on: the summary names the record it is about by
    local and short id, the serials it holds (or that it holds none) and the remedy."""
    (d,) = _faulty_folds()[rule].ledger.findings.values()
    assert d.rule == rule
    about = d.records[-1]
    assert f"{about.key.split('/')[-1]} ({about.record_id[:12]})" in d.summary
    for r in d.ranges:
        assert r.describe() in d.summary
    assert "holds" in d.summary
    if not d.ranges:
        assert "no serial is held" in d.summary
    assert "Settled when ID " in d.summary


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
