"""The HTTP bodies: what the hub sends decodes, what it must not send is refused.

Bodies here are written with the standard library's ``json`` and ``base64``, not with
msgspec, so a test shows that the Structs read what any JSON peer writes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core import merkle
from jcm_sync.core.wire import (
    PROBLEM_TYPE_PREFIX,
    CheckpointView,
    ConsistencyProofView,
    EntriesPage,
    InclusionProofView,
    LogState,
    PartnershipState,
    Problem,
    PushRequest,
    PushResponse,
    encoder,
)

MAX_INDEX = 2**63 - 1
ENTRIES = [f"entry {i}".encode() for i in range(7)]
LEAVES = [merkle.leaf_hash(e) for e in ENTRIES]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body(value: dict[str, Any]) -> bytes:
    """A JSON body as a peer that is not msgspec would write it."""
    return json.dumps(value).encode()


def decode(data: bytes, type: type[msgspec.Struct]) -> Any:
    return msgspec.json.decode(data, type=type)


def valid_bodies() -> dict[type[msgspec.Struct], dict[str, Any]]:
    """One body of each kind, with real hashes and proofs of the 7-entry tree."""
    root = merkle.root(LEAVES)
    view = {"origin": "jcm-sync.example/JP-MN/MN", "size": 7, "root": b64(root)}
    log = {"node": "MN", "origin": view["origin"], "size": 7, "root": b64(root)}
    return {
        PushRequest: {"start": 3, "entries": [b64(e) for e in ENTRIES[3:]], "source_size": 7},
        CheckpointView: view,
        PushResponse: {"size": 7, "appended": 4, "checkpoint": view},
        EntriesPage: {"start": 0, "entries": [b64(e) for e in ENTRIES], "size": 7},
        LogState: log,
        PartnershipState: {"partnership": "JP-MN", "logs": [log]},
        ConsistencyProofView: {
            "old_size": 3,
            "new_size": 7,
            "proof": [b64(h) for h in merkle.consistency_proof(LEAVES, 3)],
        },
        InclusionProofView: {
            "index": 5,
            "size": 7,
            "leaf_hash": b64(LEAVES[5]),
            "proof": [b64(h) for h in merkle.inclusion_proof(LEAVES, 5)],
        },
        Problem: {"type": PROBLEM_TYPE_PREFIX + "gap", "title": "Gap", "status": 409},
    }


KINDS = list(valid_bodies())
IDS = [k.__name__ for k in KINDS]


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_each_body_decodes_and_reencodes_to_the_same_value(kind: type[msgspec.Struct]) -> None:
    """A body a peer writes decodes, and msgspec's encoding of it decodes to the same value."""
    value = decode(body(valid_bodies()[kind]), kind)
    assert isinstance(value, kind)
    assert decode(encoder.encode(value), kind) == value


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_unknown_fields_are_tolerated(kind: type[msgspec.Struct]) -> None:
    """A newer peer's extra fields, at the top and nested, are ignored, not refused."""
    plain = valid_bodies()[kind]
    extended = json.loads(json.dumps(plain))
    extended["added_in_v2"] = {"anything": [1, 2, 3]}
    nested = [extended["checkpoint"]] if kind is PushResponse else extended.get("logs", [])
    for inner in nested:
        inner["also_new"] = True
    assert decode(body(extended), kind) == decode(body(plain), kind)


def test_entries_travel_as_base64_of_their_exact_bytes() -> None:
    """Entries (any bytes, not only UTF-8) arrive byte for byte, and leave as standard base64."""
    raw = [b"", b"\x00\xff\xfe", "記録".encode(), bytes(range(256))]
    page = decode(body({"start": 0, "entries": [b64(e) for e in raw], "size": 4}), EntriesPage)
    assert page.entries == raw
    sent = json.loads(encoder.encode(PushRequest(start=0, entries=raw)))
    assert [base64.b64decode(e, validate=True) for e in sent["entries"]] == raw


def test_proofs_decoded_from_a_body_verify() -> None:
    """Hashes survive the trip: the decoded proofs verify against the tree's real roots."""
    bodies = valid_bodies()
    cons = decode(body(bodies[ConsistencyProofView]), ConsistencyProofView)
    assert merkle.verify_consistency(
        cons.old_size,
        cons.new_size,
        merkle.root(LEAVES[:3]),
        merkle.root(LEAVES),
        cons.proof,
    )
    inc = decode(body(bodies[InclusionProofView]), InclusionProofView)
    assert inc.leaf_hash == merkle.leaf_hash(ENTRIES[5])
    assert merkle.verify_inclusion(
        inc.leaf_hash, inc.index, inc.size, inc.proof, merkle.root(LEAVES)
    )
    head = decode(body(bodies[LogState]), LogState)
    assert head.root == merkle.root(LEAVES)


