"""Fork alarms: durable evidence that a counterpart's log history has diverged.

Why this module exists: a fork (an inconsistent checkpoint, or a different entry at
an index already held) is the one event jcm-sync exists to catch between two
governments. When it happens the node stops replicating that log, keeps both signed
checkpoints as evidence, and says so in its logs, metrics and ``jcm-sync status``.
The alarm must outlive a restart, so it is a file written atomically (temporary
file, fsync, rename) in ``<data_dir>/alarms/``; an operator clears it deliberately
(``jcm-sync alarm clear``) after investigating, never the software.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from jcm_sync.errors import CorruptStoreError


class Alarm(msgspec.Struct, frozen=True):
    """One fork alarm with its evidence."""

    origin: str
    partnership: str
    node: str
    reason: str
    raised_at: datetime
    held_checkpoint: bytes | None = None
    offered_checkpoint: bytes | None = None
    detail: dict[str, Any] = msgspec.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "partnership": self.partnership,
            "node": self.node,
            "reason": self.reason,
            "raised_at": self.raised_at.isoformat(),
            "held_checkpoint": _text(self.held_checkpoint),
            "offered_checkpoint": _text(self.offered_checkpoint),
            "detail": self.detail,
        }


def _text(note: bytes | None) -> str | None:
    if note is None:
        return None
    try:
        return note.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(note).decode()


_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class AlarmBook:
    """The alarms of one node, kept as files under ``directory``."""

    directory: Path

    def _path(self, origin: str) -> Path:
        """The origin made a file name, and a hash of the origin itself: ``x/y`` and
        ``x_y`` make the same readable part, so without the hash the alarm of one log
        would hide the other's."""
        digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()[:12]
        return self.directory / f"{_SLUG.sub('_', origin)}.{digest}.json"

    def _legacy(self, origin: str) -> Path | None:
        """The file an alarm raised by an earlier version has, if it is this origin's."""
        path = self.directory / (_SLUG.sub("_", origin) + ".json")
        if not path.exists():
            return None
        try:
            alarm = msgspec.json.decode(path.read_bytes(), type=Alarm)
        except msgspec.MsgspecError as exc:
            raise CorruptStoreError(f"alarm file is unreadable: {exc}", where=str(path)) from None
        return path if alarm.origin == origin else None

    def _existing(self, origin: str) -> Path | None:
        path = self._path(origin)
        return path if path.exists() else self._legacy(origin)

    def raise_alarm(self, alarm: Alarm) -> bool:
        """Record an alarm; the first evidence for a log is kept. True if it is new."""
        if self._existing(alarm.origin) is not None:
            return False
        path = self._path(alarm.origin)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(msgspec.json.encode(alarm))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def get(self, origin: str) -> Alarm | None:
        path = self._existing(origin)
        if path is None:
            return None
        try:
            return msgspec.json.decode(path.read_bytes(), type=Alarm)
        except msgspec.MsgspecError as exc:
            raise CorruptStoreError(f"alarm file is unreadable: {exc}", where=str(path)) from None

    def active(self) -> list[Alarm]:
        if not self.directory.exists():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append(msgspec.json.decode(path.read_bytes(), type=Alarm))
            except msgspec.MsgspecError as exc:
                raise CorruptStoreError(
                    f"alarm file is unreadable: {exc}", where=str(path)
                ) from None
        return found

    def clear(self, origin: str) -> bool:
        path = self._existing(origin)
        if path is not None:
            path.unlink()
            return True
        return False


def new_alarm(
    origin: str,
    partnership: str,
    node: str,
    reason: str,
    *,
    held: bytes | None = None,
    offered: bytes | None = None,
    **detail: Any,
) -> Alarm:
    return Alarm(
        origin=origin,
        partnership=partnership,
        node=node,
        reason=reason,
        raised_at=datetime.now(UTC),
        held_checkpoint=held,
        offered_checkpoint=offered,
        detail=detail,
    )
