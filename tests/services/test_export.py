"""Export of both logs of the Japan-Indonesia partnership (``services.export``): every
file read back (openpyxl, csv, JSON) and checked against the signed records it came
from, as of the latest checkpoints and as of earlier ones; properties: what is
exported reads back as the same records, and imports into an empty node as them."""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from jcm_sync.core import tabular
from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import KINDS, Record, decode_record, encode_record, to_builtins
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.local.config import load_config
from jcm_sync.local.export_files import CsvSink, JsonlSink, Sink, XlsxSink
from jcm_sync.services import export as ex
from jcm_sync.services.node import open_node
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import Network, provision
from jcm_sync.services.stored_records import endorse
from jcm_sync.store import open_store
from tests import strategies
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.seeded import Seeded, seed


@pytest.fixture
async def seeded(tmp_path: Path) -> Seeded:
    return await seed(tmp_path / "net")


@dataclass(frozen=True)
class Expected:
    record_id: str
    log: str
    index: int
    signers: list[str]
    record: Record


def expected(seeded: Seeded, sizes: dict[str, int] | None = None) -> list[Expected]:
    """What an export must hold: each log's records in order, Japan's log first."""
    by_key = {k.key_id: node for node, k in seeded.net.keys.items()}
    out = []
    for node in ("JP", "ID"):
        envs = seeded.logs[node][: (sizes or {}).get(node)]
        for i, env in enumerate(envs):
            opened = open_envelope(env)
            signers = sorted(by_key[s.keyid] for s in opened.signatures)
            out.append(Expected(record_id(env), node, i, signers, decode_record(opened.payload)))
    return out


def read_xlsx(path: Path) -> dict[str, list[dict[str, Any]]]:
    book = load_workbook(path, read_only=True)
    out = {}
    for ws in book.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        header = [str(h) for h in rows[0]]
        out[ws.title] = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    book.close()
    return out


