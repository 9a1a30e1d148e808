"""Records: the wire schema two registries exchange (``jcm_sync.core.records``).

The invalid-input properties use their own oracle for each identifier (``re.fullmatch``
of the intended pattern, ASCII only) rather than the module's patterns, so a pattern
that is looser than DESIGN §2 (a trailing newline, a non-ASCII digit) is caught.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jcm_sync.core.records import (
    KINDS,
    MAX_SAFE_INT,
    RECORD_TYPES,
    Account,
    Allocation,
    DecisionRef,
    HolderAmount,
    IssuanceDecisionRecord,
    Participant,
    Period,
    SerialBlock,
    SideShare,
    decode_record,
    encode_record,
    kind_of_payload_type,
    payload_type,
)
from jcm_sync.errors import RecordError
from tests import strategies as gen

# Budgets keep the whole file near 10 s: a property runs FAST examples, and each row of
# a parametrised table ROW examples (the rows together cover far more).
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def builtins_of(record: Any) -> dict[str, Any]:
    """The record as the JSON object a peer would send."""
    out = msgspec.json.decode(encode_record(record))
    assert isinstance(out, dict)
    return out


def dumps(obj: Any) -> bytes:
    """Encode with the standard library, which also writes what msgspec will not."""
    return json.dumps(obj).encode()


def refused(data: bytes, kind: str | None = None) -> RecordError:
    with pytest.raises(RecordError) as info:
        decode_record(data, kind)
    return info.value


_SEGMENT = re.compile(r"([^.\[]+)(?:\[(\d+)\])?")


def put(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (``shares[0].side``) in a decoded record, creating list items."""
    parts = path.split(".")
    for n, part in enumerate(parts):
        m = _SEGMENT.fullmatch(part)
        assert m is not None, part
        name, index = m.group(1), m.group(2)
        last = n == len(parts) - 1
        if index is None:
            if last:
                obj[name] = value
            else:
                obj = obj.setdefault(name, {})
            continue
        items = obj.get(name) or [{}]
        item = value if last else dict(items[0]) if isinstance(items[0], dict) else {}
        obj[name] = [item]
        if not last:
            obj = item


# --- round trip -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
@ROW
@given(data=st.data())
def test_round_trip_every_kind(kind: str, data: st.DataObject) -> None:
    """encode → decode returns an equal record, and re-encoding gives the same bytes."""
    record = data.draw(gen.record_of(kind))
    raw = encode_record(record)
    back = decode_record(raw)
    assert back == record
    assert type(back) is RECORD_TYPES[kind]
    assert decode_record(raw, kind) == record
    assert encode_record(back) == raw


@FAST
@given(gen.records())
def test_encoding_is_sorted_ascii_keys_without_floats(record: Any) -> None:
    """Our encoding sorts keys at every level, carries the kind tag and holds no floats."""
    raw = encode_record(record)
    obj = json.loads(raw, parse_float=lambda s: pytest.fail(f"float {s} in {raw!r}"))
    assert obj["kind"] == record.kind

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert list(node) == sorted(node)
            assert all(k.isascii() for k in node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, int) and not isinstance(node, bool):
            assert -MAX_SAFE_INT <= node <= MAX_SAFE_INT

    walk(obj)


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_payload_type_names_the_kind(kind: str) -> None:
    """Each kind has its own payload type, and the payload type gives the kind back."""
    ptype = payload_type(kind)
    assert ptype == f"application/vnd.jcm-sync.{kind}+json"
    assert kind_of_payload_type(ptype) == kind


@pytest.mark.parametrize(
    "ptype",
    [
        "application/json",
        "application/vnd.jcm-sync.nope+json",
        "application/vnd.jcm-sync.project",
        "application/vnd.in-toto+json",
        "",
    ],
    ids=["generic-json", "unknown-kind", "no-suffix", "foreign", "empty"],
)
def test_foreign_payload_types_name_no_kind(ptype: str) -> None:
    """A payload type that is not one of ours names no kind."""
    assert kind_of_payload_type(ptype) is None


