"""Fork alarms: durable evidence that a counterpart's log history has diverged.

Why this module exists: a fork (an inconsistent checkpoint, or a different entry at
an index already held) is the one event jcm-sync exists to catch between two
governments. When it happens the node stops replicating that log, keeps both signed
checkpoints as evidence, and says so in its logs, metrics and ``jcm-sync status``.
The alarm must outlive a restart and go with a backup, so it is kept in the node's store;
an operator clears it deliberately (``jcm-sync alarm clear``) after investigating, never
the software.

Rules:

1. An alarm is one node-state value (protocol rule 9, ADR 0027) under
   ``alarm/<origin>``: the msgspec JSON of ``Alarm``, written atomically and durably.
2. The first evidence for a log is kept: raising an alarm for an alarmed log changes nothing.
3. An unreadable alarm is a ``CorruptStoreError``, never silently no alarm: replication
   of that log stays stopped until an operator looks.
4. This module does not import the store (layers): ``AlarmBook`` takes any
   ``StateStore`` (``local.status``), which every ``Store`` is.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from jcm_sync.errors import CorruptStoreError
from jcm_sync.local.status import StateStore


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


def alarm_key(origin: str) -> str:
    """Rule 1: the state key of a log's alarm."""
    return f"alarm/{origin}"


def _decode(data: bytes, key: str) -> Alarm:
    try:
        return msgspec.json.decode(data, type=Alarm)
    except msgspec.MsgspecError as exc:
        raise CorruptStoreError(f"the alarm is unreadable: {exc}", where=key) from None


@dataclass
class AlarmBook:
    """The alarms of one node, kept in its store (rule 1)."""

    state: StateStore

    async def raise_alarm(self, alarm: Alarm) -> bool:
        """Record an alarm; the first evidence for a log is kept. True if it is new."""
        key = alarm_key(alarm.origin)
        if await self.state.get_state(key) is not None:  # even unreadable: rule 3
            return False
        await self.state.put_state(key, msgspec.json.encode(alarm))
        return True

    async def get(self, origin: str) -> Alarm | None:
        key = alarm_key(origin)
        data = await self.state.get_state(key)
        return None if data is None else _decode(data, key)

    async def active(self) -> list[Alarm]:
        """Every alarm, by origin."""
        found = []
        for key in await self.state.state_keys(alarm_key("")):
            data = await self.state.get_state(key)
            if data is not None:  # cleared meanwhile
                found.append(_decode(data, key))
        return found

    async def clear(self, origin: str) -> bool:
        return await self.state.delete_state(alarm_key(origin))


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
