"""Files an import reads and the files it writes for people: rows of XLSX, CSV and JSON
read as a stream, templates, and the error report.

Why this module exists: secretariats author records in spreadsheets. What a row means
is ``core.tabular``; this module only moves cells between files and that layout.

Rules:

1. **The format** is the file's extension (``.xlsx``, ``.csv``, ``.jsonl``, ``.json``)
   unless ``--format`` names it (``format_of``).
2. **Streaming.** XLSX is read with ``xlsx_reader`` (expat; openpyxl writes templates
   and reports) and CSV with the csv module, a row at a time; JSON lines a line at a
   time. Only a ``.json`` file (one document or an array) is read whole, up to
   ``MAX_JSON_FILE``; a JSON line may be at most ``MAX_LINE`` bytes. There is no limit
   on the number of rows.
3. **Kinds.** An XLSX sheet is named after its kind. A CSV file's kind is ``--kind``,
   else a ``kind`` column, else its name (``issuance.csv``, ``jp-id_transaction.csv``).
   A sheet named after no kind is a problem, with the closest kind suggested.
4. **What is not data.** Row 1 is the header; empty rows are skipped, and so are rows
   2-3 when they are the template's description or example row
   (``core.sheet_template``). CSV is UTF-8, with or without a byte-order mark; a date
   cell of a spreadsheet at midnight is that day.
5. **Problems are yielded, not raised**, for what is wrong in a file (an unknown sheet
   or column), so the importer can list every problem at once; a file that cannot be
   read at all (missing, not a workbook, not UTF-8) is a one-line ``BadDataError``.
6. **The report** is a workbook with a copy of every tabular input, each bad cell filled
   red with a comment giving the reason, and a ``problems`` sheet listing every one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final

import msgspec
import openpyxl
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from jcm_sync.core import sheet_template, tabular
from jcm_sync.core.records import KINDS
from jcm_sync.errors import BadDataError, CellProblem, NoOutputFolderError, NotFoundError
from jcm_sync.local import xlsx_reader

FORMATS: Final = ("xlsx", "csv", "jsonl", "json")
MAX_JSON_FILE: Final = 256 * 1024 * 1024
MAX_LINE: Final = 1024 * 1024
PROBLEMS_SHEET: Final = "problems"
_BAD: Final = PatternFill("solid", start_color="FFC7CE", end_color="FFC7CE")


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row (or JSON document) of an input, with where it is."""

    file: str
    sheet: str
    row: int
    kind: str
    cells: Mapping[str, object] | None = None
    data: bytes | None = None


def format_of(path: Path, given: str | None = None) -> str:
    """Rule 1."""
    fmt = given or path.suffix.lower().lstrip(".")
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise BadDataError(
            f"cannot tell the format of {path.name}: give --format {'|'.join(FORMATS)}",
            where=str(path),
        )
    return fmt


def read_source(
    path: Path, fmt: str | None = None, kind: str | None = None
) -> Iterator[SourceRow | CellProblem]:
    """Rows of one input file, or problems of the file, in file order (rules 2-5)."""
    fmt = format_of(path, fmt)
    if not path.is_file():
        raise NotFoundError(f"no file {path}", where=str(path))
    if fmt == "xlsx":
        yield from _read_xlsx(path)
    elif fmt == "csv":
        yield from _read_csv(path, kind)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_json(path)


def _value(v: object) -> object:
    if isinstance(v, datetime) and v.tzinfo is None and v.time() == time(0):
        return v.date()  # rule 4: a date cell
    return v


