"""Tests for jcm_sync.core.note: C2SP signed notes and their keys, against Go's vectors."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core import note as signed_note
from jcm_sync.core.note import Verifier
from jcm_sync.errors import (
    AmbiguousKeyError,
    KeyFormatError,
    NoteFormatError,
    SignatureError,
    UnknownKeyError,
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
    name, key = signed_note.parse_signer_key(PETER_SKEY)
    assert name == "PeterNeumann"
    assert signed_note.signer_key(name, key) == PETER_SKEY
    assert signed_note.vkey(name, key.public_key()) == PETER_VKEY
    assert PETER.name == "PeterNeumann"
    assert PETER.key_id == 0xC74F20A3
    assert PETER.vkey() == PETER_VKEY
    assert repr(PETER) == "Verifier(PeterNeumann+c74f20a3)"


def test_key_id_is_the_spec_formula() -> None:
    """Key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian."""
    raw = LOG.public_bytes
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    assert signed_note.key_id(ORIGIN, LOG_KEY.public_key()) == int.from_bytes(expected, "big")
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
            signed_note.parse_signer_key(bad)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0", "nl\n"])
def test_invalid_key_names_are_refused(name: str) -> None:
    """Key names must be non-empty with no spaces, '+' or control characters."""
    with pytest.raises(KeyFormatError):
        Verifier(name, LOG_KEY.public_key())
    with pytest.raises(KeyFormatError):
        signed_note.sign_note(TEXT, name, LOG_KEY)


# ---------------------------------------------------------------------------------------------
# Signing and opening notes
# ---------------------------------------------------------------------------------------------


def test_sign_note_reproduces_go_vector() -> None:
    """Signing Go's text with Go's key gives, byte for byte, Go's signed note."""
    name, key = signed_note.parse_signer_key(PETER_SKEY)
    assert signed_note.sign_note(TEXT, name, key) == TEXT + b"\n" + PETER_SIG


def test_open_note_verifies_known_and_keeps_unknown() -> None:
    """A known key's signature is verified and an unknown one kept aside (Go TestOpen)."""
    opened = signed_note.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert opened.body == TEXT
    assert opened.verified_by == ("PeterNeumann",)
    assert [s.key for s in opened.unverified] == ["EnochRoot+af0cfe78"]
    assert opened.unverified[0].line().encode() == ENOCH_SIG

    both = signed_note.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert both.verified_by == ("PeterNeumann", "EnochRoot")
    assert both.unverified == ()


def test_open_note_with_no_known_key_is_refused() -> None:
    """A note no known key signed raises UnknownKeyError naming who did sign."""
    with pytest.raises(UnknownKeyError, match=r"PeterNeumann\+c74f20a3.*EnochRoot\+af0cfe78"):
        signed_note.open_note(TEXT + b"\n" + PETER_SIG + ENOCH_SIG, [])
    misnamed = PETER_SIG.replace(b"PeterNeumann", b"CarmenSandiego")
    with pytest.raises(UnknownKeyError):
        signed_note.open_note(TEXT + b"\n" + misnamed, [PETER])


def test_open_note_with_bad_known_signature_is_refused() -> None:
    """A known key's signature that does not verify rejects the whole note, saying where."""
    bad = _splice(PETER_SIG, 60, b"ABCD")
    with pytest.raises(SignatureError, match=r"PeterNeumann\+c74f20a3") as info:
        signed_note.open_note(TEXT + b"\n" + bad, [PETER])
    assert info.value.where == "note line 4"
    # Also when a good signature by the same key comes first.
    with pytest.raises(SignatureError):
        signed_note.open_note(TEXT + b"\n" + PETER_SIG + bad, [PETER])


def test_repeated_signatures_are_collapsed() -> None:
    """Repeated identical lines count once, verified or not (Go TestOpen duplicates)."""
    enoch_abcd = _splice(ENOCH_SIG, 60, b"ABCD")
    note = TEXT + b"\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = signed_note.open_note(note, [PETER])
    assert [s.line().encode() for s in opened.verified] == [PETER_SIG]
    assert [s.line().encode() for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


def test_same_verifier_listed_twice_is_harmless() -> None:
    """The same key listed twice is not ambiguous (Go refuses it; nothing is unclear here)."""
    assert signed_note.open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, PETER, ENOCH]).verified_by == (
        "EnochRoot",
    )


def test_two_keys_with_one_name_and_id_are_ambiguous() -> None:
    """Two different known keys sharing a (name, key ID) make their signatures unusable."""
    impostor = Verifier("EnochRoot", LOG_KEY.public_key())
    object.__setattr__(impostor, "key_id", ENOCH.key_id)  # forge the 32-bit collision
    with pytest.raises(AmbiguousKeyError, match=r"EnochRoot\+af0cfe78"):
        signed_note.open_note(TEXT + b"\n" + ENOCH_SIG, [ENOCH, impostor])
    # Unused, the ambiguity does not matter (Go "unused duplicated verifier").
    assert signed_note.open_note(TEXT + b"\n" + PETER_SIG, [ENOCH, PETER, impostor]).verified_by


