"""What ITMO actions rely on (``core.reconcile.rules_itmo_chronology``): first transfers
awaited with a grace period, actions dated before the first transfer they rely on, and
serials never issued; with the per-rule grace periods of ``Reconciler.report``.

The data is the clean JP-ID partnership of ``builders``, where Japan issued ID002's 31
credits of vintage 2015 on 2016-05-27, Indonesia first transferred them (ID-FT-0001) and
Japan acquired them (JP-ACQ-0001) that day, and Japan retired 27 for its NDC and reported
the use (JP-USE-0001) on 2016-05-28. Each test breaks it once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey, record_id, sign_record
from jcm_sync.core.reconcile import Reconciler, Report, decode_stored
from jcm_sync.core.reconcile.model import GRACE_DEFAULTS, discrepancy_id
from jcm_sync.core.reconcile.reconciler import resolve_grace
from jcm_sync.core.reconcile.rules_itmo_chronology import judge_itmo_backing, judge_serials
from jcm_sync.core.records import IssuanceRecord, SerialBlock
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError
from tests.core.reconcile.builders import Dataset, build, envelopes, run
from tests.core.reconcile.test_rules_article6 import index_of

ISSUED = date(2016, 5, 27)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def folded(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> Reconciler:
    rec = Reconciler(root)
    for node, envs in envelopes(ds, keys).items():
        rec.apply(node, decode_stored(root, envs), start=0)
    return rec


def without_first_transfer() -> Dataset:
    """Indonesia never recorded its first transfer of ID002's 31 ITMOs of 2015."""
    ds = build()
    ds.remove(lambda i: getattr(i.record, "action_id", None) == "ID-FT-0001")
    return ds


def a6(report: Report) -> list[tuple[str, str]]:
    return [(d.rule, d.subject) for d in report.discrepancies]


def awaited(report: Report) -> list[tuple[str, str, date | None, int | None, date | None]]:
    return [(p.what, p.subject, p.since, p.age_days, p.due) for p in report.pending]


def test_a_missing_first_transfer_is_awaited_then_a_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Without ID-FT-0001, Japan's issuance of 2016-05-27 awaits its first transfer, and
    Japan's acquisition (that day) and use (the next) await theirs: pending with their
    age for 90 days each, then ``a6-first-transfer-mirror`` and ``a6-no-first-transfer``,
    on their own due days."""
    rec = folded(without_first_transfer(), keys, root)
    report = rec.report(at(date(2016, 6, 30)))
    assert report.discrepancies == ()
    assert awaited(report) == [
        ("first_transfer", "ID002 vintage 2015", ISSUED, 34, date(2016, 8, 25)),
        ("unbacked_itmos", "ID002 vintage 2015 JP acquired", ISSUED, 34, date(2016, 8, 25)),
        ("unbacked_itmos", "ID002 vintage 2015 JP consumed", date(2016, 5, 28), 33,
         date(2016, 8, 26)),
    ]  # fmt: skip
    summary = report.pending[0].summary
    assert summary.startswith("Japan issued 31 credits of ID002 vintage 2015 (JP-ISS-ID002-")
    assert "on 2016-05-27" in summary
    assert "ID has recorded first transfers of 0 (none)" in summary
    assert "awaited for 34 days since 2016-05-27" in summary
    report = rec.report(at(date(2016, 8, 25)))
    assert a6(report) == [
        ("a6-first-transfer-mirror", "ID002 vintage 2015"),
        ("a6-no-first-transfer", "ID002 vintage 2015 JP acquired"),
    ]
    mirror, acquired = report.discrepancies
    assert (mirror.expected, mirror.found, acquired.expected, acquired.found) == (31, 0, 0, 31)
    assert "the 90 days grace from 2016-05-27 ended on 2016-08-25" in mirror.summary
    assert acquired.summary.startswith(
        "JP acquired 31 ITMOs of ID002 vintage 2015, 31 beyond ID's first transfers of 0 "
        "(none); from acquisition JP-ACQ-0001 ("
    )
    assert [r.key for r in acquired.records] == ["JP/JP-ACQ-0001"]
    assert [p.subject for p in report.pending] == ["ID002 vintage 2015 JP consumed"]
    report = rec.report(at(date(2017, 1, 1)))
    assert [rule for rule, _ in a6(report)] == [
        "a6-first-transfer-mirror",
        "a6-no-first-transfer",
        "a6-no-first-transfer",
    ]
    used = report.discrepancies[2]
    assert used.ranges[0].describe() == "JP:JP-ID002-2015-000001..JP-ID002-2015-000027 (27)"
    assert report.pending == ()


def test_without_a_day_nothing_awaited_turns_into_a_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A report made without ``now`` has no day to measure the grace against: the missing
    first transfer and what relies on it stay pending, with no age."""
    report = run(without_first_transfer(), keys, root)
    assert report.discrepancies == ()
    assert [(w, s, age) for w, s, _, age, _ in awaited(report)] == [
        ("first_transfer", "ID002 vintage 2015", None),
        ("unbacked_itmos", "ID002 vintage 2015 JP acquired", None),
        ("unbacked_itmos", "ID002 vintage 2015 JP consumed", None),
    ]


