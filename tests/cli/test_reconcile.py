"""``jcm-sync reconcile`` through ``main(argv)``, on provisioned nodes with real stores."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync import cli
from jcm_sync.cli import main
from jcm_sync.cli import reconcile as reconcile_cli
from jcm_sync.errors import BadDataError
from jcm_sync.local.config import load_config
from jcm_sync.services.log_service import accept_checkpoint, checkpoint_verifiers, record_verifier
from jcm_sync.services.node import open_node
from jcm_sync.services.reconciliation import report_key
from jcm_sync.services.sample import Network, provision
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.store.state import with_store


def test_reconcile_group_is_registered() -> None:
    """`jcm-sync reconcile` is part of the command line."""
    assert reconcile_cli in cli.GROUPS


def seed(tmp_path: Path, fault: bool) -> Network:
    """Provision JP and ID, fill both own logs and replicate them to each other."""
    now = datetime.now(UTC)
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=now)
    ds = builders.build(created=now)
    if fault:
        from tests.core.reconcile.test_scenarios import partner_over_issues

        partner_over_issues(ds)
        ds.replace(ds.logs["ID"][-1], created=now)
    logs = builders.envelopes(ds, net.keys)

    async def fill() -> None:
        nodes = {n: await open_node(load_config(net.configs[n], env={})) for n in ("JP", "ID")}
        try:
            for n, node in nodes.items():
                await node.logs(PID).service.append(logs[n])
            for src, dst in (("JP", "ID"), ("ID", "JP")):
                s, d = nodes[src], nodes[dst]
                cp = await s.store.latest_checkpoint(s.logs(PID).own)
                assert cp is not None
                rep, root = d.logs(PID).replica, d.logs(PID).root
                await d.store.append_entries(rep, 0, logs[src], record_verifier(root, now))
                await accept_checkpoint(d.store, rep, cp.note, checkpoint_verifiers(root, rep, now))
        finally:
            for node in nodes.values():
                await node.close()

    asyncio.run(fill())
    return net


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_on_clean_data_exits_0_even_with_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean partnership: status completed, --exit-code 0, JSON with every stage."""
    net = seed(tmp_path, fault=False)
    code, out, _ = run(capsys, "reconcile", "run", "--config", net.configs["ID"], "--json",
                       "--exit-code")  # fmt: skip
    assert code == 0
    (data,) = json.loads(out)
    assert data["report"]["status"] == "completed"
    assert set(data["report"]) >= {"totals", "blocks", "trails", "article6", "discrepancies"}
    assert data["run"]["open"] == 0