def test_payload_type_of_unknown_kind_is_refused() -> None:
    """Asking the payload type of an unknown kind is a RecordError on ``kind``."""
    with pytest.raises(RecordError) as info:
        payload_type("nope")
    assert info.value.where == "kind"


# --- identifiers ------------------------------------------------------------------

PROJECT = r"[A-Z]{2}([0-9]{3}|_PIN[0-9]{3})"
METHODOLOGY = r"[A-Z]{2}_(AM|PM)[0-9]{3}"
PROPOSED = r"[A-Z]{2}_PM[0-9]{3}"
PARTNERSHIP = r"JP-[A-Z]{2}"
NODE = r"[A-Z]{2}"
VERSION = r"ver[0-9]{2}\.[0-9]"
RECORD_REF = r"[0-9a-f]{64}"
LOCAL = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}"
SERIAL = r"[\x21-\x7e]{1,128}"
DISCREPANCY = r"[0-9a-f]{16,64}"


@st.composite
def near_misses(draw: st.DrawFn, valid: st.SearchStrategy[str]) -> str:
    """A valid identifier with one small edit: the inputs a lax pattern lets through."""
    s = draw(valid)
    i = draw(st.integers(0, max(len(s) - 1, 0)))
    any_char = st.characters(codec="utf-8")
    edits: dict[str, Callable[[], str]] = {
        "append": lambda: s + draw(any_char),
        "prepend": lambda: draw(any_char) + s,
        "newline": lambda: s + "\n",
        "crlf": lambda: s + "\r\n",
        "space": lambda: s + " ",
        "drop": lambda: s[:i] + s[i + 1 :],
        "replace": lambda: s[:i] + draw(any_char) + s[i + 1 :],
        "case": lambda: s.swapcase(),
        "digit": lambda: re.sub(
            "[0-9]", lambda _: draw(st.characters(categories=["Nd"])), s, count=1
        ),
        "double": lambda: s + s,
        "empty": lambda: "",
    }
    return edits[draw(st.sampled_from(sorted(edits)))]()


def bad_strings(valid: st.SearchStrategy[str], oracle: str) -> st.SearchStrategy[str]:
    """Strings the intended pattern refuses, near valid ones or random."""
    return (near_misses(valid) | st.text(max_size=80)).filter(
        lambda s: re.fullmatch(oracle, s) is None
    )


NOT_STRINGS = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
)

# (id, kind or None for any, path in the record, valid values, oracle, optional field)
IDENTIFIERS: list[tuple[str, str | None, str, st.SearchStrategy[str], str, bool]] = [
    ("project_id", "project", "project_id", gen.project_ids(), PROJECT, False),
    ("decision-project", "issuance_decision", "project_id", gen.project_ids(), PROJECT, False),
    ("issuance-decision-ref", "issuance", "decision.project_id", gen.project_ids(), PROJECT, False),
    ("authorized-projects", "authorization", "projects[0]", gen.project_ids(), PROJECT, False),
    ("methodology_id", "methodology", "methodology_id", gen.methodology_ids(), METHODOLOGY, False),
    ("proposed_id", "methodology", "proposed_id", gen.methodology_ids(True), PROPOSED, True),
    (
        "project-methodologies",
        "project",
        "methodologies[0]",
        gen.methodology_ids(),
        METHODOLOGY,
        False,
    ),
    ("version", "methodology", "version", gen.versions(), VERSION, False),
    ("partnership", None, "partnership", gen.partners().map("JP-{}".format), PARTNERSHIP, False),
    ("author", None, "author", gen.nodes(), NODE, False),
    ("registry", "issuance", "registry", gen.nodes(), NODE, False),
    ("share-side", "issuance_decision", "shares[0].side", gen.nodes(), NODE, False),
    ("participant-side", "project", "participants[0].side", gen.nodes(), NODE, False),
    ("supersedes", None, "supersedes", gen.record_ids(), RECORD_REF, True),
    ("endorses", "endorsement", "endorses", gen.record_ids(), RECORD_REF, False),
    ("corrections", "resolution", "corrections[0]", gen.record_ids(), RECORD_REF, False),
    ("issuance_id", "issuance", "issuance_id", gen.local_ids(), LOCAL, False),
    ("serial", "issuance", "blocks[0].start", st.just("JP-ID002-2016-000001"), SERIAL, False),
    (
        "discrepancy_id",
        "resolution",
        "discrepancy_id",
        st.text("0123456789abcdef", min_size=16, max_size=64),
        DISCREPANCY,
        False,
    ),
]


