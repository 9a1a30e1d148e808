"""Verifying evidence bundles offline: a bundle from a real node pair verifies, and each
kind of tampering (an entry, a checkpoint, a report finding, a run, a root, a file) is
named with its place, in its area."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from jcm_sync.services.evidence import (
    MANIFEST,
    Manifest,
    entries_path,
)
from jcm_sync.services.sample import provision
from tests.services.evidence_pair import (
    PID,
    Pair,
    areas,
    build_pair,
    export,
    flip_entry,
    rehash,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Japan's hub and Mongolia's agent, filled, replicated and reconciled twice."""
    return build_pair(tmp_path_factory.mktemp("evidence") / "net")


@pytest.fixture
async def bundle(pair: Pair, tmp_path: Path) -> Path:
    return await export(pair, tmp_path / "b")


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
    size = int(victim.rsplit("/", 1)[1].removesuffix(".note"))
    ran = f"ran on JP's log at size {size}, and the bundle holds no valid checkpoint"
    assert [f for f in found["reconciliation"] if ran in f] != []
    manifest = msgspec.structs.replace(
        manifest, files={k: v for k, v in manifest.files.items() if k != victim}
    )
    (bundle / MANIFEST).write_bytes(msgspec.json.encode(manifest))
    found = areas(bundle)  # dropped from the manifest too: the run and the cut name it
    assert sorted(found) == ["checkpoints", "reconciliation"]
    assert [f for f in found["reconciliation"] if ran in f] != []
    assert found["checkpoints"] == [
        f"JP's log: was cut at {victim}, which is not a valid checkpoint of the snapshot's "
        f"size {size} in the bundle"
    ]


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
    assert sorted(found) == ["checkpoints", "reconciliation"]  # the last run used it
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
        f"{rel}: finding {finding['id']}: status: recorded explained, replay open"
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
    assert any(f.startswith(f"{rel}: finding {dropped['id']}: the replay finds it") for f in found)
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


def test_an_untouched_bundle_verifies_and_a_missing_folder_does_not(
    bundle: Path, tmp_path: Path
) -> None:
    from jcm_sync.services.evidence_verify import verify_evidence

    check = verify_evidence(bundle)
    assert check.ok
    assert check.checked["runs replayed"] == 2
    gone = verify_evidence(tmp_path / "nowhere")
    assert not gone.ok
    assert gone.differences[0].detail == "is not a folder"


def test_cosignatures_verify_and_a_forged_one_is_named(bundle: Path) -> None:
    from jcm_sync.core.note import NoteSignature, add_signature_lines, parse_note
    from jcm_sync.services.evidence_verify import verify_evidence

    assert verify_evidence(bundle).checked["cosigned checkpoints"] >= 2
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    victim = sorted(r for r in manifest.files if r.startswith("checkpoints/JP/"))[-1]
    note = (bundle / victim).read_bytes()
    line = next(s for s in parse_note(note).signatures if "/witness/MN" in s.name)
    forged = line.signature[:8] + bytes(64)  # its timestamp, a signature of zeros
    note = add_signature_lines(note, [NoteSignature(line.name, line.key_id, forged)])
    (bundle / victim).write_bytes(note)
    rehash(bundle, victim)
    found = areas(bundle)
    assert sorted(found) == ["checkpoints", "reconciliation"]  # refused: the last run used it
    assert found["checkpoints"][0].startswith(f"JP {victim.rsplit('/', 1)[1]}: cosignature:")


def test_counterpart_witnesses_take_ed25519_and_ml_dsa_44_keys(tmp_path: Path) -> None:
    """Every checkpoint key of the counterpart in the chain cosigns: an Ed25519 one
    (cosignature/v1, type 0x04) and an ML-DSA-44 one (subtree/v1, type 0x06)."""
    from datetime import UTC, datetime

    from jcm_sync.core import merkle
    from jcm_sync.core.checkpoint import Checkpoint, sign_checkpoint
    from jcm_sync.core.cosignature import add_cosignature, verify_cosignatures
    from jcm_sync.core.pq import MLDSA44PrivateKey
    from jcm_sync.core.trust import peek_root
    from jcm_sync.services.evidence import witness_name
    from jcm_sync.services.evidence_verify import counterpart_witnesses
    from jcm_sync.services.trust_roots import Validity, rotate_root
    from jcm_sync.store import LogRef

    net = provision(tmp_path / "n", ["MN"], hub_port=0)
    v1 = peek_root(net.roots[PID].read_bytes())
    pq = MLDSA44PrivateKey.generate()
    valid = Validity(now=datetime.now(UTC), key_days=30, expires_days=30)
    v2 = rotate_root(v1, valid, add=[("MN", pq.public)])  # type: ignore[list-item]  # ML-DSA
    jp = LogRef(PID, "JP", f"jcm-sync.example/{PID}/JP")
    mn = LogRef(PID, "MN", f"jcm-sync.example/{PID}/MN")
    found = counterpart_witnesses([v1, v2], jp, mn)
    assert sorted(w.signature_type for w in found) == [0x04, 0x06]
    assert counterpart_witnesses([v1], jp, mn)[0].signature_type == 0x04
    note = sign_checkpoint(Checkpoint(jp.origin, 0, merkle.EMPTY_ROOT), net.keys["JP"].key)
    name = witness_name(jp.origin, PID, "JP", "MN")
    cosigned = add_cosignature(note, name, pq.key, 1_767_000_000)
    assert [c.signature_type for c in verify_cosignatures(cosigned, found)] == [0x06]
    assert verify_cosignatures(cosigned, counterpart_witnesses([v1], jp, mn)) == ()


def test_manifest_paths_outside_the_bundle_are_not_read(bundle: Path) -> None:
    outside = bundle.parent / "secret.json"
    outside.write_text("{}")
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    files = {**manifest.files, "checkpoints/JP/../../../secret.json": "00"}
    manifest = msgspec.structs.replace(manifest, files=files, trust=("../secret.json",))
    (bundle / MANIFEST).write_bytes(msgspec.json.encode(manifest))
    found = areas(bundle)
    assert "checkpoints/JP/../../../secret.json: is not a path inside the bundle" in found["files"]
    assert found["trust"] == ["../secret.json: is not a path inside the bundle"]
