"""What a template sheet shows besides the header: a description row and an example row.

Why this module exists: ``jcm-sync template`` writes, per record kind, a header
(``tabular.headers``), a row describing each column and one example row, and the
importer must recognise and skip those two rows. Both sides use this module, so a
template always imports cleanly, empty. Pure: files are written by
``local/spreadsheets.py``.

Rules:

1. The description of a column says its type, pattern or allowed values, the date
   forms accepted, and whether it is required (``describe``).
2. The example row is a valid record of the Japan-Indonesia partnership (the first
   JCM issuance, May 2016 monitoring period) in the layout of ``tabular``.
3. A row equal, cell for cell, to the description or the example row is a template
   row (``is_template_row``), skipped by import; an edited example is data.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from jcm_sync.core import records as rec
from jcm_sync.core.tabular import (
    DATE_FORMS,
    PART_FORMS,
    Column,
    Row,
    columns,
    display,
    is_empty,
    record_to_row,
    shape_of,
)


def _pattern(tp: Any) -> str:
    base = tp
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) is not typing.Annotated:
        return ""
    for meta in typing.get_args(base)[1:]:
        if isinstance(meta, msgspec.Meta) and meta.pattern:
            return meta.pattern.replace("(?!\\n)", "")
    return ""


def describe_column(col: Column) -> str:
    """Rule 1 for one column."""
    need = "required" if col.required else "optional"
    if col.name == "created":
        need = "optional (empty: the time of import)"
    if col.name == "supersedes":
        what = "record id (64 hex) of the held version this row replaces"
    elif col.shape == "choice":
        what = f"one of: {', '.join(col.choices)}"
    elif col.shape == "date":
        what = f"date: {DATE_FORMS}"
    elif col.shape == "time":
        what = "time with zone: 2020-01-15T09:00:00Z"
    elif col.shape == "integer":
        what = "whole number >= 0"
    elif col.shape in PART_FORMS:
        what = PART_FORMS[col.shape]
    elif col.shape == "list":
        _, choices, _ = shape_of(col.item)
        what = "list, separated by ;" + (f" of: {', '.join(choices)}" if choices else "")
        if p := _pattern(col.item):
            what += f", each {p}"
    else:
        what = "text" + (f" {p}" if (p := _pattern(col.type)) else "")
    return f"{what}; {need}"


def describe(kind: str) -> Row:
    """The template's second row: each column's type, pattern or allowed values."""
    return {c.name: describe_column(c) for c in columns(kind)}


_BASE: Final = {"partnership": "JP-ID", "created": "2017-05-26T09:00:00Z"}
_PERIOD: Final = {"start": "2016-01-01", "end": "2016-12-31"}
_BLOCK: Final = {"start": "JP-ID001-2016-000001", "vintage": 2016}
_EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "methodology": {"author": "ID", "methodology_id": "ID_AM001", "version": "ver01.0",
                    "title": "Power generation by waste heat recovery in cement industry",
                    "sectoral_scope": "Energy industries", "approved_on": "2014-04-15"},
    "project": {"author": "ID", "project_id": "ID001", "status": "registered",
                "title": "Energy saving for air-conditioning at textile factory",
                "methodologies": ["ID_AM002"],
                "participants": [{"name": "Ebara Refrigeration Equipment & Systems", "side": "JP"},
                                 {"name": "PT Primatexco Indonesia", "side": "ID"}],
                "allocation": [{"holder": "Government of Japan", "side": "JP", "percent": 50},
                               {"holder": "PT Primatexco Indonesia", "side": "ID", "percent": 50}],
                "registered_on": "2014-10-31"},
    "issuance_decision": {"author": "ID", "project_id": "ID001", "monitoring_period": _PERIOD,
                          "decided_on": "2017-05-20", "total_notified": 40, "shares": [
                              {"side": "JP", "notified": 31, "allocations": [
                                  {"holder": "Government of Japan",
                                   "account_type": "government_holding", "amount": 27},
                                  {"holder": "Ebara Refrigeration Equipment & Systems",
                                   "account_type": "participant_holding", "amount": 4}]},
                              {"side": "ID", "notified": 9}]},
    "issuance": {"author": "JP", "registry": "JP", "issuance_id": "JP-ISS-ID001-2016-1",
                 "decision": {"project_id": "ID001", "monitoring_period": _PERIOD},
                 "issued_on": "2017-05-27", "amount": 27,
                 "account": {"id": "JP-GOV-001", "type": "government_holding"},
                 "blocks": [{**_BLOCK, "end": "JP-ID001-2016-000027", "quantity": 27}]},
    "transaction": {"author": "JP", "registry": "JP", "txn_id": "JP-TXN-0001",
                    "type": "retirement", "executed_on": "2017-05-28",
                    "source": {"id": "JP-GOV-001", "type": "government_holding"},
                    "destination": {"id": "JP-RET-001", "type": "retirement"}, "amount": 20,
                    "blocks": [{**_BLOCK, "end": "JP-ID001-2016-000020", "quantity": 20}],
                    "purpose": "ndc"},
    "authorization": {"author": "ID", "party": "ID", "authorization_id": "ID-A62-0001",
                      "cooperative_approach": "JCM Indonesia-Japan",
                      "authorized_on": "2015-01-10", "cap": 1000, "purposes": ["ndc", "oimp"],
                      "projects": ["ID001"], "vintages": [2016]},
    "itmo_action": {"author": "ID", "party": "ID", "action_id": "ID-FT-0001",
                    "action": "first_transfer", "occurred_on": "2017-05-27",
                    "authorization_id": "ID-A62-0001", "project_id": "ID001", "vintage": 2016,
                    "quantity": 31, "purpose": "ndc", "transferring_party": "ID",
                    "acquiring_party": "JP"},
    "endorsement": {"author": "JP", "endorses": "0" * 64, "endorsed_kind": "issuance_decision",
                    "note": "endorsed at the 8th Joint Committee"},
    "resolution": {"author": "ID", "discrepancy_id": "0123456789abcdef", "action": "explain",
                   "explanation": "the block was retired on paper before the registry update"},
}  # fmt: skip


def example_record(kind: str) -> rec.Record:
    """Rule 2: a valid record of ``kind`` from the Indonesia partnership."""
    record: rec.Record = msgspec.convert({"kind": kind, **_BASE, **_EXAMPLES[kind]}, rec.Record)
    return record


def example_row(kind: str) -> Row:
    """The template's example row (rule 2)."""
    return record_to_row(example_record(kind))


def is_template_row(kind: str, row: Mapping[str, object]) -> bool:
    """Rule 3: True for a template's description or example row."""
    cells = {k: "" if is_empty(v) else display(v) for k, v in row.items()}
    for model in (describe(kind), example_row(kind)):
        want = {k: "" if v is None else str(v) for k, v in model.items()}
        if any(want.values()) and all(cells.get(k, "") == v for k, v in want.items()):
            return True
    return False