@pytest.mark.parametrize(
    ("kind", "path", "valid", "oracle", "optional"),
    [row[1:] for row in IDENTIFIERS],
    ids=[row[0] for row in IDENTIFIERS],
)
@ROW
@given(data=st.data())
def test_invalid_identifier_is_refused_naming_the_field(
    kind: str | None,
    path: str,
    valid: st.SearchStrategy[str],
    oracle: str,
    optional: bool,
    data: st.DataObject,
) -> None:
    """An identifier outside its pattern is refused with ``where`` naming the field."""
    record = data.draw(gen.records() if kind is None else gen.record_of(kind))
    wrong: st.SearchStrategy[Any] = bad_strings(valid, oracle) | NOT_STRINGS
    if not optional:
        wrong |= st.none()
    value = data.draw(wrong, label="value")
    obj = builtins_of(record)
    put(obj, path, value)
    assert refused(dumps(obj)).where == path


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("project_id", "ID001\n"),
        ("project_id", "ID\u0660\u0660\u0661"),
        ("partnership", "JP-ID\n"),
        ("supersedes", "0" * 64 + "\n"),
        ("author", "JP\n"),
    ],
    ids=[
        "trailing-newline",
        "arabic-indic-digits",
        "partnership-newline",
        "ref-newline",
        "author-newline",
    ],
)
def test_second_spellings_of_an_identifier_are_refused(path: str, value: str) -> None:
    """An identifier cannot gain a second spelling through a newline or a non-ASCII digit."""
    obj = builtins_of(IndonesiaMay2016.record())
    obj[path] = value
    assert refused(dumps(obj)).where == path


@FAST
@given(gen.partners(), gen.nodes(), st.data())
def test_author_must_be_jp_or_the_partner(partner: str, author: str, data: st.DataObject) -> None:
    """A record authored by a node outside its partnership is refused."""
    assume(author not in ("JP", partner))
    obj = builtins_of(data.draw(gen.records(partnership=f"JP-{partner}")))
    obj["author"] = author
    err = refused(dumps(obj))
    assert err.where == "record"
    assert "neither JP nor the partner" in err.message


# --- amounts ----------------------------------------------------------------------

BAD_AMOUNTS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_SAFE_INT + 1),
    st.sampled_from([-1, MAX_SAFE_INT + 1, 2**64, 1.5, 1.0, 0.0, -0.0, "1", "", True, False, None]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.lists(st.integers(0, 9), max_size=2),
)

AMOUNTS = [
    ("issuance.amount", "issuance", "amount"),
    ("transaction.amount", "transaction", "amount"),
    ("itmo_action.quantity", "itmo_action", "quantity"),
    ("authorization.cap", "authorization", "cap"),
    ("decision.total_notified", "issuance_decision", "total_notified"),
    ("decision.share.notified", "issuance_decision", "shares[0].notified"),
    ("decision.holder.amount", "issuance_decision", "shares[0].allocations[0].amount"),
    ("block.quantity", "issuance", "blocks[0].quantity"),
]


