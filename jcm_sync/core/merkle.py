"""RFC 9162 Merkle trees: hashing, proofs, and the coordinates a store needs to serve them.

Why this module exists
----------------------
Every jcm-sync log (DESIGN.md §4) is an append-only RFC 9162 Merkle tree. A node proves to its
counterpart that a record is in its log (inclusion proof) and that today's log extends
yesterday's (consistency proof); the counterpart refuses any history that was rewritten. Both
sides must compute exactly the same hashes as every other RFC 6962 / 9162 implementation, so
this module follows RFC 9162 §2.1 to the letter and is checked against the published
certificate-transparency test vectors.

It is pure: bytes and integers in, bytes and integers out. No I/O, no clock, no globals.

Rules
-----
1. Hashes are SHA-256 (32 bytes). ``leaf_hash(d) = SHA-256(0x00 || d)``,
   ``node_hash(l, r) = SHA-256(0x01 || l || r)``, and the root of the empty tree is
   ``SHA-256(b"")``. The distinct prefixes make a leaf impossible to pass off as an inner node
   (second-preimage resistance, RFC 9162 §2.1.1).
2. The Merkle Tree Hash (MTH) of n > 1 leaves splits at k, the largest power of two strictly
   less than n: ``MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))``. Every other function
   here is a consequence of that one recursion.
3. The generators (``root``, ``inclusion_proof``, ``consistency_proof``, the ``*_nodes``
   coordinate functions, ``Frontier``) raise ``BadDataError`` on out-of-range input: asking
   for a proof that cannot exist is a caller bug or a hostile request, and must be loud.
4. The verifiers (``verify_inclusion``, ``verify_consistency``) return ``False`` on *any*
   malformed input (wrong types, hash lengths, sizes, proof lengths) and never raise. They sit
   on the trust boundary, where a peer controls every argument; a bool that is only ``True``
   for a valid proof leaves no exception path to get wrong.
5. Tree sizes and indexes are bounded by 2**64 - 1, as ``tree_size`` is a uint64 in RFC 9162.
   Larger numbers are treated as malformed, so a peer cannot make us loop on a huge integer.

Theory of operation: serving proofs from stored subtrees
--------------------------------------------------------
A log with millions of entries must not re-read all its leaves to answer a proof request. The
store therefore keeps the hash of every *perfect* subtree: every aligned, power-of-two-sized
block of leaves. Such a node has a coordinate ``(level, index)`` that covers the leaves

    [index * 2**level, (index + 1) * 2**level)

so level 0 holds the leaf hashes themselves, ``(1, 0)`` covers leaves 0-1, ``(3, 2)`` covers
leaves 16-23. A perfect node never changes once its last leaf is appended, which is what makes
it safe to persist.

Every hash a proof contains is the MTH of some leaf range ``[start, end)`` of the tree (rule 2
only ever splits at power-of-two offsets), and every such range has a special shape: ``start``
is a multiple of the smallest power of two that is at least ``end - start``. A range of that
shape is the concatenation of the perfect subtrees given by the binary digits of its length,
largest first, and its MTH is those subtree hashes folded from the right:

    MTH([start, end)) = node_hash(P1, node_hash(P2, ... node_hash(Pk-1, Pk)))

So a store serves a proof in O(log N) node reads:

1. ``inclusion_path_nodes(index, size)`` or ``consistency_path_nodes(old, new)`` lists the
   ranges whose hashes form the proof, in proof order;
2. ``nodes_for_ranges(ranges)`` lists the ``(level, index)`` perfect nodes needed (one batched
   read); a proof needs at most one non-perfect range, so this is O(log N) nodes;
3. ``hashes_for_ranges(ranges, nodes)`` folds them into the proof.

The root at any size is the same computation on ``perfect_subtrees(size)``.

Appending: the frontier
-----------------------
To write those nodes as leaves arrive, the store keeps a ``Frontier``: the hashes of the
maximal perfect subtrees of the current tree, one per set bit of ``size`` (its "compact
range", as transparency-dev/merkle calls it). Appending a leaf creates the leaf node and then
merges equal-sized neighbours, exactly like incrementing a binary counter: one new node per
trailing one-bit of the old size. ``Frontier.append`` returns those new nodes so the store
can write them in the same transaction as the entry (DESIGN.md §6), and the new frontier,
whose ``root()`` is the tree root in O(log N). The frontier is immutable: if the transaction
rolls back, the caller still holds the old frontier, which is still correct.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jcm_sync.errors import BadDataError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Frontier",
    "Node",
    "consistency_path_nodes",
    "consistency_proof",
    "hash_from_subtrees",
    "hashes_for_ranges",
    "inclusion_path_nodes",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "node_range",
    "nodes_for_ranges",
    "perfect_subtrees",
    "range_decomposition",
    "range_node",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

#: Length in bytes of every hash in the tree (SHA-256).
HASH_SIZE = 32

#: Root of the tree with no leaves: SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Largest tree size (and, minus one, leaf index) we accept: RFC 9162 sizes are uint64.
MAX_TREE_SIZE = 2**64 - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


# ---------------------------------------------------------------------------------------------
# Hashing (RFC 9162 §2.1.1)
# ---------------------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 9162 leaf hash of ``entry``: SHA-256(0x00 || entry)."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return k, the largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    # bool is an int subclass; a True "size" is a bug, not a tree of one leaf.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TREE_SIZE


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    if len(leaf_hashes) > MAX_TREE_SIZE:
        raise BadDataError(f"{len(leaf_hashes)} leaves exceed the RFC 9162 uint64 tree size")
    for i, h in enumerate(leaf_hashes):
        if not _is_hash(h):
            raise BadDataError(
                f"leaf hash must be {HASH_SIZE} bytes, got {_describe(h)}", where=f"leaf {i}"
            )


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return type(value).__name__


def _mth(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of leaves [start, end), by the RFC 9162 §2.1.1 recursion (end > start)."""
    n = end - start
    if n == 1:
        return leaf_hashes[start]
    k = _split(n)
    return node_hash(_mth(leaf_hashes, start, start + k), _mth(leaf_hashes, start + k, end))


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash of the tree whose leaves have these hashes.

    Raises ``BadDataError`` if a leaf hash is not 32 bytes.
    """
    _check_leaf_hashes(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


# ---------------------------------------------------------------------------------------------
# Proof generation from all leaves (RFC 9162 §2.1.3.1 PATH and §2.1.4.1 SUBPROOF)
#
# These follow the RFC recursion literally, on purpose independently of the coordinate
# functions below, so that the tests comparing the two check something.
# ---------------------------------------------------------------------------------------------


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return PATH(index, D[n]): the inclusion proof of leaf ``index`` in the given tree.

    Raises ``BadDataError`` unless 0 <= index < len(leaf_hashes).
    """
    _check_leaf_hashes(leaf_hashes)
    size = len(leaf_hashes)
    if not _is_size(index) or index >= size:
        raise BadDataError(f"leaf index {index!r} is outside a tree of size {size}")
    return _path(leaf_hashes, index, 0, size)


