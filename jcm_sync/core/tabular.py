"""Records as spreadsheet rows and back: the one tabular layout of every record kind.

Why this module exists: secretariats keep registry data in spreadsheets. Import
(``jcm-sync import``, ``jcm-sync template``) and export write and read the same layout,
so it is defined once, here, pure (no files: ``local/spreadsheets.py`` reads and writes
them). ADR 0023 gives the reasons behind each rule.

Rules:

1. **One sheet (or CSV file) per kind; one row per record; header = field names.**
   ``columns(kind)`` is the ordered list: ``partnership``, ``author``, the kind's own
   fields, ``supersedes``, ``created``. A nested record part is flattened into one
   column per leaf, named by its path (``monitoring_period.start``,
   ``decision.monitoring_period.end``, ``source.id``).
2. **A list is one cell**, items separated by ``;``: plain values (``ndc; oimp``) and
   the parts below, each in a form a person can type:

   - serial blocks ``START..END (VINTAGE)``; the quantity is the span, the vintage
     optional: ``JP-ID001-2016-000001..JP-ID001-2016-000027 (2016); ...``
   - participants ``NAME (SIDE)``; allocation ``HOLDER (SIDE) 60%``
   - shares ``SIDE NOTIFIED = HOLDER (ACCOUNT_TYPE) AMOUNT + ...``, e.g.
     ``JP 31 = Government of Japan (government_holding) 27 + X Corp (participant_holding) 4``

   A serial holding ``;`` or ``..``, or a name holding ``;`` or `` + ``, cannot be
   written in a cell: such records are imported as JSON.
3. **Authoring is strict.** An unknown column (or JSON member) is refused with the
   closest known name (``did you mean``); every problem of a row is collected before
   it is refused (``InvalidRowsError.problems``), not only the first. Columns
   ``EXPORT_COLUMNS`` (what export adds: record id, log, index, signers) are read-only
   and ignored on import.
4. **Dates** are ISO 8601 or the JCM sites' forms (``25 Jan 17``, ``25 January 2017``,
   ``2017/01/25``; a two-digit year is 20YY), stored as ISO 8601. ``created`` is an
   ISO 8601 time with a zone; left empty it is the import's time, given by the caller.
5. **Cells are forgiving in form, never in content.** Text is stripped; whole numbers
   may carry thousands separators (``1,200``) or come as a spreadsheet's integral
   float; nothing is ever rounded, guessed or dropped.
6. **Templates** (a description row, an example row, both skipped on import) are
   ``core/sheet_template.py``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Final

import msgspec

from jcm_sync.core import records as rec
from jcm_sync.errors import CellProblem, InvalidRowsError, RecordError

Cell = str | int | None
Row = dict[str, Cell]

EXPORT_COLUMNS: Final = ("record_id", "log", "log_index", "signers")
"""Read-only columns export adds; import ignores them (rule 3)."""

SEP: Final = "; "
_PATH: Final = re.compile(r" - at `\$(?P<path>[^`]*)`$")

_FIRST: Final = ("partnership", "author")
_LAST: Final = ("supersedes", "created")
_EXPANDED: Final = (rec.Period, rec.DecisionRef, rec.Account)
_LIST_PARTS: Final = (rec.SerialBlock, rec.Participant, rec.Allocation, rec.SideShare)


@dataclass(frozen=True)
class Column:
    """One column of a kind's sheet: its header, field path and how its cell reads."""

    name: str
    path: tuple[str, ...]
    type: Any  # the field's annotated type (msgspec checks patterns and ranges with it)
    required: bool
    shape: str  # text, integer, date, time, choice, list, or a part: blocks, ...
    choices: tuple[str, ...] = ()
    item: Any = None  # a list's item type


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(type without Annotated and None, optional)."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp, optional


