"""The reconciliation service on real nodes (SQLite stores, provisioned keys and roots):
snapshots from the store, history across runs, resolutions, quarantine, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import generate_latest

from jcm_sync.core.envelope import record_id, sign_record
from jcm_sync.core.reconcile import QuarantineError
from jcm_sync.core.records import Account, SerialBlock, TransactionRecord
from jcm_sync.errors import NotFoundError, StoreError
from jcm_sync.local.config import load_config
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.own_log import append_own, resolve
from jcm_sync.services.reconcile_state import run_counter_key, run_report_key
from jcm_sync.services.reconciliation import (
    ReconcileService,
    history_key,
    read_history,
    read_report,
    report_key,
    run_scheduled,
)
from jcm_sync.services.run_history import record_key
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.store import open_store
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.seeded import replicate

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A node clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, hours: int = 1) -> datetime:
        self.now += timedelta(hours=hours)
        return self.now


@dataclass
class Pair:
    net: Network
    jp: Node
    id: Node
    clock: Clock

    async def append(self, node: Node, envelopes: list[bytes]) -> None:
        await append_own(node, PID, envelopes)

    async def replicate(self) -> None:
        """Copy each side's own log to the other's replica, with its signed checkpoint."""
        for src, dst in ((self.jp, self.id), (self.id, self.jp)):
            await replicate(src, dst, self.clock())

    async def seed(self, ds: builders.Dataset) -> dict[str, list[bytes]]:
        logs = builders.envelopes(ds, self.net.keys)
        await self.append(self.jp, logs["JP"])
        await self.append(self.id, logs["ID"])
        await self.replicate()
        return logs

    async def correct_over_issuance(self, logs: dict[str, list[bytes]]) -> None:
        """Indonesia corrects the over-issuance of ``dataset(fault=True)`` (the last record
        of its log, seeded as ``logs``) with a new version of amount 0."""
        rec = builders.Dataset().add("ID", msgspec.structs.replace(
            dataset(fault=True).logs["ID"][-1].record, amount=0, blocks=(),
            supersedes=record_id(logs["ID"][-1])))  # fmt: skip
        assert rec.record is not None
        await self.append(self.id, [sign_record(rec.record, [self.net.keys["ID"]])])


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """Japan's hub and Indonesia's agent, each on its own SQLite file, not yet linked."""
    clock = Clock()
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=T0 - timedelta(hours=1))
    nodes = []
    for name in ("JP", "ID"):
        store = await open_store(f"sqlite:///{tmp_path}/{name.lower()}.db")
        nodes.append(await open_node(load_config(net.configs[name], env={}), clock=clock,
                                     store=store))  # fmt: skip
    yield Pair(net, nodes[0], nodes[1], clock)
    for n in nodes:
        await n.close()


def dataset(fault: bool = False) -> builders.Dataset:
    ds = builders.build(created=T0)
    if fault:
        from tests.core.reconcile.test_scenarios import partner_over_issues

        partner_over_issues(ds)
        for item in ds.logs["ID"][-1:]:
            assert item.record is not None
            item.record = msgspec.structs.replace(item.record, created=T0)
    return ds


def transfer(first: int, last: int, *, type_: str = "transfer", prefix: str = "ID-ID002-2015-"
             ) -> TransactionRecord:  # fmt: skip
    dest = {"transfer": Account("ID-PP-ID002", "participant_holding"),
            "cancellation": Account("ID-CAN-001", "cancellation")}[type_]  # fmt: skip
    n = last - first + 1
    return TransactionRecord(
        partnership=PID, author="ID", created=T0, registry="ID", txn_id=f"ID-TXN-9{first:03d}",
        type=type_, executed_on=date(2026, 3, 1),  # type: ignore[arg-type]
        source=Account("ID-GOV-001", "government_holding"), destination=dest, amount=n,
        blocks=(SerialBlock(f"{prefix}{first:06d}", f"{prefix}{last:06d}", n,
                            int(prefix.split("-")[2])),),
    )  # fmt: skip


async def test_clean_sample_partnership_completes_with_the_same_report_on_both_sides(
    pair: Pair,
) -> None:
    """``sample.partnership_records`` reconciles on both nodes, to one identical report."""
    recs = partnership_records("ID", pair.net.keys, created=T0)
    await pair.append(pair.jp, recs.by_node["JP"])
    await pair.append(pair.id, recs.by_node["ID"])
    await pair.replicate()
    on_id = await ReconcileService(pair.id).reconcile(PID)
    on_jp = await ReconcileService(pair.jp).reconcile(PID)
    assert on_id.report.status == "completed"
    assert on_id.report.discrepancies == ()
    assert on_id.report == on_jp.report
    assert on_id.report.totals.sides_compared == 12
    assert await pair.id.store.state_keys("reconcile/") == sorted(
        [
            history_key(PID),
            report_key(PID),
            run_report_key(PID, 1),
            run_counter_key(PID),
            record_key(PID, 1),
        ]
    )
    assert await pair.id.store.get_state(run_report_key(PID, 1)) == await pair.id.store.get_state(
        report_key(PID)
    )
    assert await read_report(pair.id.store, PID) == on_id.report
    assert not (pair.id.cfg.data_dir / "reconcile").exists()  # nothing beside the store


async def test_first_seen_persists_and_a_fixed_discrepancy_resolves(pair: Pair) -> None:
    """open at t1, still open (same first seen) at t2, resolved at t3 once superseded."""
    logs = await pair.seed(dataset(fault=True))
    service = ReconcileService(pair.id)
    t1 = pair.clock.tick()
    first = await service.reconcile(PID)
    (d,) = first.report.discrepancies
    assert (d.rule, first.run.status, first.run.new) == (
        "issued-vs-notified",
        "totals_inconsistent",
        1,
    )
    t2 = pair.clock.tick()
    again = await service.reconcile(PID)
    assert again.run.incremental
    assert again.run.new == 0
    h = await read_history(pair.id.store, PID)
    assert (h.discrepancies[d.id].first_seen, h.discrepancies[d.id].last_seen) == (t1, t2)
    await pair.correct_over_issuance(logs)
    t3 = pair.clock.tick()
    fixed = await service.reconcile(PID)
    assert fixed.report.discrepancies == ()
    assert (fixed.run.status, fixed.run.resolved, fixed.run.incremental) == ("completed", 1, True)
    h = await read_history(pair.id.store, PID)
    assert (h.discrepancies[d.id].status, h.discrepancies[d.id].resolved_at) == ("resolved", t3)
    assert h.discrepancies[d.id].first_seen == t1
    assert [r.status for r in h.runs] == ["totals_inconsistent", "totals_inconsistent", "completed"]
    sample = pair.id.metrics.registry.get_sample_value
    assert sample("jcm_sync_discrepancies_open", {"partnership": PID,
                                                  "rule": "issued-vs-notified"}) == 0  # fmt: skip
    assert sample("jcm_sync_reconcile_runs_total", {"partnership": PID, "status": "completed"}) == 1
    runs = sample("jcm_sync_reconcile_runs_total",
                  {"partnership": PID, "status": "totals_inconsistent"})  # fmt: skip
    assert runs == 2
    last = sample("jcm_sync_reconcile_last_run_timestamp_seconds", {"partnership": PID})
    assert last == t3.timestamp()
    assert b"jcm_sync_discrepancies_open" in generate_latest(pair.id.metrics.registry)


async def test_both_sides_must_explain_for_a_discrepancy_to_be_explained(pair: Pair) -> None:
    """Each side finds the same id; Indonesia's explanation alone leaves it open."""
    await pair.seed(dataset(fault=True))
    on_id, on_jp = ReconcileService(pair.id), ReconcileService(pair.jp)
    (d,) = (await on_id.reconcile(PID)).report.discrepancies
    (same,) = (await on_jp.reconcile(PID)).report.discrepancies
    assert same.id == d.id
    await resolve(pair.id, d.id, explanation="one credit issued for a 2016 correction")
    pair.clock.tick()
    assert (await on_id.reconcile(PID)).report.discrepancies[0].status == "open"
    await pair.replicate()
    await resolve(pair.jp, d.id, explanation="agreed at the 12th JC meeting")
    await pair.replicate()
    result = await on_id.reconcile(PID)
    (explained,) = result.report.discrepancies
    assert explained.status == "explained"
    assert [e.author for e in explained.explanations] == ["ID", "JP"]
    assert result.report.status == "completed_with_manual_intervention"
    assert (await read_history(pair.id.store, PID)).discrepancies[d.id].status == "explained"
    # a second resolution by one side supersedes its first
    await resolve(pair.id, d.id, explanation="one credit issued for a 2016 correction (JC 12)")
    (again,) = (await on_id.reconcile(PID)).report.discrepancies
    assert next(e.explanation for e in again.explanations).endswith("(JC 12)")


