"""Revocation by witnessed time (ADR 0035) over a real hub (aiohttp on 127.0.0.1) and agent.

The agent imports its records at t0, pushes them at t2, and the hub cosigns its
checkpoint at t2. MN's key is then revoked at T. Under the roots' cosignature quorum a
record stays valid only if a checkpoint including it was cosigned before T: valid for
T after t2, refused (``key-revoked``) for T between t0 and t2, in ``log verify``, in a
receipt, in an evidence bundle and in the hub's judgement of a re-sent push. Under
quorum 0 the receipt rule of ADR 0018 still applies: received at t0, before T, valid.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.core import tlog_proof
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.note import parse_note
from jcm_sync.core.trust import TrustRoot, peek_root
from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import RevokedKeyError, ThresholdError
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.agreement import stored_verifier
from jcm_sync.services.evidence import export_evidence, sha256_file
from jcm_sync.services.evidence_verify import verify_evidence
from jcm_sync.services.hub import Hub
from jcm_sync.services.log_service import verify_log
from jcm_sync.services.receipts import get_receipt, verify_receipt_file
from jcm_sync.services.sample import provision
from jcm_sync.services.trust_roots import Validity, rotate_root, sign_new_root
from tests.exchange.conftest import Running

PID = "JP-MN"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    running: Running
    clock: Clock
    t0: datetime
    t2: datetime

    @property
    def v1(self) -> bytes:
        return self.running.net.roots[PID].read_bytes()

    def revoked(self, at: datetime, *, cosign: bool = True) -> tuple[TrustRoot, bytes]:
        """Version 2: MN's key replaced and revoked at ``at`` (quorum kept, or dropped)."""
        keys, mn2 = self.running.net.keys, PrivateKey.generate()
        root = rotate_root(
            peek_root(self.v1),
            Validity(now=at, key_days=365, expires_days=365),
            replace=[(keys["MN"].key_id, mn2.public)],
            revoke_at=at,
            cosign={} if cosign else {"JP": None, "MN": None},
        )
        return root, sign_new_root(root, [keys["JP"], keys["MN"], mn2])


async def _world(tmp_path: Path, *, cosign: bool) -> World:
    net = provision(tmp_path / "net", ["MN"], hub_port=0, cosign=cosign)
    running = Running(net, ServerSettings(run_jobs=False), None)
    clock = Clock(datetime.now(UTC) + timedelta(hours=1))
    await running.start_hub()
    assert running.hub is not None
    agent = await running.agent("MN")
    for node in (running.hub, agent):
        node.clock = clock
        node.store.set_clock(clock)
    t0 = clock.now
    await running.seed("MN", projects=1)  # appended at t0
    clock.now = t2 = t0 + timedelta(hours=2)
    await running.syncer(agent).sync_once()  # pushed and cosigned at t2
    clock.now = t2 + timedelta(hours=2)
    return World(running, clock, t0, t2)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await _world(tmp_path, cosign=True)
    try:
        yield w
    finally:
        await w.running.close()


async def _audit(world: World, root: TrustRoot) -> list[str]:
    agent = await world.running.agent("MN")
    own = agent.logs(PID).own
    verify = await stored_verifier(agent.store, root, own, world.clock.now)
    return (await verify_log(agent.store, own, verify=verify)).problems


async def test_log_verify_judges_stored_entries_at_their_witnessed_time(world: World) -> None:
    agent = await world.running.agent("MN")
    own = agent.logs(PID).own
    assert await agent.store.cosigned_size(own) == (await agent.store.tree_head(own)).size
    after, _ = world.revoked(world.t2 + timedelta(minutes=30))
    assert await _audit(world, after) == []  # cosigned before the revocation: valid
    between, _ = world.revoked(world.t0 + timedelta(minutes=30))
    problems = await _audit(world, between)
    assert problems
    assert all("revoked" in p for p in problems), problems
    # appended at t0, before T, but cosigned after T: under the quorum, refused
    fallback, _ = world.revoked(world.t0 + timedelta(minutes=30), cosign=False)
    assert await _audit(world, fallback) == []  # quorum 0: received at t0 (ADR 0018)