def test_run_reports_stages_and_exit_code_1_on_open_discrepancies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Human output has a table per stage; --exit-code makes open findings exit 1."""
    net = seed(tmp_path, fault=True)
    code, out, _ = run(capsys, "reconcile", "run", "--config", net.configs["JP"], "--exit-code")
    assert code == 1
    headings = ("Stage 1, totals", "Stage 2, serial blocks", "Stage 3, trail", "Article 6.2",
                "TOTALS INCONSISTENT", "issued-vs-notified", "ID-ID002-2015-000010")  # fmt: skip
    for heading in headings:
        assert heading in out, heading
    assert run(capsys, "reconcile", "run", "--config", net.configs["JP"])[0] == 0


def test_status_show_and_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status lists the finding, show gives its records and trail, resolve signs one."""
    net = seed(tmp_path, fault=True)
    cfg = net.configs["ID"]
    code, out, _ = run(capsys, "reconcile", "status", "--config", cfg, "--json")
    assert code == 0
    assert json.loads(out)[0]["last_run"] is None
    code, out, _ = run(capsys, "reconcile", "run", "--config", cfg, "--json")
    did = json.loads(out)[0]["report"]["discrepancies"][0]["id"]
    code, out, _ = run(capsys, "reconcile", "status", "--config", cfg, "--json")
    (status,) = json.loads(out)
    assert status["counts"] == {"open": 1, "explained": 0, "resolved": 0}
    assert status["last_run"]["status"] == "totals_inconsistent"
    code, out, _ = run(capsys, "reconcile", "show", did, "--config", cfg, "--json")
    shown = json.loads(out)
    assert shown["discrepancy"]["rule"] == "issued-vs-notified"
    # the trail of the held serial: the tenth credit, which crossed the notified amount
    trail = shown["trails"][0]
    assert (trail["range"]["first"], trail["range"]["last"]) == (10, 10)
    assert [s["action"] for s in trail["steps"]] == ["issuance"]
    code, out, _ = run(capsys, "reconcile", "show", did, "--config", cfg)
    assert "Serial ranges" in out
    assert "ID-ISS-ID002-2015-3" in out
    code, out, err = run(capsys, "reconcile", "resolve", did, "--config", cfg, "--explain",
                         "a 2016 correction credit", "--json")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["record_id"]) == 64
    code, out, _ = run(capsys, "reconcile", "run", "--config", cfg, "--json")
    (d,) = json.loads(out)[0]["report"]["discrepancies"]
    assert (d["status"], d["explanations"][0]["author"]) == ("open", "ID")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["resolve", "0123456789abcdef", "--explain", "why"], 1, "no discrepancy"),
        (["show", "0123456789abcdef"], 1, "no discrepancy"),
        (["resolve", "0123456789abcdef", "--explain", "x", "--correct", "ab" * 32], 2, ""),
        (["run", "--partnership", "JP-MN"], 1, "no partnership JP-MN"),
    ],
    ids=["resolve-unknown", "show-unknown", "explain-and-correct", "unknown-partnership"],
)
def test_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    """Unknown ids and partnerships fail with a reason; contradictory options are usage errors."""
    net = seed(tmp_path, fault=False)
    got, _, err = run(capsys, "reconcile", *argv, "--config", net.configs["ID"])
    assert got == code
    assert message in err


