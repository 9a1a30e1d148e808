"""Per-partnership status of a node: its shape, and how it is kept in the node's store.

What ``jcm-sync status`` shows that the logs do not: when each job last ran and
succeeded, its last error, and the counterpart's size of each log as last seen.

Rules:

1. The status of a partnership is one node-state value (``Store.get_state``, ADR 0027)
   under ``status/<partnership>``, the msgspec JSON of ``AgentStatus``, replaced whole
   and atomically after each job; losing it loses only these observations, never a record.
2. This module does not import the store (layers: ``local`` and ``store`` are siblings);
   it asks only for the four state methods of ``StateStore``, which every ``Store`` has.
3. An unreadable value reads as a fresh status, as a missing one does: the next job
   writes a good one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import msgspec

__all__ = [
    "AgentStatus",
    "JobStatus",
    "LogStatus",
    "StateStore",
    "read_status",
    "status_key",
    "write_status",
]


class StateStore(Protocol):
    """The node-state part of ``store.Store`` (protocol rule 9)."""

    async def get_state(self, key: str) -> bytes | None: ...

    async def put_state(self, key: str, value: bytes) -> None: ...

    async def delete_state(self, key: str) -> bool: ...

    async def state_keys(self, prefix: str) -> list[str]: ...


class JobStatus(msgspec.Struct):
    last_run: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0


class LogStatus(msgspec.Struct):
    origin: str
    local_size: int = 0
    remote_size: int | None = None
    checked_at: datetime | None = None


class AgentStatus(msgspec.Struct):
    partnership: str
    jobs: dict[str, JobStatus] = msgspec.field(default_factory=dict)
    logs: dict[str, LogStatus] = msgspec.field(default_factory=dict)
    hub_receipt: bytes | None = None


def status_key(partnership: str) -> str:
    """Rule 1: the state key of a partnership's status."""
    return f"status/{partnership}"


async def read_status(state: StateStore, partnership: str) -> AgentStatus:
    """The stored status of ``partnership``, or a fresh one (rule 3)."""
    data = await state.get_state(status_key(partnership))
    if data is None:
        return AgentStatus(partnership=partnership)
    try:
        status = msgspec.json.decode(data, type=AgentStatus)
    except msgspec.MsgspecError:
        return AgentStatus(partnership=partnership)
    return status if status.partnership == partnership else AgentStatus(partnership=partnership)


async def write_status(state: StateStore, status: AgentStatus) -> None:
    """Replace the stored status of ``status.partnership`` (rule 1)."""
    await state.put_state(status_key(status.partnership), msgspec.json.encode(status))
