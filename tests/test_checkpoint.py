"""Tests for jcm_sync.core.checkpoint: C2SP signed notes, tlog-checkpoints, append-only guard."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import checkpoint as cpm
from jcm_sync.core import merkle
from jcm_sync.core.checkpoint import Checkpoint, Verifier
from jcm_sync.errors import (
    AmbiguousKeyError,
    CheckpointFormatError,
    CheckpointRollbackError,
    ConflictError,
    ForkError,
    JcmSyncError,
    KeyFormatError,
    NoteFormatError,
    SignatureError,
    UnknownKeyError,
    WrongOriginError,
)

# ---------------------------------------------------------------------------------------------
# Published vectors.
#
# Signed notes: golang.org/x/mod sumdb/note/note_test.go
# (golang/mod, commit 02c991387e35f9e4c0a9b7ce137717055f8d716d), TestSign / TestOpen.
# ---------------------------------------------------------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6"
    "KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
).encode()

# Checkpoint bodies: golang.org/x/mod sumdb/tlog/note_test.go
# (golang/mod, commit 774e77886cf18ba9e220baec8497d65b0c50373f), TestFormatTree / TestParseTree;
# the root is RecordHash("hello world"), i.e. the RFC 6962 leaf hash.
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

PETER = Verifier.from_vkey(PETER_VKEY)
ENOCH = Verifier.from_vkey(ENOCH_VKEY)
ORIGIN = "jcm-sync.example/JP-MN/MN"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"jcm-sync test log key").digest())
LOG = Verifier(ORIGIN, LOG_KEY.public_key())
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness").digest())
WITNESS = Verifier("witness.example", WITNESS_KEY.public_key())


def _splice(data: bytes, at: int, insert: bytes) -> bytes:
    return data[:at] + insert + data[at:]


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def test_go_signer_and_verifier_keys_round_trip() -> None:
    """Go's PeterNeumann signer key parses, and yields exactly its published verifier key."""
    name, key = cpm.parse_signer_key(PETER_SKEY)
    assert name == "PeterNeumann"
    assert cpm.signer_key(name, key) == PETER_SKEY
    assert cpm.vkey(name, key.public_key()) == PETER_VKEY
    assert PETER.name == "PeterNeumann"
    assert PETER.key_id == 0xC74F20A3
    assert PETER.vkey() == PETER_VKEY
    assert repr(PETER) == "Verifier(PeterNeumann+c74f20a3)"


def test_key_id_is_the_spec_formula() -> None:
    """Key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian."""
    raw = LOG.public_bytes
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    assert cpm.key_id(ORIGIN, LOG_KEY.public_key()) == int.from_bytes(expected, "big")
    assert LOG.key_id == int.from_bytes(expected, "big")


def _manglings(key: str) -> list[str]:
    """Every proper substring of key and every one-byte increment, as Go's tests try."""
    out = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)}
    out.discard(key)
    out.update(key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key)))
    return sorted(out)


def test_mangled_verifier_keys_are_refused() -> None:
    """Every substring or one-byte change of a verifier key is refused (Go TestNewVerifier)."""
    for bad in _manglings(PETER_VKEY):
        with pytest.raises(KeyFormatError):
            Verifier.from_vkey(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
    ids=["wrong-length-key-adjusted-hash", "unknown-algorithm-adjusted-hash"],
)
def test_go_bad_verifier_keys_are_refused(bad: str) -> None:
    """Go's wrong-length and unknown-algorithm verifier keys are refused with a reason."""
    with pytest.raises(KeyFormatError, match=r"base64|signature type"):
        Verifier.from_vkey(bad)


def test_mangled_signer_keys_are_refused() -> None:
    """Every substring and every one-byte change of a signer key is refused (Go TestNewSigner)."""
    for bad in _manglings(PETER_SKEY):
        with pytest.raises(KeyFormatError):
            cpm.parse_signer_key(bad)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0", "nl\n"])
def test_invalid_key_names_are_refused(name: str) -> None:
    """Key names must be non-empty with no spaces, '+' or control characters."""
    with pytest.raises(KeyFormatError):
        Verifier(name, LOG_KEY.public_key())
    with pytest.raises(KeyFormatError):
        cpm.sign_note(TEXT, name, LOG_KEY)


