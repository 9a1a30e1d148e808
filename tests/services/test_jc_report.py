"""The Joint Committee report's view (``services.jc_report``), from a real node's stored
reconciliation of a faulty Japan-Indonesia partnership (``jc_report_seed``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core.reconcile.model import RULES, STAGE_ORDER
from jcm_sync.errors import NotFoundError, NotReconciledError
from jcm_sync.local.config import load_config
from jcm_sync.services.jc_report import STATUSES, JcReport, build_view, load_view, utc
from jcm_sync.services.reconciliation import read_history, read_report
from jcm_sync.store.memory import MemoryStore
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.jc_report_seed import Seeded, seed
from tests.store.state import with_store

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("jc"))


@pytest.fixture(scope="module")
def view(seeded: Seeded) -> JcReport:
    return with_store(seeded.config, lambda store: load_view(store, PID, "ID", NOW))


def _data_dir(seeded: Seeded) -> Path:
    return load_config(seeded.config, env={}).data_dir


def test_every_finding_of_the_history_with_its_status_and_times(
    seeded: Seeded, view: JcReport
) -> None:
    """Rule 2: every finding ever found, with the status and times the history holds,
    the resolved one included, each with its rule's title."""
    history = with_store(seeded.config, lambda store: read_history(store, PID))
    assert {f.id for f in view.findings} == set(history.discrepancies)
    for f in view.findings:
        d = history.discrepancies[f.id]
        assert (f.rule, f.stage, f.status, f.summary) == (d.rule, d.stage, d.status, d.summary)
        assert (f.expected, f.found) == (d.expected, d.found)
        assert f.first_seen == utc(d.first_seen)
        assert f.resolved_at == utc(d.resolved_at)
        assert f.rule_title == RULES[f.rule].title
        assert [(r.kind, r.key, r.record_id) for r in f.records] == [
            (r.kind, r.key, r.record_id) for r in d.records
        ]
    by_id = {f.id: f for f in view.findings}
    assert by_id[seeded.resolved].status == "resolved"
    assert by_id[seeded.resolved].resolved_at is not None
    assert by_id[seeded.explained].status == "explained"
    assert {e.author for e in by_id[seeded.explained].resolutions} == {"JP", "ID"}


def test_findings_are_ordered_by_stage_then_status(view: JcReport) -> None:
    """Rule 2: stage order, then open, explained, resolved, then rule and id."""
    keys = [(STAGE_ORDER[f.stage], STATUSES.index(f.status), f.rule, f.id) for f in view.findings]
    assert keys == sorted(keys)
    assert {f.stage for f in view.findings} == set(STAGE_ORDER)


def test_over_issuance_has_both_figures(view: JcReport) -> None:
    """Indonesia issued 10 where 9 were notified: expected 9, found 10, difference +1."""
    (over,) = [f for f in view.findings if f.rule == "issued-vs-notified"]
    assert (over.expected, over.found, over.difference) == (9, 10, 1)
    assert [(g.registry, g.first, g.last, g.quantity) for g in over.ranges] == [
        ("ID", "ID-ID002-2015-000010", "ID-ID002-2015-000010", 1)
    ]


def test_held_ranges_are_those_of_open_findings(seeded: Seeded, view: JcReport) -> None:
    """Rule 3: what quarantine holds, and nothing of an explained or resolved finding."""
    opened = list(with_store(seeded.config, lambda store: read_history(store, PID)).open())
    expected = sorted((d.id, r.start, r.end) for d in opened for r in d.ranges)
    assert sorted((g.finding, g.first, g.last) for g in view.held) == expected
    assert expected
    closed = {f.id for f in view.findings if f.status != "open"}
    assert not closed & {g.finding for g in view.held}
    assert any(f.ranges for f in view.findings if f.status != "open")