def shape_of(tp: Any) -> tuple[str, tuple[str, ...], Any]:
    base, _ = _unwrap(tp)
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        return "choice", tuple(typing.get_args(base)), None
    if origin is tuple:
        item = typing.get_args(base)[0]
        if item in _LIST_PARTS:
            return _PART_NAMES[item], (), item
        _, choices, _ = shape_of(item)
        return "list", choices, item
    if base is datetime:
        return "time", (), None
    if base is date:
        return "date", (), None
    if base is int:
        return "integer", (), None
    return "text", (), None


def _expand(cls: type[msgspec.Struct], prefix: tuple[str, ...], required: bool) -> list[Column]:
    out: list[Column] = []
    for f in msgspec.structs.fields(cls):
        base, _ = _unwrap(f.type)
        path = (*prefix, f.name)
        if base in _EXPANDED:
            out += _expand(base, path, required and f.required)
            continue
        shape, choices, item = shape_of(f.type)
        out.append(
            Column(".".join(path), path, f.type, required and f.required, shape, choices, item)
        )
    return out


def _columns_of(cls: type[msgspec.Struct]) -> tuple[Column, ...]:
    cols = _expand(cls, (), True)
    first = [c for n in _FIRST for c in cols if c.name == n]
    last = [c for n in _LAST for c in cols if c.name == n]
    return tuple(first + [c for c in cols if c.name not in _FIRST + _LAST] + last)


def columns(kind: str) -> list[Column]:
    """The ordered columns of a kind's sheet (rule 1)."""
    cols = _COLUMNS.get(kind)
    if cols is None:
        raise RecordError(f"unknown record kind {kind!r}{did_you_mean(kind, rec.KINDS)}")
    return list(cols)


def headers(kind: str) -> list[str]:
    return list(_HEADERS[kind]) if kind in _HEADERS else [c.name for c in columns(kind)]


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


# --- dates (rule 4) --------------------------------------------------------------------

_MONTH_NAMES: Final = ("january", "february", "march", "april", "may", "june", "july",
                       "august", "september", "october", "november", "december")  # fmt: skip
_MONTHS: Final = {
    name: n
    for n, full in enumerate(_MONTH_NAMES, 1)
    for name in (full, full[:3], "sept" if n == 9 else full[:3])
}
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_SLASH_DATE = re.compile(r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})$")
_JCM_DATE = re.compile(r"^([0-9]{1,2})[ -]([A-Za-z]+)\.?[ -]([0-9]{2}|[0-9]{4})$")
DATE_FORMS: Final = "2017-01-25, 25 Jan 17, 25 January 2017 or 2017/01/25"


