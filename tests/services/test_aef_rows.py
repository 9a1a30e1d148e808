"""Tables 1, 2 and 3 of the AEF from signed records (``services.aef_rows``).

The records are the sample JP-ID partnership with its Article 6.2 part (``aef_data``);
every expected value is computed from those records, not written down.
"""

from __future__ import annotations

import random
from datetime import date

import pytest

from jcm_sync.core.records import AuthorizationRecord, ItmoActionRecord, serial_parts
from jcm_sync.services.aef import build_report
from jcm_sync.services.aef_rows import (
    COLUMNS,
    NA,
    T1,
    T2,
    T3,
    T5,
    AefReport,
    Row,
    authorization_versions,
)
from tests.services import aef_data as data

NDC_YEAR = "Calendar year for which the ITMOs are used towards the Party's NDC"


def report(
    party: str, year: int, logs: dict[str, list[bytes]] | None = None, **kw: object
) -> AefReport:
    held = data.held(logs or data.envelopes())
    return build_report(data.nomenclature(), data.options(year, **kw), party, held)


def col(table: str, row: Row, name: str) -> object:
    return row.get(table, name)


def actions(logs: dict[str, list[bytes]], party: str, year: int) -> list[ItmoActionRecord]:
    return [
        h.record for h in data.held(logs)
        if isinstance(h.record, ItmoActionRecord) and h.record.party == party
        and h.record.occurred_on.year == year
    ]  # fmt: skip


def test_columns_are_those_of_the_annex() -> None:
    assert [len(COLUMNS[t]) for t in COLUMNS] == [9, 19, 27, 16, 8]


def test_table_1_is_the_submission() -> None:
    r = report("ID", 2017, version="1.1", ndc_period=(2021, 2030))
    (row,) = r.tables[T1]
    assert row.values == ["IDN", "1.1", 2017, date(2026, 4, 10), "", "", 2021, 2030, ""]


def test_table_2_reports_the_authorization_in_the_year_it_was_signed() -> None:
    logs = data.envelopes()
    (auth,) = [h.record for h in data.held(logs) if isinstance(h.record, AuthorizationRecord)]
    (row,) = report("ID", auth.authorized_on.year, logs).tables[T2]
    assert col(T2, row, "Authorization ID") == auth.authorization_id
    assert col(T2, row, "Date of authorization") == auth.authorized_on
    assert col(T2, row, "Cooperative approach ID") == "CA0001"
    assert col(T2, row, "Version of the authorization") == 1
    assert col(T2, row, "Authorized quantity") == auth.cap
    assert col(T2, row, "Purposes for authorization") == "NDC"
    assert col(T2, row, "Authorized Party(ies) ID") == "JPN"
    assert col(T2, row, "Authorized timeframe") == f"{min(auth.vintages)} - {max(auth.vintages)}"
    assert col(T2, row, "First transfer definition for OIMP") == NA
    assert report("ID", auth.authorized_on.year + 1, logs).tables[T2] == []
    assert report("JP", auth.authorized_on.year, logs).tables[T2] == []  # not Japan's


def test_a_new_version_is_reported_with_its_number_in_the_year_it_takes_effect() -> None:
    logs = data.envelopes()
    (h,) = [h for h in data.held(logs) if isinstance(h.record, AuthorizationRecord)]
    amended = data.replace(h.record, supersedes=h.record_id, status="amended", cap=99_000,
                           purposes=("ndc", "oimp"), effective_on=date(2019, 7, 1))  # fmt: skip
    logs = data.append(logs, amended)
    numbers = sorted(n for n, _ in authorization_versions(data.held(logs)))
    assert numbers == [1, 2]
    r = report("ID", 2019, logs, oimp_first_transfer="Issuance")
    (row,) = r.tables[T2]
    assert (col(T2, row, "Version of the authorization"), col(T2, row, "Authorized quantity")) == (
        2, 99_000,
    )  # fmt: skip
    assert col(T2, row, "Purposes for authorization") == "NDC and OIMP"
    assert col(T2, row, "First transfer definition for OIMP") == "Issuance"
    assert col(T2, row, "Date of authorization") == date(2019, 7, 1)