async def test_resolve_refuses_unknown_discrepancies_and_corrections(pair: Pair) -> None:
    """A resolution names a discrepancy the history holds and corrections the store holds."""
    await pair.seed(dataset(fault=True))
    service = ReconcileService(pair.id)
    (d,) = (await service.reconcile(PID)).report.discrepancies
    with pytest.raises(NotFoundError, match="no discrepancy"):
        await resolve(pair.id, "0123456789abcdef", explanation="?")
    with pytest.raises(NotFoundError):
        await resolve(pair.id, d.id, corrections=["cd" * 32])


async def test_quarantine_holds_only_the_affected_serials(pair: Pair) -> None:
    """Moving the over-issued serial is refused; the 9 issued within the notified amount,
    other serials and cancellations pass."""
    await pair.seed(dataset(fault=True))
    service = ReconcileService(pair.id)
    await service.reconcile(PID)
    key = pair.net.keys["ID"]
    with pytest.raises(QuarantineError, match=r"ID-ID002-2015-000010 \(1\)"):
        await append_own(pair.id, PID, [sign_record(transfer(10, 10), [key])])
    await append_own(pair.id, PID, [sign_record(transfer(3, 4), [key])])
    await append_own(pair.id, PID, [sign_record(transfer(20, 21, prefix="ID-ID001-2016-"), [key])])
    await append_own(pair.id, PID, [sign_record(transfer(10, 10, type_="cancellation"), [key])])


