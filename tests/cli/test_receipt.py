"""``jcm-sync receipt get|verify`` on a real node pair: a record's receipt written from
Japan's store verifies with the trust-root file alone (exit 0); a tampered receipt, a
missing cosignature when one is required and an unknown record are refused (exit 1)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jcm_sync.core import tlog_proof
from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node_store
from tests.cli.conftest import run
from tests.services.evidence_pair import PID, Pair, build_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return build_pair(tmp_path_factory.mktemp("receipt-cli") / "net")


def ids(pair: Pair, node: str, n: int = 3) -> list[str]:
    return asyncio.run(_ids(pair, node, n))


async def _ids(pair: Pair, node: str, n: int) -> list[str]:
    store = await open_node_store(load_config(pair.net.configs["JP"], env={}))
    try:
        ref = next(r for r in await store.logs() if r.partnership == PID and r.node == node)
        return [e.record_id for e in await store.entries(ref, 0, n)]
    finally:
        await store.close()


def test_get_then_verify(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rid = ids(pair, "JP")[2]
    out_file = tmp_path / "r.tlog-proof"
    code, _, err = run(capsys, "receipt", "get", "--config", pair.net.configs["JP"], rid,
                       "--out", out_file)  # fmt: skip
    assert code == 0, err
    assert f"record {rid[:16]}: entry 2 of jcm-sync.example/JP-MN/JP" in err
    assert "jcm-sync.example/witness/MN" in err
    assert out_file.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\nextra ")
    root = pair.net.roots[PID]
    code, out, err = run(capsys, "receipt", "verify", out_file, "--trust", root,
                         "--require-cosigned")  # fmt: skip
    assert code == 0, err
    assert f"record {rid[:16]} by JP is entry 2 of jcm-sync.example/JP-MN/JP" in out
    assert "cosigned by jcm-sync.example/witness/MN" in out
    code, out, _ = run(capsys, "receipt", "verify", out_file, "--trust", root, "--json")
    data = json.loads(out)
    assert (data["ok"], data["record_id"], data["index"]) == (True, rid, 2)
    assert data["received"] == data["cosigners"][0]["time"]


def test_get_to_stdout_and_json(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    rid = ids(pair, "MN")[0]
    code, out, _ = run(capsys, "receipt", "get", "--config", pair.net.configs["JP"], rid)
    assert code == 0
    assert tlog_proof.parse_proof(out.encode()).index == 0
    code, out, _ = run(capsys, "receipt", "get", "--config", pair.net.configs["JP"], rid, "--json")
    data = json.loads(out)
    assert data["cosigners"] == []
    assert data["receipt"].startswith("c2sp.org/tlog-proof@v1\n")


def test_refusals(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rid = ids(pair, "MN")[1]
    receipt = tmp_path / "mn.tlog-proof"
    assert run(capsys, "receipt", "get", "--config", pair.net.configs["JP"], rid,
               "--out", receipt)[0] == 0  # fmt: skip
    root = pair.net.roots[PID]
    code, _, err = run(capsys, "receipt", "verify", receipt, "--trust", root, "--require-cosigned")
    assert code == 1
    assert "do not meet the witness quorum" in err
    data = bytearray(receipt.read_bytes())
    at = data.index(b"\nindex ") + len(b"\nindex ")
    data[at : at + 1] = b"7"  # another index
    receipt.write_bytes(bytes(data))
    code, _, err = run(capsys, "receipt", "verify", receipt, "--trust", root)
    assert code == 1
    assert "inclusion proof does not put this entry" in err
    code, _, err = run(capsys, "receipt", "get", "--config", pair.net.configs["JP"], "ab" * 32)
    assert code == 1
    assert "no log holds record" in err
    code, _, err = run(capsys, "receipt", "verify", tmp_path / "none", "--trust", root)
    assert code == 1
