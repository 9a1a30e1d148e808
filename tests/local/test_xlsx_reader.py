"""Tests for jcm_sync.local.xlsx_reader: the same values as openpyxl's read-only mode."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from jcm_sync.local import spreadsheets, xlsx_reader
from jcm_sync.local.xlsx_reader import Workbook


def _trim(values: list[object] | tuple[object, ...]) -> list[object]:
    out = list(values)
    while out and out[-1] is None:
        out.pop()
    return out


def openpyxl_rows(path: Path) -> dict[str, list[tuple[int, list[object]]]]:
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    out = {}
    for ws in wb.worksheets:
        rows = []
        for n, values in enumerate(ws.iter_rows(values_only=True), ws.min_row or 1):
            if any(v is not None for v in values):
                rows.append((n, _trim(values)))
        out[ws.title] = rows
    wb.close()
    return out


def our_rows(path: Path) -> dict[str, list[tuple[int, list[object]]]]:
    book = Workbook(str(path))
    try:
        return {
            title: [(n, _trim(v)) for n, v in book.rows(part) if any(x is not None for x in v)]
            for title, part in book.sheets
        }
    finally:
        book.close()


def test_values_of_every_type_as_openpyxl_reads_them(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "transaction"
    ws.append(["text", "whole", "decimal", "yes", "day", "time", "empty", "after"])
    ws.append(["JP-ID", 27, 2.5, True, date(2017, 1, 25), datetime(2017, 1, 25, 9, 30), None, 1])
    ws.append([" spaced ", -3, 1e20, False, None, None, None, None])
    ws.cell(6, 3).value = "a row after two empty ones, starting at C"
    ws.cell(7, 1).value = 27.0
    wb.create_sheet("second").append(["ok"])
    path = tmp_path / "types.xlsx"
    wb.save(path)
    assert our_rows(path) == openpyxl_rows(path)
    rows = our_rows(path)["transaction"]
    assert rows[1] == (2, ["JP-ID", 27, 2.5, True, datetime(2017, 1, 25),
                           datetime(2017, 1, 25, 9, 30), None, 1])  # fmt: skip
    assert rows[3] == (6, [None, None, "a row after two empty ones, starting at C"])


def test_a_write_only_workbook_and_the_template_read_the_same(tmp_path: Path) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("issuance")
    for i in range(50):
        ws.append([f"JP-ISS-{i}", i, date(2016, 1, 1 + i % 28), None, "x" * (i % 3)])
    wb.save(tmp_path / "w.xlsx")
    assert our_rows(tmp_path / "w.xlsx") == openpyxl_rows(tmp_path / "w.xlsx")
    (template,) = spreadsheets.write_template(tmp_path / "t.xlsx", "xlsx", ["transaction"])
    assert our_rows(template) == openpyxl_rows(template)


def test_the_1904_date_system(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.epoch = CALENDAR_MAC_1904
    ws = wb.active
    assert ws is not None
    ws.append([date(2017, 1, 25)])
    wb.save(tmp_path / "mac.xlsx")
    assert our_rows(tmp_path / "mac.xlsx")["Sheet"] == [(1, [datetime(2017, 1, 25)])]


def test_column_letters() -> None:
    assert [xlsx_reader._column(r) for r in ("A1", "Z9", "AA10", "AB12")] == [0, 25, 26, 27]


def test_what_is_not_a_workbook_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="not an XLSX workbook"):
        Workbook(str(tmp_path / "x.xlsx"))
