"""``jcm-sync evidence export|verify`` on a real node pair: the bundle verifies (exit 0),
a tampered one lists its differences (exit 1), and each refusal is one message, exit 1,
nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run
from tests.services.evidence_pair import PID, Pair, build_pair, flip_entry, rehash


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return build_pair(tmp_path_factory.mktemp("evidence-cli") / "net")


def export(
    capsys: pytest.CaptureFixture[str], pair: Pair, out: Path, *extra: object
) -> tuple[int, str, str]:
    return run(capsys, "evidence", "export", "--config", pair.net.configs["JP"],
               "--partnership", PID, "--out", out, *extra)  # fmt: skip


def test_export_then_verify_ok(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = export(capsys, pair, tmp_path / "b")
    assert code == 0, err
    assert f"{PID} at JP {pair.sizes['JP']}, MN {pair.sizes['MN']}" in out
    assert f"JP cut at {pair.sizes['JP']}: the newest stored checkpoint" in out
    code, out, err = run(capsys, "evidence", "verify", tmp_path / "b")
    assert code == 0, out + err
    assert "OK: nothing differs" in out
    assert f"{sum(pair.sizes.values())} records" in out
    code, out, _ = run(capsys, "evidence", "verify", tmp_path / "b", "--json")
    data = json.loads(out)
    assert data["ok"] is True
    assert data["differences"] == []
    assert data["checked"]["runs replayed"] == 2
    assert data["checked"]["run reports compared"] == 2


def test_export_json_and_at(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = export(capsys, pair, tmp_path / "b", "--at", "JP=10,MN=20", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [(log["node"], log["size"]) for log in data["logs"]] == [("JP", 10), ("MN", 20)]
    assert {log["cut"] for log in data["logs"]} == {"given"}
    assert data["report"] is False
    assert run(capsys, "evidence", "verify", tmp_path / "b")[0] == 0


def test_a_tampered_bundle_lists_its_differences_and_exits_1(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b"
    assert export(capsys, pair, bundle)[0] == 0
    flip_entry(bundle, "JP", 3)
    rehash(bundle, "logs/JP.entries.jsonl")
    code, out, err = run(capsys, "evidence", "verify", bundle)
    assert code == 1
    assert "DIFFERS records: JP entry 3 " in out
    assert "DIFFERS tree: JP's log" in out
    assert "differences" in err
    code, out, _ = run(capsys, "evidence", "verify", bundle, "--json")
    assert code == 1
    found = json.loads(out)["differences"]
    assert {d["area"] for d in found} >= {"records", "tree", "checkpoints"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--at", "JP=1,MN=999999"), "past MN's log"),
        (("--at", "JP=x"), "is not NODE=SIZE"),
        (("--at", "7", "--partnership", "JP-KE"), "no partnership JP-KE"),
    ],
)
def test_refusals_write_nothing(
    pair: Pair,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    code, _, err = export(capsys, pair, tmp_path / "b", *extra)
    assert code == 1
    assert message in err
    assert not (tmp_path / "b").exists()


def test_a_non_empty_folder_is_refused(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    code, _, err = export(capsys, pair, tmp_path / "b")
    assert code == 1
    assert "not empty" in err
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["x"]
