"""AEF table 4 (holdings on 31 December) and the consistency checks run before writing.

Why this module exists: the UNFCCC platform (CARP) checks every AEF submission for
consistency, and a Party learns of a failure only after submitting. The same checks run
here on the rows ``aef_rows`` built, so a failure is listed, with its table and row,
while the records can still be corrected; and the holdings are computed unit by unit
from the actions, so that they can be checked against the actions' balance.

Rules (docs/adr/0026-article-6-2-aef-report.md):

1. Holdings on 31 December of the year (table 4) fold the Party's own actions up to that
   day in date order, unit by unit per serial prefix: an acquisition (or a first
   transfer that names no other acquiring Party) adds its blocks, an onward transfer, a
   use or a voluntary cancellation removes them. Adding units already held is
   ``aef-held-twice``; removing units not held is ``aef-not-held``. Adjacent units with
   the same authorization, vintage and prefix form one row.
2. ``aef-quantity-span``: a row's quantity equals the span of its ids (last - first + 1),
   and a row has ids at all (an action without serial blocks has none).
3. ``aef-before-first-transfer``: every unit of an onward transfer, an acquisition, a
   use or a cancellation was first transferred (by any Party, in either log) on or
   before that action's day.
4. ``aef-holdings-balance``: per authorization and vintage, the holdings equal the
   actions' balance by quantity (acquired minus transferred on, used and cancelled).
5. ``aef-ids-ambiguous``: within one Party ITMO registry, blocks of two serial prefixes
   do not share an id (rule 3 of ``aef_rows`` maps unit numbers to ids).
6. Controlled values and formats (``aef-approach-id``, ``aef-party``, ``aef-registry``,
   ``aef-authorization-id``, ``aef-purpose``, ``aef-authorization-unknown``,
   ``aef-value``) are failures; values only the Party can add (sector, the first
   transfer definition for OIMP) are ``incomplete``, listed without failing.
7. Problems are listed in table order, then row order, then check name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jcm_sync.core.records import AuthorizationRecord, ItmoActionRecord
from jcm_sync.services.aef_rows import (
    COLUMNS,
    NA,
    T1,
    T2,
    T3,
    T4,
    TABLES,
    AefReport,
    Context,
    Held,
    Problem,
    Row,
)

_ADDS = frozenset({"acquisition"})
_REMOVES = frozenset({"transfer", "use", "voluntary_cancellation"})
_NEEDS_FIRST_TRANSFER = frozenset({"transfer", "acquisition", "use", "voluntary_cancellation"})


# --- intervals ---------------------------------------------------------------------------


def subtract(spans: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of [lo, hi] that no span of ``spans`` covers, in order."""
    out = []
    cursor = lo
    for a, b in sorted(spans):
        if b < cursor or a > hi:
            continue
        if a > cursor:
            out.append((cursor, a - 1))
        cursor = max(cursor, b + 1)
        if cursor > hi:
            break
    if cursor <= hi:
        out.append((cursor, hi))
    return out


@dataclass
class Piece:
    """Units [lo, hi] of one serial prefix held, with what they are and come from."""

    lo: int
    hi: int
    attrs: tuple[Any, ...]
    sources: list[Held] = field(default_factory=list)


def _first_transferring(ctx: Context, h: Held, rec: ItmoActionRecord) -> tuple[Any, ...]:
    auth = ctx.authorization(h.partnership, rec.authorization_id)
    arec = auth.record if auth is not None else None
    assert arec is None or isinstance(arec, AuthorizationRecord)
    party = arec.party if arec is not None else h.partnership[3:]
    return (ctx.approach(arec), rec.authorization_id, ctx.alpha3(party))


def _own_actions(ctx: Context, until: date) -> list[tuple[Held, ItmoActionRecord]]:
    acts = [
        (h, h.record)
        for h in ctx.current
        if isinstance(h.record, ItmoActionRecord)
        and h.record.party == ctx.party
        and h.record.occurred_on <= until
    ]
    acts.sort(key=lambda e: (e[1].occurred_on, e[0].partnership, e[0].log, e[0].index))
    return acts