def _rows(
    file: str, sheet: str, kind: str, rows: Iterator[tuple[int, Sequence[object]]]
) -> Iterator[SourceRow | CellProblem]:
    """The header and data rows of one sheet or CSV file (rule 4)."""
    first = next(rows, None)
    if first is None:
        return
    at, header = first
    names = ["" if h is None else str(h).strip() for h in header]
    for p in tabular.unknown_columns(kind, [n for n in names if n]):
        yield CellProblem(p.column, p.value, p.reason, file, sheet, at)
    known = set(tabular.headers(kind))
    keep = [(i, n) for i, n in enumerate(names) if n in known or n == "kind"]
    unnamed = [i for i, n in enumerate(names) if not n]
    for number, values in rows:
        if not any(v is not None and v != "" for v in values):
            continue
        for i in unnamed:
            if i < len(values) and values[i] not in (None, ""):
                where = get_column_letter(i + 1)
                yield CellProblem(where, str(values[i]), "a value in a column without a header",
                                  file, sheet, number)  # fmt: skip
        n = len(values)
        cells = {name: _value(values[i]) if i < n else None for i, name in keep}
        if number <= at + 2 and sheet_template.is_template_row(kind, cells):
            continue
        yield SourceRow(file, sheet, number, kind, cells=cells)


def _read_xlsx(path: Path) -> Iterator[SourceRow | CellProblem]:
    try:
        book = xlsx_reader.Workbook(str(path))
    except ValueError as exc:
        raise BadDataError(str(exc), where=str(path)) from None
    try:
        for title, part in book.sheets:
            if title.strip() == PROBLEMS_SHEET:
                continue  # a report's own sheet, when a report is imported after fixing
            if title.strip() not in KINDS:
                hint = tabular.did_you_mean(title.strip(), KINDS)
                yield CellProblem("", title, f"sheet `{title}` is not a record kind{hint}",
                                  str(path), title, 0)  # fmt: skip
                continue
            try:
                yield from _rows(str(path), title, title.strip(), book.rows(part))
            except ValueError as exc:
                raise BadDataError(str(exc), where=f"{path}:{title}") from None
    finally:
        book.close()


def kind_of_name(path: Path) -> str | None:
    """The kind a CSV file's name ends with (rule 3), the longest that fits."""
    stem = path.stem.lower()
    fits = [k for k in KINDS if stem == k or stem.endswith(("_" + k, "-" + k, " " + k))]
    return max(fits, key=len) if fits else None


def _read_csv(path: Path, kind: str | None) -> Iterator[SourceRow | CellProblem]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return
            names = [h.strip() for h in header]
            kind = kind or (None if "kind" in names else kind_of_name(path))
            if kind is None:
                yield from _csv_by_kind_column(path, names, reader)
                return
            yield from _rows(str(path), "", kind, enumerate(_chain(header, reader), 1))
    except UnicodeDecodeError as exc:
        raise BadDataError(
            f"not UTF-8 text (byte {exc.start}); save the CSV as UTF-8", where=str(path)
        ) from None
    except csv.Error as exc:
        raise BadDataError(f"not a CSV file: {exc}", where=str(path)) from None


def _chain(first: Sequence[str], rest: Iterator[list[str]]) -> Iterator[Sequence[object]]:
    yield first
    yield from rest


def _csv_by_kind_column(
    path: Path, names: list[str], reader: Iterator[list[str]]
) -> Iterator[SourceRow | CellProblem]:
    """Rows of a CSV whose ``kind`` column names each row's kind (rule 3)."""
    if "kind" not in names:
        yield CellProblem("", path.name, "cannot tell the record kind: name the file KIND.csv, "
                          "add a kind column or give --kind", str(path), "", 0)  # fmt: skip
        return
    at = names.index("kind")
    checked: set[str] = set()
    for number, values in enumerate(reader, 2):
        if not any(values):
            continue
        kind = values[at].strip() if at < len(values) else ""
        if kind not in KINDS:
            yield CellProblem("kind", kind, f"not a record kind{tabular.did_you_mean(kind, KINDS)}",
                              str(path), "", number)  # fmt: skip
            continue
        cells = {n: v for n, v in zip(names, values, strict=False) if n}
        if kind not in checked:
            checked.add(kind)
            for p in tabular.unknown_columns(kind, [n for n, v in cells.items() if v]):
                yield CellProblem(p.column, p.value, p.reason, str(path), "", 1)
        cells = {n: v for n, v in cells.items() if n in tabular.headers(kind) or n == "kind"}
        yield SourceRow(str(path), "", number, kind, cells=cells)


