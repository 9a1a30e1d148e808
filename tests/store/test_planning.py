"""The pure decisions of ``store/planning.py``, called directly with values, no store.

Expected roots and nodes come from the RFC 9162 recursion of ``tests/core/merkle_reference``
and frontier coordinates from the binary digits of the size, computed here, so the module's
shortcuts (``subtrees.Frontier``) are checked, not repeated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import checkpoint, merkle, note, subtrees
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import Verification
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    ConflictError,
    CorruptStoreError,
    ForkError,
    RollbackError,
    UnknownKeyError,
)
from jcm_sync.store.planning import (
    AppendPlan,
    AppendState,
    PreparedEntry,
    check_checkpoint_row,
    check_entries,
    check_entry,
    check_hash,
    check_head,
    check_index,
    check_log,
    check_nodes,
    check_record_id,
    check_trust_chain,
    duplicate_error,
    frontier_from,
    overlap,
    parse_checkpoint_note,
    plan_append,
    plan_trust_marks,
    prepare_batch,
    rows_past_head_error,
    state_reads,
    trust_marks_from,
)
from jcm_sync.store.values import MAX_INDEX, LogRef, TrustMark
from tests import builders
from tests.core.merkle_reference import ref_mth
from tests.store import World

LOG = LogRef("JP-MN", "MN", "jcm-sync.example/JP-MN/MN")
AT = datetime(2016, 6, 1, 9, 0, tzinfo=UTC)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def entry_bytes(i: int) -> bytes:
    return f"entry {i}".encode()


def prepared(i: int) -> PreparedEntry:
    """A batch item for entry ``i``, its hashes computed here from the RFC 9162 definitions."""
    raw = entry_bytes(i)
    rid = hashlib.sha256(raw).hexdigest()
    return PreparedEntry(raw, rid, sha(b"\x00" + raw), "issuance", f"MN/{i}", "MN", None, "JP-MN")


def frontier_coords(size: int) -> list[tuple[int, int]]:
    """The maximal perfect subtrees of [0, size), left to right: one per one-bit of size."""
    out: list[tuple[int, int]] = []
    start = 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def node_rows(n: int) -> dict[tuple[int, int], bytes]:
    """Every perfect-subtree node of the tree of entries 0..n-1, by the reference."""
    entries = [entry_bytes(i) for i in range(n)]
    return {
        (level, index): ref_mth(entries[index << level : (index + 1) << level])
        for level in range(n.bit_length())
        for index in range(n >> level)
    }


def state_of(size: int, held: Mapping[int, str] | None = None) -> AppendState:
    """What an adapter holding entries 0..size-1 reads: head, frontier rows, held ids."""
    rows = node_rows(size)
    root = ref_mth([entry_bytes(i) for i in range(size)])
    frontier = {c: rows[c] for c in frontier_coords(size)}
    existing = dict(held) if held is not None else {i: prepared(i).record_id for i in range(size)}
    return AppendState(size, root, frontier, existing)


# --- input checks -----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, MAX_INDEX], ids=["zero", "one", "max"])
def test_check_index_accepts_naturals_within_63_bits(value: int) -> None:
    """0 .. 2**63-1 pass through unchanged."""
    assert check_index(value, "index") == value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (-1, "outside"),
        (MAX_INDEX + 1, "outside"),
        (True, "not bool"),
        ("3", "not str"),
        (3.0, "not float"),
        (None, "not NoneType"),
    ],
    ids=["negative", "past-max", "bool", "str", "float", "none"],
)
def test_check_index_refusals(value: object, match: str) -> None:
    """Anything else is BadDataError naming the argument and the place."""
    with pytest.raises(BadDataError, match=match) as info:
        check_index(value, "start index", where="here")
    assert info.value.message.startswith("start index")
    assert info.value.where == "here"


def test_check_log_accepts_a_log_ref() -> None:
    """A well-formed LogRef is returned as is."""
    assert check_log(LOG) is LOG


@pytest.mark.parametrize(
    ("log", "match"),
    [
        (("JP-MN", "MN", "o"), "expected a LogRef, not tuple"),
        (LogRef("", "MN", "o"), "log partnership must be"),
        (LogRef("JP-MN", "", "o"), "log node must be"),
        (LogRef("JP-MN", "MN", "o" * 256), "log origin must be"),
        (LogRef("JP-MN", 7, "o"), "log node must be"),  # type: ignore[arg-type]
    ],
    ids=["tuple", "empty-partnership", "empty-node", "long-origin", "int-node"],
)
def test_check_log_refusals(log: object, match: str) -> None:
    """A log must be a LogRef of non-empty strings of at most 255 characters."""
    with pytest.raises(BadDataError, match=match):
        check_log(log)


def test_check_log_accepts_255_characters() -> None:
    """The bound is inclusive."""
    log = LogRef("P" * 255, "N" * 255, "o" * 255)
    assert check_log(log) is log


def test_check_record_id_accepts_lowercase_hex() -> None:
    """A SHA-256 hex digest is a record id."""
    rid = hashlib.sha256(b"x").hexdigest()
    assert check_record_id(rid) == rid


@pytest.mark.parametrize(
    "value",
    ["AB" * 32, "ab" * 31, "ab" * 33, "g" * 64, " " + "a" * 63, 1234, None],
    ids=["upper", "short", "long", "not-hex", "space", "int", "none"],
)
def test_check_record_id_refusals(value: object) -> None:
    """Anything but 64 lowercase hex digits is BadDataError, naming what was asked for."""
    with pytest.raises(BadDataError, match="endorsed id must be 64 lowercase hex digits"):
        check_record_id(value, "endorsed id")


# --- prepare_batch ------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_prepare_batch_fills_every_field(world: World) -> None:
    """Each prepared entry carries its bytes, SHA-256 ids and the record's index fields."""
    v1 = world.sign(world.issuance("JP", 1))
    v1_id = hashlib.sha256(v1).hexdigest()
    v2 = world.sign(world.issuance("JP", 1, supersedes=v1_id))
    batch = prepare_batch(world.jp_log, [v1, v2], world.verify)
    assert [p.envelope for p in batch] == [v1, v2]
    assert [p.record_id for p in batch] == [v1_id, hashlib.sha256(v2).hexdigest()]
    assert [p.leaf_hash for p in batch] == [sha(b"\x00" + v1), sha(b"\x00" + v2)]
    assert {(p.kind, p.key, p.author, p.partnership) for p in batch} == {
        ("issuance", "JP/JP-000001", "JP", "JP-ID")
    }
    assert [p.supersedes for p in batch] == [None, v1_id]


