"""Tests for jcm_sync.core.checkpoint: tlog-checkpoint bodies, signed checkpoints, append-only."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import checkpoint as cpm
from jcm_sync.core import merkle
from jcm_sync.core.checkpoint import Checkpoint
from jcm_sync.core.note import Verifier
from jcm_sync.errors import (
    CheckpointFormatError,
    CheckpointRollbackError,
    ConflictError,
    ForkError,
    JcmSyncError,
    SignatureError,
    UnknownKeyError,
    WrongOriginError,
)

# ---------------------------------------------------------------------------------------------
# Published vectors.
#
# Checkpoint bodies: golang.org/x/mod sumdb/tlog/note_test.go
# (golang/mod, commit 774e77886cf18ba9e220baec8497d65b0c50373f), TestFormatTree / TestParseTree;
# the root is RecordHash("hello world"), i.e. the RFC 6962 leaf hash.
# ---------------------------------------------------------------------------------------------

GO_TREE = b"go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"

# A checkpoint really signed by sum.golang.org, from transparency-dev/trillian-tessera
# internal/parse/parse_test.go (BenchmarkCheckpointUnsafe; the final newline, which that
# parser does not need, restored), and the Go checksum database's verifier key from
# golang/go src/cmd/go/internal/modfetch/key.go (commit c674ce87c2e47699bb51e02885fb80519ecbfb27).
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
    "— sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9"
    "/C8DJ87F61QqspBYwM=\n"
).encode()

# The example of c2sp.org/tlog-checkpoint (its signature is by a key the spec does not publish).
C2SP_BODY = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

# Our own log's key and a witness's, derived from fixed seeds so failures reproduce.
ORIGIN = "jcm-sync.example/JP-MN/MN"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"jcm-sync test log key").digest())
LOG = Verifier(ORIGIN, LOG_KEY.public_key())
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness").digest())


# ---------------------------------------------------------------------------------------------
# Checkpoint bodies
# ---------------------------------------------------------------------------------------------


def test_go_tree_vector_parses_and_formats() -> None:
    """Go's tlog tree note body parses to (123456789012, RecordHash("hello world")) and back."""
    cp = cpm.parse_body(GO_TREE)
    assert cp == Checkpoint("go.sum database tree", 123456789012, merkle.leaf_hash(b"hello world"))
    assert cpm.format_body(cp) == GO_TREE


def test_c2sp_example_body_parses() -> None:
    """The c2sp.org/tlog-checkpoint example body parses and formats back identically."""
    cp = cpm.parse_body(C2SP_BODY)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cpm.format_body(cp) == C2SP_BODY


def test_real_sumdb_checkpoint_verifies() -> None:
    """A checkpoint signed by sum.golang.org opens with the Go checksum database's key."""
    verified = cpm.open_checkpoint(
        SUMDB_NOTE, [Verifier.from_vkey(SUMDB_VKEY)], origin="go.sum database tree"
    )
    assert verified.checkpoint.size == 31700353
    assert verified.verified_by == ("sum.golang.org",)
    assert verified.note == SUMDB_NOTE
    with pytest.raises(SignatureError):
        cpm.open_checkpoint(
            SUMDB_NOTE.replace(b"31700353", b"31700354"),
            [Verifier.from_vkey(SUMDB_VKEY)],
            origin="go.sum database tree",
        )


def test_extension_lines_are_preserved() -> None:
    """Optional extension lines survive parse and format byte for byte."""
    body = C2SP_BODY + b"ext one\n\xe2\x80\x94 ext two\n"
    cp = cpm.parse_body(body)
    assert cp.extensions == ("ext one", "— ext two")
    assert cpm.format_body(cp) == body


