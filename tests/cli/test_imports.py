"""Tests for jcm_sync.cli.imports: ``jcm-sync template`` and ``jcm-sync import`` as a
secretariat runs them, on provisioned nodes with real SQLite stores."""

from __future__ import annotations

import csv
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import openpyxl
import pytest

from jcm_sync.core import tabular
from jcm_sync.core.records import (
    KINDS,
    Account,
    SerialBlock,
    TransactionRecord,
    encode_record,
)
from jcm_sync.services.sample import Network, partnership_records, provision
from tests.cli.conftest import run
from tests.sheets import indonesia, workbook


@pytest.fixture
def net(tmp_path: Path) -> Network:
    """A hub serving JP-ID and JP-MN, and their agents; nobody listens at the hub's URL."""
    return provision(tmp_path / "net", ["ID", "MN"], hub_port=0, now=datetime.now(UTC))


def transfers(n: int, created: datetime) -> list[TransactionRecord]:
    """N transfers in Indonesia's registry, one block of 1-50 credits each."""
    out, first = [], 1
    for i in range(n):
        qty, vintage = 1 + i % 50, 2016 + i % 8
        prefix = f"ID-ID{1 + i % 60:03d}-{vintage}-"
        out.append(TransactionRecord(
            partnership="JP-ID", author="ID", created=created, registry="ID",
            txn_id=f"ID-TXN-{i + 1:07d}", type="transfer",
            executed_on=date(2017, 1, 1) + timedelta(days=i % 2500),
            source=Account("ID-GOV-001", "government_holding"),
            destination=Account(f"ID-PP-{1 + i % 60:03d}", "participant_holding"), amount=qty,
            blocks=(SerialBlock(f"{prefix}{first:09d}", f"{prefix}{first + qty - 1:09d}", qty,
                                vintage),),
        ))  # fmt: skip
        first += qty
    return out


def csv_file(path: Path, records: list[TransactionRecord], *, bom: bool = True) -> Path:
    names = tabular.headers("transaction")
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for r in records:
            row = tabular.record_to_row(r)
            w.writerow(["" if row[n] is None else row[n] for n in names])
    return path


def size(capsys: pytest.CaptureFixture[str], net: Network, node: str = "ID") -> int:
    code, out, _ = run(capsys, "status", "--config", net.configs[node], "--json")
    assert code == 0
    return int(json.loads(out)["partnerships"][0]["logs"][0]["local_size"])


# --- template -----------------------------------------------------------------------------


def test_template_xlsx_has_a_sheet_per_kind_and_imports_as_nothing(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.xlsx"
    code, _, err = run(capsys, "template", "--format", "xlsx", "--out", out)
    assert code == 0, err
    assert f"wrote {out}" in err
    assert openpyxl.load_workbook(out).sheetnames == list(KINDS)
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], out)
    assert code == 1
    assert "no rows or records in the input" in err


def test_template_csv_of_one_kind_then_filled_in_imports(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "transaction.csv"
    code, _, err = run(capsys, "template", "--format", "csv", "--kind", "transaction", "--out", out)
    assert code == 0, err
    txn = next(r for r in indonesia() if r.kind == "transaction")
    row = tabular.record_to_row(txn)
    row["executed_on"] = txn.executed_on.strftime("%d %b %y")  # type: ignore[union-attr]
    row["created"] = None
    with out.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["" if v is None else v for v in row.values()])
    code, stdout, err = run(capsys, "import", "--config", net.configs["ID"], out, "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"partnership": "JP-ID", "rows": 1, "new": 1, "held": 0,
                                  "size": 1, "dry_run": False}  # fmt: skip


# --- import -------------------------------------------------------------------------------


def test_import_then_again_says_new_and_already_held(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = indonesia()
    path = workbook(tmp_path / "id.xlsx", records)
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert code == 0, err
    n = len(records)
    assert out.strip() == f"JP-ID: {n} new, 0 already held; log size {n}"
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert code == 0, err
    assert out.strip() == f"JP-ID: 0 new, {n} already held; log size {n}"


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_csv_with_or_without_a_bom_and_dry_run_stores_nothing(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str], bom: bool
) -> None:
    path = csv_file(tmp_path / "transaction.csv", transfers(300, datetime.now(UTC)), bom=bom)
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path, "--dry-run")
    assert code == 0, err
    assert "dry run, nothing stored" in out
    assert size(capsys, net) == 0