@pytest.mark.parametrize(
    ("kind", "path"), [row[1:] for row in AMOUNTS], ids=[row[0] for row in AMOUNTS]
)
@ROW
@given(data=st.data())
def test_invalid_amount_is_refused_naming_the_field(
    kind: str, path: str, data: st.DataObject
) -> None:
    """Negative, fractional, too large or non-integer amounts are refused, naming the field."""
    obj = builtins_of(data.draw(gen.record_of(kind)))
    put(obj, path, data.draw(BAD_AMOUNTS, label="amount"))
    assert refused(dumps(obj)).where == path


@pytest.mark.parametrize("value", [0, 1, MAX_SAFE_INT], ids=["zero", "one", "2^53-1"])
def test_amount_bounds_are_inclusive(value: int) -> None:
    """0 and 2^53-1 are valid amounts."""
    obj = builtins_of(IndonesiaMay2016.record())
    obj["shares"] = [{"side": "JP", "notified": value}]
    obj["total_notified"] = value
    record = decode_record(dumps(obj))
    assert isinstance(record, IssuanceDecisionRecord)
    assert record.total_notified == value


# --- schema evolution -------------------------------------------------------------

STRUCTS: tuple[type[msgspec.Struct], ...] = (
    *RECORD_TYPES.values(),
    Account,
    Allocation,
    DecisionRef,
    HolderAmount,
    Participant,
    Period,
    SerialBlock,
    SideShare,
)
KNOWN_FIELDS = {"kind"} | {name for cls in STRUCTS for name in cls.__struct_fields__}

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
UNKNOWN_KEYS = st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_FIELDS)


@FAST
@given(gen.records(), st.data())
def test_unknown_fields_are_tolerated_at_every_level(record: Any, data: st.DataObject) -> None:
    """A record from a newer peer, with extra fields anywhere, decodes to the same record."""
    obj = builtins_of(record)

    def extend(node: Any) -> None:
        if isinstance(node, dict):
            for v in list(node.values()):
                extend(v)
            node.update(data.draw(st.dictionaries(UNKNOWN_KEYS, JSON_VALUES, max_size=2)))
        elif isinstance(node, list):
            for v in node:
                extend(v)

    extend(obj)
    assert decode_record(dumps(obj)) == record
    assert decode_record(dumps(obj), record.kind) == record


# --- serial blocks ----------------------------------------------------------------

BLOCK_KINDS = [("issuance", "amount"), ("transaction", "amount"), ("itmo_action", "quantity")]


@pytest.mark.parametrize(("kind", "total"), BLOCK_KINDS, ids=[k for k, _ in BLOCK_KINDS])
@ROW
@given(data=st.data())
def test_block_quantity_must_equal_its_span(kind: str, total: str, data: st.DataObject) -> None:
    """A serial block whose quantity differs from its span is refused at ``blocks[0]``."""
    block = data.draw(gen.serial_blocks())
    wrong = data.draw(
        st.integers(0, MAX_SAFE_INT).filter(lambda q: q != block.quantity), label="quantity"
    )
    obj = builtins_of(data.draw(gen.record_of(kind)))
    obj["blocks"] = [{"start": block.start, "end": block.end, "quantity": wrong}]
    obj[total] = wrong
    err = refused(dumps(obj))
    assert err.where == "blocks[0]"


@pytest.mark.parametrize(
    ("start", "end", "quantity", "message"),
    [
        ("JP-ID002-2016-000001", "JP-ID002-2016-000027", 26, "span 27"),
        ("JP-ID002-2016-000001", "JP-ID003-2016-000027", 27, "differ in prefix"),
        ("JP-ID002-2016-000027", "JP-ID002-2016-000001", 27, "before start"),
        ("JP-ID002-2016-A", "JP-ID002-2016-B", 2, "decimal unit number"),
        ("X5", "X5", 0, "span 1"),
    ],
    ids=["quantity-not-span", "prefix-differs", "end-before-start", "no-unit-number", "zero"],
)
def test_malformed_serial_blocks_are_refused(
    start: str, end: str, quantity: int, message: str
) -> None:
    """Serial blocks that do not describe a contiguous run of ``quantity`` units are refused."""
    obj = builtins_of(IndonesiaMay2016.issuance())
    obj["blocks"] = [{"start": start, "end": end, "quantity": quantity}]
    obj["amount"] = quantity
    err = refused(dumps(obj))
    assert err.where == "blocks[0]"
    assert message in err.message


