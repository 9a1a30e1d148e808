"""``jcm-sync backup`` and ``jcm-sync restore`` (``cli/backup.py``): what they print, their
``--json``, and every refusal as one message on stderr with exit 1 and nothing changed.

The use case itself (a hub serving while it is backed up, PostgreSQL) is tested in
``tests/services/test_backup.py``; here the nodes are provisioned SQLite ones."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.local.config import load_config
from jcm_sync.local.lock import DaemonLock
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, fill_own_log, provision, signed_issuances
from jcm_sync.store import backup as store_backup
from jcm_sync.store.migrations import SCHEMA_VERSION
from tests.cli.conftest import run
from tests.services.test_backup import fresh_folder, held, rewrite
from tests.store.conftest import (
    PG_URL,
    drop_schema,
    make_schema,
    pg_reachable,
    skip_without_pg,
    with_param,
)

__all__ = ["pg_reachable"]


def seed(net: Network, n: int) -> None:
    async def go() -> None:
        node = await open_node(load_config(net.configs["JP"], env={}))
        try:
            now = datetime.now(UTC)
            envs, checked = signed_issuances("JP-MN", "JP", net.keys["JP"], n, now)
            await fill_own_log(node, "JP-MN", envs, checked)
            await node.logs("JP-MN").service.sign_checkpoint()
        finally:
            await node.close()

    asyncio.run(go())


@pytest.fixture
def nodes(tmp_path: Path) -> tuple[Network, Network]:
    """A JP hub with 1,200 records in its own log, and a fresh folder for it (no store)."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    seed(net, 1200)
    return net, fresh_folder(net, tmp_path / "fresh", None)


