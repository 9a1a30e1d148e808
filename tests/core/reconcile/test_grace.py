"""The issuance grace period (ADR 0011): a side that issued part of its notified amount is
pending, with its age, until ``decided_on + grace``; then ``issued-vs-notified``.

The data is the clean partnership of ``builders`` with one fault: Indonesia issued only
its government share of ID002 (5 of the 9 credits notified on 2016-05-20), so with the
default grace of 90 days the side is due on 2016-08-18.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import (
    DEFAULT_ISSUANCE_GRACE_DAYS,
    Reconciler,
    Report,
    decode_stored,
    discrepancy_id,
    reconcile,
)
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError
from tests.core.reconcile.builders import CREATED, Dataset, build, envelopes, snapshot
from tests.core.reconcile.test_scenarios import partner_over_issues

DECIDED = date(2016, 5, 20)
DUE = date(2016, 8, 18)
DK = "ID002/2015-04-01/2015-12-31"
SUBJECT = "ID002 2015-04-01..2015-12-31 side ID"
FEWER_ID = discrepancy_id("issued-vs-notified", [DK, "ID"])


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def partly_issued() -> Dataset:
    """Indonesia issued 5 of its 9 ID002 credits (the participant's 4 are missing)."""
    ds = build()
    ds.remove(lambda i: getattr(i.record, "issuance_id", None) == "ID-ISS-ID002-2015-2")
    return ds


def folded(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> Reconciler:
    rec = Reconciler(root)
    for node, envs in envelopes(ds, keys).items():
        rec.apply(node, decode_stored(root, envs), start=0)
    return rec


def judge(
    ds: Dataset,
    keys: dict[str, PrivateKey],
    root: TrustRoot,
    now: datetime | None,
    grace: int = DEFAULT_ISSUANCE_GRACE_DAYS,
) -> Report:
    return folded(ds, keys, root).report(now, issuance_grace_days=grace)


def issuance_pending(report: Report) -> list[tuple[str, date | None, int | None, date | None]]:
    return [(p.subject, p.since, p.age_days, p.due) for p in report.pending
            if p.what == "issuance"]  # fmt: skip


def test_default_grace_matches_the_config_default() -> None:
    """``[reconcile] issuance_grace_days`` defaults to the core's default (not imported)."""
    from jcm_sync.local.config import ReconcileSection

    assert ReconcileSection().issuance_grace_days == DEFAULT_ISSUANCE_GRACE_DAYS == 90


def test_partly_issued_within_grace_is_pending_with_its_age(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """30 days after the decision, 5 of 9 issued is pending, 30 days old, due on day 90."""
    report = judge(partly_issued(), keys, root, at(DECIDED + timedelta(days=30)))
    assert report.discrepancies == ()
    assert report.status == "completed"
    assert issuance_pending(report) == [(SUBJECT, DECIDED, 30, DUE)]
    (p,) = [p for p in report.pending if p.what == "issuance"]
    assert "issued 5 of the 9 credits" in p.summary
    assert "(4 to go)" in p.summary
    assert "30 days since 2016-05-20" in p.summary
    assert f"discrepancy from {DUE}" in p.summary
    assert p.missing == ("ID",)
    assert {r.kind for r in p.records} == {"issuance_decision", "issuance"}
    assert (report.totals.sides_compared, report.totals.sides_differing) == (6, 0)


@pytest.mark.parametrize(
    ("now", "age"),
    [
        (at(DECIDED, 0), 0),
        (at(DUE - timedelta(days=1), 23, 59, 59), 89),
        # 08:59 in Tokyo on the due day is still the day before in UTC
        (datetime(2016, 8, 18, 8, 59, tzinfo=timezone(timedelta(hours=9))), 89),
    ],
    ids=["decision-day", "last-second-of-grace", "tokyo-morning-of-due-day"],
)
def test_pending_until_the_last_utc_day_of_grace(
    now: datetime, age: int, keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Both sides judge by the UTC day: pending up to the end of the day before ``due``."""
    report = judge(partly_issued(), keys, root, now)
    assert report.discrepancies == ()
    assert issuance_pending(report) == [(SUBJECT, DECIDED, age, DUE)]


@pytest.mark.parametrize(
    "now",
    [at(DUE, 0), datetime(2016, 8, 18, 9, 0, tzinfo=timezone(timedelta(hours=9))),
     at(DUE + timedelta(days=3650))],
    ids=["due-day-midnight-utc", "tokyo-09:00-of-due-day", "ten-years-on"],
)  # fmt: skip
def test_partly_issued_after_grace_is_the_same_discrepancy_as_without_grace(
    now: datetime, keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """From the due day on it is ``issued-vs-notified``, with the id, figures and serials
    of the strict judgement (a report without ``now``), so both sides name it alike."""
    ds = partly_issued()
    report = judge(ds, keys, root, now)
    strict = judge(ds, keys, root, None)
    (d,) = report.discrepancies
    (s,) = strict.discrepancies
    assert (d.id, d.rule, d.subject, d.expected, d.found) == (
        FEWER_ID, "issued-vs-notified", SUBJECT, 9, 5)  # fmt: skip
    assert (d.id, d.ranges, d.records) == (s.id, s.ranges, s.records)
    assert d.ranges == ()  # the 5 issued credits were notified: none is held
    assert f"grace from 2016-05-20 ended on {DUE}" in d.summary
    assert "(4 fewer)" in s.summary
    assert "grace" not in s.summary
    assert issuance_pending(report) == []
    assert report.status == "totals_inconsistent"
    assert report.totals.sides_differing == 1


def test_over_issued_is_a_discrepancy_at_once(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """Issuing more than notified is not something to wait for: a finding on day 0."""
    ds = build()
    partner_over_issues(ds)
    report = judge(ds, keys, root, at(DECIDED, 0), grace=3650)
    (d,) = report.discrepancies
    assert (d.rule, d.expected, d.found, d.id) == ("issued-vs-notified", 9, 10, FEWER_ID)
    assert "grace" not in d.summary
    assert issuance_pending(report) == []


def test_allocation_check_is_unaffected_by_the_grace(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """All 9 issued but split 6/3 where 5/4 was allocated: ``allocation-vs-issued`` on day
    0; the grace period concerns only an amount still short."""
    ds = build()
    gov = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-1")
    pp = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-2")
    assert gov.record is not None
    assert pp.record is not None
    gb = gov.record.blocks[0]  # type: ignore[attr-defined]
    pb = pp.record.blocks[0]  # type: ignore[attr-defined]
    ds.replace(gov, amount=6, blocks=(msgspec.structs.replace(
        gb, end="ID-ID002-2015-000006", quantity=6),))  # fmt: skip
    ds.replace(pp, amount=3, blocks=(msgspec.structs.replace(
        pb, start="ID-ID002-2015-000007", quantity=3),))  # fmt: skip
    report = judge(ds, keys, root, at(DECIDED, 0))
    (d,) = report.discrepancies
    assert (d.rule, d.subject) == ("allocation-vs-issued", SUBJECT)
    assert "government_holding 6 (allocated 5)" in d.summary
    assert issuance_pending(report) == []


def test_nothing_issued_stays_pending_past_the_grace_with_its_age(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A side that issued nothing has made no claim to disagree with (ADR 0008): it stays
    pending, now with its age, and no due day."""
    ds = build()
    ds.remove(lambda i: getattr(i.record, "issuance_id", "").startswith("ID-ISS-ID002")
              or getattr(i.record, "txn_id", None) == "ID-TXN-0001")  # fmt: skip
    now = at(DUE + timedelta(days=400))
    report = judge(ds, keys, root, now)
    assert report.discrepancies == ()
    assert issuance_pending(report) == [(SUBJECT, DECIDED, (now.date() - DECIDED).days, None)]
    assert "490 days since 2016-05-20" in report.pending[0].summary
    # without a day to measure against, the same item, without its age
    assert issuance_pending(judge(ds, keys, root, None)) == [(SUBJECT, DECIDED, None, None)]


def test_one_reconciler_judges_again_when_the_day_or_the_grace_changes(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The incremental state re-judges the decisions the day matters to, both ways, and
    agrees with a fresh fold each time; the missing issuance then settles it."""
    ds = partly_issued()
    rec = folded(ds, keys, root)
    within, after = at(DECIDED + timedelta(days=10)), at(DUE + timedelta(days=1))
    for now, grace, rules in [
        (within, 90, []),
        (after, 90, ["issued-vs-notified"]),
        (within, 90, []),
        (within, 0, ["issued-vs-notified"]),
        (after, 365, []),
        (None, 90, ["issued-vs-notified"]),
    ]:
        report = rec.report(now, issuance_grace_days=grace)
        assert [d.rule for d in report.discrepancies] == rules, (now, grace)
        assert report == judge(ds, keys, root, now, grace)
    full = build()
    missing = full.find("issuance", issuance_id="ID-ISS-ID002-2015-2")
    ds.logs["ID"].append(missing)
    logs = envelopes(ds, keys)
    rec.apply("ID", decode_stored(root, logs["ID"][-1:]))
    settled = rec.report(after)
    assert settled.discrepancies == ()
    assert issuance_pending(settled) == []


def test_a_snapshot_is_judged_at_the_now_it_is_verified_at(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """``reconcile(snapshot, now=…)`` verifies and judges at ``now``, with the grace given."""
    snap = snapshot(root, envelopes(partly_issued(), keys))
    now = CREATED.replace(month=6)
    assert [d.rule for d in reconcile(snap, now=now).discrepancies] == ["issued-vs-notified"]
    long = reconcile(snap, now=now, issuance_grace_days=3650)
    assert long.discrepancies == ()
    assert issuance_pending(long) == [
        (SUBJECT, DECIDED, (now.date() - DECIDED).days, DECIDED + timedelta(days=3650))
    ]


def test_a_naive_time_or_a_negative_grace_is_refused(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A naive ``now`` would make the day depend on the host's zone."""
    rec = folded(partly_issued(), keys, root)
    with pytest.raises(BadDataError, match="naive"):
        rec.report(datetime(2016, 6, 1, 12, 0))
    with pytest.raises(BadDataError, match="negative"):
        rec.report(at(DECIDED), issuance_grace_days=-1)


def test_the_grace_is_configured_per_node_and_checked(tmp_path: Path) -> None:
    """``[reconcile] issuance_grace_days`` in the file, its environment override, and a
    refusal naming the field for a negative value."""
    from jcm_sync.errors import ConfigError
    from jcm_sync.local.config import load_config
    from jcm_sync.services.sample import provision

    net = provision(tmp_path, ["ID"], hub_port=0)
    path = net.configs["ID"]
    assert load_config(path, env={}).reconcile.issuance_grace_days == 90
    path.write_text(path.read_text() + "\n[reconcile]\nissuance_grace_days = 30\n")
    assert load_config(path, env={}).reconcile.issuance_grace_days == 30
    env = {"JCM_SYNC_RECONCILE_ISSUANCE_GRACE_DAYS": "0"}
    assert load_config(path, env=env).reconcile.issuance_grace_days == 0
    with pytest.raises(ConfigError, match="issuance_grace_days") as exc:
        load_config(path, env={"JCM_SYNC_RECONCILE_ISSUANCE_GRACE_DAYS": "-1"})
    assert "JCM_SYNC_RECONCILE_ISSUANCE_GRACE_DAYS" in str(exc.value)