def test_prepare_batch_of_nothing_is_empty(world: World) -> None:
    """An empty batch verifies nothing and prepares nothing."""
    assert prepare_batch(world.jp_log, [], world.verify) == []


@pytest.mark.parametrize(
    ("envelopes", "match", "where"),
    [
        (b"{}", "a sequence of envelope byte strings", None),
        ("{}", "a sequence of envelope byte strings", None),
        (bytearray(b"{}"), "a sequence of envelope byte strings", None),
        ([b"ok", "text"], "must be bytes, not str", 1),
        ([b"ok", bytearray(b"x")], "must be bytes, not bytearray", 1),
        ([b""], "cannot be empty", 0),
    ],
    ids=["bytes", "str", "bytearray", "str-item", "bytearray-item", "empty-item"],
)
def test_prepare_batch_refuses_bad_envelope_values(
    world: World, envelopes: object, match: str, where: int | None
) -> None:
    """Envelopes must be a sequence of non-empty bytes; the bad item is named."""
    good = world.envelopes("JP", 1)[0]
    if isinstance(envelopes, list):
        envelopes = [good if e == b"ok" else e for e in envelopes]
    with pytest.raises(BadDataError, match=match) as info:
        prepare_batch(world.jp_log, envelopes, world.verify)  # type: ignore[arg-type]
    expected = None if where is None else f"{world.jp_log.origin} batch item {where}"
    assert info.value.where == expected


def test_prepare_batch_passes_on_the_verifiers_refusal(world: World) -> None:
    """An envelope signed by a key the trust root does not know is refused by ``verify``."""
    forged = builders.signed(world.issuance("JP", 77), PrivateKey.generate())
    with pytest.raises(UnknownKeyError):
        prepare_batch(world.jp_log, [*world.envelopes("JP", 2), forged], world.verify)


@pytest.mark.parametrize("lie", ["other-envelope", "other-id"])
def test_prepare_batch_refuses_a_verifier_that_names_another_record(world: World, lie: str) -> None:
    """A verification of other bytes, or one naming another record id, is refused."""
    envs = world.envelopes("JP", 2)

    def lying(raw: bytes) -> Verification:
        if lie == "other-envelope":
            return world.verify(envs[1] if raw == envs[0] else envs[0])
        return dataclasses.replace(world.verify(raw), record_id="ab" * 32, raw=b"")

    with pytest.raises(BadDataError, match="the verifier returned record") as info:
        prepare_batch(world.jp_log, envs, lying)
    assert info.value.where == f"{world.jp_log.origin} batch item 0"


