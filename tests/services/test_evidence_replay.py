"""``services/evidence_replay.py``: every reconciliation run of a bundle is replayed on
its own snapshot and its own report compared, each difference named under its run; the
node keeps each run's report (``[reconcile] keep_runs``) and the export carries them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import msgspec
import pytest

from jcm_sync.local.config import load_config
from jcm_sync.services.evidence import MANIFEST, RUNS, Manifest, run_report_path
from jcm_sync.services.evidence_verify import verify_evidence
from jcm_sync.services.node import open_node
from jcm_sync.services.reconcile_state import run_report_seqs
from jcm_sync.services.reconciliation import ReconcileService, read_history
from tests.services.evidence_pair import PID, Pair, areas, build_pair, export, rehash


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Japan's hub and Mongolia's agent, filled, replicated and reconciled twice."""
    return build_pair(tmp_path_factory.mktemp("replay") / "net")


def _runs(bundle: Path) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = msgspec.json.decode((bundle / RUNS).read_bytes())
    return runs


async def test_each_run_has_its_report_in_the_bundle_and_each_is_compared(
    pair: Pair, tmp_path: Path
) -> None:
    """Rules 3 and 4: both runs name their reports, both are in the bundle as stored and
    both are replayed and compared; the snapshots differ (the halves, then the whole)."""
    bundle = await export(pair, tmp_path / "b")
    runs = _runs(bundle)
    assert [r["report_seq"] for r in runs] == [1, 2]
    reports = [msgspec.json.decode((bundle / run_report_path(n)).read_bytes()) for n in (1, 2)]
    assert [sum(p["size"] for p in r["logs"]) for r in reports] == [
        sum(p["size"] for p in run["logs"])
        for run in runs  # type: ignore[attr-defined]
    ]
    assert reports[0]["logs"] != reports[1]["logs"]
    check = verify_evidence(bundle)
    assert check.differences == []
    assert check.checked["run reports compared"] == 2
    assert check.checked["runs replayed"] == 2


async def test_an_altered_finding_of_the_first_run_is_named_under_that_run(
    pair: Pair, tmp_path: Path
) -> None:
    """Rule 4: the first run's report (not the last one) is changed; the difference is
    reported for run 1 only, with the finding's id."""
    bundle = await export(pair, tmp_path / "b")
    rel = run_report_path(1)
    report = msgspec.json.decode((bundle / rel).read_bytes())
    assert report["discrepancies"], "the first run (the halves) has findings"
    finding = report["discrepancies"][0]
    before = finding["status"]
    finding["status"] = "explained" if before == "open" else "open"
    (bundle / rel).write_bytes(msgspec.json.encode(report))
    rehash(bundle, rel)
    found = areas(bundle)
    assert list(found) == ["reconciliation"]
    started = str(_runs(bundle)[0]["started_at"]).replace("Z", "+00:00")
    assert found["reconciliation"] == [
        f"run 1 ({started}): finding {finding['id']}: status: recorded "
        f"{finding['status']}, replay {before}"
    ]


async def test_a_missing_run_report_and_a_stray_one_are_named(pair: Pair, tmp_path: Path) -> None:
    """Rule 4: a run naming a report the bundle lacks, and a report no run names."""
    bundle = await export(pair, tmp_path / "b")
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    files = dict(manifest.files)
    gone = run_report_path(2)
    (bundle / gone).unlink()
    del files[gone]
    stray = run_report_path(9)
    (bundle / stray).write_bytes((bundle / run_report_path(1)).read_bytes())
    (bundle / MANIFEST).write_bytes(
        msgspec.json.encode(msgspec.structs.replace(manifest, files=files))
    )
    rehash(bundle, stray)
    found = areas(bundle)["reconciliation"]
    assert any(f.startswith("run 2 ") and f"its report ({gone}) is not in the bundle" in f
               for f in found), found  # fmt: skip
    assert f"{stray}: is a run report that no run of runs.json names" in found


async def test_keep_runs_bounds_the_reports_and_the_runs(pair: Pair, tmp_path: Path) -> None:
    """``[reconcile] keep_runs``: with 1, a third run leaves its own report and run record
    only; the export then carries that one run, which verifies."""
    copy = tmp_path / "copy"
    shutil.copytree(pair.net.directory, copy)
    cfg = load_config(copy / "jp" / "config.toml", env={"JCM_SYNC_RECONCILE_KEEP_RUNS": "1"})
    assert cfg.reconcile.keep_runs == 1
    node = await open_node(cfg)
    try:
        await ReconcileService(node).reconcile(PID)
        assert await run_report_seqs(node.store, PID) == [3]
        history = await read_history(node.store, PID)
        assert [r.report_seq for r in history.runs] == [3]
    finally:
        await node.close()
    configs = {n: copy / p.relative_to(pair.net.directory) for n, p in pair.net.configs.items()}
    net = dataclasses.replace(pair.net, directory=copy, configs=configs)
    moved = dataclasses.replace(pair, net=net)
    bundle = await export(moved, tmp_path / "b")
    assert [r["report_seq"] for r in _runs(bundle)] == [3]
    check = verify_evidence(bundle)
    assert check.differences == []
    assert check.checked["run reports compared"] == 1