@pytest.mark.parametrize(
    ("body", "message", "where"),
    [
        (b"origin\n42\n", "got 2 line", None),
        (b"\n42\n" + GO_TREE.split(b"\n")[2] + b"\n", "must not be empty", "checkpoint line 1"),
        (
            b"o\n042\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "leading zeros",
            "checkpoint line 2",
        ),
        (b"o\n-42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "decimal", "checkpoint line 2"),
        (b"o\n+42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "decimal", "checkpoint line 2"),
        (
            b"o\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "decimal",
            "checkpoint line 2",
        ),
        (
            "o\n\u0664\u0662\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n".encode(),
            "decimal",
            "checkpoint line 2",
        ),
        (
            b"o\n18446744073709551616\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            r"2\*\*64",
            "checkpoint line 2",
        ),
        (
            b"o\n42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
            "base64",
            "checkpoint line 3",
        ),
        (b"o\n42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n", "base64", "checkpoint line 3"),
        (b"o\n42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40Hmuw\n", "30 bytes", "checkpoint line 3"),
        (b"o\n42\n" + base64.b64encode(bytes(33)) + b"\n", "33 bytes", "checkpoint line 3"),
        (GO_TREE[:-1], "end with a newline", None),
        (GO_TREE + b"\n", "must not be empty", "checkpoint line 4"),
        (GO_TREE + b"JOE", "end with a newline", None),
        (GO_TREE.replace(b"\n", b"\r\n"), "CRLF", "checkpoint line 1, column 21"),
        (
            b"o\xff\n42\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "UTF-8",
            "checkpoint line 1, byte 1",
        ),
    ],
    ids=[
        "two-lines",
        "empty-origin",
        "leading-zero",
        "negative",
        "plus-sign",
        "hex",
        "arabic-indic-digits",
        "beyond-uint64",
        "go-bad-root",
        "non-canonical-root",
        "root-30-bytes",
        "root-33-bytes",
        "no-final-newline",
        "empty-extension",
        "junk-without-newline",
        "crlf",
        "not-utf8",
    ],
)
def test_malformed_bodies_are_refused_with_where(
    body: bytes, message: str, where: str | None
) -> None:
    """Malformed checkpoint bodies raise CheckpointFormatError saying what and which line."""
    with pytest.raises(CheckpointFormatError, match=message) as info:
        cpm.parse_body(body)
    assert info.value.where == where


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, bytes(32), ()),
        ("a\nb", 1, bytes(32), ()),
        ("o", -1, bytes(32), ()),
        ("o", 2**64, bytes(32), ()),
        ("o", True, bytes(32), ()),
        ("o", 1, bytes(31), ()),
        ("o", 1, "00" * 32, ()),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("a\tb",)),
    ],
    ids=[
        "empty-origin",
        "newline-in-origin",
        "negative-size",
        "size-beyond-uint64",
        "bool-size",
        "short-root",
        "hex-root",
        "empty-extension",
        "control-in-extension",
    ],
)
def test_checkpoint_values_are_validated(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    """A Checkpoint cannot hold a value its body could not express."""
    with pytest.raises(CheckpointFormatError):
        Checkpoint(origin, size, root, extensions)


_line = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=30
)


@settings(max_examples=200, deadline=None)
@given(
    origin=_line,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_line, max_size=3).map(tuple),
)
def test_body_round_trip(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    """parse_body(format_body(cp)) == cp for every valid checkpoint."""
    cp = Checkpoint(origin, size, root, extensions)
    assert cpm.parse_body(cpm.format_body(cp)) == cp


# ---------------------------------------------------------------------------------------------
# Signed checkpoints
# ---------------------------------------------------------------------------------------------

CP = Checkpoint(ORIGIN, 5, merkle.root([merkle.leaf_hash(bytes([i])) for i in range(5)]))
CP_NOTE = cpm.sign_checkpoint(CP, LOG_KEY)


def test_signed_checkpoint_round_trip() -> None:
    """A checkpoint signed by the log key (named after its origin) opens to the same value."""
    assert CP_NOTE.startswith(cpm.format_body(CP) + "\n— jcm-sync.example/JP-MN/MN ".encode())
    verified = cpm.open_checkpoint(CP_NOTE, [LOG], origin=ORIGIN)
    assert verified.checkpoint == CP
    assert verified.verified_by == (ORIGIN,)


def test_checkpoint_of_another_log_is_refused() -> None:
    """A well-signed checkpoint with an unexpected origin raises WrongOriginError."""
    with pytest.raises(WrongOriginError, match="JP-MN/JP"):
        cpm.open_checkpoint(CP_NOTE, [LOG], origin="jcm-sync.example/JP-MN/JP")


def test_checkpoint_signed_by_another_key_is_refused() -> None:
    """A checkpoint signed only by a key we do not trust for this log is refused."""
    with pytest.raises(UnknownKeyError):
        cpm.open_checkpoint(cpm.sign_checkpoint(CP, WITNESS_KEY), [LOG], origin=ORIGIN)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(CP_NOTE) - 1), xor=st.integers(1, 255))