def test_block_span_is_the_unit_numbers_inclusive() -> None:
    """``…000001`` to ``…000027`` is a block of 27 with prefix and unit numbers split off."""
    block = SerialBlock(start="JP-ID002-2016-000001", end="JP-ID002-2016-000027", quantity=27)
    assert (block.prefix, block.first, block.last) == ("JP-ID002-2016-", 1, 27)


@FAST
@given(gen.record_of("issuance"), st.integers(2, MAX_SAFE_INT))
def test_blocks_must_hold_the_amount(record: Any, amount: int) -> None:
    """Blocks that do not sum to the amount are refused."""
    obj = builtins_of(record)
    obj["blocks"] = [{"start": "A1", "end": "A1", "quantity": 1}]
    obj["amount"] = amount
    err = refused(dumps(obj))
    assert err.where == "record"
    assert "not the amount" in err.message


# --- dates, periods and times -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path"),
    [("issuance_decision", "monitoring_period"), ("issuance", "decision.monitoring_period")],
    ids=["decision", "issuance-decision-ref"],
)
@ROW
@given(data=st.data())
def test_period_starting_after_its_end_is_refused(
    kind: str, path: str, data: st.DataObject
) -> None:
    """A monitoring period whose start is after its end is refused, naming the period."""
    a, b = data.draw(st.lists(gen.dates(), min_size=2, max_size=2, unique=True).map(sorted))
    obj = builtins_of(data.draw(gen.record_of(kind)))
    put(obj, path, {"start": b.isoformat(), "end": a.isoformat()})
    err = refused(dumps(obj))
    assert err.where == path
    assert "after it ends" in err.message


@FAST
@given(gen.periods())
def test_period_years_are_every_calendar_year_touched(period: Period) -> None:
    """A period's vintages run from its start year to its end year, inclusive."""
    years = period.years()
    assert years[0] == period.start.year
    assert years[-1] == period.end.year
    assert len(years) == period.end.year - period.start.year + 1


@FAST
@given(gen.records(), st.datetimes(datetime(1990, 1, 1), datetime(2200, 1, 1)))
def test_naive_created_is_refused(record: Any, naive: datetime) -> None:
    """A ``created`` without a time zone is refused: revocation checks need an instant."""
    obj = builtins_of(record)
    obj["created"] = naive.isoformat()
    assert refused(dumps(obj)).where == "created"


@FAST
@given(gen.record_of("issuance_decision"), gen.dates())
def test_dates_travel_as_iso_8601(record: Any, day: date) -> None:
    """A date is written ``YYYY-MM-DD`` and read back as the same date."""
    obj = builtins_of(record)
    obj["decided_on"] = day.isoformat()
    back = decode_record(dumps(obj))
    assert isinstance(back, IssuanceDecisionRecord)
    assert back.decided_on == day
    assert builtins_of(back)["decided_on"] == day.isoformat()


@pytest.mark.parametrize(
    "value",
    [
        "2016/05/13",
        "13-05-2016",
        "20160513",
        "2016-5-13",
        "2016-02-30",
        "2015-02-29",
        "2016-13-01",
        "2016-05-13T00:00:00Z",
        "",
        20160513,
        None,
    ],
    ids=[
        "slashes",
        "day-first",
        "basic-format",
        "unpadded",
        "30-february",
        "29-february-non-leap",
        "month-13",
        "datetime",
        "empty",
        "integer",
        "null",
    ],
)
def test_non_iso_dates_are_refused(value: Any) -> None:
    """A date that is not a real ``YYYY-MM-DD`` calendar date is refused, naming the field."""
    obj = builtins_of(IndonesiaMay2016.record())
    obj["decided_on"] = value
    assert refused(dumps(obj)).where == "decided_on"