def _path(leaf_hashes: Sequence[bytes], m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(leaf_hashes, m, start, start + k), _mth(leaf_hashes, start + k, end)]
    return [*_path(leaf_hashes, m - k, start + k, end), _mth(leaf_hashes, start, start + k)]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[n]): the consistency proof from ``old_size`` to this tree.

    The proof between a size and itself, or from the empty tree, is empty: there is nothing to
    prove. Raises ``BadDataError`` unless 0 <= old_size <= len(leaf_hashes).
    """
    _check_leaf_hashes(leaf_hashes)
    new_size = len(leaf_hashes)
    if not _is_size(old_size) or old_size > new_size:
        raise BadDataError(f"old size {old_size!r} is outside a tree of size {new_size}")
    if old_size in (0, new_size):
        return []
    return _subproof(leaf_hashes, old_size, 0, new_size, complete=True)


def _subproof(
    leaf_hashes: Sequence[bytes], m: int, start: int, end: int, *, complete: bool
) -> list[bytes]:
    # ``complete`` is the RFC's b: true while the old tree is still a complete subtree of the
    # new one, in which case the verifier already knows its hash (the old root) and we omit it.
    n = end - start
    if m == n:
        return [] if complete else [_mth(leaf_hashes, start, end)]
    k = _split(n)
    if m <= k:
        return [
            *_subproof(leaf_hashes, m, start, start + k, complete=complete),
            _mth(leaf_hashes, start + k, end),
        ]
    return [
        *_subproof(leaf_hashes, m - k, start + k, end, complete=False),
        _mth(leaf_hashes, start, start + k),
    ]


# ---------------------------------------------------------------------------------------------
# Proof coordinates: which leaf ranges a proof is made of
# ---------------------------------------------------------------------------------------------


def inclusion_path_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges ``(start, end)`` whose MTHs form PATH(index, D[size]), in order.

    ``hashes_for_ranges(inclusion_path_nodes(index, size), nodes)`` equals
    ``inclusion_proof(leaves, index)``.
    Raises ``BadDataError`` unless 0 <= index < size <= 2**64 - 1.
    """
    if not _is_size(size) or not _is_size(index) or index >= size:
        raise BadDataError(f"leaf index {index!r} is outside a tree of size {size!r}")
    # Walk from the root down to the leaf; PATH lists siblings from the leaf up, so reverse.
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def consistency_path_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose MTHs form PROOF(old_size, D[new_size]), in order.

    Empty when old_size is 0 or equals new_size. Raises ``BadDataError`` unless
    0 <= old_size <= new_size <= 2**64 - 1.
    """
    if not _is_size(old_size) or not _is_size(new_size) or old_size > new_size:
        raise BadDataError(f"no consistency proof from size {old_size!r} to size {new_size!r}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    m, start, end, complete = old_size, 0, new_size, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        mid = start + _split(n)
        if m <= mid - start:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            m -= mid - start
            start = mid
            complete = False
    ranges.reverse()
    return ranges


def _is_subtree_range(start: int, end: int) -> bool:
    """True when [start, end) has the shape of a node of some RFC 9162 tree (see docstring)."""
    if not (_is_size(start) and _is_size(end) and start < end):
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
    if not _is_size(size):
        raise BadDataError(f"tree size {size!r} is not an integer in [0, 2**64 - 1]")
    return [] if size == 0 else range_decomposition(0, size)


def node_range(level: int, index: int) -> tuple[int, int]:
    """Return the leaf range ``[start, end)`` covered by perfect node ``(level, index)``."""
    if not (_is_size(level) and level < 64 and _is_size(index)):
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


def hash_from_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree hashes (left to right) into the MTH of their union, from the right.

    This is the MTH recursion for a range whose pieces come from ``range_decomposition``: the
    left child at each split is the largest piece, the right child is the rest.
    Raises ``BadDataError`` on an empty list or a hash that is not 32 bytes.
    """
    if not hashes:
        raise BadDataError("cannot fold an empty list of subtree hashes")
    for i, h in enumerate(hashes):
        if not _is_hash(h):
            raise BadDataError(f"subtree hash must be {HASH_SIZE} bytes", where=f"subtree {i}")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


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
            if not _is_hash(h):
                raise BadDataError(
                    f"perfect subtree hash must be {HASH_SIZE} bytes, got {_describe(h)}",
                    where=f"node {coordinate}",
                )
            pieces.append(h)
        out.append(hash_from_subtrees(pieces))
    return out