# ---------------------------------------------------------------------------------------------
# Signing and opening notes
# ---------------------------------------------------------------------------------------------


def test_sign_note_reproduces_go_vector() -> None:
    """Signing Go's text with Go's key gives, byte for byte, Go's signed note."""
    name, key = cpm.parse_signer_key(PETER_SKEY)
    assert cpm.sign_note(TEXT, name, key) == TEXT + b"\n" + PETER_SIG


def test_open_note_verifies_known_and_keeps_unknown() -> None:
    """A known key's signature is verified and an unknown one kept aside (Go TestOpen)."""
    opened = cpm.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert opened.body == TEXT
    assert opened.verified_by == ("PeterNeumann",)
    assert [s.key for s in opened.unverified] == ["EnochRoot+af0cfe78"]
    assert opened.unverified[0].line().encode() == ENOCH_SIG

    both = cpm.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert both.verified_by == ("PeterNeumann", "EnochRoot")
    assert both.unverified == ()


def test_open_note_with_no_known_key_is_refused() -> None:
    """A note no known key signed raises UnknownKeyError naming who did sign."""
    with pytest.raises(UnknownKeyError, match=r"PeterNeumann\+c74f20a3.*EnochRoot\+af0cfe78"):
        cpm.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [])
    misnamed = PETER_SIG.replace(b"PeterNeumann", b"CarmenSandiego")
    with pytest.raises(UnknownKeyError):
        cpm.open_note(TEXT + b"\n" + misnamed, [PETER])


def test_open_note_with_bad_known_signature_is_refused() -> None:
    """A known key's signature that does not verify rejects the whole note, saying where."""
    bad = _splice(PETER_SIG, 60, b"ABCD")
    with pytest.raises(SignatureError, match=r"PeterNeumann\+c74f20a3") as info:
        cpm.open_note(TEXT + b"\n" + bad, [PETER])
    assert info.value.where == "note line 4"
    # Also when a good signature by the same key comes first.
    with pytest.raises(SignatureError):
        cpm.open_note(TEXT + b"\n" + PETER_SIG + bad, [PETER])


def test_repeated_signatures_are_collapsed() -> None:
    """Repeated identical lines count once, verified or not (Go TestOpen duplicates)."""
    enoch_abcd = _splice(ENOCH_SIG, 60, b"ABCD")
    note = TEXT + b"\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = cpm.open_note(note, [PETER])
    assert [s.line().encode() for s in opened.verified] == [PETER_SIG]
    assert [s.line().encode() for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


def test_same_verifier_listed_twice_is_harmless() -> None:
    """The same key listed twice is not ambiguous (Go refuses it; nothing is unclear here)."""
    assert cpm.open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, PETER, ENOCH]).verified_by == (
        "EnochRoot",
    )


def test_two_keys_with_one_name_and_id_are_ambiguous() -> None:
    """Two different known keys sharing a (name, key ID) make their signatures unusable."""
    impostor = Verifier("EnochRoot", LOG_KEY.public_key())
    object.__setattr__(impostor, "key_id", ENOCH.key_id)  # forge the 32-bit collision
    with pytest.raises(AmbiguousKeyError, match=r"EnochRoot\+af0cfe78"):
        cpm.open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, impostor])
    # Unused, the ambiguity does not matter (Go "unused duplicated verifier").
    assert cpm.open_note(TEXT + b"\n" + PETER_SIG, [ENOCH, PETER, impostor]).verified_by


def test_too_many_signatures_are_refused() -> None:
    """More than 100 signature lines is malformed, whether or not any key is known."""
    note = TEXT + b"\n" + PETER_SIG * 101
    for verifiers in ([PETER], []):
        with pytest.raises(NoteFormatError, match="101 signatures"):
            cpm.open_note(note, verifiers)
    assert cpm.open_note(TEXT + b"\n" + PETER_SIG * 100, [PETER]).verified_by


