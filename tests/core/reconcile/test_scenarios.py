"""Reconciliation scenarios: clean data, then one realistic fault each, and exactly the
findings that fault must produce (rule and records, by kind and natural key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey, record_id
from jcm_sync.core.reconcile import Report, discrepancy_id
from jcm_sync.core.records import (
    Account,
    DecisionRef,
    IssuanceRecord,
    ItmoActionRecord,
    Period,
    SerialBlock,
    TransactionRecord,
)
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import (
    AUTHORIZATION,
    CREATED,
    PARTNERSHIP,
    Dataset,
    build,
    envelopes,
    resolution,
    run,
    snapshot,
)

D_ID002 = ("issuance_decision", "ID002/2015-04-01/2015-12-31")
D_ID003 = ("issuance_decision", "ID003/2017-03-01/2018-06-30")
AUTH = ("authorization", f"ID/{AUTHORIZATION}")


def iss(registry: str, name: str) -> tuple[str, str]:
    return ("issuance", f"{registry}/{registry}-ISS-{name}")


def txn(registry: str, n: int) -> tuple[str, str]:
    return ("transaction", f"{registry}/{registry}-TXN-{n:04d}")


def itmo(party: str, action_id: str) -> tuple[str, str]:
    return ("itmo_action", f"{party}/{action_id}")


BASE = {"partnership": PARTNERSHIP, "created": CREATED}
MP_ID002 = Period(date(2015, 4, 1), date(2015, 12, 31))


# --- faults -----------------------------------------------------------------------------


def partner_over_issues(ds: Dataset) -> None:
    """Indonesia issues one more credit for ID002 than the 9 notified to it."""
    ds.add("ID", IssuanceRecord(
        **BASE, author="ID", registry="ID", issuance_id="ID-ISS-ID002-2015-3",
        decision=DecisionRef("ID002", MP_ID002), issued_on=date(2016, 6, 3), amount=1,
        account=Account("ID-GOV-001", "government_holding"),
        blocks=(SerialBlock("ID-ID002-2015-000010", "ID-ID002-2015-000010", 1, 2015),),
    ))  # fmt: skip


def japan_issues_before_endorsement(ds: Dataset) -> None:
    """Japan proposed ID003's decision and issued its share before Indonesia endorsed it
    (so Indonesia has not issued, nor recorded the first transfers, yet)."""
    ds.remove(lambda i: i.endorses is not None)
    ds.remove(lambda i: (
        i.record is not None
        and getattr(i.record, "registry", None) == "ID"
        and ("ID003" in str(getattr(i.record, "decision", ""))
             or any("ID003" in b.start for b in getattr(i.record, "blocks", ())))
    ))  # fmt: skip
    ds.remove(lambda i: isinstance(i.record, ItmoActionRecord) and i.record.project_id == "ID003")


def overlapping_blocks(ds: Dataset) -> None:
    """Japan numbers the participant's 10 ID001 credits from 46, inside the government's."""
    item = ds.find("issuance", issuance_id="JP-ISS-ID001-2016-2")
    ds.replace(item, blocks=(SerialBlock("JP-ID001-2016-000046", "JP-ID001-2016-000055", 10,
                                         2016),))  # fmt: skip


def retires_credits_not_held(ds: Dataset) -> None:
    """Indonesia retires, from its government account, credits its participant holds."""
    ds.add("ID", TransactionRecord(
        **BASE, author="ID", registry="ID", txn_id="ID-TXN-0004", type="retirement",
        executed_on=date(2017, 9, 1), source=Account("ID-GOV-001", "government_holding"),
        destination=Account("ID-RET-001", "retirement"), amount=3,
        blocks=(SerialBlock("ID-ID001-2016-000056", "ID-ID001-2016-000058", 3, 2016),),
    ))  # fmt: skip


def cap_below_first_transfers(ds: Dataset) -> None:
    """Indonesia authorized 240 ITMOs but recorded first transfers of 241."""
    ds.replace(ds.find("authorization", authorization_id=AUTHORIZATION), cap=240)


def straddling_wrong_vintage(ds: Dataset) -> None:
    """ID003's period is Mar 2017 - Jun 2018; Indonesia labels its 2018 block as 2019."""
    item = ds.find("issuance", issuance_id="ID-ISS-ID003-2017-1")
    assert item.record is not None
    first, second = item.record.blocks  # type: ignore[union-attr]
    ds.replace(item, blocks=(first, msgspec.structs.replace(second, vintage=2019)))