def _adds(rec: ItmoActionRecord) -> bool:
    return rec.action in _ADDS or (
        rec.action == "first_transfer" and rec.acquiring_party in (None, rec.party)
    )


def holding_rows(ctx: Context) -> list[Row]:
    """Rule 1: table 4, and ``aef-held-twice`` / ``aef-not-held`` on ``ctx.problems``."""
    until = date(ctx.opts.year, 12, 31)
    held: dict[str, list[Piece]] = {}
    for h, rec in _own_actions(ctx, until):
        adds, removes = _adds(rec), rec.action in _REMOVES
        if not (adds or removes):
            continue
        for b in rec.blocks:
            pieces = held.setdefault(b.prefix, [])
            label = f"{rec.action.replace('_', ' ')} {rec.action_id} of {b.start} to {b.end}"
            overlap = [(p.lo, p.hi) for p in pieces if p.lo <= b.last and p.hi >= b.first]
            if adds:
                if overlap:
                    ctx.problems.append(Problem("failure", "aef-held-twice", T4, None,
                        f"{label} adds units already held"))  # fmt: skip
                vintage = b.vintage if b.vintage is not None else rec.vintage
                attrs = (*_first_transferring(ctx, h, rec), vintage)
                pieces.append(Piece(b.first, b.last, attrs, [h]))
                continue
            missing = subtract(overlap, b.first, b.last)
            if missing:
                ctx.problems.append(Problem("failure", "aef-not-held", T4, None,
                    f"{label} removes units not held on its day: "
                    + ", ".join(f"{b.prefix}{lo}..{hi}" for lo, hi in missing[:3])))  # fmt: skip
            held[b.prefix] = _cut(pieces, b.first, b.last, h)
    return _holding_table(ctx, held)


def _cut(pieces: list[Piece], lo: int, hi: int, by: Held) -> list[Piece]:
    out = []
    for p in pieces:
        if p.hi < lo or p.lo > hi:
            out.append(p)
            continue
        for a, b in subtract([(lo, hi)], p.lo, p.hi):
            out.append(Piece(a, b, p.attrs, [*p.sources, by]))
    return out


def _holding_table(ctx: Context, held: dict[str, list[Piece]]) -> list[Row]:
    jcm = ctx.nom.jcm
    merged: list[tuple[str, Piece]] = []
    for prefix in sorted(held):
        for p in sorted(held[prefix], key=lambda p: p.lo):
            last = merged[-1][1] if merged and merged[-1][0] == prefix else None
            if last is not None and last.hi + 1 == p.lo and last.attrs == p.attrs:
                last.hi = p.hi
                last.sources.extend(s for s in p.sources if s not in last.sources)
            else:
                merged.append((prefix, Piece(p.lo, p.hi, p.attrs, list(p.sources))))
    rows = []
    for prefix, p in merged:
        approach, aid, ft_party, vintage = p.attrs
        values: list[Any] = [
            approach, aid, ft_party, ctx.registry_of(prefix), p.lo, p.hi,
            jcm["underlying_unit_registry"], p.lo, p.hi, jcm["metric"], "", NA,
            p.hi - p.lo + 1, NA, jcm["mitigation_type"], vintage,
        ]  # fmt: skip
        rows.append(Row(values, p.sources, prefix=prefix))
    rows.sort(key=lambda r: (r.values[1], r.values[15], r.prefix, r.values[4]))
    return rows


# --- the checks --------------------------------------------------------------------------


def check_report(ctx: Context, report: AefReport) -> None:
    """Rules 2-7 on every row of ``report``; adds to ``report.problems``."""
    problems = report.problems
    _check_spans(report, problems)
    _check_first_transfers(ctx, report, problems)
    _check_balance(ctx, report, problems)
    _check_ambiguous(report, problems)
    _check_values(ctx, report, problems)
    order = {t: i for i, t in enumerate(TABLES)}
    problems.sort(key=lambda p: (order[p.table], p.row or 0, p.check, p.detail))