def read_csv_dir(path: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for f in sorted(path.glob("*.csv")):
        with open(f, encoding="utf-8-sig", newline="") as fh:
            out[f.stem] = [{k: v or None for k, v in row.items()} for row in csv.DictReader(fh)]
    return out


def check_sheets(sheets: dict[str, list[dict[str, Any]]], want: list[Expected],
                 kinds: tuple[str, ...] = KINDS) -> None:  # fmt: skip
    """Every sheet of the kinds asked for, and each row's values those of its record."""
    assert list(sheets) == list(kinds) or sorted(sheets) == sorted(kinds)
    for kind in kinds:
        rows = sheets[kind]
        exp = [e for e in want if e.record.kind == kind]
        assert len(rows) == len(exp), kind
        for row, e in zip(rows, exp, strict=True):
            assert row["record_id"] == e.record_id
            assert row["log"] == e.log
            assert int(row["log_index"]) == e.index
            assert row["signers"] == "; ".join(e.signers)
            fields = {k: v for k, v in row.items() if k not in tabular.EXPORT_COLUMNS}
            assert list(fields) == tabular.headers(kind)
            # the cells are the record's tabular cells, and read back as the record
            want_cells = tabular.record_to_row(e.record)
            # (an empty text and an empty cell are one thing in a spreadsheet)
            assert {k: None if v in (None, "") else str(v) for k, v in fields.items()} == {
                k: None if v in (None, "") else str(v) for k, v in want_cells.items()
            }
            assert tabular.row_to_record(kind, fields) == e.record


def sink_for(fmt: str, target: Path, **kw: Any) -> Sink:
    return {"xlsx": XlsxSink, "csv": CsvSink, "jsonl": JsonlSink}[fmt](target, **kw)  # type: ignore[no-any-return]


def read_back(fmt: str, target: Path) -> dict[str, list[dict[str, Any]]]:
    if fmt == "xlsx":
        return read_xlsx(target)
    return read_csv_dir(target)


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
async def test_a_sheet_per_kind_with_every_record_of_both_logs(
    seeded: Seeded, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / f"out.{fmt}"
    jp = await seeded.open("JP")
    try:
        result = await ex.export(jp, PID, sink_for(fmt, target), fmt=fmt)
    finally:
        await jp.close()
    want = expected(seeded)
    check_sheets(read_back(fmt, target), want)
    assert result.total == len(want)
    assert [(c.ref.node, c.size) for c in result.cuts] == [
        ("JP", len(seeded.logs["JP"])), ("ID", len(seeded.logs["ID"]))]  # fmt: skip
    assert all(c.checkpoint is not None for c in result.cuts)
    assert not list(tmp_path.glob(".*partial"))


async def test_jsonl_lines_carry_the_record_and_where_it_is(seeded: Seeded, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    id_ = await seeded.open("ID")  # the other side exports the same records, JP first
    try:
        await ex.export(id_, PID, JsonlSink(target), kinds=("issuance", "project"))
    finally:
        await id_.close()
    lines = [json.loads(line) for line in target.read_bytes().splitlines()]
    want = [e for e in expected(seeded) if e.record.kind in ("issuance", "project")]
    assert len(lines) == len(want)
    for line, e in zip(lines, want, strict=True):
        assert (line["record_id"], line["log"], line["log_index"], line["signers"]) == (
            e.record_id, e.log, e.index, e.signers)  # fmt: skip
        assert line["kind"] == e.record.kind
        assert line["record"] == json.loads(msgspec.json.encode(to_builtins(e.record)))
        assert decode_record(json.dumps(line["record"])) == e.record


async def test_only_the_kinds_asked_for(seeded: Seeded, tmp_path: Path) -> None:
    target = tmp_path / "out.xlsx"
    kinds = ex.parse_kinds(["transaction", "issuance_decision"])
    assert kinds == ("issuance_decision", "transaction")  # in the order of KINDS
    jp = await seeded.open("JP")
    try:
        await ex.export(jp, PID, XlsxSink(target), kinds=kinds)
    finally:
        await jp.close()
    check_sheets(read_xlsx(target), expected(seeded), kinds)


async def test_as_of_an_earlier_checkpoint(seeded: Seeded, tmp_path: Path) -> None:
    """Japan endorses two records (a new checkpoint): the export as of the first
    checkpoint holds neither endorsement, the default one holds both."""
    jp = await seeded.open("JP")
    before = len(seeded.logs["JP"])
    try:
        await endorse(jp, seeded.unendorsed)
        await ex.export(jp, PID, CsvSink(tmp_path / "old"), at={"JP": before})
        await ex.export(jp, PID, CsvSink(tmp_path / "new"))
        with pytest.raises(NotFoundError, match=f"no checkpoint of size {before + 1} .*{before}"):
            await ex.export(jp, PID, CsvSink(tmp_path / "bad"), at={"JP": before + 1})
        none_of_jp = await ex.export(jp, PID, CsvSink(tmp_path / "zero"), at={"JP": 0})
    finally:
        await jp.close()
    check_sheets(read_csv_dir(tmp_path / "old"), expected(seeded))
    new = read_csv_dir(tmp_path / "new")["endorsement"]
    ids = [r["record_id"] for r in read_csv_dir(tmp_path / "old")["endorsement"]]
    added = [r for r in new if r["record_id"] not in ids]
    assert sorted(r["endorses"] for r in added) == sorted(seeded.unendorsed)
    assert all(r["log"] == "JP" for r in added)
    assert not (tmp_path / "bad").exists()
    assert none_of_jp.total == len(seeded.logs["ID"])


@pytest.mark.parametrize(
    ("texts", "reason"),
    [(["JP=1,ID"], "not NODE=SIZE"), (["JP=-1"], "not NODE=SIZE"), (["JP=1", "jp=2"], "twice")],
)
def test_at_syntax(texts: list[str], reason: str) -> None:
    with pytest.raises(BadDataError, match=reason):
        ex.parse_at(texts)


def test_at_names_sizes_by_node() -> None:
    assert ex.parse_at(["JP=120,ID=340"]) == {"JP": 120, "ID": 340}
    assert ex.parse_at(["jp=0", " ID = 7 "]) == {"JP": 0, "ID": 7}


async def test_at_refuses_a_node_the_partnership_has_no_log_of(
    seeded: Seeded, tmp_path: Path
) -> None:
    jp = await seeded.open("JP")
    try:
        with pytest.raises(BadDataError, match="no log of MN"):
            await ex.export(jp, PID, CsvSink(tmp_path / "x"), at={"MN": 3})
    finally:
        await jp.close()


def test_an_unknown_kind_is_refused_with_the_closest() -> None:
    with pytest.raises(BadDataError, match="did you mean issuance_decision"):
        ex.parse_kinds(["issuance_decisions"])


# --- the property: what is exported reads back as the same records -----------------------


def _cell_safe(record: Record) -> bool:
    """Whether the tabular layout can hold the record (``core.tabular`` rules 2 and 5: no
    ``;`` inside a list item, no surrounding spaces, no empty text, ...)."""
    try:
        return tabular.row_to_record(record.kind, tabular.record_to_row(record)) == record
    except Exception:
        return False


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Network:
    """Keys, the JP-ID trust root and configurations; no store (each example has its own)."""
    return provision(tmp_path_factory.mktemp("net"), ["ID"], hub_port=0, now=CREATED)


CREATED = datetime.now(UTC).replace(microsecond=0)
"""When the property's records were signed: inside the provisioned keys' window."""

_JP_RECORDS = strategies.records(partnership=PID, author="JP").map(
    lambda r: msgspec.structs.replace(r, created=CREATED)
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])  # fmt: skip
@given(data=st.data(), fmt=st.sampled_from(["xlsx", "csv", "jsonl"]))
def test_exported_records_read_back_as_the_same_records(
    network: Network, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, fmt: str
) -> None:
    """Records of every kind signed into an empty node's own log, exported, read back from
    the file and rebuilt (``tabular.row_to_record``, or the JSON record) are the records
    signed; a value XLSX cannot hold is refused and nothing is written."""
    one = _JP_RECORDS if fmt == "jsonl" else _JP_RECORDS.filter(_cell_safe)
    records = data.draw(st.lists(one, min_size=1, max_size=4, unique_by=encode_record))
    refused = fmt == "xlsx" and any(tabular_illegal(r) for r in records)
    out = tmp_path_factory.mktemp("prop") / f"out.{fmt}"

    async def signed_and_exported() -> None:
        store = await open_store("memory://")
        jp = await open_node(load_config(network.configs["JP"], env={}), store=store)
        try:
            await append_own(jp, PID, records)
            if refused:  # XLSX cannot hold a value as it is: refused, nothing written
                with pytest.raises(BadDataError, match="XLSX cannot store"):
                    await ex.export(jp, PID, sink_for(fmt, out))
                return
            await ex.export(jp, PID, sink_for(fmt, out))
        finally:
            await jp.close()

    asyncio.run(signed_and_exported())
    if refused:
        assert not list(out.parent.iterdir())
        return
    if fmt == "jsonl":
        lines = [json.loads(line) for line in out.read_bytes().splitlines()]
        back = [decode_record(json.dumps(line["record"])) for line in lines]
    else:
        sheets = read_back(fmt, out)
        rows = sorted(
            ((int(r["log_index"]), kind, r) for kind, rs in sheets.items() for r in rs),
            key=lambda t: t[0],
        )
        back = [tabular.row_to_record(kind, {k: v for k, v in r.items()
                                             if k not in tabular.EXPORT_COLUMNS})
                for _, kind, r in rows]  # fmt: skip
    assert back == records


def _imported_file(fmt: str, out: Path) -> list[Path]:
    """What ``jcm-sync import`` is given of an export: the workbook, the CSV files, or
    the JSON-lines export's records (each line's ``record``, ADR 0024)."""
    if fmt == "xlsx":
        return [out]
    if fmt == "csv":
        return sorted(out.glob("*.csv"))
    records = out.with_name("records.jsonl")
    records.write_bytes(b"".join(
        msgspec.json.encode(json.loads(line)["record"]) + b"\n"
        for line in out.read_bytes().splitlines()
    ))  # fmt: skip
    return [records]


def _canonical(record: Record) -> bytes:
    return msgspec.json.encode(to_builtins(record), order="sorted")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])  # fmt: skip
