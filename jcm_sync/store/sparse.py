"""Sparse Merkle nodes: which tree nodes the SQL stores keep, and how the others are computed.

Why this module exists: keeping every perfect-subtree node costs about one node row per
entry, written at scattered places of an index; the SQL stores instead keep the leaf hash
in the entry row and only the nodes of levels 8, 16, 24... (one per complete 256-wide tile
of the level below, as C2SP tlog-tiles cuts a tree), 1/255 of a row per entry (ADR 0040).
Any other node is the hash of at most 128 consecutive hashes of the stored level below it,
computed on demand. The reads a set of wanted nodes needs and the hashing that answers
them are decided here, without I/O, so the SQLite and PostgreSQL adapters read the same
rows and compute the same hashes:

1. ``stored`` picks, from the nodes an append completes, the ones to write;
2. ``base_reads`` turns wanted coordinates into a few index ranges, one per tile of a
   stored level (``BaseRead``); the adapter reads each range in one query;
3. ``combine`` hashes the rows read into the wanted nodes. A node whose base rows are
   not all present is left out (the caller reports it missing); a base row that is not a
   32-byte hash makes the computed node a ``CorruptStoreError`` naming that row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import CorruptStoreError
from jcm_sync.store.values import Coord

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "BaseRead",
    "base_reads",
    "combine",
    "grow",
    "is_stored",
    "stored",
]

#: Levels between two stored levels: nodes of level 8k (k >= 1) are rows of ``log_nodes``.
TILE_HEIGHT: Final = 8
#: Hashes of one stored level under one node of the next stored level.
TILE_WIDTH: Final = 1 << TILE_HEIGHT


class BaseRead(NamedTuple):
    """Read the hashes of stored ``level`` at indexes ``[start, end)`` (level 0: leaf hashes)."""

    level: int
    start: int
    end: int


def is_stored(level: int) -> bool:
    """True for the levels kept as ``log_nodes`` rows (8, 16, ...); level 0 is the entry row."""
    return level > 0 and level % TILE_HEIGHT == 0


def stored(nodes: Iterable[subtrees.Subtree]) -> list[subtrees.Subtree]:
    """The nodes of an append to write as ``log_nodes`` rows."""
    return [n for n in nodes if is_stored(n.level)]


def grow(
    frontier: subtrees.Frontier, leaves: Sequence[bytes]
) -> tuple[subtrees.Frontier, list[subtrees.Subtree]]:
    """``Frontier.extend`` keeping only the nodes to write (``stored``): the same merge as
    ``subtrees.push_leaf``, without a ``Subtree`` per node, since a SQL append's CPU is
    mostly this loop (ADR 0040). Leaves are the 32-byte hashes ``prepare_batch`` made."""
    stack = list(frontier.hashes)
    size = frontier.size
    kept: list[subtrees.Subtree] = []
    sha256, prefix = hashlib.sha256, b"\x01"
    for leaf in leaves:
        if len(leaf) != merkle.HASH_SIZE:
            raise CorruptStoreError(f"a leaf hash is {merkle.describe_hash(leaf)}")
        acc, level, carry = leaf, 0, size
        while carry & 1:
            acc = sha256(prefix + stack.pop() + acc).digest()
            level, carry = level + 1, carry >> 1
            if not level % TILE_HEIGHT:
                kept.append(subtrees.Subtree(level, size >> level, acc))
        stack.append(acc)
        size += 1
    return subtrees.Frontier(size, tuple(stack)), kept


def _base(coord: Coord) -> tuple[int, int, int]:
    """(stored level, first index, count) of the hashes ``coord`` is computed from."""
    level, index = coord
    span = level % TILE_HEIGHT
    return level - span, index << span, 1 << span


def base_reads(coords: Iterable[Coord]) -> list[BaseRead]:
    """The range reads that answer ``coords``: per stored level, one per touched tile
    (runs of adjacent tiles merged), so a proof costs a few queries, not one per node."""
    tiles: dict[int, set[int]] = {}
    for coord in coords:
        base, first, count = _base(coord)
        touched = tiles.setdefault(base, set())
        touched.update(range(first >> TILE_HEIGHT, ((first + count - 1) >> TILE_HEIGHT) + 1))
    reads: list[BaseRead] = []
    for base in sorted(tiles):
        run: list[int] = []
        for tile in sorted(tiles[base]):
            if run and tile != run[-1] + 1:
                reads.append(BaseRead(base, run[0] << TILE_HEIGHT, (run[-1] + 1) << TILE_HEIGHT))
                run = []
            run.append(tile)
        reads.append(BaseRead(base, run[0] << TILE_HEIGHT, (run[-1] + 1) << TILE_HEIGHT))
    return reads


def _hash_up(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree over ``hashes`` (a power of two of them)."""
    level = list(hashes)
    while len(level) > 1:
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def combine(
    coords: Iterable[Coord], rows: Mapping[Coord, object], where: str
) -> dict[Coord, object]:
    """The wanted nodes computable from ``rows`` (``(level, index) -> hash`` as read for
    ``base_reads``). A stored node is passed on as read (the caller checks it); a computed
    one needs every base row, each a 32-byte hash, or it is a ``CorruptStoreError``."""
    out: dict[Coord, object] = {}
    for coord in coords:
        base, first, count = _base(coord)
        if count == 1:
            if (base, first) in rows:
                out[coord] = rows[(base, first)]
            continue
        parts: list[bytes] = []
        for i in range(first, first + count):
            value = rows.get((base, i))
            if value is None:
                break
            if isinstance(value, memoryview | bytearray):
                value = bytes(value)
            if not isinstance(value, bytes) or not merkle.is_hash(value):
                what, row = (
                    ("leaf hash", f"entry {i}") if base == 0 else
                    ("node hash", f"node (level {base}, index {i})")
                )  # fmt: skip
                raise CorruptStoreError(
                    f"stored {what} is {merkle.describe_hash(value)}, not {merkle.HASH_SIZE} "
                    f"bytes (needed for node (level {coord[0]}, index {coord[1]}))",
                    where=f"{where} {row}",
                )
            parts.append(value)
        else:
            out[coord] = _hash_up(parts)
    return out