def test_import_refuses_a_move_of_quarantined_serials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run finds an over-issued serial, `jcm-sync import` refuses a transfer of
    it, with the reason, and appends nothing."""
    from datetime import date

    from jcm_sync.core.records import Account, SerialBlock, TransactionRecord, encode_record

    net = seed(tmp_path, fault=True)
    assert run(capsys, "reconcile", "run", "--config", net.configs["ID"])[0] == 0
    code, out, _ = run(capsys, "reconcile", "status", "--config", net.configs["ID"], "--json")
    opened = [d for p in json.loads(out) for d in p.get("discrepancies", [])]
    assert code in (0, 1)
    prefix = "ID-ID002-2015-"
    move = TransactionRecord(
        partnership=PID, author="ID", created=datetime.now(UTC), registry="ID",
        txn_id="ID-TXN-9999", type="transfer", executed_on=date(2026, 3, 1),
        source=Account("ID-GOV-001", "government_holding"),
        destination=Account("ID-PP-ID002", "participant_holding"), amount=1,
        blocks=(SerialBlock(f"{prefix}000010", f"{prefix}000010", 1, 2015),),
    )  # fmt: skip
    f = tmp_path / "move.jsonl"
    f.write_bytes(encode_record(move) + b"\n")

    def own_size() -> int:
        _, out, _ = run(capsys, "status", "--config", net.configs["ID"], "--json")
        logs = json.loads(out)["partnerships"][0]["logs"]
        return int(next(lg["local_size"] for lg in logs if lg["own"]))

    before = own_size()
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], f)
    assert code == 1, opened
    assert "quarantine" in err
    assert own_size() == before


# --- reports at volume (ADR 0012) --------------------------------------------------------


def seed_many(tmp_path: Path, n: int) -> Network:
    """A partnership where Indonesia issued ``n`` extra credits, each on a serial already
    issued: ``n`` overlapping-blocks findings and one issued-vs-notified."""
    from datetime import date

    from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, SerialBlock
    from tests.core.reconcile.test_scenarios import MP_ID002

    now = datetime.now(UTC)
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=now)
    ds = builders.build(created=now)
    serial = "ID-ID002-2015-000001"
    for i in range(n):
        ds.add("ID", IssuanceRecord(
            partnership=PID, created=now, author="ID", registry="ID",
            issuance_id=f"ID-ISS-X-{i}", decision=DecisionRef("ID002", MP_ID002),
            issued_on=date(2016, 6, 3), amount=1,
            account=Account("ID-GOV-001", "government_holding"),
            blocks=(SerialBlock(serial, serial, 1, 2015),),
        ))  # fmt: skip
    logs = builders.envelopes(ds, net.keys)

    async def fill() -> None:
        nodes = {n: await open_node(load_config(net.configs[n], env={})) for n in ("JP", "ID")}
        try:
            for n, node in nodes.items():
                await node.logs(PID).service.append(logs[n])
            s, d = nodes["JP"], nodes["ID"]
            cp = await s.store.latest_checkpoint(s.logs(PID).own)
            assert cp is not None
            rep, root = d.logs(PID).replica, d.logs(PID).root
            await d.store.append_entries(rep, 0, logs["JP"], record_verifier(root, now))
            await accept_checkpoint(d.store, rep, cp.note, checkpoint_verifiers(root, rep, now))
        finally:
            for node in nodes.values():
                await node.close()

    asyncio.run(fill())
    return net


def test_run_summary_stays_bounded_at_a_thousand_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,001 findings: `run` prints counts per rule, the first --limit findings and the
    report's path, in a bounded number of lines whose numbers match the JSON report;
    `show` of a finding with over a thousand records lists the first ones and the rest's
    count; `status` is bounded too."""
    net = seed_many(tmp_path, 1000)
    cfg = net.configs["ID"]
    code, out, err = run(capsys, "reconcile", "run", "--config", cfg)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) < 120, len(lines)
    hint = next(line for line in lines if line.startswith("full report: "))
    assert "jcm-sync reconcile report --partnership" in hint
    stored = with_store(cfg, lambda store: store.get_state(report_key(PID)))
    assert stored is not None
    report = json.loads(stored)
    found = report["discrepancies"]
    assert len(found) == 1001
    per_rule = {r: sum(d["rule"] == r for d in found) for r in {d["rule"] for d in found}}
    assert per_rule == {"overlapping-blocks": 1000, "issued-vs-notified": 1}
    assert f"Findings: {len(found)} ({len(found)} open, 0 explained, 0 resolved)" in out
    for rule, count in per_rule.items():
        assert any(rule in line and f"│ {count:>4} │" in line for line in lines), (rule, out)
    listed = [
        line.split()[0] for line in lines if line.startswith("  ") and len(line.split()[0]) == 16
    ]
    assert len(listed) == 20
    assert set(listed) <= {d["id"] for d in found}
    assert f"… and {len(found) - 20} more findings" in out

    over = next(d for d in found if d["rule"] == "issued-vs-notified")
    code, out, _ = run(capsys, "reconcile", "show", over["id"], "--config", cfg, "--json")
    full = json.loads(out)["discrepancy"]
    assert len(full["records"]) > 1000
    code, out, _ = run(capsys, "reconcile", "show", over["id"], "--config", cfg)
    assert code == 0
    assert len(out.splitlines()) < 120
    assert f"Records ({len(full['records'])}):" in out
    assert f"… and {len(full['records']) - 20} more records" in out

    code, out, _ = run(capsys, "reconcile", "status", "--config", cfg)
    assert code == 0
    assert len(out.splitlines()) < 60
    assert "… and 981 more discrepancies" in out
    code, out, _ = run(capsys, "reconcile", "status", "--config", cfg, "--limit", "5")
    assert "… and 996 more discrepancies" in out


def test_pending_items_show_their_age_and_deadline() -> None:
    """A pending item judged on a day shows how long it has been awaited and the day it
    becomes a finding; one made without a day (no age) shows neither."""
    from datetime import date

    from jcm_sync.core.reconcile.model import Pending

    dated = Pending(what="issuance", subject="s", summary="x", age_days=12, due=date(2026, 3, 1))
    assert reconcile_cli._age(dated) == " (12 days, a finding from 2026-03-01)"
    one = Pending(what="first_transfer", subject="s", summary="x", age_days=1)
    assert reconcile_cli._age(one) == " (1 day)"
    assert reconcile_cli._age(Pending(what="signature", subject="s", summary="x")) == ""