def test_prepare_batch_hashes_what_a_verification_prepared_ahead_does_not_carry(
    world: World,
) -> None:
    """A verification without the bytes, but naming their record id, is accepted and the
    entry's ids are those of the bytes appended."""
    env = world.envelopes("JP", 1)[0]

    def ahead(raw: bytes) -> Verification:
        return dataclasses.replace(world.verify(raw), raw=b"")

    (item,) = prepare_batch(world.jp_log, [env], ahead)
    assert (item.record_id, item.leaf_hash) == (
        hashlib.sha256(env).hexdigest(),
        sha(b"\x00" + env),
    )


@pytest.mark.parametrize(
    ("log", "node", "good"),
    [
        (LogRef("JP-ID", "JP", "o/JP-ID/JP"), "ID", 1),
        (LogRef("JP-MN", "JP", "o/JP-MN/JP"), "JP", 0),
    ],
    ids=["other-author", "other-partnership"],
)
def test_prepare_batch_refuses_records_of_another_log(
    world: World, log: LogRef, node: str, good: int
) -> None:
    """A well-signed record of another author or partnership is an AuthorityError naming
    the first item out of place (after ``good`` that belong)."""
    batch = [*world.envelopes("JP", good), world.envelopes(node, 1, 5)[0]]
    with pytest.raises(AuthorityError, match="does not belong in the log of JP of") as info:
        prepare_batch(log, batch, world.verify)
    assert info.value.where == f"{log.origin} batch item {good}"


# --- plan_append --------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 64), st.data())
def test_plan_append_matches_rfc_9162(size: int, data: st.DataObject) -> None:
    """For any held size, start and batch: the root, the size and exactly the perfect nodes
    the new entries complete are those of the RFC 9162 tree of all entries."""
    start = data.draw(st.one_of(st.none(), st.integers(0, size)), label="start")
    begin = size if start is None else start
    count = data.draw(st.integers(0, 40), label="count")
    batch = [prepared(i) for i in range(begin, begin + count)]
    plan = plan_append(LOG, start, batch, state_of(size))
    total = max(size, begin + count)
    everything = node_rows(total)
    expected = {c: h for c, h in everything.items() if (c[1] + 1) << c[0] > size}
    assert {(n.level, n.index): n.hash for n in plan.nodes} == expected
    assert len(plan.nodes) == len(expected)  # each node once
    assert plan.root == ref_mth([entry_bytes(i) for i in range(total)])
    assert (plan.start, plan.first, plan.size) == (begin, size, total)
    assert plan.present == min(count, size - begin)
    assert list(plan.new) == batch[plan.present :]