def _check_spans(report: AefReport, problems: list[Problem]) -> None:
    for table in (T3, T4):
        for n, row in enumerate(report.tables[table], 1):
            first, last = row.get(table, "First ID"), row.get(table, "Last ID")
            qty = row.get(table, "Quantity (t CO2 eq)")
            if first == "" or last == "":
                problems.append(Problem("failure", "aef-quantity-span", table, n,
                    f"{qty} ITMOs with no ids: the action names no serial blocks"))  # fmt: skip
            elif last - first + 1 != qty:
                problems.append(Problem("failure", "aef-quantity-span", table, n,
                    f"quantity {qty} is not the span {last - first + 1} of ids "
                    f"{first} to {last}"))  # fmt: skip


def _check_first_transfers(ctx: Context, report: AefReport, problems: list[Problem]) -> None:
    """Rule 3."""
    firsts: dict[str, list[tuple[int, int, date]]] = {}
    for h in ctx.current:
        rec = h.record
        if isinstance(rec, ItmoActionRecord) and rec.action == "first_transfer":
            for b in rec.blocks:
                firsts.setdefault(b.prefix, []).append((b.first, b.last, rec.occurred_on))
    for n, row in enumerate(report.tables[T3], 1):
        if row.action not in _NEEDS_FIRST_TRANSFER or row.get(T3, "First ID") == "":
            continue
        assert row.day is not None
        spans = [(a, b) for a, b, d in firsts.get(row.prefix, ()) if d <= row.day]
        missing = subtract(spans, row.get(T3, "First ID"), row.get(T3, "Last ID"))
        if missing:
            later = [d for a, b, d in firsts.get(row.prefix, ()) if d > row.day]
            why = f"first transferred only on {min(later)}" if later else "never first transferred"
            problems.append(Problem("failure", "aef-before-first-transfer", T3, n,
                f"{row.action.replace('_', ' ')} on {row.day} of ids "
                + ", ".join(f"{lo} to {hi}" for lo, hi in missing[:3])
                + f" of {row.prefix}: {why}"))  # fmt: skip


def _check_balance(ctx: Context, report: AefReport, problems: list[Problem]) -> None:
    """Rule 4."""
    until = date(ctx.opts.year, 12, 31)
    balance: dict[tuple[str, int], int] = {}
    for _, rec in _own_actions(ctx, until):
        sign = 1 if _adds(rec) else -1 if rec.action in _REMOVES else 0
        if not sign:
            continue
        if rec.blocks:
            for b in rec.blocks:
                vintage = b.vintage if b.vintage is not None else rec.vintage
                key = (rec.authorization_id, vintage)
                balance[key] = balance.get(key, 0) + sign * b.quantity
        else:
            key = (rec.authorization_id, rec.vintage)
            balance[key] = balance.get(key, 0) + sign * rec.quantity
    holdings: dict[tuple[str, int], int] = {}
    for row in report.tables[T4]:
        key = (row.get(T4, "Authorization ID"), row.get(T4, "Vintage"))
        holdings[key] = holdings.get(key, 0) + row.get(T4, "Quantity (t CO2 eq)")
    for key in sorted(set(balance) | set(holdings)):
        want, got = balance.get(key, 0), holdings.get(key, 0)
        if want != got:
            problems.append(Problem("failure", "aef-holdings-balance", T4, None,
                f"authorization {key[0]} vintage {key[1]}: the actions leave {want} ITMOs "
                f"held on {until}, the holdings by id are {got}"))  # fmt: skip


def _check_ambiguous(report: AefReport, problems: list[Problem]) -> None:
    """Rule 5."""
    for table in (T3, T4):
        spans: dict[str, set[tuple[int, int, str]]] = {}
        for row in report.tables[table]:
            first = row.get(table, "First ID")
            if first != "":
                spans.setdefault(row.get(table, "Party ITMO registry ID"), set()).add(
                    (first, row.get(table, "Last ID"), row.prefix)
                )
        for registry, blocks in sorted(spans.items()):
            active: list[tuple[int, str]] = []
            for lo, hi, prefix in sorted(blocks):
                active = [(h, p) for h, p in active if h >= lo]
                clash = sorted({p for _, p in active if p != prefix})
                if clash:
                    problems.append(Problem("failure", "aef-ids-ambiguous", table, None,
                        f"{registry}: ids {lo} to {hi} of {prefix} are also ids of "
                        f"{', '.join(clash)}"))  # fmt: skip
                active.append((hi, prefix))