# (kind, path to an Index inside its body)
INDEX_FIELDS = [
    (PushRequest, ("start",)),
    (PushRequest, ("source_size",)),
    (CheckpointView, ("size",)),
    (PushResponse, ("size",)),
    (PushResponse, ("appended",)),
    (PushResponse, ("checkpoint", "size")),
    (EntriesPage, ("start",)),
    (EntriesPage, ("size",)),
    (LogState, ("size",)),
    (PartnershipState, ("logs", 0, "size")),
    (ConsistencyProofView, ("old_size",)),
    (ConsistencyProofView, ("new_size",)),
    (InclusionProofView, ("index",)),
    (InclusionProofView, ("size",)),
]
INDEX_IDS = [f"{k.__name__}.{'.'.join(map(str, p))}" for k, p in INDEX_FIELDS]


def with_value(kind: type[msgspec.Struct], path: tuple[str | int, ...], value: Any) -> bytes:
    """The valid body of ``kind`` with the field at ``path`` set to ``value``."""
    data = json.loads(json.dumps(valid_bodies()[kind]))
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body(data)


def json_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@pytest.mark.parametrize(("kind", "path"), INDEX_FIELDS, ids=INDEX_IDS)
def test_index_bounds(kind: type[msgspec.Struct], path: tuple[str | int, ...]) -> None:
    """Every size and index is refused below 0 and above 2^63-1, at its own JSON path."""
    for accepted in (0, MAX_INDEX):
        decoded = decode(with_value(kind, path, accepted), kind)
        field = decoded
        for step in path:
            field = field[step] if isinstance(step, int) else getattr(field, step)
        assert field == accepted
    for refused, why in ((-1, ">= 0"), (MAX_INDEX + 1, f"<= {MAX_INDEX}")):
        with pytest.raises(msgspec.ValidationError) as got:
            decode(with_value(kind, path, refused), kind)
        assert why in str(got.value)
        assert str(got.value).endswith(f"at `{json_path(path)}`")


@pytest.mark.parametrize(
    "value",
    [1.0, True, "1", None, [1]],
    ids=["float", "bool", "string", "null", "list"],
)
def test_an_index_must_be_a_json_integer(value: Any) -> None:
    """No coercion: 1.0, true and "1" are not sizes."""
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`.*at `\$\.size`"):
        decode(with_value(EntriesPage, ("size",), value), EntriesPage)


# (kind, path to a Hash inside its body)
HASH_FIELDS = [
    (CheckpointView, ("root",)),
    (PushResponse, ("checkpoint", "root")),
    (LogState, ("root",)),
    (PartnershipState, ("logs", 0, "root")),
    (ConsistencyProofView, ("proof", 1)),
    (InclusionProofView, ("leaf_hash",)),
    (InclusionProofView, ("proof", 0)),
]
HASH_IDS = [f"{k.__name__}.{'.'.join(map(str, p))}" for k, p in HASH_FIELDS]


@pytest.mark.parametrize(("kind", "path"), HASH_FIELDS, ids=HASH_IDS)
@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_hash_is_exactly_32_bytes(
    kind: type[msgspec.Struct], path: tuple[str | int, ...], length: int
) -> None:
    """A root, leaf hash or proof node of any other length than SHA-256's is refused."""
    with pytest.raises(msgspec.ValidationError) as got:
        decode(with_value(kind, path, b64(b"\x01" * length)), kind)
    assert "length" in str(got.value)
    assert str(got.value).endswith(f"at `{json_path(path)}`")


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (PushRequest, "start"),
        (PushRequest, "entries"),
        (CheckpointView, "root"),
        (PushResponse, "checkpoint"),
        (LogState, "node"),
        (PartnershipState, "logs"),
        (InclusionProofView, "leaf_hash"),
        (Problem, "status"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_a_missing_required_field_is_refused_by_name(
    kind: type[msgspec.Struct], field: str
) -> None:
    """A body without a required field is refused, naming the field."""
    data = dict(valid_bodies()[kind])
    del data[field]
    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{field}`"):
        decode(body(data), kind)