def refused(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1, (out, err)
    assert out == ""
    assert err.startswith("refused:"), err
    assert "Traceback" not in err
    return " ".join(err.split())


def test_backup_then_restore_into_a_fresh_folder(
    nodes: tuple[Network, Network], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, fresh = nodes
    out = tmp_path / "jp.jcmbak"
    code, text, err = run(capsys, "backup", "--config", net.configs["JP"], "--out", out)
    assert code == 0, err
    assert f"wrote {out}: sqlite store of node JP, schema {SCHEMA_VERSION}, 2 logs" in text
    assert "1200 entries" in text
    assert "jcm-sync.example/JP-MN/JP: size 1200, 1 checkpoints" in text
    assert "keys, the configuration and trust-root files are not in it" in text

    code, text, err = run(capsys, "restore", "--config", fresh.configs["JP"], out)
    assert code == 0, err
    assert "restored" in text
    assert "2 logs, 1200 entries verified" in text
    assert "ok jcm-sync.example/JP-MN/JP: size 1200, 1 checkpoints" in text
    assert asyncio.run(held(fresh)) == asyncio.run(held(net))

    # --json, and a second restore needs --force
    code, text, _ = run(capsys, "backup", "--config", net.configs["JP"], "--out", out, "--json")
    assert code == 0
    data = json.loads(text)
    assert data["node_id"] == "JP"
    assert data["file_bytes"] == out.stat().st_size
    assert {(log["node"], log["size"]) for log in data["logs"]} == {("JP", 1200), ("MN", 0)}
    msg = refused(capsys, "restore", "--config", fresh.configs["JP"], out)
    assert "already holds 1200 log entries; --force replaces them" in msg
    code, text, _ = run(
        capsys, "restore", "--config", fresh.configs["JP"], out, "--force", "--json"
    )
    assert code == 0
    data = json.loads(text)
    assert data["replaced_entries"] == 1200
    assert data["signatures_checked"] == ["JP-MN"]
    assert sorted((log["origin"], log["entries_checked"]) for log in data["logs"]) == [
        ("jcm-sync.example/JP-MN/JP", 1200),
        ("jcm-sync.example/JP-MN/MN", 0),
    ]


def test_restore_refusals_exit_1_and_change_nothing(
    nodes: tuple[Network, Network], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, fresh = nodes
    out = tmp_path / "jp.jcmbak"
    assert run(capsys, "backup", "--config", net.configs["JP"], "--out", out)[0] == 0
    seed(fresh, 30)
    before = asyncio.run(held(fresh))
    cfg = fresh.configs["JP"]
    blob = out.read_bytes()
    truncated = tmp_path / "t.jcmbak"
    truncated.write_bytes(blob[: len(blob) - 20000])  # past the end-of-archive padding
    flipped = tmp_path / "f.jcmbak"
    flipped.write_bytes(blob[:4000] + bytes([blob[4000] ^ 0x80]) + blob[4001:])

    def newer(d: dict[str, object]) -> None:
        d["schema_version"] = SCHEMA_VERSION + 1

    def other(d: dict[str, object]) -> None:
        d["node_id"] = "MN"

    cases = {
        truncated: "truncated",
        flipped: "the dump's SHA-256 is not the manifest's",
        rewrite(out, tmp_path / "n.jcmbak", manifest=newer): (
            f"the backup has schema version {SCHEMA_VERSION + 1}; this jcm-sync"
        ),
        rewrite(out, tmp_path / "o.jcmbak", manifest=other): (
            "the backup is of node MN and this configuration is node JP; --force"
        ),
    }
    for path, words in cases.items():
        assert words in refused(capsys, "restore", "--config", cfg, path)
        if "node MN" not in words:  # --force never passes a damaged or newer backup
            assert words in refused(capsys, "restore", "--config", cfg, path, "--force")
    with DaemonLock(load_config(cfg, env={}).data_dir, command="jcm-sync registry serve"):
        msg = refused(capsys, "restore", "--config", cfg, out, "--force")
    assert "a jcm-sync daemon uses this data directory: pid" in msg
    assert "(jcm-sync registry serve)" in msg
    assert "never restored under a running daemon" in msg
    assert asyncio.run(held(fresh)) == before


def test_backup_refusals(
    nodes: tuple[Network, Network], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net, _ = nodes
    cfg = net.configs["JP"]
    msg = refused(capsys, "backup", "--config", cfg, "--out", tmp_path / "no" / "b.jcmbak")
    assert "folder" in msg
    assert "does not exist" in msg
    assert "not a jcm-sync backup" in refused(capsys, "backup", "--config", cfg, "--out", cfg)
    code, _, err = run(capsys, "backup", "--config", cfg)
    assert code == 2
    assert "--out" in err


@pytest.mark.postgres
def test_missing_pg_dump_is_refused_by_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_reachable: str | None,
) -> None:
    skip_without_pg(pg_reachable)
    schema = asyncio.run(make_schema())
    try:
        url = with_param(PG_URL, "search_path", schema)
        net = provision(tmp_path / "net", ["MN"], hub_port=0, hub_store=url)
        seed(net, 10)
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        monkeypatch.setattr(store_backup, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
        out = tmp_path / "hub.jcmbak"
        msg = refused(capsys, "backup", "--config", net.configs["JP"], "--out", out)
        assert "pg_dump was not found on PATH or under" in msg
        assert "postgresql-client-" in msg
        assert not out.exists()
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".jcm-sync")] == []
    finally:
        asyncio.run(drop_schema(schema))


def test_relative_config_paths(
    nodes: tuple[Network, Network],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A configuration named relative to the working directory, as an operator types it."""
    net, fresh = nodes
    monkeypatch.chdir(tmp_path)
    hub = net.configs["JP"].relative_to(tmp_path)
    drill = fresh.configs["JP"].relative_to(tmp_path)
    assert run(capsys, "backup", "--config", hub, "--out", "jp.jcmbak")[0] == 0
    code, text, err = run(capsys, "restore", "--config", drill, "jp.jcmbak")
    assert code == 0, err
    assert "1200 entries verified" in text
    assert "already holds 1200 log entries" in refused(
        capsys, "restore", "--config", drill, "jp.jcmbak"
    )
