"""The status file: per-partnership observations, written whole, read back or started afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.local.status import (
    AgentStatus,
    JobStatus,
    LogStatus,
    read_status,
    status_path,
    write_status,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def observed() -> AgentStatus:
    """A status with every kind of field set, as an agent leaves it after some jobs."""
    return AgentStatus(
        partnership="JP-MN",
        jobs={
            "push": JobStatus(last_run=T0, last_success=T0, failures=0),
            "pull": JobStatus(
                last_run=T0 + timedelta(seconds=30),
                last_success=T0,
                last_error="hub unreachable",
                last_error_at=T0 + timedelta(seconds=30),
                failures=2,
            ),
        },
        logs={
            "jcm-sync.example/JP-MN/MN": LogStatus(
                origin="jcm-sync.example/JP-MN/MN", local_size=12, remote_size=10, checked_at=T0
            ),
            "jcm-sync.example/JP-MN/JP": LogStatus(origin="jcm-sync.example/JP-MN/JP"),
        },
        hub_receipt=b"\x00signed receipt\xff",
    )


def test_a_written_status_reads_back_equal(tmp_path: Path) -> None:
    """Every field written (times, errors, sizes, receipt bytes) is read back the same."""
    status = observed()
    write_status(tmp_path, status)
    back = read_status(tmp_path, "JP-MN")
    assert back == status
    assert back.jobs["pull"].last_error_at == T0 + timedelta(seconds=30)
    assert back.hub_receipt == b"\x00signed receipt\xff"


def test_a_missing_status_is_a_fresh_one(tmp_path: Path) -> None:
    """Before any job has run, the status is empty for that partnership, not an error."""
    fresh = read_status(tmp_path, "JP-MN")
    assert fresh == AgentStatus(partnership="JP-MN")
    assert (fresh.jobs, fresh.logs, fresh.hub_receipt) == ({}, {}, None)


def test_each_partnership_has_its_own_file(tmp_path: Path) -> None:
    """Two partnerships of one node keep separate status files beside the store."""
    write_status(tmp_path, observed())
    other = AgentStatus(partnership="JP-ID", jobs={"push": JobStatus(failures=5)})
    write_status(tmp_path, other)
    assert status_path(tmp_path, "JP-MN").parent == tmp_path
    assert status_path(tmp_path, "JP-MN") != status_path(tmp_path, "JP-ID")
    assert read_status(tmp_path, "JP-ID") == other
    assert read_status(tmp_path, "JP-MN") == observed()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        status_path(tmp_path, pid).name for pid in ("JP-MN", "JP-ID")
    )


def test_a_rewrite_replaces_the_whole_file(tmp_path: Path) -> None:
    """A later write replaces the earlier one entirely, leaving no temporary behind."""
    write_status(tmp_path, observed())
    later = AgentStatus(partnership="JP-MN", jobs={"push": JobStatus(failures=1)})
    write_status(tmp_path, later)
    assert read_status(tmp_path, "JP-MN") == later
    assert [p.name for p in tmp_path.iterdir()] == [status_path(tmp_path, "JP-MN").name]


def test_a_failed_write_keeps_the_previous_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new status becomes visible only by rename: a failure before it leaves the old one."""
    write_status(tmp_path, observed())
    before = status_path(tmp_path, "JP-MN").read_bytes()

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("jcm_sync.local.status.os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_status(tmp_path, AgentStatus(partnership="JP-MN"))
    monkeypatch.undo()
    assert status_path(tmp_path, "JP-MN").read_bytes() == before
    assert read_status(tmp_path, "JP-MN") == observed()


@pytest.mark.parametrize(
    "content",
    [b"", b"{truncated", b'{"partnership": "JP-MN", "jobs": {"push": {"failures": "x"}}}'],
    ids=["empty", "truncated", "wrong-type"],
)
def test_an_unreadable_status_starts_afresh(tmp_path: Path, content: bytes) -> None:
    """A damaged status file loses only observations: it reads as a fresh status."""
    status_path(tmp_path, "JP-MN").write_bytes(content)
    assert read_status(tmp_path, "JP-MN") == AgentStatus(partnership="JP-MN")


def test_unknown_fields_from_a_newer_version_are_ignored(tmp_path: Path) -> None:
    """A status written by a newer jcm-sync with extra fields still reads its known ones."""
    status_path(tmp_path, "JP-MN").write_bytes(
        b'{"partnership": "JP-MN", "future": 1, "jobs": {"push": {"failures": 4, "new": true}}}'
    )
    assert read_status(tmp_path, "JP-MN").jobs["push"].failures == 4
