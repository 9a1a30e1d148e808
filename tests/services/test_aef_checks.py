"""Table 4 (holdings on 31 December) and the consistency checks (``services.aef_checks``).

Each fault is written as what went wrong in a registry (a record changed or added) on
the clean sample JP-ID partnership with its Article 6.2 part; each check must pass on
the clean data and name the fault's row on the faulty one.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from jcm_sync.core.records import ItmoActionRecord, SerialBlock
from jcm_sync.services.aef import build_report
from jcm_sync.services.aef_checks import subtract
from jcm_sync.services.aef_rows import T3, T4, AefReport, Held
from tests.core.reconcile import builders
from tests.services import aef_data as data

YEARS = range(2016, 2024)


def report(party: str, year: int, logs: dict[str, list[bytes]], **kw: object) -> AefReport:
    return build_report(data.nomenclature(), data.options(year, **kw), party, data.held(logs))


def checks(r: AefReport, severity: str = "failure") -> set[str]:
    return {p.check for p in r.problems if p.severity == severity}


def itmo(logs: dict[str, list[bytes]], action: str) -> list[Held]:
    return [h for h in data.held(logs)
            if isinstance(h.record, ItmoActionRecord) and h.record.action == action]  # fmt: skip


@pytest.mark.parametrize(
    ("lo", "hi", "spans", "left"),
    [(1, 10, [], [(1, 10)]), (1, 10, [(1, 10)], []), (1, 10, [(3, 4), (8, 20)], [(1, 2), (5, 7)]),
     (5, 6, [(1, 4), (7, 9)], [(5, 6)]), (1, 3, [(2, 2), (1, 1)], [(3, 3)])],
)  # fmt: skip
def test_subtract(
    lo: int, hi: int, spans: list[tuple[int, int]], left: list[tuple[int, int]]
) -> None:
    assert subtract(spans, lo, hi) == left


@pytest.mark.parametrize("party", ["ID", "JP"])
def test_the_clean_partnership_passes_every_check_in_every_year(party: str) -> None:
    logs = data.envelopes()
    for year in YEARS:
        assert checks(report(party, year, logs)) == set(), year


def test_holdings_are_what_japan_acquired_less_what_it_used_by_31_december() -> None:
    logs = data.envelopes()
    for year in YEARS:
        end = date(year, 12, 31)
        acquired = sum(
            h.record.quantity
            for h in itmo(logs, "acquisition")  # type: ignore[union-attr]
            if h.record.occurred_on <= end
        )  # type: ignore[union-attr]
        used = sum(
            h.record.quantity
            for h in itmo(logs, "use")  # type: ignore[union-attr]
            if h.record.occurred_on <= end
        )  # type: ignore[union-attr]
        rows = report("JP", year, logs).tables[T4]
        assert sum(r.get(T4, "Quantity (t CO2 eq)") for r in rows) == acquired - used
        for r in rows:
            assert r.get(T4, "Last ID") - r.get(T4, "First ID") + 1 == r.get(
                T4, "Quantity (t CO2 eq)"
            )
            assert r.get(T4, "Party ITMO registry ID") == "JPN01"
            assert r.sources  # traced to the acquisitions (and uses) behind it
            assert {h.record.kind for h in r.sources} == {"itmo_action"}
    assert report("ID", 2023, logs).tables[T4] == []  # Indonesia holds no ITMO: it first
    # transferred Japan's share, which Japan's registry issued


def test_an_action_without_serial_blocks_has_no_ids_and_fails() -> None:
    """builders' clean dataset records first transfers and acquisitions by quantity only."""
    logs = builders.envelopes(builders.build(), data.KEYS)
    r = report("JP", 2016, logs)
    assert "aef-quantity-span" in checks(r)
    assert "aef-holdings-balance" in checks(r)
    bad = [p for p in r.problems if p.check == "aef-quantity-span"]
    assert all(r.tables[p.table][p.row - 1].get(T3, "First ID") == "" for p in bad if p.row)


