"""A registry's serial space as an interval map: who holds each unit, and which issuance
created it.

Why this module exists: ``ledger.RegistryLedger`` folds a registry's issuances and
transactions and judges each against what came before; the data structure it folds into,
and the index stage 3's trails query, are a concern of their own (sorted disjoint
intervals, merging, overlap queries) and are tested on their own against a unit-by-unit
model (tests/core/reconcile/test_serial_map.py).

Rules:

1. ``SerialMap`` keeps, per serial prefix, sorted and disjoint segments; adjacent segments
   with the same holder and the same origin (compared by identity) are merged, so a
   registry that moves credits block after block keeps a short list.
2. Issuing adds only units not issued yet; moving re-labels only the units the source
   holds, and reports the rest (held by another account, or never issued) to the caller,
   which decides what that means (``ledger`` rules 4 and 5).
3. Every segment keeps its ``Origin``: the issuing record, its position, block, vintage and
   ``issued_on`` day, so a move can be compared with the issuance of each unit it moves
   (``ledger`` rules 6 and 8) without decoding that issuance again.
4. Positions are one packed int (``position``), and the per-record objects are msgspec
   Structs the garbage collector does not track (``engine`` theory: "Memory"); a prefix's
   segments and touches are tuples, which it stops tracking on its first pass, until
   they are more than ``SEGS_TUPLE_MAX`` or ``TOUCH_TUPLE_MAX`` (ADR 0055).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Protocol

import msgspec

from jcm_sync.core.reconcile.model import RecordRef

Pos = int
"""Where an entry sits: ``order << 48 | index``, ``order`` 0 for Japan's log and 1 for the
partner's. One int, not a tuple: a large partnership holds hundreds of thousands."""

LOG_SHIFT = 48


def position(order: int, index: int) -> Pos:
    return order << LOG_SHIFT | index


class Source(Protocol):
    """The record being folded, as the ledger names it: its natural key now, and a
    ``RecordRef`` only when a finding or trail quotes it (most never are, and a
    ``RecordRef`` per record would cost a large registry tens of megabytes)."""

    @property
    def key(self) -> str: ...

    def ref(self) -> RecordRef: ...


class Origin(msgspec.Struct, gc=False):
    """The issuance that created some units: kept on every segment those units form.

    This and ``Segment`` and ``Touch`` are msgspec Structs the garbage collector does not
    track: a large registry has hundreds of thousands, they reference no container, and
    tracking them made collection cost as much as the fold itself.
    """

    src: Source
    pos: Pos
    vintage: int | None
    first: int
    last: int
    issued_on: date | None = None
    """The issuance's ``issued_on`` (rule 3); None only in tests that fold no record."""


class Segment(msgspec.Struct, gc=False):
    """Units ``first``..``last`` of one prefix: who holds them, and where they came from."""

    first: int
    last: int
    account: str
    atype: str
    origin: Origin


class Touch(msgspec.Struct, gc=False):
    """A record's claim on a block, kept for stage 3's trails (the details of what the
    record did are read from the record when a trail is asked for)."""

    first: int
    last: int
    width: int
    pos: Pos
    src: Source


def _first(s: Segment) -> int:
    return s.first


TOUCH_TUPLE_MAX = 32
"""Touches of one prefix kept as a tuple; more are kept in a list (``SerialMap``)."""
SEGS_TUPLE_MAX = 32
"""Segments of one prefix kept as a tuple; more are kept in a list (``SerialMap``)."""


