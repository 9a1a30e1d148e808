"""Writing an AEF report as one XLSX workbook and as one CSV file per table.

Why this module exists: the UNFCCC platform takes the AEF as a spreadsheet, and
secretariats check it in one; scripts and other tools want plain CSV. Both carry the
same values; this module only lays them out.

Rules (docs/adr/0026-article-6-2-aef-report.md):

1. The workbook ``AEF-<PARTY>-<YEAR>.xlsx`` has a sheet per table (``Table 1 Submission``
   ...), with the columns of decision 4/CMA.6 annex II in the first row, then
   ``Trace`` (table, row, record id, kind, partnership, log, log index: every record
   behind every row), ``Checks`` (severity, check, table, row, detail) and ``About``
   (Party, year, the nomenclature version followed).
2. Each table, the trace and the checks are also ``AEF-<PARTY>-<YEAR>-<name>.csv``:
   UTF-8, a header row, comma separated, quoted where needed.
3. Dates of tables 1, 2 and 5 are date cells shown ``dd/mm/yyyy`` in the workbook and
   written ``dd/mm/yyyy`` in CSV; action dates are ISO 8601 UTC text, as the AEF asks.
4. Every file is written to a temporary name beside it and renamed into place, so a
   reader never sees half a file; a folder that does not exist is a ``NotFoundError``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.services.aef_rows import COLUMNS, TABLES, AefReport

TRACE_COLUMNS: Final = ("Table", "Row", "Record id", "Kind", "Partnership", "Log", "Log index")
CHECK_COLUMNS: Final = ("Severity", "Check", "Table", "Row", "Detail")
FORMATS: Final = ("xlsx", "csv")


def sheet_name(table: str) -> str:
    return f"Table {table}"


def csv_name(table: str) -> str:
    """``1 Submission`` -> ``table1-submission``."""
    number, _, title = table.partition(" ")
    return f"table{number}-{title.lower().replace(' ', '-')}"


def base_name(report: AefReport, party3: str) -> str:
    return f"AEF-{party3}-{report.year}"


def trace_rows(report: AefReport) -> Iterator[list[Any]]:
    """Rule 1's trace: a line per record behind each row of each table."""
    for table in TABLES:
        for n, row in enumerate(report.tables[table], 1):
            for h in row.sources:
                yield [table, n, h.record_id, h.record.kind, h.partnership, h.log, h.index]


def check_rows(report: AefReport) -> Iterator[list[Any]]:
    for p in report.problems:
        yield [p.severity, p.check, p.table, p.row if p.row is not None else "", p.detail]


def _csv_value(value: Any) -> Any:
    return value.strftime("%d/%m/%Y") if isinstance(value, date) else value


def _replace(path: Path, data: bytes) -> None:
    """Rule 4."""
    if not path.parent.is_dir():
        raise NotFoundError(f"folder {path.parent} does not exist", where=str(path))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadDataError(f"cannot write the AEF: {exc.strerror}", where=str(path)) from None


def workbook_bytes(report: AefReport) -> bytes:
    """Rules 1 and 3: the workbook, as bytes."""
    wb = Workbook()
    first = wb.active
    assert first is not None
    wb.remove(first)
    bold = Font(bold=True)
    sheets: list[tuple[str, Sequence[str], list[list[Any]]]] = [
        (sheet_name(t), COLUMNS[t], [list(r.values) for r in report.tables[t]]) for t in TABLES
    ]
    sheets.append(("Trace", TRACE_COLUMNS, list(trace_rows(report))))
    sheets.append(("Checks", CHECK_COLUMNS, list(check_rows(report))))
    about = [
        ["Party", report.tables[TABLES[0]][0].values[0]],
        ["Reported year", report.year],
        ["Common nomenclatures followed", report.nomenclature],
        ["Failures", len(report.failures)],
    ]
    sheets.append(("About", ("Item", "Value"), about))
    for title, columns, rows in sheets:
        ws = wb.create_sheet(title)
        ws.append(list(columns))
        for cell in ws[1]:
            cell.font = bold
        for values in rows:
            ws.append(values)
        ws.freeze_panes = "A2"
        for i, col in enumerate(columns, 1):
            width = max([len(str(col))] + [len(str(_csv_value(r[i - 1]))) for r in rows[:200]])
            ws.column_dimensions[get_column_letter(i)].width = min(max(width + 2, 10), 60)
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, date):
                    cell.number_format = "DD/MM/YYYY"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_bytes(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """Rule 2: one CSV file's bytes."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for values in rows:
        w.writerow([_csv_value(v) for v in values])
    return buf.getvalue().encode("utf-8")


def write_report(report: AefReport, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``report`` in ``formats`` into ``out_dir``; return the paths written."""
    party3 = str(report.tables[TABLES[0]][0].values[0])
    base = base_name(report, party3)
    written: list[Path] = []
    if "xlsx" in formats:
        path = out_dir / f"{base}.xlsx"
        _replace(path, workbook_bytes(report))
        written.append(path)
    if "csv" in formats:
        files: list[tuple[str, Sequence[str], list[list[Any]]]] = [
            (csv_name(t), COLUMNS[t], [list(r.values) for r in report.tables[t]]) for t in TABLES
        ]
        files.append(("trace", TRACE_COLUMNS, list(trace_rows(report))))
        files.append(("checks", CHECK_COLUMNS, list(check_rows(report))))
        for name, columns, rows in files:
            path = out_dir / f"{base}-{name}.csv"
            _replace(path, csv_bytes(columns, rows))
            written.append(path)
    return written