def _read_jsonl(path: Path) -> Iterator[SourceRow | CellProblem]:
    with path.open("rb") as f:
        head = f.read(1)
        f.seek(0)
        if head == b"[":  # a JSON array in a .jsonl file: read as .json
            yield from _read_json(path)
            return
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), 1):
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                raise BadDataError(f"line {number} is longer than {MAX_LINE} bytes",
                                   where=str(path))  # fmt: skip
            if line.strip():
                yield SourceRow(str(path), "", number, "", data=line.strip())


def _read_json(path: Path) -> Iterator[SourceRow | CellProblem]:
    if path.stat().st_size > MAX_JSON_FILE:
        raise BadDataError(
            f"a .json file is read whole and may hold at most {MAX_JSON_FILE} bytes; "
            "write one record per line (.jsonl) to import more",
            where=str(path),
        )
    data = path.read_bytes().strip()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.startswith(b"["):
        yield from _read_jsonl_bytes(path, data)
        return
    try:
        items = msgspec.json.decode(data, type=list[msgspec.Raw])
    except msgspec.MsgspecError as exc:
        raise BadDataError(f"not valid JSON: {exc}", where=str(path)) from None
    except RecursionError:
        raise BadDataError("JSON is nested too deeply to hold records", where=str(path)) from None
    for number, item in enumerate(items, 1):
        yield SourceRow(str(path), "", number, "", data=bytes(item))


def _read_jsonl_bytes(path: Path, data: bytes) -> Iterator[SourceRow]:
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield SourceRow(str(path), "", number, "", data=line.strip())


# --- templates ---------------------------------------------------------------------------


def _validation(col: tabular.Column, letter: str) -> DataValidation | None:
    where = f"{letter}3:{letter}100000"
    if col.shape == "choice":
        dv = DataValidation(type="list", formula1='"' + ",".join(col.choices) + '"',
                            allow_blank=True)  # fmt: skip
    elif col.shape == "date":
        dv = DataValidation(type="date", operator="greaterThan", formula1="DATE(1990,1,1)",
                            allow_blank=True)  # fmt: skip
        dv.error = f"a date: {tabular.DATE_FORMS}"
    else:
        return None
    dv.add(where)
    return dv


def write_template(target: Path, fmt: str, kinds: Sequence[str]) -> list[Path]:
    """Write an empty template (header, description, example row per kind); return the
    files written. XLSX: one workbook, one sheet per kind. CSV: ``KIND.csv`` per kind
    in the folder ``target`` (created), or ``target`` itself for one kind."""
    if fmt == "csv":
        if len(kinds) == 1 and target.suffix.lower() == ".csv":
            paths = [target]
        else:
            _make_folder(target)
            paths = [target / f"{k}.csv" for k in kinds]
        for path, kind in zip(paths, kinds, strict=True):
            rows = [tabular.headers(kind), sheet_template.describe(kind),
                    sheet_template.example_row(kind)]  # fmt: skip
            with _open_out(path) as f:
                w = csv.writer(f)
                w.writerow(rows[0])
                for row in rows[1:]:
                    assert isinstance(row, dict)
                    w.writerow(["" if row[n] is None else row[n] for n in rows[0]])
        return paths
    wb = openpyxl.Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    for kind in kinds:
        ws = wb.create_sheet(kind)
        cols = tabular.columns(kind)
        ws.append([c.name for c in cols])
        desc, example = sheet_template.describe(kind), sheet_template.example_row(kind)
        ws.append([desc[c.name] for c in cols])
        ws.append([_xlsx_cell(c, example[c.name]) for c in cols])
        for i, c in enumerate(cols, 1):
            letter = get_column_letter(i)
            ws.cell(1, i).font = Font(bold=True)
            ws.cell(2, i).font = Font(italic=True, color="808080")
            ws.column_dimensions[letter].width = max(14, min(48, len(c.name) + 4))
            if c.shape == "date":
                ws.cell(3, i).number_format = "yyyy-mm-dd"
            dv = _validation(c, letter)
            if dv is not None:
                ws.add_data_validation(dv)
        ws.freeze_panes = "A3"
    _save(wb, target)
    return [target]


