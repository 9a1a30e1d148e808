"""``jcm-sync backup`` and ``jcm-sync restore``: a node's whole store in one checked file.

Why this module exists: a registry's logs are evidence; losing a disk must not lose them,
and a copy put back must be proved to be the logs that were copied before the node runs
on it. The store adapter takes the snapshot and loads it (``store/backup.py``); this
module writes the backup file, checks it, and verifies every restored log with the same
audit as ``jcm-sync log verify`` (``log_service.verify_log``).

The file is a POSIX tar of three members, in this order:

* the dump: ``store.sqlite3`` (a SQLite database) or ``store.pgdump`` (``pg_dump
  --format=custom`` of the node's schema), hashed as it is written (read once);
* ``manifest.json``: format, jcm-sync version, schema version, backend, node id and role,
  created_at, the dump's name, size and SHA-256, and every log's partnership, node,
  origin, size, root (hex) and number of checkpoints, as the snapshot holds them;
* ``SHA256SUMS``: the SHA-256 of the manifest and of the dump, as ``sha256sum`` writes
  them (``tar -xf FILE && sha256sum -c SHA256SUMS`` checks a copy by hand).

A restore reads the three headers, then the manifest, before it reads the dump.

Rules:

1. A backup runs beside the daemon (the snapshot is consistent, ``store/backup.py`` rule 1)
   and is written to a temporary file beside ``--out``, fsynced and renamed over it: a
   reader never sees half a backup. An existing ``--out`` is replaced only if it is a
   backup itself.
2. A restore reads the manifest and both digests before it touches the store, and refuses:
   a damaged or truncated file, a backup of another node (unless ``force``), a schema
   version newer than this jcm-sync's, another backend than the configuration's, and a
   store that already holds entries (unless ``force``).
3. A restore takes the data directory's daemon lock for its whole run: it is refused while
   ``registry serve`` or ``agent run`` holds it, and no daemon starts halfway through.
4. The restored copy is staged beside the store and opened (an older schema is migrated
   there); every log is audited (each entry hashes into the stored tree and root, each
   record re-verified under the configured trust root as received, each checkpoint's
   signature checked against the chain's keys), the configured roots are checked against
   its trust marks, and its logs, sizes and roots must equal the manifest's. Only then
   does it replace the store; on any failure the staged copy is removed, the error names
   the log, and the store is as it was.
5. Keys, the configuration and trust-root files are not in a backup (they are files the
   operator keeps, and a private key never goes into a file that is copied around).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final, cast

import msgspec

from jcm_sync import __version__
from jcm_sync.core.trust import TrustedRoot
from jcm_sync.errors import (
    BadDataError,
    ConfigError,
    ConflictError,
    CorruptStoreError,
    NoOutputFolderError,
    StoreError,
)
from jcm_sync.local.config import Config
from jcm_sync.local.lock import LOCK_NAME, DaemonLock, read_holder
from jcm_sync.services.log_service import (
    LogAudit,
    checkpoint_key_history,
    record_verifier,
    verify_log,
)
from jcm_sync.services.node import check_roots, load_chain, utc_now
from jcm_sync.store import LogRef, open_store, redact_url
from jcm_sync.store import backup as store_backup
from jcm_sync.store.migrations import SCHEMA_VERSION

__all__ = [
    "FORMAT",
    "BackupResult",
    "LogManifest",
    "Manifest",
    "RestoreResult",
    "backup",
    "read_manifest",
    "restore",
]

FORMAT: Final = "jcm-sync-backup/1"
MANIFEST: Final = "manifest.json"
SUMS: Final = "SHA256SUMS"
MAX_MANIFEST: Final = 16 * 1024 * 1024
CHUNK: Final = 1 << 20


class LogManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    partnership: str
    node: str
    origin: str
    size: int
    root: str
    checkpoints: int


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    jcm_sync_version: str
    schema_version: int
    backend: str
    node_id: str
    role: str
    created_at: datetime
    dump_name: str
    dump_bytes: int
    dump_sha256: str
    logs: list[LogManifest]
    #: the PostgreSQL schema dumped (restore puts it under the configured one)
    source_schema: str | None = None


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    file_bytes: int
    seconds: float

    def to_builtins(self) -> dict[str, object]:
        m = self.manifest
        return {
            "path": str(self.path), "backend": m.backend, "node_id": m.node_id,
            "schema_version": m.schema_version, "created_at": m.created_at.isoformat(),
            "dump_bytes": m.dump_bytes, "dump_sha256": m.dump_sha256,
            "file_bytes": self.file_bytes, "seconds": round(self.seconds, 3),
            "logs": msgspec.to_builtins(m.logs),
        }  # fmt: skip


@dataclass
class RestoreResult:
    path: Path
    store: str
    manifest: Manifest
    audits: list[LogAudit]
    #: log entries the store held before and that the restore replaced (``force``)
    replaced_entries: int
    #: partnerships whose records and checkpoints were checked against a trust root
    signatures_checked: list[str]
    seconds: float
    migrated_to: int = field(default=SCHEMA_VERSION)

    def to_builtins(self) -> dict[str, object]:
        m = self.manifest
        return {
            "path": str(self.path), "store": self.store, "backend": m.backend,
            "node_id": m.node_id, "created_at": m.created_at.isoformat(),
            "schema_version": m.schema_version, "migrated_to": self.migrated_to,
            "replaced_entries": self.replaced_entries,
            "signatures_checked": self.signatures_checked, "seconds": round(self.seconds, 3),
            "logs": [
                {"origin": a.log.origin, "size": a.size, "root": a.root.hex(),
                 "entries_checked": a.entries_checked,
                 "checkpoints_checked": a.checkpoints_checked}
                for a in self.audits
            ],
        }  # fmt: skip


_encode = msgspec.json.Encoder(order="deterministic").encode


def _is_backup(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:") as tar:
            return [m.name for m in tar.getmembers()][1:] == [MANIFEST, SUMS]
    except (OSError, tarfile.TarError):
        return False


def _check_out(cfg: Config, out: Path) -> None:
    if not out.parent.is_dir():
        raise NoOutputFolderError(
            f"cannot write the backup: folder {out.parent} does not exist", where=str(out)
        )
    if out.is_dir():
        raise BadDataError("cannot write the backup: it is a folder", where=str(out))
    db = store_backup.database_file(cfg.store_url)
    if db is not None and out.resolve() in {
        Path(f"{db}{s}").resolve() for s in ("", "-wal", "-shm")
    }:
        raise ConfigError("--out names the store's own database file", where=str(out))
    if out.exists() and not _is_backup(out):
        raise ConflictError(
            "the file exists and is not a jcm-sync backup; it is never overwritten",
            where=str(out),
        )


def _add(tar: tarfile.TarFile, name: str, size: int, data: IO[bytes], mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o600
    tar.addfile(info, data)


async def backup(
    cfg: Config, out: Path, *, clock: Callable[[], datetime] = utc_now
) -> BackupResult:
    """Write a backup of ``cfg``'s store to ``out`` (rule 1), the daemon running or not."""
    started = time.perf_counter()
    _check_out(cfg, out)
    created = clock()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".jcm-sync-backup-") as tmp:
        snap = await store_backup.dump(cfg.store_url, Path(tmp))
        part = Path(tmp) / "backup.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.TarFile(
                fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
            ) as tar,
            snap.path.open("rb") as dump_file,
        ):
            mtime = created.timestamp()
            size, hashing = snap.path.stat().st_size, _Hashing(dump_file)
            _add(tar, snap.path.name, size, cast(IO[bytes], hashing), mtime)  # one pass
            digest = hashing.sha256.hexdigest()
            manifest = _manifest_of(cfg, snap, created, size, digest)
            body = _encode(manifest) + b"\n"
            sums = (
                f"{hashlib.sha256(body).hexdigest()}  {MANIFEST}\n{digest}  {snap.path.name}\n"
            ).encode()
            _add(tar, MANIFEST, len(body), io.BytesIO(body), mtime)
            _add(tar, SUMS, len(sums), io.BytesIO(sums), mtime)
        store_backup.fsync_path(part)
        os.replace(part, out)
        store_backup.fsync_path(out.parent)
    return BackupResult(out, manifest, out.stat().st_size, time.perf_counter() - started)


