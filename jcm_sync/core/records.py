"""The JCM records two sovereign registries exchange, as frozen msgspec Structs.

Why this module exists: every record that crosses between Japan's registry and a
partner secretariat is evidence, so its shape is fixed here once, validated on every
decode, and encoded the same way on every node.

Rules (DESIGN §2):

1. Every record names its ``partnership`` (``JP-MN``), its ``author`` node (``JP`` or
   the partner's ISO 3166-1 alpha-2 code), the time it was ``created`` (with a time
   zone; trust uses it to refuse signatures made after a key's revocation) and, for a
   new version, the record id it ``supersedes``. A record never changes.
2. The kinds form a tagged union on ``kind``; each kind travels with its own DSSE
   payload type (``application/vnd.jcm-sync.<kind>+json``).
3. Identifiers match the patterns of DESIGN §2; amounts are whole, non-negative
   integers within ±(2^53-1); dates are ISO 8601; a monitoring period starts on or
   before its end; a serial block's quantity equals its span.
4. Decoding from the wire tolerates unknown fields (schema evolution); every other
   invalid field is refused with a ``RecordError`` whose ``where`` names the field.
5. Our own payloads are encoded with sorted keys and no floats, so two nodes encoding
   the same record produce the same bytes. A peer's bytes are never re-encoded: the
   envelope keeps what was received.
6. A record is a tree of frozen Structs, strings, numbers, dates and tuples, so it can
   be in no reference cycle: its Structs are not tracked by the cyclic garbage collector
   (``gc=False``, ADR 0060); a test fails on a field type that could hold a cycle.

Serial numbers are the issuing registry's own strings, stored verbatim. Their format
is not public (docs/adr/0002-serial-blocks.md), so a block's span is defined on the
one thing every registry format we know shares: a common prefix followed by a
decimal unit number. ``JP-ID001-2016-000001`` to ``JP-ID001-2016-000027`` spans 27.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, NewType

import msgspec

from jcm_sync.errors import RecordError

# --- identifier types -------------------------------------------------------------

MAX_SAFE_INT: Final = 2**53 - 1

NodeId = NewType("NodeId", str)
PartnershipId = NewType("PartnershipId", str)
ProjectId = NewType("ProjectId", str)
MethodologyId = NewType("MethodologyId", str)
RecordId = NewType("RecordId", str)

# msgspec checks these with ``re.search``. Python's ``$`` also matches before a final
# newline, so each pattern ends in ``(?!\n)$`` (end of string in both Python and the
# ECMA-262 dialect of JSON Schema), and digits are ``[0-9]``: ``\d`` takes any Unicode
# digit. Otherwise "ID001\n" or "ID٠٠١" would pass as a second spelling of "ID001".
NODE_RE: Final = r"^[A-Z]{2}(?!\n)$"
PARTNERSHIP_RE: Final = r"^JP-[A-Z]{2}(?!\n)$"
PROJECT_RE: Final = r"^[A-Z]{2}([0-9]{3}|_PIN[0-9]{3})(?!\n)$"
METHODOLOGY_RE: Final = r"^[A-Z]{2}_(AM|PM)[0-9]{3}(?!\n)$"
PROPOSED_METHODOLOGY_RE: Final = r"^[A-Z]{2}_PM[0-9]{3}(?!\n)$"
VERSION_RE: Final = r"^ver[0-9]{2}\.[0-9](?!\n)$"
RECORD_ID_RE: Final = r"^[0-9a-f]{64}(?!\n)$"
LOCAL_ID_RE: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}(?!\n)$"
SERIAL_RE: Final = r"^[\x21-\x7e]{1,128}(?!\n)$"
DISCREPANCY_ID_RE: Final = r"^[0-9a-f]{16,64}(?!\n)$"

Node = Annotated[str, msgspec.Meta(pattern=NODE_RE, description="ISO 3166-1 alpha-2 or JP")]
Partnership = Annotated[str, msgspec.Meta(pattern=PARTNERSHIP_RE)]
Project = Annotated[str, msgspec.Meta(pattern=PROJECT_RE)]
Methodology_ = Annotated[str, msgspec.Meta(pattern=METHODOLOGY_RE)]
ProposedMethodology = Annotated[str, msgspec.Meta(pattern=PROPOSED_METHODOLOGY_RE)]
Version = Annotated[str, msgspec.Meta(pattern=VERSION_RE)]
RecordRef = Annotated[str, msgspec.Meta(pattern=RECORD_ID_RE)]
LocalId = Annotated[str, msgspec.Meta(pattern=LOCAL_ID_RE)]
Serial = Annotated[str, msgspec.Meta(pattern=SERIAL_RE)]
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
Year = Annotated[int, msgspec.Meta(ge=1990, le=2200)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
Text = Annotated[str, msgspec.Meta(max_length=4000)]
Created = Annotated[datetime, msgspec.Meta(tz=True)]

AccountType = Literal["government_holding", "participant_holding", "cancellation", "retirement"]
Purpose = Literal["ndc", "oimp", "other"]

JC_KINDS: Final = frozenset({"methodology", "project", "issuance_decision"})
"""Joint Committee records: effective only with both secretariats' signatures."""


