"""The rows of the Article 6.2 AEF tables 1, 2, 3 and 5, built from signed records.

Why this module exists: each Party that takes part in the JCM reports its Article 6.2
actions to the UNFCCC every year in the AEF of decision 4/CMA.6, annex II. Both sides'
signed records already hold every fact the report needs, so the rows are computed from
them, never typed in, and every row names the signed records it rests on. Table 4 and
the checks are ``aef_checks``'s; reading the store and writing files ``aef``'s.

Rules (docs/adr/0026-article-6-2-aef-report.md):

1. The reporting Party is the node; its records are read from the node's store, both
   logs of each partnership it serves, so only records whose signatures verified on
   append are used. A record another record supersedes is not reported, except that
   every version of an authorization is a row of table 2 (its version number is its
   place in the chain of ``supersedes``).
2. Table 1 is the submission; table 2 the Party's authorization versions dated in the
   year (``authorized_on``, or ``effective_on`` for a later version); table 3 the actions
   dated in the year: the Party's own ITMO actions, and an ``Authorization`` row for
   every block first transferred under one of its authorizations (the JCM authorizes
   by scope and cap; the units become known when Japan's share is issued, which is
   their first transfer); table 4 the holdings on 31 December (``aef_checks``); table 5
   the authorized entities, which no JCM record names yet, so it is written empty.
3. One row per serial block. ITMO first and last ids are the block's unit numbers: the
   decimal run that ends its first and last serial (``records.serial_parts``); the
   underlying unit (registry ``JCM``) has the same ids, since a JCM credit *is* the unit.
   The serial prefix is named in the row's explanatory information and in the trace.
4. The Party ITMO registry of a row is the registry that issued the block's serial
   prefix (from the issuance records held), else the reporting Party's.
5. Controlled values come from ``aef_nomenclature`` only; a value that cannot be mapped
   is written as it is and is a failure of the checks (``aef_checks``), so a report is
   never silently wrong.
6. Rows are ordered by date, then action type (as the nomenclature lists them), then
   log and log position, then block order: the same records give the same file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from jcm_sync.core.envelope import open_envelope
from jcm_sync.core.records import (
    AuthorizationRecord,
    IssuanceRecord,
    ItmoActionRecord,
    Record,
    SerialBlock,
    decode_record,
    kind_of_payload_type,
)
from jcm_sync.services.aef_nomenclature import Nomenclature

T1, T2, T3, T4, T5 = (
    "1 Submission",
    "2 Authorizations",
    "3 Actions",
    "4 Holdings",
    "5 Authorized entities",
)
TABLES: Final = (T1, T2, T3, T4, T5)
NA: Final = "NA"

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    T1: (
        "Party", "Version", "Reported year", "Date of submission",
        "Review status of the initial report",
        "Result of the consistency check of this AEF submission",
        "First year of the NDC implementation period",
        "Last year of the NDC implementation period",
        "Reference to the Article 6 technical expert review report of the initial report",
    ),
    T2: (
        "Authorization ID", "Date of authorization", "Cooperative approach ID",
        "Version of the authorization", "Authorized quantity", "Metric",
        "Applicable GWP value(s)", "Applicable non-GHG metric", "Sector(s)",
        "Activity type(s)", "Purposes for authorization", "Authorized Party(ies) ID",
        "Authorized entity(ies) ID", "OIMP authorized by the Party", "Authorized timeframe",
        "Authorization terms and conditions", "Authorization documentation",
        "First transfer definition for OIMP", "Additional explanatory information",
    ),
    T3: (
        "Action date", "Action type", "Action subtype", "Cooperative approach ID",
        "Authorization ID", "First transferring participating Party ID",
        "Party ITMO registry ID", "First ID", "Last ID", "Underlying unit registry ID",
        "First unit ID", "Last unit ID", "Metric", "Applicable GWP value(s)",
        "Applicable non-GHG metric", "Quantity (t CO2 eq)", "Quantity (in non-GHG metric)",
        "Mitigation type", "Vintage", "Transferring participating Party ID",
        "Acquiring participating Party ID",
        "Purpose for which the ITMO has been used towards or cancelled for OIMP",
        "Using/cancelling participating Party ID", "Using/cancelling authorized entity ID",
        "Calendar year for which the ITMOs are used towards the Party's NDC",
        "Result of the consistency checks", "Additional explanatory information",
    ),
    T4: (
        "Cooperative approach ID", "Authorization ID", "First transferring participating Party ID",
        "Party ITMO registry ID", "First ID", "Last ID", "Underlying unit registry ID",
        "First unit ID", "Last unit ID", "Metric", "Applicable GWP value(s)",
        "Applicable non-GHG metric", "Quantity (t CO2 eq)", "Quantity (in non-GHG metric)",
        "Mitigation type", "Vintage",
    ),
    T5: (
        "Date of the authorization", "Name", "Country of incorporation",
        "Identification number", "Cooperative approach ID", "Conditions",
        "Change and revocation conditions", "Additional explanatory information",
    ),
}  # fmt: skip
"""The columns of each table, in the order of decision 4/CMA.6, annex II."""

ACTION_ORDER: Final = (
    "authorization",
    "first_transfer",
    "transfer",
    "acquisition",
    "use",
    "voluntary_cancellation",
)
_WANTED: Final = frozenset({"authorization", "itmo_action", "issuance"})


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A signed record as a log of the node holds it: where, and its record id."""

    record: Record
    record_id: str
    partnership: str
    log: str
    index: int


