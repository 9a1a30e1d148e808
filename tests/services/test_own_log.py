"""Importing a partnership in pieces while reconciliation runs (ADR 0011), on a real node:
Indonesia's agent with its SQLite store, through ``jcm-sync import`` and
``jcm-sync reconcile run`` (``main(argv)``), and through ``own_log.append_own``.

The testers' scenario: file 1 holds ID002's decision and part of Indonesia's issuance; a
reconciliation runs and opens ``issued-vs-notified`` (the decision dates from 2016, long
past any grace period), which holds no serial: each credit issued was notified
(``rules_totals``, "Holding"). File 2 holds the rest of the issuance and a transfer of those
serials: accepted. Issuances imported without their decision (``untraceable-issuance``)
hold all their serials: a batch carrying the decision settles that finding and is
accepted; a batch that does not is refused, whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.core.envelope import open_envelope, sign_record
from jcm_sync.core.reconcile import QuarantineError, discrepancy_id
from jcm_sync.core.records import (
    Account,
    SerialBlock,
    TransactionRecord,
)
from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node
from jcm_sync.services.own_log import append_own, verify_documents
from jcm_sync.services.reconciliation import (
    ReconcileService,
    read_history,
    read_report,
)
from jcm_sync.services.sample import Network, partnership_records, provision
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.store.state import with_store

DK = "ID002/2015-04-01/2015-12-31"
FEWER = discrepancy_id("issued-vs-notified", [DK, "ID"])
UNTRACEABLE = discrepancy_id("untraceable-issuance", [DK, "ID"])


class Piece:
    """Indonesia's ID002 records, signed: project, decision (co-signed by Japan), the
    government issuance (serials 1..5) and the participant's (6..9)."""

    def __init__(self, net: Network, now: datetime, decided: date | None = None) -> None:
        self.now, self.key = now, net.keys["ID"]
        # a transfer follows the issuance (a day after it, when the decision is recent)
        self.moved_on = date(2016, 6, 30) if decided is None else decided + timedelta(days=8)
        ds = builders.build(builders.CLEAN_SPECS[:1], created=now, article6=False)
        ds.remove(lambda i: i.record is not None and i.record.kind == "transaction")
        if decided is not None:  # and issued a week later, as the JC's decisions are
            ds.replace(ds.find("issuance_decision", project_id="ID002"), decided_on=decided)
            for item in ds.logs["ID"]:
                if item.record is not None and item.record.kind == "issuance":
                    ds.replace(item, issued_on=decided + timedelta(days=7))
        signed = builders.envelopes(ds, net.keys)["ID"]
        kinds = [i.record.kind if i.record else "" for i in ds.logs["ID"]]
        assert kinds == ["project", "issuance_decision", "issuance", "issuance"]
        self.project, self.decision, self.gov, self.pp = signed

    def transfer(self, first: int, last: int, n: int = 1) -> bytes:
        """Indonesia's government moves serials ``first..last`` to the participant."""
        q = last - first + 1
        return sign_record(TransactionRecord(
            partnership=PID, author="ID", created=self.now, registry="ID",
            txn_id=f"ID-TXN-{n:04d}", type="transfer", executed_on=self.moved_on,
            source=Account("ID-GOV-001", "government_holding"),
            destination=Account("ID-PP-ID002", "participant_holding"), amount=q,
            blocks=(SerialBlock(f"ID-ID002-2015-{first:06d}", f"ID-ID002-2015-{last:06d}", q,
                                2015),),
        ), [self.key])  # fmt: skip


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return provision(tmp_path / "net", ["ID"], hub_port=0, now=datetime.now(UTC))


@pytest.fixture
def piece(net: Network) -> Piece:
    return Piece(net, datetime.now(UTC))


