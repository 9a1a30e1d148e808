"""``services.backup``: a backup taken while a real hub serves and appends, restored into a
fresh folder with a fresh configuration, every log verified, and the restored hub serving
the same checkpoints; then every refusal, each leaving the store as it was.

The hub runs on 127.0.0.1 (aiohttp, port 0) over SQLite or PostgreSQL (a schema of this
test only); its own log is filled with the sample's signed issuances, its replica of
Mongolia's log by the agent's pushes over HTTP, one of them running during the backups.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import sqlite3
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from jcm_sync.core.trust import Verification
from jcm_sync.errors import (
    BadDataError,
    ConfigError,
    ConflictError,
    CorruptStoreError,
    NoOutputFolderError,
    StoreError,
)
from jcm_sync.local.config import Config, load_config
from jcm_sync.local.lock import DaemonLock
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import HubServer, ServerSettings
from jcm_sync.services.agent import Syncer
from jcm_sync.services.backup import (
    MANIFEST,
    SUMS,
    LogManifest,
    Manifest,
    backup,
    read_manifest,
    restore,
)
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, fill_own_log, provision, signed_issuances
from jcm_sync.store import open_store
from jcm_sync.store.migrations import SCHEMA_VERSION
from tests.store.conftest import PG_URL, drop_schema, make_schema, pg_reachable, with_param

__all__ = ["pg_reachable"]

HUB_OWN, AGENT_OWN, DURING = 2000, 2000, 1000


@dataclass
class Running:
    """A hub serving on 127.0.0.1 (port 0) and the agent's node, for one test."""

    net: Network
    hub: Node | None = None
    runner: web.AppRunner | None = None
    port: int = 0
    agents: dict[str, Node] = field(default_factory=dict)
    clients: list[HubClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_hub(self) -> None:
        self.hub = await open_node(load_config(self.net.configs["JP"], env={}))
        self.runner = HubServer(Hub(self.hub), ServerSettings(run_jobs=False)).runner()
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def agent(self, cc: str) -> Node:
        if cc not in self.agents:
            self.agents[cc] = await open_node(load_config(self.net.configs[cc], env={}))
        return self.agents[cc]

    def syncer(self, node: Node, *, batch_size: int = 500) -> Syncer:
        client = HubClient(self.url, node.keys.transport)
        self.clients.append(client)
        return Syncer(node, client, "JP-MN", batch_size=batch_size)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for a in self.agents.values():
            await a.close()
        if self.runner is not None:
            await self.runner.cleanup()  # closes the hub's store too


@dataclass
class Site:
    running: Running
    backend: str
    schemas: list[str]

    @property
    def cfg(self) -> Config:
        return load_config(self.running.net.configs["JP"], env={})

    async def fresh_url(self) -> str | None:
        """A store URL for a fresh hub: a new schema, or None (SQLite in its folder)."""
        if self.backend == "sqlite":
            return None
        schema = await make_schema()
        self.schemas.append(schema)
        return with_param(PG_URL, "search_path", schema)


async def _fill(running: Running) -> None:
    hub = running.hub
    assert hub is not None
    now = datetime.now(UTC)
    envs, checked = signed_issuances("JP-MN", "JP", running.net.keys["JP"], HUB_OWN, now)
    await fill_own_log(hub, "JP-MN", envs, checked)
    await hub.logs("JP-MN").service.sign_checkpoint()
    agent = await running.agent("MN")
    envs, checked = signed_issuances("JP-MN", "MN", running.net.keys["MN"], AGENT_OWN, now)
    await fill_own_log(agent, "JP-MN", envs, checked)
    assert await running.syncer(agent).push() == AGENT_OWN  # over HTTP, verified by the hub


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def site(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Site]:
    """A hub for JP-MN with thousands of records on both logs, serving on 127.0.0.1."""
    hub_store, schemas = None, []
    if request.param == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schemas.append(await make_schema())
        hub_store = with_param(PG_URL, "search_path", schemas[0])
    net = provision(tmp_path / "net", ["MN"], hub_port=0, hub_store=hub_store)
    running = Running(net)
    await running.start_hub()
    try:
        await _fill(running)
        yield Site(running, request.param, schemas)
    finally:
        await running.close()
        for schema in schemas:
            await drop_schema(schema)


def fresh_folder(net: Network, into: Path, store_url: str | None) -> Network:
    """Keys, roots and configs copied to ``into`` (no database): a new machine."""
    shutil.copytree(net.directory / "keys", into / "keys")
    shutil.copytree(net.directory / "roots", into / "roots")
    (into / "jp").mkdir()
    text = net.configs["JP"].read_text()
    if store_url is not None:
        text = "\n".join(
            f'store = "{store_url}"' if line.startswith("store = ") else line
            for line in text.splitlines()
        )
    (into / "jp" / "config.toml").write_text(text)
    return replace(net, directory=into, configs={"JP": into / "jp" / "config.toml"})


async def test_backup_while_serving_restores_into_a_fresh_folder_and_serves_the_same(
    site: Site, tmp_path: Path
) -> None:
    running, cfg = site.running, site.cfg
    assert running.hub is not None
    agent = await running.agent("MN")
    now = datetime.now(UTC)
    more, checked = _renumbered(running, DURING, now)
    await fill_own_log(agent, "JP-MN", more, checked)
    push = asyncio.create_task(running.syncer(agent, batch_size=50).push())
    backups: list[Path] = []
    while not push.done() or not backups:
        out = tmp_path / f"b{len(backups)}.jcmbak"
        await backup(cfg, out)
        backups.append(out)
    assert await push == DURING
    replica_sizes = [_log(read_manifest(b), "MN").size for b in backups]
    assert all(AGENT_OWN <= n <= AGENT_OWN + DURING for n in replica_sizes)
    # the backups taken while the push was appending; the latest of them is restored
    mid = [b for b, n in zip(backups, replica_sizes, strict=True) if n < AGENT_OWN + DURING]
    assert mid, replica_sizes
    chosen = mid[-1]
    manifest = read_manifest(chosen)
    assert _log(manifest, "JP").size == HUB_OWN
    assert manifest.node_id == "JP"
    assert manifest.schema_version == SCHEMA_VERSION

    fresh = fresh_folder(running.net, tmp_path / "fresh", await site.fresh_url())
    fresh_cfg = load_config(fresh.configs["JP"], env={})
    result = await restore(fresh_cfg, chosen)
    assert {(a.log.origin, a.size, a.root.hex()) for a in result.audits} == {
        (m.origin, m.size, m.root) for m in manifest.logs
    }
    assert sum(a.entries_checked for a in result.audits) == HUB_OWN + _log(manifest, "MN").size
    assert result.signatures_checked == ["JP-MN"]
    assert result.replaced_entries == 0

    # once the push is done: a last backup, restored over that one (force), serves what
    # the original hub serves, byte for byte
    final = await backup(cfg, tmp_path / "final.jcmbak")
    again = await restore(fresh_cfg, final.path, force=True)
    assert again.replaced_entries == HUB_OWN + _log(manifest, "MN").size
    restored = Running(fresh)
    await restored.start_hub()
    try:
        async with (
            HubClient(restored.url, agent.keys.transport) as there,
            HubClient(running.url, agent.keys.transport) as here,
        ):
            served, original = await there.state("JP-MN"), await here.state("JP-MN")
        assert served == original
        assert sorted((log.node, log.size) for log in served.logs) == [
            ("JP", HUB_OWN),
            ("MN", AGENT_OWN + DURING),
        ]
        assert all(log.checkpoint is not None for log in served.logs)
    finally:
        await restored.close()


def _renumbered(
    running: Running, n: int, now: datetime
) -> tuple[list[bytes], dict[bytes, Verification]]:
    """``n`` more signed issuances of Mongolia, with ids after the first ``AGENT_OWN``."""
    envs, checked = signed_issuances("JP-MN", "MN", running.net.keys["MN"], AGENT_OWN + n, now)
    tail = envs[AGENT_OWN:]
    return tail, {e: checked[e] for e in tail}


def _log(manifest: Manifest, node: str) -> LogManifest:
    return next(m for m in manifest.logs if m.node == node)


# --- refusals --------------------------------------------------------------------------


def rewrite(
    path: Path,
    out: Path,
    *,
    manifest: Callable[[dict[str, object]], None] | None = None,
    dump: Callable[[Path], None] | None = None,
) -> Path:
    """A copy of backup ``path`` whose manifest or dump is changed and whose digests are
    recomputed: a well-formed file that says something else."""
    with tarfile.open(path) as tar:
        body = tar.extractfile(MANIFEST).read()  # type: ignore[union-attr]
        data = msgspec.json.decode(body)
        dump_bytes = tar.extractfile(data["dump_name"]).read()  # type: ignore[union-attr]
    if dump is not None:
        scratch = out.with_suffix(".dump")
        scratch.write_bytes(dump_bytes)
        dump(scratch)
        dump_bytes = scratch.read_bytes()
        data["dump_sha256"] = hashlib.sha256(dump_bytes).hexdigest()
        data["dump_bytes"] = len(dump_bytes)
    if manifest is not None:
        manifest(data)
    body = msgspec.json.encode(data)
    sums = (
        f"{hashlib.sha256(body).hexdigest()}  {MANIFEST}\n"
        f"{data['dump_sha256']}  {data['dump_name']}\n"
    ).encode()
    with tarfile.open(out, "w") as tar:
        for name, blob in ((data["dump_name"], dump_bytes), (MANIFEST, body), (SUMS, sums)):
            info = tarfile.TarInfo(str(name))
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out


@pytest.fixture
async def made(tmp_path: Path) -> tuple[Network, Path, Network]:
    """A JP hub on SQLite with 300 records in its own log and a backup of it, and a
    fresh folder (keys, roots, config) whose store holds 50 other records."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    await _small_node(net, 300)
    out = tmp_path / "jp.jcmbak"
    await backup(load_config(net.configs["JP"], env={}), out)
    fresh = fresh_folder(net, tmp_path / "fresh", None)
    await _small_node(fresh, 50)
    return net, out, fresh


async def _small_node(net: Network, n: int) -> None:
    from jcm_sync.services.node import open_node

    node = await open_node(load_config(net.configs["JP"], env={}))
    try:
        envs, checked = signed_issuances("JP-MN", "JP", net.keys["JP"], n, datetime.now(UTC))
        await fill_own_log(node, "JP-MN", envs, checked)
        await node.logs("JP-MN").service.sign_checkpoint()
    finally:
        await node.close()


async def held(net: Network) -> list[tuple[str, int, str]]:
    store = await open_store(load_config(net.configs["JP"], env={}).store_url)
    try:
        return [
            (log.origin, (h := await store.tree_head(log)).size, h.root.hex())
            for log in await store.logs()
        ]
    finally:
        await store.close()


def _flip(path: Path, at: int) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    out = path.with_name(f"flipped-{at}.jcmbak")
    out.write_bytes(bytes(data))
    return out


def _manifest_at(path: Path) -> int:
    with tarfile.open(path) as tar:
        return tar.getmember(MANIFEST).offset_data


def _newer(data: dict[str, object]) -> None:
    data["schema_version"] = SCHEMA_VERSION + 1


def _other_node(data: dict[str, object]) -> None:
    data["node_id"] = "MN"


def _wrong_root(data: dict[str, object]) -> None:
    logs = data["logs"]
    assert isinstance(logs, list)
    logs[0]["root"] = "00" * 32


def _bad_envelope(dump: Path) -> None:
    conn = sqlite3.connect(dump, isolation_level=None)
    try:
        conn.execute("UPDATE log_entries SET envelope = X'00' || envelope WHERE idx = 7")
    finally:
        conn.close()


async def test_refusals_leave_the_store_as_it_was(
    made: tuple[Network, Path, Network], tmp_path: Path
) -> None:
    net, out, fresh = made
    cfg = load_config(fresh.configs["JP"], env={})
    before = await held(fresh)
    size = out.stat().st_size
    truncated = tmp_path / "truncated.jcmbak"
    truncated.write_bytes(out.read_bytes()[: size // 2])
    cases: list[tuple[Path, type[Exception], str]] = [
        (truncated, BadDataError, "truncated"),
        (_flip(out, size // 2), BadDataError, "SHA-256"),  # inside the dump
        (_flip(out, _manifest_at(out) + 40), BadDataError, "SHA-256"),  # in the manifest
        (rewrite(out, tmp_path / "n.jcmbak", manifest=_newer), StoreError, "schema version"),
        (rewrite(out, tmp_path / "o.jcmbak", manifest=_other_node), ConflictError, "node MN"),
        (tmp_path / "missing.jcmbak", BadDataError, "no such backup file"),
        (fresh.configs["JP"], BadDataError, "not a jcm-sync backup"),
    ]
    for path, error, words in cases:
        with pytest.raises(error, match=words):
            await restore(cfg, path, force=False)
    # a store that holds entries is replaced only with force
    with pytest.raises(ConflictError, match="already holds 50 log entries"):
        await restore(cfg, out)
    # a consistent file of a store that does not verify: named, nothing replaced
    bad = rewrite(out, tmp_path / "e.jcmbak", dump=_bad_envelope)
    with pytest.raises(CorruptStoreError, match="JP-MN/JP"):
        await restore(cfg, bad, force=True)
    wrong = rewrite(out, tmp_path / "r.jcmbak", manifest=_wrong_root)
    with pytest.raises(CorruptStoreError, match="not the manifest's"):
        await restore(cfg, wrong, force=True)
    assert await held(fresh) == before
    leftovers = [p.name for p in (fresh.directory / "jp").iterdir() if "restore" in p.name]
    assert leftovers == []
    # and a restore under a running daemon is refused before anything
    with (
        DaemonLock(cfg.data_dir, command="jcm-sync registry serve"),
        pytest.raises(ConflictError, match="never restored under a running daemon"),
    ):
        await restore(cfg, out, force=True)
    assert await held(fresh) == before
    # with force, the backup replaces the 50 records
    result = await restore(cfg, out, force=True)
    assert result.replaced_entries == 50
    assert await held(fresh) == await held(net)


async def test_wrong_node_with_force_and_a_backend_mismatch(
    made: tuple[Network, Path, Network], tmp_path: Path
) -> None:
    _, out, fresh = made
    cfg = load_config(fresh.configs["JP"], env={})
    other = rewrite(out, tmp_path / "o.jcmbak", manifest=_other_node)
    result = await restore(cfg, other, force=True)
    assert result.manifest.node_id == "MN"
    pg = msgspec.structs.replace(cfg, node=msgspec.structs.replace(cfg.node, store=PG_URL))
    with pytest.raises(ConfigError, match="sqlite store and the configuration names a postgresql"):
        await restore(pg, out, force=True)


async def test_backup_refuses_what_it_must_not_write(
    made: tuple[Network, Path, Network], tmp_path: Path
) -> None:
    net, out, _ = made
    cfg = load_config(net.configs["JP"], env={})
    with pytest.raises(NoOutputFolderError, match="does not exist"):
        await backup(cfg, tmp_path / "nowhere" / "b.jcmbak")
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(ConflictError, match="not a jcm-sync backup"):
        await backup(cfg, precious)
    assert precious.read_text() == "keep me"
    with pytest.raises(ConfigError, match="store's own database"):
        await backup(cfg, Path(cfg.store_url[len("sqlite:///") :]))
    mem = msgspec.structs.replace(cfg, node=msgspec.structs.replace(cfg.node, store="memory://"))
    with pytest.raises(ConfigError, match="nothing to back up"):
        await backup(mem, tmp_path / "m.jcmbak")
    # an earlier backup is replaced, whole
    first = read_manifest(out)
    again = await backup(cfg, out)
    assert read_manifest(out).created_at == again.manifest.created_at >= first.created_at
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".jcm-sync")] == []
