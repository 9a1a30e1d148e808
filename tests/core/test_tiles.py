"""Tests for jcm_sync.core.tiles: C2SP tlog-tiles paths, encodings and proofs from tiles.

The vectors marked "spec" are quoted from C2SP tlog-tiles (c2sp.org/tlog-tiles, the
"Merkle Tree" and "Partial Tiles" sections of the editor's copy, tlog-tiles.md in the
C2SP/C2SP repository).
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import merkle, tiles
from jcm_sync.core.tiles import Tile
from jcm_sync.errors import TileEntryTooLargeError, TileFormatError


@cache
def _leaves(n: int) -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n))


@cache
def _tiles(n: int) -> dict[Tile, list[bytes]]:
    return tiles.build_tiles(_leaves(n))


# --- paths (rule 2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (Tile(0, 1234067), "tile/0/x001/x234/067"),  # spec: "index 1234067 ... x001/x234/067"
        (Tile(0, 0), "tile/0/000"),
        (Tile(1, 999), "tile/1/999"),
        (Tile(2, 1000, 17), "tile/2/x001/000.p/17"),
        (Tile(Tile.ENTRIES, 5, 112), "tile/entries/005.p/112"),
        (Tile(63, 2**64 - 1), "tile/63/x018/x446/x744/x073/x709/x551/615"),
    ],
    ids=["spec-1234067", "zero", "three-digits", "partial", "bundle", "largest"],
)
def test_paths_encode_and_parse_back(tile: Tile, path: str) -> None:
    """A tile's path is the spec's canonical form and parses back to the same tile."""
    assert tile.path == path
    assert tiles.parse_path(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1234067",  # not split
        "tile/0/x001/234/067",  # middle element without x
        "tile/0/001/x234",  # last element with x
        "tile/0/x000/001",  # leading zero element
        "tile/01/000",  # level with a leading zero
        "tile/64/000",  # level past 63
        "tile/0/000.p/256",  # width of a full tile
        "tile/0/000.p/0",  # empty tile
        "tile/0/000.p/07",  # width with a leading zero
        "tile/0/00",  # two digits
        "tiles/0/000",
        "tile/0",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # past uint64
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    """Every path but the canonical one is a TileFormatError (one path per tile)."""
    with pytest.raises(TileFormatError):
        tiles.parse_path(path)


@given(st.integers(0, 2**64 - 1), st.integers(1, 256), st.integers(-1, 63))
def test_any_tile_path_round_trips(index: int, width: int, level: int) -> None:
    """parse_path(tile.path) == tile for every coordinate."""
    tile = Tile(level, index, width)
    assert tiles.parse_path(tile.path) == tile


# --- which tiles a tree has (rules 1 and 4) ----------------------------------------------


def test_spec_example_tree_of_70000() -> None:
    """Spec: 273 full level-0 tiles, a partial of width 112, one full level-1 tile, a
    partial level-1 tile of width 17, and a partial level-2 tile of width 1."""
    made = [t for t in tiles.new_tiles(0, 70_000) if t.level >= 0]
    level0 = [t for t in made if t.level == 0]
    assert [t for t in level0 if not t.partial] == [Tile(0, i) for i in range(273)]
    assert [t for t in level0 if t.partial] == [Tile(0, 273, 112)]
    assert [t for t in made if t.level == 1] == [Tile(1, 0), Tile(1, 1, 17)]
    assert [t for t in made if t.level == 2] == [Tile(2, 0, 1)]
    assert set(made) == set(_tiles(70_000))


def test_spec_example_tree_of_256() -> None:
    """Spec: a tree of size 256 is a full level-0 tile and a partial level-1 tile of width 1."""
    assert tiles.new_tiles(0, 256) == [Tile(0, 0), Tile(-1, 0), Tile(1, 0, 1)]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (0, 0, []),
        (5, 5, []),
        (5, 7, [Tile(0, 0, 7), Tile(-1, 0, 7)]),
        (255, 256, [Tile(0, 0), Tile(-1, 0), Tile(1, 0, 1)]),
        (256, 257, [Tile(0, 1, 1), Tile(-1, 1, 1)]),
        (300, 600, [Tile(0, 1), Tile(-1, 1), Tile(0, 2, 88), Tile(-1, 2, 88), Tile(1, 0, 2)]),
    ],
    ids=["empty", "unchanged", "partial-grows", "tile-completes", "new-partial", "several"],
)
def test_new_tiles_are_what_growth_adds(old: int, new: int, expected: list[Tile]) -> None:
    """Only tiles completed since, and the partial tiles at the new size, are new."""
    assert tiles.new_tiles(old, new) == expected


@settings(max_examples=40)
@given(st.integers(0, 3000), st.integers(0, 3000))
def test_growth_writes_every_tile_of_the_new_tree(a: int, b: int) -> None:
    """Tiles written at size a, then new_tiles(a, b), cover every tile of the tree at b."""
    old, new = min(a, b), max(a, b)
    written = set(tiles.new_tiles(0, old)) | set(tiles.new_tiles(old, new))
    assert set(tiles.new_tiles(0, new)) <= written


def test_shrinking_is_refused() -> None:
    """A tree never shrinks: new_tiles(10, 5) is refused."""
    with pytest.raises(TileFormatError):
        tiles.new_tiles(10, 5)


# --- encodings (rules 1 and 3) ----------------------------------------------------------


def test_tile_bytes_round_trip_and_wrong_lengths_are_refused() -> None:
    """A tile is its hashes concatenated; any other length for its width is refused."""
    hashes = list(_leaves(3))
    data = tiles.encode_tile(hashes)
    assert len(data) == 96
    assert tiles.decode_tile(Tile(0, 0, 3), data) == hashes
    for bad in (data[:-1], data + b"\0", data[:64]):
        with pytest.raises(TileFormatError):
            tiles.decode_tile(Tile(0, 0, 3), bad)
    assert len(tiles.encode_tile(list(_leaves(256)))) == 8192  # spec: "8,192 bytes"


def test_bundle_is_uint16_length_prefixed() -> None:
    """Each entry is prefixed with its big-endian uint16 length (spec, "Log entries")."""
    data = tiles.encode_bundle([b"ab", b"", b"x" * 300])
    assert data[:4] == b"\x00\x02ab"
    assert data[4:6] == b"\x00\x00"
    assert data[6:8] == b"\x01\x2c"
    assert tiles.decode_bundle(Tile(-1, 0, 3), data) == [b"ab", b"", b"x" * 300]


@pytest.mark.parametrize(
    "data",
    [b"\x00\x02ab\x00", b"\x00\x05ab", b"\x00\x02ab", b"\x00\x01a\x00\x01b\x00\x01c\x00\x01d"],
    ids=["cut-prefix", "runs-past-end", "too-few", "too-many"],
)
def test_malformed_bundles_are_refused(data: bytes) -> None:
    """A bundle must hold exactly its width of entries and nothing after them."""
    with pytest.raises(TileFormatError):
        tiles.decode_bundle(Tile(-1, 0, 3), data)


def test_an_entry_too_long_for_a_bundle_is_refused() -> None:
    """65,535 bytes fit a uint16 length; 65,536 is TileEntryTooLargeError."""
    assert len(tiles.encode_bundle([b"a" * 65_535])) == 65_537
    with pytest.raises(TileEntryTooLargeError):
        tiles.encode_bundle([b"a" * 65_536])


# --- proofs from tiles (rule 5) -------------------------------------------------------


def test_level_one_tiles_hold_the_roots_of_full_level_zero_tiles() -> None:
    """Spec: "each hash in a tile is the Merkle Tree Hash of a full tile at the level below"."""
    t = _tiles(70_000)
    assert t[Tile(1, 0)][5] == merkle.root(t[Tile(0, 5)])
    assert t[Tile(2, 0, 1)][0] == merkle.root(t[Tile(1, 0)])


@pytest.mark.parametrize("size", [1, 7, 255, 256, 257, 511, 4096, 65_536, 70_000])
def test_root_from_tiles_is_the_trees_root(size: int) -> None:
    """The root folded from root_tiles(size) alone equals the MTH of all leaves."""
    full = _tiles(70_000 if size > 4096 else 4096)
    # tiles of a smaller tree: the prefix of the larger one's, at its own widths
    mine = {t: _slice(full, t) for t in tiles.root_tiles(size)}
    assert tiles.root(size, mine) == merkle.root(_leaves(size))


def _slice(full: dict[Tile, list[bytes]], t: Tile) -> list[bytes]:
    """Tile t (of a smaller tree) cut from the same position of a larger tree (rule 4)."""
    whole = full.get(Tile(t.level, t.index)) or next(
        v for k, v in full.items() if (k.level, k.index) == (t.level, t.index)
    )
    return whole[: t.width]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_inclusion_proofs_from_tiles_equal_the_rfc_proofs(data: st.DataObject) -> None:
    """For any size and index, the proof from the needed tiles is merkle's and verifies."""
    size = data.draw(st.integers(1, 4096))
    index = data.draw(st.integers(0, size - 1))
    full = _tiles(4096)
    needed = {t: _slice(full, t) for t in tiles.inclusion_tiles(index, size)}
    proof = tiles.inclusion_proof(index, size, needed)
    leaves = _leaves(size)
    assert proof == merkle.inclusion_proof(leaves, index)
    assert tiles.leaf_from_tiles(index, size, needed) == leaves[index]
    assert merkle.verify_inclusion(leaves[index], index, size, proof, merkle.root(leaves))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_consistency_proofs_from_tiles_equal_the_rfc_proofs(data: st.DataObject) -> None:
    """For any two sizes, the proof from the newer tree's tiles is merkle's."""
    new = data.draw(st.integers(1, 4096))
    old = data.draw(st.integers(0, new))
    full = _tiles(4096)
    needed = {t: _slice(full, t) for t in tiles.consistency_tiles(old, new)}
    proof = tiles.consistency_proof(old, new, needed)
    assert proof == merkle.consistency_proof(_leaves(new), old)


