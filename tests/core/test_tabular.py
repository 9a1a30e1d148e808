"""Tests for jcm_sync.core.tabular: the tabular layout of every record kind, both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest

from jcm_sync.core import tabular
from jcm_sync.core.records import KINDS, RecordBase, encode_record
from jcm_sync.errors import InvalidRowsError
from tests.core.reconcile.builders import build


def _records() -> list[RecordBase]:
    return [i.record for i in build().items() if i.record is not None]


def _problems(kind: str, row: dict[str, Any], **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRowsError) as info:
        tabular.row_to_record(kind, row, **kw)
    return [(p.column, p.reason) for p in info.value.problems]


_PICK = {"issuance_decision": {"project_id": "ID002"},
         "issuance": {"issuance_id": "JP-ISS-ID002-2015-1"},
         "transaction": {"txn_id": "JP-TXN-0001"}, "authorization": {}}  # fmt: skip


def _row(kind: str, /, **changes: Any) -> dict[str, Any]:
    rec = build().find(kind, **_PICK[kind]).record
    assert rec is not None
    return {**tabular.record_to_row(rec), **changes}


def test_every_record_of_the_indonesia_partnership_survives_a_row() -> None:
    records = _records()
    assert {r.kind for r in records} >= {"project", "issuance_decision", "issuance",
                                         "transaction", "authorization", "itmo_action"}  # fmt: skip
    for record in records:
        row = tabular.record_to_row(record)
        assert list(row) == tabular.headers(record.kind)
        assert encode_record(tabular.row_to_record(record.kind, row)) == encode_record(record)


def test_nested_parts_flatten_to_readable_cells() -> None:
    decision = _row("issuance_decision")
    assert decision["monitoring_period.start"] == "2015-04-01"
    assert decision["shares"] == (
        "JP 31 = Government of Japan (government_holding) 27 + "
        f"{decision['shares'].split(' + ')[1].split(';')[0]}; " + decision["shares"].split("; ")[1]
    )
    assert decision["shares"].startswith("JP 31 = Government of Japan (government_holding) 27 + ")
    issuance = _row("issuance")
    assert issuance["blocks"] == "JP-ID002-2015-000001..JP-ID002-2015-000027 (2015)"
    assert issuance["decision.monitoring_period.end"] == "2015-12-31"
    assert issuance["account.type"] == "government_holding"
    authz = _row("authorization")
    assert authz["purposes"] == "ndc; oimp"


def test_columns_start_with_the_partnership_and_end_with_supersedes_and_created() -> None:
    for kind in KINDS:
        names = tabular.headers(kind)
        assert names[:2] == ["partnership", "author"]
        assert names[-2:] == ["supersedes", "created"]
        assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("text", "day"),
    [("2017-01-25", date(2017, 1, 25)), ("25 Jan 17", date(2017, 1, 25)),
     ("25 January 2017", date(2017, 1, 25)), ("2017/01/25", date(2017, 1, 25)),
     ("5 Sept 2016", date(2016, 9, 5)), ("  31 dec 16 ", date(2016, 12, 31))],
)  # fmt: skip
def test_dates_in_iso_and_the_jcm_sites_forms(text: str, day: date) -> None:
    assert tabular.parse_date(text) == day
    row = _row("transaction", executed_on=text)
    assert tabular.row_to_record("transaction", row).executed_on == day  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["25/01/2017", "Jan 25 2017", "31 Feb 17", "25 Janvier 17", ""])
def test_other_date_forms_are_refused_naming_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        tabular.parse_date(text)


def test_a_misspelt_column_is_refused_with_the_closest_name() -> None:
    row = _row("transaction")
    row["purpse"] = row.pop("purpose")
    assert _problems("transaction", row) == [
        ("purpse", "unknown column `purpse`; did you mean `purpose`?")
    ]


def test_every_problem_of_a_row_is_listed_not_only_the_first() -> None:
    row = _row("transaction", type="retirment", amount="1,2", executed_on="31 Feb 17",
               **{"source.id": "", "destination.type": "holding"})  # fmt: skip
    found = dict(_problems("transaction", row))
    assert set(found) == {"type", "amount", "executed_on", "source.id", "destination.type"}
    assert found["type"].endswith("did you mean `retirement`?")
    assert found["source.id"] == "required; the cell is empty"
    assert "not a whole number" in found["amount"]
    assert "calendar date" in found["executed_on"]


def test_a_record_level_rule_names_its_column() -> None:
    # blocks holding more than the amount: each cell is fine, the record is not
    found = _problems("issuance", _row("issuance", amount=26))
    assert found == [("record", "serial blocks hold 27 credits, not the amount 26")]
    found = _problems("issuance_decision", _row("issuance_decision", total_notified=41))
    assert found[0][0] == "record"
    assert "shares sum to 40" in found[0][1]


def test_cells_forgiving_in_form() -> None:
    row = _row("issuance", amount=27.0, issuance_id="  JP-ISS-ID002-2015-1 ")
    row["issued_on"] = datetime(2016, 5, 27)  # a spreadsheet date cell
    got = tabular.row_to_record("issuance", row)
    assert got.amount == 27  # type: ignore[union-attr]
    assert got.issuance_id == "JP-ISS-ID002-2015-1"  # type: ignore[union-attr]
    assert tabular.row_to_record("authorization", _row("authorization", cap="1,000")).cap == 1000  # type: ignore[union-attr]
    assert _problems("issuance", _row("issuance", amount=27.5))[0][0] == "amount"


def test_created_filled_by_the_caller_when_empty_and_needs_a_zone() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        tabular.row_to_record("issuance", _row("issuance", created=None), created=now).created
        == now
    )
    assert _problems("issuance", _row("issuance", created=None)) == [
        ("created", "required; the cell is empty")
    ]
    assert "zone" in _problems("issuance", _row("issuance", created="2020-01-15T09:00:00"))[0][1]


def test_export_columns_are_ignored_and_a_foreign_kind_refused() -> None:
    row = _row("issuance", record_id="ab" * 32, log_index=3, signers="JP")
    assert tabular.row_to_record("issuance", row).kind == "issuance"
    assert _problems("issuance", _row("issuance", kind="transaction"))[0][0] == "kind"


def test_unknown_kind_suggests_one() -> None:
    with pytest.raises(Exception, match="did you mean `issuance`"):
        tabular.columns("issuanse")


def test_malformed_list_parts_are_refused_per_cell() -> None:
    found = dict(_problems("issuance", _row("issuance", blocks="JP-ID002-2015-000001-27")))
    assert "START..END" in found["blocks"]
    found = dict(_problems("issuance_decision", _row("issuance_decision", shares="JP thirty")))
    assert "SIDE NOTIFIED" in found["shares"]
    found = dict(_problems("authorization", _row("authorization", vintages="2016; twenty")))
    assert "whole number" in found["vintages"]


def test_json_members_are_checked_at_every_depth() -> None:
    rec = next(r for r in _records() if r.kind == "transaction")
    obj = msgspec.to_builtins(rec)
    assert tabular.unknown_members(obj) == []
    obj["purpse"] = "ndc"
    obj["source"]["tpye"] = "government_holding"
    obj["blocks"][0]["vintag"] = 2016
    found = {p.column: p.reason for p in tabular.unknown_members(obj)}
    assert found == {
        "purpse": "unknown field `purpse`; did you mean `purpose`?",
        "source.tpye": "unknown field `tpye`; did you mean `type`?",
        "blocks[0].vintag": "unknown field `vintag`; did you mean `vintage`?",
    }
    assert tabular.unknown_members({"kind": "transacton"})[0].reason.endswith(
        "did you mean `transaction`?"
    )