@pytest.mark.parametrize(
    "value",
    ["2016-05-13T10:00:00+09:00", "2016-05-13T01:00:00Z", "2016-05-13T01:00:00.123456+00:00"],
    ids=["offset", "zulu", "fraction"],
)
def test_created_accepts_rfc3339_with_a_zone(value: str) -> None:
    """``created`` accepts RFC 3339 timestamps with an offset or ``Z``."""
    obj = builtins_of(IndonesiaMay2016.record())
    obj["created"] = value
    created = decode_record(dumps(obj)).created
    assert created.utcoffset() is not None


# --- the kind tag -----------------------------------------------------------------


@FAST
@given(gen.records(), st.sampled_from(KINDS))
def test_kind_tag_must_match_the_expected_kind(record: Any, expected: str) -> None:
    """A payload decoded as another kind than its tag says is refused at ``kind``."""
    raw = encode_record(record)
    if expected == record.kind:
        assert decode_record(raw, expected) == record
    else:
        assert refused(raw, expected).where == "kind"


@pytest.mark.parametrize(
    ("tag", "kind", "where"),
    [
        ("nope", None, "kind"),
        ("nope", "issuance_decision", "kind"),
        ("issuance_decision", "nope", "kind"),
        (None, None, "record"),
        (None, "issuance_decision", "record"),
    ],
    ids=[
        "unknown-tag",
        "unknown-tag-as-decision",
        "unknown-expected-kind",
        "missing-tag",
        "missing-tag-as-decision",
    ],
)
def test_unknown_or_missing_kind_is_refused(tag: str | None, kind: str | None, where: str) -> None:
    """A payload with no kind, or an unknown one, is refused."""
    obj = builtins_of(IndonesiaMay2016.record())
    if tag is None:
        del obj["kind"]
    else:
        obj["kind"] = tag
    assert refused(dumps(obj), kind).where == where


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b'"project"', b'{"kind":"proj\xffect"}', b'{"kind":"\xc3"}'],
    ids=["empty", "truncated", "array", "null", "string", "bad-utf8-tag", "truncated-utf8"],
)
def test_malformed_payloads_are_record_errors(data: bytes) -> None:
    """Bytes that are not a JSON object of valid UTF-8 are a RecordError, never another error."""
    refused(data)
    refused(data, "project")


# --- a real decision: Japan–Indonesia, May 2016 -----------------------------------


class IndonesiaMay2016:
    """The first JCM issuance decision: 40 credits, 31 to Japan and 9 to Indonesia.

    Japan's 31: 27 to the government, 4 to the participant Mayekawa; Indonesia's 9:
    5 to the government, 4 to the participant PT Adib Global Food Supplies (as
    reported by Carbon Pulse, 13 May 2016). The project id, monitoring period, dates
    and serials are illustrative.
    """

    @staticmethod
    def obj() -> dict[str, Any]:
        return {
            "kind": "issuance_decision",
            "partnership": "JP-ID",
            "author": "JP",
            "created": "2016-05-12T10:00:00+09:00",
            "project_id": "ID002",
            "monitoring_period": {"start": "2015-01-01", "end": "2015-12-31"},
            "decided_on": "2016-05-12",
            "total_notified": 40,
            "shares": [
                {
                    "side": "JP",
                    "notified": 31,
                    "allocations": [
                        {
                            "holder": "Government of Japan",
                            "account_type": "government_holding",
                            "amount": 27,
                        },
                        {
                            "holder": "Mayekawa Mfg. Co., Ltd.",
                            "account_type": "participant_holding",
                            "amount": 4,
                        },
                    ],
                },
                {
                    "side": "ID",
                    "notified": 9,
                    "allocations": [
                        {
                            "holder": "Government of Indonesia",
                            "account_type": "government_holding",
                            "amount": 5,
                        },
                        {
                            "holder": "PT Adib Global Food Supplies",
                            "account_type": "participant_holding",
                            "amount": 4,
                        },
                    ],
                },
            ],
        }

    @classmethod
    def record(cls) -> IssuanceDecisionRecord:
        record = decode_record(dumps(cls.obj()))
        assert isinstance(record, IssuanceDecisionRecord)
        return record

    @staticmethod
    def issuance() -> Any:
        return decode_record(
            dumps(
                {
                    "kind": "issuance",
                    "partnership": "JP-ID",
                    "author": "JP",
                    "created": "2016-05-13T09:00:00+09:00",
                    "registry": "JP",
                    "issuance_id": "JP-2016-0001",
                    "decision": {
                        "project_id": "ID002",
                        "monitoring_period": {"start": "2015-01-01", "end": "2015-12-31"},
                    },
                    "issued_on": "2016-05-13",
                    "amount": 27,
                    "account": {"id": "JP-GOV-1", "type": "government_holding"},
                    "blocks": [
                        {
                            "start": "JP-ID002-2016-000001",
                            "end": "JP-ID002-2016-000027",
                            "quantity": 27,
                        }
                    ],
                }
            )
        )


