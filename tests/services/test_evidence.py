"""Evidence bundles from a real node pair (SQLite stores, provisioned keys and roots):
thousands of records both ways, two reconciliation runs, open discrepancies; export,
verify offline, and every kind of tampering named."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.errors import BadDataError, NotFoundError, RollbackError
from jcm_sync.local.config import load_config
from jcm_sync.services.evidence import (
    MANIFEST,
    EntryLine,
    Manifest,
    entries_path,
    export_evidence,
    parse_sizes,
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


async def _build(directory: Path) -> Pair:
    now = datetime.now(UTC)
    net = provision(directory, ["MN"], hub_port=0, now=now - timedelta(hours=2))
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
        second = await ReconcileService(jp).reconcile(PID)
        sizes = {p.node: p.size for p in second.report.logs}
    finally:
        await jp.close()
        await mn.close()
    return Pair(net, sizes, len(second.report.open))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Japan's hub and Mongolia's agent, filled, replicated and reconciled twice."""
    return asyncio.run(_build(tmp_path_factory.mktemp("evidence") / "net"))


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


def test_the_pair_has_thousands_of_records_and_open_findings(pair: Pair) -> None:
    assert sum(pair.sizes.values()) > 2000
    assert pair.open_findings >= STRAYS


async def test_export_then_verify_checks_everything_and_finds_nothing(
    pair: Pair, tmp_path: Path
) -> None:
    bundle = await export(pair, tmp_path / "b")
    check = verify_evidence(bundle)
    assert check.differences == []
    assert check.ok
    assert check.partnership == PID
    assert check.checked["records"] == sum(pair.sizes.values())
    assert check.checked["trees"] == 2
    assert check.checked["checkpoints"] >= 4  # two per log at least, each run's
    assert check.checked["runs replayed"] == 2
    assert check.checked["reports compared"] == 1
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    assert {i.node: i.size for i in manifest.logs} == pair.sizes
    assert check.checked["files"] == len(manifest.files)


