"""The AEF as files (``services.aef_write``): every file read back and compared.

The workbook is read back with openpyxl and each CSV with the csv module; every value
must be the report's, every record behind a row must be on the trace, every problem on
the checks sheet.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from jcm_sync.core.records import ItmoActionRecord, SerialBlock
from jcm_sync.errors import NotFoundError
from jcm_sync.services.aef import build_report
from jcm_sync.services.aef_rows import COLUMNS, T2, TABLES, AefReport
from jcm_sync.services.aef_write import (
    CHECK_COLUMNS,
    TRACE_COLUMNS,
    csv_name,
    sheet_name,
    write_report,
)
from tests.services import aef_data as data


def report(party: str, year: int, **kw: object) -> AefReport:
    held = data.held(data.envelopes())
    return build_report(data.nomenclature(), data.options(year, **kw), party, held)


def faulty() -> AefReport:
    """Japan's 2018 report with a use of units it never acquired: failures to list."""
    logs = data.envelopes()
    use = next(h.record for h in data.held(logs)
               if isinstance(h.record, ItmoActionRecord) and h.record.action == "use")  # fmt: skip
    assert isinstance(use, ItmoActionRecord)
    b = use.blocks[0]
    far = SerialBlock(f"{b.prefix}{900_000_001:09d}", f"{b.prefix}{900_000_003:09d}", 3, b.vintage)
    logs = data.append(logs, data.replace(use, action_id="JP-USE-X", blocks=(far,), quantity=3))
    return build_report(data.nomenclature(), data.options(use.occurred_on.year), "JP",
                        data.held(logs))  # fmt: skip


def cell(value: object) -> object:
    return value.date() if isinstance(value, datetime) else value


def test_names() -> None:
    assert [csv_name(t) for t in TABLES] == [
        "table1-submission", "table2-authorizations", "table3-actions", "table4-holdings",
        "table5-authorized-entities",
    ]  # fmt: skip
    assert all(len(sheet_name(t)) <= 31 for t in TABLES)  # Excel's limit


@pytest.mark.parametrize(("party", "year"), [("ID", 2016), ("JP", 2018)])
def test_the_workbook_reads_back_as_the_report(tmp_path: Path, party: str, year: int) -> None:
    r = report(party, year)
    (path,) = write_report(r, tmp_path, ["xlsx"])
    assert path.name == f"AEF-{'IDN' if party == 'ID' else 'JPN'}-{year}.xlsx"
    wb = load_workbook(path)
    assert wb.sheetnames == [*(sheet_name(t) for t in TABLES), "Trace", "Checks", "About"]
    for t in TABLES:
        rows = [[cell(v) for v in row] for row in wb[sheet_name(t)].iter_rows(values_only=True)]
        assert tuple(rows[0]) == COLUMNS[t]
        want = [[None if v == "" else v for v in row.values] for row in r.tables[t]]
        assert rows[1:] == want
    for row in wb[sheet_name(TABLES[0])].iter_rows(min_row=2):
        assert row[3].number_format == "DD/MM/YYYY"
    trace = list(wb["Trace"].iter_rows(values_only=True))
    assert trace[0] == TRACE_COLUMNS
    want_trace = {(t, n, h.record_id) for t in TABLES for n, row in enumerate(r.tables[t], 1)
                  for h in row.sources}  # fmt: skip
    assert {(t, n, rid) for t, n, rid, *_ in trace[1:]} == want_trace
    about = dict(wb["About"].iter_rows(min_row=2, values_only=True))
    assert about["Common nomenclatures followed"] == "17 February 2026"


def test_every_csv_reads_back_as_the_report(tmp_path: Path) -> None:
    r = report("ID", 2016)
    paths = write_report(r, tmp_path, ["csv"])
    assert len(paths) == len(TABLES) + 2
    for t in TABLES:
        path = tmp_path / f"AEF-IDN-2016-{csv_name(t)}.csv"
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == COLUMNS[t]
        want = [[v.strftime("%d/%m/%Y") if isinstance(v, date) else str(v) for v in row.values]
                for row in r.tables[t]]  # fmt: skip
        assert rows[1:] == want
    (auth,) = r.tables[T2]
    with (tmp_path / "AEF-IDN-2016-table2-authorizations.csv").open(encoding="utf-8") as f:
        line = list(csv.reader(f))[1]
    assert line[1] == auth.values[1].strftime("%d/%m/%Y")


def test_failures_are_on_the_checks_sheet_and_csv(tmp_path: Path) -> None:
    r = faulty()
    assert r.failures
    write_report(r, tmp_path, ["xlsx", "csv"])
    wb = load_workbook(tmp_path / f"AEF-JPN-{r.year}.xlsx")
    listed = list(wb["Checks"].iter_rows(values_only=True))
    assert listed[0] == CHECK_COLUMNS
    assert [(s, c, t) for s, c, t, *_ in listed[1:]] == [
        (p.severity, p.check, p.table) for p in r.problems
    ]
    assert dict(wb["About"].iter_rows(min_row=2, values_only=True))["Failures"] == len(r.failures)
    with (tmp_path / f"AEF-JPN-{r.year}-checks.csv").open(encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == 1 + len(r.problems)


def test_a_missing_folder_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        write_report(report("ID", 2016), tmp_path / "nope", ["xlsx", "csv"])
    assert list(tmp_path.iterdir()) == []


def test_rewriting_replaces_the_files_whole(tmp_path: Path) -> None:
    write_report(faulty(), tmp_path, ["xlsx"])
    r = report("JP", faulty().year)
    (path,) = write_report(r, tmp_path, ["xlsx"])
    assert load_workbook(path)["Checks"].max_row == 1 + len(r.problems)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
