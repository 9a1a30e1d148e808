"""Explanations a secretariat can act on (issue 11): each finding built from a realistic
fault names both sides' figures, the records involved and what would settle it."""

from __future__ import annotations

import dataclasses

import msgspec

from jcm_sync.core.envelope import PrivateKey, record_id
from jcm_sync.core.reconcile import RULES
from jcm_sync.core.records import AuthorizationRecord, EndorsementRecord, SerialBlock
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import (
    AUTHORIZATION,
    CLEAN_SPECS,
    PARTNER,
    PARTNERSHIP,
    build,
    envelopes,
    run,
)


def _shifted(block: SerialBlock, by: int) -> SerialBlock:
    prefix = block.start[:-6]
    first = int(block.start[-6:]) + by
    return SerialBlock(
        f"{prefix}{first:06d}", f"{prefix}{first + block.quantity - 1:06d}",
        block.quantity, block.vintage,
    )  # fmt: skip


def test_a_use_reported_for_other_serials_names_both_totals(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan retired 20 ID001 credits for its NDC and reported their use for the next 20
    serials: both findings say 20 retired and 20 reported, and name both records."""
    ds = build()
    use = ds.find("itmo_action", action_id="JP-USE-0002")
    assert use.record is not None
    ds.replace(use, blocks=(_shifted(use.record.blocks[0], 20),))
    found = [d for d in run(ds, keys, root).discrepancies if d.rule == "a6-use-mirror"]
    assert len(found) == 2
    for d in found:
        assert {(d.expected, d.found)} <= {(20, 0), (0, 20)}
        assert " 0 " not in d.summary
        assert "report 20" in d.summary
        assert "retired or cancelled 20" in d.summary
        assert "JP/JP-TXN-0003" in d.summary
        assert "JP/JP-USE-0002" in d.summary
        assert "JP-ID001-2016-000001..JP-ID001-2016-000020" in d.summary
        assert "JP-ID001-2016-000021..JP-ID001-2016-000040" in d.summary
        assert "Settled when" in d.summary


def test_blocks_overlapping_inside_one_issuance_are_not_issued_by_itself(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan's government issuance for ID001 states 1..30 and 21..40: the finding names the
    two blocks, the 10 shared serials, 40 distinct serials against the stated 50, and the
    correction that settles it; never "already issued by" the same issuance."""
    ds = build()
    iss = ds.find("issuance", issuance_id="JP-ISS-ID001-2016-1")
    p = "JP-ID001-2016-"
    ds.replace(iss, blocks=(
        SerialBlock(f"{p}000001", f"{p}000030", 30, 2016),
        SerialBlock(f"{p}000021", f"{p}000040", 20, 2016),
    ))  # fmt: skip
    (d,) = [d for d in run(ds, keys, root).discrepancies if d.rule == "overlapping-blocks"]
    assert d.found == 10
    assert [r.key for r in d.records] == ["JP/JP-ISS-ID001-2016-1"]
    assert "already issued by" not in d.summary
    assert d.records[0].record_id[:12] in d.summary
    assert f"{p}000001..{p}000030 (30)" in d.summary
    assert f"{p}000021..{p}000040 (20)" in d.summary
    assert f"share 10 serials (JP:{p}000021..{p}000030 (10))" in d.summary
    assert "40 distinct serials where it states an amount of 50" in d.summary
    assert "Settled when JP corrects" in d.summary


def test_an_authorization_in_one_log_is_not_said_to_be_in_neither(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's authorization recorded in Japan's log as Japan's: each of Indonesia's
    four first transfers is flagged, and neither the rule's title nor the summary says the
    authorization is in neither log; the summary names both records and the remedy."""
    ds = build()
    auth = ds.find("authorization", authorization_id=AUTHORIZATION)
    assert isinstance(auth.record, AuthorizationRecord)
    ds.remove(lambda i: i is auth)
    ds.add("JP", msgspec.structs.replace(auth.record, author="JP", party="JP"))
    found = [d for d in run(ds, keys, root).discrepancies if d.rule == "a6-authorization-unknown"]
    assert [d.records[0].key for d in found] == [f"ID/ID-FT-000{k}" for k in range(1, 5)]
    assert "neither" not in RULES["a6-authorization-unknown"].title.split(", or")[1]
    for d in found:
        assert "neither" not in d.summary
        assert d.records[0].record_id[:12] in d.summary
        assert f"JP's authorization JP/{AUTHORIZATION} (" in d.summary
        assert "its own Party's (ID)" in d.summary
        assert f"Settled when ID records its authorization {AUTHORIZATION}" in d.summary
    assert "of 31 ITMOs of ID002 vintage 2015" in found[0].summary


def test_an_endorsement_of_the_wrong_kind_is_named_as_such(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia recorded the ID002 decision and Japan endorsed it, but as a ``project``:
    the decision is not effective, and the pending item and both issuances' findings name
    Japan's endorsement (short id), the kind it names, and how to settle it, rather than
    only "awaits endorsement of JP"."""
    specs = [
        dataclasses.replace(s, endorse=True) if s.project == "ID002" else s for s in CLEAN_SPECS
    ]
    ds = build(specs)
    decision = ds.find("issuance_decision", project_id="ID002")
    (endorsement,) = [i for i in ds.logs["JP"] if i.endorses is decision]
    signed = envelopes(ds, keys)
    decision_id = record_id(signed[PARTNER][ds.logs[PARTNER].index(decision)])
    endorsement.endorses = None
    endorsement.record = EndorsementRecord(
        partnership=PARTNERSHIP, author="JP", created=ds.created, endorses=decision_id,
        endorsed_kind="project",
    )  # fmt: skip
    endorsement_id = record_id(envelopes(ds, keys)["JP"][ds.logs["JP"].index(endorsement)])
    report = run(ds, keys, root)
    found = [d for d in report.discrepancies if d.rule == "issuance-before-decision-effective"]
    assert sorted((d.subject, d.found) for d in found) == [
        ("ID002 2015-04-01..2015-12-31 side ID", 9),
        ("ID002 2015-04-01..2015-12-31 side JP", 31),
    ]
    (pending,) = [p for p in report.pending if p.what == "signature"]
    for summary in [d.summary for d in found] + [pending.summary]:
        assert f"JP's endorsement {endorsement_id[:12]}" in summary
        assert f"({decision_id[:12]})" in summary
        assert "names the kind project" in summary
        assert "settled when JP records an endorsement naming the kind issuance_decision" in (
            summary
        )


def _scenario_reports(keys: dict[str, PrivateKey], root: TrustRoot) -> list[tuple[str, object]]:
    from tests.core.reconcile import test_rules_dependencies, test_scenarios

    out: list[tuple[str, object]] = []
    for sc in test_scenarios.SCENARIOS:
        ds = build()
        sc.fault(ds)
        out.append((sc.id, run(ds, keys, root)))
    for dsc in test_rules_dependencies.SCENARIOS:
        ds = test_rules_dependencies.registered()
        dsc.fault(ds, keys)
        out.append((dsc.id, run(ds, keys, root)))
    return out


def test_every_scenario_finding_names_its_figures_records_and_what_settles_it(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Across the realistic faults (stage 1, serials, Article 6.2, dependencies and
    chronology), each finding's summary states both figures it compares, names every
    record it lists by its short id, and says what would settle it."""
    checked = 0
    for sid, report in _scenario_reports(keys, root):
        for d in report.discrepancies:  # type: ignore[attr-defined]
            where = f"{sid}: {d.rule}: {d.summary}"
            assert "Settled when" in d.summary, where
            for r in d.records:
                assert r.record_id[:12] in d.summary, f"{where} lacks {r.describe()}"
            for figure in (d.expected, d.found):
                if figure is not None:
                    assert str(figure) in d.summary, f"{where} lacks the figure {figure}"
            checked += 1
    assert checked >= 25
