"""An independent implementation of the C2SP formats, written from the spec texts for the tests.

It imports nothing of jcm_sync: only the standard library and pyca/cryptography for the
primitives. Each function follows one passage of a spec, cited in its docstring, in the most
literal way (string splits, struct packing, recursion on lists), so that the tests check the
project's code against the specs and not against itself:

- c2sp.org/signed-note: key IDs, vkeys, notes and their signature lines;
- c2sp.org/tlog-checkpoint: the three body lines;
- c2sp.org/tlog-cosignature: the Ed25519 ``cosignature/v1`` message and the ML-DSA-44
  ``cosigned_message``, and the ``timestamped_signature`` layout;
- c2sp.org/tlog-witness: the add-checkpoint request body;
- c2sp.org/tlog-proof: the proof file;
- RFC 6962 §2.1: Merkle tree hash, inclusion and consistency proofs (on lists of entries).
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey, MLDSA44PublicKey

DASH = "\u2014"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- signed-note, "Signatures": key ID = SHA-256(name || 0x0A || type || public key)[:4] -----


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + bytes([sig_type]) + public).digest()[:4]


def vkey(name: str, sig_type: int, public: bytes) -> str:
    """signed-note "Verifier keys": <name>+<hex key ID>+<base64(type || public key)>."""
    return f"{name}+{key_id(name, sig_type, public).hex()}+{b64(bytes([sig_type]) + public)}"


def parse_vkey(text: str) -> tuple[str, int, bytes]:
    name, hex_id, material = text.split("+", 2)
    raw = base64.b64decode(material, validate=True)
    assert key_id(name, raw[0], raw[1:]).hex() == hex_id.lower()
    return name, raw[0], raw[1:]


def public_raw(key: Ed25519PrivateKey | MLDSA44PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def signature_line(name: str, kid: bytes, signature: bytes) -> str:
    """signed-note "Format": em dash, space, key name, space, base64(key ID || sig), newline."""
    return f"{DASH} {name} {b64(kid + signature)}\n"


def split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes, bytes]]]:
    """Text up to and including the newline before the last blank line; then the lines."""
    text = note.decode()
    cut = text.rindex("\n\n")
    sigs = []
    for line in text[cut + 2 :].splitlines():
        assert line.startswith(DASH + " ")
        name, encoded = line[2:].split(" ")
        raw = base64.b64decode(encoded, validate=True)
        sigs.append((name, raw[:4], raw[4:]))
    return text[: cut + 1].encode(), sigs


def sign_note_ed25519(text: bytes, name: str, key: Ed25519PrivateKey) -> bytes:
    """signed-note "Ed25519 signatures": type 0x01, over the note text."""
    kid = key_id(name, 0x01, public_raw(key))
    return text + b"\n" + signature_line(name, kid, key.sign(text)).encode()


# --- tlog-checkpoint: origin, size, base64 root, each ending in a newline ---------------------


def checkpoint_text(origin: str, size: int, root: bytes) -> bytes:
    return f"{origin}\n{size}\n{b64(root)}\n".encode()


def read_checkpoint(text: bytes) -> tuple[str, int, bytes]:
    origin, size, root = text.decode().split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


# --- tlog-cosignature ---------------------------------------------------------------------


def ed25519_cosigned_message(text: bytes, timestamp: int) -> bytes:
    """ "Ed25519 signed message": header line, time line, the whole checkpoint text."""
    return b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + text


def mldsa_cosigned_message(
    cosigner: str, timestamp: int, origin: str, start: int, end: int, root: bytes
) -> bytes:
    """ "ML-DSA-44 signed message": the RFC 8446 presentation of ``cosigned_message``."""
    label = b"subtree/v1\n\x00"
    name, log = cosigner.encode(), origin.encode()
    return (
        label
        + struct.pack(">B", len(name))
        + name
        + struct.pack(">Q", timestamp)
        + struct.pack(">B", len(log))
        + log
        + struct.pack(">QQ", start, end)
        + root
    )


def cosign(text: bytes, name: str, key: Ed25519PrivateKey | MLDSA44PrivateKey, t: int) -> str:
    """A cosignature line: key ID of type 0x04 or 0x06, then timestamp (u64 BE) || signature."""
    if isinstance(key, Ed25519PrivateKey):
        kid = key_id(name, 0x04, public_raw(key))
        sig = key.sign(ed25519_cosigned_message(text, t))
    else:
        kid = key_id(name, 0x06, public_raw(key))
        origin, size, root = read_checkpoint(text)
        sig = key.sign(mldsa_cosigned_message(name, t, origin, 0, size, root))
    return signature_line(name, kid, struct.pack(">Q", t) + sig)


def verify_line(text: bytes, name: str, kid: bytes, signature: bytes, vkey_text: str) -> int | None:
    """Check one signature line against a vkey; return its timestamp (0 for type 0x01)."""
    key_name, sig_type, public = parse_vkey(vkey_text)
    if name != key_name or kid != key_id(key_name, sig_type, public):
        return None
    try:
        if sig_type == 0x01:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, text)
            return 0
        (t,) = struct.unpack(">Q", signature[:8])
        if sig_type == 0x04:
            Ed25519PublicKey.from_public_bytes(public).verify(
                signature[8:], ed25519_cosigned_message(text, t)
            )
        else:
            origin, size, root = read_checkpoint(text)
            MLDSA44PublicKey.from_public_bytes(public).verify(
                signature[8:], mldsa_cosigned_message(name, t, origin, 0, size, root)
            )
    except InvalidSignature:
        return None
    return int(t)


def verify_note(note: bytes, vkey_text: str) -> int | None:
    """The timestamp of the first line by the vkey's key that verifies, else None."""
    text, sigs = split_note(note)
    for name, kid, sig in sigs:
        t = verify_line(text, name, kid, sig, vkey_text)
        if t is not None:
            return t
    return None


# --- RFC 6962 §2.1 on lists of entries -------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = _k(len(entries))
    return hashlib.sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:])).digest()


def path(m: int, entries: list[bytes]) -> list[bytes]:
    if len(entries) == 1:
        return []
    k = _k(len(entries))
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def _subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if complete else [mth(entries)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, entries[:k], complete), mth(entries[k:])]
    return [*_subproof(m - k, entries[k:], False), mth(entries[:k])]


def consistency(m: int, entries: list[bytes]) -> list[bytes]:
    return _subproof(m, entries, True) if 0 < m < len(entries) else []


# --- tlog-witness and tlog-proof bodies ------------------------------------------------------


def add_checkpoint_body(old: int, proof: list[bytes], note: bytes) -> bytes:
    lines = [f"old {old}", *(b64(h) for h in proof), ""]
    return "\n".join(lines).encode() + b"\n" + note


def tlog_proof(index: int, proof: list[bytes], note: bytes, extra: bytes | None = None) -> bytes:
    lines = ["c2sp.org/tlog-proof@v1"]
    if extra is not None:
        lines.append("extra " + b64(extra))
    lines += [f"index {index}", *(b64(h) for h in proof), ""]
    return "\n".join(lines).encode() + b"\n" + note