def test_proofs_across_tile_levels_at_70000() -> None:
    """Proofs that cross level-1 and level-2 tiles (a tree of 70,000) are the RFC's."""
    full, leaves = _tiles(70_000), _leaves(70_000)
    for index in (0, 65_535, 65_536, 69_999):
        needed = {t: full[t] for t in tiles.inclusion_tiles(index, 70_000)}
        assert tiles.inclusion_proof(index, 70_000, needed) == merkle.inclusion_proof(leaves, index)
    needed = {t: full[t] for t in tiles.consistency_tiles(65_537, 70_000)}
    assert tiles.consistency_proof(65_537, 70_000, needed) == merkle.consistency_proof(
        leaves, 65_537
    )


def test_a_changed_tile_gives_a_proof_that_does_not_verify() -> None:
    """One altered hash in a needed tile makes the proof fail against the signed root."""
    full, leaves = _tiles(4096), _leaves(1000)
    needed = {t: list(_slice(full, t)) for t in tiles.inclusion_tiles(10, 1000)}
    level1 = next(t for t in needed if t.level == 1)
    needed[level1][1] = hashlib.sha256(b"forged").digest()
    proof = tiles.inclusion_proof(10, 1000, needed)
    assert not merkle.verify_inclusion(leaves[10], 10, 1000, proof, merkle.root(leaves))


