"""Fork alarms: durable files, first evidence kept, cleared only on purpose."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.errors import CorruptStoreError
from jcm_sync.local.alarms import Alarm, AlarmBook, new_alarm

ORIGIN = "jcm-sync.example/JP-MN/MN"
OTHER = "jcm-sync.example/JP-MN/JP"


def alarm_file(directory: Path) -> Path:
    """The one alarm file in ``directory``."""
    (path,) = directory.glob("*.json")
    return path


def fork(origin: str = ORIGIN, *, held: bytes = b"held\n", offered: bytes = b"offered\n") -> Alarm:
    return new_alarm(origin, "JP-MN", "MN", "inconsistent checkpoint", held=held, offered=offered)


def test_new_alarm_carries_its_evidence_and_time() -> None:
    """`new_alarm` stamps the time now (UTC) and keeps the extra fields as detail."""
    before = datetime.now(UTC)
    alarm = new_alarm(ORIGIN, "JP-MN", "MN", "entry differs", held=b"a", index=7, size=9)
    after = datetime.now(UTC)
    assert before <= alarm.raised_at <= after
    assert alarm.raised_at.utcoffset() == timedelta(0)
    assert alarm.detail == {"index": 7, "size": 9}
    assert (alarm.held_checkpoint, alarm.offered_checkpoint) == (b"a", None)


def test_raise_get_active_clear_round_trip(tmp_path: Path) -> None:
    """An alarm raised is read back whole, listed, and gone once cleared."""
    book = AlarmBook(tmp_path / "alarms")
    assert book.active() == []  # the folder does not exist yet
    alarm = fork()
    assert book.raise_alarm(alarm) is True
    assert book.get(ORIGIN) == alarm
    assert book.active() == [alarm]
    assert book.clear(ORIGIN) is True
    assert book.get(ORIGIN) is None
    assert book.active() == []
    assert book.clear(ORIGIN) is False


def test_alarms_survive_a_new_book(tmp_path: Path) -> None:
    """A restart (a new AlarmBook on the same folder) sees every alarm, sorted by file."""
    first, second = fork(ORIGIN), fork(OTHER)
    book = AlarmBook(tmp_path)
    book.raise_alarm(first)
    book.raise_alarm(second)
    again = AlarmBook(tmp_path).active()
    assert {a.origin for a in again} == {ORIGIN, OTHER}
    by_file = [json.loads(p.read_bytes())["origin"] for p in sorted(tmp_path.glob("*.json"))]
    assert [a.origin for a in again] == by_file


def test_first_evidence_is_kept(tmp_path: Path) -> None:
    """A second alarm for the same log does not replace the first one's evidence."""
    book = AlarmBook(tmp_path)
    first = fork(held=b"first held")
    assert book.raise_alarm(first) is True
    assert book.raise_alarm(fork(held=b"later held")) is False
    kept = book.get(ORIGIN)
    assert kept is not None
    assert kept.held_checkpoint == b"first held"
    assert kept.raised_at == first.raised_at


def test_clearing_one_log_leaves_the_others(tmp_path: Path) -> None:
    """`clear` removes exactly the named log's alarm."""
    book = AlarmBook(tmp_path)
    book.raise_alarm(fork(ORIGIN))
    book.raise_alarm(fork(OTHER))
    assert book.clear(OTHER) is True
    assert [a.origin for a in book.active()] == [ORIGIN]


def test_the_origin_is_a_flat_file_name(tmp_path: Path) -> None:
    """Slashes and odd characters in an origin never leave the alarms folder."""
    book = AlarmBook(tmp_path / "alarms")
    origin = "../../etc/passwd x"
    book.raise_alarm(fork(origin))
    files = list((tmp_path / "alarms").iterdir())
    assert len(files) == 1
    assert files[0].parent == tmp_path / "alarms"
    assert "/" not in files[0].name
    assert " " not in files[0].name
    assert book.get(origin) is not None
    assert not (tmp_path / "etc").exists()


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    """The alarm file appears whole by rename; no `.tmp` remains after a raise."""
    book = AlarmBook(tmp_path)
    book.raise_alarm(fork())
    (only,) = tmp_path.iterdir()
    assert only.suffix == ".json"
    assert json.loads(only.read_bytes())["origin"] == ORIGIN