def mth(leaf_hashes: list[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash of leaf hashes, by its recursive definition."""
    n = len(leaf_hashes)
    if n <= 1:
        return leaf_hashes[0] if n else hashlib.sha256(b"").digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70), st.integers(0, 40))
def test_plan_append_creates_every_new_perfect_node(size: int, extra: int) -> None:
    """An append of ``extra`` leaves to ``size`` plans each perfect node it completes, once."""
    log = LogRef("JP-MN", "MN", "jcm-sync.example/JP-MN/MN")
    hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(size + extra)]
    rows = {
        coord: mth(hashes[lo:hi])
        for coord, (lo, hi) in zip(
            subtrees.Frontier.coordinates(size), subtrees.perfect_subtrees(size), strict=True
        )
    }
    batch = [PreparedEntry(h, h.hex(), h, "issuance", "k", "MN", None, "JP-MN") for h in hashes]
    state = AppendState(size, mth(hashes[:size]), rows, {})
    plan = plan_append(log, None, batch[size:], state)
    total = size + extra
    expected = [
        subtrees.Subtree(level, index, mth(hashes[index << level : (index + 1) << level]))
        for level in range(total.bit_length())
        for index in range(total >> level)
        if (index + 1) << level > size
    ]
    by_place = operator.attrgetter("level", "index")
    assert sorted(plan.nodes, key=by_place) == sorted(expected, key=by_place)
    assert (plan.first, plan.size, plan.root) == (size, total, mth(hashes))


def test_plan_append_of_held_entries_plans_nothing() -> None:
    """Re-sending held entries is a no-op: no entries, no nodes, the same head."""
    state = state_of(9)
    plan = plan_append(LOG, 3, [prepared(i) for i in range(3, 9)], state)
    assert (plan.present, list(plan.new), plan.nodes) == (6, [], [])
    assert (plan.size, plan.root) == (9, state.root)


@pytest.mark.parametrize(("size", "start"), [(0, 1), (5, 6), (5, 99)], ids=["empty", "one", "far"])
def test_plan_append_refuses_a_gap(size: int, start: int) -> None:
    """A start past the size is a ConflictError (not a fork) naming the next index."""
    with pytest.raises(ConflictError, match=f"index {start} would leave a gap") as info:
        plan_append(LOG, start, [prepared(start)], state_of(size))
    assert not isinstance(info.value, ForkError)
    assert f"the next index is {size}" in info.value.message
    assert info.value.where == LOG.origin


@pytest.mark.parametrize("at", [0, 2, 4], ids=["first", "middle", "last-held"])
def test_plan_append_refuses_another_record_at_a_held_index(at: int) -> None:
    """Different bytes at a filled index are a ForkError naming the index and both ids."""
    batch = [prepared(i) for i in range(0, 7)]
    batch[at] = prepared(1000)
    with pytest.raises(ForkError, match=f"index {at} already holds record") as info:
        plan_append(LOG, 0, batch, state_of(5))
    assert info.value.where == f"{LOG.origin} index {at}"
    assert prepared(at).record_id[:16] in info.value.message
    assert prepared(1000).record_id[:16] in info.value.message


def test_plan_append_refuses_a_record_twice_in_one_batch() -> None:
    """A record appears once in a log: the batch naming it twice is refused by index."""
    batch = [prepared(3), prepared(4), prepared(3)]
    with pytest.raises(ConflictError, match="appears twice in the batch, at indexes 3 and 5"):
        plan_append(LOG, None, batch, state_of(3))


def test_plan_append_refuses_a_batch_past_the_largest_index() -> None:
    """A batch that would grow the log past 2**63-1 is refused before any tree work."""
    state = AppendState(MAX_INDEX, b"\x00" * 32, {}, {})
    with pytest.raises(BadDataError, match="past index"):
        plan_append(LOG, None, [prepared(0)], state)


def test_plan_append_reports_a_missing_held_entry_as_corrupt() -> None:
    """An index below the size with no stored id is a corrupt store, named by index."""
    held = {i: prepared(i).record_id for i in range(6) if i != 4}
    with pytest.raises(CorruptStoreError, match="entry 4 is missing though the log size is 6"):
        plan_append(LOG, 2, [prepared(i) for i in range(2, 8)], state_of(6, held))


def test_plan_append_checks_the_head_against_the_frontier() -> None:
    """A head root that is not the root of the stored frontier nodes is a corrupt store."""
    state = dataclasses.replace(state_of(6), root=sha(b"not the root"))
    with pytest.raises(CorruptStoreError, match="not the root of the stored tree nodes") as info:
        plan_append(LOG, None, [prepared(6)], state)
    assert info.value.where == f"{LOG.origin} head"


def test_plan_append_takes_a_known_frontier_of_its_size_without_the_nodes() -> None:
    """An adapter's ``known`` frontier of the head's size stands for the stored nodes
    (none are read, none checked) and plans the same rows; one of another size is not
    taken: the stored nodes are, and checked."""
    state = state_of(6)
    batch = [prepared(i) for i in range(6, 9)]
    known = frontier_from(LOG, 6, state.frontier)
    by_known = dataclasses.replace(state, frontier={}, known=known)
    assert plan_append(LOG, None, batch, by_known) == plan_append(LOG, None, batch, state)
    other = frontier_from(LOG, 5, state_of(5).frontier)
    with pytest.raises(CorruptStoreError, match="tree node is missing"):
        plan_append(LOG, None, batch, dataclasses.replace(by_known, known=other))
    with_nodes = dataclasses.replace(state, known=other)
    assert plan_append(LOG, None, batch, with_nodes) == plan_append(LOG, None, batch, state)


@pytest.mark.parametrize(
    ("size", "start", "count", "lo", "hi"),
    [(0, None, 3, 0, 0), (5, None, 3, 5, 5), (5, 2, 2, 2, 4), (5, 2, 10, 2, 5), (5, 9, 1, 5, 5)],
)
def test_overlap_is_the_held_part_of_the_batch(
    size: int, start: int | None, count: int, lo: int, hi: int
) -> None:
    """The indexes a batch shares with the log, as ``state_reads`` names them."""
    assert overlap(size, start, count) == (lo, hi) == state_reads(size, start, count)[1]


@pytest.mark.parametrize(
    ("damage", "match"),
    [(None, "tree node is missing"), (b"\x00" * 31, "31 bytes, not 32")],
    ids=["missing", "short"],
)
def test_plan_append_refuses_a_bad_frontier_node(damage: bytes | None, match: str) -> None:
    """Each frontier node read must be present and 32 bytes; the coordinates are named."""
    state = state_of(6)  # frontier (2, 0) and (1, 2)
    frontier = dict(state.frontier)
    if damage is None:
        del frontier[(1, 2)]
    else:
        frontier[(1, 2)] = damage
    with pytest.raises(CorruptStoreError, match=match) as info:
        plan_append(LOG, None, [prepared(6)], dataclasses.replace(state, frontier=frontier))
    assert info.value.where == f"{LOG.origin} node (level 1, index 2)"


@pytest.mark.parametrize(
    ("size", "start", "count", "lo", "hi"),
    [
        (0, None, 3, 0, 0),
        (5, None, 3, 5, 5),
        (5, 2, 2, 2, 4),
        (5, 2, 10, 2, 5),
        (5, 9, 1, 5, 5),
    ],
    ids=["empty", "at-end", "inside", "overlapping-end", "gap"],
)
def test_state_reads_names_the_frontier_and_the_overlap(
    size: int, start: int | None, count: int, lo: int, hi: int
) -> None:
    """An adapter reads the frontier of the size and the held ids the batch overlaps."""
    coords, overlap = state_reads(size, start, count)
    assert coords == frontier_coords(size)
    assert overlap == (lo, hi)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**40))
def test_state_reads_frontier_is_one_node_per_bit(size: int) -> None:
    """The frontier coordinates are the binary digits of the size, highest first."""
    assert state_reads(size, None, 0)[0] == frontier_coords(size)


def test_duplicate_error_names_the_lowest_index() -> None:
    """The refusal names the earliest place the log already holds one of the records."""
    err = duplicate_error(LOG, {"cd" * 32: 7, "ab" * 32: 9, "ef" * 32: 2})
    assert isinstance(err, ConflictError)
    assert not isinstance(err, ForkError)
    assert err.message.startswith(f"record {'ef' * 8} is already in the log at index 2")
    assert err.where == LOG.origin


def test_rows_past_head_error_names_the_stored_size() -> None:
    """Rows found where the head says the log ends are a corrupt store."""
    plan = AppendPlan(start=4, present=0, first=4, new=[], nodes=[], size=4, root=b"")
    err = rows_past_head_error(LOG, plan, "UNIQUE constraint failed")
    assert isinstance(err, CorruptStoreError)
    assert err.message == "rows past the stored size 4 already exist (UNIQUE constraint failed)"
    assert err.where == f"{LOG.origin} head"


# --- trust marks --------------------------------------------------------------------


def mark(version: int, doc: str = "a", partnership: str = "JP-ID") -> TrustMark:
    return TrustMark(partnership, version, hashlib.sha256(f"{doc}{version}".encode()).hexdigest())


def test_check_trust_chain_returns_the_chain_as_a_list() -> None:
    """A well-formed chain comes back as a list, oldest first."""
    assert check_trust_chain("JP-ID", (mark(1), mark(3))) == [mark(1), mark(3)]


@pytest.mark.parametrize(
    ("chain", "match"),
    [
        ([], "no trust root offered for JP-ID"),
        (mark(1), "no trust root offered for JP-ID"),
        ([mark(1), mark(1, partnership="JP-MN")], "item 1 is not a mark of JP-ID"),
        ([mark(1), ("JP-ID", 2, "ab" * 32)], "item 1 is not a mark of JP-ID"),
        ([mark(2), mark(1)], "versions must rise"),
        ([mark(2), mark(2, "b")], "versions must rise"),
        ([TrustMark("JP-ID", 1, "AB" * 32)], "64 lowercase hex"),
        ([TrustMark("JP-ID", 1, "ab" * 31)], "64 lowercase hex"),
        ([TrustMark("JP-ID", -1, "ab" * 32)], "trust root version -1 is outside"),
    ],
    ids=[
        "empty",
        "bare-mark",
        "other-partnership",
        "not-a-mark",
        "falling",
        "repeated",
        "upper-digest",
        "short-digest",
        "negative",
    ],
)
def test_check_trust_chain_refusals(chain: object, match: str) -> None:
    """A malformed offered chain is BadDataError, before any mark is judged."""
    with pytest.raises(BadDataError, match=match):
        check_trust_chain("JP-ID", chain)  # type: ignore[arg-type]


def test_plan_trust_marks_takes_the_newest_of_a_new_partnership() -> None:
    """With nothing held, each chain's newest mark is written, in partnership order."""
    offered = {"JP-MN": [mark(1, partnership="JP-MN")], "JP-ID": [mark(1), mark(2)]}
    assert plan_trust_marks({}, offered) == [mark(2), mark(1, partnership="JP-MN")]


def test_plan_trust_marks_rises_and_keeps() -> None:
    """A higher newest rises; the held root offered again writes nothing."""
    held = {"JP-ID": mark(2)}
    assert plan_trust_marks(held, {"JP-ID": [mark(2), mark(3)]}) == [mark(3)]
    assert plan_trust_marks(held, {"JP-ID": [mark(1), mark(2)]}) == []
    assert plan_trust_marks(held, {"JP-ID": [mark(2)]}) == []


def test_plan_trust_marks_refuses_an_older_root_naming_both() -> None:
    """A chain ending below the held version is a rollback naming both versions and digests."""
    with pytest.raises(RollbackError) as info:
        plan_trust_marks({"JP-ID": mark(3)}, {"JP-ID": [mark(1), mark(2)]})
    text = info.value.message
    assert "rollback refused for JP-ID" in text
    assert f"version 3 (sha256 {mark(3).digest[:12]})" in text
    assert f"version 2 (sha256 {mark(2).digest[:12]})" in text


def test_plan_trust_marks_refuses_another_document_at_the_held_version() -> None:
    """Another document at the held version is a rollback, even inside a rising chain."""
    held = {"JP-ID": mark(2)}
    with pytest.raises(RollbackError, match="offered version 2") as alone:
        plan_trust_marks(held, {"JP-ID": [mark(2, "forged")]})
    assert mark(2, "forged").digest[:12] in alone.value.message
    assert mark(2).digest[:12] in alone.value.message
    with pytest.raises(RollbackError, match="in a chain up to version 3"):
        plan_trust_marks(held, {"JP-ID": [mark(2, "forged"), mark(3)]})


def test_plan_trust_marks_refuses_all_when_one_partnership_falls() -> None:
    """One refused chain refuses the whole offer: no list of marks to write comes back."""
    held = {"JP-ID": mark(2)}
    offered = {"JP-MN": [mark(5, partnership="JP-MN")], "JP-ID": [mark(1)]}
    with pytest.raises(RollbackError, match="JP-ID"):
        plan_trust_marks(held, offered)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), st.tuples(st.integers(1, 6), st.sampled_from("ab"))),
    st.lists(st.tuples(st.integers(1, 6), st.sampled_from("ab")), min_size=1, max_size=4),
)
def test_plan_trust_marks_never_lowers(
    held: tuple[int, str] | None, offer: list[tuple[int, str]]
) -> None:
    """For any held mark and rising chain: refused exactly when the chain ends lower or
    holds another document at the held version; otherwise only a higher mark is written."""
    versions = sorted({v for v, _ in offer})
    docs = dict(offer)
    chain = [mark(v, docs[v]) for v in versions]
    held_marks = {} if held is None else {"JP-ID": mark(*held)}
    refused = held is not None and (
        versions[-1] < held[0] or (held[0] in docs and docs[held[0]] != held[1])
    )
    if refused:
        with pytest.raises(RollbackError):
            plan_trust_marks(held_marks, {"JP-ID": chain})
        return
    rising = plan_trust_marks(held_marks, {"JP-ID": chain})
    if held is None or versions[-1] > held[0]:
        assert rising == [chain[-1]]
    else:
        assert rising == []