@pytest.mark.parametrize(
    ("note", "message", "where"),
    [
        (TEXT, "no blank line", None),
        (TEXT + b"\n", "no signature lines", None),
        (TEXT + b"\n" + PETER_SIG[:-1], "does not end with a newline", None),
        (b"\x01" + TEXT + b"\n" + PETER_SIG, "U\\+0001", "note line 1, column 1"),
        (b"\xff" + TEXT + b"\n" + PETER_SIG, "UTF-8", "note line 1, byte 0"),
        (TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name"), "base64", "note line 4"),
        (TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n", "em dash", "note line 5"),
        (TEXT.replace(b"\n", b"\r\n") + b"\n" + PETER_SIG, "CRLF", "note line 1, column 57"),
        (TEXT + b"\n- PeterNeumann x08g\n", "em dash", "note line 4"),
        (TEXT + b"\n\xe2\x80\x94 PeterNeumann\n", "no space", "note line 4"),
        (TEXT + b"\n\xe2\x80\x94 PeterNeumann x08g\n", "too short", "note line 4"),
        (TEXT + b"\n\xe2\x80\x94 a+b x08go/ZJ\n", "key name", "note line 4"),
        (TEXT + b"\n" + PETER_SIG.replace(b"AM=", b"AN="), "canonical base64", "note line 4"),
        (b"x" * 9000 + b"\n\n" + PETER_SIG, "over the limit", "note line 1"),
        (b"x\n" * (1 << 19) + b"\n" + PETER_SIG, "over the limit", None),
    ],
    ids=[
        "text-only",
        "blank-line-only",
        "no-final-newline",
        "control-character",
        "not-utf8",
        "space-in-name",
        "unexpected-line",
        "crlf",
        "hyphen-not-em-dash",
        "no-signature",
        "signature-too-short",
        "plus-in-name",
        "non-canonical-base64",
        "line-too-long",
        "note-too-large",
    ],
)
def test_malformed_notes_are_refused_with_where(
    note: bytes, message: str, where: str | None
) -> None:
    """Malformed notes (Go TestOpen's bad messages and more) raise NoteFormatError, located."""
    with pytest.raises(NoteFormatError, match=message) as info:
        cpm.open_note(note, [PETER])
    assert info.value.where == where
    if where is not None:
        assert info.value.diagnostics().startswith(f"{where}: ")


def test_non_bytes_note_is_refused() -> None:
    """A note given as str, not bytes, is refused rather than guessed at."""
    with pytest.raises(NoteFormatError, match="must be bytes"):
        cpm.open_note((TEXT + b"\n" + PETER_SIG).decode(), [PETER])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [b"", b"no newline", b"bad \x00 byte\n", b"\xc3\x28\n", b"x" * 9000 + b"\n"],
    ids=["empty", "no-final-newline", "control-char", "not-utf8", "line-too-long"],
)
def test_sign_note_refuses_text_it_could_not_open(body: bytes) -> None:
    """sign_note only signs texts that open_note would accept."""
    with pytest.raises(NoteFormatError):
        cpm.sign_note(body, ORIGIN, LOG_KEY)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), max_size=40),
        min_size=1,
        max_size=6,
    )
)
def test_open_note_accepts_what_sign_note_signs(lines: list[str]) -> None:
    """verify(sign(text)) holds for any valid text, blank lines included."""
    body = "".join(line + "\n" for line in lines).encode()
    opened = cpm.open_note(cpm.sign_note(body, ORIGIN, LOG_KEY), [LOG])
    assert opened.body == body
    assert opened.verified_by == (ORIGIN,)


def test_add_signature_cosigns_and_replaces() -> None:
    """A cosignature is appended, old lines kept verbatim, and re-signing replaces it."""
    note = TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    cosigned = cpm.add_signature(note, WITNESS.name, WITNESS_KEY)
    assert cosigned.startswith(note)
    assert cpm.open_note(cosigned, [PETER, WITNESS]).verified_by == ("PeterNeumann", WITNESS.name)
    assert cpm.add_signature(cosigned, WITNESS.name, WITNESS_KEY) == cosigned
    name, key = cpm.parse_signer_key(PETER_SKEY)
    assert cpm.add_signature(TEXT + b"\n" + ENOCH_SIG, name, key) == (
        TEXT + b"\n" + ENOCH_SIG + PETER_SIG
    )


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
