"""Stage 1 rules (``core.reconcile.rules_totals``): one decision judged from the index,
without the reconciler around it."""

from __future__ import annotations

from datetime import date

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import decode_stored
from jcm_sync.core.reconcile.engine import Index
from jcm_sync.core.reconcile.rules_totals import DecisionJudgement, judge_decision
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, Period
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import CREATED, PARTNER, PARTNERSHIP, Dataset, build, envelopes

D_ID002 = "ID002/2015-04-01/2015-12-31"
D_ID003 = "ID003/2017-03-01/2018-06-30"
DECIDED = date(2016, 5, 20)  # ID002's decision
DUE = date(2016, 8, 18)  # 90 days later


def index_of(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot, *nodes: str) -> Index:
    index = Index(root)
    for node, envs in envelopes(ds, keys).items():
        if not nodes or node in nodes:
            index.apply(node, decode_stored(root, envs), start=0)
    index.settle()
    return index


def partly_issued() -> Dataset:
    """Indonesia has issued 5 of the 9 credits notified to it for ID002."""
    ds = build()
    ds.remove(lambda i: i.record is not None
              and getattr(i.record, "issuance_id", "") == "ID-ISS-ID002-2015-2")  # fmt: skip
    return ds


def test_a_decision_issued_as_notified_gives_nothing(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Both sides issued what was notified, split as allocated: no finding, nothing
    pending, one decision and two sides compared, and no dependence on the day."""
    verdict = judge_decision(index_of(build(), keys, root), D_ID002, None, 90)
    assert verdict == DecisionJudgement([], [], (1, 2, 0), False)


def test_judging_reads_the_index_and_changes_nothing(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The same index, key, day and grace give the same judgement, and no unit is dirtied."""
    index = index_of(partly_issued(), keys, root)
    index.take_dirty()
    first = judge_decision(index, D_ID002, date(2016, 7, 1), 90)
    assert judge_decision(index, D_ID002, date(2016, 7, 1), 90) == first
    assert index.take_dirty() == set()


@pytest.mark.parametrize(
    ("as_of", "grace", "rule", "late"),
    [
        (date(2016, 7, 1), 90, None, ""),
        (DUE, 90, "issued-vs-notified", "; the 90 days grace from 2016-05-20 ended on 2016-08-18"),
        (date(2016, 7, 1), 0, "issued-vs-notified",
         "; the 0 days grace from 2016-05-20 ended on 2016-05-20"),
        (None, 90, "issued-vs-notified", ""),
    ],
    ids=["within-grace", "on-the-due-day", "no-grace", "without-a-day"],
)  # fmt: skip
def test_a_partly_issued_side_waits_out_its_grace(
    keys: dict[str, PrivateKey], root: TrustRoot,
    as_of: date | None, grace: int, rule: str | None, late: str,
) -> None:  # fmt: skip
    """5 of 9 issued is pending until decided_on + grace, then issued-vs-notified; without
    a day it is judged at once (rule 3)."""
    verdict = judge_decision(index_of(partly_issued(), keys, root), D_ID002, as_of, grace)
    assert verdict.timed  # partly issued: judged again when the day or grace changes
    if rule is None:
        assert verdict.findings == []
        [p] = verdict.pending
        assert (p.what, p.missing, p.since, p.age_days, p.due) == ("issuance", ("ID",),
                                                                   DECIDED, 42, DUE)  # fmt: skip
        assert verdict.stats == (1, 2, 0)
    else:
        [d] = verdict.findings
        assert (d.rule, d.expected, d.found) == (rule, 9, 5)
        decision, iss = (r.record_id[:12] for r in d.records)
        assert d.summary == (
            "ID issued 5 credits where the decision for ID002 2015-04-01..2015-12-31 "
            f"({decision}) notified 9 (4 fewer){late}: issuances ID-ISS-ID002-2015-1 ({iss}) of "
            "5; holds no serials, as each credit issued was notified. Settled when ID issues "
            "the other 4, or the Joint Committee supersedes the decision with one notifying "
            "ID 5"
        )
        assert d.ranges == ()  # holding: none of the 5 issued credits is in doubt
        assert verdict.pending == []
        assert verdict.stats == (1, 2, 1)


def test_issuing_more_than_notified_is_a_finding_at_once(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A tenth credit for Indonesia is issued-vs-notified whatever the day, naming the
    decision and the issuances; the 9 issued within the notified amount stay free, and
    the tenth, issued without blocks, has no serial to hold ("Holding")."""
    ds = build()
    ds.add(PARTNER, IssuanceRecord(
        partnership=PARTNERSHIP, author="ID", created=CREATED, registry="ID",
        issuance_id="ID-ISS-ID002-2015-3",
        decision=DecisionRef("ID002", Period(date(2015, 4, 1), date(2015, 12, 31))),
        issued_on=date(2016, 6, 3), amount=1, account=Account("ID-GOV-001", "government_holding"),
    ))  # fmt: skip
    verdict = judge_decision(index_of(ds, keys, root), D_ID002, date(2016, 6, 4), 90)
    [d] = verdict.findings
    assert (d.rule, d.expected, d.found, verdict.timed) == ("issued-vs-notified", 9, 10, False)
    assert [r.kind for r in d.records] == ["issuance_decision", *["issuance"] * 3]
    assert d.ranges == ()
    gov, pp = (r.record_id[:12] for r in d.records[1:3])
    assert (
        f"issuances ID-ISS-ID002-2015-1 ({gov}) of 5, ID-ISS-ID002-2015-2 ({pp}) of 4 stay within "
        "it; holds no serials; 1 excess credits were issued without serial blocks and cannot "
        "be held. Settled when ID corrects its issuances to 9 in all"
    ) in d.summary


def test_the_right_total_in_the_wrong_accounts_is_an_allocation_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's participant share issued into its government account: the total is
    right, the split is not (allocation-vs-issued)."""
    ds = build()
    item = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-2")
    ds.replace(item, account=Account("ID-GOV-001", "government_holding"))
    verdict = judge_decision(index_of(ds, keys, root), D_ID002, None, 90)
    [d] = verdict.findings
    assert d.rule == "allocation-vs-issued"
    decision, gov, pp = (r.record_id[:12] for r in d.records)
    assert d.summary == (
        f"ID issued its 9 credits for ID002 2015-04-01..2015-12-31 ({decision}) as "
        "government_holding 9 (allocated 5), participant_holding 0 (allocated 4); holds "
        "ID:ID-ID002-2015-000001..ID-ID002-2015-000009 (9) of ID-ISS-ID002-2015-1 "
        f"({gov}), ID-ISS-ID002-2015-2 ({pp}); issuances into account types as allocated "
        "stay free. Settled when ID corrects the account of the issuances off their "
        "allocation (a superseding version), or the Joint Committee supersedes the decision "
        "with one allocating as issued"
    )
    assert verdict.stats == (1, 2, 0)


def test_issuing_before_the_decision_takes_effect_or_without_one(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """With Japan's log alone, ID003's decision awaits Indonesia: Japan's issuances under
    it are issuance-before-decision-effective; with no decision at all, untraceable."""
    ds = build()
    japan_only = index_of(ds, keys, root, "JP")
    verdict = judge_decision(japan_only, D_ID003, None, 90)
    assert [(d.rule, d.found) for d in verdict.findings] == [
        ("issuance-before-decision-effective", 150)
    ]
    assert verdict.stats == (0, 0, 0)
    ds.remove(lambda i: i.record is not None and i.record.kind == "issuance_decision")
    ds.remove(lambda i: i.endorses is not None)
    verdict = judge_decision(index_of(ds, keys, root), D_ID002, None, 90)
    assert [(d.rule, d.subject) for d in verdict.findings] == [
        ("untraceable-issuance", "ID002 2015-04-01..2015-12-31 side ID"),
        ("untraceable-issuance", "ID002 2015-04-01..2015-12-31 side JP"),
    ]
    assert [r.describe() for r in verdict.findings[0].ranges] == [
        "ID:ID-ID002-2015-000001..ID-ID002-2015-000009 (9)"
    ]
    summary = verdict.findings[0].summary
    assert "(issuances ID-ISS-ID002-2015-1 (" in summary
    assert "holds all their serials (ID:ID-ID002-2015-000001..ID-ID002-2015-000009 (9))" in (
        summary
    )
    assert "Settled when the Joint Committee's decision for ID002" in summary
