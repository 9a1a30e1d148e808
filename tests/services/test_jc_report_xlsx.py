"""The Joint Committee report as XLSX (``services.jc_report_xlsx``), read back with
openpyxl and checked against the view it was written from."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import pytest
from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from jcm_sync.services.jc_report import JcReport, load_view
from jcm_sync.services.jc_report_xlsx import SHEETS, render_xlsx
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.jc_report_seed import Seeded, seed
from tests.store.state import with_store

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

REQUIRED = ["Summary", "Findings", "Records", "Held ranges", "Pending", "History"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("jc-xlsx"))


@pytest.fixture(scope="module")
def view(seeded: Seeded) -> JcReport:
    return with_store(seeded.config, lambda store: load_view(store, PID, "ID", NOW))


@pytest.fixture(scope="module")
def book(view: JcReport) -> Workbook:
    return load_workbook(BytesIO(render_xlsx(view)))


def table(ws: Worksheet) -> list[dict[str, Any]]:
    """A sheet's rows as dicts by header, up to the first empty row."""
    rows = ws.iter_rows(values_only=True)
    header = [str(h) for h in next(rows)]
    out = []
    for row in rows:
        if all(v is None for v in row):
            break
        out.append(dict(zip(header, row, strict=True)))
    return out


def test_sheets_in_order_with_bold_frozen_headers_and_widths(book: Workbook) -> None:
    """Rules 1 and 2: the sheets the Joint Committee expects, first and in order; every
    header cell bold, row 1 frozen, every used column with a width."""
    assert book.sheetnames[: len(REQUIRED)] == REQUIRED
    assert book.sheetnames == [name for name, _ in SHEETS]
    for ws in book.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        header = next(ws.iter_rows(max_row=1))
        assert all(c.font.b for c in header), ws.title
        for c in header:
            dim = ws.column_dimensions[c.column_letter]
            assert dim.customWidth, (ws.title, c.value)
            assert dim.width >= len(str(c.value)) - 2, (ws.title, c.value)


def test_one_findings_row_per_finding_with_both_figures(book: Workbook, view: JcReport) -> None:
    rows = table(book["Findings"])
    assert [r["Finding id"] for r in rows] == [f.id for f in view.findings]
    for r, f in zip(rows, view.findings, strict=True):
        assert (r["Rule"], r["Status"], r["Stage"]) == (f.rule, f.status, f.stage)
        assert (r["Expected"], r["Found"], r["Difference"]) == (f.expected, f.found, f.difference)
        assert r["Records"] == len(f.records)
        assert r["Summary"] == f.summary
    over = next(r for r in rows if r["Rule"] == "issued-vs-notified")
    assert (over["Expected"], over["Found"], over["Difference"], over["Serials held"]) == (
        9, 10, 1, 1)  # fmt: skip
    explained = next(r for r in rows if r["Status"] == "explained")
    assert explained["Held ranges"] == 0
    assert "JP explain" in explained["Resolutions"]


def test_records_sheet_maps_each_finding_to_its_records(book: Workbook, view: JcReport) -> None:
    rows = table(book["Records"])
    got = [(r["Finding id"], r["Kind"], r["Key"], r["Short id"], r["Record id"]) for r in rows]
    assert got == [(x.finding, x.kind, x.key, x.short_id, x.record_id) for x in view.records]
    assert all(len(r["Short id"]) == 12 and r["Record id"].startswith(r["Short id"]) for r in rows)


def test_held_ranges_and_pending(book: Workbook, view: JcReport) -> None:
    held = table(book["Held ranges"])
    assert [
        (r["Finding id"], r["First serial"], r["Last serial"], r["Quantity"]) for r in held
    ] == [(g.finding, g.first, g.last, g.quantity) for g in view.held]
    pending = table(book["Pending"])
    assert len(pending) == len(view.pending)
    for r, p in zip(pending, view.pending, strict=True):
        assert r["Age (days)"] == p.age_days
        assert (r["Since"].date() if r["Since"] else None) == p.since
        assert (r["Finding from"].date() if r["Finding from"] else None) == p.due


def test_history_times_are_date_cells(book: Workbook, view: JcReport) -> None:
    """Rule 2: first seen, last seen and resolved at are date cells in UTC, to the
    millisecond a spreadsheet keeps."""
    rows = table(book["History"])
    for r, f in zip(rows, view.findings, strict=True):
        for col, want in (("First seen (UTC)", f.first_seen), ("Resolved at (UTC)", f.resolved_at)):
            if want is None:
                assert r[col] is None
            else:
                assert abs((r[col] - want).total_seconds()) < 0.002, (col, r[col], want)
    assert book["History"]["E2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sum(r["Resolved at (UTC)"] is not None for r in rows) == 1


def test_summary_counts_match_the_findings(book: Workbook, view: JcReport) -> None:
    rows = table(book["Summary"])
    by_stage = {r["Stage"]: r for r in rows}
    for s in view.stages:
        r = by_stage[s.title]
        assert (r["Open"], r["Explained"], r["Resolved"], r["All"]) == (
            s.open, s.explained, s.resolved, s.total)  # fmt: skip
    counts = view.counts()
    assert by_stage["All stages"]["All"] == len(view.findings) == sum(counts.values())


def test_text_starting_with_equals_is_not_a_formula(view: JcReport) -> None:
    """Rule 3: a counterpart's explanation that looks like a formula stays text."""
    f = next(f for f in view.findings if f.resolutions)
    evil = '=HYPERLINK("https://example.org","click")'
    res = (replace(f.resolutions[0], text=evil),)
    changed = replace(view, findings=tuple(
        replace(x, resolutions=res) if x.id == f.id else x for x in view.findings))  # fmt: skip
    ws = load_workbook(BytesIO(render_xlsx(changed)))["Resolutions"]
    cell = next(c for row in ws.iter_rows() for c in row if c.value == evil)
    assert cell.data_type == "s"


def test_a_control_character_does_not_refuse_the_report(view: JcReport) -> None:
    """Rule 3: a character no workbook can hold is written as U+FFFD, the rest kept."""
    f = next(f for f in view.findings if f.resolutions)
    res = (replace(f.resolutions[0], text="bell\x07 rang"),)
    changed = replace(view, findings=tuple(
        replace(x, resolutions=res) if x.id == f.id else x for x in view.findings))  # fmt: skip
    rows = table(load_workbook(BytesIO(render_xlsx(changed)))["Resolutions"])
    assert "bell\ufffd rang" in {r["Explanation or correcting records"] for r in rows}
