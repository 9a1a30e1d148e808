"""The values of reconciliation (``core.reconcile.model``): stable ids, serial ranges,
the rules table, run statuses and the report's encoding."""

from __future__ import annotations

import hashlib
import itertools
from datetime import date
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile.model import (
    RULES,
    RUN_STATUSES,
    STAGE_ORDER,
    AuthorizationRow,
    Discrepancy,
    RecordRef,
    Report,
    SerialRange,
    discrepancy_id,
    finding,
    merge_ranges,
    run_status,
)
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, Period, SerialBlock
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import CREATED, PARTNERSHIP, build, run

BASE: dict[str, Any] = {"partnership": PARTNERSHIP, "created": CREATED}
REF = RecordRef("issuance", "ID/ID-ISS-1", "ab" * 32, "ID")


# --- ids --------------------------------------------------------------------------------


def test_a_discrepancy_id_is_a_hash_of_the_rule_and_the_natural_keys() -> None:
    """16 hex digits of SHA-256 over the rule and keys joined by the unit separator, so
    both sides (and every version) compute the same id for the same finding."""
    keys = ["ID002/2015-04-01/2015-12-31", "ID"]
    text = "issued-vs-notified\x1fID002/2015-04-01/2015-12-31\x1fID"
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert discrepancy_id("issued-vs-notified", keys) == expected
    assert discrepancy_id("issued-vs-notified", iter(keys)) == expected  # any iterable


def test_a_discrepancy_id_tells_rules_keys_and_their_split_apart() -> None:
    """Another rule, another key order or another split of the same text is another id."""
    ids = {
        discrepancy_id("double-issuance", ["ID", "a", "b"]),
        discrepancy_id("overlapping-blocks", ["ID", "a", "b"]),
        discrepancy_id("double-issuance", ["ID", "b", "a"]),
        discrepancy_id("double-issuance", ["ID", "ab"]),
        discrepancy_id("double-issuance", ["IDa", "b"]),
        discrepancy_id("double-issuance", []),
    }
    assert len(ids) == 6
    assert all(len(i) == 16 and set(i) <= set("0123456789abcdef") for i in ids)


def test_a_finding_takes_its_id_and_stage_from_its_rule_and_merges_its_ranges() -> None:
    """``finding`` is the one way rules make a discrepancy: stable id, the rule's stage,
    and ranges joined where they touch."""
    d = finding(
        "transaction-not-held", ["ID", "ID/ID-TXN-1"], "transaction ID/ID-TXN-1", "moves 7",
        [REF], [SerialRange("ID", "P-", 5, 7, 3), SerialRange("ID", "P-", 1, 4, 3)], found=7,
    )  # fmt: skip
    assert d.id == discrepancy_id("transaction-not-held", ["ID", "ID/ID-TXN-1"])
    assert (d.rule, d.stage, d.level, d.status) == ("transaction-not-held", "blocks", "blocks",
                                                    "open")  # fmt: skip
    assert d.ranges == (SerialRange("ID", "P-", 1, 7, 3),)
    assert d.records == (REF,)
    assert (d.expected, d.found, d.difference) == (None, 7, None)
    with pytest.raises(KeyError):
        finding("no-such-rule", [], "", "", [])


# --- the rules table --------------------------------------------------------------------


def test_every_rule_names_itself_a_known_stage_and_the_level_of_its_stage() -> None:
    """Stage 1 rules are totals-level, stage 2 and record rules blocks-level; Article 6.2
    rules are one or the other (amounts vs scope), as ``run_status`` documents."""
    assert RULES
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.stage in STAGE_ORDER
        assert rule.title
        if rule.stage == "totals":
            assert rule.level == "totals", name
        elif rule.stage in ("blocks", "records"):
            assert rule.level == "blocks", name
    assert RULES["a6-cap-exceeded"].level == "totals"
    assert RULES["a6-out-of-scope"].level == "blocks"


# --- serial ranges ----------------------------------------------------------------------


def test_a_range_prints_the_registrys_own_serials() -> None:
    """start/end pad the unit number to the width; describe gives the count."""
    r = SerialRange("ID", "ID-ID002-2015-", 7, 16, 6)
    assert (r.start, r.end, r.quantity) == ("ID-ID002-2015-000007", "ID-ID002-2015-000016", 10)
    assert r.describe() == "ID:ID-ID002-2015-000007..ID-ID002-2015-000016 (10)"
    assert SerialRange("JP", "S", 3, 3).describe() == "JP:S3 (1)"


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (SerialRange("ID", "P-", 10, 12), True),
        (SerialRange("ID", "P-", 1, 5), True),
        (SerialRange("ID", "P-", 11, 11), True),
        (SerialRange("ID", "P-", 13, 20), False),
        (SerialRange("ID", "P-", 1, 4), False),
        (SerialRange("JP", "P-", 5, 12), False),
        (SerialRange("ID", "Q-", 5, 12), False),
    ],
    ids=["tail", "head", "inside", "after", "before", "other-registry", "other-prefix"],
)
def test_ranges_overlap_only_in_one_registry_and_prefix(other: SerialRange, expected: bool) -> None:
    """Overlap is symmetric and needs a shared unit of the same registry and prefix."""
    r = SerialRange("ID", "P-", 5, 12)
    assert r.overlaps(other) is expected
    assert other.overlaps(r) is expected


