"""Tests for jcm_sync.core.subtrees: stored perfect-subtree coordinates and the frontier."""

from __future__ import annotations

import pytest

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import BadDataError
from tests.core.merkle_reference import ENTRIES, LEAVES, N_ALL, SOME_HASH, STORE, ref_mth, ref_root

# ---------------------------------------------------------------------------------------------
# Coordinates for a store
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, []),
        (1, [(0, 1)]),
        (6, [(0, 4), (4, 6)]),
        (7, [(0, 4), (4, 6), (6, 7)]),
        (8, [(0, 8)]),
        (13, [(0, 8), (8, 12), (12, 13)]),
    ],
)
def test_perfect_subtrees_follow_the_bits_of_size(
    size: int, expected: list[tuple[int, int]]
) -> None:
    """[0, size) splits into one aligned perfect subtree per set bit, largest first."""
    assert subtrees.perfect_subtrees(size) == expected


def test_range_decomposition_rejects_unaligned_ranges() -> None:
    """A range no proof can need (unaligned start, empty, reversed) raises BadDataError."""
    assert subtrees.range_decomposition(8, 13) == [(8, 12), (12, 13)]
    for start, end in [(1, 3), (2, 5), (4, 4), (5, 4), (-2, 0), (6, 9)]:
        with pytest.raises(BadDataError):
            subtrees.range_decomposition(start, end)


def test_node_coordinates_round_trip() -> None:
    """(level, index) names leaves [index * 2**level, (index + 1) * 2**level) and back."""
    assert subtrees.node_range(0, 5) == (5, 6)
    assert subtrees.node_range(3, 2) == (16, 24)
    assert subtrees.range_node(16, 24) == (3, 2)
    for level in range(6):
        for index in range(10):
            assert subtrees.range_node(*subtrees.node_range(level, index)) == (level, index)
    for bad in [(2, 6), (4, 7), (1, 4), (3, 3)]:
        with pytest.raises(BadDataError):
            subtrees.range_node(*bad)
    with pytest.raises(BadDataError):
        subtrees.node_range(64, 1)


def test_every_stored_node_hash_is_the_mth_of_its_range() -> None:
    """Frontier.append emits every perfect node of the tree once, with the right hash."""
    expected = {(level, index) for level in range(7) for index in range(N_ALL >> level)}
    assert set(STORE) == expected
    for (level, index), h in STORE.items():
        start, end = subtrees.node_range(level, index)
        assert h == ref_mth(ENTRIES[start:end])


def test_frontier_tracks_root_and_perfect_subtrees() -> None:
    """After each append the frontier holds the perfect-subtree hashes and gives the root."""
    frontier = subtrees.Frontier.empty()
    for n in range(1, N_ALL + 1):
        frontier, created = frontier.append(LEAVES[n - 1])
        assert frontier.size == n
        assert frontier.root() == ref_root(n)
        assert list(frontier.hashes) == [
            ref_mth(ENTRIES[s:e]) for s, e in subtrees.perfect_subtrees(n)
        ]
        # One node per trailing one-bit of the old size, plus the leaf.
        assert len(created) == ((n - 1) ^ n).bit_count()
        assert created[0] == subtrees.Subtree(0, n - 1, LEAVES[n - 1])
        coordinates = subtrees.Frontier.coordinates(n)
        rebuilt = subtrees.Frontier.from_hashes(n, [STORE[c] for c in coordinates])
        assert rebuilt == frontier


def test_frontier_rejects_inconsistent_state() -> None:
    """A frontier with the wrong number of hashes, or a short hash, is bad data."""
    with pytest.raises(BadDataError, match="2 frontier hashes"):
        subtrees.Frontier.from_hashes(3, [SOME_HASH])
    with pytest.raises(BadDataError):
        subtrees.Frontier.from_hashes(1, [b"short"])
    with pytest.raises(BadDataError):
        subtrees.Frontier.empty().append(b"short")


def test_hashes_for_ranges_reports_missing_nodes() -> None:
    """A store missing a needed node gets a BadDataError naming the node."""
    ranges = merkle.inclusion_path_nodes(0, 8)
    partial = dict(STORE)
    del partial[(2, 1)]
    with pytest.raises(BadDataError, match=r"\(2, 1\)"):
        subtrees.hashes_for_ranges(ranges, partial)


@pytest.mark.parametrize("size", [2**40 + 12345, 2**63 + 7, 2**64 - 1])
def test_proofs_of_huge_trees_need_logarithmically_many_nodes(size: int) -> None:
    """Serving any proof of a huge tree reads O(log N) stored nodes, never the leaves."""
    bound = 2 * size.bit_length() + 2
    for index in (0, 1, size // 3, size - 2, size - 1):
        assert len(subtrees.nodes_for_ranges(merkle.inclusion_path_nodes(index, size))) <= bound
    for old in (1, 2, size // 3, size - 1):
        assert len(subtrees.nodes_for_ranges(merkle.consistency_path_nodes(old, size))) <= bound
    assert len(subtrees.nodes_for_ranges(subtrees.perfect_subtrees(size))) == size.bit_count()