def japan_issues_block_twice(ds: Dataset) -> None:
    """Japan records its ID002 government issuance a second time, same serials."""
    item = ds.find("issuance", issuance_id="JP-ISS-ID002-2015-1")
    assert item.record is not None
    ds.add("JP", msgspec.structs.replace(item.record, issuance_id="JP-ISS-ID002-2015-3"))


def transfers_serials_never_issued(ds: Dataset) -> None:
    """Indonesia transfers serials beyond anything it issued for ID001."""
    ds.add("ID", TransactionRecord(
        **BASE, author="ID", registry="ID", txn_id="ID-TXN-0004", type="transfer",
        executed_on=date(2017, 9, 1), source=Account("ID-GOV-001", "government_holding"),
        destination=Account("ID-PP-ID001", "participant_holding"), amount=5,
        blocks=(SerialBlock("ID-ID001-2016-000900", "ID-ID001-2016-000904", 5, 2016),),
    ))  # fmt: skip


def issues_without_decision(ds: Dataset) -> None:
    """Indonesia issues credits for ID004, for which the JC decided nothing."""
    ds.add("ID", IssuanceRecord(
        **BASE, author="ID", registry="ID", issuance_id="ID-ISS-ID004-2019-1",
        decision=DecisionRef("ID004", Period(date(2019, 1, 1), date(2019, 12, 31))),
        issued_on=date(2020, 6, 3), amount=7, account=Account("ID-GOV-001", "government_holding"),
        blocks=(SerialBlock("ID-ID004-2019-000001", "ID-ID004-2019-000007", 7, 2019),),
    ))  # fmt: skip


def first_transfer_out_of_scope(ds: Dataset) -> None:
    """Indonesia first-transfers vintage 2019, which its authorization does not cover."""
    ds.add("ID", ItmoActionRecord(
        **BASE, author="ID", party="ID", action_id="ID-FT-0099", action="first_transfer",
        occurred_on=date(2020, 6, 1), authorization_id=AUTHORIZATION, project_id="ID003",
        vintage=2019, quantity=5, purpose="ndc", transferring_party="ID", acquiring_party="JP",
    ))  # fmt: skip


def use_reported_short(ds: Dataset) -> None:
    """Japan retired 20 ID001 credits for its NDC but reports the use of 19."""
    item = ds.find("itmo_action", action_id="JP-USE-0002")
    ds.replace(item, quantity=19, blocks=(
        SerialBlock("JP-ID001-2016-000001", "JP-ID001-2016-000019", 19, 2016),))  # fmt: skip


def first_transfer_short(ds: Dataset) -> None:
    """Indonesia records the first transfer of 59 of Japan's 60 ID001 credits."""
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0002"), quantity=59)


def blockless_overdraft(ds: Dataset) -> None:
    """Indonesia records a transfer without serials of more than the account holds."""
    ds.add("ID", TransactionRecord(
        **BASE, author="ID", registry="ID", txn_id="ID-TXN-0004", type="transfer",
        executed_on=date(2017, 9, 1), source=Account("ID-PP-ID002", "participant_holding"),
        destination=Account("ID-GOV-001", "government_holding"), amount=100,
    ))  # fmt: skip


def retirement_wrong_vintage(ds: Dataset) -> None:
    """Indonesia's retirement of 2015 credits states vintage 2016."""
    item = ds.find("transaction", txn_id="ID-TXN-0001")
    assert item.record is not None
    (block,) = item.record.blocks  # type: ignore[union-attr]
    ds.replace(item, blocks=(msgspec.structs.replace(block, vintage=2016),))


def retired_credits_moved_again(ds: Dataset) -> None:
    """Indonesia moves 2 of the ID002 credits it retired back out of its retirement
    account into its government account (an undo the registry rules do not allow)."""
    ds.add("ID", TransactionRecord(
        **BASE, author="ID", registry="ID", txn_id="ID-TXN-0004", type="transfer",
        executed_on=date(2017, 9, 1), source=Account("ID-RET-001", "retirement"),
        destination=Account("ID-GOV-001", "government_holding"), amount=2,
        blocks=(SerialBlock("ID-ID002-2015-000001", "ID-ID002-2015-000002", 2, 2015),),
    ))  # fmt: skip


