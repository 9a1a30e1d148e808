"""Key files on disk: ``NAME.key`` (PKCS#8 PEM, mode 0600) and ``NAME.pub`` (SPKI PEM).

Both algorithms use the same two files: an Ed25519 key, or an ML-DSA-44 key whose
private file is PKCS#8 in the seed-only form, the 32-byte seed (``core/pq.py`` rule 1,
docs/adr/0033-ml-dsa-44-hybrid-signatures.md). ``load_private_key`` and
``load_public_key`` read Ed25519 only (transport, checkpoint and node keys);
``load_any_private_key`` and ``load_any_public_key`` read either, with the algorithm
known from the file's own algorithm identifier.

Why this module exists: private keys are read from files and only from files (never
from TOML or the environment), and a key file is written so that no other user can
read it for even a moment: the file is created with mode 0600 and ``O_EXCL``, not
chmod-ed afterwards. Overwriting an existing key needs ``force``, because a lost
private key of a registry cannot be recovered.

Rules:

1. A private key file that group or others may access (any of mode 0o077) is refused
   before it is read, with the ``chmod 600`` to run: a key others could read is a key
   to rotate, not to use.
2. A file this process may not read is "permission denied", naming the file; only a
   file that does not exist is "not found".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from jcm_sync.core.envelope import (
    AnyPrivateKey,
    AnyPublicKey,
    PrivateKey,
    PublicKey,
    private_key_from_pem,
    public_key_from_pem,
)
from jcm_sync.errors import ConfigError, ConflictError, KeyFormatError, NotFoundError

MAX_KEY_FILE: Final = 64 * 1024


def read_small_file(path: Path, *, limit: int = MAX_KEY_FILE, what: str = "file") -> bytes:
    """Read a file that must exist and be small; errors say which file and why."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{what} not found", where=str(path)) from None
    except IsADirectoryError:
        raise KeyFormatError(f"{what} is a directory", where=str(path)) from None
    except PermissionError:  # rule 2
        raise ConfigError(
            f"permission denied: this user (uid {os.getuid()}) cannot read the {what}",
            where=str(path),
        ) from None
    except OSError as exc:
        raise NotFoundError(f"cannot read {what}: {exc.strerror}", where=str(path)) from None
    if len(data) > limit:
        raise KeyFormatError(f"{what} is larger than {limit} bytes", where=str(path))
    return data


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if not force:
        flags |= os.O_EXCL
    elif path.exists():
        path.unlink()  # a fresh inode, so the 0600 mode applies from the first byte
        flags |= os.O_EXCL
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ConflictError(
            "refusing to overwrite an existing key file (use --force)", where=str(path)
        ) from None
    except OSError as exc:
        raise KeyFormatError(
            f"cannot write the key file: {exc.strerror}", where=str(path)
        ) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_key_pair(
    directory: Path,
    name: str,
    key: AnyPrivateKey,
    *,
    passphrase: bytes | None = None,
    force: bool,
) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0600) and ``NAME.pub`` (0644) into ``directory``."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFormatError(f"invalid key name {name!r}", where="--name")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFormatError(
            f"cannot create the key folder: {exc.strerror}", where=str(directory)
        ) from None
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if not force:
        for p in (key_path, pub_path):
            if p.exists():
                raise ConflictError(
                    "refusing to overwrite an existing key file (use --force)", where=str(p)
                )
    _write_new(key_path, key.pem(passphrase), 0o600, force)
    _write_new(pub_path, key.public.pem(), 0o644, force)
    return key_path, pub_path


def check_private_mode(path: Path) -> None:
    """Rule 1: refuse a private key file that group or others may access."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # read_small_file names the cause
    if mode & 0o077:
        raise KeyFormatError(
            f"private key file is open to group or others (mode {mode:04o}); run: chmod 600 {path}",
            where=str(path),
        )


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    check_private_mode(path)
    data = read_small_file(path, what="private key file")
    return PrivateKey.from_pem(data, passphrase, where=str(path))


def load_public_key(path: Path) -> PublicKey:
    """Load a public key from a ``.pub`` file, or derive it from a ``.key`` file."""
    data = read_small_file(path, what="public key file")
    if b"PRIVATE KEY" in data:
        raise KeyFormatError(
            "this is a private key file; give the .pub file instead", where=str(path)
        )
    return PublicKey.from_pem(data, where=str(path))


def load_any_private_key(path: Path, passphrase: bytes | None = None) -> AnyPrivateKey:
    """An Ed25519 or ML-DSA-44 private key file (rules 1 and 2 as for Ed25519)."""
    check_private_mode(path)
    data = read_small_file(path, what="private key file")
    return private_key_from_pem(data, passphrase, where=str(path))


def load_any_public_key(path: Path) -> AnyPublicKey:
    """An Ed25519 or ML-DSA-44 public key file."""
    data = read_small_file(path, what="public key file")
    if b"PRIVATE KEY" in data:
        raise KeyFormatError(
            "this is a private key file; give the .pub file instead", where=str(path)
        )
    return public_key_from_pem(data, where=str(path))


def load_passphrase(path: Path | None) -> bytes | None:
    """A passphrase is read from a file too; its trailing newline is not part of it."""
    if path is None:
        return None
    return read_small_file(path, what="passphrase file").rstrip(b"\r\n")