def test_a_use_dated_before_its_first_transfer_fails() -> None:
    logs = data.envelopes()
    use = itmo(logs, "use")[0]
    rec = use.record
    assert isinstance(rec, ItmoActionRecord)
    ub = rec.blocks[0]
    (ft,) = [
        h.record
        for h in itmo(logs, "first_transfer")
        if any(b.prefix == ub.prefix and b.first <= ub.first <= b.last for b in h.record.blocks)
    ]  # type: ignore[union-attr]
    early = rec.occurred_on.replace(month=1, day=2)
    assert early < ft.occurred_on  # type: ignore[union-attr]
    logs = data.append(logs, data.replace(rec, supersedes=use.record_id, occurred_on=early))
    r = report("JP", early.year, logs)
    (p,) = [p for p in r.problems if p.check == "aef-before-first-transfer"]
    assert p.row is not None
    assert r.tables[T3][p.row - 1].get(T3, "Action type") == "Use"
    assert f"first transferred only on {ft.occurred_on}" in p.detail  # type: ignore[union-attr]


def test_using_units_never_acquired_fails_as_not_held_and_off_balance() -> None:
    logs = data.envelopes()
    use = itmo(logs, "use")[0].record
    assert isinstance(use, ItmoActionRecord)
    b = use.blocks[0]
    far = SerialBlock(f"{b.prefix}{900_000_001:09d}", f"{b.prefix}{900_000_005:09d}", 5, b.vintage)
    stray = data.replace(use, action_id="JP-USE-STRAY", blocks=(far,), quantity=5)
    logs = data.append(logs, stray)
    r = report("JP", use.occurred_on.year, logs)
    assert {"aef-not-held", "aef-before-first-transfer", "aef-holdings-balance"} <= checks(r)


def test_acquiring_the_same_units_twice_fails() -> None:
    logs = data.envelopes()
    acq = itmo(logs, "acquisition")[0].record
    assert isinstance(acq, ItmoActionRecord)
    again = data.replace(acq, action_id="JP-ACQ-AGAIN",
                         occurred_on=acq.occurred_on + timedelta(days=1))  # fmt: skip
    r = report("JP", acq.occurred_on.year, data.append(logs, again))
    assert "aef-held-twice" in checks(r)
    assert "aef-holdings-balance" in checks(r)


def test_two_prefixes_sharing_ids_in_one_registry_fail() -> None:
    """Serials numbered per prefix (as builders numbers them) map to the same ids."""
    logs = data.envelopes()
    acq = itmo(logs, "acquisition")[0].record
    assert isinstance(acq, ItmoActionRecord)
    b = acq.blocks[0]
    other = SerialBlock(f"JP-XX999-{b.vintage}-{b.first:09d}",
                        f"JP-XX999-{b.vintage}-{b.last:09d}", b.quantity, b.vintage)  # fmt: skip
    twin = data.replace(acq, action_id="JP-ACQ-TWIN", blocks=(other,))
    r = report("JP", acq.occurred_on.year, data.append(logs, twin))
    (p, *_) = [p for p in r.problems if p.check == "aef-ids-ambiguous"]
    assert "JPN01" in p.detail
    assert b.prefix in p.detail or "JP-XX999" in p.detail


def test_an_approach_without_a_carp_id_fails_once_per_table() -> None:
    logs = data.envelopes()
    r = report("JP", 2018, logs, approach_ids={})
    bad = [p for p in r.problems if p.check == "aef-approach-id"]
    assert {p.table for p in bad} == {T3, T4}
    assert len(bad) == 2
    assert "--approach-id 'JCM Indonesia-Japan=CANNNN'" in bad[0].detail


def test_an_unknown_authorization_and_a_bad_version_fail() -> None:
    logs = data.envelopes()
    use = itmo(logs, "use")[0]
    rec = use.record
    assert isinstance(rec, ItmoActionRecord)
    logs = data.append(logs, data.replace(rec, supersedes=use.record_id,
                                          authorization_id="ID.A62/9"))  # fmt: skip
    r = report("JP", rec.occurred_on.year, logs, version="v1")
    assert {"aef-authorization-unknown", "aef-authorization-id", "aef-value"} <= checks(r)


def test_sector_and_oimp_definition_are_listed_as_incomplete_without_failing() -> None:
    logs = data.envelopes()
    (h,) = [h for h in data.held(logs) if h.record.kind == "authorization"]
    oimp = data.replace(h.record, supersedes=h.record_id, purposes=("ndc", "oimp"))
    logs = data.append(logs, oimp)
    year = h.record.authorized_on.year  # type: ignore[union-attr]
    r = report("ID", year, logs)
    assert checks(r, "incomplete") == {"aef-sector", "aef-oimp-first-transfer"}
    assert checks(r) == set()
    assert checks(report("ID", year, logs, oimp_first_transfer="Issuance"), "incomplete") == {
        "aef-sector"
    }
