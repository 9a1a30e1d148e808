"""No trust-root rollback across a restart (issue 9, item 2; docs/adr/0017).

The tester's case: a hub run with the chain [v1, v2], where v2 revokes MN's key, was
restarted on the same store with [v1] alone, started, and let the revoked key in. Here
the store keeps the highest root version (and its digest) per partnership, and every
node that opens on it (hub, agent, ``registry serve``) refuses an older or a different
chain with ``RollbackError``, writing nothing; a newer chain moves the mark up.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import key_entry, peek_root, root_digest, sign_root
from jcm_sync.errors import JcmSyncError, RollbackError
from jcm_sync.local.config import load_config
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.store import open_store
from tests.exchange.conftest import Running
from tests.services.root_chains import PID, hub_store, set_chain
from tests.store.conftest import pg_reachable

__all__ = ["hub_store", "pg_reachable"]


@dataclass
class Chain:
    """Root files of JP-MN: v1 (from provisioning), v2 revoking MN's first key and adding
    a new one, a forged v2 (another document, signed by the same keys) and v3."""

    v1: Path
    v2: Path
    forged_v2: Path
    v3: Path
    revoked_at: datetime

    def digest(self, path: Path) -> str:
        return root_digest(path.read_bytes())


def make_chain(net: Network) -> Chain:
    now = datetime.now(UTC).replace(microsecond=0)
    roots = net.roots[PID].parent
    v1 = peek_root(net.roots[PID].read_bytes())
    jp, old, new = net.keys["JP"], net.keys["MN"], PrivateKey.generate()
    revoked_at = now - timedelta(minutes=1)
    kept = [
        msgspec.structs.replace(k, revoked_at=revoked_at) if k.keyid == old.key_id else k
        for k in v1.keys
    ]
    added = key_entry(new.public, "MN", not_before=now - timedelta(days=1), not_after=v1.expires)
    keys = (*kept, added)
    v2 = msgspec.structs.replace(v1, version=2, keys=keys)
    forged = msgspec.structs.replace(v2, expires=v2.expires + timedelta(days=1))
    v3 = msgspec.structs.replace(v2, version=3, expires=v2.expires + timedelta(days=2))
    out = {}
    for name, root, signers in (
        ("v2", v2, [jp, old, new]),
        ("forged-v2", forged, [jp, old, new]),
        ("v3", v3, [jp, new]),
    ):
        path = roots / f"jp-mn.{name}.root.json"
        path.write_bytes(sign_root(root, signers))
        out[name] = path
    return Chain(net.roots[PID], out["v2"], out["forged-v2"], out["v3"], revoked_at)


async def open_with(net: Network, node: str, paths: list[Path]) -> Node:
    set_chain(net.configs[node], paths)
    return await open_node(load_config(net.configs[node], env={}))


async def snapshot(url: str) -> dict[str, Any]:
    """Everything a refused start must leave as it was: logs, heads, checkpoints, marks."""
    async with await open_store(url) as s:
        out: dict[str, Any] = {"marks": await s.trust_marks()}
        for ref in await s.logs():
            head = await s.tree_head(ref)
            out[ref.origin] = (head.size, head.root, len(await s.checkpoints(ref)))
        return out


async def test_hub_refuses_an_older_or_different_chain_across_restart(
    tmp_path: Path, hub_store: str | None
) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0, hub_store=hub_store)
    ch = make_chain(net)
    hub = await open_with(net, "JP", [ch.v1, ch.v2])
    url = hub.cfg.store_url
    assert (await hub.store.trust_marks())[PID].version == 2
    assert (await hub.store.trust_marks())[PID].digest == ch.digest(ch.v2)
    await hub.close()
    before = await snapshot(url)

    with pytest.raises(RollbackError) as older:
        await open_with(net, "JP", [ch.v1])
    text = str(older.value)
    assert "\n" not in text
    assert "version 2" in text
    assert "version 1" in text
    assert ch.digest(ch.v2)[:12] in text
    assert ch.digest(ch.v1)[:12] in text
    for forged in ([ch.v1, ch.forged_v2], [ch.forged_v2]):
        with pytest.raises(RollbackError, match="is not the version 2") as other:
            await open_with(net, "JP", forged)
        assert ch.digest(ch.forged_v2)[:12] in str(other.value)
    assert await snapshot(url) == before  # nothing written by any refusal

    hub = await open_with(net, "JP", [ch.v1, ch.v2, ch.v3])  # a newer version is taken
    assert (await hub.store.trust_marks())[PID].digest == ch.digest(ch.v3)
    await hub.close()
    with pytest.raises(RollbackError, match=r"version 3 .* version 2"):
        await open_with(net, "JP", [ch.v1, ch.v2])
    hub = await open_with(net, "JP", [ch.v3])  # the held root alone is enough
    await hub.close()


async def test_agent_refuses_an_older_chain_across_restart(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    ch = make_chain(net)
    agent = await open_with(net, "MN", [ch.v1, ch.v2])
    await agent.close()
    before = await snapshot(agent.cfg.store_url)
    with pytest.raises(RollbackError, match=r"version 2 .* version 1"):
        await open_with(net, "MN", [ch.v1])
    assert await snapshot(agent.cfg.store_url) == before


async def test_tester_scenario_revoked_key_never_authenticates(tmp_path: Path) -> None:
    """Hub with [v1, v2] (v2 revokes MN's key) refuses the key; restarted with [v1] the
    hub does not start (in process, and ``registry serve`` exits 1 with one line), so
    the key never authenticates, and the store is unchanged."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    ch = make_chain(net)
    set_chain(net.configs["JP"], [ch.v1, ch.v2])
    set_chain(net.configs["MN"], [ch.v1])  # the thief's view: MN's old key, the old root
    running = Running(net, ServerSettings(max_body_bytes=256 * 1024), None)
    await running.start_hub()
    try:
        agent = await running.agent("MN")
        signed_after = partnership_records("MN", net.keys, projects=2).by_node["MN"]
        await agent.logs(PID).service.append(signed_after)
        with pytest.raises(JcmSyncError):
            await running.syncer(agent).push()
        assert running.hub is not None
        assert (await running.hub.store.tree_head(running.hub.logs(PID).replica)).size == 0
    finally:
        await running.close()
    url = load_config(net.configs["JP"], env={}).store_url
    before = await snapshot(url)

    set_chain(net.configs["JP"], [ch.v1])
    with pytest.raises(RollbackError):
        await running.start_hub()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JCM_SYNC_")}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config",
         str(net.configs["JP"])],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    # the refusal is one event, the last, with the operator's next step; nothing listened
    events = [json.loads(line) for line in proc.stderr.strip().splitlines()]
    refusals = [e for e in events if "rollback" in json.dumps(e)]
    assert refusals == events[-1:], proc.stderr
    assert refusals[0]["event"] == "start-refused"
    assert refusals[0]["reason"] == "trust-root-rollback"
    assert refusals[0]["next_step"], proc.stderr
    assert "version 2" in refusals[0]["error"]
    assert "version 1" in refusals[0]["error"]
    assert not [e for e in events if e["event"] == "listening"], proc.stderr
    assert await snapshot(url) == before


