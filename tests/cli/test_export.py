"""``jcm-sync export`` (``cli/export.py``): arguments, default names, ``--json``, ``--out -``,
``--force`` and one-line refusals; what the files hold is ``tests/services/test_export.py``'s."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from jcm_sync.core.records import KINDS
from jcm_sync.services.sample import provision
from tests.cli.conftest import run
from tests.services.seeded import Seeded, seed


@pytest.fixture
async def seeded(tmp_path: Path) -> Seeded:
    return await seed(tmp_path / "net")


def refusal(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, err
    assert lines[1].lstrip().startswith("next step:"), err
    return lines[0]


def test_default_names_and_json_summary(
    seeded: Seeded,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = seeded.config("JP")
    total = len(seeded.logs["JP"]) + len(seeded.logs["ID"])
    code, out, err = run(capsys, "export", "--config", cfg, "--format", "xlsx", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["records"] == total
    assert data["out"] == "export-JP-ID.xlsx"
    assert [(lg["node"], lg["size"]) for lg in data["logs"]] == [
        ("JP", len(seeded.logs["JP"])), ("ID", len(seeded.logs["ID"]))]  # fmt: skip
    book = load_workbook(tmp_path / "export-JP-ID.xlsx", read_only=True)
    assert book.sheetnames == list(KINDS)
    rows = sum(len(list(ws.iter_rows(values_only=True))) - 1 for ws in book.worksheets)
    book.close()
    assert rows == total
    code, out, _ = run(capsys, "export", "--config", cfg, "--format", "csv")
    assert code == 0
    assert f"exported {total} records as of JP {len(seeded.logs['JP'])}" in out
    assert sorted(p.stem for p in (tmp_path / "export-JP-ID").iterdir()) == sorted(KINDS)


def test_jsonl_to_stdout(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export", "--config", seeded.config("ID"), "--format", "jsonl",
                         "--out", "-", "--kind", "project", "issuance_decision")  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["kind"] for line in lines} == {"project", "issuance_decision"}
    assert "exported" in err


def test_an_existing_target_needs_force(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "x.xlsx"
    target.write_bytes(b"not a workbook")
    argv = ["export", "--config", seeded.config("JP"), "--format", "xlsx", "--out", target]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "exists already" in refusal(err)
    assert target.read_bytes() == b"not a workbook"
    assert run(capsys, *argv, "--force")[0] == 0
    load_workbook(target, read_only=True).close()


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--at", "JP=3"], "no checkpoint of size 3"),
        (["--at", "MN=3"], "no log of MN"),
        (["--at", "JP"], "not NODE=SIZE"),
        (["--kind", "isuance"], "did you mean issuance"),
        (["--out", "missing/x.xlsx"], "does not exist"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, extra: list[str], reason: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, "export", "--config", seeded.config("JP"), "--format", "xlsx",
                         *extra)  # fmt: skip
    assert code == 1
    assert out == ""
    assert reason in refusal(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_format_is_required(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "export", "--config", seeded.config("JP"))[0] == 2


# --- export, then import into an empty node ------------------------------------------------


def _canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True)


def _records(lines: str) -> list[Any]:
    return [json.loads(line)["record"] for line in lines.splitlines()]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_export_then_import_into_an_empty_node_gives_the_same_records(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    """Japan's log exported (the partner's left out: a node signs only its own records),
    imported into a new node with Japan's keys and an empty store: that node's log holds
    the same records (grouped by kind now: the file holds a sheet per kind)."""
    cfg = seeded.config("JP")
    out = tmp_path / f"jp.{fmt}"
    code, _, err = run(capsys, "export", "--config", cfg, "--format", fmt, "--at", "ID=0",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    empty = cfg.parent.parent / "jp-empty"
    empty.mkdir()
    (empty / "config.toml").write_text(cfg.read_text())
    files = sorted(out.glob("*.csv")) if fmt == "csv" else [out]
    code, _, err = run(capsys, "import", "--config", empty / "config.toml", *files)
    assert code == 0, err
    exports = []
    for config in (cfg, empty / "config.toml"):
        code, text, err = run(capsys, "export", "--config", config, "--format", "jsonl",
                              "--at", "ID=0", "--out", "-")  # fmt: skip
        assert code == 0, err
        exports.append(_records(text))
    assert len(exports[0]) == len(seeded.logs["JP"])
    assert sorted(map(_canonical, exports[1])) == sorted(map(_canonical, exports[0]))


def test_a_hub_of_several_partnerships_needs_partnership(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = provision(tmp_path / "net", ["ID", "MN"], hub_port=0, now=datetime.now(UTC))
    argv = ["export", "--config", net.configs["JP"], "--format", "csv", "--out", tmp_path / "x"]
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "serves several partnerships: give --partnership" in err
    code, out, err = run(capsys, *argv, "--partnership", "JP-MN", "--json")
    assert code == 0, err
    assert json.loads(out)["records"] == 0  # nothing synced yet: every sheet a header only
    assert sorted(p.stem for p in (tmp_path / "x").iterdir()) == sorted(KINDS)
