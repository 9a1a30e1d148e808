"""The index engine (``core.reconcile.engine.Index``) on its own, without the rules: what
it folds, which version counts, and which units it hands over to be judged."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import PrivateKey, record_id
from jcm_sync.core.reconcile import decode_stored
from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import SerialRange, finding
from jcm_sync.core.records import IssuanceRecord
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError
from tests.core.reconcile.builders import PARTNER, build, envelopes

D_ID002 = "ID002/2015-04-01/2015-12-31"
D_ID003 = "ID003/2017-03-01/2018-06-30"


def folded(root: TrustRoot, logs: dict[str, list[bytes]]) -> Index:
    index = Index(root)
    for node, envs in logs.items():
        index.apply(node, decode_stored(root, envs), start=0)
    index.settle()
    return index


def test_positions_are_the_merkle_roots_of_the_entries_applied(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Each log's size and root are those of the entries folded so far (rule 1), in any
    chunking."""
    logs = envelopes(build(), keys)
    index = Index(root)
    jp = logs["JP"]
    index.apply("JP", decode_stored(root, jp[:5]), start=0)
    index.apply("JP", decode_stored(root, jp[5:]), start=5)
    assert index.position()["JP"] == (len(jp), merkle.root([merkle.leaf_hash(e) for e in jp]))
    assert index.position()[PARTNER] == (0, merkle.EMPTY_ROOT)
    assert [p.node for p in index.log_positions()] == ["JP", PARTNER]


def test_entries_must_continue_the_log_of_a_known_node(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A gap, an overlap or a node outside the partnership is refused."""
    logs = envelopes(build(), keys)
    index = Index(root)
    index.apply("JP", decode_stored(root, logs["JP"][:3]))
    with pytest.raises(BadDataError, match="start at 4, but 3 are folded"):
        index.apply("JP", decode_stored(root, logs["JP"][4:]), start=4)
    with pytest.raises(BadDataError, match="no log of node KH"):
        index.apply("KH", [])


def test_it_hands_over_the_units_new_entries_touch_and_only_those(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """After a full fold every unit is dirty once; a new issuance dirties its decision,
    its decision's dependencies and its vintage units, nothing else."""
    ds = build()
    index = folded(root, envelopes(ds, keys))
    units = index.take_dirty()
    assert {u[0] for u in units} == {"decision", "auth", "ftm", "use", "serials",
                                     "dependencies", "methodologies"}  # fmt: skip
    assert ("decision", D_ID002) in units
    assert index.take_dirty() == set()
    item = ds.find("issuance", issuance_id="JP-ISS-ID003-2017-2")
    assert item.record is not None
    ds.add("JP", msgspec.structs.replace(item.record, issuance_id="JP-ISS-ID003-2017-3"))
    logs = envelopes(ds, keys)
    index.apply("JP", decode_stored(root, logs["JP"][-1:]), start=len(logs["JP"]) - 1)
    index.settle()
    assert index.take_dirty() == {
        ("decision", D_ID003),
        ("dependencies", D_ID003),
        ("ftm", "ID003", "2017"),
        ("ftm", "ID003", "2018"),
    }


def test_a_jc_record_counts_once_both_secretariats_signed_or_endorsed(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan's proposed decision is pending Indonesia's signature until its endorsement
    arrives in Indonesia's log."""
    logs = envelopes(build(), keys)
    index = folded(root, {"JP": logs["JP"]})
    slot = index.slot("issuance_decision", D_ID003)
    assert slot is not None
    assert slot.current is not None
    assert (slot.effective, slot.missing) == (False, (PARTNER,))
    assert [(p.what, p.missing) for p in index.unit_pending()] == [("signature", (PARTNER,))]
    index.apply(PARTNER, decode_stored(root, logs[PARTNER]), start=0)
    index.settle()
    assert (slot.effective, slot.missing) == (True, ())
    assert list(index.unit_pending()) == []


def test_a_superseded_issuance_stops_counting(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """Indonesia's new version of an issuance replaces the one it names (rule 2): only
    the new one is filed under the decision."""
    ds = build()
    old = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-2")
    rid = record_id(envelopes(ds, keys)[PARTNER][ds.logs[PARTNER].index(old)])
    assert old.record is not None
    ds.add(PARTNER, msgspec.structs.replace(
        old.record, issuance_id="ID-ISS-ID002-2015-9", supersedes=rid,
    ))  # fmt: skip
    index = folded(root, envelopes(ds, keys))
    old_slot = index.slot("issuance", "ID/ID-ISS-ID002-2015-2")
    new_slot = index.slot("issuance", "ID/ID-ISS-ID002-2015-9")
    assert old_slot is not None
    assert new_slot is not None
    assert old_slot.current is None
    assert new_slot.current is not None
    filed = {s.key for s, _ in index.tables.issuances[D_ID002]}
    assert "ID/ID-ISS-ID002-2015-9" in filed
    assert "ID/ID-ISS-ID002-2015-2" not in filed
    assert list(index.unit_findings()) == []


def test_two_versions_of_one_record_are_a_finding_and_the_later_counts(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Two different issuances under one id, neither superseding the other, are
    ``conflicting-versions``; the later one is current."""
    ds = build()
    item = ds.find("issuance", issuance_id="ID-ISS-ID002-2015-2")
    assert item.record is not None
    ds.add(PARTNER, msgspec.structs.replace(item.record, issued_on=date(2016, 7, 1)))
    index = folded(root, envelopes(ds, keys))
    slot = index.slot("issuance", "ID/ID-ISS-ID002-2015-2")
    assert slot is not None
    assert slot.current is not None
    current = index.record(slot.current)
    assert isinstance(current, IssuanceRecord)
    assert current.issued_on == date(2016, 7, 1)
    assert [d.rule for d in index.unit_findings()] == ["conflicting-versions"]


def test_judgements_are_filed_per_unit_and_replaced(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A unit's judgement replaces its previous one; an empty one removes it."""
    index = folded(root, envelopes(build(), keys))
    unit = ("decision", D_ID002)
    d = finding("issued-vs-notified", [D_ID002, "ID"], "subject", "summary", [])
    index.judged(unit, Judgement([d]))
    assert list(index.unit_findings()) == [d]
    index.judged(unit, Judgement())
    assert list(index.unit_findings()) == []


def test_quoting_an_issuance_decodes_it_again_after_release(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Records are dropped once folded; the rules' quoting helpers decode them again."""
    index = folded(root, envelopes(build(), keys))
    slots = [s for s, fact in index.tables.issuances[D_ID002] if fact.registry == "ID"]
    assert all(s.current is not None and s.current.record is None for s in slots)
    refs = index.issuance_refs(slots)
    assert [r.key for r in refs] == ["ID/ID-ISS-ID002-2015-1", "ID/ID-ISS-ID002-2015-2"]
    assert index.issuance_ranges("ID", slots) == [
        SerialRange("ID", "ID-ID002-2015-", 1, 5, 6),
        SerialRange("ID", "ID-ID002-2015-", 6, 9, 6),
    ]
    assert index.version_by_id(refs[0].record_id).key == refs[0].key
    index.release()
    assert all(s.current is not None and s.current.record is None for s in slots)
