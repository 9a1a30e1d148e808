"""``services/reload.py`` and ``Node.reload``: SIGHUP re-reads the configuration and the
trust roots of a running node. A root rotated to a newer countersigned version is
swapped in at once, on the same sockets and connections (a real ``registry serve``
and a keep-alive client); an invalid or older root changes nothing; settings that
need a restart are named, not applied."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import key_entry, peek_root, sign_root
from jcm_sync.errors import JcmSyncError, RollbackError
from jcm_sync.local.config import load_config
from jcm_sync.local.notify import Notifier
from jcm_sync.net.signing import RequestSigner, SigningMiddleware
from jcm_sync.services.node import open_node
from jcm_sync.services.reload import Supervisor, reload_node, restart_settings
from jcm_sync.services.sample import Network, free_port, provision
from jcm_sync.store import open_store
from tests.local.daemon_proc import Daemon
from tests.services.root_chains import PID, hub_store, set_chain
from tests.store.conftest import pg_reachable

__all__ = ["hub_store", "pg_reachable"]
STATE = f"/v1/partnerships/{PID}/state"


@dataclass
class Rotation:
    """JP-MN's v1 (provisioned), a v2 adding a second MN key, and a broken file."""

    v1: Path
    v2: Path
    broken: Path
    new_key: PrivateKey


def rotate(net: Network) -> Rotation:
    now = datetime.now(UTC)
    v1 = peek_root(net.roots[PID].read_bytes())
    new = PrivateKey.generate()
    added = key_entry(new.public, "MN", not_before=now - timedelta(days=1), not_after=v1.expires)
    v2 = msgspec.structs.replace(v1, version=2, keys=(*v1.keys, added))
    roots = net.roots[PID].parent
    (roots / "jp-mn.v2.root.json").write_bytes(sign_root(v2, [net.keys["JP"], net.keys["MN"], new]))
    v3 = msgspec.structs.replace(v2, version=3)
    broken = bytearray(sign_root(v3, [net.keys["JP"], new]))
    broken[broken.index(b'"signatures"') + 30] ^= 1  # a signature that no longer verifies
    (roots / "jp-mn.v3.root.json").write_bytes(bytes(broken))
    return Rotation(net.roots[PID], roots / "jp-mn.v2.root.json",
                    roots / "jp-mn.v3.root.json", new)  # fmt: skip


# --- what needs a restart (rule 3) ------------------------------------------------------


def test_restart_settings_name_everything_but_the_trust_roots(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=8700)
    rot = rotate(net)
    cfg = net.configs["JP"]
    before = load_config(cfg, env={})
    set_chain(cfg, [rot.v1, rot.v2])
    assert restart_settings(before, load_config(cfg, env={})) == []
    text = cfg.read_text().replace("port = 8700", "port = 8800")
    cfg.write_text(text.replace("[keys]\n", '[keys]\ntransport = "../keys/jp-registry.key"\n'))
    after = load_config(cfg, env={})
    assert restart_settings(before, after) == ["keys.transport", "server.port"]
    assert restart_settings(after, after) == []


# --- Node.reload, in process (rules 1, 2) ----------------------------------------------


async def test_a_newer_root_is_swapped_in_and_a_bad_or_older_one_changes_nothing(
    tmp_path: Path, hub_store: str | None
) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0, hub_store=hub_store)
    rot = rotate(net)
    cfg_path = net.configs["JP"]
    node = await open_node(load_config(cfg_path, env={}))
    try:
        live = node.live_roots()
        assert live[PID].version == 1
        set_chain(cfg_path, [rot.v1, rot.v2])
        assert await node.reload(load_config(cfg_path, env={})) == {PID: (1, 2)}
        assert live[PID].version == 2  # the mapping the hub's verifier holds
        assert node.logs(PID).service.root.version == 2
        assert rot.new_key.key_id in {k.keyid for k in live[PID].keys}
        assert node.cfg.partnership(PID).trust_root[-1].endswith("jp-mn.v2.root.json")
        assert (await node.store.trust_marks())[PID].version == 2

        set_chain(cfg_path, [rot.v1, rot.v2, rot.broken])
        with pytest.raises(JcmSyncError):
            await node.reload(load_config(cfg_path, env={}))
        set_chain(cfg_path, [rot.v1])
        with pytest.raises(RollbackError):
            await node.reload(load_config(cfg_path, env={}))
        assert live[PID].version == 2
        assert node.cfg.partnership(PID).trust_root[-1].endswith("jp-mn.v2.root.json")
        assert (await node.store.trust_marks())[PID].version == 2
    finally:
        await node.close()


async def test_reload_node_logs_what_it_did_and_what_it_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=8700)
    rot = rotate(net)
    cfg_path = net.configs["JP"]
    node = await open_node(load_config(cfg_path, env={}))
    caplog.set_level(logging.INFO, logger="jcm_sync.reload")
    try:
        set_chain(cfg_path, [rot.v1, rot.v2])
        cfg_path.write_text(cfg_path.read_text().replace("port = 8700", "port = 8800"))
        done = await reload_node(node, cfg_path)
        assert done is not None
        assert (done.roots, done.needs_restart) == ({PID: (1, 2)}, ["server.port"])
        (restart,) = [r for r in caplog.records if r.getMessage() == "reload-needs-restart"]
        assert (restart.levelno, restart.settings) == (logging.WARNING, ["server.port"])
        (ok,) = [r for r in caplog.records if r.getMessage() == "reloaded"]
        assert ok.roots_changed == {PID: {"from": 1, "to": 2}}

        caplog.clear()
        set_chain(cfg_path, [rot.v1, rot.v2, rot.broken])
        assert await reload_node(node, cfg_path) is None
        cfg_path.write_text("[node]\nid = ")
        assert await reload_node(node, cfg_path) is None
        failed = [r for r in caplog.records if r.getMessage() == "reload-failed"]
        assert [r.levelno for r in failed] == [logging.ERROR, logging.ERROR]
        assert failed[0].reason != "config"
        assert "jp-mn.v3.root.json" in failed[0].error or "signature" in failed[0].error
        assert failed[1].reason == "config"
        assert node.live_roots()[PID].version == 2
    finally:
        await node.close()


