"""The index tables (``core.reconcile.tables``): what each record files, by unit, and
that withdrawing it leaves nothing behind."""

from __future__ import annotations

import gc

import msgspec

from jcm_sync.core.reconcile.inputs import decode_stored_payload
from jcm_sync.core.reconcile.slots import Issued, Slot
from jcm_sync.core.reconcile.tables import Tables
from jcm_sync.core.records import Record
from tests.core.reconcile.builders import AUTHORIZATION, PARTNER, Dataset, build

D_ID003 = "ID003/2017-03-01/2018-06-30"


def slot_of(record: Record, pos: int = 0) -> Slot:
    return Slot(record.kind, "/".join(record.key()), pos)


def rec(ds: Dataset, kind: str, **fields: object) -> Record:
    found = ds.find(kind, **fields).record
    assert found is not None
    return found


def empty(t: Tables) -> bool:
    """Nothing filed (an id once seen may keep an empty table)."""
    bags = (t.issuances, t.jp_vintage, t.first_transfers, t.project_decisions,
            t.methodology_versions, t.methodology_users)  # fmt: skip
    per_id = (*t.auths.values(), *t.actions.values(), *t.resolutions.values())
    return not any(bags) and not any(per_id) and t.action_count == 0


def test_an_issuance_files_its_amount_under_its_decision_and_vintages() -> None:
    """Japan's issuance counts for its decision and, per vintage, for the mirror; it joins
    its registry's fold; withdrawing it removes both and dirties the same units."""
    ds = build()
    iss = rec(ds, "issuance", issuance_id="JP-ISS-ID003-2017-1")
    t, slot = Tables(PARTNER), slot_of(iss)
    assert t.add(slot, iss) == "JP"
    assert t.issuances == {D_ID003: ((slot, Issued("JP", 120, "government_holding")),)}
    assert t.jp_vintage == {("ID003", 2017): ((slot, 80),), ("ID003", 2018): ((slot, 40),)}
    assert t.project_decisions == {"ID003": {D_ID003: 1}}
    filed = {("decision", D_ID003), ("dependencies", D_ID003), ("ftm", "ID003", "2017"),
             ("ftm", "ID003", "2018")}  # fmt: skip
    assert t.dirty == filed
    t.dirty.clear()
    assert t.retract(slot) == "JP"
    assert slot.contrib is None
    assert t.dirty == filed
    assert empty(t)


def test_only_the_partners_first_transfers_file_for_the_mirror() -> None:
    """A partner first transfer counts for its (project, vintage); Japan's acquisitions
    count as actions under their authorization only."""
    ds = build()
    t = Tables(PARTNER)
    ft = rec(ds, "itmo_action", action_id="ID-FT-0001")
    acq = rec(ds, "itmo_action", action_id="JP-ACQ-0001")
    s_ft, s_acq = slot_of(ft, 1), slot_of(acq, 2)
    assert t.add(s_ft, ft) is None
    assert t.add(s_acq, acq) is None
    assert t.action_count == 2
    assert list(t.first_transfers) == [("ID002", 2015)]
    assert set(t.actions[AUTHORIZATION]) == {s_ft, s_acq}
    assert ("auth", AUTHORIZATION) in t.dirty
    t.retract(s_ft)
    assert t.first_transfers == {}
    assert set(t.actions[AUTHORIZATION]) == {s_acq}


def test_the_partners_authorization_dirties_every_mirror_unit() -> None:
    """Its scope decides which (project, vintage) units mirror, so each is judged again."""
    ds = build()
    t = Tables(PARTNER)
    for n, iss_id in enumerate(("JP-ISS-ID003-2017-1", "JP-ISS-ID002-2015-1")):
        iss = rec(ds, "issuance", issuance_id=iss_id)
        t.add(slot_of(iss, n), iss)
    t.dirty.clear()
    auth = rec(ds, "authorization", authorization_id=AUTHORIZATION)
    t.add(slot_of(auth, 9), auth)
    assert t.dirty == {
        ("auth", AUTHORIZATION),
        ("ftm", "ID003", "2017"),
        ("ftm", "ID003", "2018"),
        ("ftm", "ID002", "2015"),
    }