# ---------------------------------------------------------------------------------------------
# Incremental appends: the frontier (compact range [0, size))
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A perfect subtree hash at coordinate ``(level, index)``: leaves [index<<level, ...)."""

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
        if not _is_size(self.size):
            raise BadDataError(f"frontier size {self.size!r} is not in [0, 2**64 - 1]")
        if len(self.hashes) != self.size.bit_count():
            raise BadDataError(
                f"a tree of size {self.size} has {self.size.bit_count()} frontier hashes, "
                f"got {len(self.hashes)}"
            )
        for i, h in enumerate(self.hashes):
            if not _is_hash(h):
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

    def append(self, leaf: bytes) -> tuple[Frontier, list[Node]]:
        """Append one leaf hash: ``extend`` by one."""
        return self.extend((leaf,))

    def extend(self, leaves: Sequence[bytes]) -> tuple[Frontier, list[Node]]:
        """Append leaf hashes; return the new frontier and every perfect node they create.

        Per leaf, the nodes are the leaf ``(0, size)`` followed by one parent per trailing
        one-bit of the old size, lowest first: each completes a perfect subtree that will never
        change again. The new frontier is validated once, not per leaf (a store's batch).
        """
        stack = list(self.hashes)
        size = self.size
        created: list[Node] = []
        for leaf in leaves:
            if not _is_hash(leaf):
                raise BadDataError(f"leaf hash must be {HASH_SIZE} bytes, got {_describe(leaf)}")
            if size == MAX_TREE_SIZE:
                raise BadDataError("the tree is full: RFC 9162 sizes are uint64")
            acc, level, index, carry = leaf, 0, size, size
            created.append(Node(level, index, acc))
            # Like a binary increment: each trailing 1 bit is a full subtree of the same height
            # to our left, which merges with the one we carry into a subtree one level up.
            while carry & 1:
                acc = node_hash(stack.pop(), acc)
                level, index, carry = level + 1, index >> 1, carry >> 1
                created.append(Node(level, index, acc))
            stack.append(acc)
            size += 1
        return Frontier(size, tuple(stack)), created


# ---------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2). Never raise: see rule 4.
# ---------------------------------------------------------------------------------------------


def _proof_hashes(proof: object, expected_len: int) -> list[bytes] | None:
    """Return ``proof`` as a list of 32-byte hashes of the expected length, or None."""
    if isinstance(proof, str | bytes | bytearray | memoryview) or not isinstance(proof, Sequence):
        return None
    try:
        items = list(proof)
    except Exception:  # a hostile Sequence can raise anything from __iter__; rule 4
        return None
    if len(items) != expected_len or not all(_is_hash(p) for p in items):
        return None
    return items


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return True iff ``proof`` shows leaf ``index`` with ``leaf_hash`` in the tree ``root``.

    RFC 9162 §2.1.3.2. Returns False, never raises, on any malformed argument.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_size(size) and _is_size(index)):
        return False
    if index >= size:
        return False
    # The proof length is fixed by (index, size); checking it up front refuses padded or
    # truncated proofs before any hashing.
    path = _proof_hashes(proof, len(inclusion_path_nodes(index, size)))
    if path is None:
        return False
    # fn is our node's position and sn the last node's position on the current level; each
    # right shift climbs one level. An odd fn means our node is a right child, so its sibling
    # is on the left. fn == sn with fn even means our node is the last one on its level and
    # has no sibling there: RFC 9162 trees promote it unchanged, so we climb without hashing
    # until it becomes a right child or reaches the left edge.
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False  # the path is longer than the tree is high
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # sn == 0: the path reached the root, so it was exactly as long as the tree is high.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return True iff ``proof`` shows the tree ``new_root`` extends the tree ``old_root``.

    RFC 9162 §2.1.4.2, plus its trivial cases: equal sizes need equal roots and an empty proof;
    the empty tree (whose root must be ``EMPTY_ROOT``) is consistent with every tree, with an
    empty proof. Returns False, never raises, on any malformed argument.
    """
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    path = _proof_hashes(proof, len(consistency_path_nodes(old_size, new_size)))
    if path is None:
        return False
    if old_size == new_size:
        return old_root == new_root
    if old_size == 0:
        return old_root == EMPTY_ROOT
    # Step 2: when the old tree is a complete subtree of the new one, its root is the first
    # node of the path and the proof omits it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Same walk as for inclusion, from the old tree's last leaf. Two roots are rebuilt at
    # once: fr, the old root, only from nodes to the left of that leaf (the old tree cannot
    # contain anything to its right); sr, the new root, from all of them. Both must come out
    # right, which is what ties the new tree's prefix to the old tree.
    fn, sn = old_size - 1, new_size - 1
    # Skip the levels inside the largest complete subtree ending at the old tree's last leaf:
    # the proof starts with that subtree's hash.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