# --- a real hub: SIGHUP on the same connection -----------------------------------------


async def test_registry_serve_takes_a_new_root_on_sighup_on_the_same_connection(
    tmp_path: Path, hub_store: str | None
) -> None:
    """A key v2 adds is refused (401) before SIGHUP and accepted after it, on the one
    keep-alive connection the client ever opened; a broken v3 on the next SIGHUP is
    refused and v2 keeps working there."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port(), hub_store=hub_store)
    rot = rotate(net)
    old = SigningMiddleware(RequestSigner(net.keys["MN"]))
    new = SigningMiddleware(RequestSigner(rot.new_key))
    opened: list[object] = []

    async def on_create(session: object, ctx: object, params: object) -> None:
        opened.append(params)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    connector = aiohttp.TCPConnector(limit=1)
    async with (
        Daemon("registry", "serve", "--config", net.configs["JP"]) as hub,
        aiohttp.ClientSession(net.hub_url, connector=connector, trace_configs=[trace]) as http,
    ):
        await hub.event("listening")

        async def status(mw: SigningMiddleware) -> int:
            async with http.get(STATE, middlewares=(mw,)) as resp:
                await resp.read()
                return resp.status

        assert (await status(old), await status(new)) == (200, 401)
        set_chain(net.configs["JP"], [rot.v1, rot.v2])
        hub.signal(signal.SIGHUP)
        reloaded = await hub.event("reloaded")
        assert reloaded["roots_changed"] == {PID: {"from": 1, "to": 2}}
        assert (await status(new), await status(old)) == (200, 200)

        set_chain(net.configs["JP"], [rot.v1, rot.v2, rot.broken])
        hub.signal(signal.SIGHUP)
        failed = await hub.event("reload-failed")
        assert failed["level"] == "error"
        assert await status(new) == 200
        assert len(opened) == 1  # every request on the one connection
        assert await hub.stop() == 0
    url = load_config(net.configs["JP"], env={}).store_url
    store = await open_store(url)
    try:
        assert (await store.trust_marks())[PID].version == 2
    finally:
        await store.close()


async def test_agent_run_takes_a_new_root_on_sighup(tmp_path: Path) -> None:
    """The agent's node swaps the root its next sync verifies with (its Syncer reads the
    node's partnership live), and moves the store's trust mark."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    rot = rotate(net)
    async with Daemon("agent", "run", "--config", net.configs["MN"]) as agent:
        await agent.event("started")
        set_chain(net.configs["MN"], [rot.v1, rot.v2])
        agent.signal(signal.SIGHUP)
        reloaded = await agent.event("reloaded")
        assert reloaded["roots_changed"] == {PID: {"from": 1, "to": 2}}
        assert reloaded["trust_root_versions"] == {PID: 2}
        assert await agent.stop() == 0
    store = await open_store(load_config(net.configs["MN"], env={}).store_url)
    try:
        assert (await store.trust_marks())[PID].version == 2
    finally:
        await store.close()


# --- expiry warnings at start, on reload, daily ------------------------------------------


async def test_a_root_expiring_soon_is_warned_at_start_and_on_reload(tmp_path: Path) -> None:
    """A root made 340 days ago (365-day roots) has 25 days left: ``expiry-soon`` at
    start, and again after a SIGHUP."""
    made = datetime.now(UTC) - timedelta(days=340)
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port(), now=made)
    async with Daemon("registry", "serve", "--config", net.configs["JP"]) as hub:
        first = await hub.event("expiry-soon")
        assert (first["level"], first["what"], first["partnership"]) == (
            "warning", "trust root", PID)  # fmt: skip
        assert 24 * 86400 < first["seconds_left"] <= 25 * 86400
        hub.signal(signal.SIGHUP)
        await hub.event("reloaded")
        again = await hub.event("expiry-soon")
        assert again["what"] == "trust root"
        assert await hub.stop() == 0


async def test_the_checks_run_at_start_after_each_reload_and_periodically(
    tmp_path: Path,
) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    node = await open_node(load_config(net.configs["JP"], env={}))
    calls: list[float] = []

    async def check(n: object) -> None:
        assert n is node
        calls.append(asyncio.get_running_loop().time())

    sup = Supervisor(node, net.configs["JP"], Notifier(env={}), checks=check, check_every=0.2)
    try:
        sup.start()
        await asyncio.sleep(0.05)
        assert len(calls) == 1  # at start
        sup.hup()
        sup.hup()  # during the first reload: one more after it, never two at once
        async with asyncio.timeout(10):
            while sup.reloads < 2:
                await asyncio.sleep(0.01)
        assert len(calls) == 3  # after each reload
        await asyncio.sleep(0.3)
        assert len(calls) >= 4  # and periodically
    finally:
        await sup.close()
        await node.close()
