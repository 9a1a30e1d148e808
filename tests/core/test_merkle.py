"""Tests for jcm_sync.core.merkle: RFC 9162 hashing, proofs and proof coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import BadDataError
from tests.core.merkle_reference import (
    ENTRIES,
    LEAVES,
    N_ALL,
    SOME_HASH,
    STORE,
    ref_path,
    ref_root,
    ref_subproof,
    sha256,
    store_of,
)

# ---------------------------------------------------------------------------------------------
# Published vectors.
#
# Source: transparency-dev/merkle, proof/verify_test.go
# (commit 02194e9afb6c1d95b5381350007963aa70fff472), the RFC 6962 reference vectors inherited
# from google/certificate-transparency's merkle_tree_test. The inclusion vectors there
# number leaves from 1; here they are 0-based.
# ---------------------------------------------------------------------------------------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]

CT_ROOTS = [  # root of the tree of the first 1, 2, ..., 8 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

CT_EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

CT_INCLUSION = [  # (0-based leaf index, tree size, proof)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]

CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

CT_LEAF_HASHES = [merkle.leaf_hash(d) for d in CT_LEAVES]


def _hexes(proof: Sequence[bytes]) -> list[str]:
    return [p.hex() for p in proof]


def _inclusion_shape(index: int, size: int) -> tuple[bool, ...] | None:
    """Which side each sibling of the path is on: all the RFC verifier looks at."""
    if not 0 <= index < size:
        return None
    return tuple(end <= index for _, end in merkle.inclusion_path_nodes(index, size))


def _consistency_shape(old: int, new: int) -> tuple[tuple[bool, bool], ...] | None:
    """Where each node of a consistency proof lies relative to the old tree."""
    if not 0 <= old <= new:
        return None
    return tuple(
        (end <= old, start < old) for start, end in merkle.consistency_path_nodes(old, new)
    )


# ---------------------------------------------------------------------------------------------
# Hashing and roots
# ---------------------------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    """The root of the empty tree is SHA-256 of the empty string."""
    assert merkle.root([]).hex() == CT_EMPTY_ROOT
    assert merkle.EMPTY_ROOT.hex() == CT_EMPTY_ROOT
    assert subtrees.Frontier.empty().root().hex() == CT_EMPTY_ROOT


def test_leaf_and_node_hash_use_the_domain_prefixes() -> None:
    """Leaf and node hashes prefix 0x00 and 0x01, so a leaf cannot pose as a node."""
    assert merkle.leaf_hash(b"ab") == sha256(b"\x00ab")
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == sha256(b"\x01" + b"a" * 32 + b"b" * 32)
    assert merkle.leaf_hash(b"\x01" + b"a" * 32 + b"b" * 32) != merkle.node_hash(
        b"a" * 32, b"b" * 32
    )


@pytest.mark.parametrize(
    ("size", "expected"), list(enumerate(CT_ROOTS, start=1)), ids=lambda v: str(v)[:8]
)
def test_roots_match_ct_vectors(size: int, expected: str) -> None:
    """The roots of the certificate-transparency 8-leaf test tree match the published ones."""
    assert merkle.root(CT_LEAF_HASHES[:size]).hex() == expected


def test_root_matches_reference_for_every_size() -> None:
    """root() agrees with the RFC recursion written independently, for sizes 0..70."""
    for n in range(N_ALL + 1):
        assert merkle.root(LEAVES[:n]) == ref_root(n)


def test_root_rejects_bad_leaf_hash() -> None:
    """A leaf hash that is not 32 bytes is bad data, and the error names the leaf."""
    with pytest.raises(BadDataError, match="leaf 1"):
        merkle.root([LEAVES[0], b"short"])


# ---------------------------------------------------------------------------------------------
# Inclusion proofs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size", "proof"), CT_INCLUSION, ids=[f"{i}-in-{n}" for i, n, _ in CT_INCLUSION]
)
def test_inclusion_proofs_match_ct_vectors(index: int, size: int, proof: list[str]) -> None:
    """Inclusion proofs for the CT test tree equal the published ones and verify."""
    leaves = CT_LEAF_HASHES[:size]
    assert _hexes(merkle.inclusion_proof(leaves, index)) == proof
    ranges = merkle.inclusion_path_nodes(index, size)
    assert _hexes(subtrees.hashes_for_ranges(ranges, store_of(leaves))) == proof
    assert merkle.verify_inclusion(
        leaves[index],
        index,
        size,
        [bytes.fromhex(p) for p in proof],
        bytes.fromhex(CT_ROOTS[size - 1]),
    )


def test_inclusion_proofs_for_every_size_and_index() -> None:
    """For sizes 1..70 and every index, the proof is RFC PATH, verifies, and the store agrees."""
    for n in range(1, N_ALL + 1):
        leaves = LEAVES[:n]
        for i in range(n):
            proof = merkle.inclusion_proof(leaves, i)
            assert proof == ref_path(i, ENTRIES[:n]), (i, n)
            stored = subtrees.hashes_for_ranges(merkle.inclusion_path_nodes(i, n), STORE)
            assert stored == proof, (i, n)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, ref_root(n)), (i, n)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (-1, 3), (5, 3)])
def test_inclusion_proof_out_of_range_is_bad_data(index: int, size: int) -> None:
    """Asking for the proof of a leaf the tree does not have raises BadDataError."""
    with pytest.raises(BadDataError):
        merkle.inclusion_proof(LEAVES[:size], index)
    with pytest.raises(BadDataError):
        merkle.inclusion_path_nodes(index, size)


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    """Corruptions of a valid inclusion proof, after transparency-dev's corruptInclusionProof."""
    probes = [
        ("index - 1", leaf, index - 1, size, proof, root),
        ("index + 1", leaf, index + 1, size, proof, root),
        ("index ^ 2", leaf, index ^ 2, size, proof, root),
        ("size * 2", leaf, index, size * 2, proof, root),
        ("size // 2", leaf, index, size // 2, proof, root),
        ("wrong leaf", b"WrongLeaf", index, size, proof, root),
        ("other leaf", SOME_HASH, index, size, proof, root),
        ("empty root", leaf, index, size, proof, merkle.EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("trailing garbage", leaf, index, size, [*proof, b""], root),
        ("trailing root", leaf, index, size, [*proof, root], root),
        ("preceding garbage", leaf, index, size, [b"", *proof], root),
        ("preceding root", leaf, index, size, [root, *proof], root),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit 3", leaf, index, size, wrong, root))
    if proof:
        probes.append(("removed component", leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append(
            ("inserted component", leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)
        )
    return probes


def test_corrupted_inclusion_proofs_are_refused() -> None:
    """Every transparency-dev corruption of every proof up to size 40 is refused."""
    for n in range(1, 41):
        root = ref_root(n)
        for i in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], i)
            for desc, leaf, index, size, wrong, r in _inclusion_probes(
                i, n, proof, root, LEAVES[i]
            ):
                assert not merkle.verify_inclusion(leaf, index, size, wrong, r), (desc, i, n)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_tampered_inclusion_input_is_refused(data: st.DataObject) -> None:
    """Flipping any bit of a proof hash, the leaf or the root, or changing index or size, fails."""
    n = data.draw(st.integers(1, N_ALL), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = merkle.inclusion_proof(LEAVES[:n], i)
    root, leaf = ref_root(n), LEAVES[i]
    target = data.draw(st.sampled_from(["proof", "leaf", "root", "index", "size"]), label="what")
    if target in ("proof", "leaf", "root"):
        if target == "proof" and not proof:
            return
        k = data.draw(st.integers(0, len(proof) - 1)) if target == "proof" else 0
        byte = data.draw(st.integers(0, 31), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")

        def flip(h: bytes) -> bytes:
            return h[:byte] + bytes([h[byte] ^ (1 << bit)]) + h[byte + 1 :]

        if target == "proof":
            proof = [*proof[:k], flip(proof[k]), *proof[k + 1 :]]
        elif target == "leaf":
            leaf = flip(leaf)
        else:
            root = flip(root)
        assert not merkle.verify_inclusion(leaf, i, n, proof, root)
    elif target == "index":
        other = data.draw(st.integers(0, 2 * n).filter(lambda x: x != i), label="other")
        assert not merkle.verify_inclusion(leaf, other, n, proof, root)
    else:
        # A proof authenticates the size only through the shape of the path: a size whose
        # path turns the same way at every level runs the very same hashes (see
        # test_the_checkpoint_not_the_proof_binds_the_size). Any other size must fail.
        other = data.draw(st.integers(0, 2 * n + 2).filter(lambda x: x != n), label="other")
        same_shape = _inclusion_shape(i, other) == _inclusion_shape(i, n)
        assert merkle.verify_inclusion(leaf, i, other, proof, root) is same_shape


_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.binary(max_size=40),
    st.text(max_size=5),
    st.lists(st.binary(min_size=31, max_size=33), max_size=8),
    st.floats(allow_nan=True),
)


@settings(max_examples=300, deadline=None)
@given(leaf=_junk, index=_junk, size=_junk, proof=_junk, root=_junk)
def test_verify_inclusion_never_raises(
    leaf: object, index: object, size: object, proof: object, root: object
) -> None:
    """verify_inclusion answers False, never an exception, whatever it is handed."""
    assert merkle.verify_inclusion(leaf, index, size, proof, root) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, 0), (1, 1), (2, 1), (-1, 1), (0, 2**64), (True, 2)],
    ids=["empty", "index=size", "index>size", "negative", "size>uint64", "bool"],
)
def test_verify_inclusion_refuses_impossible_coordinates(index: int, size: int) -> None:
    """A leaf index outside the tree, or a size beyond uint64, never verifies."""
    assert not merkle.verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_verify_inclusion_single_leaf() -> None:
    """In a one-leaf tree the root is the leaf hash and the proof is empty; short hashes fail."""
    h = merkle.leaf_hash(b"data")
    assert merkle.verify_inclusion(h, 0, 1, [], h)
    assert not merkle.verify_inclusion(h, 0, 1, [], b"")
    assert not merkle.verify_inclusion(b"", 0, 1, [], h)
    assert not merkle.verify_inclusion(h, 0, 1, iter(()), h)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Consistency proofs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "proof"), CT_CONSISTENCY, ids=[f"{m}-to-{n}" for m, n, _ in CT_CONSISTENCY]
)
def test_consistency_proofs_match_ct_vectors(old: int, new: int, proof: list[str]) -> None:
    """Consistency proofs for the CT test tree equal the published ones and verify."""
    leaves = CT_LEAF_HASHES[:new]
    assert _hexes(merkle.consistency_proof(leaves, old)) == proof
    ranges = merkle.consistency_path_nodes(old, new)
    assert _hexes(subtrees.hashes_for_ranges(ranges, store_of(leaves))) == proof
    old_root, new_root = bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1])
    assert merkle.verify_consistency(
        old, new, old_root, new_root, [bytes.fromhex(p) for p in proof]
    )


