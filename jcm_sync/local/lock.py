"""The data-directory lock: one daemon (hub or agent) per data directory.

Why this module exists: two agents (or two hubs) started on the same configuration
would both sign checkpoints of the same log, both push it and both rewrite the status
and alarm files; the SQLite write lock serialises their appends but not their
decisions. So a daemon takes an exclusive lock on ``<data_dir>/daemon.lock`` before it
opens anything, and a second one is refused with the holder's pid, command and host.

Rules:

1. The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on an open file, held for the life
   of the process: the operating system releases it when the process exits in any way,
   ``kill -9`` included, so a stale lock file never blocks a restart. The file is never
   deleted (deleting it would let a second process lock a new inode while the first
   still holds the old one).
2. The holder writes ``{"pid", "command", "host", "since"}`` into the file after taking
   the lock; a refused process reads it only to name the holder. An empty or unreadable
   file still refuses, naming what is known.
3. Only ``registry serve`` and ``agent run`` take it. One-shot admin commands
   (``import``, ``sync``, ``status``, ``reconcile``, ``log``) do not: they must work
   beside a running daemon, and the store's own locking keeps their writes whole.
4. A data directory that cannot be written is refused here, by name, before the store
   is opened (see ``check_writable``).
5. ``daemon_holder`` tells ``jcm-sync status`` whether a daemon runs without taking the
   lock: it looks the file's inode up in ``/proc/locks``; only where that cannot be read
   does it try a shared lock and let go at once.
6. Several hub processes may share one PostgreSQL database, and so one configuration and
   data directory (ADR 0042): the database serialises their appends and shares their
   nonces, and one of them runs the singleton jobs. ``registry serve`` on a PostgreSQL
   store therefore takes the lock *shared* (``LOCK_SH``): any number of such hubs run
   side by side, while an agent, a SQLite hub or ``restore`` (exclusive takers) is
   refused as long as one of them runs, and none of them starts while one of those does.
   Each shared holder writes its line; the file names the last one to start, and a
   holder leaving truncates nothing (another may still hold it).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from jcm_sync.errors import ConfigError, ConflictError, StoreError

LOCK_NAME: Final = "daemon.lock"


def check_writable(directory: Path) -> None:
    """Refuse a data directory this process cannot create files in (rule 4).

    ``os.access`` says yes to root on a read-only mode, and no file system answers
    for a read-only mount through modes, so the probe creates and removes a file.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            "the data directory is a file, not a directory", where=str(directory)
        ) from None
    except OSError as exc:
        raise StoreError(
            f"cannot create the data directory: {exc.strerror}", where=str(directory)
        ) from None
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise StoreError(
            f"the data directory is not writable ({exc.strerror}); jcm-sync keeps its "
            "database, status and alarms there",
            where=str(directory),
        ) from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def _describe(holder: dict[str, Any]) -> str:
    parts = [f"pid {holder.get('pid', '?')}"]
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    if holder.get("host"):
        parts.append(f"on {holder['host']}")
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    return " ".join(parts)


def read_holder(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder; empty if it says nothing readable."""
    try:
        data = json.loads(path.read_bytes()[:4096] or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _in_proc_locks(path: Path) -> bool | None:
    """Whether ``/proc/locks`` lists a FLOCK on ``path``'s inode; None if unreadable."""
    try:
        st = path.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields and dev in fields:
            return True
    return False


def _probe(path: Path) -> bool:
    """Whether an exclusive lock is held, by asking for a shared one (released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock taken above
    return False


def daemon_holder(directory: Path) -> dict[str, Any] | None:
    """Rule 5: what the lock file says of the daemon holding ``directory``'s lock (an
    empty dict if it says nothing readable), or None when no daemon holds it."""
    path = directory / LOCK_NAME
    if not path.exists():
        return None
    held = _in_proc_locks(path)
    if held is None:
        held = _probe(path)
    return read_holder(path) if held else None


class DaemonLock:
    """The exclusive lock of one data directory, held until ``release`` or exit (rule 1)."""

    def __init__(
        self, directory: Path, command: str | None = None, *, shared: bool = False
    ) -> None:
        self.path = directory / LOCK_NAME
        self.command = command or " ".join(["jcm-sync", *sys.argv[1:3]])
        #: rule 6: hub processes sharing one PostgreSQL database
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> DaemonLock:
        check_writable(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file: {exc.strerror}", where=str(self.path)
            ) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            also = (
                "; several hubs share a data directory only on a PostgreSQL store"
                if self.shared or "registry serve" in str(holder.get("command", ""))
                else ""
            )
            raise ConflictError(
                f"another jcm-sync daemon uses this data directory: {_describe(holder)}; "
                f"stop it first, or give this one its own data_dir{also}",
                where=str(self.path.parent),
            ) from None
        info = {
            "pid": os.getpid(),
            "command": self.command,
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        line = json.dumps(info).encode() + b"\n"
        if not self.shared:
            os.ftruncate(fd, 0)
        else:  # rule 6: blanks over the tail of a longer line another holder wrote
            line = line[:-1].ljust(os.fstat(fd).st_size - 1) + b"\n"
        os.pwrite(fd, line, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if not self.shared:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DaemonLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
