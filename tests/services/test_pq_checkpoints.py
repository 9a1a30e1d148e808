"""``services/pq_checkpoints.py`` with real hybrid keys: a hub and an agent whose ML-DSA-44
keys were made by ``jcm-sync key generate --alg ml-dsa-44``, under a root requiring
``both`` for checkpoints and issuances and the mutual cosignature. An evidence bundle
and a receipt from Japan's store verify; without the log's ML-DSA-44 line, with a
cosigner's ML-DSA-44 cosignature dropped, or with an ML-DSA-44 line spoiled, each is
refused with its reason (``evidence verify`` and ``receipt verify`` exit non-zero)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.cli import main
from jcm_sync.core import tlog_proof
from jcm_sync.core.cosign_policy import Quorum
from jcm_sync.core.note import NoteSignature, parse_note
from jcm_sync.errors import AlgorithmRequiredError, SignatureError
from jcm_sync.local.config import load_config
from jcm_sync.local.keyfiles import load_any_private_key
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.evidence import MANIFEST, Manifest
from jcm_sync.services.evidence_verify import verify_evidence
from jcm_sync.services.node import open_node_store
from jcm_sync.services.own_log import append_own
from jcm_sync.services.receipts import get_receipt, verify_receipt_file
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.services.trust_roots import Validity, new_root, sign_new_root
from tests.cli.conftest import run
from tests.exchange.conftest import Running
from tests.exchange.test_hybrid_keys import single_signed
from tests.services.evidence_pair import areas, export, rehash

PID = "JP-MN"
MLDSA_LINE = 8 + 2420  # a type 0x06 line: timestamp and ML-DSA-44 signature


@dataclass(frozen=True)
class Hybrid:
    net: Network
    bundle: Path
    receipt: bytes
    trust: list[bytes]


def _hybrid_network(directory: Path) -> Network:
    """``provision``'s hub and MN agent, each with an ML-DSA-44 key from the CLI named as
    ``signing_pq`` (so ``checkpoint_pq`` too), under a root requiring ``both`` for
    checkpoints and issuances and the mutual cosignature."""
    net = provision(directory, ["MN"], hub_port=0)
    keys = []
    for n in ("JP", "MN"):
        name = f"{n.lower()}-pq"
        argv = ["key", "generate", "--alg", "ml-dsa-44", "--name", name, "--out"]
        assert main([*argv, str(directory / "keys")]) == 0
        pq = load_any_private_key(directory / "keys" / f"{name}.key")
        assert pq.algorithm == "ml-dsa-44"
        keys += [(n, net.keys[n].public), (n, pq.public)]
        cfg = net.configs[n]
        text = cfg.read_text()
        at = text.index("\n", text.index("\nsigning = ") + 1)
        cfg.write_text(f'{text[:at]}\nsigning_pq = "../keys/{name}.key"\n{text[at + 1 :]}')
    valid = Validity(datetime.now(UTC) - timedelta(hours=1), key_days=365, expires_days=300)
    root = new_root(PID, keys, valid, required={"checkpoint": "both", "issuance": "both"},
                    cosign={"JP": Quorum(("MN",), 1), "MN": Quorum(("JP",), 1)})  # fmt: skip
    net.roots[PID].write_bytes(sign_new_root(root, [net.keys["JP"], net.keys["MN"]]))
    return net


async def _build(directory: Path) -> Hybrid:
    net = _hybrid_network(directory / "net")
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    try:
        hub, agent = running.hub, await running.agent("MN")
        assert hub is not None
        recs = partnership_records("MN", net.keys)
        await append_own(agent, PID, single_signed(recs.by_node["MN"], 6))
        await append_own(hub, PID, single_signed(recs.by_node["JP"], 6))
        syncer = running.syncer(agent)
        await syncer.sync_once()
        assert (await syncer.sync_once()).in_sync  # the witnessing left undone is done
    finally:
        await running.close()
    bundle = await export(_Pair(net), directory / "bundle")
    store = await open_node_store(load_config(net.configs["JP"], env={}))
    try:
        own = next(r for r in await store.logs() if r.partnership == PID and r.node == "JP")
        entry = await store.entry(own, 0)
        receipt = await get_receipt(store, entry.record_id, {PID})
    finally:
        await store.close()
    return Hybrid(net, bundle, receipt.data, [net.roots[PID].read_bytes()])


@dataclass(frozen=True)
class _Pair:
    """What ``evidence_pair.export`` reads of a pair."""

    net: Network


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Hybrid:
    """Records both ways, synced and witnessed both ways; then the bundle and a receipt of
    one of Japan's records, from Japan's store."""
    return asyncio.run(_build(tmp_path_factory.mktemp("pq")))


def _without(note: bytes, drop: Callable[[NoteSignature], bool]) -> bytes:
    """``note`` without the signature lines ``drop`` picks."""
    parsed = parse_note(note)
    kept = "".join(s.line() for s in parsed.signatures if not drop(s))
    return parsed.text + b"\n" + kept.encode()


def _spoiled(note: bytes, pick: Callable[[NoteSignature], bool]) -> bytes:
    """``note`` with the last byte of the lines ``pick`` picks flipped."""
    parsed = parse_note(note)
    lines = [
        NoteSignature(s.name, s.key_id, s.signature[:-1] + bytes([s.signature[-1] ^ 1]))
        if pick(s) else s
        for s in parsed.signatures
    ]  # fmt: skip
    return parsed.text + b"\n" + "".join(s.line() for s in lines).encode()


def _log_pq(origin: str) -> Callable[[NoteSignature], bool]:
    return lambda s: s.name == origin and len(s.signature) == MLDSA_LINE


def _witness_pq(s: NoteSignature) -> bool:
    return "/witness/" in s.name and len(s.signature) == MLDSA_LINE


def _origin(note: bytes) -> str:
    return parse_note(note).text.split(b"\n", 1)[0].decode()


def test_the_hybrid_bundle_verifies_with_both_lines_everywhere(hybrid: Hybrid) -> None:
    check = verify_evidence(hybrid.bundle)
    assert check.differences == []
    assert check.checked["checkpoints"] >= 2
    assert check.checked["cosigned checkpoints"] >= 2
    for note in (hybrid.bundle / "checkpoints").rglob("*.note"):
        sigs = parse_note(note.read_bytes()).signatures
        assert any(_log_pq(_origin(note.read_bytes()))(s) for s in sigs), note.name


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("log", "has no ML-DSA-44 log signature by a checkpoint key of JP"),
        ("witness", "MN cosigned the checkpoint of"),
        ("spoil", "does not verify"),
    ],
)
def test_a_bundle_checkpoint_lacking_or_failing_an_ml_dsa_line_is_refused(
    hybrid: Hybrid, tmp_path: Path, tamper: str, expected: str
) -> None:
    """Rule 2a, 2b and 1 in ``evidence verify``: the checkpoint is named under
    ``checkpoints`` (and a run on it under ``reconciliation``)."""
    bundle = tmp_path / "b"
    shutil.copytree(hybrid.bundle, bundle)
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    victim = sorted(r for r in manifest.files if r.startswith("checkpoints/JP/"))[-1]
    note = (bundle / victim).read_bytes()
    if tamper == "log":
        note = _without(note, _log_pq(_origin(note)))
    elif tamper == "witness":
        note = _without(note, _witness_pq)
    else:
        note = _spoiled(note, _log_pq(_origin(note)))
    (bundle / victim).write_bytes(note)
    rehash(bundle, victim)
    found = areas(bundle)["checkpoints"]
    refused = [f for f in found if "ML-DSA-44" in f]
    assert len(refused) == 1, found
    assert expected in refused[0], refused[0]
    size = int(victim.rsplit("/", 1)[1].removesuffix(".note"))
    assert [f for f in found if f not in refused] == [  # the log was cut at the victim
        f"JP's log: was cut at {victim}, which is not a valid checkpoint of the snapshot's "
        f"size {size} in the bundle",
        f"JP's log: was cut at size {size} as agreed, and the bundle's cosignatures do not "
        "meet the trust root's quorum there",
    ]
    code = main(["evidence", "verify", str(bundle)])
    assert code != 0


def test_the_hybrid_receipt_verifies(hybrid: Hybrid) -> None:
    check = verify_receipt_file(hybrid.receipt, hybrid.trust, datetime.now(UTC))
    assert check.author == "JP"
    assert len(check.cosigners) == 2  # MN's Ed25519 and ML-DSA-44 cosignatures


def _receipt_with(receipt: bytes, note: bytes) -> bytes:
    proof = tlog_proof.parse_proof(receipt)
    return tlog_proof.format_proof(
        tlog_proof.TlogProof(proof.index, proof.proof, note, extra=proof.extra)
    )


def test_a_receipt_lacking_or_failing_an_ml_dsa_line_is_refused(
    hybrid: Hybrid, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rules 1, 2a and 2b in ``receipt verify``: a specific refusal and exit 1."""
    note = tlog_proof.parse_proof(hybrid.receipt).note
    origin = _origin(note)
    now = datetime.now(UTC)
    cases = [
        (_without(note, _log_pq(origin)), AlgorithmRequiredError, "no ML-DSA-44 log signature"),
        (_without(note, _witness_pq), AlgorithmRequiredError, "with Ed25519 only"),
        (_spoiled(note, _log_pq(origin)), SignatureError, "does not verify"),
    ]
    root = tmp_path / "root.json"
    root.write_bytes(hybrid.trust[0])
    for n, (bad, error, message) in enumerate(cases):
        receipt = _receipt_with(hybrid.receipt, bad)
        with pytest.raises(error, match=message):
            verify_receipt_file(receipt, hybrid.trust, now)
        path = tmp_path / f"r{n}.tlog-proof"
        path.write_bytes(receipt)
        code, _, err = run(capsys, "receipt", "verify", path, "--trust", root)
        assert code == 1, err
        assert message in " ".join(err.split()), err


