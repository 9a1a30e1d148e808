"""The index's per-record values and helpers (``core.reconcile.slots``), on real records."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from jcm_sync.core.reconcile.model import SerialRange
from jcm_sync.core.reconcile.slots import (
    Bag,
    Mirror,
    Slot,
    bag_add,
    bag_remove,
    block_range,
    decision_key,
    mirror_sig,
    side_of,
    vintages_of,
)
from jcm_sync.core.records import IssuanceRecord, Period, Record, SerialBlock
from tests.core.reconcile.builders import AUTHORIZATION, build, resolution


def record(kind: str, **fields: object) -> Record:
    found = build().find(kind, **fields).record
    assert found is not None
    return found


def issuance(issuance_id: str) -> IssuanceRecord:
    rec = record("issuance", issuance_id=issuance_id)
    assert isinstance(rec, IssuanceRecord)
    return rec


def test_a_bag_files_values_per_slot_and_forgets_empty_keys() -> None:
    """bag_add keeps every slot's value in order; bag_remove drops one slot's, then the key."""
    a, b = Slot("issuance", "JP/A", 1), Slot("issuance", "JP/B", 2)
    table: dict[str, Bag[int]] = {}
    bag_add(table, "k", a, 5)
    bag_add(table, "k", b, 7)
    assert table == {"k": ((a, 5), (b, 7))}
    assert bag_remove(table, "k", a) is True
    assert table == {"k": ((b, 7),)}
    assert bag_remove(table, "k", a) is False
    assert bag_remove(table, "k", b) is True
    assert table == {}


@pytest.mark.parametrize(
    ("kind", "fields", "side"),
    [
        ("issuance", {"issuance_id": "ID-ISS-ID002-2015-1"}, "ID"),
        ("transaction", {"txn_id": "JP-TXN-0001"}, "JP"),
        ("issuance_decision", {"project_id": "ID001"}, "JC"),
        ("project", {"project_id": "ID001"}, "JC"),
        ("authorization", {"authorization_id": AUTHORIZATION}, "ID"),
        ("itmo_action", {"action_id": "JP-USE-0001"}, "JP"),
    ],
    ids=["issuance", "transaction", "decision", "project", "authorization", "itmo-action"],
)
def test_the_side_that_may_replace_a_record(
    kind: str, fields: dict[str, object], side: str
) -> None:
    """Registry records belong to their registry, 6.2 records to their Party, JC ones to
    either secretariat (rule 2)."""
    assert side_of(record(kind, **fields)) == side


def test_a_resolution_belongs_to_its_author() -> None:
    """A resolution names no registry or Party: only its author may replace it."""
    assert side_of(resolution("ID", "0123456789abcdef", "a known delay")) == "ID"


def test_a_block_range_prints_back_the_block_serials() -> None:
    """A block's range keeps its prefix and width, so it prints the registry's serials."""
    block = SerialBlock("ID-ID002-2015-000010", "ID-ID002-2015-000012", 3, 2015)
    rng = block_range("ID", block)
    assert rng == SerialRange("ID", "ID-ID002-2015-", 10, 12, 6)
    assert (rng.start, rng.end, rng.quantity) == (block.start, block.end, 3)


def test_the_decision_key_is_the_decisions_natural_key() -> None:
    """An issuance finds its decision under the key the decision record itself has."""
    decision = record("issuance_decision", project_id="ID003")
    iss = issuance("JP-ISS-ID003-2017-1")
    key = decision_key(iss.decision.project_id, iss.decision.monitoring_period)
    assert key == "/".join(decision.key()) == "ID003/2017-03-01/2018-06-30"


def test_vintages_come_from_blocks_or_a_single_year_period() -> None:
    """Blocks state vintages; without blocks a one-year period gives its year, a straddling
    one none (rule 6)."""
    straddling = issuance("JP-ISS-ID003-2017-1")
    assert vintages_of(straddling) == {2017: 80, 2018: 40}
    assert vintages_of(msgspec.structs.replace(straddling, blocks=())) == {}
    one_year = issuance("JP-ISS-ID002-2015-1")
    assert vintages_of(msgspec.structs.replace(one_year, blocks=())) == {2015: 27}
    no_vintage = tuple(msgspec.structs.replace(b, vintage=None) for b in one_year.blocks)
    assert vintages_of(msgspec.structs.replace(one_year, blocks=no_vintage)) == {2015: 27}
    other = msgspec.structs.replace(
        one_year.decision, monitoring_period=Period(date(2015, 4, 1), date(2016, 3, 31))
    )
    blockless = msgspec.structs.replace(one_year, blocks=no_vintage, decision=other)
    assert vintages_of(blockless) == {}


def test_a_mirror_signature_ignores_block_order_but_not_kind() -> None:
    """A transaction and the ITMO action reporting it pair up whatever their block order."""
    blocks = issuance("JP-ISS-ID003-2017-1").blocks
    assert mirror_sig("use", blocks) == mirror_sig("use", tuple(reversed(blocks)))
    assert mirror_sig("use", blocks) != mirror_sig("voluntary_cancellation", blocks)
    assert mirror_sig("use", blocks) != mirror_sig("use", blocks[:1])


def test_a_mirror_is_matched_only_one_to_one() -> None:
    """One retirement and one use with the same blocks pair up; a second of either does
    not, until it goes again."""
    sig = mirror_sig("use", issuance("JP-ISS-ID002-2015-1").blocks)
    tx, tx2, use = (Slot("transaction", "JP/1", 1), Slot("transaction", "JP/2", 2),
                    Slot("itmo_action", "JP/U", 3))  # fmt: skip
    mirror = Mirror()
    mirror.change("txs", sig, tx, +1)
    assert mirror.unmatched == {sig}
    mirror.change("actions", sig, use, +1)
    assert mirror.unmatched == set()
    mirror.change("txs", sig, tx2, +1)
    assert mirror.unmatched == {sig}
    mirror.change("txs", sig, tx2, -1)
    assert mirror.unmatched == set()
    mirror.change("txs", sig, tx, -1)
    mirror.change("actions", sig, use, -1)
    assert mirror.unmatched == set()
