"""The interval map under a registry's fold (``core.reconcile.serial_map``) on its own:
segments against a unit-by-unit model, the trail index against a scan, and positions."""

from __future__ import annotations

import gc
import itertools
import random
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jcm_sync.core.reconcile.serial_map import (
    LOG_SHIFT,
    SEGS_TUPLE_MAX,
    Origin,
    SerialMap,
    Touch,
    TouchIndex,
    position,
)


def test_a_position_orders_japans_log_before_the_partners() -> None:
    """Rule 4: one int per position; Japan's entries (0) sort before the partner's (1),
    and within a log by index."""
    assert position(0, 5) < position(0, 6) < position(1, 0) < position(1, 1)
    assert position(1, 7) >> LOG_SHIFT == 1
    assert position(1, 7) & ((1 << LOG_SHIFT) - 1) == 7


def test_a_move_reports_each_unit_as_moved_held_elsewhere_or_never_issued() -> None:
    """Rule 2: of 1..30, 1..10 were issued to A and 11..20 to B; moving 1..30 from A to C
    moves 1..10 (with their segment, whose origin keeps its day of issue, rule 3), names
    11..20 as B's and 21..30 as never issued."""
    smap = SerialMap()
    first = Origin(None, 0, 2016, 1, 10, date(2017, 5, 27))  # type: ignore[arg-type]
    second = Origin(None, 1, 2016, 11, 20, date(2017, 6, 3))  # type: ignore[arg-type]
    smap.issue(1, 10, "A", "t", first)
    smap.issue(11, 20, "B", "t", second)
    moved, other, never = smap.move(1, 30, "A", "C", "t")
    assert [(lo, hi, seg.origin.issued_on) for lo, hi, seg in moved] == [(1, 10, date(2017, 5, 27))]
    assert other == [(11, 20, "B")]
    assert never == [(21, 30)]
    assert [(s.first, s.last, s.account) for s in smap.segs] == [(1, 10, "C"), (11, 20, "B")]


@pytest.mark.parametrize("seed", range(5))
def test_the_trail_index_finds_what_a_scan_finds(seed: int) -> None:
    """``TouchIndex.overlapping`` against a scan of every touch, on random intervals."""
    rnd = random.Random(seed)
    for _ in range(40):
        touches = []
        for pos in range(rnd.randint(0, 300)):
            first = rnd.randint(0, 2000)
            last = first + rnd.choice([0, 1, 9, 100, 1500])
            touches.append(Touch(first, last, 9, pos, None))  # type: ignore[arg-type]
        index = TouchIndex(touches)
        for _ in range(30):
            lo = rnd.randint(-5, 2100)
            hi = lo + rnd.choice([0, 3, 50, 700])
            want = [t.pos for t in touches if t.first <= hi and t.last >= lo]
            assert [t.pos for t in index.overlapping(lo, hi)] == want


# --- the interval map against a model ---------------------------------------------------

ACCOUNTS = ["A", "B", "C"]
ops = st.lists(
    st.tuples(
        st.sampled_from(["issue", "move"]),
        st.integers(0, 40),
        st.integers(0, 12),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(ACCOUNTS),
    ),
    max_size=25,
)


@given(ops)
def test_the_serial_map_agrees_with_a_unit_by_unit_model(
    steps: list[tuple[str, int, int, str, str]],
) -> None:
    """Issuing and moving on the segment map gives, unit by unit, what a dict of unit to
    holder gives; segments stay sorted, disjoint, and merged where they can be."""
    agrees_with_model(steps)


@pytest.mark.parametrize("seed", range(4))
def test_a_map_of_many_segments_agrees_with_the_model(seed: int) -> None:
    """The same, past ``SEGS_TUPLE_MAX`` segments, where they are kept in a list."""
    rnd = random.Random(seed)
    steps = [
        (rnd.choice(["issue", "issue", "move"]), rnd.randint(0, 600), rnd.randint(0, 6),
         rnd.choice(ACCOUNTS), rnd.choice(ACCOUNTS))
        for _ in range(400)
    ]  # fmt: skip
    smap = agrees_with_model(steps)
    assert isinstance(smap.segs, list)
    assert len(smap.segs) > SEGS_TUPLE_MAX


def test_segments_are_a_tuple_the_collector_drops_while_few_then_a_list() -> None:
    """Rule 4: up to ``SEGS_TUPLE_MAX`` segments are a tuple, which the garbage collector
    stops tracking (a list per prefix it would track for good, ADR 0055); past it, a list,
    so a prefix of thousands of segments is not copied on every change."""
    smap = SerialMap()
    for n in range(SEGS_TUPLE_MAX):
        smap.issue(2 * n, 2 * n, "A", "t", Origin(None, n, None, 2 * n, 2 * n))  # type: ignore[arg-type]
    assert isinstance(smap.segs, tuple)
    assert len(smap.segs) == SEGS_TUPLE_MAX
    gc.collect()
    assert not gc.is_tracked(smap.segs)
    n = SEGS_TUPLE_MAX
    smap.issue(2 * n, 2 * n, "A", "t", Origin(None, n, None, 2 * n, 2 * n))  # type: ignore[arg-type]
    assert isinstance(smap.segs, list)
    assert [s.first for s in smap.segs] == [2 * k for k in range(SEGS_TUPLE_MAX + 1)]


def agrees_with_model(steps: list[tuple[str, int, int, str, str]]) -> SerialMap:
    """Apply ``steps`` to a map and to a dict of unit to holder, checking after each."""
    smap = SerialMap()
    holder: dict[int, tuple[str, int]] = {}  # unit -> (account, issuing step)
    origins: dict[int, Origin] = {}
    for n, (op, first, width, a, b) in enumerate(steps):
        last = first + width
        span = range(first, last + 1)
        if op == "issue":
            origin = origins[n] = Origin(None, n, None, first, last)  # type: ignore[arg-type]
            existing, added = smap.issue(first, last, a, "t", origin)
            new = [u for u in span if u not in holder]
            assert added == len(new)
            assert {u for s in existing for u in range(s.first, s.last + 1)} >= (
                set(span) - set(new)
            )
            for u in new:
                holder[u] = (a, n)
        else:
            moved, other, never = smap.move(first, last, a, b, "t")
            got_moved = {u for lo, hi, _ in moved for u in range(lo, hi + 1)}
            got_other = {u for lo, hi, _ in other for u in range(lo, hi + 1)}
            got_never = {u for lo, hi in never for u in range(lo, hi + 1)}
            assert got_moved == {u for u in span if holder.get(u, ("",))[0] == a}
            assert got_never == {u for u in span if u not in holder}
            assert got_other == set(span) - got_moved - got_never
            assert all(holder[lo][0] == acct for lo, _, acct in other)
            for u in got_moved:
                holder[u] = (b, holder[u][1])
        segs = smap.segs
        assert [(s.first, s.last) for s in segs] == sorted((s.first, s.last) for s in segs)
        for s, t in itertools.pairwise(segs):
            assert s.last < t.first
            assert not (s.last + 1 == t.first and s.account == t.account
                        and s.origin is t.origin)  # fmt: skip
        mapped = {u: (s.account, s.origin.pos) for s in segs for u in range(s.first, s.last + 1)}
        assert mapped == holder
    return smap