# --- the Joint Committee report (ADR 0025) -----------------------------------------------


def test_report_writes_xlsx_and_html_of_a_faulty_partnership(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconcile report` writes both files from the node's stored runs; read back, they
    hold every finding of `reconcile status`, with its figures, records and held ranges;
    the HTML is one self-contained file with its chart."""
    from openpyxl import load_workbook

    from tests.services.jc_report_seed import seed as seed_report
    from tests.services.test_jc_report_html import assert_self_contained, parse

    cfg = seed_report(tmp_path).config
    code, out, _ = run(capsys, "reconcile", "status", "--config", cfg, "--json")
    found = {d["id"]: d for d in json.loads(out)[0]["discrepancies"]}
    assert {d["status"] for d in found.values()} == {"open", "explained", "resolved"}

    xlsx, html = tmp_path / "jc.xlsx", tmp_path / "jc.html"
    code, out, err = run(capsys, "reconcile", "report", "--config", cfg, "--format", "xlsx",
                         "--out", xlsx)  # fmt: skip
    assert code == 0, err
    assert f"wrote {xlsx}" in out
    book = load_workbook(xlsx)
    rows = list(book["Findings"].iter_rows(min_row=2, values_only=True))
    assert {r[0]: (r[2], r[3], r[6], r[7]) for r in rows} == {
        i: (d["rule"], d["status"], d.get("expected"), d.get("found")) for i, d in found.items()
    }
    records = {(r[0], r[5]) for r in book["Records"].iter_rows(min_row=2, values_only=True)}
    assert records == {(i, ref["record_id"][:12]) for i, d in found.items() for ref in d["records"]}
    held = sorted(r[:6] for r in book["Held ranges"].iter_rows(min_row=2, values_only=True))
    assert held == sorted(
        (i, d["rule"], g["registry"], f"{g['prefix']}{g['first']:0{g['width']}d}",
         f"{g['prefix']}{g['last']:0{g['width']}d}", g["last"] - g["first"] + 1)
        for i, d in found.items() if d["status"] == "open" for g in d["ranges"]
    )  # fmt: skip
    assert held

    code, out, err = run(capsys, "reconcile", "report", "--config", cfg, "--format", "html",
                         "--out", html, "--json")  # fmt: skip
    assert code == 0, err
    (written,) = json.loads(out)
    assert (written["path"], written["counts"]) == (str(html), {"open": 3, "explained": 1,
                                                                "resolved": 1})  # fmt: skip
    doc = parse(html.read_text(encoding="utf-8"))
    assert_self_contained(doc)
    assert {f"finding-{i}" for i in found} <= doc.ids
    assert "svg" in doc.tags


def test_report_default_names_in_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out FOLDER` writes jc-report-<partnership>.<format> in it."""
    net = seed(tmp_path, fault=True)
    assert run(capsys, "reconcile", "run", "--config", net.configs["JP"])[0] == 0
    code, _, err = run(capsys, "reconcile", "report", "--config", net.configs["JP"],
                       "--format", "html", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert "issued-vs-notified" in (tmp_path / f"jc-report-{PID}.html").read_text("utf-8")


def test_report_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A partnership never reconciled is refused, naming the command to run first;
    `--out FILE` with several partnerships is refused before anything is written."""
    import argparse

    net = seed(tmp_path, fault=False)
    code, _, err = run(capsys, "reconcile", "report", "--config", net.configs["ID"],
                       "--format", "xlsx", "--out", tmp_path / "x.xlsx")  # fmt: skip
    assert code == 1
    assert "never been reconciled" in err
    assert "next step: run `jcm-sync reconcile run" in err
    assert not (tmp_path / "x.xlsx").exists()
    args = argparse.Namespace(out=tmp_path / "x.xlsx", format="xlsx")
    with pytest.raises(BadDataError) as info:
        reconcile_cli._report_paths(args, ["JP-ID", "JP-MN"])
    assert "--partnership" in info.value.diagnostics()