@pytest.mark.parametrize("party", ["ID", "JP"])
def test_table_3_has_a_row_per_block_of_each_action_of_the_party(party: str) -> None:
    logs = data.envelopes()
    for year in range(2016, 2024):
        acts = actions(logs, party, year)
        rows = [r for r in report(party, year, logs).tables[T3] if r.action != "authorization"]
        assert len(rows) == sum(len(a.blocks) for a in acts)
        got = sorted((col(T3, r, "Action date"), col(T3, r, "First ID"), col(T3, r, "Last ID"),
                      col(T3, r, "Quantity (t CO2 eq)"), r.sources[-1].record.action_id)  # type: ignore[union-attr]
                     for r in rows)  # fmt: skip
        want = sorted((f"{a.occurred_on}T00:00:00.000Z", serial_parts(b.start)[1],
                       serial_parts(b.end)[1], b.quantity, a.action_id)
                      for a in acts for b in a.blocks)  # fmt: skip
        assert got == want


def test_first_transfers_are_authorized_and_first_transferred_to_japan() -> None:
    logs = data.envelopes()
    year = min(a.occurred_on.year for a in actions_all(logs) if a.action == "first_transfer")
    rows = report("ID", year, logs).tables[T3]
    auth = [r for r in rows if r.action == "authorization"]
    first = [r for r in rows if r.action == "first_transfer"]
    assert first
    assert len(auth) == len(first)
    for a, f in zip(auth, first, strict=True):
        assert col(T3, a, "Action type") == "Authorization"
        assert col(T3, f, "Action type") == "First transfer"
        assert col(T3, f, "Action subtype") == "First transfer to another Party"
        for name in ("First ID", "Last ID", "Action date", "Vintage", "Quantity (t CO2 eq)"):
            assert col(T3, a, name) == col(T3, f, name)
        assert col(T3, f, "Acquiring participating Party ID") == "JPN"
        assert col(T3, a, "Acquiring participating Party ID") == NA
        assert col(T3, f, "Party ITMO registry ID") == "JPN01"  # Japan's share: Japan's registry
        assert col(T3, f, "First transferring participating Party ID") == "IDN"
        assert {h.record.kind for h in a.sources} == {"authorization", "itmo_action"}


def actions_all(logs: dict[str, list[bytes]]) -> list[ItmoActionRecord]:
    return [h.record for h in data.held(logs) if isinstance(h.record, ItmoActionRecord)]


def test_japans_acquisitions_and_uses() -> None:
    logs = data.envelopes()
    uses = [a for a in actions_all(logs) if a.action == "use"]
    year = uses[0].occurred_on.year
    rows = report("JP", year, logs).tables[T3]
    for r in rows:
        assert col(T3, r, "Party ITMO registry ID") == "JPN01"
        assert col(T3, r, "Underlying unit registry ID") == "JCM"
        assert col(T3, r, "First unit ID") == col(T3, r, "First ID")
        if r.action == "acquisition":
            assert col(T3, r, "Transferring participating Party ID") == "IDN"
            assert col(T3, r, NDC_YEAR) == NA
        else:
            assert r.action == "use"
            assert col(T3, r, "Transferring participating Party ID") == NA
            assert col(T3, r, NDC_YEAR) == year
    assert "use" in {r.action for r in rows}


def test_a_superseded_action_is_not_reported() -> None:
    logs = data.envelopes()
    (h, *_) = [h for h in data.held(logs) if isinstance(h.record, ItmoActionRecord)
               and h.record.action == "use"]  # fmt: skip
    fixed = data.replace(h.record, supersedes=h.record_id, action_id="JP-USE-FIXED")
    logs = data.append(logs, fixed)
    rows = report("JP", h.record.occurred_on.year, logs).tables[T3]
    ids = {r.sources[-1].record_id for r in rows}
    assert h.record_id not in ids
    assert any(r.sources[-1].record.action_id == "JP-USE-FIXED" for r in rows)  # type: ignore[union-attr]


def test_the_same_records_in_another_order_give_the_same_rows() -> None:
    logs = data.envelopes()
    held = data.held(logs)
    shuffled = list(held)
    random.Random(7).shuffle(shuffled)
    for party in ("ID", "JP"):
        a = build_report(data.nomenclature(), data.options(2018), party, held)
        b = build_report(data.nomenclature(), data.options(2018), party, shuffled)
        for t in a.tables:
            assert [r.values for r in a.tables[t]] == [r.values for r in b.tables[t]]


def test_table_5_is_empty_as_no_record_names_an_authorized_entity() -> None:
    assert report("ID", 2016).tables[T5] == []
