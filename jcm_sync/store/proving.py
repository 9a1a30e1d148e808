"""Serving proofs from stored nodes: the perfect pieces of a proof range, their fold, and
a bounded cache of the complete nodes every proof shares (ADR 0046).

Why this module exists: ``StoreBase`` answers a proof with one read of the nodes its
ranges decompose into; ``subtrees.nodes_for_ranges`` and ``hashes_for_ranges`` check every
range and piece, which for a proof of ~20 ranges cost ~0.5 ms of Python, more than the
reads. The ranges a store decomposes here come from ``merkle.inclusion_path_nodes`` and
``consistency_path_nodes``, whose shape is known, and the hashes folded are checked once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final

from jcm_sync.core import merkle
from jcm_sync.store.planning import check_nodes
from jcm_sync.store.values import Coord, LogRef

__all__ = ["CACHED_LEVEL", "CACHED_NODES", "NodeCache", "checked_nodes", "fold", "pieces_of"]

#: Nodes of this level and above are kept by ``NodeCache``: the upper part of the tree that
#: every proof shares (at 10^6 entries, ~7,800 nodes); lower ones are mostly read once.
CACHED_LEVEL: Final = 8
#: Nodes ``NodeCache`` holds at most (about 200 bytes each).
CACHED_NODES: Final = 1 << 15


class NodeCache:
    """Complete (perfect) nodes of level >= ``CACHED_LEVEL`` that proofs read, least
    recently used dropped first. Safe to keep: a perfect node below a log's size never
    changes, and only checked 32-byte hashes are put. Touched on the event loop only."""

    def __init__(self) -> None:
        self.nodes: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()

    def split(self, log_id: int, coords: set[Coord], found: dict[Coord, bytes]) -> list[Coord]:
        """Put the held ones of ``coords`` into ``found``; return the others, sorted."""
        missing: list[Coord] = []
        nodes = self.nodes
        for coord in coords:
            key = (log_id, *coord)
            value = nodes.get(key) if coord[0] >= CACHED_LEVEL else None
            if value is None:
                missing.append(coord)
            else:
                nodes.move_to_end(key)
                found[coord] = value
        missing.sort()
        return missing

    def put(self, log_id: int, checked: Mapping[Coord, bytes]) -> None:
        nodes = self.nodes
        for (level, index), value in checked.items():
            if level >= CACHED_LEVEL:
                nodes[(log_id, level, index)] = value
        while len(nodes) > CACHED_NODES:
            nodes.popitem(last=False)


def pieces_of(start: int, end: int) -> list[Coord]:
    """The perfect nodes making up ``[start, end)``, largest first: what
    ``subtrees.range_decomposition`` gives for the ranges of ``merkle``'s proof paths
    (``start`` aligned to the length's next power of two), without its checks, which a
    proof of ~20 ranges paid for in ~0.5 ms of Python (ADR 0046)."""
    out: list[Coord] = []
    while start < end:
        level = (end - start).bit_length() - 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: list[bytes]) -> bytes:
    """``merkle.hash_from_subtrees`` of checked hashes: folded from the right."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = merkle.node_hash(h, acc)
    return acc


def checked_nodes(
    log: LogRef, coords: Sequence[Coord], rows: Mapping[Coord, object]
) -> dict[Coord, bytes]:
    """``check_nodes``, building its messages only for a row that fails."""
    out: dict[Coord, bytes] = {}
    for coord in coords:
        value = rows.get(coord)
        if type(value) is not bytes or len(value) != merkle.HASH_SIZE:
            return check_nodes(log, coords, rows)  # converts a view, or names the bad row
        out[coord] = value
    return out
