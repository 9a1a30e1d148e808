"""Stored records by full or short id, shown with their envelope, and endorsements of
the counterpart's Joint Committee records (``services.stored_records``), on Japan's hub
and Indonesia's agent holding the Japan-Indonesia partnership in SQLite."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import JC_KINDS, EndorsementRecord, decode_record
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.services import stored_records as sr
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.seeded import Seeded, seed


@pytest.fixture
async def seeded(tmp_path: Path) -> Seeded:
    return await seed(tmp_path / "net")


def _kind(env: bytes) -> str:
    return decode_record(open_envelope(env).payload).kind


def _first(logs: list[bytes], kind: str) -> bytes:
    return next(e for e in logs if _kind(e) == kind)


async def test_a_full_and_a_short_id_name_the_same_record(seeded: Seeded) -> None:
    env = _first(seeded.logs["ID"], "issuance")
    rid = record_id(env)
    jp = await seeded.open("JP")
    try:
        full = await sr.resolve_id(jp, rid)
        short = await sr.resolve_id(jp, rid[:12].upper())
        assert full == short
        assert full.log == jp.logs(PID).replica
        assert full.kind == "issuance"
    finally:
        await jp.close()


@pytest.mark.parametrize(
    ("text", "reason"),
    [("abc", "too short"), ("xyz12345678", "not a record id"), ("0" * 65, "longer than")],
)
async def test_malformed_ids_are_refused(seeded: Seeded, text: str, reason: str) -> None:
    jp = await seeded.open("JP")
    try:
        with pytest.raises(BadDataError, match=reason):
            await sr.resolve_id(jp, text)
    finally:
        await jp.close()


async def test_an_unknown_id_is_not_found(seeded: Seeded) -> None:
    held = {record_id(e) for node in seeded.logs.values() for e in node}
    absent = next(p for p in (f"{n:08x}" for n in range(1000)) if not any(
        r.startswith(p) for r in held))  # fmt: skip
    jp = await seeded.open("JP")
    try:
        with pytest.raises(NotFoundError, match=f"no record id starts with {absent}"):
            await sr.resolve_id(jp, absent)
        with pytest.raises(NotFoundError, match="no record"):
            await sr.resolve_id(jp, absent * 8)
    finally:
        await jp.close()


async def test_an_ambiguous_prefix_lists_the_records_it_matches(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sorted(record_id(e) for node in seeded.logs.values() for e in node)
    assert len(ids) > 16  # so two of them share at least their first digit
    pairs = list(itertools.pairwise(ids))
    best, other = max(pairs, key=lambda p: len(_common(*p)))
    prefix = _common(best, other)
    # eight-digit collisions are rare among a few dozen ids: allow shorter prefixes here
    monkeypatch.setattr(sr, "MIN_SHORT_ID", len(prefix))
    jp = await seeded.open("JP")
    try:
        with pytest.raises(BadDataError, match="ambiguous") as info:
            await sr.resolve_id(jp, prefix)
        assert best[:16] in str(info.value)
        assert other[:16] in str(info.value)
        assert info.value.next_step == "give more digits of the record id"
        assert (await sr.resolve_id(jp, best[: len(prefix) + 1])).record_id == best
    finally:
        await jp.close()


def _common(a: str, b: str) -> str:
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return a[:n]


async def test_show_gives_fields_envelope_signers_roles_log_and_index(seeded: Seeded) -> None:
    env = _first(seeded.logs["ID"], "issuance_decision")
    index = seeded.logs["ID"].index(env)
    jp = await seeded.open("JP")
    try:
        rec = await sr.show(jp, record_id(env)[:10])
        root = jp.logs(PID).root
    finally:
        await jp.close()
    assert rec.record == decode_record(open_envelope(env).payload)
    assert rec.payload_type == "application/vnd.jcm-sync.issuance_decision+json"
    assert rec.envelope == env
    assert (rec.log.node, rec.own, rec.index) == ("ID", False, index)
    sigs = open_envelope(env).signatures
    assert [s.keyid for s in rec.signers] == [s.keyid for s in sigs]
    for s in rec.signers:
        key = root.key(s.keyid)
        assert key is not None
        assert s.node == key.node
        assert "issuance_decision" in s.roles
    data = rec.to_builtins()
    assert data["record"]["total_notified"] == rec.record.total_notified  # type: ignore[union-attr]
    assert data["log"] == {"node": "ID", "origin": rec.log.origin, "own": False, "index": index}
    assert data["jc_record"] is True


async def test_show_says_which_secretariat_a_jc_record_still_needs(seeded: Seeded) -> None:
    assert seeded.unendorsed
    jp = await seeded.open("JP")
    try:
        rec = await sr.show(jp, seeded.unendorsed[0])
    finally:
        await jp.close()
    assert rec.kind in JC_KINDS
    assert rec.missing == ("JP",)
    assert rec.to_builtins()["effective"] is False


async def test_endorse_signs_an_endorsement_of_the_stored_kind(seeded: Seeded) -> None:
    targets = seeded.unendorsed
    jp = await seeded.open("JP")
    try:
        size = (await jp.store.tree_head(jp.logs(PID).own)).size
        done = await sr.endorse(jp, [t[:12] for t in targets], note="JC meeting 12")
        assert [d.target.record_id for d in done] == targets
        assert all(d.endorsement_id for d in done)
        own = jp.logs(PID).own
        assert (await jp.store.tree_head(own)).size == size + len(targets)
        for d in done:
            assert d.endorsement_id is not None
            stored = decode_record(open_envelope(await jp.store.envelope(d.endorsement_id)).payload)
            assert isinstance(stored, EndorsementRecord)
            assert (stored.endorses, stored.endorsed_kind, stored.author, stored.note) == (
                d.target.record_id,
                d.target.kind,
                "JP",
                "JC meeting 12",
            )
            assert (await sr.show(jp, d.target.record_id)).missing == ()
        # a second time: nothing signed, each reported as already endorsed
        again = await sr.endorse(jp, targets)
        assert [d.endorsement_id for d in again] == [None] * len(targets)
        assert all("endorsed it in record" in d.already for d in again)
        assert (await jp.store.tree_head(own)).size == size + len(targets)
    finally:
        await jp.close()


async def test_a_co_signed_record_counts_as_already_endorsed(seeded: Seeded) -> None:
    unendorsed = set(seeded.unendorsed)
    cosigned = next(
        e for e in seeded.logs["ID"]
        if _kind(e) in JC_KINDS and record_id(e) not in unendorsed
        and len(open_envelope(e).signatures) == 2
    )  # fmt: skip
    jp = await seeded.open("JP")
    try:
        (d,) = await sr.endorse(jp, [record_id(cosigned)])
    finally:
        await jp.close()
    assert d.endorsement_id is None
    assert "JP's signature" in d.already


@pytest.mark.parametrize("case", ["own-log", "not-jc", "unknown"])
async def test_endorse_refuses_the_whole_command(seeded: Seeded, case: str) -> None:
    bad = {
        "own-log": record_id(seeded.logs["JP"][0]),
        "not-jc": record_id(_first(seeded.logs["ID"], "transaction")),
        "unknown": "0123456789abcdef" * 4,
    }[case]
    jp = await seeded.open("JP")
    try:
        own = jp.logs(PID).own
        size = (await jp.store.tree_head(own)).size
        error = NotFoundError if case == "unknown" else BadDataError
        match = {"own-log": "own log", "not-jc": "not a Joint Committee record",
                 "unknown": "no record"}[case]  # fmt: skip
        with pytest.raises(error, match=match):
            await sr.endorse(jp, [seeded.unendorsed[0], bad])
        assert (await jp.store.tree_head(own)).size == size  # nothing signed
    finally:
        await jp.close()