async def test_at_sizes_cut_the_snapshot_and_leave_out_later_runs(
    pair: Pair, tmp_path: Path
) -> None:
    at = {"JP": pair.sizes["JP"] // 2, "MN": pair.sizes["MN"] // 2}
    bundle = await export(pair, tmp_path / "b", at=at)
    check = verify_evidence(bundle)
    assert check.differences == []
    assert check.checked["records"] == sum(at.values())
    assert check.checked["runs replayed"] == 1  # the first run's snapshot is the half
    assert "reports compared" not in check.checked  # the last report is past the cut
    assert not (bundle / "reconciliation/report.json").exists()
    lines = (bundle / entries_path("JP")).read_bytes().splitlines()
    assert len(lines) == at["JP"]


async def test_refusals_write_nothing(pair: Pair, tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match="past MN's log"):
        await export(pair, tmp_path / "past", at={"JP": 1, "MN": pair.sizes["MN"] + 1})
    assert not (tmp_path / "past").exists()
    with pytest.raises(BadDataError, match="gives no size for MN"):
        await export(pair, tmp_path / "one", at={"JP": 1})
    with pytest.raises(BadDataError, match="names XX"):
        await export(pair, tmp_path / "xx", at={"JP": 1, "MN": 1, "XX": 1})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "note.txt").write_text("keep me")
    with pytest.raises(BadDataError, match="not empty"):
        await export(pair, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["note.txt"]
    cfg = load_config(pair.net.configs["JP"], env={})
    store = await open_node_store(cfg)
    try:
        with pytest.raises(NotFoundError, match="no partnership JP-KE"):
            await export_evidence(cfg, store, "JP-KE", tmp_path / "ke", now=datetime.now(UTC))
    finally:
        await store.close()
    assert not (tmp_path / "ke").exists()


async def test_an_empty_existing_folder_is_taken(pair: Pair, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert verify_evidence(await export(pair, tmp_path / "empty", at=5)).ok


def test_parse_sizes() -> None:
    assert parse_sizes("120") == 120
    assert parse_sizes("JP=120, MN=340") == {"JP": 120, "MN": 340}
    for bad in ("", "x", "JP=", "JP=1,JP=2", "JP=-1", "=4"):
        with pytest.raises(BadDataError):
            parse_sizes(bad)


@pytest.fixture
async def bundle(pair: Pair, tmp_path: Path) -> Path:
    return await export(pair, tmp_path / "b")


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


def test_a_flipped_entry_is_named_by_its_digest(bundle: Path) -> None:
    flip_entry(bundle, "MN", 7)
    found = areas(bundle)
    assert list(found) != []
    assert "files" in found
    assert any("logs/MN.entries.jsonl" in f and "changed" in f for f in found["files"])


def test_a_flipped_entry_with_a_forged_manifest_fails_its_signature_and_tree(
    bundle: Path,
) -> None:
    flip_entry(bundle, "MN", 7)
    rehash(bundle, entries_path("MN"))
    found = areas(bundle)
    assert "files" not in found
    assert any(f.startswith("MN entry 7 ") and "does not verify" in f for f in found["records"])
    assert any("MN's log" in f for f in found["tree"])
    assert any(f.startswith("MN ") for f in found["checkpoints"])  # roots past entry 7


def test_a_dropped_checkpoint_is_named(bundle: Path) -> None:
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    victim = sorted(r for r in manifest.files if r.startswith("checkpoints/JP/"))[-1]
    (bundle / victim).unlink()
    found = areas(bundle)
    assert found["files"] == [f"{victim}: is listed in the manifest but missing"]


def test_a_checkpoint_signed_by_another_key_is_refused(bundle: Path) -> None:
    from jcm_sync.core import checkpoint
    from jcm_sync.core.envelope import PrivateKey

    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    victim = sorted(r for r in manifest.files if r.startswith("checkpoints/MN/"))[-1]
    from jcm_sync.core import note as signed_note

    body = checkpoint.parse_body(signed_note.parse_note((bundle / victim).read_bytes()).text)
    (bundle / victim).write_bytes(checkpoint.sign_checkpoint(body, PrivateKey.generate().key))
    rehash(bundle, victim)
    found = areas(bundle)
    assert list(found) == ["checkpoints"]
    assert "signed by no checkpoint key of MN" in found["checkpoints"][0]


def test_an_altered_report_finding_is_named(bundle: Path) -> None:
    rel = "reconciliation/report.json"
    report = msgspec.json.decode((bundle / rel).read_bytes())
    finding = next(d for d in report["discrepancies"] if d["status"] == "open")
    finding["status"] = "explained"
    (bundle / rel).write_bytes(msgspec.json.encode(report))
    rehash(bundle, rel)
    found = areas(bundle)
    assert list(found) == ["reconciliation"]
    assert (
        f"finding {finding['id']}: status: recorded explained, replay open"
        in found["reconciliation"]
    )


def test_a_dropped_report_finding_and_an_altered_run_are_named(bundle: Path) -> None:
    rel = "reconciliation/report.json"
    report = msgspec.json.decode((bundle / rel).read_bytes())
    dropped = report["discrepancies"].pop()
    (bundle / rel).write_bytes(msgspec.json.encode(report))
    rehash(bundle, rel)
    runs_rel = "reconciliation/runs.json"
    runs = msgspec.json.decode((bundle / runs_rel).read_bytes())
    runs[-1]["open"] += 5
    (bundle / runs_rel).write_bytes(msgspec.json.encode(runs))
    rehash(bundle, runs_rel)
    found = areas(bundle)["reconciliation"]
    assert any(f.startswith(f"finding {dropped['id']}: the replay finds it") for f in found)
    assert any(f.startswith("run 2 ") and "open: recorded" in f for f in found)


def test_a_replaced_root_is_named(bundle: Path, tmp_path: Path) -> None:
    other = provision(tmp_path / "other", ["MN"], hub_port=0)
    rel = "trust/root-v1.json"
    shutil.copyfile(other.roots[PID], bundle / rel)
    rehash(bundle, rel)
    found = areas(bundle)
    assert "trust" not in found  # a root of other keys is a valid chain on its own...
    assert any("does not verify" in f for f in found["records"])  # ...that signs nothing here
    assert "checkpoints" in found


def test_a_broken_chain_is_named(bundle: Path) -> None:
    rel = "trust/root-v1.json"
    raw = bytearray((bundle / rel).read_bytes())
    at = raw.index(b'"sig":"') + 10
    raw[at] = ord("A") if raw[at] != ord("A") else ord("B")
    (bundle / rel).write_bytes(bytes(raw))
    rehash(bundle, rel)
    found = areas(bundle)
    assert found["trust"][0].startswith("chain: does not verify")


def test_a_file_not_in_the_manifest_and_no_manifest(bundle: Path) -> None:
    (bundle / "logs" / "extra.jsonl").write_text("{}\n")
    assert areas(bundle)["files"] == ["logs/extra.jsonl: is in the bundle but not in the manifest"]
    (bundle / MANIFEST).unlink()
    found = areas(bundle)
    assert list(found) == ["files"]
    assert "cannot be read" in found["files"][0]


async def test_a_store_with_a_newer_root_refuses_an_older_chain(pair: Pair, tmp_path: Path) -> None:
    """The export checks the configured chain against the store's marks (ADR 0017)."""
    from jcm_sync.services.node import load_chain, trust_marks

    copy = tmp_path / "copy"
    shutil.copytree(pair.net.directory, copy)
    cfg = load_config(copy / "jp" / "config.toml", env={})
    store = await open_node_store(cfg)
    try:
        marks = trust_marks(load_chain(cfg, PID, datetime.now(UTC)))
        newer = [dataclasses.replace(m, version=m.version + 1) for m in marks]
        await store.advance_trust_marks({PID: newer})
        with pytest.raises(RollbackError):
            await export_evidence(cfg, store, PID, tmp_path / "x", now=datetime.now(UTC))
        assert not (tmp_path / "x").exists()
    finally:
        await store.close()