class Cli:
    """``jcm-sync`` on Indonesia's node, in this process."""

    def __init__(self, net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        self.config, self.tmp, self.capsys = net.configs["ID"], tmp_path, capsys
        self.files = 0

    def __call__(self, *argv: object) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def import_(self, *envelopes: bytes) -> tuple[int, str]:
        self.files += 1
        f = self.tmp / f"piece-{self.files}.jsonl"
        f.write_bytes(b"\n".join(envelopes) + b"\n")
        code, _, err = self("import", "--config", self.config, f)
        return code, err

    def reconcile(self) -> dict[str, str]:
        """Run reconciliation; return the open discrepancies' rules by id."""
        code, _, err = self("reconcile", "run", "--config", self.config)
        assert code == 0, err
        history = with_store(self.config, lambda store: read_history(store, PID))
        return {d.id: d.rule for d in history.open()}

    def own_size(self) -> int:
        code, out, err = self("status", "--config", self.config, "--json")
        assert code in (0, 3), err  # 3: discrepancies are open, which these tests make
        logs = json.loads(out)["partnerships"][0]["logs"]
        return int(next(lg["local_size"] for lg in logs if lg["own"]))


@pytest.fixture
def cli(net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(net, tmp_path, capsys)


def test_the_rest_of_an_issuance_and_a_transfer_of_its_serials_are_accepted(
    cli: Cli, piece: Piece
) -> None:
    """File 1: decision + 5 of 9 credits; the run finds 4 fewer and holds none of the 5
    (each was notified). File 2: the other 4 and a transfer of 3..4: accepted, and the
    next run finds nothing on Indonesia's side."""
    assert cli.import_(piece.project, piece.decision, piece.gov) == (0, "")
    assert cli.reconcile() == {FEWER: "issued-vs-notified"}
    history = with_store(cli.config, lambda store: read_history(store, PID))
    assert history.discrepancies[FEWER].ranges == ()
    before = cli.own_size()
    code, err = cli.import_(piece.pp, piece.transfer(3, 4))
    assert (code, err) == (0, "")
    assert cli.own_size() == before + 2
    assert cli.reconcile() == {}


def test_a_recent_partial_issuance_is_pending_with_its_age_on_a_real_node(
    cli: Cli, net: Network
) -> None:
    """Decided 10 days ago, 5 of 9 issued: ``jcm-sync reconcile run`` opens nothing and
    reports the side pending for 10 days, due 90 days after the decision."""
    today = datetime.now(UTC).date()
    piece = Piece(net, datetime.now(UTC), decided=today - timedelta(days=10))
    assert cli.import_(piece.project, piece.decision, piece.gov) == (0, "")
    assert cli.reconcile() == {}
    report = with_store(cli.config, lambda store: read_report(store, PID))
    assert report is not None
    (p,) = [p for p in report.pending if p.subject.endswith("side ID")]
    decided = today - timedelta(days=10)
    assert (p.what, p.since, p.age_days, p.due) == (
        "issuance", decided, 10, decided + timedelta(days=90))  # fmt: skip
    code, out, _ = cli("reconcile", "run", "--config", cli.config, "--json", "--exit-code")
    assert code == 0
    pending = json.loads(out)[0]["report"]["pending"]
    (shown,) = [p for p in pending if p["subject"].endswith("side ID")]
    assert shown["age_days"] == 10
    assert "5 of the 9 credits" in shown["summary"]
    assert "pending for 10 days" in shown["summary"]
    assert cli.import_(piece.pp, piece.transfer(3, 4)) == (0, "")
    assert cli.reconcile() == {}


def test_a_missing_decision_and_a_transfer_of_its_serials_are_accepted(
    cli: Cli, piece: Piece
) -> None:
    """File 1: the issuances without their decision (``untraceable-issuance`` holds 1..9);
    file 2: the co-signed decision and a transfer of 3..4: accepted."""
    assert cli.import_(piece.project, piece.gov, piece.pp) == (0, "")
    assert cli.reconcile() == {UNTRACEABLE: "untraceable-issuance"}
    assert cli.import_(piece.decision, piece.transfer(3, 4)) == (0, "")
    assert cli.reconcile() == {}


def test_a_batch_that_does_not_settle_the_finding_is_refused_whole(cli: Cli, piece: Piece) -> None:
    """Issuances without their decision hold their serials: transfers of them in a batch
    without the decision are refused with the finding's id; nothing of it is stored."""
    assert cli.import_(piece.project, piece.gov, piece.pp) == (0, "")
    assert cli.reconcile() == {UNTRACEABLE: "untraceable-issuance"}
    before = cli.own_size()
    code, err = cli.import_(piece.transfer(3, 4), piece.transfer(8, 8, n=2))
    assert code == 1
    # one line, then at most the operator's next step (errors.JcmSyncError.next_step)
    first, *rest = err.splitlines()
    assert rest == [] or (len(rest) == 1 and rest[0].lstrip().startswith("next step:")), err
    assert "ID-TXN-0001 moves ID:ID-ID002-2015-000003..ID-ID002-2015-000004 (2)" in first
    assert (
        f"quarantined by open discrepancy {UNTRACEABLE}, which this import does not settle" in first
    )
    assert cli.own_size() == before
    # the same transfer, beside the decision that settles the finding, passes
    assert cli.import_(piece.decision, piece.transfer(3, 4)) == (0, "")


def test_log_append_on_the_own_log_refuses_a_quarantined_move(cli: Cli, piece: Piece) -> None:
    """``jcm-sync log append --config`` writes the node's own log through the same path as
    ``import``: a transfer of held serials exits 1 naming the finding; nothing is stored."""
    assert cli.import_(piece.project, piece.gov, piece.pp) == (0, "")
    assert cli.reconcile() == {UNTRACEABLE: "untraceable-issuance"}
    before = cli.own_size()
    move = cli.tmp / "move.dsse.json"
    move.write_bytes(piece.transfer(3, 4))
    code, out, err = cli("log", "append", "--config", cli.config, move)
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    assert "ID-TXN-0001 moves ID:ID-ID002-2015-000003..ID-ID002-2015-000004 (2)" in err
    assert (
        f"quarantined by open discrepancy {UNTRACEABLE}, which this import does not settle" in err
    )
    assert cli.own_size() == before
    # once the decision is held, the same envelope is appended
    assert cli.import_(piece.decision) == (0, "")
    code, out, err = cli("log", "append", "--config", cli.config, move, "--json")
    assert code == 0, err
    assert json.loads(out)["appended"] == 1
    assert cli.own_size() == before + 2


async def test_the_service_append_judges_with_the_batch_and_the_grace(
    net: Network, piece: Piece
) -> None:
    """``append_own`` (the one write path) uses the same check, with the batch: issuances
    without their decision hold their serials unless the batch brings the decision; a
    partly made issuance holds nothing, within the grace period of the decision or
    after it (each credit issued was notified)."""
    node = await open_node(load_config(net.configs["ID"], env={}))
    try:
        service = ReconcileService(node)
        await append_own(node, PID, [piece.project, piece.gov])
        assert [d.id for d in (await service.reconcile(PID)).history.open()] == [UNTRACEABLE]
        move = verify_documents(node, PID, [piece.transfer(3, 4)])
        with pytest.raises(QuarantineError, match=UNTRACEABLE):
            await service.check(PID, move)
        size = (await node.store.tree_head(node.logs(PID).own)).size
        with pytest.raises(QuarantineError, match="does not settle"):
            await append_own(node, PID, [piece.transfer(3, 4)])
        assert (await node.store.tree_head(node.logs(PID).own)).size == size
        result = await append_own(node, PID, [piece.decision, piece.transfer(3, 4)])
        assert (result.appended, result.size) == (2, size + 2)
        assert [d.id for d in (await service.reconcile(PID)).history.open()] == [FEWER]
        again = verify_documents(node, PID, [piece.transfer(1, 2, n=2)])
        within = datetime(2016, 6, 20, tzinfo=UTC)  # 31 days after the decision
        await service.check(PID, again, now=within)
        await service.check(PID, again, now=within + timedelta(days=90))
    finally:
        await node.close()


async def test_the_check_of_a_large_import_is_linear(net: Network, piece: Piece) -> None:
    """A partnership's worth of records (about 10,000) with a held transfer among them: the
    check (fold the store and the batch, judge) costs less than the append that verifies
    and stores the same batch, measured in the same run."""
    node = await open_node(load_config(net.configs["ID"], env={}))
    try:
        service = ReconcileService(node)
        await append_own(node, PID, [piece.project, piece.gov])
        assert [d.id for d in (await service.reconcile(PID)).history.open()] == [UNTRACEABLE]
        bulk = await asyncio.to_thread(
            partnership_records, "ID", net.keys, projects=800, periods=3, created=piece.now
        )
        # the sample's own ID002 would be another version of the piece's records
        others = [e for e in bulk.by_node["ID"] if b"ID002" not in open_envelope(e).payload]
        batch = [*others, piece.decision, piece.pp, piece.transfer(3, 4)]
        assert len(batch) >= 10_000
        verified = await asyncio.to_thread(verify_documents, node, PID, batch)
        t0 = time.perf_counter()
        await service.check(PID, verified)
        check_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = await node.logs(PID).service.append(batch)
        append_s = time.perf_counter() - t0
        assert result.appended == len(batch)
        print(f"check of {len(batch)} records: {check_s:.2f} s; append: {append_s:.2f} s")
        assert check_s < append_s, (check_s, append_s)
    finally:
        await node.close()