# --- shared parts -----------------------------------------------------------------


class Period(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """A monitoring period, inclusive at both ends; it may straddle calendar years."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"monitoring period starts {self.start} after it ends {self.end}")

    def years(self) -> list[int]:
        """Return the calendar years (Article 6.2 vintages) the period touches."""
        return list(range(self.start.year, self.end.year + 1))


_DIGITS: Final = "0123456789"


def serial_parts(serial: str) -> tuple[str, int]:
    """Split a registry serial into (prefix, unit number); ValueError if it has none.

    The unit number is the longest run of ASCII digits at the end. (``rstrip``, not a
    regex: this runs twice per block on every decode, and a lazy ``(.*?)(\\d+)$``
    costs a microsecond a call.)
    """
    prefix = serial.rstrip(_DIGITS)
    if len(prefix) == len(serial):
        raise ValueError(f"serial {serial!r} does not end in a decimal unit number")
    return prefix, int(serial[len(prefix) :])


class SerialBlock(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """A contiguous block of credits in one registry: start and end inclusive."""

    start: Serial
    end: Serial
    quantity: Amount
    vintage: Year | None = None

    def __post_init__(self) -> None:
        # ``serial_parts`` of both ends inline (every block decoded at ingest, ADR 0060)
        start, end = self.start, self.end
        lo_prefix, hi_prefix = start.rstrip(_DIGITS), end.rstrip(_DIGITS)
        if len(lo_prefix) == len(start):
            raise ValueError(f"serial {start!r} does not end in a decimal unit number")
        if len(hi_prefix) == len(end):
            raise ValueError(f"serial {end!r} does not end in a decimal unit number")
        lo, hi = int(start[len(lo_prefix) :]), int(end[len(hi_prefix) :])
        if lo_prefix != hi_prefix:
            raise ValueError(f"start {self.start!r} and end {self.end!r} differ in prefix")
        if hi < lo:
            raise ValueError(f"end {self.end!r} is before start {self.start!r}")
        span = hi - lo + 1
        if span != self.quantity:
            raise ValueError(f"quantity {self.quantity} is not the block's span {span}")

    @property
    def prefix(self) -> str:
        return serial_parts(self.start)[0]

    @property
    def first(self) -> int:
        return serial_parts(self.start)[1]

    @property
    def last(self) -> int:
        return serial_parts(self.end)[1]


class Account(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """An account inside one registry."""

    id: LocalId
    type: AccountType


class Participant(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    side: Node


class Allocation(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """A holder's share of a project's credits, in whole percent."""

    holder: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    side: Node
    percent: Percent


class HolderAmount(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """Credits a decision allocates to one holder account on one side."""

    holder: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    account_type: AccountType
    amount: Amount


class SideShare(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """The amount a decision notifies to one side, and how it splits among holders."""

    side: Node
    notified: Amount
    allocations: tuple[HolderAmount, ...] = ()

    def __post_init__(self) -> None:
        if self.allocations:
            total = sum(a.amount for a in self.allocations)
            if total != self.notified:
                raise ValueError(
                    f"allocations of side {self.side} sum to {total}, not {self.notified}"
                )


class DecisionRef(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """Natural key of an issuance decision: project and monitoring period."""

    project_id: Project
    monitoring_period: Period


# --- record kinds -----------------------------------------------------------------


class RecordBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", gc=False):
    """Fields every record carries; see rule 1 of the module docstring."""

    partnership: Partnership
    author: Node
    created: Created
    supersedes: RecordRef | None = None

    def __post_init__(self) -> None:
        author = self.author
        if author != "JP" and author != self.partnership[3:]:
            partner = self.partnership[3:]
            raise ValueError(
                f"author {self.author} is neither JP nor the partner {partner} "
                f"of partnership {self.partnership}"
            )

    @property
    def kind(self) -> str:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag

    @property
    def partner(self) -> str:
        return self.partnership[3:]

    def key(self) -> tuple[str, ...]:
        """Natural key of the record; versions of one record share it."""
        raise NotImplementedError


class MethodologyRecord(RecordBase, frozen=True, tag="methodology"):
    """A JC methodology, proposed by one secretariat and endorsed by the other.

    ``approved_on`` is the day the JC approved this version; ``status_since`` the day an
    ``inactive`` status took effect (a new version of the record carries it), so a
    project registered before that day was registered under a valid methodology.
    """

    methodology_id: Methodology_
    version: Version
    title: Text
    sectoral_scope: Annotated[str, msgspec.Meta(max_length=200)] = ""
    status: Literal["proposed", "valid", "inactive"] = "valid"
    proposed_id: ProposedMethodology | None = None
    approved_on: date | None = None
    status_since: date | None = None

    def key(self) -> tuple[str, ...]:
        return (self.methodology_id, self.version)


class ProjectRecord(RecordBase, frozen=True, tag="project"):
    """JC registration of a project, its status and its credit allocation.

    ``registered_on`` is the day the JC registered the project; ``status_since`` the day
    a ``withdrawn`` or ``suspended`` status took effect (a new version superseding the
    registered one carries it): records dated before it stay valid, records dated on or
    after it rest on a project that is no longer registered.
    """

    project_id: Project
    title: Text
    status: Literal["planned", "registered", "withdrawn", "suspended"]
    methodologies: tuple[Methodology_, ...] = ()
    participants: tuple[Participant, ...] = ()
    allocation: tuple[Allocation, ...] = ()
    registered_on: date | None = None
    status_since: date | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.allocation and sum(a.percent for a in self.allocation) != 100:
            raise ValueError("allocation percentages do not sum to 100")

    def key(self) -> tuple[str, ...]:
        return (self.project_id,)


class IssuanceDecisionRecord(RecordBase, frozen=True, tag="issuance_decision"):
    """The JC's decision for one monitoring period: total notified and each side's share."""

    project_id: Project
    monitoring_period: Period
    decided_on: date
    total_notified: Amount
    shares: tuple[SideShare, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        sides = [s.side for s in self.shares]
        if len(set(sides)) != len(sides):
            raise ValueError("a side appears twice in shares")
        for side in sides:
            if side not in ("JP", self.partner):
                raise ValueError(f"share for {side}, which is not a side of {self.partnership}")
        total = sum(s.notified for s in self.shares)
        if total != self.total_notified:
            raise ValueError(f"shares sum to {total}, not total_notified {self.total_notified}")

    def key(self) -> tuple[str, ...]:
        mp = self.monitoring_period
        return (self.project_id, mp.start.isoformat(), mp.end.isoformat())

    def share(self, side: str) -> SideShare | None:
        return next((s for s in self.shares if s.side == side), None)


class IssuanceRecord(RecordBase, frozen=True, tag="issuance"):
    """Credits one registry issued into its own accounts, under a JC decision."""

    registry: Node
    issuance_id: LocalId
    decision: DecisionRef
    issued_on: date
    amount: Amount
    account: Account
    blocks: tuple[SerialBlock, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_blocks_total(self.blocks, self.amount)

    def key(self) -> tuple[str, ...]:
        return (self.registry, self.issuance_id)


class TransactionRecord(RecordBase, frozen=True, tag="transaction"):
    """A movement inside one registry: transfer, cancellation or retirement."""

    registry: Node
    txn_id: LocalId
    type: Literal["transfer", "cancellation", "retirement"]
    executed_on: date
    source: Account
    destination: Account
    amount: Amount
    blocks: tuple[SerialBlock, ...] = ()
    purpose: Purpose | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_blocks_total(self.blocks, self.amount)
        wanted = {"cancellation": "cancellation", "retirement": "retirement"}.get(self.type)
        if wanted is not None and self.destination.type != wanted:
            raise ValueError(f"a {self.type} must go to a {wanted} account")

    def key(self) -> tuple[str, ...]:
        return (self.registry, self.txn_id)


class AuthorizationRecord(RecordBase, frozen=True, tag="authorization"):
    """An Article 6.2 authorization by one Party: scope, purposes and cap.

    Authorizations change: a new version (``supersedes``) with ``status`` ``withdrawn`` or
    ``amended`` and the ``effective_on`` day it takes effect from. A withdrawal leaves the
    first transfers made before that day valid; an amendment's terms (cap, scope,
    purposes) apply from that day on. A new version without ``effective_on`` is a
    correction: it replaces its predecessor from the start (``reconcile.rules_article6``).
    """

    party: Node
    authorization_id: LocalId
    cooperative_approach: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    authorized_on: date
    cap: Amount
    purposes: tuple[Purpose, ...]
    projects: tuple[Project, ...] = ()
    vintages: tuple[Year, ...] = ()
    status: Literal["active", "withdrawn", "amended"] = "active"
    effective_on: date | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.status != "active" and self.effective_on is None:
            raise ValueError(f"an authorization {self.status} needs the day it takes effect")

    def key(self) -> tuple[str, ...]:
        return (self.party, self.authorization_id)


class ItmoActionRecord(RecordBase, frozen=True, tag="itmo_action"):
    """An Article 6.2 action recorded by the Party whose registry holds it (AEF)."""

    party: Node
    action_id: LocalId
    action: Literal["first_transfer", "transfer", "acquisition", "use", "voluntary_cancellation"]
    occurred_on: date
    authorization_id: LocalId
    project_id: Project
    vintage: Year
    quantity: Amount
    purpose: Purpose | None = None
    transferring_party: Node | None = None
    acquiring_party: Node | None = None
    blocks: tuple[SerialBlock, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_blocks_total(self.blocks, self.quantity)

    def key(self) -> tuple[str, ...]:
        return (self.party, self.action_id)


class EndorsementRecord(RecordBase, frozen=True, tag="endorsement"):
    """The other secretariat's countersignature of a JC record, by its record id."""

    endorses: RecordRef
    endorsed_kind: Literal["methodology", "project", "issuance_decision"]
    note: Text = ""

    def key(self) -> tuple[str, ...]:
        return (self.endorses,)


