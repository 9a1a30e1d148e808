"""Key files: written 0600 without a window, loaded back, and refused by cause."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.errors import ConfigError, ConflictError, KeyFormatError, NotFoundError
from jcm_sync.local.keyfiles import (
    MAX_KEY_FILE,
    load_passphrase,
    load_private_key,
    load_public_key,
    read_small_file,
    write_key_pair,
)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run under the common umask, so the modes the module asks for are the modes seen."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ec_key_pem() -> tuple[bytes, bytes]:
    """A valid PKCS#8/SPKI pair of the wrong algorithm (P-256, not Ed25519)."""
    other = ec.generate_private_key(ec.SECP256R1())
    private = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.usefixtures("umask_022")
def test_written_pair_loads_back_with_its_modes(tmp_path: Path, key: PrivateKey) -> None:
    """`write_key_pair` writes NAME.key 0600 and NAME.pub 0644 that load as the same key."""
    key_path, pub_path = write_key_pair(tmp_path / "keys", "mn", key, force=False)
    assert (key_path.name, pub_path.name) == ("mn.key", "mn.pub")
    assert key_path.parent == pub_path.parent == tmp_path / "keys"
    assert mode(key_path) == 0o600
    assert mode(pub_path) == 0o644
    assert load_private_key(key_path).key_id == key.key_id
    assert load_public_key(pub_path) == key.public
    assert b"PRIVATE KEY" in key_path.read_bytes()


def test_the_private_key_is_0600_whatever_the_umask(tmp_path: Path, key: PrivateKey) -> None:
    """The 0600 mode comes from the create call, so even umask 0 leaves no group access."""
    old = os.umask(0)
    try:
        key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)
    finally:
        os.umask(old)
    assert mode(key_path) == 0o600


def test_passphrase_protected_key_round_trip(tmp_path: Path, key: PrivateKey) -> None:
    """A key written under a passphrase loads with it, and is refused without it or with another."""
    pass_file = tmp_path / "pass"
    pass_file.write_bytes(b"correct horse\n")
    passphrase = load_passphrase(pass_file)
    key_path, _ = write_key_pair(tmp_path, "mn", key, passphrase=passphrase, force=False)
    assert b"ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    assert load_private_key(key_path, passphrase).key_id == key.key_id
    with pytest.raises(KeyFormatError, match="passphrase problem") as missing:
        load_private_key(key_path)
    assert missing.value.where == str(key_path)
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        load_private_key(key_path, b"wrong horse")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"secret\n", b"secret"),
        (b"secret\r\n", b"secret"),
        (b"two words \n\n", b"two words "),
        (b"\tinner\nnewline", b"\tinner\nnewline"),
    ],
    ids=["lf", "crlf", "only-trailing-newlines", "inner-kept"],
)
def test_passphrase_file_drops_only_its_trailing_newline(
    tmp_path: Path, content: bytes, expected: bytes
) -> None:
    """A passphrase file's trailing line ending is not part of the passphrase; the rest is."""
    path = tmp_path / "pass"
    path.write_bytes(content)
    assert load_passphrase(path) == expected


def test_no_passphrase_file_means_no_passphrase() -> None:
    """`load_passphrase(None)` is None, not an empty passphrase."""
    assert load_passphrase(None) is None


@pytest.mark.usefixtures("umask_022")
def test_existing_key_is_not_overwritten_without_force(tmp_path: Path, key: PrivateKey) -> None:
    """A second write refuses with ConflictError and leaves the first key in place."""
    key_path, pub_path = write_key_pair(tmp_path, "mn", key, force=False)
    before = key_path.read_bytes(), pub_path.read_bytes()
    with pytest.raises(ConflictError, match="--force") as got:
        write_key_pair(tmp_path, "mn", PrivateKey.generate(), force=False)
    assert got.value.where == str(key_path)
    assert (key_path.read_bytes(), pub_path.read_bytes()) == before


def test_a_lone_public_file_also_blocks_a_write(tmp_path: Path, key: PrivateKey) -> None:
    """Without force, an existing NAME.pub refuses too, and no NAME.key is left behind."""
    (tmp_path / "mn.pub").write_bytes(b"someone's key")
    with pytest.raises(ConflictError) as got:
        write_key_pair(tmp_path, "mn", key, force=False)
    assert got.value.where == str(tmp_path / "mn.pub")
    assert not (tmp_path / "mn.key").exists()


@pytest.mark.usefixtures("umask_022")
def test_force_replaces_the_pair_on_a_fresh_0600_inode(tmp_path: Path, key: PrivateKey) -> None:
    """With force, a loosely-moded old key file is replaced by a new file of mode 0600."""
    key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)
    key_path.chmod(0o644)
    old_inode = key_path.stat().st_ino
    keep_open = key_path.open("rb")  # hold the old inode so its number cannot be reused
    try:
        new = PrivateKey.generate()
        key_path2, pub_path2 = write_key_pair(tmp_path, "mn", new, force=True)
    finally:
        keep_open.close()
    assert key_path2 == key_path
    assert key_path.stat().st_ino != old_inode
    assert mode(key_path) == 0o600
    assert load_private_key(key_path).key_id == new.key_id
    assert load_public_key(pub_path2) == new.public


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "../up"], ids=repr)
def test_invalid_key_names_are_refused(tmp_path: Path, key: PrivateKey, name: str) -> None:
    """A key name that is empty, hidden or a path is refused before anything is written."""
    with pytest.raises(KeyFormatError, match="invalid key name") as got:
        write_key_pair(tmp_path / "keys", name, key, force=False)
    assert got.value.where == "--name"
    assert not (tmp_path / "keys").exists()