def test_a_refused_import_lists_every_problem_writes_the_report_and_stores_nothing(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workbook(tmp_path / "id.xlsx", indonesia())
    wb = openpyxl.load_workbook(path)
    ws = wb["transaction"]
    names = [c.value for c in ws[1]]
    ws.cell(2, names.index("type") + 1).value = "retirment"
    ws.cell(3, names.index("executed_on") + 1).value = "2017-13-01"
    ws.cell(1, names.index("purpose") + 1).value = "purpse"
    wb.save(path)
    report = tmp_path / "report.xlsx"
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path,
                         "--report", report)  # fmt: skip
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert f"{path}:transaction:1 column purpse = 'purpse': unknown column `purpse`; did you " \
           "mean `purpose`?" in lines  # fmt: skip
    assert any(line.startswith(f"{path}:transaction:2 column type = 'retirment'") for line in lines)
    assert any(line.startswith(f"{path}:transaction:3 column executed_on") for line in lines)
    assert any(line.startswith("refused: 3 problem(s)") for line in lines)
    assert "nothing was stored" in err
    assert size(capsys, net) == 0
    got = openpyxl.load_workbook(report)
    cell = got["transaction"].cell(2, names.index("type") + 1)
    assert cell.value == "retirment"
    assert cell.fill.start_color.rgb.endswith("FFC7CE")
    assert "did you mean `retirement`?" in cell.comment.text
    assert got["transaction"].cell(1, names.index("purpose") + 1).comment is not None
    assert len(list(got["problems"].values)) == 4


def test_a_misspelt_json_member_is_refused_with_the_suggestion(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = msgspec.to_builtins(next(r for r in indonesia() if r.kind == "transaction"))
    obj["purpse"] = obj.pop("purpose")
    path = tmp_path / "t.jsonl"
    path.write_bytes(msgspec.json.encode(obj) + b"\n")
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert code == 1
    assert "unknown field `purpse`; did you mean `purpose`?" in err
    assert size(capsys, net) == 0


def test_signed_envelopes_import_and_again_are_held(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recs = partnership_records("MN", net.keys, projects=1, periods=1).by_node["JP"]
    path = tmp_path / "jp.jsonl"
    path.write_bytes(b"\n".join(recs) + b"\n")
    argv = ["import", "--config", net.configs["JP"], "--partnership", "JP-MN", path]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.strip() == f"JP-MN: {len(recs)} new, 0 already held; log size {len(recs)}"
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.strip() == f"JP-MN: 0 new, {len(recs)} already held; log size {len(recs)}"


def test_import_on_a_node_of_several_partnerships_needs_partnership(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.jsonl"
    path.write_bytes(b"")
    code, out, err = run(capsys, "import", "--config", net.configs["JP"], path)
    assert code == 1
    assert out == ""
    assert "this node serves several partnerships: give --partnership" in err


def test_a_missing_file_or_an_unknown_format_is_one_line(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], missing)
    assert code == 1
    assert str(missing) in err.splitlines()[0]
    odd = tmp_path / "records.txt"
    odd.write_text("x")
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], odd)
    assert code == 1
    assert "give --format xlsx|csv|jsonl|json" in err.splitlines()[0]


def test_twelve_thousand_rows_in_one_command(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over the old 4 MiB input limit (about 12,000 records): one command, then held."""
    path = tmp_path / "id.jsonl"
    path.write_bytes(b"\n".join(map(encode_record, transfers(12_000, datetime.now(UTC)))))
    assert path.stat().st_size > 4 * 1024 * 1024
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert code == 0, err
    assert out.strip() == "JP-ID: 12,000 new, 0 already held; log size 12,000"
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert out.strip() == "JP-ID: 0 new, 12,000 already held; log size 12,000"


@pytest.mark.skipif(not os.environ.get("JCM_SYNC_SLOW"), reason="slow: set JCM_SYNC_SLOW=1")
def test_a_hundred_thousand_xlsx_rows_in_one_command(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = transfers(100_000, datetime.now(UTC))
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("transaction")
    names = tabular.headers("transaction")
    ws.append(names)
    for r in records:
        row = tabular.record_to_row(r)
        ws.append([row[n] for n in names])
    path = tmp_path / "big.xlsx"
    wb.save(path)
    started = time.monotonic()
    code, out, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert code == 0, err
    assert out.strip() == "JP-ID: 100,000 new, 0 already held; log size 100,000"
    assert time.monotonic() - started < 600