@dataclass
class Scenario:
    id: str
    fault: Callable[[Dataset], None]
    expected: list[tuple[str, set[tuple[str, str]]]]


ISSUED_ID002_ID = {D_ID002, iss("ID", "ID002-2015-1"), iss("ID", "ID002-2015-2")}

SCENARIOS = [
    Scenario("partner-issued-10-where-9-notified", partner_over_issues, [
        ("issued-vs-notified", {*ISSUED_ID002_ID, iss("ID", "ID002-2015-3")})]),
    Scenario("japan-issued-before-decision-endorsed", japan_issues_before_endorsement, [
        ("issuance-before-decision-effective",
         {D_ID003, iss("JP", "ID003-2017-1"), iss("JP", "ID003-2017-2")})]),
    Scenario("overlapping-serial-blocks", overlapping_blocks, [
        ("overlapping-blocks", {iss("JP", "ID001-2016-1"), iss("JP", "ID001-2016-2")})]),
    Scenario("retirement-of-credits-not-held", retires_credits_not_held, [
        ("transaction-not-held", {txn("ID", 4)})]),
    Scenario("first-transfer-beyond-authorization-cap", cap_below_first_transfers, [
        ("a6-cap-exceeded", {AUTH, itmo("ID", "ID-FT-0004")})]),
    Scenario("straddling-period-wrong-vintage", straddling_wrong_vintage, [
        ("vintage-outside-period", {iss("ID", "ID003-2017-1")})]),
    Scenario("japan-issued-the-same-block-twice", japan_issues_block_twice, [
        ("double-issuance", {iss("JP", "ID002-2015-1"), iss("JP", "ID002-2015-3")}),
        ("issued-vs-notified", {D_ID002, iss("JP", "ID002-2015-1"), iss("JP", "ID002-2015-2"),
                                iss("JP", "ID002-2015-3")}),
        ("a6-first-transfer-mirror", {itmo("ID", "ID-FT-0001"), iss("JP", "ID002-2015-1"),
                                      iss("JP", "ID002-2015-2"), iss("JP", "ID002-2015-3")}),
    ]),
    Scenario("transfer-of-serials-never-issued", transfers_serials_never_issued, [
        ("transaction-block-not-issued", {txn("ID", 4)})]),
    Scenario("issuance-without-any-decision", issues_without_decision, [
        ("untraceable-issuance", {iss("ID", "ID004-2019-1")})]),
    Scenario("first-transfer-outside-authorized-vintages", first_transfer_out_of_scope, [
        ("a6-out-of-scope", {AUTH, itmo("ID", "ID-FT-0099")})]),
    Scenario("use-reported-for-fewer-credits-than-retired", use_reported_short, [
        ("a6-use-mirror", {txn("JP", 3), itmo("JP", "JP-USE-0002")})]),
    Scenario("first-transfer-short-of-japan-issuance", first_transfer_short, [
        ("a6-first-transfer-mirror", {itmo("ID", "ID-FT-0002"), iss("JP", "ID001-2016-1"),
                                      iss("JP", "ID001-2016-2")})]),
    Scenario("blockless-transfer-overdraws-account", blockless_overdraft, [
        ("balance-overdrawn", {txn("ID", 4)})]),
    Scenario("retired-credits-moved-again", retired_credits_moved_again, [
        ("transaction-of-retired-units", {txn("ID", 4)})]),
    Scenario("retirement-states-wrong-vintage", retirement_wrong_vintage, [
        ("transaction-vintage-mismatch", {txn("ID", 1)})]),
]  # fmt: skip


def findings(report: Report) -> list[tuple[str, set[tuple[str, str]]]]:
    return sorted(
        ((d.rule, {(r.kind, r.key) for r in d.records}) for d in report.discrepancies),
        key=lambda f: f[0],
    )


