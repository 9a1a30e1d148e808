"""RFC 9162 Merkle trees: hashing, proofs, and the leaf ranges a proof is made of.

Why this module exists
----------------------
Every jcm-sync log (DESIGN.md §4) is an append-only RFC 9162 Merkle tree. A node proves to its
counterpart that a record is in its log (inclusion proof) and that today's log extends
yesterday's (consistency proof); the counterpart refuses any history that was rewritten. Both
sides must compute exactly the same hashes as every other RFC 6962 / 9162 implementation, so
this module follows RFC 9162 §2.1 to the letter and is checked against the published
certificate-transparency test vectors. How a store serves these proofs from stored subtree
hashes, and keeps those hashes as leaves arrive, is ``subtrees.py``.

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
3. The generators (``root``, ``inclusion_proof``, ``consistency_proof``, the ``*_path_nodes``
   coordinate functions, ``hash_from_subtrees``, and all of ``subtrees.py``) raise
   ``BadDataError`` on out-of-range input: asking for a proof that cannot exist is a caller
   bug or a hostile request, and must be loud.
4. The verifiers (``verify_inclusion``, ``verify_consistency``) return ``False`` on *any*
   malformed input (wrong types, hash lengths, sizes, proof lengths) and never raise. They sit
   on the trust boundary, where a peer controls every argument; a bool that is only ``True``
   for a valid proof leaves no exception path to get wrong.
5. Tree sizes and indexes are bounded by 2**64 - 1, as ``tree_size`` is a uint64 in RFC 9162.
   Larger numbers are treated as malformed, so a peer cannot make us loop on a huge integer.

Theory of operation
-------------------
``inclusion_proof`` and ``consistency_proof`` follow the RFC recursions over all leaves.
``inclusion_path_nodes`` and ``consistency_path_nodes`` walk the same recursions without any
hash and list the leaf ranges ``[start, end)`` whose MTHs form each proof, in proof order:
a store turns those into reads of stored subtree hashes (``subtrees.py``), and the verifiers
use them to know a proof's exact length before hashing anything. Rule 2 only ever splits at
power-of-two offsets, so each such range is a run of perfect subtrees, and
``hash_from_subtrees`` folds their hashes into the range's MTH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from jcm_sync.errors import BadDataError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "consistency_path_nodes",
    "consistency_proof",
    "describe_hash",
    "hash_from_subtrees",
    "inclusion_path_nodes",
    "inclusion_proof",
    "is_hash",
    "is_tree_size",
    "leaf_hash",
    "node_hash",
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


def is_hash(value: object) -> bool:
    """True for a hash of the tree: bytes of length ``HASH_SIZE``."""
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def is_tree_size(value: object) -> bool:
    """True for an RFC 9162 tree size or leaf index: an int in [0, 2**64 - 1] (rule 5)."""
    # bool is an int subclass; a True "size" is a bug, not a tree of one leaf.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TREE_SIZE


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    if len(leaf_hashes) > MAX_TREE_SIZE:
        raise BadDataError(f"{len(leaf_hashes)} leaves exceed the RFC 9162 uint64 tree size")
    for i, h in enumerate(leaf_hashes):
        if not is_hash(h):
            raise BadDataError(
                f"leaf hash must be {HASH_SIZE} bytes, got {describe_hash(h)}", where=f"leaf {i}"
            )


def describe_hash(value: object) -> str:
    """Say what a value that should be a hash is, for an error message: its length or type."""
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


def hash_from_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree hashes (left to right) into the MTH of their union, from the right.

    This is the MTH recursion for a range whose pieces come from
    ``subtrees.range_decomposition``: the left child at each split is the largest piece, the
    right child is the rest.
    Raises ``BadDataError`` on an empty list or a hash that is not 32 bytes.
    """
    if not hashes:
        raise BadDataError("cannot fold an empty list of subtree hashes")
    for i, h in enumerate(hashes):
        if not is_hash(h):
            raise BadDataError(f"subtree hash must be {HASH_SIZE} bytes", where=f"subtree {i}")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


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
    if not is_tree_size(index) or index >= size:
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
    if not is_tree_size(old_size) or old_size > new_size:
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
    if not is_tree_size(size) or not is_tree_size(index) or index >= size:
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
    if not is_tree_size(old_size) or not is_tree_size(new_size) or old_size > new_size:
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
    if len(items) != expected_len or not all(is_hash(p) for p in items):
        return None
    return items


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return True iff ``proof`` shows leaf ``index`` with ``leaf_hash`` in the tree ``root``.

    RFC 9162 §2.1.3.2. Returns False, never raises, on any malformed argument.
    """
    if not (is_hash(leaf_hash) and is_hash(root) and is_tree_size(size) and is_tree_size(index)):
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
    if not (is_tree_size(old_size) and is_tree_size(new_size) and old_size <= new_size):
        return False
    if not (is_hash(old_root) and is_hash(new_root)):
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