def test_entries_must_be_base64() -> None:
    """An entry that is not (padded, standard) base64 is refused at its index."""
    with pytest.raises(msgspec.ValidationError, match=r"base64.*at `\$\.entries\[1\]`"):
        decode(body({"start": 0, "entries": [b64(b"ok"), "not base64!"]}), PushRequest)


def test_push_request_optional_fields_default_to_absent() -> None:
    """A middle batch carries no checkpoint and no source size."""
    req = decode(body({"start": 0, "entries": []}), PushRequest)
    assert (req.checkpoint, req.source_size) == (None, None)


def test_views_omit_absent_optional_fields() -> None:
    """A checkpoint view or log head without a note or checkpoint does not send a null."""
    root = merkle.root(LEAVES)
    view = json.loads(encoder.encode(CheckpointView(origin="o", size=7, root=root)))
    assert "note" not in view
    assert base64.b64decode(view["root"]) == root
    head = json.loads(encoder.encode(LogState(node="MN", origin="o", size=7, root=root)))
    assert "checkpoint" not in head


def test_bodies_are_frozen() -> None:
    """A decoded body cannot be changed after the fact (it may be shared)."""
    req = decode(body({"start": 0, "entries": []}), PushRequest)
    with pytest.raises(AttributeError):
        req.start = 5


@given(
    start=st.integers(0, MAX_INDEX),
    entries=st.lists(st.binary(max_size=64), max_size=8),
    checkpoint=st.none() | st.binary(max_size=200),
    source_size=st.none() | st.integers(0, MAX_INDEX),
)
def test_push_request_round_trip(
    start: int, entries: list[bytes], checkpoint: bytes | None, source_size: int | None
) -> None:
    """Any valid push request survives encode then decode unchanged."""
    req = PushRequest(start=start, entries=entries, checkpoint=checkpoint, source_size=source_size)
    assert decode(encoder.encode(req), PushRequest) == req


# --- problem details (RFC 9457) ---------------------------------------------------


def test_problem_round_trip_with_every_member() -> None:
    """Every member the hub sets comes back, including the size a gap reports."""
    problem = Problem(
        type=PROBLEM_TYPE_PREFIX + "gap",
        title="Gap",
        status=409,
        detail="push starts at 9 but the hub holds 7",
        instance="/v1/partnerships/JP-MN/logs/MN/entries",
        where="start",
        code="gap",
        size=7,
        request_id="0123456789abcdef",
    )
    assert decode(encoder.encode(problem), Problem) == problem


def test_problem_omits_empty_members() -> None:
    """Empty members are left out of the body rather than sent as "" or null."""
    sent = json.loads(encoder.encode(Problem(type="about:blank", title="Not Found", status=404)))
    assert sent == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_a_foreign_problem_decodes_with_defaults() -> None:
    """A proxy's RFC 9457 body with its own extension members still decodes."""
    foreign = {
        "type": "https://example.net/probs/out-of-credit",
        "title": "You do not have enough credit.",
        "status": 403,
        "detail": "Your current balance is 30, but that costs 50.",
        "balance": 30,
        "accounts": ["/account/12345"],
    }
    problem = decode(body(foreign), Problem)
    assert (problem.type, problem.status, problem.detail) == (
        foreign["type"],
        foreign["status"],
        foreign["detail"],
    )
    assert (problem.code, problem.where, problem.size, problem.request_id) == ("", "", None, "")


@pytest.mark.parametrize(
    ("member", "value"),
    [("status", "409"), ("size", -1.5), ("title", None)],
    ids=["status-string", "size-float", "title-null"],
)
def test_a_problem_with_wrong_member_types_is_refused(member: str, value: Any) -> None:
    """A problem body whose members have the wrong JSON types does not decode."""
    data = dict(valid_bodies()[Problem])
    data[member] = value
    with pytest.raises(msgspec.ValidationError, match=rf"at `\$\.{member}`"):
        decode(body(data), Problem)


def test_a_query_integer_is_ascii_digits_up_to_the_maximum() -> None:
    """Absent: the default; ASCII digits up to the maximum: the number; anything else,
    including Unicode digits int() would refuse or accept, a BadParameterError naming it."""
    from jcm_sync.core.wire import query_int
    from jcm_sync.errors import BadParameterError

    assert query_int(None, "start", 7, 100) == 7
    assert query_int("42", "start", None, 100) == 42
    for bad in ("-1", "²", "٣", "1e3", "101", "", "0x1"):
        with pytest.raises(BadParameterError) as err:
            query_int(bad, "start", None, 100)
        assert err.value.where == "start"