def test_log_commands_respect_the_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``log append`` and ``log verify`` with an older chain than the store's are refused
    (one line, exit 1, nothing appended); with the held chain they work."""
    from jcm_sync.cli import main

    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    ch = make_chain(net)
    cfg = net.configs["MN"]

    async def setup() -> str:
        agent = await open_with(net, "MN", [ch.v1, ch.v2])
        await agent.close()
        return agent.cfg.store_url

    url = asyncio.run(setup())
    before = asyncio.run(snapshot(url))
    record = tmp_path / "after-revocation.json"
    record.write_bytes(partnership_records("MN", net.keys, projects=1).by_node["MN"][0])
    for argv in (
        ["log", "append", "--config", cfg, "--trust", ch.v1, "--no-checkpoint", record],
        ["log", "append", "--config", cfg, "--trust", ch.v1, record],
        ["log", "verify", "--config", cfg, "--trust", ch.v1],
    ):
        code = main([str(a) for a in argv])
        _, err = capsys.readouterr()
        assert code == 1, argv
        lines = err.strip().splitlines()
        # the refusal, then the operator's next step (errors.RollbackError.next_step)
        assert len(lines) == 2, err
        assert lines[1].lstrip().startswith("next step:"), err
        assert "rollback" in err
        assert "version 1" in err
    assert asyncio.run(snapshot(url)) == before
    assert main(["log", "verify", "--config", str(cfg)]) == 0, capsys.readouterr().err


async def test_same_document_signed_differently_is_the_same_root(tmp_path: Path) -> None:
    """The mark is the digest of the root document, not of its envelope: the same v2
    with its signatures in another order (or countersigned later) is not a rollback."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    ch = make_chain(net)
    hub = await open_with(net, "JP", [ch.v1, ch.v2])
    await hub.close()
    resigned = ch.v2.with_name("jp-mn.v2-resigned.root.json")
    envelope = msgspec.json.decode(ch.v2.read_bytes())
    envelope["signatures"].reverse()
    resigned.write_bytes(msgspec.json.encode(envelope))
    assert resigned.read_bytes() != ch.v2.read_bytes()
    assert ch.digest(resigned) == ch.digest(ch.v2)
    hub = await open_with(net, "JP", [ch.v1, resigned])
    assert (await hub.store.trust_marks())[PID].digest == ch.digest(ch.v2)
    await hub.close()