def test_too_many_signatures_are_refused() -> None:
    """More than 100 signature lines is malformed, whether or not any key is known."""
    note = TEXT + b"\n" + PETER_SIG * 101
    for verifiers in ([PETER], []):
        with pytest.raises(NoteFormatError, match="101 signatures"):
            signed_note.open_note(note, verifiers)
    assert signed_note.open_note(TEXT + b"\n" + PETER_SIG * 100, [PETER]).verified_by


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
        signed_note.open_note(note, [PETER])
    assert info.value.where == where
    if where is not None:
        assert info.value.diagnostics().startswith(f"{where}: ")


def test_non_bytes_note_is_refused() -> None:
    """A note given as str, not bytes, is refused rather than guessed at."""
    with pytest.raises(NoteFormatError, match="must be bytes"):
        signed_note.open_note((TEXT + b"\n" + PETER_SIG).decode(), [PETER])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [b"", b"no newline", b"bad \x00 byte\n", b"\xc3\x28\n", b"x" * 9000 + b"\n"],
    ids=["empty", "no-final-newline", "control-char", "not-utf8", "line-too-long"],
)
def test_sign_note_refuses_text_it_could_not_open(body: bytes) -> None:
    """sign_note only signs texts that open_note would accept."""
    with pytest.raises(NoteFormatError):
        signed_note.sign_note(body, ORIGIN, LOG_KEY)


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
    opened = signed_note.open_note(signed_note.sign_note(body, ORIGIN, LOG_KEY), [LOG])
    assert opened.body == body
    assert opened.verified_by == (ORIGIN,)


def test_add_signature_cosigns_and_replaces() -> None:
    """A cosignature is appended, old lines kept verbatim, and re-signing replaces it."""
    note = TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    cosigned = signed_note.add_signature(note, WITNESS.name, WITNESS_KEY)
    assert cosigned.startswith(note)
    assert signed_note.open_note(cosigned, [PETER, WITNESS]).verified_by == (
        "PeterNeumann",
        WITNESS.name,
    )
    assert signed_note.add_signature(cosigned, WITNESS.name, WITNESS_KEY) == cosigned
    name, key = signed_note.parse_signer_key(PETER_SKEY)
    assert signed_note.add_signature(TEXT + b"\n" + ENOCH_SIG, name, key) == (
        TEXT + b"\n" + ENOCH_SIG + PETER_SIG
    )


# ---------------------------------------------------------------------------------------------
# Other signature types (rule 4): any NoteVerifier, and lines attached from elsewhere
# ---------------------------------------------------------------------------------------------


class _Sha256Verifier:
    """A toy signature type: the signature is SHA-256 of the text (a NoteVerifier)."""

    def __init__(self, name: str, key_id: int) -> None:
        self.name = name
        self.key_id = key_id

    def verify(self, message: bytes, signature: bytes) -> bool:
        return signature == hashlib.sha256(message).digest()


def test_open_note_takes_any_note_verifier() -> None:
    toy = _Sha256Verifier("toy.example", 0x01020304)
    line = signed_note.NoteSignature("toy.example", 0x01020304, hashlib.sha256(TEXT).digest())
    note = signed_note.add_signature_lines(TEXT + b"\n" + PETER_SIG, [line])
    assert signed_note.open_note(note, [PETER, toy]).verified_by == ("PeterNeumann", "toy.example")
    bad = signed_note.NoteSignature("toy.example", 0x01020304, bytes(32))
    with pytest.raises(SignatureError, match=r"toy\.example"):
        signed_note.open_note(signed_note.add_signature_lines(note, [bad]), [toy])
    with pytest.raises(KeyFormatError, match="note verifiers"):
        signed_note.open_note(note, [object()])  # type: ignore[list-item]


def test_add_signature_lines_replaces_by_name_and_key_id() -> None:
    note = TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    mine = signed_note.NoteSignature("PeterNeumann", PETER.key_id, b"\x01" * 8)
    other_id = signed_note.NoteSignature("PeterNeumann", PETER.key_id ^ 1, b"\x02" * 8)
    out = signed_note.add_signature_lines(note, [mine, other_id, mine])
    sigs = signed_note.parse_note(out).signatures
    assert [s.signature for s in sigs] == [
        signed_note.parse_note(note).signatures[1].signature,
        b"\x01" * 8,
        b"\x02" * 8,
    ]
    assert signed_note.add_signature_lines(note, []) == note


def test_add_signature_lines_refuses_bad_lines_and_too_many() -> None:
    note = TEXT + b"\n" + PETER_SIG
    with pytest.raises(NoteFormatError):
        signed_note.add_signature_lines(note, ["— x AAAA"])  # type: ignore[list-item]
    with pytest.raises(NoteFormatError):
        signed_note.add_signature_lines(note, [signed_note.NoteSignature("a b", 1, b"x")])
    many = [signed_note.NoteSignature(f"k{i}", i, b"x") for i in range(signed_note.MAX_SIGNATURES)]
    with pytest.raises(NoteFormatError, match="over the limit"):
        signed_note.add_signature_lines(note, many)
