"""``jcm-sync report aef`` (``cli/report.py``): arguments, files, exit codes, messages.

Indonesia's agent holds its own log of a small JP-ID sample with the Article 6.2 part;
the values of the files are ``tests/services/test_aef*``'s.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import partnership_records, provision
from tests.cli.conftest import run

NOW = datetime.now(UTC)
APPROACH = "JCM Indonesia-Japan=CA0001"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Indonesia's agent configuration, its own log holding the sample."""
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=NOW - timedelta(hours=1))
    recs = partnership_records("ID", net.keys, projects=2, periods=2, created=NOW, article6=True)

    async def seed() -> None:
        node = await open_node(load_config(net.configs["ID"], env={}))
        try:
            await append_own(node, "JP-ID", recs.by_node["ID"])
        finally:
            await node.close()

    asyncio.run(seed())
    return net.configs["ID"]


def aef(config: Path, out: Path, *extra: object) -> list[object]:
    return ["report", "aef", "--config", config, "--out", out, "--submitted", "2026-04-10", *extra]


def test_writes_the_workbook_and_a_csv_per_table(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *aef(config, tmp_path, "--year", 2016, "--approach-id", APPROACH))
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.glob("AEF-*"))
    assert names == sorted([
        "AEF-IDN-2016.xlsx", "AEF-IDN-2016-table1-submission.csv",
        "AEF-IDN-2016-table2-authorizations.csv", "AEF-IDN-2016-table3-actions.csv",
        "AEF-IDN-2016-table4-holdings.csv", "AEF-IDN-2016-table5-authorized-entities.csv",
        "AEF-IDN-2016-trace.csv", "AEF-IDN-2016-checks.csv",
    ])  # fmt: skip
    assert "AEF of ID for 2016 (common nomenclatures of 17 February 2026)" in out
    assert "table 2 Authorizations: 1 rows" in out
    # the sector is listed as a value to add, without failing
    assert "incomplete: aef-sector: table 2 Authorizations row 1" in err
    assert "refused" not in err
    wb = load_workbook(tmp_path / "AEF-IDN-2016.xlsx")
    submission = list(wb["Table 1 Submission"].iter_rows(min_row=2, values_only=True))
    assert submission[0][:3] == ("IDN", "1.0", 2016)
    assert submission[0][3].date().isoformat() == "2026-04-10"  # type: ignore[union-attr]


def test_a_failed_check_exits_1_with_the_files_written(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a CARP id for the cooperative approach, the checks fail."""
    code, _, err = run(capsys, *aef(config, tmp_path, "--year", 2016, "--format", "xlsx"))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-2].startswith("refused: ")
    assert "consistency check" in lines[-2]
    assert lines[-1].startswith("  next step: ")
    assert any(line.startswith("failure: aef-approach-id: table 3 Actions row 1") for line in lines)
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.glob("AEF-*")] == ["AEF-IDN-2016.xlsx"]
    checks = list(load_workbook(tmp_path / "AEF-IDN-2016.xlsx")["Checks"].iter_rows(
        min_row=2, values_only=True))  # fmt: skip
    assert ("failure", "aef-approach-id") in {(s, c) for s, c, *_ in checks}


def test_json_output(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *aef(config, tmp_path, "--year", 2016, "--approach-id", APPROACH,
                                    "--format", "csv", "--json"))  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert (data["party"], data["year"]) == ("ID", 2016)
    assert data["rows"]["3 Actions"] > 0
    assert all(f.endswith(".csv") for f in data["files"])
    assert [p["check"] for p in data["problems"]] == ["aef-sector"]


@pytest.mark.parametrize(
    "extra",
    [["--year", "16"], ["--year", "2017", "--approach-id", "CA0001"],
     ["--year", "2017", "--ndc-period", "2030-2021"], ["--year", "2017", "--format", "pdf"],
     ["--year", "2017", "--oimp-first-transfer", "Transfer"]],
    ids=["year", "approach", "period", "format", "oimp"],
)  # fmt: skip
def test_bad_arguments_are_usage_errors(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    code, _, _ = run(capsys, *aef(config, tmp_path, *extra))
    assert code == 2
    assert list(tmp_path.glob("AEF-*")) == []


def test_a_missing_folder_is_created_and_an_unwritable_one_is_one_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` names a folder to write into: made when missing (as conformance --out);
    a path that cannot be a folder (under a file) is one refusal line, no traceback."""
    code, _, err = run(capsys, *aef(config, tmp_path / "new" / "aef", "--year", 2017,
                                    "--approach-id", APPROACH))  # fmt: skip
    assert code == 0, err
    assert [p.suffix for p in (tmp_path / "new" / "aef").glob("AEF-*-2017.xlsx")] == [".xlsx"]
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, *aef(config, tmp_path / "file" / "aef", "--year", 2017,
                                    "--approach-id", APPROACH))  # fmt: skip
    assert code == 1
    refusal = [line for line in err.splitlines() if line.startswith("refused:")]
    assert len(refusal) == 1
    assert "Traceback" not in err


def test_an_unknown_partnership_is_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *aef(config, tmp_path, "--year", 2017, "--partnership", "JP-MN"))
    assert code == 1
    assert "no partnership JP-MN" in err