@given(data=st.data(), fmt=st.sampled_from(["xlsx", "csv", "jsonl"]))
def test_export_then_import_into_an_empty_node_gives_the_same_records(
    network: Network, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, fmt: str
) -> None:
    """Records signed into a node's own log, exported, and the export imported
    (``services.importer``) into an empty node with the same keys: its own log holds the
    same records (as a set: an import reads a sheet per kind)."""
    from jcm_sync.local.spreadsheets import read_source
    from jcm_sync.services.importer import import_rows

    one = _JP_RECORDS if fmt == "jsonl" else _JP_RECORDS.filter(_cell_safe)
    one = one.filter(lambda r: not tabular_illegal(r)) if fmt == "xlsx" else one
    records = data.draw(st.lists(one, min_size=1, max_size=4,
                                 unique_by=lambda r: (r.kind, r.key())))  # fmt: skip
    out = tmp_path_factory.mktemp("prop") / f"out.{fmt}"
    config = load_config(network.configs["JP"], env={})

    async def round_trip() -> list[Record]:
        a = await open_node(config, store=await open_store("memory://"))
        try:
            await append_own(a, PID, records)
            await ex.export(a, PID, sink_for(fmt, out))
        finally:
            await a.close()
        b = await open_node(config, store=await open_store("memory://"))
        try:
            sources = [row for f in _imported_file(fmt, out) for row in read_source(f)]
            result = await import_rows(b, PID, sources)
            assert (result.new, result.held) == (len(records), 0)
            own = b.logs(PID).own
            entries = await b.store.entries(own)
            return [decode_record(open_envelope(e.envelope).payload) for e in entries]
        finally:
            await b.close()

    imported = asyncio.run(round_trip())
    assert sorted(map(_canonical, imported)) == sorted(map(_canonical, records))