# --- row checks -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview], ids=lambda k: k.__name__)
def test_check_hash_returns_bytes(kind: type) -> None:
    """A 32-byte value, as any driver hands it out, comes back as bytes."""
    value = sha(b"x")
    got = check_hash(kind(value), "somewhere")
    assert type(got) is bytes
    assert got == value


@pytest.mark.parametrize(
    ("value", "got"),
    [(b"", "0 bytes"), (b"\x00" * 33, "33 bytes"), ("ab" * 32, "str"), (None, "NoneType")],
    ids=["empty", "long", "hex-text", "none"],
)
def test_check_hash_refusals(value: object, got: str) -> None:
    """Anything else is a corrupt row, saying what was found and where."""
    with pytest.raises(CorruptStoreError) as info:
        check_hash(value, "log node (level 0, index 3)", "node hash")
    assert info.value.message == f"stored node hash is {got}, not 32 bytes"
    assert info.value.where == "log node (level 0, index 3)"


def test_check_head_builds_a_tree_head() -> None:
    """A sound head row becomes a TreeHead."""
    head = check_head(LOG, 5, memoryview(sha(b"r")))
    assert (head.size, head.root) == (5, sha(b"r"))


@pytest.mark.parametrize(
    ("size", "root", "match"),
    [
        (None, sha(b"r"), "stored size None is not a tree size"),
        (-1, sha(b"r"), "stored size -1"),
        (True, sha(b"r"), "stored size True"),
        ("5", sha(b"r"), "stored size '5'"),
        (MAX_INDEX + 1, sha(b"r"), "is not a tree size"),
        (5, b"\x00" * 5, "root is 5 bytes"),
        (5, None, "root is NoneType"),
    ],
    ids=["none", "negative", "bool", "text", "past-max", "short-root", "no-root"],
)
def test_check_head_refusals(size: object, root: object, match: str) -> None:
    """A head row that is not a size and a 32-byte root is a corrupt store."""
    with pytest.raises(CorruptStoreError, match=match) as info:
        check_head(LOG, size, root)
    assert info.value.where == f"{LOG.origin} head"


