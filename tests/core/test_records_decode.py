"""``records.decode_record`` with a kind (ADR 0051): the union decoded first, the tag read
alone only when the union refuses, gives exactly the record or the error (class, message,
place) of reading the tag first, as it did before; and ``kind_of_payload_type``'s table
names exactly the kinds the prefix and suffix name."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jcm_sync.core import records
from jcm_sync.core.records import (
    KINDS,
    PAYLOAD_TYPE_PREFIX,
    RECORD_TYPES,
    decode_record,
    encode_record,
    kind_of_payload_type,
)
from jcm_sync.errors import RecordError
from tests import strategies as gen

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tag_first(data: bytes, kind: str) -> Any:
    """The decode as it was: the tag read alone first, then the union."""
    try:
        tag = records._tag_decoder.decode(data).kind
        if tag != kind:
            raise RecordError(
                f"payload is tagged {tag!r}, but its payload type names {kind!r}", where="kind"
            )
        return records._decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise records._record_error(exc) from None
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8: {exc}", where="payload") from None


def answer(decode: Any, data: bytes, kind: str) -> object:
    try:
        return decode(data, kind)
    except RecordError as exc:
        return (exc.message, exc.where)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@FAST
@given(gen.records(), st.sampled_from(KINDS), st.data())
def test_spoiled_payloads_get_the_same_answer(record: Any, kind: str, data: Any) -> None:
    """A record, its tag changed or doubled, a field set to any JSON: the same answer."""
    obj = msgspec.to_builtins(record)
    field = data.draw(st.sampled_from(sorted(obj)))
    how = data.draw(st.sampled_from(["as-is", "field", "tag", "second-tag", "first-tag"]))
    raw = encode_record(record)
    if how == "field":
        obj[field] = data.draw(JSON)
        raw = msgspec.json.encode(obj)
    elif how == "tag":
        obj["kind"] = data.draw(st.sampled_from([*KINDS, "nope"]))
        raw = msgspec.json.encode(obj)
    elif how == "second-tag":
        other = data.draw(st.sampled_from([*KINDS, "nope"]))
        raw = raw[:-1] + b',"kind":' + msgspec.json.encode(other) + b"}"
    elif how == "first-tag":
        other = data.draw(st.sampled_from([*KINDS, "nope"]))
        raw = b'{"kind":' + msgspec.json.encode(other) + b"," + raw[1:]
    assert answer(decode_record, raw, kind) == answer(tag_first, raw, kind)


@pytest.mark.parametrize(
    "raw", [b"", b"[", b"{}", b'{"kind":1}', b'{"kind":"issuance"}', b'"\xff"', b"[" * 5000]
)
@pytest.mark.parametrize("kind", ["issuance", "project"])
def test_malformed_payloads_get_the_same_answer(raw: bytes, kind: str) -> None:
    try:
        expected = answer(tag_first, raw, kind)
    except RecursionError:
        expected = ("JSON is nested too deeply to be a record", "payload")
    assert answer(decode_record, raw, kind) == expected


@given(st.text(max_size=60))
def test_the_payload_type_table_names_what_prefix_and_suffix_name(ptype: str) -> None:
    by_parts = None
    if ptype.startswith(PAYLOAD_TYPE_PREFIX) and ptype.endswith("+json"):
        kind = ptype[len(PAYLOAD_TYPE_PREFIX) : -len("+json")]
        by_parts = kind if kind in RECORD_TYPES else None
    assert kind_of_payload_type(ptype) == by_parts
    for kind in KINDS:
        assert kind_of_payload_type(f"{PAYLOAD_TYPE_PREFIX}{kind}+json") == kind


# --- ADR 0060: the checks after decode, and records out of the cyclic collector ---------


def serial_block_oracle(start: str, end: str, quantity: int) -> str | None:
    """``SerialBlock``'s check as it was written before ADR 0060, through ``serial_parts``."""
    try:
        lo_prefix, lo = records.serial_parts(start)
        hi_prefix, hi = records.serial_parts(end)
    except ValueError as exc:
        return str(exc)
    if lo_prefix != hi_prefix:
        return f"start {start!r} and end {end!r} differ in prefix"
    if hi < lo:
        return f"end {end!r} is before start {start!r}"
    if hi - lo + 1 != quantity:
        return f"quantity {quantity} is not the block's span {hi - lo + 1}"
    return None


