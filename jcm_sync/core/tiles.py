"""C2SP tlog-tiles: a log as static files, and proofs computed from those files alone.

Why this module exists
----------------------
A hub answers proofs from its database, which then carries every reader's load. A log
published as C2SP tlog-tiles (c2sp.org/tlog-tiles) is a set of immutable files (hash tiles,
entry bundles) plus one mutable ``checkpoint``, which any static web server, bucket or CDN
can serve. A partner, an auditor or a monitor fetches the few tiles a proof needs and
computes the proof itself; the signed checkpoint is the only thing it has to trust, and
any proof computed from altered tiles fails against it. This module is the format and the
arithmetic; fetching and writing files is ``services/tiles.py``.

It is pure: bytes and integers in, values out. No I/O, no clock.

Rules (each quoted from the spec's "Merkle Tree" and "Log entries" sections)
---------------------------------------------------------------------------
1. A tile is 256 consecutive hashes at one *tile level*: level 0 holds leaf hashes; the
   ``i``-th hash of tile ``n`` at level ``l`` is ``MTH(D[(n*256+i)*256**l :
   (n*256+i+1)*256**l])``, i.e. the RFC 9162 node at Merkle height ``8*l``, index
   ``n*256+i``. A full tile is 256 hashes (8,192 bytes); the rightmost tile of a level may
   be *partial*, of width ``floor(size / 256**l) mod 256`` (1..255). An empty tile does
   not exist.
2. Paths: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``. ``<L>`` is decimal
   0..63 without leading zeros; ``<N>`` is split in zero-padded 3-digit elements, every
   element but the last prefixed with ``x`` (1234067 is ``x001/x234/067``); ``.p/<W>``
   only for a partial tile, ``<W>`` decimal 1..255 without leading zeros. Parsing accepts
   only that canonical form (no ``x000`` leading element), so an index has one path.
3. An entry bundle is the entries of a level-0 tile, each prefixed with its length as a
   big-endian uint16; an entry longer than 65,535 bytes cannot be bundled
   (``TileEntryTooLargeError``). Decoding checks that the bundle holds exactly the tile's
   width of entries and nothing after them.
4. Tiles are immutable: a full tile never changes once its 256 hashes exist, and a partial
   tile of width W is the prefix of every later tile at that position. A reader therefore
   names tiles by ``(level, index, width)`` for the tree size it verified, and never
   fetches a partial tile no checkpoint requires (the spec's rule).
5. Any RFC 9162 perfect subtree ``(height, index)`` of a tree of size ``s`` is computable
   from one tile of that tree: tile level ``height // 8``, the ``2**(height % 8)`` hashes
   starting at ``index << (height % 8)``, folded as a perfect tree. Proofs (``merkle``'s
   path coordinates, ``subtrees``' decomposition into perfect subtrees) are built from
   those nodes, so a proof from tiles equals the proof from the full tree, and verifies
   against the checkpoint's root exactly when the tiles are the log's.

Theory of operation
-------------------
A reader with a verified checkpoint of size ``s`` asks ``inclusion_tiles(index, s)`` (or
``consistency_tiles``, ``root_tiles``) which tiles to fetch, fetches and decodes them
(``decode_tile``), and calls ``inclusion_proof`` (or ``consistency_proof``, ``root``) with
the decoded tiles. A writer asks ``new_tiles(old, new)`` which tiles a tree of size
``new`` has that the one of size ``old`` had not, and writes each with ``encode_tile`` /
``encode_bundle``, then the checkpoint last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import TileEntryTooLargeError, TileFormatError

__all__ = [
    "MAX_ENTRY_BYTES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "Tiles",
    "build_tiles",
    "consistency_proof",
    "consistency_tiles",
    "decode_bundle",
    "decode_tile",
    "encode_bundle",
    "encode_index",
    "encode_tile",
    "frontier",
    "inclusion_proof",
    "inclusion_tiles",
    "leaf_from_tiles",
    "level_size",
    "new_tiles",
    "node_hashes",
    "parse_path",
    "root",
    "root_tiles",
    "tile_at",
    "tiles_for_nodes",
]

#: Merkle levels one tile spans: a tile is a perfect subtree of height 8 (rule 1).
TILE_HEIGHT = 8
#: Hashes (or entries) in a full tile.
TILE_WIDTH = 1 << TILE_HEIGHT
#: Longest entry a bundle can carry: its length is a big-endian uint16 (rule 3).
MAX_ENTRY_BYTES = 0xFFFF
#: Highest tile level a path may name (rule 2); a tree of uint64 size needs at most 7.
MAX_LEVEL = 63

_ELEMENT = re.compile(r"[0-9]{3}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")

Coord = tuple[int, int]


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """One tile: its level (``ENTRIES`` for an entry bundle), index and width (1..256)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    #: ``level`` of an entry bundle: it sits beside level 0 and has its coordinates.
    ENTRIES = -1

    def __post_init__(self) -> None:
        if not (self.level == Tile.ENTRIES or 0 <= self.level <= MAX_LEVEL):
            raise TileFormatError(f"tile level {self.level} is outside 0..{MAX_LEVEL}")
        if not merkle.is_tree_size(self.index):
            raise TileFormatError(f"tile index {self.index!r} is not a uint64")
        if not 1 <= self.width <= TILE_WIDTH:
            raise TileFormatError(f"tile width {self.width} is outside 1..{TILE_WIDTH}")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """Rule 2: where the tile is served, relative to the log's prefix."""
        level = "entries" if self.level == Tile.ENTRIES else str(self.level)
        tail = f".p/{self.width}" if self.partial else ""
        return f"tile/{level}/{encode_index(self.index)}{tail}"

    def bundle(self) -> Tile:
        """The entry bundle beside this level-0 tile."""
        return Tile(Tile.ENTRIES, self.index, self.width)