def test_clean_data_reconciles_without_findings(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The clean partnership (6.2 records included) gives no finding and nothing pending."""
    report = run(build(), keys, root)
    assert report.discrepancies == ()
    assert report.pending == ()
    assert report.status == "completed"
    assert report.totals.decisions == 3
    assert report.totals.sides_compared == 6
    assert all(b.held == b.held_serials for b in report.totals.balances)
    assert report.article6.authorizations[0].first_transferred == 241


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_one_fault_gives_exactly_its_findings(
    scenario: Scenario, keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Each fault produces exactly the expected findings, naming the expected records."""
    ds = build()
    scenario.fault(ds)
    report = run(ds, keys, root)
    assert findings(report) == sorted(scenario.expected, key=lambda f: f[0])
    assert all(d.status == "open" for d in report.discrepancies)
    levels = {d.level for d in report.discrepancies}
    assert report.status == ("totals_inconsistent" if "totals" in levels else "blocks_inconsistent")


def test_over_issuance_names_amounts_and_serial_ranges(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The 10-where-9 finding says by how much and which serials it holds in quarantine:
    the tenth, whose issuance crossed the notified amount, not the 9 issued before it."""
    ds = build()
    partner_over_issues(ds)
    (d,) = run(ds, keys, root).discrepancies
    assert (d.expected, d.found, d.difference) == (9, 10, 1)
    assert d.id == discrepancy_id("issued-vs-notified", ["ID002/2015-04-01/2015-12-31", "ID"])
    assert [(r.start, r.end) for r in d.ranges] == [
        ("ID-ID002-2015-000010", "ID-ID002-2015-000010")
    ]


def test_issuance_before_endorsement_is_pending_decision_not_error(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The unendorsed decision is reported as pending; only Japan's early issuance is wrong."""
    ds = build()
    japan_issues_before_endorsement(ds)
    report = run(ds, keys, root)
    signature = [p for p in report.pending if p.what == "signature"]
    assert [(p.subject, p.missing) for p in signature] == [
        ("issuance_decision ID003/2017-03-01/2018-06-30", ("ID",))
    ]
    assert {p.what for p in report.pending} == {"signature", "first_transfer"}


def test_endorsement_makes_the_issuance_discrepancy_resolve(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Once Indonesia endorses the decision, Japan's issuance no longer is a finding."""
    ds = build()
    japan_issues_before_endorsement(ds)
    decision = ds.find("issuance_decision", project_id="ID003")
    ds.endorse("ID", decision)
    report = run(ds, keys, root)
    assert report.discrepancies == ()
    assert {p.what for p in report.pending} == {"issuance", "first_transfer"}


def test_trail_follows_the_serials_of_a_block_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Stage 3 lists the issuance and every transaction that touched the range, in order."""
    ds = build()
    retires_credits_not_held(ds)
    report = run(ds, keys, root)
    (trail,) = report.trails
    assert trail.range.describe() == "ID:ID-ID001-2016-000056..ID-ID001-2016-000058 (3)"
    assert [(s.record.key, s.action) for s in trail.steps] == [
        ("ID/ID-ISS-ID001-2016-2", "issuance"),
        ("ID/ID-TXN-0004", "retirement"),
    ]


@pytest.mark.parametrize("sides", [["ID"], ["ID", "JP"]], ids=["one-side", "both-sides"])
def test_resolution_signed_by_one_side_only_stays_open(
    sides: list[str], keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """An explanation by one side keeps the finding open; both sides make it explained."""
    ds = build()
    partner_over_issues(ds)
    (found,) = run(ds, keys, root).discrepancies
    for side in sides:
        ds.add(side, resolution(side, found.id, "a 2016 correction credit, agreed at JC 12"))
    report = run(ds, keys, root)
    (d,) = report.discrepancies
    assert d.id == found.id
    assert [e.author for e in d.explanations] == sorted(sides)
    if len(sides) == 1:
        assert d.status == "open"
        assert report.status == "totals_inconsistent"
    else:
        assert d.status == "explained"
        assert report.status == "completed_with_manual_intervention"


def test_correct_resolutions_list_the_correcting_records(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A ``correct`` resolution points to correcting records; the finding stays until fixed."""
    ds = build()
    partner_over_issues(ds)
    (found,) = run(ds, keys, root).discrepancies
    fix = "ab" * 32
    ds.add("ID", resolution("ID", found.id, corrections=(fix,)))
    (d,) = run(ds, keys, root).discrepancies
    assert (d.status, d.corrections) == ("open", (fix,))


def test_superseding_the_faulty_issuance_corrects_it(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A new version of the over-issuance (amount 0) replaces it: the finding is gone."""
    ds = build()
    partner_over_issues(ds)
    faulty = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-3")
    signed = envelopes(ds, keys)
    assert faulty.record is not None
    rid = record_id(signed["ID"][ds.logs["ID"].index(faulty)])
    ds.add("ID", msgspec.structs.replace(faulty.record, amount=0, blocks=(), supersedes=rid))
    report = run(ds, keys, root)
    assert report.discrepancies == ()
    id_gov = [b for b in report.totals.balances if (b.registry, b.account_type) ==
              ("ID", "government_holding")]  # fmt: skip
    assert id_gov[0].held == id_gov[0].held_serials


def test_superseding_another_registrys_record_is_refused(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan cannot replace Indonesia's issuance: the link is ignored and reported."""
    ds = build()
    target = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-1")
    rid = record_id(envelopes(ds, keys)["ID"][ds.logs["ID"].index(target)])
    item = ds.find("transaction", txn_id="JP-TXN-0002")
    ds.replace(item, supersedes=rid)
    report = run(ds, keys, root)
    assert [d.rule for d in report.discrepancies] == ["invalid-supersession"]


def test_jc_record_supersedes_only_once_effective(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A proposed new version of a decision is pending; the old one counts until both sign."""
    ds = build()
    old = ds.find("issuance_decision", project_id="ID001")
    signed = envelopes(ds, keys)
    rid = record_id(signed["JP"][ds.logs["JP"].index(old)])
    assert old.record is not None
    dec = old.record
    shares = tuple(
        msgspec.structs.replace(s, notified=s.notified + 10, allocations=(
            msgspec.structs.replace(s.allocations[0], amount=s.allocations[0].amount + 10),
            s.allocations[1]))
        for s in dec.shares  # type: ignore[attr-defined]
    )  # fmt: skip
    total = dec.total_notified + 20  # type: ignore[attr-defined]
    proposal = msgspec.structs.replace(dec, shares=shares, total_notified=total, supersedes=rid)
    item = ds.add("JP", proposal)
    report = run(ds, keys, root)
    assert report.discrepancies == ()
    assert [p.missing for p in report.pending] == [("ID",)]
    ds.endorse("ID", item)
    report = run(ds, keys, root)
    assert sorted((d.rule, d.subject, d.expected, d.found) for d in report.discrepancies) == [
        ("issued-vs-notified", "ID001 2016-01-01..2016-12-31 side ID", 70, 60),
        ("issued-vs-notified", "ID001 2016-01-01..2016-12-31 side JP", 70, 60),
    ]


def test_verified_snapshot_gives_the_same_report(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Verifying every signature (untrusted input) and trusting the store agree."""
    from jcm_sync.core.reconcile import reconcile

    ds = build()
    partner_over_issues(ds)
    snap = snapshot(root, envelopes(ds, keys))
    assert reconcile(snap) == reconcile(snap, now=CREATED.replace(month=6))


def test_retired_credits_moved_again_are_held_and_named(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The 2 retired serials moved out of the retirement account are what the finding
    holds; the same move without serial blocks is found too, and holds nothing."""
    ds = build()
    retired_credits_moved_again(ds)
    (d,) = run(ds, keys, root).discrepancies
    held = [r.describe() for r in d.ranges]
    assert held == ["ID:ID-ID002-2015-000001..ID-ID002-2015-000002 (2)"]
    assert "moves out of retirement account ID-RET-001" in d.summary
    assert "ID-TXN-0004" in d.summary
    assert "Settled when ID corrects" in d.summary
    blockless = build()
    retired_credits_moved_again(blockless)
    item = blockless.logs["ID"][-1]
    blockless.replace(item, blocks=())
    (d2,) = [d for d in run(blockless, keys, root).discrepancies
             if d.rule == "transaction-of-retired-units"]  # fmt: skip
    assert d2.ranges == ()
    assert d2.found == 2
    assert "naming no serials; holds nothing" in d2.summary