def test_a_missing_or_short_tile_is_refused() -> None:
    """Computing from tiles that lack a needed one, or one of the wrong width, is refused."""
    with pytest.raises(TileFormatError, match="missing"):
        tiles.inclusion_proof(3, 1000, {})
    needed = {t: _slice(_tiles(4096), t)[:-1] for t in tiles.inclusion_tiles(3, 1000)}
    with pytest.raises(TileFormatError):
        tiles.inclusion_proof(3, 1000, needed)


def test_a_node_outside_the_tree_is_refused() -> None:
    """No tile holds a node that is not a perfect subtree of the tree."""
    with pytest.raises(TileFormatError):
        tiles.tiles_for_nodes(100, [(7, 0)])


def test_the_tiles_of_a_larger_tree_serve_proofs_of_a_smaller_one() -> None:
    """Rule 4's corollary: tiles of a verified tree of 4,096 give the proofs (and roots) of
    any smaller size without a partial tile of that size; a smaller tree cannot serve."""
    full, leaves = _tiles(4096), _leaves(1000)
    needed = {t: full[t] for t in tiles.consistency_tiles(300, 1000, 4096)}  # tiles of 4096
    assert tiles.consistency_proof(300, 1000, needed, 4096) == merkle.consistency_proof(leaves, 300)
    roots = {t: full[t] for t in tiles.root_tiles(1000, 4096)}
    assert tiles.root(1000, roots, 4096) == merkle.root(leaves)
    with pytest.raises(TileFormatError):
        tiles.inclusion_tiles(5, 1000, 999)