def test_consistency_proofs_for_every_pair_up_to_70() -> None:
    """For all 0 <= m <= n <= 70 the proof is the RFC PROOF, verifies, and the store agrees."""
    for n in range(N_ALL + 1):
        leaves = LEAVES[:n]
        for m in range(n + 1):
            proof = merkle.consistency_proof(leaves, m)
            expected = [] if m in (0, n) else ref_subproof(m, ENTRIES[:n], True)
            assert proof == expected, (m, n)
            stored = subtrees.hashes_for_ranges(merkle.consistency_path_nodes(m, n), STORE)
            assert stored == proof, (m, n)
            assert merkle.verify_consistency(m, n, ref_root(m), ref_root(n), proof), (m, n)


@pytest.mark.parametrize(("old", "new"), [(-1, 3), (4, 3), (1, 0)])
def test_consistency_proof_out_of_range_is_bad_data(old: int, new: int) -> None:
    """A consistency proof to a smaller tree, or from a negative size, raises BadDataError."""
    with pytest.raises(BadDataError):
        merkle.consistency_proof(LEAVES[:new], old)
    with pytest.raises(BadDataError):
        merkle.consistency_path_nodes(old, new)


def _consistency_probes(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """Corruptions of a valid consistency proof, after transparency-dev corruptConsistencyProof."""
    probes = [
        ("m - 1", m - 1, n, r1, r2, proof),
        ("m + 1", m + 1, n, r1, r2, proof),
        ("m ^ 2", m ^ 2, n, r1, r2, proof),
        ("n * 2", m, n * 2, r1, r2, proof),
        ("n // 2", m, n // 2, r1, r2, proof),
        ("wrong root1", m, n, b"WrongRoot", r2, proof),
        ("wrong root2", m, n, r1, b"WrongRoot", proof),
        ("other root1", m, n, SOME_HASH, r2, proof),
        ("other root2", m, n, r1, SOME_HASH, proof),
        ("swapped roots", m, n, r2, r1, proof),
        ("empty proof", m, n, r1, r2, []),
        ("trailing garbage", m, n, r1, r2, [*proof, b""]),
        ("trailing root1", m, n, r1, r2, [*proof, r1]),
        ("trailing root2", m, n, r1, r2, [*proof, r2]),
        ("preceding garbage", m, n, r1, r2, [b"", *proof]),
        ("preceding root1", m, n, r1, r2, [r1, *proof]),
        ("preceding root2", m, n, r1, r2, [r2, *proof]),
        ("preceding proof[0]", m, n, r1, r2, [proof[0], *proof]),
        ("truncated proof", m, n, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"proof[{i}] bit 4", m, n, r1, r2, wrong))
    return probes


def test_corrupted_consistency_proofs_are_refused() -> None:
    """Every transparency-dev corruption of every non-trivial proof up to size 40 is refused."""
    for n in range(2, 41):
        for m in range(1, n):
            proof = merkle.consistency_proof(LEAVES[:n], m)
            r1, r2 = ref_root(m), ref_root(n)
            for desc, m2, n2, a, b, wrong in _consistency_probes(m, n, r1, r2, proof):
                assert not merkle.verify_consistency(m2, n2, a, b, wrong), (desc, m, n)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_tampered_consistency_input_is_refused(data: st.DataObject) -> None:
    """Flipping any bit of a proof hash or either root, or changing a size, fails verification."""
    n = data.draw(st.integers(2, N_ALL), label="new")
    m = data.draw(st.integers(1, n - 1), label="old")
    proof = merkle.consistency_proof(LEAVES[:n], m)
    r1, r2 = ref_root(m), ref_root(n)
    target = data.draw(st.sampled_from(["proof", "old_root", "new_root", "old", "new"]))
    byte = data.draw(st.integers(0, 31), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")

    def flip(h: bytes) -> bytes:
        return h[:byte] + bytes([h[byte] ^ (1 << bit)]) + h[byte + 1 :]

    if target == "proof":
        k = data.draw(st.integers(0, len(proof) - 1), label="k")
        proof = [*proof[:k], flip(proof[k]), *proof[k + 1 :]]
    elif target == "old_root":
        r1 = flip(r1)
    elif target == "new_root":
        r2 = flip(r2)
    elif target == "old":
        m = data.draw(st.integers(0, n + 3).filter(lambda x: x != m), label="other old")
    else:
        # As for inclusion, a new size whose proof has the same shape runs the same hashes.
        other = data.draw(st.integers(0, 2 * n).filter(lambda x: x != n), label="other new")
        same_shape = _consistency_shape(m, other) == _consistency_shape(m, n)
        assert merkle.verify_consistency(m, other, r1, r2, proof) is same_shape
        return
    assert not merkle.verify_consistency(m, n, r1, r2, proof)


@pytest.mark.parametrize(
    ("old", "new", "r1", "r2", "proof", "ok"),
    [
        (0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [], True),
        (0, 1, merkle.EMPTY_ROOT, LEAVES[0], [], True),
        (0, 5, SOME_HASH, SOME_HASH, [], False),
        (1, 1, LEAVES[0], LEAVES[0], [], True),
        (1, 1, LEAVES[0], SOME_HASH, [], False),
        (1, 1, LEAVES[0], LEAVES[0], [merkle.EMPTY_ROOT], False),
        (0, 1, merkle.EMPTY_ROOT, LEAVES[0], [merkle.EMPTY_ROOT], False),
        (2, 1, SOME_HASH, SOME_HASH, [], False),
        (1, 2, LEAVES[0], SOME_HASH, [], False),
    ],
    ids=[
        "empty-to-empty",
        "empty-to-one",
        "empty-with-wrong-root",
        "same-size",
        "same-size-other-root",
        "same-size-with-proof",
        "empty-with-proof",
        "rollback",
        "growth-without-proof",
    ],
)
def test_trivial_consistency_cases(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    """Equal sizes need equal roots and no proof; the empty tree has the empty root."""
    assert merkle.verify_consistency(old, new, r1, r2, proof) is ok


@settings(max_examples=300, deadline=None)
@given(old=_junk, new=_junk, r1=_junk, r2=_junk, proof=_junk)
def test_verify_consistency_never_raises(
    old: object, new: object, r1: object, r2: object, proof: object
) -> None:
    """verify_consistency answers a bool, never an exception, whatever it is handed."""
    result = merkle.verify_consistency(old, new, r1, r2, proof)  # type: ignore[arg-type]
    assert isinstance(result, bool)


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


def test_sizes_beyond_uint64_are_refused() -> None:
    """Tree sizes are RFC 9162 uint64s: anything larger is bad data."""
    with pytest.raises(BadDataError):
        subtrees.perfect_subtrees(2**64)
    with pytest.raises(BadDataError):
        merkle.inclusion_path_nodes(0, 2**64)
    assert not merkle.verify_consistency(1, 2**64, SOME_HASH, SOME_HASH, [SOME_HASH])


def test_the_checkpoint_not_the_proof_binds_the_size() -> None:
    """RFC 9162 proofs of the same shape verify for two sizes: the signed checkpoint pins it."""
    # Leaf 0 has only right-hand siblings in trees of 33 and 34 leaves; the last one is leaf 32
    # in the first and MTH(32, 33) in the second, and the verifier cannot tell them apart. This
    # is why jcm-sync only ever verifies against a (size, root) pair taken from one signed
    # checkpoint.
    proof = merkle.inclusion_proof(LEAVES[:33], 0)
    assert merkle.verify_inclusion(LEAVES[0], 0, 34, proof, ref_root(33))
    assert ref_root(33) != ref_root(34)