def test_without_the_requirement_a_missing_line_passes_and_a_forged_one_does_not(
    hybrid: Hybrid,
) -> None:
    """Rules 1 and 3 on the functions: the same keys in a root that requires nothing of
    checkpoints accept a note without ML-DSA-44 lines, and still refuse a spoiled one;
    under the hybrid root the stripped note is refused."""
    from jcm_sync.core.trust import decode_root, peek_root
    from jcm_sync.services.pq_checkpoints import check_pq_lines, log_pq_verifiers
    from jcm_sync.store import LogRef

    strict = peek_root(hybrid.trust[0])
    lax = decode_root(msgspec.json.encode(msgspec.structs.replace(strict, required_algorithms={})))
    note = next((hybrid.bundle / "checkpoints" / "JP").glob("*.note")).read_bytes()
    origin = _origin(note)
    log = LogRef(PID, "JP", origin)
    assert len(log_pq_verifiers([strict], log)) == 1
    stripped = _without(_without(note, _log_pq(origin)), _witness_pq)
    check_pq_lines([lax], log, stripped, None, (), {})
    with pytest.raises(AlgorithmRequiredError, match="requires both signatures for checkpoint"):
        check_pq_lines([strict], log, stripped, None, (), {})
    with pytest.raises(SignatureError):
        check_pq_lines([lax], log, _spoiled(note, _log_pq(origin)), None, (), {})