def _xlsx_cell(col: tabular.Column, value: tabular.Cell) -> object:
    if col.shape == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise NoOutputFolderError(f"folder {path.parent} does not exist", where=str(path)) from None
    except OSError as exc:
        raise BadDataError(f"cannot create the folder: {exc.strerror}", where=str(path)) from None


def _open_out(path: Path) -> Any:
    try:
        return path.open("w", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise NoOutputFolderError(f"folder {path.parent} does not exist", where=str(path)) from None
    except OSError as exc:
        raise BadDataError(f"cannot write: {exc.strerror}", where=str(path)) from None


def _save(wb: openpyxl.Workbook, target: Path) -> None:
    try:
        wb.save(target)
    except FileNotFoundError:
        raise NoOutputFolderError(
            f"folder {target.parent} does not exist", where=str(target)
        ) from None
    except OSError as exc:
        raise BadDataError(f"cannot write: {exc.strerror}", where=str(target)) from None


# --- the report (rule 6) -----------------------------------------------------------------


def write_report(
    target: Path, inputs: Sequence[tuple[Path, str]], problems: Sequence[CellProblem]
) -> None:
    """A copy of every tabular input with each bad cell red and commented, and a
    ``problems`` sheet listing every problem."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    by_place: dict[tuple[str, str], list[CellProblem]] = {}
    for p in problems:
        by_place.setdefault((p.file, p.sheet), []).append(p)
    for path, fmt in inputs:
        if fmt == "xlsx":
            src = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                for ws in src.worksheets:
                    rows = enumerate(ws.iter_rows(values_only=True), ws.min_row or 1)
                    _copy(wb, ws.title, rows, by_place.get((str(path), ws.title), []))
            finally:
                src.close()
        elif fmt == "csv":
            with path.open(encoding="utf-8-sig", newline="", errors="replace") as f:
                title = kind_of_name(path) or path.stem  # a fixed copy imports again
                _copy(wb, title, enumerate(csv.reader(f), 1), by_place.get((str(path), ""), []))
    ws = wb.create_sheet(PROBLEMS_SHEET)
    ws.append(["file", "sheet", "row", "column", "value", "reason"])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for p in problems:
        ws.append([p.file, p.sheet, p.row or None, p.column, p.value, p.reason])
    _save(wb, target)


def _copy(wb: openpyxl.Workbook, title: str, rows: Any, problems: Sequence[CellProblem]) -> None:
    name = title[:31]
    n = 1
    while name in wb.sheetnames:
        n += 1
        name = f"{title[:28]}~{n}"
    ws = wb.create_sheet(name)
    header: list[str] = []
    for number, values in rows:  # at the input's own row numbers, so problems line up
        for col, v in enumerate(values, 1):
            if v is not None and v != "":
                ws.cell(number, col).value = v
        if not header:
            header = ["" if v is None else str(v).strip() for v in values]
    for p in problems:
        if p.row < 1:
            continue
        if p.row == 1:  # an unknown column: its header cell
            col = header.index(p.column) + 1 if p.column in header else 1
        elif p.column in header:
            col = header.index(p.column) + 1
        else:  # a problem of the whole row, or a column absent from the file
            col = 1
        cell = ws.cell(p.row, col)
        cell.fill = _BAD
        text = f"{p.column}: {p.reason}" if col == 1 and p.column not in header else p.reason
        old = cell.comment.text + "\n" if cell.comment else ""
        cell.comment = Comment(old + text, "jcm-sync import")