async def test_a_receipt_is_judged_at_its_witnessed_time_and_needs_the_quorum(
    world: World,
) -> None:
    agent = await world.running.agent("MN")
    rid = (await agent.store.entry(agent.logs(PID).own, 0)).record_id
    receipt = await get_receipt(agent.store, rid, {PID})
    now = world.clock.now
    check = verify_receipt_file(receipt.data, [world.v1], now)
    assert check.received == world.t2.replace(microsecond=0)
    _, after = world.revoked(world.t2 + timedelta(minutes=30))
    assert verify_receipt_file(receipt.data, [world.v1, after], now).received == check.received
    _, between = world.revoked(world.t0 + timedelta(minutes=30))
    with pytest.raises(RevokedKeyError, match="after the revocation"):
        verify_receipt_file(receipt.data, [world.v1, between], now)
    # the same receipt without the hub's cosignature is below the root's quorum
    proof = tlog_proof.parse_proof(receipt.data)
    parsed = parse_note(proof.note)
    own = [s for s in parsed.signatures if "/witness/" not in s.name]
    bare_note = parsed.text + b"\n" + "".join(s.line() for s in own).encode()
    bare = tlog_proof.format_proof(
        tlog_proof.TlogProof(proof.index, proof.proof, bare_note, proof.extra)
    )
    with pytest.raises(ThresholdError, match="quorum"):
        verify_receipt_file(bare, [world.v1], now)


async def test_quorum_zero_receipt_keeps_the_earliest_cosignature(tmp_path: Path) -> None:
    w = await _world(tmp_path, cosign=False)
    try:
        agent = await w.running.agent("MN")
        rid = (await agent.store.entry(agent.logs(PID).own, 0)).record_id
        receipt = await get_receipt(agent.store, rid, {PID})
        check = verify_receipt_file(receipt.data, [w.v1], w.clock.now)
        assert check.received == w.t2.replace(microsecond=0)
        problems = await _audit(w, w.revoked(w.t0 + timedelta(minutes=30), cosign=False)[0])
        assert problems == []
    finally:
        await w.running.close()


async def test_the_hub_judges_a_resent_push_at_the_witnessed_time(world: World) -> None:
    hub = world.running.hub
    assert hub is not None
    replica = hub.logs(PID).replica
    entries = await hub.store.entries(replica, 0, 2)
    req = PushRequest(start=0, entries=[e.envelope for e in entries], source_size=2)
    after, _ = world.revoked(world.t2 + timedelta(minutes=30))
    held = await Hub(hub)._held_since(after, replica, req)
    # the hub's own cosignature time (whole seconds), not the append time
    assert held == {e.record_id: world.t2.replace(microsecond=0) for e in entries}
    quorum0, _ = world.revoked(world.t2 + timedelta(minutes=30), cosign=False)
    assert await Hub(hub)._held_since(quorum0, replica, req) == {
        e.record_id: e.appended_at for e in entries
    }


def _add_root(bundle: Path, v2: bytes) -> None:
    """Put a rotated root at the end of a bundle's chain, its manifest updated to match."""
    rel = "trust/root-v2.json"
    (bundle / rel).write_bytes(v2)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["trust"].append(rel)
    manifest["files"][rel] = sha256_file(bundle / rel)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


async def test_evidence_verify_judges_records_at_their_witnessed_time(
    world: World, tmp_path: Path
) -> None:
    agent = await world.running.agent("MN")
    results = {}
    for name, at in (
        ("after", world.t2 + timedelta(minutes=30)),
        ("between", world.t0 + timedelta(minutes=30)),
    ):
        bundle = tmp_path / name
        await export_evidence(agent.cfg, agent.store, PID, bundle, now=world.clock.now)
        assert verify_evidence(bundle).ok
        _add_root(bundle, world.revoked(at)[1])
        results[name] = verify_evidence(bundle)
    assert results["after"].ok, results["after"].differences
    found = results["between"].differences
    assert found
    assert {d.area for d in found} == {"records"}
    assert all(d.subject.startswith("MN entry") for d in found)
    assert all("not agreed before its key's revocation" in d.detail for d in found)