ranges = st.lists(
    st.builds(
        lambda reg, pre, first, n: SerialRange(reg, pre, first, first + n, 4),
        st.sampled_from(["ID", "JP"]),
        st.sampled_from(["A-", "B-"]),
        st.integers(0, 60),
        st.integers(0, 8),
    ),
    max_size=12,
)


def units(rs: tuple[SerialRange, ...] | list[SerialRange]) -> set[tuple[str, str, int]]:
    return {(r.registry, r.prefix, u) for r in rs for u in range(r.first, r.last + 1)}


@given(ranges)
def test_merged_ranges_cover_the_same_units_sorted_apart_and_not_touching(
    rs: list[SerialRange],
) -> None:
    """merge_ranges keeps every unit, sorts, and leaves no two ranges of one prefix that
    overlap or touch; merging again changes nothing."""
    merged = merge_ranges(rs)
    assert units(merged) == units(rs)
    assert list(merged) == sorted(merged)
    for a, b in itertools.pairwise(merged):
        if (a.registry, a.prefix) == (b.registry, b.prefix):
            assert a.last + 1 < b.first
    assert merge_ranges(merged) == merged


# --- statuses and the report ------------------------------------------------------------


def disc(rule: str, status: str = "open") -> Discrepancy:
    return Discrepancy(id=rule, rule=rule, stage=RULES[rule].stage, subject="s", summary="x",
                       status=status)  # type: ignore[arg-type]  # fmt: skip


STATUS_TABLE = [
    ("nothing", [], "completed"),
    ("open-totals", [disc("issued-vs-notified")], "totals_inconsistent"),
    ("open-blocks", [disc("double-issuance")], "blocks_inconsistent"),
    ("totals-beat-blocks", [disc("double-issuance"), disc("a6-cap-exceeded")],
     "totals_inconsistent"),
    ("explained-only", [disc("issued-vs-notified", "explained")],
     "completed_with_manual_intervention"),
    ("explained-and-open", [disc("issued-vs-notified", "explained"), disc("double-issuance")],
     "blocks_inconsistent"),
    ("resolved-only", [disc("issued-vs-notified", "resolved")], "completed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("found", "expected"), [t[1:] for t in STATUS_TABLE], ids=[t[0] for t in STATUS_TABLE]
)
def test_the_run_status_follows_the_open_findings_levels(
    found: list[Discrepancy], expected: str
) -> None:
    """Open totals-level findings first, then blocks-level, then explained ones."""
    assert run_status(found) == expected
    assert run_status(iter(found)) == expected
    assert expected in RUN_STATUSES
    assert "initiated" not in {t[2] for t in STATUS_TABLE}


def test_an_authorization_row_says_what_remains_of_its_cap() -> None:
    """remaining = cap - first transferred, negative once exceeded."""
    assert AuthorizationRow("ID", "A", 1000, 241).remaining == 759
    assert AuthorizationRow("ID", "A", 240, 241).remaining == -1


def test_a_report_encodes_and_decodes_to_itself(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A report with findings, trails and ranges survives its JSON (the service's state
    file and ``--json``), and its views select by status and stage."""
    ds = build()
    ds.add("ID", IssuanceRecord(
        **BASE, author="ID", registry="ID", issuance_id="ID-ISS-X",
        decision=DecisionRef("ID002", Period(date(2015, 4, 1), date(2015, 12, 31))),
        issued_on=date(2016, 6, 3), amount=2, account=Account("ID-GOV-001", "government_holding"),
        blocks=(SerialBlock("ID-ID002-2015-000001", "ID-ID002-2015-000002", 2, 2015),),
    ))  # fmt: skip
    report = run(ds, keys, root)
    assert {d.rule for d in report.discrepancies} == {"overlapping-blocks", "issued-vs-notified"}
    assert report.trails
    again = msgspec.json.decode(msgspec.json.encode(report), type=Report)
    assert again == report
    assert msgspec.json.encode(again) == msgspec.json.encode(report)
    assert report.open == list(report.discrepancies)
    assert [d.rule for d in report.by_stage("blocks")] == ["overlapping-blocks"]
    assert [d.rule for d in report.by_stage("totals")] == ["issued-vs-notified"]
    assert report.by_stage("article6") == []


def test_a_deadline_counts_from_since_and_passes_on_its_due_day() -> None:
    """90 days from 5 January 2026 is 5 April: pending on the 4th, passed on the 5th; a
    report without a day has no age, never passes and says nothing of a deadline."""
    from datetime import date

    from jcm_sync.core.reconcile.model import Deadline, days

    before = Deadline(date(2026, 1, 5), 90, date(2026, 4, 4))
    assert (before.due, before.age, before.passed) == (date(2026, 4, 5), 89, False)
    assert before.awaited("r") == (
        " for 89 days since 2026-01-05; an r discrepancy from 2026-04-05 (90 days grace)"
    )
    assert Deadline(date(2026, 1, 5), 90, date(2026, 4, 5)).passed
    assert before.ended() == "the 90 days grace from 2026-01-05 ended on 2026-04-05"
    undated = Deadline(date(2026, 1, 5), 90, None)
    assert (undated.age, undated.passed, undated.awaited("r")) == (None, False, "")
    p = undated.pending(what="first_transfer", subject="s", summary="x")
    assert (p.since, p.age_days, p.due) == (date(2026, 1, 5), None, None)
    assert before.pending(what="issuance", subject="s", summary="x").due == date(2026, 4, 5)
    assert (days(1), days(2)) == ("1 day", "2 days")
