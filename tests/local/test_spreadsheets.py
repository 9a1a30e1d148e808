"""Tests for jcm_sync.local.spreadsheets: rows read as a stream, templates, the report."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from jcm_sync.core import sheet_template, tabular
from jcm_sync.core.records import KINDS, Record
from jcm_sync.errors import BadDataError, CellProblem
from jcm_sync.local import spreadsheets as sheets
from jcm_sync.local.spreadsheets import SourceRow
from tests.core.reconcile.builders import build
from tests.sheets import workbook


def _records() -> list[Record]:
    return [i.record for i in build().logs["ID"] if i.record is not None]


def _rows(path: Path, **kw: str) -> list[SourceRow]:
    out = list(sheets.read_source(path, **kw))
    assert all(isinstance(r, SourceRow) for r in out), out
    return out  # type: ignore[return-value]


def test_xlsx_rows_become_the_same_records(tmp_path: Path) -> None:
    records = _records()
    rows = _rows(workbook(tmp_path / "id.xlsx", records))
    assert len(rows) == len(records)
    got = [tabular.row_to_record(r.kind, dict(r.cells or {})) for r in rows]
    assert sorted(map(repr, got)) == sorted(map(repr, records))
    first = rows[0]
    assert (first.file, first.sheet, first.row) == (str(tmp_path / "id.xlsx"), first.kind, 2)


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_csv_with_or_without_a_bom(tmp_path: Path, bom: bool) -> None:
    txns = [r for r in _records() if r.kind == "transaction"]
    path = tmp_path / "jp-id_transaction.csv"
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f)
        names = tabular.headers("transaction")
        w.writerow(names)
        for r in txns:
            row = tabular.record_to_row(r)
            w.writerow(["" if row[n] is None else row[n] for n in names])
    rows = _rows(path)
    assert [r.kind for r in rows] == ["transaction"] * len(txns)
    assert "partnership" in (rows[0].cells or {})  # the BOM is not part of the first header
    got = [tabular.row_to_record("transaction", dict(r.cells or {})) for r in rows]
    assert got == txns


def test_csv_kind_from_a_kind_column_or_refused_when_unknowable(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("kind,partnership,author\nissuance,JP-ID,ID\nissuanse,JP-ID,ID\n", "utf-8")
    out = list(sheets.read_source(path))
    assert isinstance(out[0], SourceRow)
    assert out[0].kind == "issuance"
    assert isinstance(out[1], CellProblem)
    assert out[1].reason.endswith("did you mean `issuance`?")
    plain = tmp_path / "records.csv"
    plain.write_text("partnership,author\nJP-ID,ID\n", "utf-8")
    (problem,) = sheets.read_source(plain)
    assert isinstance(problem, CellProblem)
    assert "cannot tell the record kind" in problem.reason
    assert _rows(plain, kind="issuance")[0].kind == "issuance"


def test_unknown_sheet_and_column_are_yielded_as_problems(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "transactions"  # type: ignore[union-attr]
    ws = wb.create_sheet("transaction")
    ws.append(["partnership", "purpse"])
    ws.append(["JP-ID", "ndc"])
    wb.save(tmp_path / "b.xlsx")
    out = list(sheets.read_source(tmp_path / "b.xlsx"))
    problems = [p for p in out if isinstance(p, CellProblem)]
    assert [(p.sheet, p.row, p.reason) for p in problems] == [
        ("transactions", 0, "sheet `transactions` is not a record kind; did you mean "
         "`transaction`?"),
        ("transaction", 1, "unknown column `purpse`; did you mean `purpose`?"),
    ]  # fmt: skip
    (row,) = [r for r in out if isinstance(r, SourceRow)]
    assert row.cells == {"partnership": "JP-ID"}


def test_the_format_is_the_extension_unless_given(tmp_path: Path) -> None:
    assert sheets.format_of(Path("a.XLSX")) == "xlsx"
    assert sheets.format_of(Path("a.ndjson")) == "jsonl"
    assert sheets.format_of(Path("a.txt"), "csv") == "csv"
    with pytest.raises(BadDataError, match="give --format"):
        sheets.format_of(Path("a.txt"))


def test_a_file_that_is_no_workbook_or_not_utf8_is_one_refusal(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_bytes(b"not a zip")
    with pytest.raises(BadDataError, match="not an XLSX workbook"):
        list(sheets.read_source(tmp_path / "x.xlsx"))
    (tmp_path / "issuance.csv").write_bytes("partnership\nJP-ID \xe9\n".encode("latin-1"))
    with pytest.raises(BadDataError, match="not UTF-8"):
        list(sheets.read_source(tmp_path / "issuance.csv"))


def test_json_lines_and_arrays_yield_documents(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"a":1}\n\n{"b":2}\n')
    assert [(r.row, r.data) for r in _rows(tmp_path / "a.jsonl")] == [
        (1, b'{"a":1}'), (3, b'{"b":2}')]  # fmt: skip
    (tmp_path / "a.json").write_bytes(b'\xef\xbb\xbf[{"a":1}, {"b":2}]')
    assert [r.data for r in _rows(tmp_path / "a.json")] == [b'{"a":1}', b'{"b":2}']


def test_a_json_file_over_its_limit_names_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sheets, "MAX_JSON_FILE", 10)
    (tmp_path / "a.json").write_bytes(b'[{"a":1}, {"b":2}]')
    with pytest.raises(BadDataError, match="at most 10 bytes; write one record per line"):
        list(sheets.read_source(tmp_path / "a.json"))


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_a_template_imports_as_nothing(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / ("t.xlsx" if fmt == "xlsx" else "t")
    written = sheets.write_template(target, fmt, list(KINDS))
    assert len(written) == (1 if fmt == "xlsx" else len(KINDS))
    for path in written:
        assert list(sheets.read_source(path)) == []


def test_the_xlsx_template_has_descriptions_examples_and_validation(tmp_path: Path) -> None:
    (path,) = sheets.write_template(tmp_path / "t.xlsx", "xlsx", ["transaction"])
    ws = openpyxl.load_workbook(path)["transaction"]
    names = [c.value for c in ws[1]]
    assert names == tabular.headers("transaction")
    desc = sheet_template.describe("transaction")
    assert [c.value for c in ws[2]] == [desc[n] for n in names]
    example = sheet_template.example_row("transaction")
    executed = ws.cell(3, names.index("executed_on") + 1).value
    assert executed.date() == date.fromisoformat(str(example["executed_on"]))
    lists = {dv.formula1 for dv in ws.data_validations.dataValidation if dv.type == "list"}
    assert '"transfer,cancellation,retirement"' in lists
    assert any(dv.type == "date" for dv in ws.data_validations.dataValidation)
    # an edited example row is data
    ws.cell(3, names.index("amount") + 1).value = 21
    ws.parent.save(path)
    (row,) = list(sheets.read_source(path))
    assert isinstance(row, SourceRow)
    assert row.row == 3


def test_the_report_highlights_and_comments_each_bad_cell(tmp_path: Path) -> None:
    src = workbook(tmp_path / "id.xlsx", _records())
    problems = [
        CellProblem("type", "retirment", "not one of ...", str(src), "transaction", 2),
        CellProblem("amount", "x", "not a whole number", str(src), "transaction", 2),
        CellProblem("record", "", "shares sum to 41", str(src), "issuance_decision", 2),
    ]
    sheets.write_report(tmp_path / "r.xlsx", [(src, "xlsx")], problems)
    wb = openpyxl.load_workbook(tmp_path / "r.xlsx")
    ws = wb["transaction"]
    names = [c.value for c in ws[1]]
    bad = ws.cell(2, names.index("type") + 1)
    assert bad.fill.start_color.rgb.endswith("FFC7CE")
    assert bad.comment.text == "not one of ..."
    assert ws.cell(2, names.index("amount") + 1).comment.text == "not a whole number"
    assert ws.cell(3, names.index("type") + 1).comment is None
    assert wb["issuance_decision"].cell(2, 1).comment.text == "record: shares sum to 41"
    listed = list(wb[sheets.PROBLEMS_SHEET].values)
    assert listed[0] == ("file", "sheet", "row", "column", "value", "reason")
    assert len(listed) == 4


def test_the_report_of_a_csv_keeps_row_numbers_and_names_the_sheet_by_kind(
    tmp_path: Path,
) -> None:
    src = tmp_path / "jp-id_transaction.csv"
    src.write_text("partnership,amount\n\nJP-ID,x\n", "utf-8")
    problem = CellProblem("amount", "x", "not a whole number", str(src), "", 3)
    sheets.write_report(tmp_path / "r.xlsx", [(src, "csv")], [problem])
    ws = openpyxl.load_workbook(tmp_path / "r.xlsx")["transaction"]
    assert ws.cell(3, 2).value == "x"
    assert ws.cell(3, 2).comment.text == "not a whole number"
