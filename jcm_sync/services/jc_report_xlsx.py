"""The Joint Committee's reconciliation report as an XLSX workbook.

Why this module exists: secretariats sort, filter and annotate findings in a
spreadsheet before a Joint Committee meeting. This writes the view of
``services.jc_report`` as one sheet per table, so each can be filtered on its own.

Rules:

1. **Sheets**, in this order: Summary (counts per stage and status, then the run and
   each stage's figures), Findings (one row per finding, both figures compared),
   Records (finding id -> each record it names), Held ranges (what quarantine holds),
   Pending (age and deadline), History (each finding's first seen, last seen and
   resolved at), Resolutions, Runs, Balances and Authorizations (the stage 1 and
   Article 6.2 tables).
2. **Readable as opened**: the header row of every sheet is bold and frozen, every
   column has a width set, times and days are date cells (UTC, said in the header),
   numbers are numbers.
3. **Text is text.** A value that starts with ``=`` (a summary, a key, a counterpart's
   explanation) is written as a string, never as a formula: the workbook carries data
   the other registry wrote, and opening it must not compute anything.
4. **Streaming.** The workbook is written in openpyxl's write-only mode, a row at a
   time, so a report of thousands of findings does not hold a cell object per value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from jcm_sync.services.jc_report import STATUSES, FindingRow, JcReport

DATETIME_FORMAT: Final = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT: Final = "yyyy-mm-dd"

Row = Sequence[Any]


@dataclass(frozen=True)
class Column:
    title: str
    width: float


def _cell(ws: WriteOnlyWorksheet, value: Any, *, bold: bool = False) -> Any:
    """Rules 2 and 3: a cell with its format; text never becomes a formula and carries
    no character a workbook cannot hold. Plain values stay plain (rule 4: a cell
    object costs more than the value it wraps)."""
    if isinstance(value, str):
        if ILLEGAL_CHARACTERS_RE.search(value):
            value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
        if not bold and not value.startswith("="):
            return value
    elif not bold and not isinstance(value, (datetime, date)):
        return value
    cell = WriteOnlyCell(ws, value=value)
    if bold:
        cell.font = Font(bold=True)
    if isinstance(value, datetime):
        cell.number_format = DATETIME_FORMAT
    elif isinstance(value, date):
        cell.number_format = DATE_FORMAT
    elif isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"
    return cell


def _sheet(wb: Workbook, title: str, columns: Sequence[Column], rows: Iterable[Row]) -> None:
    """Rule 2: a sheet with a bold, frozen header row and set column widths."""
    ws = wb.create_sheet(title)
    for i, col in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = col.width
    ws.freeze_panes = "A2"
    ws.append([_cell(ws, c.title, bold=True) for c in columns])
    for row in rows:
        ws.append([_cell(ws, v) for v in row])


def _cols(*spec: tuple[str, float]) -> list[Column]:
    return [Column(t, w) for t, w in spec]


# --- the sheets (rule 1) ----------------------------------------------------------------


def _summary(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Stage", 28), ("Open", 10), ("Explained", 11), ("Resolved", 11),
                    ("All", 9), ("What the stage compared", 90))  # fmt: skip
    rows: list[Row] = []
    for s in view.stages:
        figures = "; ".join(f"{label}: {value:,}" for label, value in s.figures)
        rows.append([s.title, s.open, s.explained, s.resolved, s.total, figures])
    counts = view.counts()
    rows.append(["All stages", *(counts[s] for s in STATUSES), sum(counts.values()), ""])
    rows.append([])
    rows.append(["Report", "Value"])
    rows += [
        ["Partnership", view.partnership],
        ["Written by node", view.node],
        ["Written at (UTC)", view.generated_at],
        ["Run status", view.status.replace("_", " ")],
    ]
    if view.runs:
        rows.append(["Run started (UTC)", view.runs[-1].started_at])
    for node, size, root in view.logs:
        rows.append([f"Log of {node}: size reconciled", size])
        rows.append([f"Log of {node}: root", root])
    rows += [["Held serial ranges", len(view.held)], ["Pending items", len(view.pending)]]
    for s in view.stages:
        rows += [[f"{s.title}: {label}", value] for label, value in s.figures]
    _sheet(wb, "Summary", columns, rows)


def _resolutions_text(f: FindingRow) -> str:
    return "; ".join(f"{e.author} {e.action}: {e.text}" for e in f.resolutions)


def _findings(wb: Workbook, view: JcReport) -> None:
    columns = _cols(
        ("Finding id", 19), ("Stage", 10), ("Rule", 30), ("Status", 11), ("Subject", 40),
        ("Summary", 90), ("Expected", 11), ("Found", 11), ("Difference", 11),
        ("Records", 9), ("Held ranges", 11), ("Serials held", 12), ("Resolutions", 50),
        ("First seen (UTC)", 20), ("Last seen (UTC)", 20), ("Resolved at (UTC)", 20),
    )  # fmt: skip
    rows = (
        [
            f.id,
            f.stage,
            f.rule,
            f.status,
            f.subject,
            f.summary,
            f.expected,
            f.found,
            f.difference,
            len(f.records),
            len(f.ranges) if f.status == "open" else 0,
            sum(r.quantity for r in f.ranges) if f.status == "open" else 0,
            _resolutions_text(f),
            f.first_seen,
            f.last_seen,
            f.resolved_at,
        ]
        for f in view.findings
    )
    _sheet(wb, "Findings", columns, rows)


def _records(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Finding id", 19), ("Rule", 30), ("Kind", 18), ("Key", 44),
                    ("Author", 8), ("Short id", 14), ("Record id", 68))  # fmt: skip
    rows = (
        [r.finding, f.rule, r.kind, r.key, r.author, r.short_id, r.record_id]
        for f in view.findings
        for r in f.records
    )
    _sheet(wb, "Records", columns, rows)


def _held(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Finding id", 19), ("Rule", 30), ("Registry", 9), ("First serial", 26),
                    ("Last serial", 26), ("Quantity", 10))  # fmt: skip
    rows = ([g.finding, g.rule, g.registry, g.first, g.last, g.quantity] for g in view.held)
    _sheet(wb, "Held ranges", columns, rows)


def _pending(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("What", 16), ("Subject", 44), ("Since", 12), ("Age (days)", 11),
                    ("Finding from", 13), ("Missing", 12), ("Records", 60),
                    ("Summary", 90))  # fmt: skip
    rows = (
        [
            p.what,
            p.subject,
            p.since,
            p.age_days,
            p.due,
            ", ".join(p.missing),
            "; ".join(p.records),
            p.summary,
        ]
        for p in view.pending
    )
    _sheet(wb, "Pending", columns, rows)


def _history(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Finding id", 19), ("Rule", 30), ("Stage", 10), ("Status", 11),
                    ("First seen (UTC)", 20), ("Last seen (UTC)", 20),
                    ("Resolved at (UTC)", 20))  # fmt: skip
    rows = (
        [f.id, f.rule, f.stage, f.status, f.first_seen, f.last_seen, f.resolved_at]
        for f in view.findings
    )
    _sheet(wb, "History", columns, rows)


def _resolutions(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Finding id", 19), ("Author", 8), ("Action", 9), ("Short id", 14),
                    ("Explanation or correcting records", 90), ("Record id", 68))  # fmt: skip
    rows = ([e.finding, e.author, e.action, e.short_id, e.text, e.record_id]
            for e in view.resolutions)  # fmt: skip
    _sheet(wb, "Resolutions", columns, rows)


def _runs(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Started (UTC)", 20), ("Finished (UTC)", 20), ("Status", 34),
                    ("Incremental", 12), ("Open", 8), ("Explained", 10), ("New", 8),
                    ("Resolved", 10), ("Pending", 9), ("Error", 60))  # fmt: skip
    rows = (
        [
            u.started_at,
            u.finished_at,
            u.status,
            "yes" if u.incremental else "no",
            u.open,
            u.explained,
            u.new,
            u.resolved,
            u.pending,
            u.error,
        ]
        for u in view.runs
    )
    _sheet(wb, "Runs", columns, rows)


def _balances(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Registry", 9), ("Account type", 22), ("Issued", 10), ("Moved in", 10),
                    ("Moved out", 10), ("Cancelled", 10), ("Retired", 10), ("Held", 10),
                    ("Held by serials", 15))  # fmt: skip
    rows = (
        [
            b.registry,
            b.account_type,
            b.issued,
            b.moved_in,
            b.moved_out,
            b.cancelled,
            b.retired,
            b.held,
            b.held_serials,
        ]
        for b in view.balances
    )
    _sheet(wb, "Balances", columns, rows)


def _authorizations(wb: Workbook, view: JcReport) -> None:
    columns = _cols(("Party", 7), ("Authorization", 18), ("Cap", 10),
                    ("First transferred", 17), ("Remaining", 11))  # fmt: skip
    rows = ([a.party, a.authorization_id, a.cap, a.first_transferred, a.remaining]
            for a in view.authorizations)  # fmt: skip
    _sheet(wb, "Authorizations", columns, rows)


SHEETS: Final = (
    ("Summary", _summary),
    ("Findings", _findings),
    ("Records", _records),
    ("Held ranges", _held),
    ("Pending", _pending),
    ("History", _history),
    ("Resolutions", _resolutions),
    ("Runs", _runs),
    ("Balances", _balances),
    ("Authorizations", _authorizations),
)
"""Rule 1: the sheets, in order, and the function that writes each."""


def render_xlsx(view: JcReport) -> bytes:
    """The workbook's bytes (rules 1-4)."""
    wb = Workbook(write_only=True)
    for _, write in SHEETS:
        write(wb, view)
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
