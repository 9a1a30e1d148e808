"""Perfect subtrees: the coordinates a log store keeps, and the frontier it appends with.

Why this module exists
----------------------
``merkle.py`` computes RFC 9162 hashes and proofs from a list of leaves, which is right for a
test and wrong for a log with millions of entries: it must not re-read all its leaves to
answer a proof request. This module says which stored hashes a store needs instead, and how
to produce them as leaves arrive. It is pure, like ``merkle.py``: integers and hashes in,
integers and hashes out, and out-of-range input raises ``BadDataError`` (merkle rule 3).

Theory of operation: serving proofs from stored subtrees
--------------------------------------------------------
The store keeps the hash of every *perfect* subtree: every aligned, power-of-two-sized block
of leaves. Such a subtree has a coordinate ``(level, index)`` that covers the leaves

    [index * 2**level, (index + 1) * 2**level)

so level 0 holds the leaf hashes themselves, ``(1, 0)`` covers leaves 0-1, ``(3, 2)`` covers
leaves 16-23. A perfect subtree never changes once its last leaf is appended, which is what
makes it safe to persist.

Every hash a proof contains is the MTH of some leaf range ``[start, end)`` of the tree (merkle
rule 2 only ever splits at power-of-two offsets), and every such range has a special shape:
``start`` is a multiple of the smallest power of two that is at least ``end - start``. A
range of that shape is the concatenation of the perfect subtrees given by the binary digits
of its length, largest first, and its MTH is those subtree hashes folded from the right
(``merkle.hash_from_subtrees``):

    MTH([start, end)) = node_hash(P1, node_hash(P2, ... node_hash(Pk-1, Pk)))

So a store serves a proof in O(log N) subtree reads:

1. ``merkle.inclusion_path_nodes(index, size)`` or ``merkle.consistency_path_nodes(old, new)``
   lists the ranges whose hashes form the proof, in proof order;
2. ``nodes_for_ranges(ranges)`` lists the ``(level, index)`` perfect subtrees needed (one
   batched read); a proof needs at most one non-perfect range, so this is O(log N) reads;
3. ``hashes_for_ranges(ranges, nodes)`` folds them into the proof.

The root at any size is the same computation on ``perfect_subtrees(size)``.

Appending: the frontier
-----------------------
To write those subtrees as leaves arrive, the store keeps a ``Frontier``: the hashes of the
maximal perfect subtrees of the current tree, one per set bit of ``size`` (its "compact
range", as transparency-dev/merkle calls it). Appending a leaf creates the leaf's subtree and
then merges equal-sized neighbours, exactly like incrementing a binary counter: one new
``Subtree`` per trailing one-bit of the old size. ``Frontier.append`` returns those new
subtrees so the store can write them in the same transaction as the entry (DESIGN.md §6), and
the new frontier, whose ``root()`` is the tree root in O(log N). The frontier is immutable:
if the transaction rolls back, the caller still holds the old frontier, which is still
correct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jcm_sync.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    describe_hash,
    hash_from_subtrees,
    is_hash,
    is_tree_size,
    node_hash,
)
from jcm_sync.errors import BadDataError

__all__ = [
    "Frontier",
    "Subtree",
    "hashes_for_ranges",
    "node_range",
    "nodes_for_ranges",
    "perfect_subtrees",
    "range_decomposition",
    "range_node",
]


# ---------------------------------------------------------------------------------------------
# Coordinates: which stored perfect subtrees make up a leaf range
# ---------------------------------------------------------------------------------------------


def _is_subtree_range(start: int, end: int) -> bool:
    """True when [start, end) has the shape of a node of some RFC 9162 tree (see docstring)."""
    if not (is_tree_size(start) and is_tree_size(end) and start < end):
        return False
    length = end - start
    ceiling = 1 << (length - 1).bit_length()  # smallest power of two >= length
    return start % ceiling == 0


def range_decomposition(start: int, end: int) -> list[tuple[int, int]]:
    """Return the aligned perfect subtrees that make up [start, end), left to right.

    The range must have the shape every proof range has: ``start`` a multiple of the smallest
    power of two >= ``end - start``. Then the pieces follow the binary digits of the length,
    largest first, and ``hash_from_subtrees`` of their hashes is the MTH of the range. Any other
    range raises ``BadDataError``: its MTH would split at unaligned offsets that no store holds.
    """
    if not _is_subtree_range(start, end):
        raise BadDataError(f"leaf range [{start!r}, {end!r}) is not a subtree of any log tree")
    pieces: list[tuple[int, int]] = []
    pos, remaining = start, end - start
    while remaining:
        size = 1 << (remaining.bit_length() - 1)
        pieces.append((pos, pos + size))
        pos += size
        remaining -= size
    return pieces


def perfect_subtrees(size: int) -> list[tuple[int, int]]:
    """Return the maximal perfect subtrees of [0, size), left to right (empty for size 0).

    One per set bit of ``size``; their hashes are the frontier, and folding them gives the root.
    """
    if not is_tree_size(size):
        raise BadDataError(f"tree size {size!r} is not an integer in [0, 2**64 - 1]")
    return [] if size == 0 else range_decomposition(0, size)


def node_range(level: int, index: int) -> tuple[int, int]:
    """Return the leaf range ``[start, end)`` covered by perfect node ``(level, index)``."""
    if not (is_tree_size(level) and level < 64 and is_tree_size(index)):
        raise BadDataError(f"node ({level!r}, {index!r}) is not a valid coordinate")
    start, end = index << level, (index + 1) << level
    if end > MAX_TREE_SIZE + 1:
        raise BadDataError(f"node ({level}, {index}) lies beyond the largest possible tree")
    return start, end


def range_node(start: int, end: int) -> tuple[int, int]:
    """Return the ``(level, index)`` coordinate of the perfect subtree [start, end).

    Raises ``BadDataError`` unless the range is aligned and its length a power of two.
    """
    if not _is_subtree_range(start, end) or (end - start) & (end - start - 1):
        raise BadDataError(f"leaf range [{start!r}, {end!r}) is not a perfect subtree")
    level = (end - start).bit_length() - 1
    return level, start >> level


def nodes_for_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the distinct ``(level, index)`` perfect nodes needed to hash these ranges.

    Sorted, so a store can fetch them in one batched, index-ordered read.
    """
    needed: set[tuple[int, int]] = set()
    for start, end in ranges:
        for piece in range_decomposition(start, end):
            needed.add(range_node(*piece))
    return sorted(needed)


