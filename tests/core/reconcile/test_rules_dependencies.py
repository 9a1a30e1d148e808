"""Dependencies and chronology (``core.reconcile.rules_dependencies``): clean data with
the projects' registrations and methodologies, one realistic fault each, and exactly the
findings that fault must produce.

The clean data is ``builders.build()`` with what the JC records of a registration hold:
the day each project was registered and the methodology it applies, each methodology
approved before. (Registration days and methodology numbers are illustrative, in the
order of the Indonesian JCM projects: methodology approved, project registered, first
monitoring period, decision in May of the next year, issuance a week later.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey, record_id
from jcm_sync.core.reconcile import Reconciler, Report, decode_stored, discrepancy_id
from jcm_sync.core.reconcile.model import RULES
from jcm_sync.core.records import IssuanceDecisionRecord, MethodologyRecord, ProjectRecord
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import (
    CREATED,
    PARTNER,
    PARTNERSHIP,
    Dataset,
    Item,
    build,
    envelopes,
    run,
    run_chunked,
)

RULE_IDS = (
    "project-not-registered",
    "methodology-not-valid",
    "decision-before-period-end",
    "issuance-before-decision",
)
DK_ID001 = "ID001/2016-01-01/2016-12-31"
DK_ID002 = "ID002/2015-04-01/2015-12-31"
DK_ID003 = "ID003/2017-03-01/2018-06-30"
REGISTERED = {"ID001": date(2015, 8, 10), "ID002": date(2015, 3, 24), "ID003": date(2016, 12, 6)}
METHODOLOGY = {"ID001": "ID_AM001", "ID002": "ID_AM002", "ID003": "ID_AM003"}
APPROVED = {"ID_AM001": date(2014, 10, 31), "ID_AM002": date(2014, 10, 31),
            "ID_AM003": date(2015, 5, 19)}  # fmt: skip


def methodology(mid: str, version: str = "ver01.0", **kw: object) -> MethodologyRecord:
    fields: dict[str, object] = {"status": "valid", "approved_on": APPROVED[mid], **kw}
    return MethodologyRecord(
        partnership=PARTNERSHIP, author="JP", created=CREATED, methodology_id=mid,
        version=version, title=f"Energy saving methodology {mid}", sectoral_scope="energy",
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def registered() -> Dataset:
    """The clean partnership with its registrations' dates and methodologies (co-signed
    JC records at the head of Japan's log)."""
    ds = build()
    for project, on in REGISTERED.items():
        ds.replace(ds.find("project", project_id=project), registered_on=on,
                   methodologies=(METHODOLOGY[project],))  # fmt: skip
    for k, mid in enumerate(sorted(APPROVED)):
        ds.logs["JP"].insert(k, Item(record=methodology(mid), cosign=True))
    return ds


def rid_of(ds: Dataset, keys: dict[str, PrivateKey], item: Item) -> str:
    """The record id ``item`` gets when the dataset is signed (signing is deterministic)."""
    for node, envs in envelopes(ds, keys).items():
        if item in ds.logs[node]:
            return record_id(envs[ds.logs[node].index(item)])
    raise AssertionError("item not in the dataset")


def new_project_version(
    ds: Dataset, keys: dict[str, PrivateKey], project: str, **changes: object
) -> None:
    """The JC records a new version of ``project``'s record (co-signed), superseding it."""
    item = ds.find("project", project_id=project, supersedes=None)
    assert isinstance(item.record, ProjectRecord)
    new = msgspec.structs.replace(item.record, supersedes=rid_of(ds, keys, item), **changes)
    ds.add(PARTNER, new, cosign=True)


# --- faults -----------------------------------------------------------------------------

Fault = Callable[[Dataset, dict[str, PrivateKey]], None]