class ResolutionRecord(RecordBase, frozen=True, tag="resolution"):
    """How one side explains or corrects a reconciliation discrepancy."""

    discrepancy_id: Annotated[str, msgspec.Meta(pattern=DISCREPANCY_ID_RE)]
    action: Literal["explain", "correct"]
    explanation: Text = ""
    corrections: tuple[RecordRef, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.action == "explain" and not self.explanation:
            raise ValueError("an explain resolution needs an explanation")
        if self.action == "correct" and not self.corrections:
            raise ValueError("a correct resolution names the correcting records")

    def key(self) -> tuple[str, ...]:
        return (self.discrepancy_id, self.author)


def _check_blocks_total(blocks: tuple[SerialBlock, ...], amount: int) -> None:
    if blocks:
        total = 0
        for b in blocks:  # a loop, not sum() over a generator: a record has one or two
            total += b.quantity
        if total != amount:
            raise ValueError(f"serial blocks hold {total} credits, not the amount {amount}")


Record = (
    MethodologyRecord
    | ProjectRecord
    | IssuanceDecisionRecord
    | IssuanceRecord
    | TransactionRecord
    | AuthorizationRecord
    | ItmoActionRecord
    | EndorsementRecord
    | ResolutionRecord
)

RECORD_TYPES: Final[dict[str, type[RecordBase]]] = {
    t.__struct_config__.tag: t  # type: ignore[misc]
    for t in (
        MethodologyRecord,
        ProjectRecord,
        IssuanceDecisionRecord,
        IssuanceRecord,
        TransactionRecord,
        AuthorizationRecord,
        ItmoActionRecord,
        EndorsementRecord,
        ResolutionRecord,
    )
}
KINDS: Final = tuple(RECORD_TYPES)

PAYLOAD_TYPE_PREFIX: Final = "application/vnd.jcm-sync."


_PAYLOAD_TYPES: Final = {kind: f"{PAYLOAD_TYPE_PREFIX}{kind}+json" for kind in RECORD_TYPES}


def payload_type(kind: str) -> str:
    """Return the DSSE payload type of a record kind."""
    ptype = _PAYLOAD_TYPES.get(kind)
    if ptype is None:
        raise RecordError(f"unknown record kind {kind!r}", where="kind")
    return ptype


_KINDS_BY_PAYLOAD_TYPE: Final = {ptype: kind for kind, ptype in _PAYLOAD_TYPES.items()}


def kind_of_payload_type(ptype: str) -> str | None:
    """Return the kind a payload type names, or None if it names none of ours.

    ``PAYLOAD_TYPE_PREFIX + kind + "+json"`` for a kind of ``RECORD_TYPES``, nothing
    else: looked up in the table of exactly those (it runs once per record at ingest).
    """
    return _KINDS_BY_PAYLOAD_TYPE.get(ptype)


# --- encoding ---------------------------------------------------------------------

_encoder = msgspec.json.Encoder(order="sorted")
_decoder: msgspec.json.Decoder[Record] = msgspec.json.Decoder(Record)


class _KindTag(msgspec.Struct):
    """Only the tag: read first, so a kind mismatch is reported as one (``where="kind"``)
    rather than as whichever field of the wrong kind happens to sort first."""

    kind: str


_tag_decoder = msgspec.json.Decoder(_KindTag)

_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _record_error(exc: msgspec.MsgspecError) -> RecordError:
    """Translate a msgspec error into a RecordError naming the field."""
    text = str(exc)
    m = _PATH.search(text)
    where = None
    if m is not None:
        where = m.group("path").lstrip(".") or "record"
        text = text[: m.start()]
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return RecordError(f"not valid JSON: {text}", where=where or "payload")
    return RecordError(text, where=where or "record")


def encode_record(record: RecordBase) -> bytes:
    """Encode one of our own records: sorted keys, the kind tag included."""
    return _encoder.encode(record)


def decode_record(data: bytes | str, kind: str | None = None) -> Record:
    """Decode and validate a record; raise RecordError naming the bad field.

    With ``kind`` given (from the envelope's payload type), a payload whose ``kind``
    tag disagrees is refused, so a payload cannot claim one type and be another.
    """
    if kind is not None and kind not in RECORD_TYPES:
        raise RecordError(f"unknown record kind {kind!r}", where="kind")
    if kind is not None:
        # The common case in one pass (ADR 0051): a record the union decodes carries one
        # kind tag (msgspec refuses a second, different one), so reading the tag first
        # would have found the same; anything the union refuses is decoded again below,
        # tag first, for the error as before.
        try:
            record = _decoder.decode(data)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            pass
        else:
            if type(record) is not RECORD_TYPES[kind]:  # one type per tag: record.kind != kind
                raise RecordError(
                    f"payload is tagged {record.kind!r}, but its payload type names {kind!r}",
                    where="kind",
                )
            return record
    try:
        if kind is not None:
            tag = _tag_decoder.decode(data).kind
            if tag != kind:
                raise RecordError(
                    f"payload is tagged {tag!r}, but its payload type names {kind!r}",
                    where="kind",
                )
        return _decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise _record_error(exc) from None
    except UnicodeDecodeError as exc:
        # msgspec raises this, not a DecodeError, for invalid UTF-8 inside a string
        raise RecordError(f"not valid UTF-8: {exc}", where="payload") from None
    except RecursionError:
        # msgspec raises this, not a DecodeError, past its nesting limit; no record is
        # nested more than a few levels, so this is always bad input, never a bug
        raise RecordError("JSON is nested too deeply to be a record", where="payload") from None


def to_builtins(record: RecordBase) -> dict[str, Any]:
    """Return the record as JSON-ready builtins (for ``--json`` output)."""
    out = msgspec.to_builtins(record, order="sorted")
    assert isinstance(out, dict)
    return out
