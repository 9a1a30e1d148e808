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