def test_a_key_folder_that_is_a_file_is_refused(tmp_path: Path, key: PrivateKey) -> None:
    """The key folder must be creatable; a file in its place names the folder."""
    blocker = tmp_path / "keys"
    blocker.write_text("not a folder")
    with pytest.raises(KeyFormatError, match="cannot create the key folder") as got:
        write_key_pair(blocker, "mn", key, force=False)
    assert got.value.where == str(blocker)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PKCS#8 PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n", "not a PKCS#8"),
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA user@host\n", "not a PKCS#8"),
        (None, "expected an Ed25519 key, got"),
    ],
    ids=["empty", "malformed-pem", "ssh-public-line", "p256-key"],
)
def test_bad_private_key_files_are_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    """Malformed PEM and keys of another algorithm are KeyFormatError naming the file."""
    path = tmp_path / "bad.key"
    path.write_bytes(ec_key_pem()[0] if content is None else content)
    path.chmod(0o600)
    with pytest.raises(KeyFormatError, match=message) as got:
        load_private_key(path)
    assert got.value.where == str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not a PEM public key"),
        (None, "expected an Ed25519 key, got"),
    ],
    ids=["malformed-pem", "p256-key"],
)
def test_bad_public_key_files_are_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    """A public key file must be an Ed25519 SPKI PEM."""
    path = tmp_path / "bad.pub"
    path.write_bytes(ec_key_pem()[1] if content is None else content)
    with pytest.raises(KeyFormatError, match=message) as got:
        load_public_key(path)
    assert got.value.where == str(path)


def test_a_private_key_given_as_public_is_refused(tmp_path: Path, key: PrivateKey) -> None:
    """Giving the .key where the .pub belongs is refused with a hint, not used."""
    key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)
    with pytest.raises(KeyFormatError, match=r"give the \.pub file instead") as got:
        load_public_key(key_path)
    assert got.value.where == str(key_path)


def test_missing_key_file_is_not_found(tmp_path: Path) -> None:
    """A missing file is NotFoundError saying which kind of file is missing."""
    path = tmp_path / "absent.key"
    with pytest.raises(NotFoundError, match="private key file not found") as got:
        load_private_key(path)
    assert got.value.where == str(path)
    with pytest.raises(NotFoundError, match="public key file not found"):
        load_public_key(tmp_path / "absent.pub")
    with pytest.raises(NotFoundError, match="passphrase file not found"):
        load_passphrase(tmp_path / "absent.pass")


def test_a_directory_is_not_a_key_file(tmp_path: Path) -> None:
    """A folder given as a key file is a KeyFormatError, not a crash."""
    with pytest.raises(KeyFormatError, match="private key file is a directory"):
        load_private_key(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_file_says_why(tmp_path: Path, key: PrivateKey) -> None:
    """A key file this user may not read is refused with the system's reason."""
    key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)
    key_path.chmod(0)
    with pytest.raises(ConfigError, match=r"permission denied: .* cannot read the private key"):
        load_private_key(key_path)


def test_a_permission_error_is_permission_denied_not_not_found(
    tmp_path: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever runs the tests (root reads anything), a refused open says permission denied."""
    key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ConfigError, match="permission denied") as got:
        load_private_key(key_path)
    assert got.value.where == str(key_path)
    assert "not found" not in str(got.value)


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644, 0o660, 0o601])
def test_a_private_key_open_to_others_is_refused_with_the_chmod(
    tmp_path: Path, key: PrivateKey, loose: int
) -> None:
    """A private key file with any group or other bit is refused before it is read."""
    key_path, _ = write_key_pair(tmp_path, "mn", key, force=False)
    key_path.chmod(loose)
    with pytest.raises(KeyFormatError, match=f"mode {loose:04o}") as got:
        load_private_key(key_path)
    assert f"chmod 600 {key_path}" in str(got.value)
    key_path.chmod(0o600)
    assert load_private_key(key_path).key_id == key.key_id


def test_read_small_file_enforces_its_limit(tmp_path: Path) -> None:
    """Files up to the limit are read whole; one byte more is refused."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_small_file(path, limit=10) == b"x" * 10
    with pytest.raises(KeyFormatError, match="trust root is larger than 9 bytes") as got:
        read_small_file(path, limit=9, what="trust root")
    assert got.value.where == str(path)


def test_an_oversized_key_file_is_refused(tmp_path: Path, key: PrivateKey) -> None:
    """A key file is at most MAX_KEY_FILE bytes, so a wrong path cannot read a disk image."""
    path = tmp_path / "huge.key"
    path.write_bytes(key.pem() + b"\n" * MAX_KEY_FILE)
    path.chmod(0o600)
    with pytest.raises(KeyFormatError, match=f"larger than {MAX_KEY_FILE} bytes"):
        load_private_key(path)