class _Hashing:
    """A reader that hashes what it reads, so the dump is read once."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha256.update(data)
        return data


def _manifest_of(
    cfg: Config, snap: store_backup.Snapshot, created: datetime, size: int, digest: str
) -> Manifest:
    return Manifest(
        format=FORMAT, jcm_sync_version=__version__, schema_version=snap.schema_version,
        backend=snap.backend, node_id=cfg.node.id, role=cfg.node.role,
        created_at=created.astimezone(UTC), dump_name=snap.path.name, dump_bytes=size,
        dump_sha256=digest, source_schema=snap.schema,
        logs=[LogManifest(h.partnership, h.node, h.origin, h.size, h.root.hex(), h.checkpoints)
              for h in snap.logs],
    )  # fmt: skip


# --- reading a backup -----------------------------------------------------------------


def _damaged(path: Path, why: str) -> BadDataError:
    return BadDataError(
        f"the backup file is damaged or not a jcm-sync backup: {why}", where=str(path)
    )


def _members(tar: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    """The dump, the manifest and the sums, by their headers (nothing else is read)."""
    try:
        members = tar.getmembers()
    except tarfile.TarError as exc:
        raise _damaged(path, f"{exc} (truncated?)") from None
    names = [m.name for m in members]
    if len(members) != 3 or names[1:] != [MANIFEST, SUMS] or not all(m.isfile() for m in members):
        raise _damaged(path, f"expected a dump, {MANIFEST} and {SUMS}, found {names} (truncated?)")
    return members


def _read_member(tar: tarfile.TarFile, path: Path, info: tarfile.TarInfo, limit: int) -> bytes:
    if info.size > limit:
        raise _damaged(path, f"{info.name} is {info.size} bytes")
    f = tar.extractfile(info)
    data = f.read() if f is not None else b""
    if len(data) != info.size:
        raise _damaged(path, f"{info.name} is cut short (truncated)")
    return data


def _manifest(path: Path, tar: tarfile.TarFile) -> tuple[Manifest, tarfile.TarInfo]:
    """The manifest, checked against SHA256SUMS, and the dump's member."""
    dump, manifest_info, sums_info = _members(tar, path)
    body = _read_member(tar, path, manifest_info, MAX_MANIFEST)
    sums_raw = _read_member(tar, path, sums_info, 64 * 1024)
    sums: dict[str, str] = {}
    for line in sums_raw.decode("ascii", "replace").splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    if sums.get(MANIFEST) != hashlib.sha256(body).hexdigest():
        raise _damaged(path, "the manifest's SHA-256 is not the one in SHA256SUMS")
    try:
        manifest = msgspec.json.decode(body, type=Manifest)
    except msgspec.DecodeError as exc:
        raise _damaged(path, f"manifest: {exc}") from None
    if manifest.format != FORMAT:
        raise BadDataError(
            f"backup format {manifest.format!r} is not {FORMAT!r}; use the jcm-sync that wrote it",
            where=str(path),
        )
    if sums.get(manifest.dump_name) != manifest.dump_sha256 or dump.name != manifest.dump_name:
        raise _damaged(path, "the dump named in the manifest and in SHA256SUMS differ")
    return manifest, dump


