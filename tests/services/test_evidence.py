"""Exporting evidence bundles from a real node pair (SQLite stores, provisioned keys and
roots, thousands of records, two reconciliation runs, open discrepancies): what is
written, the snapshot sizes, and the refusals that write nothing."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from jcm_sync.errors import BadDataError, NotFoundError, RollbackError
from jcm_sync.local.config import load_config
from jcm_sync.services.evidence import (
    MANIFEST,
    Manifest,
    entries_path,
    export_evidence,
    parse_sizes,
)
from jcm_sync.services.evidence_verify import verify_evidence
from jcm_sync.services.node import open_node_store
from tests.services.evidence_pair import (
    PID,
    STRAYS,
    Pair,
    build_pair,
    build_pair_async,
    export,
)
from tests.store.conftest import (
    PG_URL,
    drop_schema,
    make_schema,
    pg_reachable,
    skip_without_pg,
    with_param,
)

__all__ = ["pg_reachable"]  # a fixture, used by name


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Japan's hub and Mongolia's agent, filled, replicated and reconciled twice."""
    return build_pair(tmp_path_factory.mktemp("evidence") / "net")


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


@pytest.mark.postgres
async def test_a_hub_on_postgresql_exports_a_bundle_that_verifies(
    tmp_path: Path, pg_reachable: str | None
) -> None:
    """The same pair with Japan's store on PostgreSQL (a schema of its own)."""
    skip_without_pg(pg_reachable)
    schema = await make_schema()
    try:
        url = with_param(PG_URL, "search_path", schema)
        on_pg = await build_pair_async(tmp_path / "net", hub_store=url)
        bundle = await export(on_pg, tmp_path / "b")
    finally:
        await drop_schema(schema)
    check = verify_evidence(bundle)
    assert check.differences == []
    assert check.checked["records"] == sum(on_pg.sizes.values())
    assert check.checked["cosigned checkpoints"] >= 2
    assert check.checked["reports compared"] == 1


async def test_the_snapshot_is_the_newest_agreed_checkpoint_and_the_manifest_says_why(
    tmp_path: Path,
) -> None:
    """Rule 2 under the mutual-cosignature quorum (ADR 0035): Japan's first checkpoint is
    cosigned by Mongolia, its newer one is not, so the bundle is cut at the first (not at
    the newest); Mongolia's log, with no agreed checkpoint, is taken empty. The manifest
    names each cut and the reason; ``--at`` is named as given. Both bundles verify."""
    from jcm_sync.services.node import open_node
    from jcm_sync.services.own_log import append_own
    from jcm_sync.services.sample import partnership_records, provision
    from tests.services.evidence_pair import cosign_all

    net = provision(tmp_path / "net", ["MN"], hub_port=0, cosign=True)
    recs = partnership_records("MN", net.keys, projects=4).by_node["JP"]
    half = len(recs) // 2
    jp = await open_node(load_config(net.configs["JP"], env={}))
    try:
        await append_own(jp, PID, recs[:half])
        await cosign_all(jp, net.keys["MN"])
        agreed = await jp.store.latest_checkpoint(jp.logs(PID).own)
        await append_own(jp, PID, recs[half:])
        newest = await jp.store.latest_checkpoint(jp.logs(PID).own)
    finally:
        await jp.close()
    assert agreed is not None
    assert newest is not None
    assert newest.size == len(recs) > agreed.size == half
    cut = Pair(net, {"JP": half, "MN": 0}, 0)
    bundle = await export(cut, tmp_path / "b")
    manifest = msgspec.json.decode((bundle / MANIFEST).read_bytes(), type=Manifest)
    logs = {i.node: i for i in manifest.logs}
    assert (logs["JP"].size, logs["JP"].cut) == (half, "agreed")
    assert logs["JP"].checkpoint == f"checkpoints/JP/{half:012d}.note"
    assert logs["MN"].checkpoint == ""
    assert "cosigned by 1 of MN" in logs["JP"].reason
    assert (logs["MN"].size, logs["MN"].cut) == (0, "empty")
    assert "no checkpoint agreed" in logs["MN"].reason
    notes = sorted(p.name for p in (bundle / "checkpoints" / "JP").iterdir())
    assert notes == [f"{half:012d}.note"]  # the newer, unagreed one is past the cut
    check = verify_evidence(bundle)
    assert check.differences == []
    # the cosignature that made the cut agreed, dropped: the manifest's reason is refused
    from jcm_sync.core.note import parse_note
    from tests.services.evidence_pair import areas, rehash

    rel = logs["JP"].checkpoint
    parsed = parse_note((bundle / rel).read_bytes())
    kept = [sig for sig in parsed.signatures if "/witness/" not in sig.name]
    assert len(kept) < len(parsed.signatures)
    (bundle / rel).write_bytes(parsed.text + b"\n" + "".join(x.line() for x in kept).encode())
    rehash(bundle, rel)
    assert areas(bundle) == {"checkpoints": [
        f"JP's log: was cut at size {half} as agreed, and the bundle's cosignatures do not "
        "meet the trust root's quorum there"
    ]}  # fmt: skip
    given = await export(cut, tmp_path / "g", at={"JP": len(recs), "MN": 0})
    manifest = msgspec.json.decode((given / MANIFEST).read_bytes(), type=Manifest)
    assert {i.node: (i.size, i.cut) for i in manifest.logs} == {
        "JP": (len(recs), "given"), "MN": (0, "given"),
    }  # fmt: skip
    assert verify_evidence(given).differences == []
