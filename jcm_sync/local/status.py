"""Per-partnership status of a node, kept in a small JSON file beside its store.

What ``jcm-sync status`` shows that the store does not know: when each job last ran
and succeeded, its last error, and the counterpart's size of each log as last seen.
Written atomically (temporary file and rename) after each job; losing it loses only
these observations, never a record.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import msgspec


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


def status_path(data_dir: Path, partnership: str) -> Path:
    return data_dir / f"status-{partnership}.json"


def read_status(data_dir: Path, partnership: str) -> AgentStatus:
    path = status_path(data_dir, partnership)
    if not path.exists():
        return AgentStatus(partnership=partnership)
    try:
        return msgspec.json.decode(path.read_bytes(), type=AgentStatus)
    except msgspec.MsgspecError:
        return AgentStatus(partnership=partnership)


def write_status(data_dir: Path, status: AgentStatus) -> None:
    path = status_path(data_dir, status.partnership)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(status))
    os.replace(tmp, path)
