"""Narrow quarantine: a finding holds the serial ranges in doubt, and no more.

Scenarios on the clean Japan-Indonesia partnership (``builders``), each broken once the way
a registry gets it wrong: what the finding names, what it holds, and what quarantine then
refuses and lets through. Indonesia's ID001 issuances are 45 government credits
(ID-ID001-2016-000001..45) and 15 participant ones (46..60), of which the participant
moved 46..50 to the government account; its ID002 issuances are 5 government credits
(1..5, of which 1..2 retired) and 4 participant ones (6..9).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import Report
from jcm_sync.core.reconcile.model import Discrepancy
from jcm_sync.core.reconcile.quarantine import Quarantine
from jcm_sync.core.records import Account, SerialBlock, TransactionRecord
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import CREATED, PARTNERSHIP, Dataset, build, run

ID001 = "ID-ID001-2016-"
ID002 = "ID-ID002-2015-"
GOV = Account("ID-GOV-001", "government_holding")
PP001 = Account("ID-PP-ID001", "participant_holding")
PP002 = Account("ID-PP-ID002", "participant_holding")
BASE: dict[str, Any] = {"partnership": PARTNERSHIP, "author": "ID", "created": CREATED}


def blk(prefix: str, first: int, last: int) -> SerialBlock:
    vintage = int(prefix.split("-")[2])
    return SerialBlock(f"{prefix}{first:06d}", f"{prefix}{last:06d}", last - first + 1, vintage)


def move(
    prefix: str, first: int, last: int, *, source: Account = GOV, type_: str = "transfer"
) -> TransactionRecord:
    """An Indonesian move of ``first..last`` a registry operator would try next."""
    dest = Account("ID-CAN-001", "cancellation") if type_ == "cancellation" else PP002
    return TransactionRecord(
        **BASE, registry="ID", txn_id=f"ID-TXN-9{first:03d}", type=type_,  # type: ignore[arg-type]
        executed_on=date(2026, 3, 2), source=source, destination=dest,
        amount=last - first + 1, blocks=(blk(prefix, first, last),),
    )  # fmt: skip


def only(report: Report, rule: str) -> Discrepancy:
    (d,) = [d for d in report.discrepancies if d.rule == rule]
    return d


def held(d: Discrepancy) -> list[str]:
    return [r.describe() for r in d.ranges]


def short(d: Discrepancy, key: str) -> str:
    """The short record id of the record with natural key ``key`` the finding names."""
    return next(r.record_id[:12] for r in d.records if r.key == key)


def refused(report: Report, record: TransactionRecord) -> bool:
    return Quarantine(report.discrepancies).touches(record) is not None


# --- stage 1 ----------------------------------------------------------------------------


def test_an_over_issuance_holds_the_issuance_that_crossed_the_notified_amount(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia issues 17 participant credits for ID001 (46..62) where 15 were allocated:
    62 issued against 60 notified. The government's 45, issued first, are not in doubt;
    the participant issuance crossed the notified amount and is held whole, its summary
    saying 2 of its 17 are in excess and why it cannot say which."""
    ds = build()
    iss = ds.find("issuance", issuance_id="ID-ISS-ID001-2016-2")
    ds.replace(iss, amount=17, blocks=(blk(ID001, 46, 62),))
    report = run(ds, keys, root)
    d = only(report, "issued-vs-notified")
    assert (d.expected, d.found) == (60, 62)
    assert held(d) == [f"ID:{ID001}000046..{ID001}000062 (17)"]
    gov, pp = short(d, "ID/ID-ISS-ID001-2016-1"), short(d, "ID/ID-ISS-ID001-2016-2")
    assert f"issuances ID-ISS-ID001-2016-1 ({gov}) of 45 stay within it" in d.summary
    assert (
        f"holds ID:{ID001}000046..{ID001}000062 (17) of ID-ISS-ID001-2016-2 ({pp}), 2 of which "
        "are in excess (which serials are the excess, no record says" in d.summary
    )
    assert "Settled when ID corrects its issuances to 60 in all" in d.summary
    assert not refused(report, move(ID001, 1, 45))  # the government's credits trade on
    assert refused(report, move(ID001, 55, 56, source=PP001))
    assert not refused(report, move(ID001, 61, 62, source=PP001, type_="cancellation"))