#: Decoded tiles by coordinate, as a reader or writer holds them.
Tiles = Mapping[Tile, Sequence[bytes]]


def encode_index(index: int) -> str:
    """Rule 2: ``1234067`` -> ``x001/x234/067``; ``0`` -> ``000``."""
    if not merkle.is_tree_size(index):
        raise TileFormatError(f"tile index {index!r} is not a uint64")
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    parts = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + p for p in parts[:-1]), parts[-1]])


def parse_path(path: str) -> Tile:
    """Rule 2, strictly: the tile a canonical path names; ``TileFormatError`` otherwise."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileFormatError(f"{path!r} is not a tile path (tile/<L>/<N>[.p/<W>])")
    if parts[1] == "entries":
        level = Tile.ENTRIES
    elif _DECIMAL.fullmatch(parts[1]) and int(parts[1]) <= MAX_LEVEL:
        level = int(parts[1])
    else:
        raise TileFormatError(f"tile level {parts[1]!r} is not 0..{MAX_LEVEL}", where=path)
    elements, width = parts[2:], TILE_WIDTH
    if len(elements) >= 2 and elements[-2].endswith(".p"):
        w = elements[-1]
        if not (_DECIMAL.fullmatch(w) and 1 <= int(w) < TILE_WIDTH):
            raise TileFormatError(f"partial width {w!r} is not 1..255", where=path)
        width, elements = int(w), [*elements[:-2], elements[-2][:-2]]
    digits = []
    for i, e in enumerate(elements):
        last = i == len(elements) - 1
        body = e if last else e[1:]
        if (not last and not e.startswith("x")) or not _ELEMENT.fullmatch(body):
            raise TileFormatError(f"index element {e!r} is not x<ddd> or a last <ddd>", where=path)
        digits.append(body)
    if len(digits) > 1 and digits[0] == "000":
        raise TileFormatError("index has a leading x000 element (not canonical)", where=path)
    index = int("".join(digits))
    if not merkle.is_tree_size(index):
        raise TileFormatError("tile index exceeds a uint64", where=path)
    return Tile(level, index, width)


# ---------------------------------------------------------------------------------------------
# Which tiles a tree of a given size has (rules 1 and 4)
# ---------------------------------------------------------------------------------------------


def level_size(size: int, level: int) -> int:
    """How many hashes tile level ``level`` holds in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level) if TILE_HEIGHT * level < 64 else 0