def test_any_tampered_byte_of_a_signed_checkpoint_is_refused(position: int, xor: int) -> None:
    """Changing any byte of a signed checkpoint makes opening it fail."""
    tampered = bytearray(CP_NOTE)
    tampered[position] ^= xor
    with pytest.raises(JcmSyncError):
        cpm.open_checkpoint(bytes(tampered), [LOG], origin=ORIGIN)


# ---------------------------------------------------------------------------------------------
# Append-only guard
# ---------------------------------------------------------------------------------------------

TREE = [merkle.leaf_hash(f"record {i}".encode()) for i in range(40)]


def _cp(size: int, origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, size, merkle.root(TREE[:size]))


def test_first_checkpoint_is_accepted() -> None:
    """With no previous checkpoint there is nothing to be consistent with."""
    cpm.check_append_only(None, _cp(7), [])


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_growth_with_a_valid_proof_is_accepted(data: st.DataObject) -> None:
    """Any growth m -> n with its consistency proof passes the guard."""
    n = data.draw(st.integers(0, len(TREE)))
    m = data.draw(st.integers(0, n))
    cpm.check_append_only(_cp(m), _cp(n), merkle.consistency_proof(TREE[:n], m))


@pytest.mark.parametrize(
    ("previous", "new", "proof", "error", "message"),
    [
        (_cp(7), Checkpoint(ORIGIN, 7, bytes(32)), [], ForkError, "two different root hashes"),
        (_cp(7), _cp(6), [], CheckpointRollbackError, "smaller than the 7"),
        (_cp(7), _cp(9), [], ForkError, "from tree size 7 to 9"),
        (
            _cp(7),
            Checkpoint(ORIGIN, 9, bytes(32)),
            merkle.consistency_proof(TREE[:9], 7),
            ForkError,
            "does not verify",
        ),
        (_cp(7), _cp(9, "elsewhere"), merkle.consistency_proof(TREE[:9], 7), ConflictError, "log"),
    ],
    ids=[
        "same-size-other-root",
        "rollback",
        "growth-without-proof",
        "rewritten-history",
        "other-log",
    ],
)
def test_inconsistent_checkpoints_are_refused(
    previous: Checkpoint,
    new: Checkpoint,
    proof: list[bytes],
    error: type[ConflictError],
    message: str,
) -> None:
    """Forks, rollbacks and other logs raise the matching ConflictError subclass."""
    with pytest.raises(error, match=message) as info:
        cpm.check_append_only(previous, new, proof)
    assert isinstance(info.value, ConflictError)
    if error is ConflictError:
        assert not isinstance(info.value, ForkError)


def test_same_checkpoint_again_is_accepted() -> None:
    """Re-presenting the checkpoint already held is not a conflict."""
    cpm.check_append_only(_cp(7), _cp(7), [])


# ---------------------------------------------------------------------------------------------
# Origins
# ---------------------------------------------------------------------------------------------


def test_origin_for_names_one_log_per_partnership_and_side() -> None:
    """origin_for joins prefix, partnership and node into a schema-less URL."""
    assert cpm.origin_for("jcm-sync.example", "JP-MN", "MN") == "jcm-sync.example/JP-MN/MN"
    assert cpm.origin_for("registry.example/jcm", "JP-ID", "JP") == "registry.example/jcm/JP-ID/JP"


@pytest.mark.parametrize(
    ("prefix", "partnership", "node"),
    [
        ("", "JP-MN", "MN"),
        ("a b", "JP-MN", "MN"),
        ("x", "JP/MN", "MN"),
        ("x/", "JP-MN", "MN"),
        ("x", "JP-MN", "M+N"),
        ("x", "", "MN"),
    ],
)
def test_origin_for_refuses_ambiguous_parts(prefix: str, partnership: str, node: str) -> None:
    """Parts that are empty or hold spaces, '+' or a stray '/' are refused."""
    with pytest.raises(JcmSyncError):
        cpm.origin_for(prefix, partnership, node)