def test_check_nodes_returns_exactly_the_wanted_nodes() -> None:
    """Rows not asked for are dropped; the wanted ones come back as bytes."""
    rows: dict[tuple[int, int], object] = {(0, 0): sha(b"a"), (0, 1): bytearray(sha(b"b"))}
    assert check_nodes(LOG, [(0, 1)], rows) == {(0, 1): sha(b"b")}
    assert check_nodes(LOG, [], rows) == {}


def test_check_nodes_names_the_missing_node() -> None:
    """A wanted node with no row is a corrupt store, at its coordinates."""
    with pytest.raises(CorruptStoreError, match="tree node is missing") as info:
        check_nodes(LOG, [(0, 0), (3, 1)], {(0, 0): sha(b"a")})
    assert info.value.where == f"{LOG.origin} node (level 3, index 1)"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 64), st.integers(0, 64))
def test_frontier_from_stored_nodes_gives_every_root(size: int, more: int) -> None:
    """From the stored nodes of a larger tree, the frontier of any size has the RFC root."""
    rows = node_rows(size + more)
    frontier = frontier_from(LOG, size, rows)
    assert frontier.size == size
    assert frontier.root() == ref_mth([entry_bytes(i) for i in range(size)])


def test_frontier_from_refuses_a_missing_node() -> None:
    """The frontier needs each of its nodes; a missing one is named."""
    rows = node_rows(6)
    del rows[(2, 0)]
    with pytest.raises(CorruptStoreError, match="missing") as info:
        frontier_from(LOG, 6, rows)
    assert info.value.where == f"{LOG.origin} node (level 2, index 0)"