def test_fewer_first_transferred_than_acquired(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia first transferred 59 of ID001's 60 ITMOs of 2016, Japan acquired 60: a
    year on, the mirror (60 issued, 59 first transferred) and Japan's acquisition beyond
    the first transfers (60 against 59) are both findings; Japan's use of 20 is covered."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0002"), quantity=59)
    index = index_of(ds, keys, root)
    verdict = judge_itmo_backing(index, "ID001", 2016, date(2018, 6, 1))
    [d] = verdict.findings
    assert (d.rule, d.subject, d.expected, d.found) == (
        "a6-no-first-transfer",
        "ID001 vintage 2016 JP acquired",
        59,
        60,
    )
    assert "1 beyond ID's first transfers of 59 (first transfer ID-FT-0002 (" in d.summary
    assert [r.key for r in d.records] == ["JP/JP-ACQ-0002", "ID/ID-FT-0002"]
    assert verdict.timed
    assert verdict.pending == []
    assert d.id == discrepancy_id("a6-no-first-transfer", ["ID001", "2016", "JP", "acquired"])


def test_a_use_dated_before_its_first_transfer_is_a_finding_at_once(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan dates its NDC use of 27 ID002 ITMOs 2016-05-01, before Indonesia's first
    transfer of 2016-05-27: ``a6-use-before-first-transfer`` naming both, with no grace."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="JP-USE-0001"), occurred_on=date(2016, 5, 1))
    report = run(ds, keys, root)
    assert a6(report) == [("a6-use-before-first-transfer", "itmo_action JP/JP-USE-0001")]
    [d] = report.discrepancies
    assert [r.key for r in d.records] == ["JP/JP-USE-0001", "ID/ID-FT-0001"]
    assert "on 2016-05-01 brings what JP transferred onward, used or cancelled to 27" in (d.summary)
    assert "first transfer ID-FT-0001 (" in d.summary
    assert "on 2016-05-27, dated after it" in (d.summary)
    assert report.status == "blocks_inconsistent"


def test_a_use_on_the_day_of_its_first_transfer_is_in_order(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The same day is in order (first transfers count first), and an acquisition
    beyond every first transfer is a matter of backing, not of chronology."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="JP-USE-0001"), occurred_on=ISSUED)
    assert run(ds, keys, root).discrepancies == ()
    index = index_of(without_first_transfer(), keys, root)
    verdict = judge_itmo_backing(index, "ID002", 2015)
    assert verdict.findings == []
    assert len(verdict.pending) == 2
    assert not verdict.timed


def blocks(first: int, last: int) -> tuple[SerialBlock, ...]:
    start, end = f"JP-ID002-2015-{first:06d}", f"JP-ID002-2015-{last:06d}"
    return (SerialBlock(start, end, last - first + 1, 2015),)


def test_a_first_transfer_of_serials_japan_never_issued(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's first transfer names Japan's serials 5..35 of ID002 2015; Japan issued
    1..31 (27 to its government, 4 to Mayekawa): 32..35 were issued in neither registry.
    Naming 1..31 is in order."""
    ds = build()
    item = ds.find("itmo_action", action_id="ID-FT-0001")
    ds.replace(item, blocks=blocks(1, 31))
    assert run(ds, keys, root).discrepancies == ()
    ds.replace(item, blocks=blocks(5, 35))
    report = run(ds, keys, root)
    assert a6(report) == [("a6-serials-not-issued", "itmo_action ID/ID-FT-0001")]
    [d] = report.discrepancies
    assert [r.describe() for r in d.ranges] == ["JP:JP-ID002-2015-000032..JP-ID002-2015-000035 (4)"]
    assert "names 4 serials never issued in JP's registry nor in ID's" in d.summary
    assert "(JP issued 31 serials of JP-ID002-2015- in all)" in d.summary


def test_serials_issued_later_in_the_snapshot_settle_the_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Folded Indonesia's log first, the first transfer names serials no issuance holds
    yet; once Japan's log is folded they are issued, and the report is the one-shot one."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0001"), blocks=blocks(1, 31))
    logs = envelopes(ds, keys)
    rec = Reconciler(root)
    rec.apply("ID", decode_stored(root, logs["ID"]), start=0)
    early = rec.report()
    assert "a6-serials-not-issued" in {d.rule for d in early.discrepancies}
    rec.apply("JP", decode_stored(root, logs["JP"]), start=0)
    assert rec.report().discrepancies == ()
    assert judge_serials(rec, "JP-ID002-2015-").findings == []


def test_a_use_of_serials_its_registry_never_issued(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan's use names serials 901..920 of ID001 2016 where its registry issued 1..60:
    the serials are not issued, and the use and the retirement of 1..20 no longer pair
    (one use-mirror finding for each, their serials do not overlap)."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="JP-USE-0002"), blocks=(
        SerialBlock("JP-ID001-2016-000901", "JP-ID001-2016-000920", 20, 2016),))  # fmt: skip
    report = run(ds, keys, root)
    assert [rule for rule, _ in a6(report)] == [
        "a6-serials-not-issued",
        "a6-use-mirror",
        "a6-use-mirror",
    ]
    assert "never issued in JP's registry:" in report.discrepancies[0].summary


# --- the grace periods, per rule --------------------------------------------------------


def test_each_rule_has_its_own_grace(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """On 2016-09-30 (126 days on) both kinds are findings by default; a grace of 200 days
    for the mirror makes it pending again, due on 2016-12-13, and leaves the others."""
    rec = folded(without_first_transfer(), keys, root)
    day = at(date(2016, 9, 30))
    assert [r for r, _ in a6(rec.report(day))] == [
        "a6-first-transfer-mirror",
        "a6-no-first-transfer",
        "a6-no-first-transfer",
    ]
    report = rec.report(day, grace={"a6-first-transfer-mirror": 200})
    assert [r for r, _ in a6(report)] == ["a6-no-first-transfer", "a6-no-first-transfer"]
    assert awaited(report) == [
        ("first_transfer", "ID002 vintage 2015", ISSUED, 126, date(2016, 12, 13))
    ]
    assert "(200 days grace)" in report.pending[0].summary


def test_only_units_that_depend_on_a_changed_grace_are_judged_again(
    keys: dict[str, PrivateKey], root: TrustRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing the mirror's grace re-judges the one timed (project, vintage) unit; the
    same day and grace re-judge nothing; a new day re-judges every timed unit."""
    ds = without_first_transfer()
    ds.remove(lambda i: getattr(i.record, "issuance_id", None) == "ID-ISS-ID001-2016-2")
    rec = folded(ds, keys, root)
    day = at(date(2017, 6, 1))
    rec.report(day)
    judged: list[tuple[str, ...]] = []
    original = rec._judge

    def spy(unit: tuple[str, ...]) -> None:
        judged.append(unit)
        original(unit)

    monkeypatch.setattr(rec, "_judge", spy)
    rec.report(day)
    assert judged == []
    rec.report(day, grace={"a6-first-transfer-mirror": 30})
    assert judged == [("ftm", "ID002", "2015")]
    judged.clear()
    rec.report(day, grace={"a6-first-transfer-mirror": 30, "issued-vs-notified": 10})
    assert judged == [("decision", "ID001/2016-01-01/2016-12-31")]
    judged.clear()
    rec.report(at(date(2017, 6, 2)), grace={"a6-first-transfer-mirror": 30,
                                            "issued-vs-notified": 10})  # fmt: skip
    assert sorted(judged) == [("decision", "ID001/2016-01-01/2016-12-31"),
                              ("ftm", "ID002", "2015")]  # fmt: skip


def test_grace_periods_are_checked() -> None:
    """A rule without a grace period, a negative one, or two figures for
    ``issued-vs-notified`` (``issuance_grace_days`` is its older name) are refused."""
    assert resolve_grace(None) == GRACE_DEFAULTS
    assert resolve_grace({"a6-no-first-transfer": 0}, 30) == {
        "issued-vs-notified": 30,
        "a6-first-transfer-mirror": 90,
        "a6-no-first-transfer": 0,
    }
    with pytest.raises(BadDataError, match="'a6-cap-exceeded' has no grace period"):
        resolve_grace({"a6-cap-exceeded": 10})
    with pytest.raises(BadDataError, match="negative"):
        resolve_grace({"a6-first-transfer-mirror": -1})
    with pytest.raises(BadDataError, match="two grace periods, 30 and 60"):
        resolve_grace({"issued-vs-notified": 30}, 60)
    assert resolve_grace({"issued-vs-notified": 30}, 30)["issued-vs-notified"] == 30


def test_an_authorization_version_is_decoded_with_its_new_fields() -> None:
    """Old authorization records decode as active, with no effective day."""
    item = build().find("authorization", authorization_id="ID-A62-0001")
    assert item.record is not None
    again = msgspec.json.decode(msgspec.json.encode(item.record), type=type(item.record))
    assert (again.status, again.effective_on) == ("active", None)


def test_a_corrected_issuance_judges_the_serials_again(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan corrects its issuance of Mayekawa's 4 ID002 credits to serials 128..131: the
    first transfer naming 1..31 now names 4 serials never issued (as does Japan's own
    transfer of them), found by the same reconciler once the correction is folded (the
    registry's fold is replayed)."""
    ds = build()
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0001"), blocks=blocks(1, 31))
    rec = folded(ds, keys, root)
    assert rec.report().discrepancies == ()
    old = ds.find("issuance", issuance_id="JP-ISS-ID002-2015-2").record
    assert isinstance(old, IssuanceRecord)
    fixed = msgspec.structs.replace(
        old,
        supersedes=record_id(sign_record(old, [keys["JP"]])),
        blocks=(SerialBlock("JP-ID002-2015-000128", "JP-ID002-2015-000131", 4, 2015),),
    )
    rec.apply("JP", decode_stored(root, [sign_record(fixed, [keys["JP"]])]))
    moved, d = rec.report().discrepancies  # Japan's transfer of 28..31 too, in stage 2
    assert (moved.rule, d.rule) == ("transaction-block-not-issued", "a6-serials-not-issued")
    assert [r.describe() for r in d.ranges] == ["JP:JP-ID002-2015-000028..JP-ID002-2015-000031 (4)"]
