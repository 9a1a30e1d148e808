"""Fork alarms: durable values in the node's store, first evidence kept, cleared only on purpose."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.errors import CorruptStoreError
from jcm_sync.local.alarms import Alarm, AlarmBook, alarm_key, new_alarm
from jcm_sync.store import Store, open_store
from tests.local.conftest import node_db_url

ORIGIN = "jcm-sync.example/JP-MN/MN"
OTHER = "jcm-sync.example/JP-MN/JP"


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


async def test_raise_get_active_clear_round_trip(store: Store) -> None:
    """An alarm raised is read back whole, listed, and gone once cleared."""
    book = AlarmBook(store)
    assert await book.active() == []
    alarm = fork()
    assert await book.raise_alarm(alarm) is True
    assert await book.get(ORIGIN) == alarm
    assert await book.active() == [alarm]
    assert await store.state_keys("alarm/") == [alarm_key(ORIGIN)]
    assert await book.clear(ORIGIN) is True
    assert await book.get(ORIGIN) is None
    assert await book.active() == []
    assert await book.clear(ORIGIN) is False


async def test_alarms_survive_a_restart(tmp_path: Path) -> None:
    """A restart (a new store and book on the same database) sees every alarm, by origin,
    and no file is written beside the database."""
    async with await open_store(node_db_url(tmp_path)) as first:
        book = AlarmBook(first)
        await book.raise_alarm(fork(ORIGIN))
        await book.raise_alarm(fork(OTHER))
    async with await open_store(node_db_url(tmp_path)) as again:
        found = await AlarmBook(again).active()
    assert [a.origin for a in found] == sorted([ORIGIN, OTHER])
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("node.db")] == []


async def test_first_evidence_is_kept(store: Store) -> None:
    """A second alarm for the same log does not replace the first one's evidence."""
    book = AlarmBook(store)
    first = fork(held=b"first held")
    assert await book.raise_alarm(first) is True
    assert await book.raise_alarm(fork(held=b"later held")) is False
    kept = await book.get(ORIGIN)
    assert kept is not None
    assert kept.held_checkpoint == b"first held"
    assert kept.raised_at == first.raised_at


async def test_clearing_one_log_leaves_the_others(store: Store) -> None:
    """`clear` removes exactly the named log's alarm."""
    book = AlarmBook(store)
    await book.raise_alarm(fork(ORIGIN))
    await book.raise_alarm(fork(OTHER))
    assert await book.clear(OTHER) is True
    assert [a.origin for a in await book.active()] == [ORIGIN]


async def test_origins_that_look_alike_keep_their_own_alarms(store: Store) -> None:
    """``x/y``, ``x_y`` and an origin with dots and spaces each have their own alarm,
    with its own evidence; clearing one leaves the others."""
    book = AlarmBook(store)
    origins = ["jcm-sync.example/x/y", "jcm-sync.example/x_y", "../../etc/passwd x"]
    for n, origin in enumerate(origins):
        assert await book.raise_alarm(fork(origin, held=f"{n}\n".encode()))
    assert len(await book.active()) == 3
    for n, origin in enumerate(origins):
        got = await book.get(origin)
        assert got is not None
        assert got.held_checkpoint == f"{n}\n".encode()
    assert await book.clear("jcm-sync.example/x/y")
    assert sorted(a.origin for a in await book.active()) == sorted(origins[1:])


async def test_a_failed_write_leaves_no_alarm(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the store refuses the write, no alarm is half there, and a later raise works."""
    book = AlarmBook(store)

    async def fail(key: str, value: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "put_state", fail)
    with pytest.raises(OSError, match="No space"):
        await book.raise_alarm(fork())
    monkeypatch.undo()
    assert await book.get(ORIGIN) is None
    assert await book.raise_alarm(fork()) is True


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"origin": "x"}', b"[1, 2]"],
    ids=["empty", "broken-json", "missing-fields", "not-an-object"],
)
async def test_a_corrupt_alarm_is_refused_by_key(store: Store, content: bytes) -> None:
    """An unreadable alarm is a CorruptStoreError naming its key, not a silent clear."""
    book = AlarmBook(store)
    await book.raise_alarm(fork())
    await store.put_state(alarm_key(ORIGIN), content)
    with pytest.raises(CorruptStoreError, match="alarm is unreadable") as got:
        await book.get(ORIGIN)
    assert got.value.where == alarm_key(ORIGIN)
    with pytest.raises(CorruptStoreError) as listed:
        await book.active()
    assert listed.value.where == alarm_key(ORIGIN)
    assert await book.raise_alarm(fork()) is False  # still held: the operator must look first
    assert await store.get_state(alarm_key(ORIGIN)) == content


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