async def test_incremental_state_matches_a_full_rebuild(pair: Pair) -> None:
    """After appends, the incremental run's report equals a run from scratch."""
    await pair.seed(dataset())
    service = ReconcileService(pair.id)
    await service.reconcile(PID)
    key = pair.net.keys["ID"]
    await append_own(pair.id, PID, [sign_record(transfer(30, 31, prefix="ID-ID001-2016-"), [key])])
    await append_own(pair.id, PID, [sign_record(transfer(56, 57, prefix="ID-ID001-2016-"), [key])])
    incremental = await service.reconcile(PID)
    assert incremental.run.incremental
    assert [d.rule for d in incremental.report.discrepancies] == ["transaction-not-held"]
    pair.id.reconcile.forget(PID)
    full = await service.reconcile(PID)
    assert not full.run.incremental
    assert full.report == incremental.report


async def test_a_checkpoint_that_does_not_extend_the_folded_one_rebuilds(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the held state's root is not the store's at that size, the run starts over."""
    await pair.seed(dataset())
    service = ReconcileService(pair.id)
    before = await service.reconcile(PID)

    async def other_root(*args: object, **kw: object) -> bytes:
        return b"\x00" * 32  # the stored tree at the folded size is not what was folded

    monkeypatch.setattr(pair.id.store, "root_at", other_root)
    after = await service.reconcile(PID)
    assert not after.run.incremental
    assert after.report == before.report


async def test_a_failed_run_stays_initiated(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that cannot read its snapshot is recorded as initiated, with the error."""
    await pair.seed(dataset())

    async def broken(*args: object, **kw: object) -> None:
        raise StoreError("disk on fire")

    monkeypatch.setattr(pair.id.store, "entries", broken)
    with pytest.raises(StoreError):
        await run_scheduled(pair.id, PID)
    run = (await read_history(pair.id.store, PID)).runs[-1]
    assert (run.status, run.error) == ("initiated", "disk on fire")
    sample = pair.id.metrics.registry.get_sample_value
    assert sample("jcm_sync_reconcile_runs_total", {"partnership": PID, "status": "initiated"}) == 1
    monkeypatch.undo()
    await run_scheduled(pair.id, PID)
    assert (await read_history(pair.id.store, PID)).runs[-1].status == "completed"


async def test_the_configured_grace_periods_judge_the_run(pair: Pair) -> None:
    """Without Indonesia's first transfer of ID002's 31 ITMOs (Japan issued them on
    2016-05-27), a run in 2026 finds the first-transfer mirror and Japan's acquisition
    and use beyond it; a node whose ``[reconcile.grace]`` allows 4,000 days for the mirror
    still awaits it (due 2027-05-10), and the other rules keep their default."""
    from jcm_sync.local.config import ReconcileSection

    ds = dataset()
    ds.remove(lambda i: getattr(i.record, "action_id", None) == "ID-FT-0001")
    await pair.seed(ds)
    report = (await ReconcileService(pair.id).reconcile(PID)).report
    assert [d.rule for d in report.discrepancies] == [
        "a6-first-transfer-mirror", "a6-no-first-transfer", "a6-no-first-transfer"]  # fmt: skip
    pair.jp.cfg = msgspec.structs.replace(
        pair.jp.cfg, reconcile=ReconcileSection(grace={"a6-first-transfer-mirror": 4000})
    )
    report = (await ReconcileService(pair.jp).reconcile(PID)).report
    assert [d.rule for d in report.discrepancies] == ["a6-no-first-transfer"] * 2
    due = date(2016, 5, 27) + timedelta(days=4000)
    assert [(p.what, p.due) for p in report.pending] == [("first_transfer", due)]