class TouchIndex:
    """The touches of one prefix, indexed for overlap queries (stage 3's trails).

    A static interval tree over the touches sorted by first unit: the node of
    ``[lo, hi)`` is its middle element, and ``reach[mid]`` is the largest last unit in
    that subtree. A query visits only subtrees that can overlap it: O(log n + k) for k
    touches found, so the trails of many discrepancies in one prefix are not quadratic.
    """

    def __init__(self, touches: Iterable[Touch]) -> None:
        self.items = sorted(touches, key=lambda t: (t.first, t.pos))
        self.reach = [0] * len(self.items)
        # fill ``reach`` bottom-up: children's subtrees before their parent's
        order: list[tuple[int, int]] = []
        stack = [(0, len(self.items))]
        while stack:
            lo, hi = stack.pop()
            if lo < hi:
                order.append((lo, hi))
                mid = (lo + hi) // 2
                stack += [(lo, mid), (mid + 1, hi)]
        for lo, hi in reversed(order):
            mid = (lo + hi) // 2
            best = self.items[mid].last
            if lo < mid:
                best = max(best, self.reach[(lo + mid) // 2])
            if mid + 1 < hi:
                best = max(best, self.reach[(mid + 1 + hi) // 2])
            self.reach[mid] = best

    def overlapping(self, first: int, last: int) -> list[Touch]:
        """The touches that share a unit with ``first``..``last``, in log order."""
        out = []
        stack = [(0, len(self.items))]
        while stack:
            lo, hi = stack.pop()
            if lo >= hi:
                continue
            mid = (lo + hi) // 2
            if self.reach[mid] < first:
                continue  # every touch of this subtree ends before the range
            t = self.items[mid]
            stack.append((lo, mid))
            if t.first <= last:
                if t.last >= first:
                    out.append(t)
                stack.append((mid + 1, hi))
        out.sort(key=lambda t: t.pos)
        return out


class SerialMap(msgspec.Struct, gc=False):
    """Sorted, disjoint segments of one prefix (see the module's theory of operation),
    and the claims records made on the prefix (``touches``, for stage 3's trails).

    Touches are a tuple, grown by copying, while they are few: a prefix usually holds a
    registry's issuance of one project and year, a handful of blocks, and a tuple of
    untracked items is itself not tracked by the garbage collector where a list always
    is. Past ``TOUCH_TUPLE_MAX`` they become a list, so a prefix that thousands of
    records claim is not copied once per record (quadratic). Segments likewise, past
    ``SEGS_TUPLE_MAX``: a list per prefix, tens of thousands in a large registry, stayed
    tracked for good and made up half of what the collector's full passes scanned
    during a full run (ADR 0055).
    """

    segs: tuple[Segment, ...] | list[Segment] = ()
    touches: tuple[Touch, ...] | list[Touch] = ()

    def touch(self, touch: Touch) -> None:
        """Keep a record's claim on this prefix (see the class docstring)."""
        touches = self.touches
        if isinstance(touches, list):
            touches.append(touch)
        elif len(touches) < TOUCH_TUPLE_MAX:
            self.touches = (*touches, touch)
        else:
            self.touches = [*touches, touch]

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """Indices ``[i0, i1)`` of the segments overlapping ``first..last``.

        Segments are disjoint and sorted, so those starting at or before ``last`` and
        ending at or after ``first`` are contiguous, ending just before ``i1``.
        """
        i1 = bisect_right(self.segs, last, key=_first)
        i0 = i1
        while i0 > 0 and self.segs[i0 - 1].last >= first:
            i0 -= 1
        return i0, i1

    def _splice(self, i0: int, i1: int, new: list[Segment]) -> None:
        """Replace segments ``[i0, i1)`` by ``new``, merging equal neighbours."""
        if i0 > 0:
            i0 -= 1
            new.insert(0, self.segs[i0])
        if i1 < len(self.segs):
            new.append(self.segs[i1])
            i1 += 1
        merged: list[Segment] = []
        for s in new:
            prev = merged[-1] if merged else None
            if (
                prev is not None
                and prev.last + 1 == s.first
                and prev.account == s.account
                and prev.origin is s.origin
            ):
                merged[-1] = Segment(prev.first, s.last, s.account, s.atype, s.origin)
            else:
                merged.append(s)
        self._replace(i0, i1, merged)

    def _replace(self, i0: int, i1: int, items: list[Segment]) -> None:
        """``segs[i0:i1] = items``: a new tuple while they are few, else in a list."""
        segs = self.segs
        if isinstance(segs, list):
            segs[i0:i1] = items
        elif len(segs) - (i1 - i0) + len(items) <= SEGS_TUPLE_MAX:
            self.segs = (*segs[:i0], *items, *segs[i1:])
        else:
            self.segs = [*segs[:i0], *items, *segs[i1:]]

    def issue(
        self, first: int, last: int, account: str, atype: str, origin: Origin
    ) -> tuple[Sequence[Segment], int]:
        """Add the units of ``first..last`` not yet issued; return the overlapped segments
        and the number of units added."""
        if not self.segs:  # a new prefix, half the blocks of a large registry
            self.segs = (Segment(first, last, account, atype, origin),)
            return (), last - first + 1
        i0, i1 = self._span(first, last)
        if i0 == i1:
            # nothing issued there yet, the usual case: no neighbour can share this
            # origin, so no merge and no splice
            self._replace(i0, i0, [Segment(first, last, account, atype, origin)])
            return [], last - first + 1
        existing = self.segs[i0:i1]
        out: list[Segment] = []
        cursor, added = first, 0
        for s in existing:
            if s.first > cursor:
                out.append(Segment(cursor, s.first - 1, account, atype, origin))
                added += s.first - cursor
            out.append(s)
            cursor = max(cursor, s.last + 1)
        if cursor <= last:
            out.append(Segment(cursor, last, account, atype, origin))
            added += last - cursor + 1
        if added:
            self._splice(i0, i1, out)
        return existing, added

    def move(
        self, first: int, last: int, source: str, dest: str, dtype: str
    ) -> tuple[list[tuple[int, int, Segment]], list[tuple[int, int, str]], list[tuple[int, int]]]:
        """Move the units of ``first..last`` that ``source`` holds to ``dest``.

        Returns the moved parts (with the segment they came from), the parts held by
        another account (with that account) and the parts never issued.
        """
        i0, i1 = self._span(first, last)
        out: list[Segment] = []
        moved: list[tuple[int, int, Segment]] = []
        not_held: list[tuple[int, int, str]] = []
        not_issued: list[tuple[int, int]] = []
        cursor = first
        for s in self.segs[i0:i1]:
            lo, hi = max(s.first, first), min(s.last, last)
            if lo > cursor:
                not_issued.append((cursor, lo - 1))
            cursor = hi + 1
            if s.account != source:
                out.append(s)
                not_held.append((lo, hi, s.account))
                continue
            if s.first < lo:
                out.append(Segment(s.first, lo - 1, s.account, s.atype, s.origin))
            out.append(Segment(lo, hi, dest, dtype, s.origin))
            moved.append((lo, hi, s))
            if hi < s.last:
                out.append(Segment(hi + 1, s.last, s.account, s.atype, s.origin))
        if cursor <= last:
            not_issued.append((cursor, last))
        if moved:
            self._splice(i0, i1, out)
        return moved, not_held, not_issued