@pytest.fixture
def indonesia_may_2016() -> IssuanceDecisionRecord:
    return IndonesiaMay2016.record()


def test_indonesia_may_2016_decision_validates(indonesia_may_2016: IssuanceDecisionRecord) -> None:
    """The May 2016 Japan–Indonesia decision decodes with both sides' shares and holders."""
    d = indonesia_may_2016
    assert d.kind == "issuance_decision"
    assert d.total_notified == 40
    jp, id_ = d.share("JP"), d.share("ID")
    assert jp is not None
    assert id_ is not None
    assert (jp.notified, id_.notified) == (31, 9)
    assert [(a.holder, a.amount) for a in jp.allocations] == [
        ("Government of Japan", 27),
        ("Mayekawa Mfg. Co., Ltd.", 4),
    ]
    assert [(a.holder, a.amount) for a in id_.allocations] == [
        ("Government of Indonesia", 5),
        ("PT Adib Global Food Supplies", 4),
    ]
    assert d.key() == ("ID002", "2015-01-01", "2015-12-31")
    assert decode_record(encode_record(d), "issuance_decision") == d


def _corrupt(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = IndonesiaMay2016.obj()
    change(obj)
    return obj


CORRUPTIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("total-off-by-one", lambda o: o.update(total_notified=41), "record", "not total_notified 41"),
    ("jp-holders-short", lambda o: o["shares"][0].update(notified=32), "shares[0]", "not 32"),
    (
        "id-holders-over",
        lambda o: o["shares"][1]["allocations"][0].update(amount=6),
        "shares[1]",
        "sum to 10",
    ),
    (
        "side-outside-partnership",
        lambda o: o["shares"][1].update(side="MN"),
        "record",
        "not a side",
    ),
    ("side-twice", lambda o: o["shares"][1].update(side="JP"), "record", "twice"),
    ("author-outside-partnership", lambda o: o.update(author="MN"), "record", "neither JP"),
    (
        "negative-holder",
        lambda o: o["shares"][0]["allocations"][1].update(amount=-4),
        "shares[0].allocations[1].amount",
        ">= 0",
    ),
    ("naive-created", lambda o: o.update(created="2016-05-12T10:00:00"), "created", "timezone"),
]


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [row[1:] for row in CORRUPTIONS],
    ids=[row[0] for row in CORRUPTIONS],
)
def test_corrupted_indonesia_decision_is_refused(
    change: Callable[[dict[str, Any]], None], where: str, message: str
) -> None:
    """Each inconsistency in the May 2016 decision is refused where it lies."""
    err = refused(dumps(_corrupt(change)))
    assert err.where == where
    assert message in err.message
