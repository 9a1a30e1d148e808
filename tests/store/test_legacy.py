"""The one-time import of the JSON files an earlier version kept beside the store.

The files are written here as that version wrote them (its file names, its msgspec JSON
of the same structs); after the import every value reads back through today's readers,
each file is renamed ``.imported``, and a second open imports nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from jcm_sync.errors import CorruptStoreError
from jcm_sync.local.alarms import AlarmBook, new_alarm
from jcm_sync.local.status import AgentStatus, JobStatus, read_status
from jcm_sync.services.reconciliation import History, RunRecord, read_history, report_key
from jcm_sync.store import Store
from jcm_sync.store.legacy import import_legacy_files, legacy_files
from tests.local.conftest import store

__all__ = ["store"]  # a SQLite store, not the backends of tests/store/conftest.py

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
ORIGIN = "jcm-sync.example/JP-MN/JP"


def old_files(data_dir: Path) -> dict[str, bytes]:
    """The files a node of the earlier version left, by path relative to ``data_dir``."""
    status = AgentStatus("JP-MN", jobs={"push": JobStatus(last_run=T0, failures=2)})
    alarm = new_alarm(ORIGIN, "JP-MN", "JP", "entry differs", held=b"held\n", index=4)
    slug = ORIGIN.replace("/", "_")
    digest = hashlib.sha256(ORIGIN.encode()).hexdigest()[:12]
    history = History("JP-MN", runs=[RunRecord(started_at=T0, status="completed")])
    files = {
        "status-JP-MN.json": msgspec.json.encode(status),
        "status-JP-ID.json": msgspec.json.encode(AgentStatus("JP-ID")),
        f"alarms/{slug}.{digest}.json": msgspec.json.encode(alarm),
        "reconcile/JP-MN.json": msgspec.json.encode(history),
        "reconcile/JP-MN.report.json": b'{"partnership": "JP-MN", "status": "completed"}',
    }
    for rel, data in files.items():
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(data)
    (data_dir / "conformance" / "s1").mkdir(parents=True)  # a sandbox session: left alone
    (data_dir / "conformance" / "s1" / "status-JP-MN.json").write_bytes(b"session evidence")
    (data_dir / "alarms" / "x.json.tmp").write_bytes(b"a temporary left by a crash")
    return files


async def test_old_files_are_imported_once_and_renamed(store: Store, tmp_path: Path) -> None:
    """Every old file becomes its value, readable through today's readers, and is renamed
    ``.imported``; the sandbox sessions and stray temporaries are not touched; a second
    import finds nothing to do."""
    files = old_files(tmp_path)
    imported = await import_legacy_files(store, tmp_path)
    assert sorted(imported) == sorted(
        [
            "status/JP-MN",
            "status/JP-ID",
            f"alarm/{ORIGIN}",
            "reconcile/JP-MN/history",
            "reconcile/JP-MN/report",
        ]
    )
    status = await read_status(store, "JP-MN")
    assert (status.jobs["push"].last_run, status.jobs["push"].failures) == (T0, 2)
    alarm = await AlarmBook(store).get(ORIGIN)
    assert alarm is not None
    assert (alarm.reason, alarm.held_checkpoint, alarm.detail) == (
        "entry differs",
        b"held\n",
        {"index": 4},
    )
    history = await read_history(store, "JP-MN")
    assert [r.status for r in history.runs] == ["completed"]
    assert await store.get_state(report_key("JP-MN")) == files["reconcile/JP-MN.report.json"]
    for rel, data in files.items():
        assert not (tmp_path / rel).exists()
        assert (tmp_path / (rel + ".imported")).read_bytes() == data
    assert (tmp_path / "conformance" / "s1" / "status-JP-MN.json").exists()
    assert (tmp_path / "alarms" / "x.json.tmp").exists()
    assert legacy_files(tmp_path) == []
    assert await import_legacy_files(store, tmp_path) == []


async def test_a_value_already_in_the_store_is_kept(store: Store, tmp_path: Path) -> None:
    """A crash between the put and the rename leaves the file to import again: the store's
    value (at least as new) is kept and the file is only renamed."""
    old_files(tmp_path)
    newer = msgspec.json.encode(AgentStatus("JP-MN", jobs={"pull": JobStatus(failures=9)}))
    await store.put_state("status/JP-MN", newer)
    imported = await import_legacy_files(store, tmp_path)
    assert "status/JP-MN" not in imported
    assert await store.get_state("status/JP-MN") == newer
    assert (tmp_path / "status-JP-MN.json.imported").exists()


@pytest.mark.parametrize(
    "content", [b"{broken", b'{"reason": "no origin"}', b'{"origin": ""}', b"[1]"]
)
async def test_an_alarm_without_an_origin_is_refused_by_file(
    store: Store, tmp_path: Path, content: bytes
) -> None:
    """An alarm file whose origin cannot be read stops the import, naming the file; it is
    left in place, never silently dropped."""
    (tmp_path / "alarms").mkdir()
    bad = tmp_path / "alarms" / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(CorruptStoreError, match="alarm file") as info:
        await import_legacy_files(store, tmp_path)
    assert info.value.where == str(bad)
    assert bad.read_bytes() == content
    assert await store.state_keys("alarm/") == []


async def test_a_node_opens_an_upgraded_data_dir_with_its_state(tmp_path: Path) -> None:
    """``open_node_store`` (what ``status``, ``alarm`` and ``reconcile`` open) imports the
    files, so an operator sees the alarm right after the upgrade."""
    from jcm_sync.local.config import load_config
    from jcm_sync.services.node import open_node_store
    from jcm_sync.services.sample import provision

    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg = load_config(net.configs["JP"], env={})
    old_files(cfg.data_dir)
    store = await open_node_store(cfg)
    try:
        assert [a.origin for a in await AlarmBook(store).active()] == [ORIGIN]
        assert (await read_status(store, "JP-MN")).jobs["push"].failures == 2
    finally:
        await store.close()
    assert not (cfg.data_dir / "status-JP-MN.json").exists()
