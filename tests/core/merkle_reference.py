"""An independent RFC 9162 reference for the merkle and subtrees tests, and a tree built with it.

Written straight from the RFC 9162 §2.1 recursions on lists of entries (slices, no offsets, no
shortcuts), so that comparing it with ``jcm_sync.core.merkle`` and ``jcm_sync.core.subtrees``
on every size checks something: the module's shortcuts, not the module against itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache

from jcm_sync.core import merkle, subtrees


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if len(d) == 0:
        return sha256(b"")
    if len(d) == 1:
        return sha256(b"\x00" + d[0])
    k = _k(len(d))
    return sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


N_ALL = 70
ENTRIES = tuple(f"entry {i}".encode() for i in range(N_ALL))
LEAVES = tuple(merkle.leaf_hash(e) for e in ENTRIES)


@cache
def ref_root(n: int) -> bytes:
    return ref_mth(ENTRIES[:n])


def store_of(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect node of the tree, as a store fed by Frontier.append would hold them."""
    frontier = subtrees.Frontier.empty()
    nodes: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        frontier, created = frontier.append(leaf)
        for node in created:
            nodes[(node.level, node.index)] = node.hash
    return nodes


STORE = store_of(LEAVES)

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