def _open_backup(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (FileNotFoundError, IsADirectoryError):
        raise BadDataError("no such backup file", where=str(path)) from None
    except tarfile.TarError as exc:
        raise _damaged(path, str(exc)) from None


def read_manifest(path: Path) -> Manifest:
    """The manifest of a backup file, its digest checked (the dump is not read)."""
    with _open_backup(path) as tar:
        return _manifest(path, tar)[0]


def _extract_dump(
    path: Path, tar: tarfile.TarFile, manifest: Manifest, info: tarfile.TarInfo, into: Path
) -> None:
    if info.size != manifest.dump_bytes:
        raise _damaged(
            path, f"the dump is {info.size} bytes, the manifest says {manifest.dump_bytes}"
        )
    src = tar.extractfile(info)
    if src is None:
        raise _damaged(path, "the dump is not a file")
    h, n = hashlib.sha256(), 0
    try:
        with into.open("wb") as dst:
            while block := src.read(CHUNK):
                h.update(block)
                n += len(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
    except tarfile.TarError as exc:
        raise _damaged(path, f"{exc} (truncated?)") from None
    if n != manifest.dump_bytes:
        raise _damaged(
            path, f"the dump is cut short at {n} of {manifest.dump_bytes} bytes (truncated)"
        )
    if h.hexdigest() != manifest.dump_sha256:
        raise _damaged(path, "the dump's SHA-256 is not the manifest's (a changed or flipped byte)")


def _check_manifest(cfg: Config, path: Path, manifest: Manifest, backend: str, force: bool) -> None:
    """Rule 2, before anything is written."""
    if manifest.schema_version > SCHEMA_VERSION:
        raise StoreError(
            f"the backup has schema version {manifest.schema_version}; this jcm-sync "
            f"({__version__}) knows version {SCHEMA_VERSION}: restore it with the jcm-sync "
            f"that wrote it ({manifest.jcm_sync_version}) or newer",
            where=str(path),
        )
    if manifest.backend != backend:
        raise ConfigError(
            f"the backup is of a {manifest.backend} store and the configuration names a "
            f"{backend} store ({redact_url(cfg.store_url)})",
            where=str(path),
        )
    if manifest.node_id != cfg.node.id and not force:
        raise ConflictError(
            f"the backup is of node {manifest.node_id} and this configuration is node "
            f"{cfg.node.id}; --force restores it anyway",
            where=str(path),
        )


# --- restoring ------------------------------------------------------------------------


async def _verify(
    url: str,
    manifest: Manifest,
    chains: Mapping[str, tuple[TrustedRoot, ...]],
    now: datetime,
) -> tuple[list[LogAudit], list[str]]:
    """Rule 4 on the staged copy; ``CorruptStoreError`` naming the log on any problem."""
    store = await open_store(url)
    try:
        await check_roots(store, dict(chains))
        held = {log.origin: log for log in await store.logs()}
        wanted = {m.origin: m for m in manifest.logs}
        if set(held) != set(wanted):
            missing = sorted(set(wanted) - set(held)) or sorted(set(held) - set(wanted))
            raise CorruptStoreError(
                f"the restored store's logs are not the manifest's (differ in {', '.join(missing)})"
            )
        audits, checked = [], set()
        for origin, m in wanted.items():
            ref: LogRef = held[origin]
            chain = chains.get(ref.partnership)
            if chain:
                checked.add(ref.partnership)
            audit = await verify_log(
                store,
                ref,
                verify=record_verifier(chain[-1].root, now) if chain else None,
                keys=checkpoint_key_history([t.root for t in chain], ref) if chain else None,
            )
            problems = list(audit.problems)
            if audit.ok and (audit.size, audit.root.hex()) != (m.size, m.root):
                problems.append(
                    f"size {audit.size} root {audit.root.hex()[:16]}… is not the manifest's "
                    f"size {m.size} root {m.root[:16]}…"
                )
            if audit.ok and audit.checkpoints_checked != m.checkpoints:
                problems.append(
                    f"{audit.checkpoints_checked} checkpoints, the manifest says {m.checkpoints}"
                )
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise CorruptStoreError(
                    f"the restored log does not verify: {problems[0]}{more}", where=origin
                )
            audits.append(audit)
        return audits, sorted(checked)
    finally:
        await store.close()


async def restore(
    cfg: Config, path: Path, *, force: bool = False, clock: Callable[[], datetime] = utc_now
) -> RestoreResult:
    """Restore a backup file into ``cfg``'s store (rules 2 to 4)."""
    started = time.perf_counter()
    backend = store_backup.backend_of(cfg.store_url)
    now = clock()
    chains = {p.id: load_chain(cfg, p.id, now) for p in cfg.partnerships}
    try:
        lock = DaemonLock(cfg.data_dir, command="jcm-sync restore").acquire()
    except ConflictError:
        holder = read_holder(cfg.data_dir / LOCK_NAME)
        who = f"pid {holder.get('pid', '?')}"
        if holder.get("command"):
            who += f" ({holder['command']})"
        raise ConflictError(
            f"a jcm-sync daemon uses this data directory: {who}; a store is never restored "
            "under a running daemon: stop the service first",
            where=str(cfg.data_dir),
        ) from None
    try:
        scratch = store_backup.scratch_dir(cfg.store_url, cfg.data_dir)
        if not scratch.is_dir():
            raise NoOutputFolderError(f"folder {scratch} of the database does not exist")
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".jcm-sync-restore-") as tmp:
            with _open_backup(path) as tar:
                manifest, info = _manifest(path, tar)
                _check_manifest(cfg, path, manifest, backend, force)
                dump_file = Path(tmp) / manifest.dump_name
                _extract_dump(path, tar, manifest, info, dump_file)
            held = await store_backup.entries_held(cfg.store_url)
            if held and not force:
                raise ConflictError(
                    f"the store already holds {held} log entries; --force replaces them "
                    "with the backup's",
                    where=redact_url(cfg.store_url),
                )
            staged = await store_backup.stage(cfg.store_url, dump_file, manifest.source_schema)
            try:
                audits, checked = await _verify(staged.url, manifest, chains, now)
            except BaseException:
                await staged.discard()
                raise
            await staged.commit()
    finally:
        lock.release()
    return RestoreResult(
        path, redact_url(cfg.store_url), manifest, audits, held, checked,
        time.perf_counter() - started,
    )  # fmt: skip