def test_issuances_after_the_one_that_crossed_are_held_whole_and_all_in_excess(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A third ID002 issuance of 10..12 after the 9 notified: 1..9 stay free, 10..12 are
    held, all of them in excess."""
    ds = build()
    gov = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-1").record
    assert gov is not None
    ds.add("ID", type(gov)(**{
        **{f: getattr(gov, f) for f in gov.__struct_fields__},
        "issuance_id": "ID-ISS-ID002-2015-3", "amount": 3, "blocks": (blk(ID002, 10, 12),),
    }))  # fmt: skip
    report = run(ds, keys, root)
    d = only(report, "issued-vs-notified")
    assert held(d) == [f"ID:{ID002}000010..{ID002}000012 (3)"]
    assert "all of which are in excess" in d.summary
    assert "no record says" not in d.summary  # every held serial is known to be in excess
    assert not refused(report, move(ID002, 3, 5))
    assert refused(report, move(ID002, 11, 11))


def test_an_issuance_short_of_the_notified_amount_past_its_grace_holds_nothing(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia never issued ID002's 4 participant credits: issued-vs-notified, naming the
    issuance it made, holding none of its 5 credits (each was notified)."""
    ds = build()
    ds.remove(lambda i: getattr(i.record, "issuance_id", "") == "ID-ISS-ID002-2015-2")
    report = run(ds, keys, root)
    d = only(report, "issued-vs-notified")
    assert (d.expected, d.found, d.ranges) == (9, 5, ())
    assert [r.key for r in d.records][1:] == ["ID/ID-ISS-ID002-2015-1"]
    assert "holds no serials, as each credit issued was notified" in d.summary
    assert "Settled when ID issues the other 4" in d.summary
    assert not refused(report, move(ID002, 3, 5))


def test_a_wrong_government_issuance_beside_a_right_participant_one_holds_only_it(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's 45 ID001 government credits issued straight into a retirement account:
    the total is right, the split is not. Only that issuance is held; the participant's
    15, issued as allocated, trade on."""
    ds = build()
    iss = ds.find("issuance", issuance_id="ID-ISS-ID001-2016-1")
    ds.replace(iss, account=Account("ID-RET-001", "retirement"))
    report = run(ds, keys, root)
    d = only(report, "allocation-vs-issued")
    assert held(d) == [f"ID:{ID001}000001..{ID001}000045 (45)"]
    assert "government_holding 0 (allocated 45), retirement 45 (allocated 0)" in d.summary
    gov = short(d, "ID/ID-ISS-ID001-2016-1")
    assert f"of ID-ISS-ID001-2016-1 ({gov}); issuances into account types as allocated" in (
        d.summary
    )
    assert [r.key for r in d.records] == [
        "ID001/2016-01-01/2016-12-31", "ID/ID-ISS-ID001-2016-1", "ID/ID-ISS-ID001-2016-2",
    ]  # fmt: skip
    assert not refused(report, move(ID001, 55, 56, source=PP001))
    assert refused(report, move(ID001, 10, 11))


# --- stage 2: chronology and provenance -------------------------------------------------


def _transfer_of_id001(ds: Dataset) -> Any:
    return next(
        i
        for i in ds.logs["ID"]
        if isinstance(i.record, TransactionRecord) and i.record.blocks[0].start.startswith(ID001)
    )


def test_a_transfer_dated_before_its_serials_were_issued_holds_those_serials(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's transfer of ID001's 46..50, logged after their issuance on 2017-05-27,
    is dated 2017-05-20: transaction-before-issuance, naming the transfer and the
    issuance with both days, holding 46..50 and nothing else of either record."""
    ds = build()
    item = _transfer_of_id001(ds)
    ds.replace(item, executed_on=date(2017, 5, 20))
    report = run(ds, keys, root)
    assert [d.rule for d in report.discrepancies] == ["transaction-before-issuance"]
    d = report.discrepancies[0]
    assert held(d) == [f"ID:{ID001}000046..{ID001}000050 (5)"]
    assert d.level == "blocks"
    assert report.status == "blocks_inconsistent"
    txn = item.record.txn_id
    pp = short(d, "ID/ID-ISS-ID001-2016-2")
    assert f"ID transfer {txn} ({short(d, f'ID/{txn}')}) executed on 2017-05-20" in d.summary
    assert f"issued on 2017-05-27 by issuance ID-ISS-ID001-2016-2 ({pp})" in d.summary
    assert "Settled when ID corrects the date" in d.summary
    assert refused(report, move(ID001, 48, 48))
    assert not refused(report, move(ID001, 51, 52, source=PP001))


def test_a_transfer_logged_before_the_issuance_of_its_serials_moved_nothing_issued(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The same transfer recorded in Indonesia's log before the issuance: in the
    registry's own order the serials did not exist yet, so it is
    transaction-block-not-issued, holding 46..50."""
    ds = build()
    item = _transfer_of_id001(ds)
    log = ds.logs["ID"]
    log.remove(item)
    log.insert(log.index(ds.find("issuance", issuance_id="ID-ISS-ID001-2016-1")), item)
    report = run(ds, keys, root)
    d = only(report, "transaction-block-not-issued")
    assert held(d) == [f"ID:{ID001}000046..{ID001}000050 (5)"]
    assert "transaction-before-issuance" not in {x.rule for x in report.discrepancies}


def test_a_transfer_of_serials_partly_held_elsewhere_holds_only_those(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A participant transfer of ID002's 4..7, of which the participant holds 6..7 and
    the government 4..5: transaction-not-held holds 4..5; 6..7 moved and trade on."""
    ds = build()
    ds.add("ID", move(ID002, 4, 7, source=PP002))
    report = run(ds, keys, root)
    d = only(report, "transaction-not-held")
    assert held(d) == [f"ID:{ID002}000004..{ID002}000005 (2)"]
    assert not refused(report, move(ID002, 6, 7, source=PP002))
