"""A node pair for the evidence tests: Japan's hub and Mongolia's agent on SQLite, with
thousands of records both ways, two reconciliation runs and open discrepancies; and
the helpers that export a bundle from it and tamper with one."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec

from jcm_sync.core.cosignature import cosign
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.note import parse_note
from jcm_sync.local.config import load_config
from jcm_sync.services.evidence import (
    MANIFEST,
    EntryLine,
    Manifest,
    entries_path,
    export_evidence,
    witness_name,
)
from jcm_sync.services.evidence_verify import verify_evidence
from jcm_sync.services.log_service import accept_checkpoint, checkpoint_verifiers, record_verifier
from jcm_sync.services.node import Node, open_node, open_node_store
from jcm_sync.services.own_log import append_own
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import Network, partnership_records, provision, stray_transfers

PID = "JP-MN"
STRAYS = 3


@dataclass(frozen=True)
class Pair:
    net: Network
    sizes: dict[str, int]
    open_findings: int


async def replicate(src: Node, dst: Node) -> None:
    """Copy ``src``'s own log, with its latest checkpoint, to ``dst``'s replica."""
    own, rep = src.logs(PID).own, dst.logs(PID).replica
    cp = await src.store.latest_checkpoint(own)
    assert cp is not None
    held = (await dst.store.tree_head(rep)).size
    entries = await src.store.entries(own, held, cp.size)
    root, now = dst.logs(PID).root, datetime.now(UTC)
    if entries:
        await dst.store.append_entries(
            rep, held, [e.envelope for e in entries], record_verifier(root, now)
        )
    await accept_checkpoint(dst.store, rep, cp.note, checkpoint_verifiers(root, rep, now))


async def cosign_all(jp: Node, mn_key: PrivateKey) -> None:
    """Mongolia's witness cosignature (ADR 0032) on every checkpoint of Japan's log,
    kept in Japan's store as the hub keeps what the agent delivers."""
    own = jp.logs(PID).own
    name = witness_name(own.origin, PID, "JP", "MN")
    for cp in await jp.store.checkpoints(own):
        text = parse_note(cp.note).text
        line = cosign(text, name, mn_key.key, int(datetime.now(UTC).timestamp()))
        await jp.store.add_cosignatures(own, cp.size, [line])


async def build_pair_async(directory: Path, hub_store: str | None = None) -> Pair:
    """``build_pair`` in a running event loop; ``hub_store``: Japan's store URL."""
    now = datetime.now(UTC)
    net = provision(
        directory, ["MN"], hub_port=0, now=now - timedelta(hours=2), hub_store=hub_store
    )
    recs = partnership_records(
        "MN", net.keys, projects=120, periods=3, created=now - timedelta(hours=1)
    )
    strays = stray_transfers(
        PID, net.keys["MN"], STRAYS, now - timedelta(hours=1), date(2026, 1, 5)
    )
    jp = await open_node(load_config(net.configs["JP"], env={}))
    mn = await open_node(load_config(net.configs["MN"], env={}))
    try:
        half = {n: len(v) // 2 for n, v in recs.by_node.items()}
        await append_own(jp, PID, recs.by_node["JP"][: half["JP"]])
        await append_own(mn, PID, recs.by_node["MN"][: half["MN"]])
        await replicate(jp, mn)
        await replicate(mn, jp)
        await ReconcileService(jp).reconcile(PID)  # halves: findings the rest settles
        await append_own(jp, PID, recs.by_node["JP"][half["JP"] :])
        await append_own(mn, PID, recs.by_node["MN"][half["MN"] :] + strays)
        await replicate(jp, mn)
        await replicate(mn, jp)
        await cosign_all(jp, net.keys["MN"])
        second = await ReconcileService(jp).reconcile(PID)
        sizes = {p.node: p.size for p in second.report.logs}
    finally:
        await jp.close()
        await mn.close()
    return Pair(net, sizes, len(second.report.open))


async def export(pair: Pair, out: Path, at: int | dict[str, int] | None = None) -> Path:
    cfg = load_config(pair.net.configs["JP"], env={})
    store = await open_node_store(cfg)
    try:
        await export_evidence(cfg, store, PID, out, now=datetime.now(UTC), at=at)
    finally:
        await store.close()
    return out


def rehash(bundle: Path, rel: str) -> None:
    """Bring the manifest's digest of ``rel`` up to date (a forger who edits both)."""
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    files = dict(manifest.files)
    files[rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    manifest = msgspec.structs.replace(manifest, files=files)
    (bundle / MANIFEST).write_bytes(msgspec.json.encode(manifest))


def areas(bundle: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in verify_evidence(bundle).differences:
        out.setdefault(d.area, []).append(f"{d.subject}: {d.detail}")
    return out


def flip_entry(bundle: Path, node: str, index: int) -> None:
    """Flip one byte of entry ``index``'s envelope (inside its signed payload)."""
    rel = entries_path(node)
    lines = (bundle / rel).read_bytes().splitlines()
    entry = msgspec.json.decode(lines[index], type=EntryLine)
    env = bytearray(entry.envelope)
    at = env.index(b'"payload":"') + 20
    env[at] = ord("A") if env[at] != ord("A") else ord("B")
    lines[index] = msgspec.json.encode(msgspec.structs.replace(entry, envelope=bytes(env)))
    (bundle / rel).write_bytes(b"\n".join(lines) + b"\n")


def build_pair(directory: Path) -> Pair:
    """Provision, fill, replicate and reconcile twice (closed afterwards)."""
    return asyncio.run(build_pair_async(directory))
