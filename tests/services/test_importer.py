"""Tests for jcm_sync.services.importer: all or none, every problem at once, idempotent,
on Indonesia's agent with its SQLite store and the JP-ID partnership of the builders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import openpyxl
import pytest

from jcm_sync.core.envelope import sign_record
from jcm_sync.errors import BadDataError, CellProblem, InvalidRowsError
from jcm_sync.local.config import load_config
from jcm_sync.local.spreadsheets import SourceRow, read_source
from jcm_sync.services import importer
from jcm_sync.services.importer import ImportResult, import_files, import_rows
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, provision
from tests.core.reconcile import builders
from tests.sheets import indonesia, workbook

PID = builders.PARTNERSHIP


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return provision(tmp_path / "net", ["ID"], hub_port=0, now=datetime.now(UTC))


def run(net: Network, sources: Iterable[SourceRow | CellProblem], **kw: bool) -> ImportResult:
    async def go() -> ImportResult:
        node = await open_node(load_config(net.configs["ID"], env={}))
        try:
            return await import_rows(node, PID, sources, **kw)
        finally:
            await node.close()

    return asyncio.run(go())


def own_size(net: Network) -> int:
    async def go() -> int:
        node = await open_node(load_config(net.configs["ID"], env={}))
        try:
            return (await node.store.tree_head(node.logs(PID).own)).size
        finally:
            await node.close()

    return asyncio.run(go())


def refused(net: Network, sources: Iterable[SourceRow | CellProblem]) -> list[CellProblem]:
    with pytest.raises(InvalidRowsError) as info:
        run(net, sources)
    return list(info.value.problems)


def test_the_partnership_imports_once_and_again_as_already_held(
    net: Network, tmp_path: Path
) -> None:
    records = indonesia()
    path = workbook(tmp_path / "id.xlsx", records)
    first = run(net, read_source(path))
    assert (first.new, first.held, first.size) == (len(records), 0, len(records))
    again = run(net, read_source(path))
    assert (again.new, again.held, again.size) == (0, len(records), len(records))
    # a file holding the held records and new ones: the new only
    extra = indonesia()[:2]
    extra = [msgspec.structs.replace(extra[0], project_id="ID009", title="New project"),
             *extra]  # fmt: skip
    third = run(net, read_source(workbook(tmp_path / "more.xlsx", records + extra[:1])))
    assert (third.new, third.held) == (1, len(records))


def test_a_dry_run_checks_everything_and_stores_nothing(net: Network, tmp_path: Path) -> None:
    path = workbook(tmp_path / "id.xlsx", indonesia())
    result = run(net, read_source(path), dry_run=True)
    assert result.dry_run
    assert result.new == len(indonesia())
    assert own_size(net) == 0


def test_a_changed_record_needs_supersedes_naming_the_held_version(
    net: Network, tmp_path: Path
) -> None:
    records = indonesia()
    run(net, read_source(workbook(tmp_path / "a.xlsx", records)))
    txn = next(r for r in records if r.kind == "transaction")
    changed = msgspec.structs.replace(txn, executed_on=txn.executed_on.replace(day=1))  # type: ignore[union-attr]
    (problem,) = refused(net, read_source(workbook(tmp_path / "b.xlsx", [changed])))
    assert problem.column == "supersedes"
    assert problem.row == 2
    held_id = problem.reason.split("set supersedes to ")[1]
    assert len(held_id) == 64
    assert f"the log holds it as record {held_id}" in problem.reason
    fixed = msgspec.structs.replace(changed, supersedes=held_id)
    result = run(net, read_source(workbook(tmp_path / "c.xlsx", [fixed])))
    assert (result.new, result.size) == (1, len(records) + 1)
    # supersedes naming the old version again is refused: it is no longer the latest
    again = msgspec.structs.replace(changed, amount=txn.amount, supersedes=held_id)  # type: ignore[union-attr]
    again = msgspec.structs.replace(again, purpose="other")
    (problem,) = refused(net, read_source(workbook(tmp_path / "d.xlsx", [again])))
    assert "but the latest held version is" in problem.reason


def test_every_problem_of_every_file_at_once_and_nothing_stored(
    net: Network, tmp_path: Path
) -> None:
    records = indonesia()
    good = workbook(tmp_path / "good.xlsx", records)
    bad = workbook(tmp_path / "bad.xlsx", records)
    wb = openpyxl.load_workbook(bad)
    ws = wb["transaction"]
    names = [c.value for c in ws[1]]
    ws.cell(2, names.index("type") + 1).value = "retirment"
    ws.cell(3, names.index("executed_on") + 1).value = "31 Feb 17"
    ws.cell(3, names.index("amount") + 1).value = "many"
    wb.save(bad)
    lines = tmp_path / "more.jsonl"
    obj = msgspec.to_builtins(next(r for r in records if r.kind == "transaction"))
    obj["purpse"] = "ndc"
    lines.write_bytes(b'{"kind": "project"\n' + msgspec.json.encode(obj) + b"\n")
    problems = refused(net, [*read_source(good), *read_source(bad), *read_source(lines)])
    where = {(Path(p.file).name, p.sheet, p.row, p.column) for p in problems}
    assert where == {
        ("bad.xlsx", "transaction", 2, "type"),
        ("bad.xlsx", "transaction", 3, "executed_on"),
        ("bad.xlsx", "transaction", 3, "amount"),
        ("more.jsonl", "", 1, "record"),
        ("more.jsonl", "", 2, "purpse"),
    }
    assert any(p.reason == "unknown field `purpse`; did you mean `purpose`?" for p in problems)
    assert own_size(net) == 0


def test_records_of_another_node_or_partnership_are_problems_of_their_rows(
    net: Network, tmp_path: Path
) -> None:
    txn = next(r for r in indonesia() if r.kind == "transaction")
    jp = msgspec.structs.replace(txn, author="JP", registry="JP")
    mn = msgspec.structs.replace(txn, partnership="JP-MN", author="MN", registry="MN")
    problems = refused(net, read_source(workbook(tmp_path / "x.xlsx", [jp, mn])))
    assert {(p.row, p.column) for p in problems} == {(2, "author"), (3, "partnership"),
                                                      (3, "author")}  # fmt: skip


def test_the_same_record_twice_with_other_content_is_refused(net: Network, tmp_path: Path) -> None:
    txn = next(r for r in indonesia() if r.kind == "transaction")
    other = msgspec.structs.replace(txn, purpose="other")
    (problem,) = refused(net, read_source(workbook(tmp_path / "x.xlsx", [txn, other, txn])))
    assert problem.row == 3
    assert "the same transaction as row 2" in problem.reason


def test_signed_envelopes_in_json_are_taken_as_they_are_and_held_on_reimport(
    net: Network, tmp_path: Path
) -> None:
    envelopes = [sign_record(r, [net.keys["ID"]]) for r in indonesia()]
    path = tmp_path / "signed.jsonl"
    path.write_bytes(b"\n".join(envelopes) + b"\n")
    assert run(net, read_source(path)).new == len(envelopes)
    assert run(net, read_source(path)).held == len(envelopes)


def test_a_json_record_without_created_gets_the_import_time(net: Network, tmp_path: Path) -> None:
    obj = msgspec.to_builtins(indonesia()[0])
    del obj["created"]
    path = tmp_path / "one.json"
    path.write_bytes(msgspec.json.encode([obj]))
    assert run(net, read_source(path)).new == 1
    assert run(net, read_source(path)).held == 1  # created is not content


def test_an_empty_input_is_refused(net: Network, tmp_path: Path) -> None:
    (tmp_path / "none.jsonl").write_bytes(b"\n")
    with pytest.raises(BadDataError, match="no rows or records"):
        run(net, read_source(tmp_path / "none.jsonl"))


def files(net: Network, inputs: list[tuple[Path, str]], **kw: bool) -> ImportResult:
    async def go() -> ImportResult:
        node = await open_node(load_config(net.configs["ID"], env={}))
        try:
            return await import_files(node, PID, inputs, **kw)
        finally:
            await node.close()

    return asyncio.run(go())


def test_a_second_process_reads_large_inputs_with_the_same_outcome(
    net: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 6, forced for small files: the same counts, the same problems, by row."""
    monkeypatch.setattr(importer, "PARALLEL_BYTES", 0)
    records = indonesia()
    path = workbook(tmp_path / "id.xlsx", records)
    bad = workbook(tmp_path / "bad.xlsx", records)
    wb = openpyxl.load_workbook(bad)
    names = [c.value for c in wb["transaction"][1]]
    wb["transaction"].cell(3, names.index("amount") + 1).value = "many"
    wb.save(bad)
    with pytest.raises(InvalidRowsError) as info:
        files(net, [(bad, "xlsx")])
    assert [(p.sheet, p.row, p.column) for p in info.value.problems] == [
        ("transaction", 3, "amount")
    ]
    assert own_size(net) == 0
    first = files(net, [(path, "xlsx")])
    assert (first.new, first.held) == (len(records), 0)
    assert files(net, [(path, "xlsx")]).held == len(records)
    (tmp_path / "no.xlsx").write_bytes(b"no workbook")
    with pytest.raises(BadDataError, match="not an XLSX workbook"):
        files(net, [(tmp_path / "no.xlsx", "xlsx")])


def test_a_json_lines_export_imports_as_its_records(net: Network, tmp_path: Path) -> None:
    """The export's line (record id, log, index, signers, kind, record) is its record."""
    records = indonesia()
    lines = [
        msgspec.json.encode({"record_id": "ab" * 32, "log": "ID", "log_index": n,
                             "signers": ["ID"], "kind": r.kind, "record": msgspec.to_builtins(r)})
        for n, r in enumerate(records)
    ]  # fmt: skip
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert run(net, read_source(path)).new == len(records)
    assert run(net, read_source(workbook(tmp_path / "same.xlsx", records))).held == len(records)