def withdrawn_between_decision_and_issuance(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """The JC withdrew ID001 from 25 May 2017, five days after its decision for 2016;
    both registries issued the 2016 credits on 27 May all the same."""
    new_project_version(ds, keys, "ID001", status="withdrawn", status_since=date(2017, 5, 25))


def suspended_before_decision(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID002 was suspended from 1 April 2016; the JC decided on its 2015 period on 20 May."""
    new_project_version(ds, keys, "ID002", status="suspended", status_since=date(2016, 4, 1))


def withdrawn_without_a_day(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """The JC recorded ID002 as withdrawn without the day it took effect."""
    new_project_version(ds, keys, "ID002", status="withdrawn")


def registered_after_decision(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID003's record gives 3 June 2019 as its registration day (the day the record was
    updated), after the JC's decision of 20 May 2019 on its first period."""
    ds.replace(ds.find("project", project_id="ID003"), registered_on=date(2019, 6, 3))


def project_not_recorded(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID003's registration was never recorded in either log; its decision was."""
    ds.remove(lambda i: isinstance(i.record, ProjectRecord) and i.record.project_id == "ID003")


def methodology_approved_after_registration(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID_AM003 is recorded as approved on 12 January 2017, after ID003 was registered
    under it on 6 December 2016."""
    ds.replace(ds.find("methodology", methodology_id="ID_AM003"), approved_on=date(2017, 1, 12))


def methodology_inactive_at_registration(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID_AM003 ver01.0 went inactive on 30 September 2016 and ver02.0 was approved only
    on 1 February 2017: ID003, registered on 6 December 2016, had no valid version."""
    ds.replace(ds.find("methodology", methodology_id="ID_AM003"), status="inactive",
               status_since=date(2016, 9, 30))  # fmt: skip
    ds.add("JP", methodology("ID_AM003", "ver02.0", approved_on=date(2017, 2, 1)), cosign=True)


def methodology_only_proposed(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID_AM001 was recorded with status proposed and never approved."""
    ds.replace(ds.find("methodology", methodology_id="ID_AM001"), status="proposed",
               approved_on=None, proposed_id="ID_PM004")  # fmt: skip


def decided_before_period_end(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """ID003's decision is dated 15 June 2018, before its period ends on 30 June 2018."""
    ds.replace(ds.find("issuance_decision", project_id="ID003"), decided_on=date(2018, 6, 15))


def issued_before_decision(ds: Dataset, keys: dict[str, PrivateKey]) -> None:
    """Indonesia dated its ID002 issuances 12 May 2016 (the verification report's day),
    before the JC's decision of 20 May 2016."""
    for n in (1, 2):
        ds.replace(ds.find("issuance", issuance_id=f"ID-ISS-ID002-2015-{n}"),
                   issued_on=date(2016, 5, 12))  # fmt: skip


def iss(registry: str, name: str) -> tuple[str, str]:
    return ("issuance", f"{registry}/{registry}-ISS-{name}")


def dec(dk: str) -> tuple[str, str]:
    return ("issuance_decision", dk)


def proj(project: str) -> tuple[str, str]:
    return ("project", project)


ISSUED = {
    dk: {iss(side, f"{dk[:5]}-{dk[6:10]}-{h}") for side in ("JP", PARTNER) for h in (1, 2)}
    for dk in (DK_ID001, DK_ID002, DK_ID003)
}


@dataclass
class Scenario:
    id: str
    fault: Fault
    expected: list[tuple[str, list[str], set[tuple[str, str]]]]
    """Per finding: rule, the keys of its id, and the records it names (kind, key)."""
    held: int = 0
    """How many serials the findings hold (quarantine)."""


SCENARIOS = [
    Scenario("withdrawn-between-decision-and-issuance", withdrawn_between_decision_and_issuance, [
        ("project-not-registered", [DK_ID001, side], {proj("ID001"), *{
            i for i in ISSUED[DK_ID001] if i[1].startswith(side)}})
        for side in ("ID", "JP")
    ], held=120),
    Scenario("suspended-before-decision", suspended_before_decision, [
        ("project-not-registered", [DK_ID002], {dec(DK_ID002), proj("ID002"), *ISSUED[DK_ID002]}),
    ], held=40),
    Scenario("withdrawn-without-a-day", withdrawn_without_a_day, [
        ("project-not-registered", [DK_ID002], {dec(DK_ID002), proj("ID002"), *ISSUED[DK_ID002]}),
    ], held=40),
    Scenario("registered-after-decision", registered_after_decision, [
        ("project-not-registered", [DK_ID003], {dec(DK_ID003), proj("ID003"), *ISSUED[DK_ID003]}),
    ], held=300),
    Scenario("decision-under-a-project-in-neither-log", project_not_recorded, [
        ("project-not-registered", [DK_ID003], {dec(DK_ID003), *ISSUED[DK_ID003]}),
    ], held=300),
    Scenario("methodology-approved-after-registration", methodology_approved_after_registration, [
        ("methodology-not-valid", ["ID003", "ID_AM003"],
         {proj("ID003"), ("methodology", "ID_AM003/ver01.0")}),
    ]),
    Scenario("methodology-inactive-at-registration", methodology_inactive_at_registration, [
        ("methodology-not-valid", ["ID003", "ID_AM003"],
         {proj("ID003"), ("methodology", "ID_AM003/ver01.0"), ("methodology", "ID_AM003/ver02.0")}),
    ]),
    Scenario("methodology-only-proposed", methodology_only_proposed, [
        ("methodology-not-valid", ["ID001", "ID_AM001"],
         {proj("ID001"), ("methodology", "ID_AM001/ver01.0")}),
    ]),
    Scenario("decided-before-period-end", decided_before_period_end, [
        ("decision-before-period-end", [DK_ID003], {dec(DK_ID003), *ISSUED[DK_ID003]}),
    ], held=300),
    Scenario("issued-before-decision", issued_before_decision, [
        ("issuance-before-decision", [DK_ID002, "ID"],
         {dec(DK_ID002), iss("ID", "ID002-2015-1"), iss("ID", "ID002-2015-2")}),
    ], held=9),
]  # fmt: skip


def found(report: Report) -> list[tuple[str, str, set[tuple[str, str]]]]:
    return sorted(
        ((d.rule, d.id, {(r.kind, r.key) for r in d.records}) for d in report.discrepancies),
        key=lambda f: (f[0], f[1]),
    )


def faulty(scenario: Scenario, keys: dict[str, PrivateKey]) -> Dataset:
    ds = registered()
    scenario.fault(ds, keys)
    return ds


# --- tests ------------------------------------------------------------------------------


def test_the_rules_are_listed_as_record_checks_that_block() -> None:
    for rule in RULE_IDS:
        assert (RULES[rule].stage, RULES[rule].level) == ("records", "blocks")


def test_clean_registrations_give_no_finding(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """Registered before their decisions, under methodologies approved before: nothing
    found, nothing pending; the bare clean data (no dates, no methodology records) too."""
    for ds in (registered(), build()):
        report = run(ds, keys, root)
        assert report.discrepancies == ()
        assert report.pending == ()
        assert report.status == "completed"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_one_fault_gives_exactly_its_findings(
    scenario: Scenario, keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Each fault gives exactly its findings (rule, id, records), which hold the serials
    of the credits concerned; an incremental run in pieces gives the same."""
    ds = faulty(scenario, keys)
    report = run(ds, keys, root)
    expected = sorted(
        ((rule, discrepancy_id(rule, ks), recs) for rule, ks, recs in scenario.expected),
        key=lambda f: (f[0], f[1]),
    )
    assert found(report) == expected, [d.summary for d in report.discrepancies]
    assert report.status == "blocks_inconsistent"
    assert sum(r.quantity for d in report.discrepancies for r in d.ranges) == scenario.held
    logs = envelopes(ds, keys)
    chunked = run_chunked(root, logs, {node: [1, 4, 7, 12] for node in logs})
    assert chunked.discrepancies == report.discrepancies


def summaries(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> list[str]:
    return [d.summary for d in run(ds, keys, root).discrepancies]


def short(ds: Dataset, keys: dict[str, PrivateKey], kind: str, **fields: object) -> str:
    return rid_of(ds, keys, ds.find(kind, **fields))[:12]


def test_credits_issued_after_a_withdrawal_name_both_days(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The summary names the issuances (local id, short id, amount, day), the withdrawal
    day and the project record, and says what settles it; the decision, taken before the
    withdrawal, stands."""
    ds = faulty(SCENARIOS[0], keys)
    withdrawn = short(ds, keys, "project", project_id="ID001", status="withdrawn")
    jp1 = short(ds, keys, "issuance", issuance_id="JP-ISS-ID001-2016-1")
    jp2 = short(ds, keys, "issuance", issuance_id="JP-ISS-ID001-2016-2")
    assert summaries(ds, keys, root)[1] == (
        f"JP issued 60 credits (JP-ISS-ID001-2016-1 ({jp1}) 50 on 2017-05-27, "
        f"JP-ISS-ID001-2016-2 ({jp2}) 10 on 2017-05-27) under project ID001 for ID001 "
        f"2016-01-01..2016-12-31, which was withdrawn from 2017-05-25 by its JC record "
        f"({withdrawn}). Settled when the JC records the project's status and dates as they "
        "were (a new version of its record, signed by both secretariats), or JP corrects the "
        "issuance (a new version superseding it)"
    )


def test_records_dated_before_the_withdrawal_stay_valid(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Withdrawn from the day after the issuances: decision and issuances predate it."""
    ds = registered()
    new_project_version(ds, keys, "ID001", status="withdrawn", status_since=date(2017, 5, 28))
    assert summaries(ds, keys, root) == []


def test_a_decision_under_a_suspended_project_names_the_day_and_the_records(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[1], keys)
    decision = short(ds, keys, "issuance_decision", project_id="ID002")
    suspended = short(ds, keys, "project", project_id="ID002", status="suspended")
    [text] = summaries(ds, keys, root)
    assert text.startswith(
        f"the decision for ID002 2015-04-01..2015-12-31 ({decision}), decided on 2016-05-20, "
        f"is under project ID002, which was suspended from 2016-04-01 by its JC record "
        f"({suspended}); under it, ID issued 9 credits (ID-ISS-ID002-2015-1 ("
    )
    assert "; JP issued 31 credits (JP-ISS-ID002-2015-1 (" in text
    assert text.endswith(
        ". Settled when the JC records the project's status and dates as they "
        "were (a new version of its record, signed by both secretariats), or the decision "
        "is withdrawn"
    )


def test_a_project_registered_after_its_decision_or_in_neither_log(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[3], keys)
    [text] = summaries(ds, keys, root)
    assert (
        ", decided on 2019-05-20, is under project ID003, which was registered only on "
        f"2019-06-03 by its JC record ({short(ds, keys, 'project', project_id='ID003')})" in text
    )
    ds = faulty(SCENARIOS[4], keys)
    [text] = summaries(ds, keys, root)
    assert (
        "is under project ID003, which is in neither log: no JC record registers it; "
        "under it, ID issued 150 credits (" in text
    )
    assert text.endswith(
        ". Settled when the JC records the project's registration (signed by both "
        "secretariats), or the decision is withdrawn"
    )


def test_a_withdrawal_without_its_day_cannot_clear_earlier_records(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[2], keys)
    [text] = summaries(ds, keys, root)
    assert "which is withdrawn by its JC record (" in text
    assert ") from a day it does not state (no status_since);" in text


def test_a_methodology_approved_after_registration_names_both_days(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[5], keys)
    project = short(ds, keys, "project", project_id="ID003")
    version = short(ds, keys, "methodology", methodology_id="ID_AM003")
    assert summaries(ds, keys, root) == [
        f"project ID003 ({project}), registered on 2016-12-06, names methodology ID_AM003, no "
        f"version of which was valid then: ver01.0 ({version}) valid, approved on 2017-01-12. "
        "Settled when the JC records the methodology's status and approval date, or the "
        "project's registration date or methodologies, as they were (new versions, signed "
        "by both secretariats)"
    ]


def test_any_version_valid_at_registration_will_do(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """ver01.0 inactive only from 1 February 2017, when ver02.0 was approved: ID003 was
    registered under ver01.0 while it was valid. An inactive version without the day it
    went inactive counts as valid, and a methodology in neither log is not a finding."""
    ds = registered()
    ds.replace(ds.find("methodology", methodology_id="ID_AM003"), status="inactive",
               status_since=date(2017, 2, 1))  # fmt: skip
    ds.add("JP", methodology("ID_AM003", "ver02.0", approved_on=date(2017, 2, 1)), cosign=True)
    ds.replace(ds.find("methodology", methodology_id="ID_AM002"), status="inactive")
    ds.replace(ds.find("project", project_id="ID001"), methodologies=("ID_AM001", "ID_AM009"))
    assert summaries(ds, keys, root) == []


def test_a_methodology_awaiting_a_signature_was_not_valid(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """ID_AM002 proposed by Japan and not yet signed by Indonesia: pending, and ID002's
    registration under it is a finding naming the awaited signature."""
    ds = registered()
    ds.find("methodology", methodology_id="ID_AM002").cosign = False
    report = run(ds, keys, root)
    [d] = report.discrepancies
    assert d.rule == "methodology-not-valid"
    assert "ver01.0 (" in d.summary
    assert ") awaits the signature or endorsement of ID." in d.summary
    assert [p.subject for p in report.pending] == ["methodology ID_AM002/ver01.0"]


def test_issuances_before_their_decision_name_both_days(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[-1], keys)
    decision = short(ds, keys, "issuance_decision", project_id="ID002")
    one = short(ds, keys, "issuance", issuance_id="ID-ISS-ID002-2015-1")
    two = short(ds, keys, "issuance", issuance_id="ID-ISS-ID002-2015-2")
    assert summaries(ds, keys, root) == [
        f"ID issued 9 credits (ID-ISS-ID002-2015-1 ({one}) 5 on 2016-05-12, "
        f"ID-ISS-ID002-2015-2 ({two}) 4 on 2016-05-12) under the decision for ID002 "
        f"2015-04-01..2015-12-31 ({decision}) before it was decided on 2016-05-20. Settled "
        "when ID corrects the issuance's date (a new version superseding it) or the JC the "
        "decision's decided_on"
    ]


def test_a_decision_before_its_period_end_names_both_days(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    ds = faulty(SCENARIOS[-2], keys)
    decision = short(ds, keys, "issuance_decision", project_id="ID003")
    [text] = summaries(ds, keys, root)
    assert text.startswith(
        f"the decision for ID003 2017-03-01..2018-06-30 ({decision}), decided on 2018-06-15, "
        "15 days before its monitoring period ended on 2018-06-30: the JC decides on a "
        "monitored and verified period; under it, ID issued 150 credits (ID-ISS-ID003-2017-1 ("
    )
    assert text.endswith(
        ". Settled when the JC records the decision's correct "
        "decided_on or monitoring period (a new version, signed by both secretariats)"
    )


def test_a_proposed_decision_is_pending_not_judged(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A decision dated before its period's end that Indonesia has not endorsed yet is not
    a decision: nothing of this module is found (Japan's issuances under it are
    ``issuance-before-decision-effective``)."""
    ds = registered()
    decided_before_period_end(ds, keys)
    ds.remove(lambda i: i.endorses is not None)
    report = run(ds, keys, root)
    assert not [d for d in report.discrepancies if d.rule in RULE_IDS]
    assert any(d.rule == "issuance-before-decision-effective" for d in report.discrepancies)


def test_a_later_withdrawal_is_found_and_its_correction_clears_it(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Incremental: the withdrawal arrives after everything else and dirties only ID001's
    units; the JC's correction (withdrawn from 1 June instead) clears the findings."""
    ds = registered()
    rec = Reconciler(root)
    for node, envs in envelopes(ds, keys).items():
        rec.apply(node, decode_stored(root, envs), start=0)
    assert rec.report().discrepancies == ()
    withdrawn_between_decision_and_issuance(ds, keys)
    logs = envelopes(ds, keys)
    size = len(logs[PARTNER]) - 1
    rec.apply(PARTNER, decode_stored(root, logs[PARTNER][size:]), start=size)
    rec.settle()
    touched = {u for u in rec.tables.dirty if u[0] in ("dependencies", "methodologies")}
    assert touched == {("dependencies", DK_ID001), ("methodologies", "ID001")}
    assert {d.rule for d in rec.report().discrepancies} == {"project-not-registered"}
    item = ds.find("project", project_id="ID001", status="withdrawn")
    assert isinstance(item.record, ProjectRecord)
    ds.add(PARTNER, msgspec.structs.replace(
        item.record, status_since=date(2017, 6, 1), supersedes=rid_of(ds, keys, item)
    ), cosign=True)  # fmt: skip
    logs = envelopes(ds, keys)
    rec.apply(PARTNER, decode_stored(root, logs[PARTNER][size + 1 :]), start=size + 1)
    assert rec.report().discrepancies == ()


def test_the_decision_record_dates_are_what_is_compared(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A decision on the last day of its period, and issuances on the decision's day, are
    in order (both comparisons are strict)."""
    ds = registered()
    item = ds.find("issuance_decision", project_id="ID002")
    assert isinstance(item.record, IssuanceDecisionRecord)
    ds.replace(item, decided_on=date(2015, 12, 31))
    for n in (1, 2):
        for side in ("JP", "ID"):
            ds.replace(ds.find("issuance", issuance_id=f"{side}-ISS-ID002-2015-{n}"),
                       issued_on=date(2015, 12, 31))  # fmt: skip
    report = run(ds, keys, root)
    assert [d.summary for d in report.discrepancies if d.rule in RULE_IDS] == []
