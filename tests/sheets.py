"""Spreadsheet inputs for the import tests: realistic records written as a user would.

The records are Indonesia's own of the clean Japan-Indonesia partnership
(``tests.core.reconcile.builders``), from projects to ITMO actions; the workbook has one
sheet per kind in the layout of ``jcm_sync.core.tabular``, as a secretariat fills in a
template."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import openpyxl

from jcm_sync.core import tabular
from jcm_sync.core.records import Record
from tests.core.reconcile import builders


def indonesia(now: datetime | None = None) -> list[Record]:
    """Indonesia's own records of the clean partnership (projects to ITMO actions)."""
    ds = builders.build(created=now or datetime.now(UTC))
    return [i.record for i in ds.logs["ID"] if i.record is not None]


def workbook(path: Path, records: Iterable[Record]) -> Path:
    """``records`` written to ``path``, one sheet per kind with the kind's headers."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    for r in records:
        if r.kind not in wb.sheetnames:
            wb.create_sheet(r.kind).append(tabular.headers(r.kind))
        row = tabular.record_to_row(r)
        wb[r.kind].append([row[n] for n in tabular.headers(r.kind)])
    wb.save(path)
    return path
