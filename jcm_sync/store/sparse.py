"""Sparse Merkle nodes: which tree nodes the SQL stores keep, and how the others are computed.

Why this module exists: keeping every perfect-subtree node costs about one node row per
entry, written at scattered places of an index; the SQL stores instead keep the leaf hash
in the entry row and only the nodes of levels 4, 8, 12... (one per complete 16-wide tile
of the level below), 1/15 of a row per entry (ADR 0040, ADR 0046). Any other node is the
hash of at most 8 consecutive hashes of the stored level below it, computed on demand, so
a proof reads and hashes about 16 values per stored level. The reads a set of wanted nodes
needs and the hashing that answers them are decided here, without I/O, so the SQLite and
PostgreSQL adapters read the same rows and compute the same hashes:

1. ``stored`` picks, from the nodes an append completes, the ones to write;
2. ``base_reads`` turns wanted coordinates into a few index ranges, one per run of tiles
   of a stored level (``BaseRead``); the adapter reads each range in one query;
3. ``fallback_reads`` names what to read next for rows a store written before ADR 0046
   lacks (levels 4, 12, 20...: it kept only 8, 16...); the adapter reads those too,
   once, when there are any;
4. ``combine`` hashes the rows read into the wanted nodes, a missing row of levels 4, 12,
   20... from the 16 rows of the level below it. A node whose base rows are not all
   present is left out (the caller reports it missing); a base row that is not a 32-byte
   hash makes the computed node a ``CorruptStoreError`` naming that row.
5. A ``Grower`` answers ``plan_append`` exactly as ``grow`` does: a result it computed
   ahead (``ahead``) is used only for an equal frontier and equal leaves.
6. ``Frontiers`` keeps the frontier each log's last append through one connection left,
   with that append's root and the connection's version (SQLite's ``PRAGMA
   data_version``, which changes when another connection commits). It gives it back only
   for that very size, root and version: the tree of a size and root has one frontier,
   so while no other writer committed, the nodes it would read are the ones it grew. A
   head moved, rolled back or replaced, or another writer's commit (a repair, a
   corruption by hand) means the stored nodes are read and checked again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import CorruptStoreError
from jcm_sync.store.values import Coord

__all__ = [
    "LEGACY_HEIGHT",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "BaseRead",
    "Frontiers",
    "Grower",
    "base_reads",
    "combine",
    "fallback_reads",
    "grow",
    "is_stored",
    "stored",
]

#: Levels between two stored levels: nodes of level 4k (k >= 1) are rows of ``log_nodes``.
TILE_HEIGHT: Final = 4
#: Hashes of one stored level under one node of the next stored level.
TILE_WIDTH: Final = 1 << TILE_HEIGHT
#: The stored levels' spacing before ADR 0046 (8, 16...): a row of levels 4, 12, 20...
#: may be absent from a store written then; it is computed from the stored level below.
LEGACY_HEIGHT: Final = 8


class BaseRead(NamedTuple):
    """Read the hashes of stored ``level`` at indexes ``[start, end)`` (level 0: leaf hashes)."""

    level: int
    start: int
    end: int


def is_stored(level: int) -> bool:
    """True for the levels kept as ``log_nodes`` rows (4, 8, ...); level 0 is the entry row."""
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
    sha256, prefix, height = hashlib.sha256, b"\x01", TILE_HEIGHT
    for leaf in leaves:
        if len(leaf) != merkle.HASH_SIZE:
            raise CorruptStoreError(f"a leaf hash is {merkle.describe_hash(leaf)}")
        acc, level, carry = leaf, 0, size
        while carry & 1:
            acc = sha256(prefix + stack.pop() + acc).digest()
            level, carry = level + 1, carry >> 1
            if not level % height:
                kept.append(subtrees.Subtree(level, size >> level, acc))
        stack.append(acc)
        size += 1
    return subtrees.Frontier(size, tuple(stack)), kept


Grown = tuple[subtrees.Frontier, list[subtrees.Subtree]]


class Grower:
    """``grow`` for one append, as ``plan_append``'s ``grow`` (rule 5). ``ahead`` grows
    the frontier an adapter expects (the one its last append left) while the reads that
    confirm it are on their way (ADR 0054); a call with an equal frontier and equal
    leaves returns that result, any other grows anew. ``grown`` is the frontier the
    last call returned, for the next append's ``ahead``."""

    __slots__ = ("_ahead", "grown")

    def __init__(self) -> None:
        self._ahead: tuple[subtrees.Frontier, list[bytes], Grown] | None = None
        self.grown: subtrees.Frontier | None = None

    def ahead(self, frontier: subtrees.Frontier, leaves: list[bytes]) -> None:
        self._ahead = frontier, leaves, grow(frontier, leaves)

    def __call__(self, frontier: subtrees.Frontier, leaves: Sequence[bytes]) -> Grown:
        made = self._ahead
        if made is not None and made[0] == frontier and made[1] == leaves:
            result = made[2]
        else:
            result = grow(frontier, leaves)
        self.grown = result[0]
        return result