def entry_row(i: int) -> tuple[int, object, object, object]:
    raw = entry_bytes(i)
    return (i, hashlib.sha256(raw).hexdigest(), raw, AT)


def test_check_entry_builds_an_entry() -> None:
    """A sound row becomes an Entry, whichever buffer type the driver used."""
    _, rid, raw, at = entry_row(3)
    got = check_entry("o", 3, rid, memoryview(raw), at)  # type: ignore[arg-type]
    assert (got.index, got.record_id, got.envelope, got.appended_at) == (3, rid, raw, AT)
    assert type(got.envelope) is bytes


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("envelope", b"", "empty or not bytes"),
        ("envelope", "text", "empty or not bytes"),
        ("envelope", b"entry 3 altered", "hashes to .*, not to its record id"),
        ("record_id", None, "record id is not text"),
        ("appended_at", "2016-06-01", "append time is not a timestamp"),
    ],
    ids=["empty", "text", "altered", "no-id", "text-time"],
)
def test_check_entry_refusals(field: str, value: object, match: str) -> None:
    """A row whose bytes, id or time do not check out is a corrupt store, at its index."""
    _, rid, raw, at = entry_row(3)
    row = {"record_id": rid, "envelope": raw, "appended_at": at} | {field: value}
    with pytest.raises(CorruptStoreError, match=match) as info:
        check_entry("o", 3, **row)
    assert info.value.where == "o entry 3"