def parse_date(text: str) -> date:
    """A date in ISO 8601 or a JCM site's form; ValueError naming the accepted forms."""
    t = " ".join(text.split())
    try:
        if _ISO_DATE.match(t):
            return date.fromisoformat(t)
        if m := _SLASH_DATE.match(t):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if (m := _JCM_DATE.match(t)) and m[2].lower() in _MONTHS:
            year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
            return date(year, _MONTHS[m[2].lower()], int(m[1]))
    except ValueError as exc:  # a day past the month's end, month 13
        raise ValueError(f"not a calendar date ({exc})") from None
    raise ValueError(f"not a date; write {DATE_FORMS}")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` accepted)."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO 8601 time, e.g. 2020-01-15T09:00:00Z") from None
    if t.tzinfo is None:
        raise ValueError(f"a time needs a zone, e.g. {text.strip()}Z")
    return t


def format_time(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- list parts (rule 2) ---------------------------------------------------------------

_BLOCK = re.compile(r"^(\S+?)\.\.(\S+?)(?:\s*\(\s*([0-9]{4})\s*\))?$")
_PARTICIPANT = re.compile(r"^(.+?)\s*\(\s*([A-Za-z]{2})\s*\)$")
_ALLOCATION = re.compile(r"^(.+?)\s*\(\s*([A-Za-z]{2})\s*\)\s*([0-9]+)\s*%$")
_HOLDER = re.compile(r"^(.+?)\s*\(\s*([a-z_]+)\s*\)\s*([0-9][0-9,]*)$")
_SHARE = re.compile(r"^([A-Za-z]{2})\s+([0-9][0-9,]*)(?:\s*=\s*(.*))?$")


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def _read_block(text: str) -> dict[str, Any]:
    m = _BLOCK.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a serial block START..END (VINTAGE)")
    lo, hi = rec.serial_parts(m[1]), rec.serial_parts(m[2])
    out: dict[str, Any] = {"start": m[1], "end": m[2], "quantity": hi[1] - lo[1] + 1}
    if m[3]:
        out["vintage"] = int(m[3])
    return out


def _write_block(b: rec.SerialBlock) -> str:
    return f"{b.start}..{b.end}" + (f" ({b.vintage})" if b.vintage is not None else "")


def _read_participant(text: str) -> dict[str, Any]:
    m = _PARTICIPANT.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a participant NAME (SIDE)")
    return {"name": m[1], "side": m[2].upper()}


def _read_allocation(text: str) -> dict[str, Any]:
    m = _ALLOCATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an allocation HOLDER (SIDE) PERCENT%")
    return {"holder": m[1], "side": m[2].upper(), "percent": int(m[3])}


def _read_share(text: str) -> dict[str, Any]:
    m = _SHARE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a share SIDE NOTIFIED = HOLDER (ACCOUNT_TYPE) AMOUNT")
    allocations = []
    for part in (m[3] or "").split(" + "):
        if not part.strip():
            continue
        h = _HOLDER.match(part.strip())
        if not h:
            raise ValueError(f"{part.strip()!r} is not a holder HOLDER (ACCOUNT_TYPE) AMOUNT")
        allocations.append({"holder": h[1], "account_type": h[2], "amount": _num(h[3])})
    return {"side": m[1].upper(), "notified": _num(m[2]), "allocations": allocations}


def _write_share(s: rec.SideShare) -> str:
    held = " + ".join(f"{a.holder} ({a.account_type}) {a.amount}" for a in s.allocations)
    return f"{s.side} {s.notified}" + (f" = {held}" if held else "")


_PART_NAMES: Final[dict[Any, str]] = {
    rec.SerialBlock: "blocks",
    rec.Participant: "participants",
    rec.Allocation: "allocation",
    rec.SideShare: "shares",
}
_READ_PART: Final[dict[str, Callable[[str], dict[str, Any]]]] = {
    "blocks": _read_block,
    "participants": _read_participant,
    "allocation": _read_allocation,
    "shares": _read_share,
}
_WRITE_PART: Final[dict[str, Callable[[Any], str]]] = {
    "blocks": _write_block,
    "participants": lambda p: f"{p.name} ({p.side})",
    "allocation": lambda a: f"{a.holder} ({a.side}) {a.percent}%",
    "shares": _write_share,
}
PART_FORMS: Final = {
    "blocks": "serial blocks START..END (VINTAGE); ... (quantity = span; vintage optional)",
    "participants": "participants NAME (SIDE); ...",
    "allocation": "allocation HOLDER (SIDE) PERCENT%; ... (summing to 100%)",
    "shares": "shares SIDE NOTIFIED = HOLDER (ACCOUNT_TYPE) AMOUNT + ...; SIDE NOTIFIED = ...",
}


# --- record -> row ---------------------------------------------------------------------


def _get(record: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        record = getattr(record, name)
    return record


def _cell(col: Column, value: Any) -> Cell:
    if value is None:
        return None
    if col.shape == "time":
        return format_time(value)
    if col.shape == "date":
        return str(value.isoformat())
    if col.shape in _WRITE_PART:
        return SEP.join(_WRITE_PART[col.shape](v) for v in value) or None
    if col.shape == "list":
        return SEP.join(str(v) for v in value) or None
    if isinstance(value, int):
        return value
    return str(value)


def record_to_row(record: rec.RecordBase) -> Row:
    """The record's row: header name -> cell (str, int or None for empty)."""
    return {c.name: _cell(c, _get(record, c.path)) for c in columns(record.kind)}


# --- row -> record ---------------------------------------------------------------------


def cell_text(value: object) -> str:
    if isinstance(value, bool):
        raise ValueError("a yes/no value where text is expected")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return format_time(value) if value.tzinfo else value.isoformat()
    return str(value).strip()


_WHOLE = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+$|^[0-9]+$")


def display(value: object) -> str:
    """A cell's value as a problem shows it (never raises)."""
    return "" if value is None else str(value) if isinstance(value, bool) else cell_text(value)


def _check_cell(col: Column, out: Any, value: object, problems: list[CellProblem]) -> None:
    """A converted cell checked on its own against its field's type (patterns, ranges,
    allowed values), its problem recorded: the slow path, run only for a bad row."""
    try:
        if col.shape in _READ_PART:
            for v in out:
                msgspec.convert(v, col.item)
        else:
            msgspec.convert(out, col.type)
    except msgspec.ValidationError as exc:
        reason = _PATH.sub("", str(exc))
        if col.shape == "choice":
            shown = display(value)
            reason = f"not one of {', '.join(col.choices)}{did_you_mean(shown, col.choices)}"
        problems.append(CellProblem(col.name, display(value), reason))


def _convert_cell(col: Column, value: object) -> Any:
    shape = col.shape
    if type(value) is str and (shape == "text" or shape == "choice"):  # the common case
        return value.strip()
    if type(value) is int and shape == "integer":
        return value
    if shape == "integer":
        if isinstance(value, bool):
            raise ValueError("a yes/no value where a whole number is expected")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        text = cell_text(value)
        if not _WHOLE.match(text):
            raise ValueError("not a whole number")
        return int(text.replace(",", ""))
    if col.shape == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        return parse_date(cell_text(value))
    if col.shape == "time":
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"a time needs a zone, e.g. {value.isoformat()}Z")
            return value
        return parse_time(cell_text(value))
    if col.shape in _READ_PART:
        return [_READ_PART[col.shape](p.strip()) for p in cell_text(value).split(";") if p.strip()]
    if col.shape == "list":
        items = [p.strip() for p in cell_text(value).split(";") if p.strip()]
        if _unwrap(col.item)[0] is not int:
            return items
        bad = [i for i in items if not _WHOLE.match(i)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a whole number")
        return [int(i) for i in items]
    return cell_text(value)


def is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if len(path) == 1:
        target[path[0]] = value
        return
    for name in path[:-1]:
        target = target.setdefault(name, {})
    target[path[-1]] = value


def unknown_columns(kind: str, names: typing.Iterable[str]) -> list[CellProblem]:
    """A problem for each column the kind does not have, with the closest name."""
    known = _HEADERS[kind] if kind in _HEADERS else headers(kind)
    out = []
    for name in names:
        if name in known or name in EXPORT_COLUMNS or name == "kind":
            continue
        out.append(CellProblem(name, name, f"unknown column `{name}`{did_you_mean(name, known)}"))
    return out


def row_to_record(
    kind: str, row: Mapping[str, object], *, created: datetime | None = None
) -> rec.Record:
    """Build and validate a record of ``kind`` from a row (rules 3-5).

    ``created`` fills an empty ``created`` cell. Raises ``InvalidRowsError`` listing every
    problem of the row (``row`` and ``file`` left for the caller to fill in).
    """
    cols = columns(kind)
    problems = unknown_columns(kind, row)
    tag = row.get("kind")
    if not is_empty(tag) and display(tag) != kind:
        problems.append(
            CellProblem("kind", display(tag), f"a {display(tag)} row among {kind} rows")
        )
    obj: dict[str, Any] = {"kind": kind}
    converted: list[tuple[Column, Any, object]] = []
    for col in cols:
        value = row.get(col.name)
        if is_empty(value):
            if col.name == "created" and created is not None:
                _set(obj, col.path, created)
            elif col.required:
                problems.append(CellProblem(col.name, "", "required; the cell is empty"))
            continue
        try:
            out = _convert_cell(col, value)
        except ValueError as exc:
            problems.append(CellProblem(col.name, display(value), str(exc)))
            continue
        converted.append((col, out, value))
        _set(obj, col.path, out)
    whole = None
    if not problems:  # the fast path: one conversion validates the whole record
        try:
            record: rec.Record = msgspec.convert(obj, rec.Record)
            return record
        except msgspec.ValidationError as exc:
            whole = exc
    before = len(problems)
    for col, out, value in converted:  # every cell on its own, to name each bad one
        _check_cell(col, out, value, problems)
    if whole is not None and len(problems) == before:  # a rule of the whole record
        text = str(whole)
        m = _PATH.search(text)
        where = m.group("path").lstrip(".").split("[")[0] if m else ""
        near = [c.name for c in cols if where and c.name.startswith(where)]
        column = near[0] if len(near) == 1 else where or "record"
        value = row.get(column) if column in row else ""
        reason = text[: m.start()] if m else text
        problems.append(CellProblem(column, display(value), reason))
    raise InvalidRowsError(f"invalid {kind} row", problems)


def unknown_members(obj: object) -> list[CellProblem]:
    """Rule 3 for an authored JSON record: each member its kind (or part) does not have,
    at any depth, with the closest known name; an unknown ``kind`` too."""
    if not isinstance(obj, dict):
        return [CellProblem("record", str(obj)[:60], "a record is a JSON object")]
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in rec.RECORD_TYPES:
        shown = "" if kind is None else str(kind)
        return [CellProblem("kind", shown, f"not a record kind{did_you_mean(shown, rec.KINDS)}")]
    out: list[CellProblem] = []
    _walk_members(rec.RECORD_TYPES[kind], obj, "", out)
    return out


def _walk_members(cls: Any, obj: dict[str, Any], prefix: str, out: list[CellProblem]) -> None:
    fields = _MEMBERS[cls]
    for name, value in obj.items():
        if name == "kind" and not prefix:
            continue
        if name not in fields:
            hint = did_you_mean(name, fields)
            out.append(CellProblem(prefix + name, name, f"unknown field `{name}`{hint}"))
            continue
        inner, many = fields[name]
        if inner is None:
            continue
        if many and isinstance(value, list | tuple):
            for i, v in enumerate(value):
                if isinstance(v, dict):
                    _walk_members(inner, v, f"{prefix}{name}[{i}].", out)
        elif not many and isinstance(value, dict):
            _walk_members(inner, value, f"{prefix}{name}.", out)


def _members_of(cls: Any, into: dict[Any, dict[str, tuple[Any, bool]]]) -> None:
    """Each struct's fields: name -> (the struct it holds, or None; whether a list of it)."""
    fields: dict[str, tuple[Any, bool]] = {}
    into[cls] = fields
    for f in msgspec.structs.fields(cls):
        base, _ = _unwrap(f.type)
        inner, many = None, False
        if typing.get_origin(base) is tuple:
            base, many = typing.get_args(base)[0], True
        if isinstance(base, type) and issubclass(base, msgspec.Struct):
            inner = base
            if base not in into:
                _members_of(base, into)
        fields[f.name] = (inner, many)


def _all_members() -> dict[Any, dict[str, tuple[Any, bool]]]:
    out: dict[Any, dict[str, tuple[Any, bool]]] = {}
    for t in rec.RECORD_TYPES.values():
        _members_of(t, out)
    return out


# Computed once, at import: reading a struct's annotations costs ~0.3 ms (forward
# references are evaluated), too much to pay per row. Read-only after import.
_COLUMNS: Final = MappingProxyType({k: _columns_of(t) for k, t in rec.RECORD_TYPES.items()})
_HEADERS: Final = MappingProxyType({k: tuple(c.name for c in v) for k, v in _COLUMNS.items()})
_MEMBERS: Final = MappingProxyType(_all_members())