def _fails(problems: list[Problem], check: str, table: str, n: int, detail: str) -> None:
    problems.append(Problem("failure", check, table, n, detail))


def _check_values(ctx: Context, report: AefReport, problems: list[Problem]) -> None:
    """Rule 6."""
    nom = ctx.nom
    seen_unknown: set[str] = set()
    seen: set[tuple[str, str, str]] = set()  # a bad value is listed once per table
    for table in (T1, T2, T3, T4):
        cols = COLUMNS[table]
        for n, row in enumerate(report.tables[table], 1):
            values = dict(zip(cols, row.values, strict=True))
            for col, value in values.items():
                if value in ("", NA) or not isinstance(value, str):
                    continue
                if (table, col, value) not in seen:
                    before = len(problems)
                    _check_value(ctx, problems, table, n, col, value)
                    if len(problems) > before:
                        seen.add((table, col, value))
            if table == T3 and values["Authorization ID"] not in seen_unknown:
                src = row.sources[-1]
                if ctx.authorization(src.partnership, values["Authorization ID"]) is None:
                    seen_unknown.add(values["Authorization ID"])
                    _fails(problems, "aef-authorization-unknown", table, n,
                           f"authorization {values['Authorization ID']} is in neither log "
                           f"of {src.partnership}")  # fmt: skip
            if table == T2:
                if values["Sector(s)"] == "":
                    problems.append(Problem("incomplete", "aef-sector", table, n,
                        "no JCM record names the sector(s): add them"))  # fmt: skip
                if values["First transfer definition for OIMP"] == "":
                    problems.append(Problem("incomplete", "aef-oimp-first-transfer", table, n,
                        "the authorization covers OIMP: name the first transfer definition "
                        "(--oimp-first-transfer)"))  # fmt: skip
    if not nom.matches("submission_version", str(ctx.opts.version)):
        _fails(problems, "aef-value", T1, 1, f"version {ctx.opts.version!r} is not of the form X.Y")


_PARTY_COLUMNS = frozenset({
    "Party", "First transferring participating Party ID", "Transferring participating Party ID",
    "Acquiring participating Party ID", "Using/cancelling participating Party ID",
    "Authorized Party(ies) ID",
})  # fmt: skip
_LISTS = {
    "Action type": "action_type",
    "Action subtype": "action_subtype",
    "Metric": "metric",
    "Mitigation type": "mitigation_type",
    "Underlying unit registry ID": "underlying_unit_registry",
    "Purposes for authorization": "purpose_for_authorization",
    "First transfer definition for OIMP": "first_transfer_definition_oimp",
}


def _check_value(
    ctx: Context, problems: list[Problem], table: str, n: int, col: str, value: str
) -> None:
    nom = ctx.nom
    if col in _PARTY_COLUMNS and not nom.matches("party", value):
        _fails(problems, "aef-party", table, n, f"{col}: {value!r} is not an alpha-3 Party code")
    elif col == "Party ITMO registry ID" and not nom.matches("party_itmo_registry", value):
        _fails(problems, "aef-registry", table, n, f"{col}: {value!r} is not alpha-3 + 2 digits")
    elif col == "Cooperative approach ID" and not nom.matches("cooperative_approach", value):
        _fails(problems, "aef-approach-id", table, n,
               f"cooperative approach {value!r} has no CARP id CANNNN "
               f"(--approach-id '{value}=CANNNN')")  # fmt: skip
    elif col == "Authorization ID" and not nom.matches("authorization_id", value):
        _fails(problems, "aef-authorization-id", table, n,
               f"authorization id {value!r} has characters other than letters, digits, "
               "space and hyphen")  # fmt: skip
    elif col in _LISTS and not nom.allowed(_LISTS[col], value):
        check = "aef-purpose" if col == "Purposes for authorization" else "aef-value"
        _fails(problems, check, table, n, f"{col}: {value!r} is not in the nomenclature")