def held_from_envelopes(
    partnership: str,
    log: str,
    envelopes: Iterable[bytes],
    record_ids: Iterable[str],
    start: int = 0,
) -> list[Held]:
    """Decode the records the report reads (authorizations, ITMO actions, issuances)
    from a log's stored envelopes; other kinds are skipped without decoding."""
    out = []
    for i, (env, rid) in enumerate(zip(envelopes, record_ids, strict=True), start):
        opened = open_envelope(env)
        kind = kind_of_payload_type(opened.payloadType)
        if kind in _WANTED:
            out.append(Held(decode_record(opened.payload, kind), rid, partnership, log, i))
    return out


@dataclass(frozen=True)
class AefOptions:
    """What the records do not say: the submission's own facts and the CARP ids."""

    year: int
    submitted: date
    version: str = "1.0"
    ndc_period: tuple[int, int] = (2021, 2030)
    #: cooperative approach name (as authorizations name it) -> CARP id ``CANNNN``
    approach_ids: Mapping[str, str] = field(default_factory=dict)
    #: the Party's first transfer definition for OIMP, when it authorizes for OIMP
    oimp_first_transfer: str | None = None


# --- outputs -----------------------------------------------------------------------------


@dataclass
class Row:
    """A row of a table: values in ``COLUMNS`` order and the records behind it."""

    values: list[Any]
    sources: list[Held]
    #: for table 3 and 4 rows: the serial prefix and the action (checks read them)
    prefix: str = ""
    action: str = ""
    day: date | None = None

    def get(self, table: str, column: str) -> Any:
        return self.values[COLUMNS[table].index(column)]


@dataclass(frozen=True)
class Problem:
    """A check that failed (``failure``: exit 1) or a value to add (``incomplete``)."""

    severity: Literal["failure", "incomplete"]
    check: str
    table: str
    row: int | None
    detail: str