SERIALS = st.text(alphabet="AB-019", min_size=1, max_size=6)


@FAST
@given(SERIALS, SERIALS, st.integers(0, 30))
def test_a_serial_blocks_check_says_what_serial_parts_says(
    start: str, end: str, quantity: int
) -> None:
    raw = msgspec.json.encode({"start": start, "end": end, "quantity": quantity})
    try:
        msgspec.json.decode(raw, type=records.SerialBlock)
        got = None
    except msgspec.ValidationError as exc:
        got = str(exc).removesuffix(" - at `$`")
    assert got == serial_block_oracle(start, end, quantity)


@FAST
@given(
    st.sampled_from(["JP-MN", "JP-ID"]),
    st.sampled_from(["JP", "MN", "ID", "TH"]),
    st.lists(st.integers(1, 5), max_size=3),
    st.integers(0, 12),
)
def test_the_author_and_block_total_checks_refuse_as_before(
    partnership: str, author: str, spans: list[int], amount: int
) -> None:
    """A record's author and its blocks' total, against the checks as written before."""
    blocks = [
        {"start": f"X{i}-{1:03d}", "end": f"X{i}-{n:03d}", "quantity": n}
        for i, n in enumerate(spans)
    ]
    obj = {
        "kind": "issuance", "partnership": partnership, "author": author,
        "created": "2016-06-01T07:00:00Z", "registry": author, "issuance_id": "I-1",
        "decision": {"project_id": "MN002",
                     "monitoring_period": {"start": "2015-01-01", "end": "2015-12-31"}},
        "issued_on": "2016-05-20", "amount": amount,
        "account": {"id": "A-1", "type": "government_holding"}, "blocks": blocks,
    }  # fmt: skip
    expected: tuple[str, str] | None = None
    if author not in ("JP", partnership[3:]):
        expected = (
            f"author {author} is neither JP nor the partner {partnership[3:]} "
            f"of partnership {partnership}",
            "record",
        )
    elif blocks and sum(spans) != amount:
        expected = (f"serial blocks hold {sum(spans)} credits, not the amount {amount}", "record")
    got = answer(decode_record, msgspec.json.encode(obj), "issuance")
    assert (None if isinstance(got, records.IssuanceRecord) else got) == expected


def struct_types(info: msgspec.inspect.Type) -> list[msgspec.inspect.StructType]:
    """Every Struct type a record's schema reaches; fails on a type that could hold a
    reference cycle (a list, dict, set or any object)."""
    acyclic = (
        msgspec.inspect.StrType, msgspec.inspect.IntType, msgspec.inspect.DateType,
        msgspec.inspect.DateTimeType, msgspec.inspect.NoneType, msgspec.inspect.LiteralType,
    )  # fmt: skip
    if isinstance(info, msgspec.inspect.Metadata):  # a described type: what it describes
        return struct_types(info.type)
    if isinstance(info, msgspec.inspect.StructType):
        return [info, *(t for f in info.fields for t in struct_types(f.type))]
    if isinstance(info, msgspec.inspect.UnionType):
        return [t for member in info.types for t in struct_types(member)]
    if isinstance(info, msgspec.inspect.VarTupleType):
        return struct_types(info.item_type)
    assert isinstance(info, acyclic), f"{info!r} could hold a reference cycle"
    return []


def test_records_hold_no_cycles_and_are_not_tracked_by_the_cyclic_collector() -> None:
    """Rule 6 of ``records``: every Struct a record reaches is ``gc=False``, which is safe
    because no field can hold a mutable container."""
    found = struct_types(msgspec.inspect.type_info(records.Record))
    assert {t.cls for t in found} >= set(RECORD_TYPES.values()) | {records.SerialBlock}
    assert [t.cls for t in found if t.cls.__struct_config__.gc] == []


@FAST
@given(gen.records())
def test_a_decoded_record_is_not_tracked(record: Any) -> None:
    import gc

    decoded = decode_record(encode_record(record), record.kind)
    assert decoded == record
    assert not gc.is_tracked(decoded)