class Frontiers:
    """The frontier each log's last append left, per log id (rule 6)."""

    __slots__ = ("_logs",)

    def __init__(self) -> None:
        self._logs: dict[int, tuple[int, bytes, subtrees.Frontier]] = {}

    def get(self, log_id: int, size: int, root: bytes, version: int) -> subtrees.Frontier | None:
        """The frontier of ``size`` and ``root`` put for ``log_id`` at ``version``, or None."""
        known = self._logs.get(log_id)
        if known is None or known[0] != version or known[1] != root or known[2].size != size:
            return None
        return known[2]

    def size(self, log_id: int) -> int | None:
        """The size of the frontier last put for ``log_id``, whatever its version: a guess
        of the log's size before reading it."""
        known = self._logs.get(log_id)
        return None if known is None else known[2].size

    def put(self, log_id: int, version: int, frontier: subtrees.Frontier, root: bytes) -> None:
        """Keep ``frontier`` (whose root is ``root``) as ``log_id``'s at ``version``."""
        self._logs[log_id] = (version, root, frontier)


def _base(coord: Coord) -> tuple[int, int, int]:
    """(stored level, first index, count) of the hashes ``coord`` is computed from."""
    level, index = coord
    span = level % TILE_HEIGHT
    return level - span, index << span, 1 << span


def _legacy(level: int) -> bool:
    """True for the stored levels a store written before ADR 0046 lacks (4, 12, 20...)."""
    return level % LEGACY_HEIGHT != 0


def _runs(tiles: Mapping[int, Iterable[int]]) -> list[BaseRead]:
    """One read per run of adjacent tiles of each level, levels in order."""
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


def base_reads(coords: Iterable[Coord]) -> list[BaseRead]:
    """The range reads that answer ``coords``: per stored level, one per touched tile
    (runs of adjacent tiles merged), so a proof costs a few queries, not one per node."""
    tiles: dict[int, set[int]] = {}
    for coord in coords:
        base, first, count = _base(coord)
        touched = tiles.setdefault(base, set())
        touched.update(range(first >> TILE_HEIGHT, ((first + count - 1) >> TILE_HEIGHT) + 1))
    return _runs(tiles)


def fallback_reads(coords: Iterable[Coord], rows: Mapping[Coord, object]) -> list[BaseRead]:
    """After the ``base_reads`` of ``coords`` gave ``rows``: the reads of the level below
    for each base row of levels 4, 12, 20... that is absent (a store written before ADR
    0046 kept only 8, 16...); empty when none is. Those levels below (0, 8, 16...) were
    always stored, so one more round answers every node the store can answer."""
    tiles: dict[int, set[int]] = {}
    for coord in coords:
        base, first, count = _base(coord)
        if not _legacy(base):
            continue
        for i in range(first, first + count):
            if (base, i) not in rows:
                tiles.setdefault(base - TILE_HEIGHT, set()).add(i)
    return _runs(tiles)


def _hash_up(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree over ``hashes`` (a power of two of them)."""
    level = list(hashes)
    node_hash = merkle.node_hash
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class _Rows:
    """The rows read, with the absent rows of levels 4, 12... computed on first use."""

    def __init__(self, rows: Mapping[Coord, object], where: str) -> None:
        self.rows = rows
        self.where = where
        self.filled: dict[Coord, bytes | None] = {}

    def get(self, level: int, index: int) -> object:
        """The row as read, or computed from the level below; None if not answerable."""
        value = self.rows.get((level, index))
        if value is not None or not level or not _legacy(level):
            return value
        key = (level, index)
        if key not in self.filled:
            below = level - TILE_HEIGHT
            parts = self.hashes(below, index << TILE_HEIGHT, TILE_WIDTH, key)
            self.filled[key] = None if parts is None else _hash_up(parts)
        return self.filled[key]

    def hashes(self, base: int, first: int, count: int, coord: Coord) -> list[bytes] | None:
        """The ``count`` hashes of level ``base`` from ``first`` that ``coord`` is computed
        from; None if one is absent, ``CorruptStoreError`` if one is not a 32-byte hash."""
        parts: list[bytes] = []
        for i in range(first, first + count):
            value = self.get(base, i)
            if value is None:
                return None
            if isinstance(value, memoryview | bytearray):
                value = bytes(value)
            if not isinstance(value, bytes) or len(value) != merkle.HASH_SIZE:
                what, row = (
                    ("leaf hash", f"entry {i}") if base == 0 else
                    ("node hash", f"node (level {base}, index {i})")
                )  # fmt: skip
                raise CorruptStoreError(
                    f"stored {what} is {merkle.describe_hash(value)}, not {merkle.HASH_SIZE} "
                    f"bytes (needed for node (level {coord[0]}, index {coord[1]}))",
                    where=f"{self.where} {row}",
                )
            parts.append(value)
        return parts


def combine(
    coords: Iterable[Coord], rows: Mapping[Coord, object], where: str
) -> dict[Coord, object]:
    """The wanted nodes computable from ``rows`` (``(level, index) -> hash`` as read for
    ``base_reads`` and ``fallback_reads``). A stored node is passed on as read (the caller
    checks it); a computed one needs every base row, each a 32-byte hash, or it is a
    ``CorruptStoreError``; an absent row of levels 4, 12... is computed from the level
    below (``fallback_reads``)."""
    out: dict[Coord, object] = {}
    held = _Rows(rows, where)
    for coord in coords:
        base, first, count = _base(coord)
        if count == 1:
            value = held.get(base, first)
            if value is not None:
                out[coord] = value
            continue
        parts = held.hashes(base, first, count, coord)
        if parts is not None:
            out[coord] = _hash_up(parts)
    return out