def test_a_failed_rename_leaves_no_alarm_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename fails, no half-written alarm file is ever visible under its name."""
    book = AlarmBook(tmp_path)

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("jcm_sync.local.alarms.os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        book.raise_alarm(fork())
    monkeypatch.undo()
    assert list(tmp_path.glob("*.json")) == []
    assert book.get(ORIGIN) is None
    assert book.active() == []  # the leftover temporary is not an alarm
    assert book.raise_alarm(fork()) is True  # and does not block a later raise


def test_the_file_is_synced_before_it_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data is fsync-ed before the rename, and the folder after it."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr("jcm_sync.local.alarms.os.fsync", fsync)
    monkeypatch.setattr("jcm_sync.local.alarms.os.replace", replace)
    AlarmBook(tmp_path).raise_alarm(fork())
    assert events == ["fsync-file", "rename", "fsync-dir"]


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"origin": "x"}', b"[1, 2]"],
    ids=["empty", "broken-json", "missing-fields", "not-an-object"],
)
def test_a_corrupt_alarm_file_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    """An unreadable alarm file is a CorruptStoreError naming the file, not a silent clear."""
    book = AlarmBook(tmp_path)
    book.raise_alarm(fork())
    path = alarm_file(tmp_path)
    path.write_bytes(content)
    with pytest.raises(CorruptStoreError, match="alarm file is unreadable") as got:
        book.get(ORIGIN)
    assert got.value.where == str(path)
    with pytest.raises(CorruptStoreError) as listed:
        book.active()
    assert listed.value.where == str(path)
    assert book.raise_alarm(fork()) is False  # still held: the operator must look first
    assert path.read_bytes() == content


def test_summary_is_json_ready(tmp_path: Path) -> None:
    """`summary` shows checkpoint notes as text, and non-UTF-8 evidence as base64."""
    binary = b"\xff\xfe not utf-8"
    alarm = new_alarm(ORIGIN, "JP-MN", "MN", "fork", held=b"note\n", offered=binary, index=3)
    summary = alarm.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["held_checkpoint"] == "note\n"
    assert base64.b64decode(summary["offered_checkpoint"]) == binary
    assert datetime.fromisoformat(summary["raised_at"]) == alarm.raised_at
    assert summary["detail"] == {"index": 3}
    assert new_alarm(ORIGIN, "JP-MN", "MN", "fork").summary()["held_checkpoint"] is None


def test_origins_that_slug_alike_keep_their_own_alarms(tmp_path: Path) -> None:
    """``x/y`` and ``x_y`` make the same readable file name: each log still has its own
    alarm, with its own evidence, and clearing one leaves the other."""
    book = AlarmBook(tmp_path / "alarms")
    assert book.raise_alarm(fork("jcm-sync.example/x/y", held=b"one\n"))
    assert book.raise_alarm(fork("jcm-sync.example/x_y", held=b"two\n"))
    assert len(book.active()) == 2
    one, two = book.get("jcm-sync.example/x/y"), book.get("jcm-sync.example/x_y")
    assert one is not None
    assert two is not None
    assert (one.held_checkpoint, two.held_checkpoint) == (b"one\n", b"two\n")
    assert book.clear("jcm-sync.example/x/y")
    assert [a.origin for a in book.active()] == ["jcm-sync.example/x_y"]


def test_an_alarm_raised_before_the_hashed_names_is_found_and_cleared(tmp_path: Path) -> None:
    """A file named by the slug alone (earlier versions) still counts for its origin: it
    is found, not raised twice, and cleared; a slug-alike origin does not claim it."""
    book = AlarmBook(tmp_path / "alarms")
    (tmp_path / "alarms").mkdir()
    legacy = tmp_path / "alarms" / "jcm-sync.example_JP-MN_MN.json"
    legacy.write_bytes(msgspec.json.encode(fork(ORIGIN)))
    assert book.get(ORIGIN) is not None
    assert not book.raise_alarm(fork(ORIGIN))
    assert book.get("jcm-sync.example_JP-MN_MN") is None
    assert book.clear(ORIGIN)
    assert not legacy.exists()