def hashes_for_ranges(
    ranges: Sequence[tuple[int, int]], nodes: Mapping[tuple[int, int], bytes]
) -> list[bytes]:
    """Return the MTH of each range, computed from stored perfect-node hashes.

    ``nodes`` maps ``(level, index)`` to the node hash, as fetched for ``nodes_for_ranges``.
    Raises ``BadDataError`` if a needed node is missing or is not 32 bytes.
    """
    out: list[bytes] = []
    for start, end in ranges:
        pieces: list[bytes] = []
        for piece in range_decomposition(start, end):
            coordinate = range_node(*piece)
            h = nodes.get(coordinate)
            if h is None:
                raise BadDataError("perfect subtree hash is missing", where=f"node {coordinate}")
            if not is_hash(h):
                raise BadDataError(
                    f"perfect subtree hash must be {HASH_SIZE} bytes, got {describe_hash(h)}",
                    where=f"node {coordinate}",
                )
            pieces.append(h)
        out.append(hash_from_subtrees(pieces))
    return out


# ---------------------------------------------------------------------------------------------
# Incremental appends: the frontier (compact range [0, size))
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subtree:
    """A perfect subtree's hash at coordinate ``(level, index)``: leaves [index<<level, ...)."""

    level: int
    index: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Frontier:
    """The hashes of the maximal perfect subtrees of a tree of ``size`` leaves, left to right.

    Invariant: ``len(hashes) == size.bit_count()`` and ``hashes[i]`` is the MTH of
    ``perfect_subtrees(size)[i]``. Build one with ``Frontier.empty()`` or, from stored nodes,
    ``Frontier.from_hashes(size, hashes)`` (fetch ``Frontier.coordinates(size)``).
    """

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not is_tree_size(self.size):
            raise BadDataError(f"frontier size {self.size!r} is not in [0, 2**64 - 1]")
        if len(self.hashes) != self.size.bit_count():
            raise BadDataError(
                f"a tree of size {self.size} has {self.size.bit_count()} frontier hashes, "
                f"got {len(self.hashes)}"
            )
        for i, h in enumerate(self.hashes):
            if not is_hash(h):
                raise BadDataError(f"hash must be {HASH_SIZE} bytes", where=f"frontier {i}")

    @classmethod
    def empty(cls) -> Frontier:
        """Return the frontier of the empty tree."""
        return cls(0, ())

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Return the frontier of a tree of ``size`` from its perfect-subtree hashes."""
        return cls(size, tuple(hashes))

    @staticmethod
    def coordinates(size: int) -> list[tuple[int, int]]:
        """Return the ``(level, index)`` of each frontier node of a tree of ``size``."""
        return [range_node(start, end) for start, end in perfect_subtrees(size)]

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the tree, in O(log size) hashes."""
        return EMPTY_ROOT if self.size == 0 else hash_from_subtrees(self.hashes)

    def append(self, leaf: bytes) -> tuple[Frontier, list[Subtree]]:
        """Append one leaf hash: ``extend`` by one."""
        return self.extend((leaf,))

    def extend(self, leaves: Sequence[bytes]) -> tuple[Frontier, list[Subtree]]:
        """Append leaf hashes; return the new frontier and every perfect node they create.

        Per leaf, the nodes are the leaf ``(0, size)`` followed by one parent per trailing
        one-bit of the old size, lowest first: each completes a perfect subtree that will never
        change again. The new frontier is validated once, not per leaf (a store's batch).
        """
        stack = list(self.hashes)
        size = self.size
        created: list[Subtree] = []
        for leaf in leaves:
            if not is_hash(leaf):
                raise BadDataError(
                    f"leaf hash must be {HASH_SIZE} bytes, got {describe_hash(leaf)}"
                )
            if size == MAX_TREE_SIZE:
                raise BadDataError("the tree is full: RFC 9162 sizes are uint64")
            push_leaf(stack, size, leaf, created)
            size += 1
        return Frontier(size, tuple(stack)), created


def push_leaf(
    stack: list[bytes], size: int, leaf: bytes, created: list[Subtree] | None = None
) -> None:
    """Append a leaf hash to ``stack``, the frontier hashes of a tree of ``size`` leaves, in place.

    This is the one frontier merge (``Frontier.extend`` and the reconciler's running log
    both call it). With ``created``, every perfect node the leaf completes is added to it:
    the leaf ``(0, size)``, then one parent per trailing one-bit of ``size``, lowest first.
    The caller checks the leaf's length and the tree's bound.
    """
    acc, level, carry = leaf, 0, size
    if created is not None:
        created.append(Subtree(0, size, acc))
    # Like a binary increment: each trailing 1 bit is a full subtree of the same height
    # to our left, which merges with the one we carry into a subtree one level up.
    while carry & 1:
        acc = node_hash(stack.pop(), acc)
        level, carry = level + 1, carry >> 1
        if created is not None:
            created.append(Subtree(level, size >> level, acc))
    stack.append(acc)
