"""The export's file writers (``local/export_files.py``): a sheet or file per kind with
its header, UTF-8 with a BOM for CSV, nothing left behind by an abort or a failure,
existing targets kept unless overwritten, and memory that does not grow with rows."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from openpyxl import load_workbook

from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.local.export_files import CsvSink, JsonlSink, XlsxSink

SHEETS = {
    "issuance": ["record_id", "log", "log_index", "amount", "issuance_id"],
    "transaction": ["record_id", "log", "log_index", "amount", "txn_id"],
}
ROW = ["5dcb3516b95a", "JP", 0, 27, "JP-ISS-ID002-2015-1"]


def test_xlsx_has_every_sheet_with_its_header_even_when_empty(tmp_path: Path) -> None:
    target = tmp_path / "out.xlsx"
    sink = XlsxSink(target, description="jcm-sync export of JP-ID")
    sink.begin(SHEETS)
    sink.write("issuance", ROW)
    sink.commit()
    book = load_workbook(target, read_only=True)
    assert book.sheetnames == ["issuance", "transaction"]
    assert list(book["issuance"].iter_rows(values_only=True)) == [tuple(SHEETS["issuance"]),
                                                                  tuple(ROW)]  # fmt: skip
    assert list(book["transaction"].iter_rows(values_only=True)) == [tuple(SHEETS["transaction"])]
    assert book.properties.description == "jcm-sync export of JP-ID"
    book.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.xlsx"]


def test_csv_is_a_folder_of_files_in_utf8_with_a_bom(tmp_path: Path) -> None:
    target = tmp_path / "out"
    sink = CsvSink(target)
    sink.begin(SHEETS)
    sink.write("transaction", ["ab", "ID", 3, 1200, "ID-TXN-0001 «Jakarta»"])
    sink.commit()
    assert sorted(p.name for p in target.iterdir()) == ["issuance.csv", "transaction.csv"]
    raw = (target / "transaction.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8-sig").splitlines()[1] == "ab,ID,3,1200,ID-TXN-0001 «Jakarta»"


def test_jsonl_lines_and_stdout(tmp_path: Path) -> None:
    out = io.BytesIO()
    sink = JsonlSink(tmp_path / "-", stdout=out)
    sink.begin(SHEETS)
    for n in range(3):
        sink.write_object({"n": n})
    sink.write("issuance", ROW)
    sink.commit()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[:3] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert lines[3] == dict(zip(SHEETS["issuance"], ROW, strict=True))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", [XlsxSink, CsvSink, JsonlSink])
def test_abort_leaves_nothing_and_keeps_what_was_there(tmp_path: Path, kind: type) -> None:
    target = tmp_path / "out"
    sink = kind(target)
    sink.begin(SHEETS)
    sink.write("issuance", ROW)
    sink.abort()
    assert not list(tmp_path.iterdir())
    target.write_text("earlier export")
    with pytest.raises(BadDataError, match="exists already"):
        kind(target)
    sink = kind(target, overwrite=True)
    sink.begin(SHEETS)
    sink.abort()
    assert target.read_text() == "earlier export"


@pytest.mark.parametrize("kind", [XlsxSink, CsvSink, JsonlSink])
def test_a_missing_folder_is_refused_before_anything_is_written(tmp_path: Path, kind: type) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        kind(tmp_path / "missing" / "out")


@pytest.mark.parametrize(
    ("value", "what"), [("bad\x01id", "control character"), ("line\r\nbreak", "carriage return")]
)
def test_xlsx_refuses_what_it_cannot_store_as_it_is(value: str, what: str) -> None:
    sink = XlsxSink(Path("never-written.xlsx"))
    sink.begin(SHEETS)
    sink.write("issuance", ["ab", "JP", 0, 1, "line\nfeed is kept"])
    with pytest.raises(BadDataError, match=what):
        sink.write("issuance", ["ab", "JP", 0, 1, value])
    sink.abort()


@pytest.mark.parametrize("kind", [XlsxSink, CsvSink, JsonlSink])
def test_memory_does_not_grow_with_rows(tmp_path: Path, kind: type) -> None:
    """Rule 1: the peak while writing ten times the rows is about the same."""

    def peak(n: int) -> int:
        target = tmp_path / f"out-{n}"
        tracemalloc.start()
        sink = kind(target)
        sink.begin(SHEETS)
        for i in range(n):
            sink.write("issuance", [f"{i:064x}", "JP", i, 10, f"JP-ISS-{i:07d}"])
        sink.commit()
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    n = 1000 if kind is XlsxSink else 5000  # openpyxl under tracemalloc is slow
    small, large = peak(n), peak(10 * n)
    assert large < small * 2 + (1 << 20), (small, large)