def test_check_entries_accepts_a_contiguous_range() -> None:
    """Rows start..end-1 in order become entries; an empty range is empty."""
    got = check_entries(LOG, 2, 5, [entry_row(i) for i in range(2, 5)])
    assert [e.index for e in got] == [2, 3, 4]
    assert check_entries(LOG, 4, 4, []) == []


@pytest.mark.parametrize(
    ("indexes", "missing"),
    [([2, 4], 3), ([3, 4], 2), ([2, 3], 4), ([], 2)],
    ids=["inside", "first", "last", "all"],
)
def test_check_entries_names_the_first_missing_index(indexes: list[int], missing: int) -> None:
    """A range read that skips an index is a corrupt store at that index."""
    with pytest.raises(CorruptStoreError, match="missing inside the log") as info:
        check_entries(LOG, 2, 5, [entry_row(i) for i in indexes])
    assert info.value.where == f"{LOG.origin} entry {missing}"


def test_check_checkpoint_row() -> None:
    """A sound checkpoint row becomes a StoredCheckpoint; a malformed one is corrupt."""
    got = check_checkpoint_row(LOG, 4, sha(b"r"), memoryview(b"note"))
    assert (got.size, got.root, got.note) == (4, sha(b"r"), b"note")
    with pytest.raises(CorruptStoreError, match="malformed") as info:
        check_checkpoint_row(LOG, 4, sha(b"r"), "note")
    assert info.value.where == f"{LOG.origin} checkpoint 4"
    with pytest.raises(CorruptStoreError, match="malformed"):
        check_checkpoint_row(LOG, "4", sha(b"r"), b"note")
    with pytest.raises(CorruptStoreError, match="checkpoint root is 3 bytes"):
        check_checkpoint_row(LOG, 4, b"abc", b"note")


# --- checkpoint notes -------------------------------------------------------------------


def test_parse_checkpoint_note_reads_a_signed_note() -> None:
    """A signed checkpoint note is parsed without checking its signature."""
    cp = checkpoint.Checkpoint(LOG.origin, 7, sha(b"root"))
    signed = checkpoint.sign_checkpoint(cp, PrivateKey.generate().key)
    assert parse_checkpoint_note(signed, where="w") == cp


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("text", "must be bytes, not str"),
        (b"", "not a signed checkpoint"),
        (b"origin\n1\n", "not a signed checkpoint"),
    ],
    ids=["str", "empty", "unsigned"],
)
def test_parse_checkpoint_note_refusals(value: object, match: str) -> None:
    """Anything but a signed note is BadDataError at the given place."""
    with pytest.raises(BadDataError, match=match) as info:
        parse_checkpoint_note(value, where="the log checkpoint")  # type: ignore[arg-type]
    assert info.value.where == "the log checkpoint"


def test_parse_checkpoint_note_refuses_a_signed_note_that_is_no_checkpoint() -> None:
    """A validly signed note whose text is not a checkpoint body is BadDataError."""
    signed = note.sign_note(b"hello\n", "k", PrivateKey.generate().key)
    with pytest.raises(BadDataError, match="not a signed checkpoint"):
        parse_checkpoint_note(signed, where="w")


# --- trust-mark rows --------------------------------------------------------------------


def test_trust_marks_from_rows() -> None:
    """Sound rows become marks by partnership."""
    rows = [("JP-ID", 2, mark(2).digest), ("JP-MN", 1, mark(1, partnership="JP-MN").digest)]
    assert trust_marks_from(rows) == {"JP-ID": mark(2), "JP-MN": mark(1, partnership="JP-MN")}
    assert trust_marks_from([]) == {}


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ((None, 1, "ab" * 32), "row is malformed"),
        (("JP-ID", 1, "ab" * 31), "row is malformed"),
        (("JP-ID", 1, None), "row is malformed"),
        (("JP-ID", 0, "ab" * 32), "stored version 0 is not a version"),
        (("JP-ID", True, "ab" * 32), "stored version True"),
        (("JP-ID", "2", "ab" * 32), "stored version '2'"),
    ],
    ids=["no-partnership", "short-digest", "no-digest", "zero", "bool", "text"],
)
def test_trust_marks_from_refuses_malformed_rows(row: Sequence[object], match: str) -> None:
    """A trust-mark row that is not (text, version >= 1, 64 characters) is corrupt."""
    with pytest.raises(CorruptStoreError, match=match) as info:
        trust_marks_from([row])  # type: ignore[list-item]
    assert info.value.where == f"trust mark of {row[0]}"