def tile_at(size: int, level: int, index: int) -> Tile:
    """The tile ``(level, index)`` of a tree of ``size``, with its width in that tree.

    ``TileFormatError`` if the tree has no such tile (it would be empty).
    """
    held = level_size(size, max(level, 0)) - index * TILE_WIDTH
    if held <= 0:
        raise TileFormatError(f"a tree of size {size} has no tile {index} at level {level}")
    return Tile(level, index, min(held, TILE_WIDTH))


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The hash tiles and bundles a tree of ``new_size`` has that one of ``old_size`` had
    not: every full tile completed since, and the partial tile of each level at ``new_size``
    (rule 4: what was written for ``old_size`` never changes). Bundles come after their
    level-0 tile; each level's tiles in index order."""
    if not (merkle.is_tree_size(old_size) and merkle.is_tree_size(new_size)):
        raise TileFormatError(f"tree sizes {old_size!r}, {new_size!r} are not uint64")
    if old_size > new_size:
        raise TileFormatError(f"tree size {new_size} is smaller than {old_size}")
    out: list[Tile] = []
    level = 0
    while (count := level_size(new_size, level)) > 0:
        first = level_size(old_size, level) // TILE_WIDTH  # first tile not yet full at old
        old_count = level_size(old_size, level)
        for index in range(first, (count + TILE_WIDTH - 1) // TILE_WIDTH):
            tile = tile_at(new_size, level, index)
            if tile.partial and index * TILE_WIDTH + tile.width == old_count:
                continue  # the same partial tile as at old_size
            out.append(tile)
            if level == 0:
                out.append(tile.bundle())
        level += 1
    return out


# ---------------------------------------------------------------------------------------------
# Encoding (rules 1 and 3)
# ---------------------------------------------------------------------------------------------


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    """A tile's bytes: its 1..256 hashes, concatenated."""
    if not 1 <= len(hashes) <= TILE_WIDTH or not all(merkle.is_hash(h) for h in hashes):
        raise TileFormatError(f"a tile is 1..{TILE_WIDTH} hashes of {merkle.HASH_SIZE} bytes")
    return b"".join(hashes)


def decode_tile(tile: Tile, data: bytes) -> list[bytes]:
    """The hashes of ``tile``; ``TileFormatError`` unless it is exactly ``width`` hashes."""
    if tile.level == Tile.ENTRIES:
        raise TileFormatError("an entry bundle is not a hash tile", where=tile.path)
    if len(data) != tile.width * merkle.HASH_SIZE:
        raise TileFormatError(
            f"{len(data)} bytes, not {tile.width} hashes of {merkle.HASH_SIZE}", where=tile.path
        )
    step = merkle.HASH_SIZE
    return [data[i : i + step] for i in range(0, len(data), step)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry prefixed with its big-endian uint16 length (rule 3)."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileFormatError(f"a bundle holds 1..{TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_BYTES:
            raise TileEntryTooLargeError(
                f"an entry of {len(e)} bytes exceeds a bundle's {MAX_ENTRY_BYTES}-byte limit"
            )
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def decode_bundle(tile: Tile, data: bytes) -> list[bytes]:
    """The entries of bundle ``tile``: exactly ``width`` of them and no trailing bytes."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileFormatError(f"a length prefix is cut at byte {pos}", where=tile.path)
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            raise TileFormatError(f"entry {len(entries)} runs past the end", where=tile.path)
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    if len(entries) != tile.width:
        raise TileFormatError(f"{len(entries)} entries, not {tile.width}", where=tile.path)
    return entries


# ---------------------------------------------------------------------------------------------
# Perfect subtrees from tiles (rule 5), and the proofs built from them
# ---------------------------------------------------------------------------------------------


def _locate(size: int, coord: Coord) -> tuple[Tile, int, int]:
    """Rule 5: the tile holding node ``coord`` of a tree of ``size``, and its hash range."""
    height, index = coord
    _, end = subtrees.node_range(height, index)
    if end > size:
        raise TileFormatError(f"node {coord} is not a perfect subtree of a tree of size {size}")
    level, rest = divmod(height, TILE_HEIGHT)
    first, count = index << rest, 1 << rest
    tile = tile_at(size, level, first // TILE_WIDTH)
    return tile, first % TILE_WIDTH, count


def tiles_for_nodes(size: int, coords: Iterable[Coord]) -> list[Tile]:
    """The tiles (with their widths at ``size``) that hold these nodes, sorted, distinct."""
    return sorted({_locate(size, c)[0] for c in coords})


def node_hashes(size: int, coords: Iterable[Coord], tiles: Tiles) -> dict[Coord, bytes]:
    """Rule 5: the hash of each node, folded from the decoded ``tiles`` of a tree of
    ``size``. ``TileFormatError`` if a tile is missing or has the wrong width."""
    out: dict[Coord, bytes] = {}
    for c in coords:
        tile, first, count = _locate(size, c)
        hashes = tiles.get(tile)
        if hashes is None:
            raise TileFormatError(f"tile {tile.path} is needed for node {c} but missing")
        if len(hashes) != tile.width:
            raise TileFormatError(f"{len(hashes)} hashes, not {tile.width}", where=tile.path)
        run = hashes[first : first + count]
        out[c] = run[0] if count == 1 else merkle.root(run)
    return out


# Every function below takes ``tree``, the size of the tree whose tiles are held (default:
# the size asked about). A perfect subtree of a smaller tree is a perfect subtree of every
# larger one, so the tiles of one verified checkpoint serve proofs for any smaller size,
# and a reader never needs a partial tile of a size no checkpoint named (rule 4).


def _ranges_tiles(tree: int, ranges: Sequence[tuple[int, int]]) -> list[Tile]:
    return tiles_for_nodes(tree, subtrees.nodes_for_ranges(ranges))


def _ranges_hashes(tree: int, ranges: Sequence[tuple[int, int]], tiles: Tiles) -> list[bytes]:
    nodes = node_hashes(tree, subtrees.nodes_for_ranges(ranges), tiles)
    return subtrees.hashes_for_ranges(ranges, nodes)


def _tree(size: int, tree: int | None) -> int:
    if tree is None:
        return size
    if not merkle.is_tree_size(tree) or tree < size:
        raise TileFormatError(f"tiles of a tree of size {tree!r} cannot serve size {size}")
    return tree


def inclusion_tiles(index: int, size: int, tree: int | None = None) -> list[Tile]:
    """Tiles needed for the inclusion proof of leaf ``index``, and its leaf hash."""
    ranges = [(index, index + 1), *merkle.inclusion_path_nodes(index, size)]
    return _ranges_tiles(_tree(size, tree), ranges)


def inclusion_proof(index: int, size: int, tiles: Tiles, tree: int | None = None) -> list[bytes]:
    """PATH(index, D[size]) computed from tiles (equal to ``merkle.inclusion_proof``)."""
    return _ranges_hashes(_tree(size, tree), merkle.inclusion_path_nodes(index, size), tiles)


def leaf_from_tiles(index: int, size: int, tiles: Tiles) -> bytes:
    """The leaf hash of entry ``index`` as the level-0 tile of a tree of ``size`` states it."""
    return node_hashes(size, [(0, index)], tiles)[(0, index)]


def consistency_tiles(old_size: int, new_size: int, tree: int | None = None) -> list[Tile]:
    """Tiles needed for PROOF(old_size, D[new_size])."""
    ranges = merkle.consistency_path_nodes(old_size, new_size)
    return _ranges_tiles(_tree(new_size, tree), ranges)


def consistency_proof(
    old_size: int, new_size: int, tiles: Tiles, tree: int | None = None
) -> list[bytes]:
    """PROOF(old_size, D[new_size]) computed from tiles."""
    ranges = merkle.consistency_path_nodes(old_size, new_size)
    return _ranges_hashes(_tree(new_size, tree), ranges, tiles)


def root_tiles(size: int, tree: int | None = None) -> list[Tile]:
    """Tiles needed to fold the root of the tree of ``size`` (its frontier's nodes)."""
    return tiles_for_nodes(_tree(size, tree), subtrees.Frontier.coordinates(size))


def frontier(size: int, tiles: Tiles, tree: int | None = None) -> subtrees.Frontier:
    """The frontier of the tree of ``size`` (``root_tiles`` tell which tiles suffice)."""
    coords = subtrees.Frontier.coordinates(size)
    nodes = node_hashes(_tree(size, tree), coords, tiles)
    return subtrees.Frontier.from_hashes(size, [nodes[c] for c in coords])


def root(size: int, tiles: Tiles, tree: int | None = None) -> bytes:
    """The root of the tree of ``size``, folded from tiles."""
    return frontier(size, tiles, tree).root()


def build_tiles(leaf_hashes: Sequence[bytes]) -> dict[Tile, list[bytes]]:
    """Every hash tile of the tree of these leaves (for trees held in memory: tests, and
    readers checking a writer). Level ``l+1`` holds the MTH of each full tile of ``l``."""
    out: dict[Tile, list[bytes]] = {}
    level, hashes = 0, list(leaf_hashes)
    while hashes:
        for i in range(0, len(hashes), TILE_WIDTH):
            run = hashes[i : i + TILE_WIDTH]
            out[Tile(level, i // TILE_WIDTH, len(run))] = run
        full = len(hashes) // TILE_WIDTH * TILE_WIDTH
        hashes = [merkle.root(hashes[i : i + TILE_WIDTH]) for i in range(0, full, TILE_WIDTH)]
        level += 1
    return out
