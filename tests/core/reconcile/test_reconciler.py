"""``Reconciler`` (``core.reconcile.reconciler``): the index with the rules, and its report:
the counts each stage reports, running totals kept across applies, trails, resolutions
and the report's order."""

from __future__ import annotations

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import Reconciler, Report, decode_stored
from jcm_sync.core.reconcile.model import STAGE_ORDER
from jcm_sync.core.records import IssuanceRecord, ItmoActionRecord, TransactionRecord
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError
from tests.core.reconcile.builders import PARTNER, Dataset, build, envelopes, resolution, run
from tests.core.reconcile.test_scenarios import (
    blockless_overdraft,
    japan_issues_block_twice,
    partner_over_issues,
    retires_credits_not_held,
    use_reported_short,
)


def fold(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> Reconciler:
    rec = Reconciler(root)
    for node, envs in envelopes(ds, keys).items():
        rec.apply(node, decode_stored(root, envs), start=0)
    return rec


def test_an_empty_reconciler_reports_two_empty_logs_and_completes(root: TrustRoot) -> None:
    """Nothing applied: both logs at size 0 with the empty root, nothing counted."""
    report = Reconciler(root).report()
    assert report.partnership == "JP-ID"
    assert [(p.node, p.size, p.root) for p in report.logs] == [
        ("JP", 0, merkle.EMPTY_ROOT.hex()), (PARTNER, 0, merkle.EMPTY_ROOT.hex()),
    ]  # fmt: skip
    assert report.status == "completed"
    assert (report.totals.decisions, report.totals.sides_compared) == (0, 0)
    assert report.totals.balances == ()
    assert report.blocks.registries == ()
    assert (report.discrepancies, report.pending, report.trails) == ((), (), ())


def test_the_stages_count_what_the_records_hold(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Blocks and serials issued and moved, per registry, and the Article 6.2 actions,
    against counts taken from the records themselves."""
    ds = build()
    records = [i.record for i in ds.items() if i.record is not None]
    issued = [b for r in records if isinstance(r, IssuanceRecord) for b in r.blocks]
    moved = [b for r in records if isinstance(r, TransactionRecord) for b in r.blocks]
    decisions = [r for r in records if r.kind == "issuance_decision"]
    report = run(ds, keys, root)
    assert report.blocks.registries == ("ID", "JP")
    assert report.blocks.issued_blocks == len(issued)
    assert report.blocks.issued_serials == sum(b.quantity for b in issued)
    assert report.blocks.moved_blocks == len(moved)
    assert report.blocks.moved_serials == sum(b.quantity for b in moved)
    assert report.article6.actions == sum(isinstance(r, ItmoActionRecord) for r in records)
    assert report.totals.decisions == len(decisions)
    assert report.totals.sides_compared == 2 * len(decisions)
    assert report.totals.sides_differing == 0
    for reg in ("ID", "JP"):
        issued_here = sum(r.amount for r in records
                          if isinstance(r, IssuanceRecord) and r.registry == reg)  # fmt: skip
        rows = [b for b in report.totals.balances if b.registry == reg]
        assert sum(b.issued for b in rows) == issued_here


def test_running_totals_follow_later_entries_as_a_fresh_fold_counts_them(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """One reconciler reports the clean data, then the over-issuance appended after it:
    one side differs, and the report equals that of folding everything at once."""
    ds = build()
    rec = fold(ds, keys, root)
    assert rec.report().totals.sides_differing == 0
    partner_over_issues(ds)
    rec.apply(PARTNER, decode_stored(root, envelopes(ds, keys)[PARTNER][-1:]))
    report = rec.report()
    assert report.totals.sides_differing == 1
    assert report.status == "totals_inconsistent"
    assert report == run(ds, keys, root)
    assert rec.report() == report  # reporting again, with nothing new, changes nothing


def test_findings_are_in_stage_rule_and_subject_order_and_each_range_has_its_trail(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rules 5 and 8: several faults at once; the findings sorted by stage, rule, subject
    and id; a trail per range of each finding, in that order, whose steps are records
    that touched the range."""
    ds = build()
    for fault in (use_reported_short, blockless_overdraft, retires_credits_not_held,
                  japan_issues_block_twice):  # fmt: skip
        fault(ds)
    report = run(ds, keys, root)
    found = report.discrepancies
    assert len({d.rule for d in found}) >= 5
    assert list(found) == sorted(
        found, key=lambda d: (STAGE_ORDER[d.stage], d.rule, d.subject, d.id)
    )
    expected = [(d.id, r) for d in found for r in d.ranges]
    assert [(t.discrepancy_id, t.range) for t in report.trails] == expected
    for t in report.trails:
        assert t.steps, t
        for step in t.steps:
            assert step.range.overlaps(t.range)
            assert step.action in ("issuance", "transfer", "retirement", "cancellation")
            assert step.on[:2] == "20"
    issuance_steps = [s for t in report.trails for s in t.steps if s.action == "issuance"]
    assert all(s.source == "" and s.destination for s in issuance_steps)


def test_a_resolution_of_a_finding_no_run_produced_changes_nothing(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rule 7 attaches resolutions to findings the data produces, and only to those."""
    ds = build()
    for side in ("JP", PARTNER):
        ds.add(side, resolution(side, "0123456789abcdef", "nothing to see"))
    report = run(ds, keys, root)
    assert (report.discrepancies, report.status) == ((), "completed")


def test_a_finding_explained_by_both_sides_keeps_its_figures(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rule 7: explained, with both explanations in author order; the figures stay."""
    ds = build()
    partner_over_issues(ds)
    (before,) = run(ds, keys, root).discrepancies
    for side in (PARTNER, "JP"):
        ds.add(side, resolution(side, before.id, f"agreed by {side}"))
    (after,) = run(ds, keys, root).discrepancies
    assert after.status == "explained"
    assert [(e.author, e.action, e.explanation) for e in after.explanations] == [
        ("ID", "explain", "agreed by ID"), ("JP", "explain", "agreed by JP"),
    ]  # fmt: skip
    assert (after.id, after.expected, after.found, after.ranges) == (
        before.id, before.expected, before.found, before.ranges,
    )  # fmt: skip


def test_entries_must_continue_the_folded_log(root: TrustRoot) -> None:
    """Applying entries from another index than the log's size is refused."""
    rec = Reconciler(root)
    with pytest.raises(BadDataError, match="start at 3"):
        rec.apply("JP", [], start=3)
    with pytest.raises(BadDataError, match="no log of node MN"):
        rec.apply("MN", [])
    assert isinstance(rec.report(), Report)
