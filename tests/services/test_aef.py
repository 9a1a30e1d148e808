"""The AEF from a node's store (``services.aef``), and the golden AEF of the demo.

Two nodes on SQLite (Japan's hub and Indonesia's agent) hold the sample JP-ID
partnership with its Article 6.2 part in both logs; each writes its Party's AEF, every
file is read back with openpyxl, and every row is checked against the signed records its
trace names, fetched from the store. The golden test pins the AEF of the demo's JP-ID
partnership (``DEMO_SCALE``), record ids included (fixed keys sign deterministically):
set ``JCM_SYNC_UPDATE_GOLDEN=1`` to rewrite it after an intended change, and read the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from jcm_sync.core.envelope import open_envelope
from jcm_sync.core.records import AuthorizationRecord, ItmoActionRecord, decode_record, serial_parts
from jcm_sync.errors import NotFoundError
from jcm_sync.local.config import load_config
from jcm_sync.services.aef import aef_report, build_report, write_aef
from jcm_sync.services.aef_rows import T2, T3, T4, TABLES, AefReport
from jcm_sync.services.aef_write import sheet_name
from jcm_sync.services.log_service import accept_checkpoint, checkpoint_verifiers, record_verifier
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import partnership_records, provision
from jcm_sync.store import open_store
from tests.services import aef_data as data

PID = "JP-ID"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "aef-demo-jp-id.json"
GOLDEN_YEARS = (2016, 2017)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """Japan's hub and Indonesia's agent, each holding both logs of the sample."""
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=T0 - timedelta(hours=1))
    out: dict[str, Node] = {}
    for name in ("JP", "ID"):
        store = await open_store(f"sqlite:///{tmp_path}/{name.lower()}.db")
        cfg = load_config(net.configs[name], env={})
        out[name] = await open_node(cfg, clock=lambda: T0, store=store)
    recs = partnership_records("ID", net.keys, projects=3, periods=2, created=T0, article6=True)
    for name, node in out.items():
        await append_own(node, PID, recs.by_node[name])
    for src, dst in (("JP", "ID"), ("ID", "JP")):
        own, rep = out[src].logs(PID).own, out[dst].logs(PID).replica
        cp = await out[src].store.latest_checkpoint(own)
        assert cp is not None
        entries = await out[src].store.entries(own, 0, cp.size)
        root = out[dst].logs(PID).root
        await out[dst].store.append_entries(rep, 0, [e.envelope for e in entries],
                                            record_verifier(root, T0))  # fmt: skip
        await accept_checkpoint(out[dst].store, rep, cp.note, checkpoint_verifiers(root, rep, T0))
    yield out
    for node in out.values():
        await node.close()


async def stored(node: Node, record_id: str) -> Any:
    return decode_record(open_envelope(await node.store.envelope(record_id)).payload)


def cell(value: object) -> object:
    return value.date() if isinstance(value, datetime) else value


@pytest.mark.parametrize("party", ["ID", "JP"])
async def test_each_node_writes_its_partys_aef_and_every_row_matches_its_records(
    nodes: dict[str, Node], tmp_path: Path, party: str
) -> None:
    node = nodes[party]
    for year in range(2016, 2024):
        r = await aef_report(node, data.options(year))
        assert r.failures == [], (year, r.failures)
        out = tmp_path / f"{party}-{year}"
        out.mkdir()
        (xlsx, *csvs) = write_aef(r, out, ["xlsx", "csv"])
        assert len(csvs) == len(TABLES) + 2
        wb = load_workbook(xlsx)
        trace: dict[tuple[str, int], list[str]] = {}
        for t, n, rid, *_ in wb["Trace"].iter_rows(min_row=2, values_only=True):
            trace.setdefault((str(t), int(n)), []).append(str(rid))  # type: ignore[arg-type]
        header = [c.value for c in wb[sheet_name(T3)][1]]
        for n, values in enumerate(wb[sheet_name(T3)].iter_rows(min_row=2, values_only=True), 1):
            row = dict(zip(header, (cell(v) for v in values), strict=True))
            recs = [await stored(node, rid) for rid in trace[(T3, n)]]
            act = recs[-1]
            assert isinstance(act, ItmoActionRecord)
            (block,) = [b for b in act.blocks if serial_parts(b.start)[1] == row["First ID"]]
            assert row["Last ID"] == serial_parts(block.end)[1]
            assert row["Quantity (t CO2 eq)"] == block.quantity
            assert row["Vintage"] == block.vintage
            assert row["Action date"] == f"{act.occurred_on}T00:00:00.000Z"
            assert row["Authorization ID"] == act.authorization_id
            if row["Action type"] == "Authorization":
                assert isinstance(recs[0], AuthorizationRecord)
                assert recs[0].party == party
            else:
                assert act.party == party
        header = [c.value for c in wb[sheet_name(T2)][1]]
        for n, values in enumerate(wb[sheet_name(T2)].iter_rows(min_row=2, values_only=True), 1):
            row = dict(zip(header, (cell(v) for v in values), strict=True))
            (auth,) = [await stored(node, rid) for rid in trace[(T2, n)]]
            assert row["Date of authorization"] == auth.authorized_on
            assert row["Authorized quantity"] == auth.cap
        held = sum(c for (c,) in wb[sheet_name(T4)].iter_rows(min_row=2, min_col=13, max_col=13,
                                                               values_only=True))  # fmt: skip
        assert held == sum(r.get(T4, "Quantity (t CO2 eq)") for r in r.tables[T4])


async def test_both_nodes_build_the_report_from_the_same_records(nodes: dict[str, Node]) -> None:
    """Each node reads both logs, so Japan's report is the same computed on either node
    (the store's order of partnerships and logs does not matter)."""
    for year in (2017, 2019):
        on_jp = await aef_report(nodes["JP"], data.options(year))
        held = data.held({n: [e.envelope for e in await nodes[n].store.entries(
            nodes[n].logs(PID).own)] for n in ("ID", "JP")})  # fmt: skip
        direct = build_report(data.nomenclature(), data.options(year), "JP", held)
        assert [[r.values for r in on_jp.tables[t]] for t in TABLES] == [
            [r.values for r in direct.tables[t]] for t in TABLES
        ]


async def test_an_unknown_partnership_is_refused(nodes: dict[str, Node]) -> None:
    with pytest.raises(NotFoundError, match="no partnership JP-MN"):
        await aef_report(nodes["ID"], data.options(2017), ["JP-MN"])


# --- the golden AEF of the demo's JP-ID partnership ------------------------------------------


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def golden_of(reports: list[AefReport]) -> dict[str, Any]:
    return {
        f"{r.party} {r.year}": {
            "tables": {t: [[_plain(v) for v in row.values] for row in r.tables[t]] for t in TABLES},
            "trace": {
                t: [[h.record_id for h in row.sources] for row in r.tables[t]] for t in (T2, T3, T4)
            },
            "problems": [[p.severity, p.check, p.table, p.row, p.detail] for p in r.problems],
        }
        for r in reports
    }


def test_the_aef_of_the_demo_partnership_is_the_golden_one() -> None:
    held = data.held(data.demo_envelopes())
    reports = [
        build_report(data.nomenclature(), data.options(year), party, held)
        for party in ("ID", "JP")
        for year in GOLDEN_YEARS
    ]
    got = golden_of(reports)
    if os.environ.get("JCM_SYNC_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got == want
    assert all(not r.failures for r in reports)
    assert sum(len(r.tables[T3]) for r in reports) > 100  # the golden file pins real rows
