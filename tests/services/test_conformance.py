"""``services/conformance.py``: the go-live script, judged by the real reconciler.

Both sides' records are signed with real keys and reconciled as a snapshot, with no
hub and no store: the clean steps give no finding and nothing pending; each fault,
alone on top of them, gives a finding of its expected rule naming its own record.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jcm_sync.core.envelope import PrivateKey, add_signature, record_id, sign_record
from jcm_sync.core.reconcile import Report
from jcm_sync.core.records import JC_KINDS, Record
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.services.conformance import (
    JP_SHARE,
    PARTNER_SHARE,
    RESOLUTION_RULE,
    STEPS,
    Script,
    faults,
)
from tests import builders as trust_builders
from tests.core.reconcile.builders import snapshot

CREATED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEYS = {"JP": PrivateKey.generate(), "MN": PrivateKey.generate()}
ROOT = trust_builders.build_root("JP-MN", KEYS, expires=datetime(2029, 1, 1, tzinfo=UTC))
CLEAN = [s for s in STEPS if not s.startswith("fault-")]


def _sign(records: list[Record]) -> list[bytes]:
    return [sign_record(r, [KEYS[r.author]]) for r in records]  # type: ignore[index]


def _logs(script: Script, steps: list[str]) -> dict[str, list[bytes]]:
    """Each side's log after ``steps``, Japan endorsing what the partner pushed."""
    logs: dict[str, list[bytes]] = {"JP": [], "MN": []}
    for step in steps:
        logs["MN"] += _sign(script.partner_records(step))
        logs["JP"] += _sign(script.japan_records(step, logs["MN"]))
    return logs


def _reconcile(logs: dict[str, list[bytes]]) -> Report:
    from jcm_sync.core.reconcile import reconcile

    return reconcile(snapshot(ROOT, logs))


def test_the_clean_steps_reconcile_clean() -> None:
    """Rules 1 and 2: projects and decisions made effective by Japan's endorsements,
    every share issued in full, the Article 6.2 path mirrored: nothing to find."""
    report = _reconcile(_logs(Script("JP-MN", CREATED), CLEAN))
    assert [d.rule for d in report.discrepancies] == []
    assert report.pending == ()
    assert report.status == "completed"
    assert report.totals.decisions == 1
    assert report.article6.authorizations[0].cap == sum(JP_SHARE)
    assert report.article6.authorizations[0].first_transferred == sum(JP_SHARE)


def test_without_japans_endorsement_the_decision_is_pending() -> None:
    """The co-signature step matters: without it the partner's JC records wait."""
    script = Script("JP-MN", CREATED)
    logs = _logs(script, CLEAN)
    logs["JP"] = logs["JP"][2:]  # drop the two endorsements
    report = _reconcile(logs)
    assert {p.what for p in report.pending} == {"signature"}


@pytest.mark.parametrize("fault", faults("MN"), ids=lambda f: f.stage)
def test_each_fault_alone_is_found_by_its_rule(fault: object) -> None:
    """Rule 3: the fault's own record is named by a finding of the expected rule."""
    script = Script("JP-MN", CREATED)
    f = script.fault(fault.stage)  # type: ignore[attr-defined]
    logs = _logs(script, CLEAN)
    added = _sign(
        script.japan_records(f.step) if f.side == "JP" else script.partner_records(f.step)
    )
    assert added, f"the {f.stage} fault appends nothing"
    logs[f.side] += added
    ids = {record_id(e) for e in added}
    report = _reconcile(logs)
    named = [d for d in report.discrepancies if any(r.record_id in ids for r in d.records)]
    assert f.rule in {d.rule for d in named}, [d.rule for d in report.discrepancies]


def test_every_stage_has_one_fault_and_the_resolution_targets_one() -> None:
    stages = [f.stage for f in faults("ID")]
    assert stages == ["totals", "blocks", "article6", "records"]
    assert sorted({f.side for f in faults("ID")}) == ["ID", "JP"]
    assert RESOLUTION_RULE in {f.rule for f in faults("ID")}
    assert {f.step for f in faults("ID")} <= set(STEPS)


def test_the_script_is_the_same_on_both_sides() -> None:
    """Rule 5: records depend only on the partnership and ``created``, so each side
    recognises the other's records by value."""
    a, b = Script("JP-VN", CREATED), Script("JP-VN", CREATED)
    for step in STEPS:
        assert a.partner_records(step) == b.partner_records(step)
        if step != "decision":
            assert a.japan_records(step) == b.japan_records(step)
    assert Script("JP-VN", datetime(2026, 1, 1, tzinfo=UTC)).partner_records("issuance") != (
        a.partner_records("issuance")
    )


def test_shares_follow_the_first_jcm_issuance() -> None:
    """Rule 1: 40 notified, Japan 31 (27 + 4), the partner 9 (5 + 4)."""
    decision = Script("JP-ID", CREATED).partner_records("decision")[1]
    assert decision.total_notified == 40  # type: ignore[union-attr]
    assert [s.notified for s in decision.shares] == [31, 9]  # type: ignore[union-attr]
    assert (sum(JP_SHARE), sum(PARTNER_SHARE)) == (31, 9)
    assert all(r.author == "ID" for r in Script("JP-ID", CREATED).partner_records("decision"))


def test_japan_endorses_only_what_its_replica_holds() -> None:
    script = Script("JP-MN", CREATED)
    with pytest.raises(NotFoundError, match="push it first"):
        script.japan_records("decision", [])
    partner = _sign(script.partner_records("decision"))
    endorsements = script.japan_records("decision", partner)
    assert sorted(e.endorses for e in endorsements) == sorted(map(record_id, partner))  # type: ignore[attr-defined]
    assert {e.endorsed_kind for e in endorsements} <= JC_KINDS  # type: ignore[attr-defined]
    cosigned = [add_signature(partner[0], KEYS["JP"])]
    with pytest.raises(NotFoundError, match="issuance_decision"):
        script.japan_records("decision", cosigned)


def test_unknown_steps_and_partnerships_are_refused() -> None:
    with pytest.raises(NotFoundError):
        Script("JP-MN", CREATED).partner_records("teardown")
    with pytest.raises(NotFoundError):
        Script("JP-MN", CREATED).japan_records("teardown")
    with pytest.raises(NotFoundError):
        Script("JP-MN", CREATED).fault("vintages")
    with pytest.raises(BadDataError):
        Script("MN", CREATED)


def test_who_injects_what() -> None:
    s = Script("JP-MN", CREATED)
    assert s.injects("JP", "decision")
    assert s.injects("MN", "decision")
    assert not s.injects("JP", "retirement")
    assert s.injects("MN", "retirement")
    assert s.injects("JP", "fault-totals")
    assert not s.injects("MN", "fault-totals")
    assert s.injects("MN", "fault-blocks")
    assert not s.injects("JP", "fault-blocks")