def tabular_illegal(record: Record) -> bool:
    """A control character XLSX cannot store (openpyxl's ILLEGAL_CHARACTERS_RE) or a
    carriage return (read back as a line feed)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return any(
        isinstance(v, str) and (ILLEGAL_CHARACTERS_RE.search(v) or "\r" in v)
        for v in tabular.record_to_row(record).values()
    )


async def test_xlsx_refuses_a_control_character_naming_the_record(
    seeded: Seeded, tmp_path: Path
) -> None:
    from jcm_sync.core.records import MethodologyRecord

    rec = MethodologyRecord(partnership=PID, author="JP", created=datetime.now(UTC),
                            methodology_id="ID_AM001", version="ver01.0",
                            title="Chillers\x0b for factories")  # fmt: skip
    jp = await seeded.open("JP")
    try:
        await append_own(jp, PID, [rec])
        with pytest.raises(BadDataError, match="control character") as info:
            await ex.export(jp, PID, XlsxSink(tmp_path / "x.xlsx"), kinds=("methodology",))
        await ex.export(jp, PID, CsvSink(tmp_path / "x"), kinds=("methodology",))
    finally:
        await jp.close()
    assert info.value.where is not None
    assert info.value.where.startswith("record ")
    assert not list(tmp_path.glob("*.xlsx"))
    assert not list(tmp_path.glob(".*"))
    (row,) = read_csv_dir(tmp_path / "x")["methodology"]
    assert row["title"] == "Chillers\x0b for factories"