def test_stage_counts_and_figures(seeded: Seeded, view: JcReport) -> None:
    """Rule 4: counts per stage and status add up to the history's; each stage's
    figures are the report's."""
    history = with_store(seeded.config, lambda store: read_history(store, PID))
    assert view.counts() == history.counts()
    for s in view.stages:
        got = {st: getattr(s, st) for st in STATUSES}
        want = dict.fromkeys(STATUSES, 0)
        for d in history.discrepancies.values():
            if d.stage == s.stage:
                want[d.status] += 1
        assert got == want, s.stage
    report = with_store(seeded.config, lambda store: read_report(store, PID))
    assert report is not None
    figures = {s.stage: dict(s.figures) for s in view.stages}
    assert figures["totals"]["effective decisions"] == report.totals.decisions
    assert figures["blocks"]["serials issued"] == report.blocks.issued_serials
    assert figures["article6"]["ITMO actions"] == report.article6.actions
    assert len(view.balances) == len(report.totals.balances)


def test_pending_items_keep_their_age_and_deadline(seeded: Seeded, view: JcReport) -> None:
    """The first transfers awaited since Japan's 2019 issuance, with their age and the
    day they become findings, as the report judged them."""
    report = with_store(seeded.config, lambda store: read_report(store, PID))
    assert report is not None
    assert [(p.what, p.subject, p.age_days, p.due) for p in view.pending] == [
        (p.what, p.subject, p.age_days, p.due) for p in report.pending
    ]
    dated = [p for p in view.pending if p.what == "first_transfer"]
    assert dated
    assert all(p.age_days and p.due and p.since for p in dated)


def test_runs_are_the_history_runs(seeded: Seeded, view: JcReport) -> None:
    """Two runs: the first found five, the second resolved one."""
    assert [(u.new, u.resolved) for u in view.runs] == [(5, 0), (0, 1)]
    assert view.status == view.runs[-1].status == "totals_inconsistent"


def test_times_are_naive_utc() -> None:
    """Rule 5: a time in another zone is turned to UTC, then the zone dropped."""
    tokyo = datetime(2026, 5, 20, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    assert utc(tokyo) == datetime(2026, 5, 20, 0, 0)
    assert utc(None) is None


def test_a_partnership_never_reconciled_is_refused(tmp_path: Path) -> None:
    """Rule 1: no stored run, no report; the refusal says what to run first."""
    with pytest.raises(NotReconciledError) as info:
        asyncio.run(load_view(MemoryStore(), PID, "ID", NOW))
    assert isinstance(info.value, NotFoundError)
    assert "reconcile run" in info.value.diagnostics()


def test_a_report_without_history_still_lists_its_findings(seeded: Seeded) -> None:
    """The view reads findings from the history; with an empty one, there are none,
    but the stages and pending items of the report remain."""
    from jcm_sync.services.reconciliation import History

    report = with_store(seeded.config, lambda store: read_report(store, PID))
    assert report is not None
    empty = build_view(report, History(partnership=PID), "ID", NOW)
    assert empty.findings == ()
    assert len(empty.stages) == len(STAGE_ORDER)
    assert len(empty.pending) == len(report.pending)
    changed = msgspec.structs.replace(report, pending=())
    assert build_view(changed, History(partnership=PID), "ID", NOW).pending == ()


def test_report_head_is_the_stored_report_less_findings_and_trail_steps(seeded: Seeded) -> None:
    """Rule 1: the head decodes the same stages, pending items and trail count as the
    whole report; a file that is not a report is a store error naming it."""
    from jcm_sync.errors import StoreError
    from jcm_sync.services.jc_report import read_report_head
    from jcm_sync.services.reconciliation import report_key

    report = with_store(seeded.config, lambda store: read_report(store, PID))
    head = with_store(seeded.config, lambda store: read_report_head(store, PID))
    assert report is not None
    assert head is not None
    assert (head.partnership, head.status, head.logs) == (report.partnership, report.status,
                                                          report.logs)  # fmt: skip
    assert (head.totals, head.blocks, head.article6) == (report.totals, report.blocks,
                                                         report.article6)  # fmt: skip
    assert head.pending == report.pending
    assert len(head.trails) == len(report.trails) > 0
    assert with_store(seeded.config, lambda store: read_report_head(store, "JP-MN")) is None
    broken = MemoryStore()
    asyncio.run(broken.put_state(report_key("JP-XX"), b'{"partnership": 1}'))
    with pytest.raises(StoreError, match=r"reconcile/JP-XX/report"):
        asyncio.run(read_report_head(broken, "JP-XX"))