@dataclass
class AefReport:
    """The five tables of one Party's AEF for one year, and what the checks found."""

    party: str
    year: int
    nomenclature: str
    tables: dict[str, list[Row]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def failures(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "failure"]


# --- building ----------------------------------------------------------------------------


@dataclass
class Context:
    """What building the rows needs: the nomenclature, the options and the indexes."""

    nom: Nomenclature
    opts: AefOptions
    party: str
    current: list[Held]
    #: (partnership, authorization id) -> the current version of each Party's record
    auths: dict[tuple[str, str], dict[str, Held]]
    #: serial prefix -> the registries whose issuances name it
    issued: dict[str, set[str]]
    problems: list[Problem] = field(default_factory=list)

    def alpha3(self, node: str | None) -> str:
        if node is None:
            return ""
        return self.nom.party(node) or node

    def authorization(self, partnership: str, aid: str) -> Held | None:
        """The authorization an action names: the partner's (the Party where the
        mitigation occurs) when both Parties hold one of that id."""
        found = self.auths.get((partnership, aid), {})
        return found.get(partnership[3:]) or found.get("JP")

    def approach(self, auth: AuthorizationRecord | None) -> str:
        """Rule 5: the authorization's approach if it is a CARP id, else the id the
        options give for its name, else the name (a failure of ``aef-approach-id``)."""
        if auth is None:
            return ""
        name = auth.cooperative_approach
        if self.nom.matches("cooperative_approach", name):
            return name
        return self.opts.approach_ids.get(name, name)

    def registry_of(self, prefix: str) -> str:
        """Rule 4."""
        found = self.issued.get(prefix, set())
        node = next(iter(found)) if len(found) == 1 else self.party
        return self.nom.registry(node) or node


def current_records(held: Sequence[Held]) -> list[Held]:
    """Rule 1: the records no other record supersedes."""
    superseded = {h.record.supersedes for h in held if h.record.supersedes is not None}
    return [h for h in held if h.record_id not in superseded]


def authorization_versions(held: Sequence[Held]) -> list[tuple[int, Held]]:
    """Every authorization version with its version number (rule 1): 1 for a record
    that supersedes none, one more than its predecessor's for the others."""
    auths = {h.record_id: h for h in held if isinstance(h.record, AuthorizationRecord)}
    numbers: dict[str, int] = {}

    def number(rid: str, depth: int = 0) -> int:
        if rid not in numbers:
            prev = auths[rid].record.supersedes
            numbers[rid] = (
                1 if prev is None or prev not in auths or depth > len(auths) else
                number(prev, depth + 1) + 1
            )  # fmt: skip
        return numbers[rid]

    return [(number(rid), h) for rid, h in auths.items()]


def context(nom: Nomenclature, opts: AefOptions, party: str, held: Sequence[Held]) -> Context:
    current = current_records(held)
    auths: dict[tuple[str, str], dict[str, Held]] = {}
    issued: dict[str, set[str]] = {}
    for h in current:
        rec = h.record
        if isinstance(rec, AuthorizationRecord):
            auths.setdefault((h.partnership, rec.authorization_id), {})[rec.party] = h
        elif isinstance(rec, IssuanceRecord):
            for b in rec.blocks:
                issued.setdefault(b.prefix, set()).add(rec.registry)
    return Context(nom, opts, party, current, auths, issued)


def _sort_key(row: Row) -> tuple[Any, ...]:
    src = row.sources[-1]
    assert row.day is not None
    return (row.day, ACTION_ORDER.index(row.action), src.partnership, src.log, src.index)


def action_rows(ctx: Context) -> list[Row]:
    """Rule 2's table 3: the Party's actions in the year, and its authorizations' blocks."""
    rows: list[Row] = []
    for h in ctx.current:
        rec = h.record
        if not isinstance(rec, ItmoActionRecord) or rec.occurred_on.year != ctx.opts.year:
            continue
        auth = ctx.authorization(h.partnership, rec.authorization_id)
        if rec.party == ctx.party:
            rows.extend(_rows_of(ctx, h, rec, rec.action, auth, [h]))
        if (
            rec.action == "first_transfer"
            and auth is not None
            and isinstance(auth.record, AuthorizationRecord)
            and auth.record.party == ctx.party
        ):
            rows.extend(_rows_of(ctx, h, rec, "authorization", auth, [auth, h]))
    rows.sort(key=_sort_key)  # stable: blocks keep their order
    return rows


def _rows_of(
    ctx: Context,
    h: Held,
    rec: ItmoActionRecord,
    action: str,
    auth: Held | None,
    sources: list[Held],
) -> list[Row]:
    """One row per block of ``rec`` reported as ``action`` (rule 3); one without ids
    when the action names no block (a failure of ``aef-quantity-span``)."""
    nom, jcm = ctx.nom, ctx.nom.jcm
    arec = auth.record if auth is not None else None
    assert arec is None or isinstance(arec, AuthorizationRecord)
    ft_party = ctx.alpha3(arec.party if arec is not None else h.partnership[3:])
    blocks: list[SerialBlock | None] = list(rec.blocks) or [None]
    purpose = rec.purpose
    out = []
    for b in blocks:
        ids: tuple[int | str, int | str] = (b.first, b.last) if b is not None else ("", "")
        prefix = b.prefix if b is not None else ""
        use_like = action in ("use", "voluntary_cancellation")
        oimp = purpose in ("oimp", "other") and (use_like or action == "first_transfer")
        info = f"jcm-sync {rec.action.replace('_', ' ')} {rec.action_id}, project {rec.project_id}"
        if action == "authorization":
            info = f"authorized units of the {info[len('jcm-sync ') :]}"
        if b is not None:
            info += f", serials {b.start} to {b.end}"
        values: list[Any] = [
            f"{rec.occurred_on.isoformat()}T00:00:00.000Z",
            nom.action_type(action),
            jcm["first_transfer_subtype"]
            if action == "first_transfer" and rec.acquiring_party not in (None, rec.party)
            else "",
            ctx.approach(arec),
            rec.authorization_id,
            ft_party,
            ctx.registry_of(prefix) if b is not None else nom.registry(ctx.party) or ctx.party,
            ids[0],
            ids[1],
            jcm["underlying_unit_registry"],
            ids[0],
            ids[1],
            jcm["metric"],
            "",
            NA,
            b.quantity if b is not None else rec.quantity,
            NA,
            jcm["mitigation_type"],
            (b.vintage if b is not None and b.vintage is not None else rec.vintage),
            ctx.alpha3(rec.transferring_party) if action == "acquisition" else NA,
            ctx.alpha3(rec.acquiring_party) if action in ("first_transfer", "transfer") else NA,
            _oimp_purpose(nom, purpose) if oimp else NA,
            ctx.alpha3(rec.party) if oimp and use_like else NA,
            NA,
            rec.occurred_on.year if action == "use" and not oimp else NA,
            "",
            info,
        ]  # fmt: skip
        out.append(Row(values, sources, prefix=prefix, action=action, day=rec.occurred_on))
    return out


def _oimp_purpose(nom: Nomenclature, purpose: str | None) -> str:
    return (nom.purposes([purpose]) or purpose) if purpose is not None else NA


def authorization_rows(ctx: Context, held: Sequence[Held]) -> list[Row]:
    """Rule 2's table 2: the Party's authorization versions dated in the year."""
    nom, jcm, opts = ctx.nom, ctx.nom.jcm, ctx.opts
    rows = []
    for number, h in authorization_versions(held):
        rec = h.record
        assert isinstance(rec, AuthorizationRecord)
        day = rec.authorized_on if number == 1 else (rec.effective_on or rec.authorized_on)
        if rec.party != ctx.party or day.year != opts.year:
            continue
        covers_oimp = bool({"oimp", "other"} & set(rec.purposes))
        timeframe = f"{min(rec.vintages)} - {max(rec.vintages)}" if rec.vintages else ""
        info = f"jcm-sync authorization {rec.authorization_id}, {rec.status}"
        if rec.effective_on is not None:
            info += f" from {rec.effective_on.isoformat()}"
        if rec.projects:
            info += f"; projects {', '.join(rec.projects)}"
        other = "JP" if rec.party != "JP" else h.partnership[3:]
        values: list[Any] = [
            rec.authorization_id,
            day,
            ctx.approach(rec),
            number,
            rec.cap,
            jcm["metric"],
            "",
            NA,
            "",
            "",
            nom.purposes(rec.purposes) or "+".join(rec.purposes),
            ctx.alpha3(other),
            "",
            (nom.purposes([p for p in rec.purposes if p != "ndc"]) or "") if covers_oimp else NA,
            timeframe,
            "",
            "",
            (opts.oimp_first_transfer or "") if covers_oimp else NA,
            info,
        ]
        rows.append(Row(values, [h], action="authorization", day=day))
    rows.sort(key=lambda r: (r.day, r.values[0], r.values[3]))
    return rows


def submission_row(ctx: Context) -> Row:
    opts = ctx.opts
    first, last = opts.ndc_period
    values: list[Any] = [
        ctx.alpha3(ctx.party), opts.version, opts.year, opts.submitted, "", "", first, last, "",
    ]  # fmt: skip
    return Row(values, [])