def test_a_retirement_and_its_use_pair_up_in_the_mirror() -> None:
    """Japan's NDC retirement and the use reporting it leave nothing unmatched; without
    the use, the retirement is unmatched."""
    ds = build()
    t = Tables(PARTNER)
    tx = rec(ds, "transaction", txn_id="JP-TXN-0001")
    use = rec(ds, "itmo_action", action_id="JP-USE-0001")
    s_tx, s_use = slot_of(tx, 1), slot_of(use, 2)
    assert t.add(s_tx, tx) == "JP"
    assert t.mirrors["JP"].unmatched
    t.add(s_use, use)
    assert not t.mirrors["JP"].unmatched
    t.retract(s_use)
    assert t.mirrors["JP"].unmatched
    assert ("use", "JP") in t.dirty


def test_withdrawing_every_record_leaves_the_tables_empty() -> None:
    """add and retract are inverse over every kind of the clean partnership."""
    ds = build()
    t = Tables(PARTNER)
    slots = []
    for n, item in enumerate(ds.items()):
        if item.record is not None:
            slot = slot_of(item.record, n)
            t.add(slot, item.record)
            slots.append(slot)
    assert t.issuances
    assert t.first_transfers
    assert t.action_count == 10
    for slot in reversed(slots):
        t.retract(slot)
    assert empty(t)
    assert all(not m.unmatched for m in t.mirrors.values())


def test_what_issuances_and_decisions_file_is_untracked_after_two_collections() -> None:
    """What a decision and its issuances file stays with the garbage collector for two
    passes at most (a pass per level of tuples in tuples), so it never reaches its oldest
    generation, whose full passes scan the whole index: their facts are untracked
    Structs, where tuples nested three deep and more got there (ADR 0055)."""
    ds = build()
    t = Tables(PARTNER)
    slots = []
    for n, item in enumerate(ds.items()):
        if item.record is not None and item.record.kind in ("issuance_decision", "issuance"):
            slots.append(slot_of(item.record, n))
            t.add(slots[-1], item.record)
    assert t.issuances
    assert any(s.kind == "issuance_decision" for s in slots)
    gc.collect()
    gc.collect()

    def tracked(value: object) -> int:
        inner = value if isinstance(value, tuple) else ()
        return int(gc.is_tracked(value)) + sum(tracked(v) for v in inner)

    assert sum(tracked(bag) for bag in t.issuances.values()) == 0
    assert sum(tracked(s.contrib) for s in slots) == 0


def test_facts_share_their_strings_and_days_across_records() -> None:
    """Invariant 5: two issuances decoded apart (each field a new object, as a store's
    payloads decode) file one registry string, one account type string and one day
    object between them; two decisions' shares one side string and one account type."""
    ds = build()
    t = Tables(PARTNER)
    filed = []
    for n, item in enumerate(ds.items()):
        record = item.record
        if record is None or record.kind not in ("issuance", "issuance_decision"):
            continue
        fresh = decode_stored_payload(msgspec.json.encode(record), record.kind)
        filed.append(slot_of(fresh, n))
        t.add(filed[-1], fresh)
    jp = [s for s in filed if s.kind == "issuance" and s.key.startswith("JP/")]
    one, two = jp[0], jp[1]  # issued on one day (the builders' data)
    assert one.contrib is not None
    assert two.contrib is not None
    assert one.contrib[5] == two.contrib[5]
    assert one.contrib[5] is two.contrib[5]
    assert one.contrib[2] is two.contrib[2] == "JP"
    facts = [f for bag in t.issuances.values() for _, f in bag]
    assert len({id(f.registry) for f in facts}) == len({f.registry for f in facts})
    assert len({id(f.atype) for f in facts}) == len({f.atype for f in facts})
    shares = [sh for s in filed if s.kind == "issuance_decision" for sh in s.contrib[2]]  # type: ignore[index, union-attr]
    assert len({id(sh.side) for sh in shares}) == len({sh.side for sh in shares}) == 2
    types = [a for sh in shares for a, _ in sh.allocated or ()]
    assert types
    assert len({id(a) for a in types}) == len(set(types))
