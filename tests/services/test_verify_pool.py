"""``services/verify_pool.py``: signatures of a large batch checked in worker processes
give the very answers ``verify_record`` gives in process: each good record's
verification, each bad record's error (same class, message and place), revocation
judged at receipt; small batches never start a worker, and are verified off the event
loop when worth a thread; ``close`` ends the workers.
Concurrent pushes of many partnerships are coalesced into shared dispatches, each
answered with its own verdicts (``tests/services/test_verify_coalescing.py``)."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import PrivateKey, record_id, sign_record
from jcm_sync.core.records import decode_record
from jcm_sync.core.trust import ROLES, TrustRoot, Verification, verify_record
from jcm_sync.errors import (
    AuthorityError,
    EnvelopeFormatError,
    JcmSyncError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
)
from jcm_sync.services import verify_pool
from jcm_sync.services.sample import signed_issuances
from jcm_sync.services.verify_pool import (
    MIN_POOLED_BATCH,
    ON_THREAD_FROM,
    VerifyPool,
    check_envelopes,
    root_keys,
)
from tests.builders import NOW, build_root

PID = "JP-MN"
JP, MN, STRANGER = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
ROOT = build_root(PID, {"JP": JP, "MN": MN})
CREATED = NOW - timedelta(hours=2)


@pytest.fixture(scope="module")
def batch() -> list[bytes]:
    envelopes, _ = signed_issuances(PID, "MN", MN, MIN_POOLED_BATCH + 36, CREATED)
    return envelopes


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifyPool]:
    """Two workers, shared by this module's tests (spawning them takes a second)."""
    p = VerifyPool(workers=2)
    yield p
    p.close()


def outcome(verify: Callable[[bytes], Verification], raw: bytes) -> tuple[object, ...]:
    """What a verify function answers for ``raw``: its verification's facts, or its error's
    class, message and place."""
    try:
        v = verify(raw)
    except JcmSyncError as exc:
        return (type(exc), exc.message, exc.where)
    return (v.record_id, v.kind, v.record, v.signers, v.required_nodes, v.endorsed_by)


def in_process(
    root: TrustRoot, at: dict[str, datetime] | None = None
) -> Callable[[bytes], tuple[object, ...]]:
    """The reference: ``outcome`` of ``verify_record`` called in this process."""

    def verify(raw: bytes) -> Verification:
        return verify_record(root, raw, NOW, received=(at or {}).get(record_id(raw)))

    return lambda raw: outcome(verify, raw)


# --- ways to spoil an envelope ----------------------------------------------------------


def compact(doc: object) -> bytes:
    """JSON as the envelopes are written (canonical form: compact, keys in order)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def other_signature(raw: bytes, other: bytes) -> bytes:
    doc, donor = json.loads(raw), json.loads(other)
    doc["signatures"][0]["sig"] = donor["signatures"][0]["sig"]
    return compact(doc)


def changed_payload(raw: bytes, other: bytes) -> bytes:
    doc = json.loads(raw)
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["amount"] += 1
    doc["payload"] = base64.b64encode(compact(payload)).decode()
    return compact(doc)


def strangers_signature(raw: bytes, other: bytes) -> bytes:
    return sign_record(decode_record(base64.b64decode(json.loads(raw)["payload"])), [STRANGER])


def not_an_envelope(raw: bytes, other: bytes) -> bytes:
    return b'{"payload": 1}'


SPOILERS = {
    "another-records-signature": (other_signature, SignatureError),
    "payload-changed-after-signing": (changed_payload, SignatureError),
    "signed-by-an-unknown-key": (strangers_signature, UnknownKeyError),
    "not-an-envelope": (not_an_envelope, EnvelopeFormatError),
}


# --- tests ------------------------------------------------------------------------------


async def test_a_pooled_batch_is_verified_as_in_process(
    pool: VerifyPool, batch: list[bytes]
) -> None:
    """Rules 1-2 and 5: every record's verification is the in-process one, and the
    batch's signatures were checked in worker processes."""
    before = set(multiprocessing.active_children())
    verify = await pool.verifier(ROOT, batch, NOW)
    assert set(multiprocessing.active_children()) - before  # workers ran
    assert (pool.pooled_records, pool.inline_records, pool.dispatches) == (len(batch), 0, 1)
    reference = in_process(ROOT)
    for raw in batch:
        assert outcome(verify, raw) == reference(raw)
    assert outcome(verify, batch[0])[0] == record_id(batch[0])


@pytest.mark.parametrize("spoil", SPOILERS, ids=list(SPOILERS))
async def test_a_spoiled_record_is_refused_with_the_same_error(
    pool: VerifyPool, batch: list[bytes], spoil: str
) -> None:
    """Rule 2: the worker's refusal is rebuilt as the very error raised in process."""
    make, error = SPOILERS[spoil]
    bad = make(batch[10], batch[11])
    mixed = [*batch[:10], bad, *batch[11:]]
    verify = await pool.verifier(ROOT, mixed, NOW)
    expected = in_process(ROOT)(bad)
    assert expected[0] is error
    assert outcome(verify, bad) == expected
    with pytest.raises(error):
        verify(bad)
    assert outcome(verify, batch[12]) == in_process(ROOT)(batch[12])  # the rest still pass


async def test_revocation_is_judged_at_receipt(pool: VerifyPool, batch: list[bytes]) -> None:
    """Rule 6: after a key's revocation, new records of it are refused, those received
    before it (``received``) still verify, as in process."""
    revoked_root = build_root(
        PID, {"JP": JP, "MN": MN}, revoked={MN.key_id: NOW - timedelta(hours=1)}
    )
    held = {record_id(raw): NOW - timedelta(hours=1, minutes=30) for raw in batch[:5]}
    verify = await pool.verifier(revoked_root, batch, NOW, held)
    reference = in_process(revoked_root, held)
    for raw in batch:
        assert outcome(verify, raw) == reference(raw)
    assert outcome(verify, batch[0])[0] == record_id(batch[0])
    assert outcome(verify, batch[5])[0] is RevokedKeyError


async def test_pushes_under_other_roots_in_one_dispatch_keep_their_own_verdicts(
    pool: VerifyPool, batch: list[bytes]
) -> None:
    """Rule 14: each push is judged under its own root, whatever shares its dispatch:
    records of two partnerships, under a root whose key lacks the kind's role, one that
    revoked the signer, and one that holds them; every answer is the in-process one."""
    other = build_root("JP-ID", {"JP": JP, "ID": MN})  # MN's key as Indonesia's
    no_role = build_root(PID, {"JP": JP, "MN": MN}, roles={"MN": ROLES - {"issuance"}})
    revoked = build_root(PID, {"JP": JP, "MN": MN}, revoked={MN.key_id: CREATED})
    of_id, _ = signed_issuances("JP-ID", "ID", MN, 20, CREATED)
    mixed = [*batch[:30], *of_id]
    roots = [ROOT, other, no_role, revoked]
    pooled = pool.pooled_records
    verifies = await asyncio.gather(*(pool.verifier(r, mixed, NOW) for r in roots))
    assert pool.pooled_records == pooled + len(roots) * len(mixed)
    kinds: set[object] = set()
    for trust_root, verify in zip(roots, verifies, strict=True):
        reference = in_process(trust_root)
        for raw in mixed:
            assert outcome(verify, raw) == reference(raw)
            kinds.add(outcome(verify, raw)[0])
    assert {AuthorityError, RevokedKeyError} <= kinds  # refusals of each kind were seen
    assert outcome(verifies[0], batch[0])[0] == record_id(batch[0])
    assert outcome(verifies[1], of_id[0])[0] == record_id(of_id[0])


async def test_a_record_outside_the_batch_is_checked_in_process(
    pool: VerifyPool, batch: list[bytes]
) -> None:
    """The store may ask about an envelope the pool never saw: it is verified anyway."""
    verify = await pool.verifier(ROOT, batch[:-1], NOW)
    assert outcome(verify, batch[-1]) == in_process(ROOT)(batch[-1])
    bad = changed_payload(batch[-1], b"")
    assert outcome(verify, bad) == in_process(ROOT)(bad)


@pytest.mark.parametrize(
    ("workers", "size"), [(2, MIN_POOLED_BATCH - 1), (1, MIN_POOLED_BATCH + 36)],
    ids=["small-batch", "one-worker"],
)  # fmt: skip
async def test_no_worker_starts_when_it_is_not_worth_it(
    batch: list[bytes], workers: int, size: int
) -> None:
    """Rule 3: a small batch, or a pool of one, is verified in process, no process started."""
    pool = VerifyPool(workers=workers)
    try:
        before = set(multiprocessing.active_children())
        verify = await pool.verifier(ROOT, batch[:size], NOW)
        assert set(multiprocessing.active_children()) == before
        assert pool._pool is None
        assert (pool.inline_records, pool.pooled_records, pool.dispatches) == (size, 0, 0)
        assert outcome(verify, batch[0]) == in_process(ROOT)(batch[0])
    finally:
        pool.close()


@pytest.mark.parametrize("size", [ON_THREAD_FROM - 1, ON_THREAD_FROM, MIN_POOLED_BATCH - 1])
async def test_an_in_process_batch_worth_a_thread_is_verified_off_the_loop(
    batch: list[bytes], size: int
) -> None:
    """Rule 13: from ON_THREAD_FROM envelopes on, a batch verified in process is verified
    on another thread than the event loop's, with the same verdicts; fewer, inline."""
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    def verify(raw: bytes) -> Verification:
        seen.add(threading.get_ident())
        return verify_record(ROOT, raw, NOW)

    done = await verify_pool.in_process(verify, batch[:size], size)
    assert len(seen) == 1
    assert (seen == {loop_thread}) == (size < ON_THREAD_FROM)
    for raw in batch[:size]:
        assert outcome(done, raw) == in_process(ROOT)(raw)


@pytest.mark.parametrize("spoil", SPOILERS, ids=list(SPOILERS))
async def test_an_in_process_batch_answers_as_verify_record(batch: list[bytes], spoil: str) -> None:
    """Rule 15: a batch verified in process (the lean check and the batch's judge) gives
    ``verify_record``'s verdicts: a spoiled record's error, a revoked key's records
    refused unless held from before the revocation, the rest accepted."""
    make, error = SPOILERS[spoil]
    bad = make(batch[3], batch[4])
    small = [*batch[:3], bad, *batch[4:20]]
    revoked_root = build_root(
        PID, {"JP": JP, "MN": MN}, revoked={MN.key_id: NOW - timedelta(hours=1)}
    )
    held = {record_id(raw): NOW - timedelta(hours=1, minutes=30) for raw in batch[:2]}
    seen: list[object] = []
    for trust_root, at in ((ROOT, None), (revoked_root, held)):
        pool = VerifyPool(workers=1)
        verify = await pool.verifier(trust_root, small, NOW, at)
        reference = in_process(trust_root, at)
        for raw in small:
            assert outcome(verify, raw) == reference(raw)
            seen.append(outcome(verify, raw)[0])
        assert pool.inline_records == len(small)
        pool.close()
    assert seen.count(error) == 2
    assert seen.count(RevokedKeyError) == len(small) - 3  # all but the bad and the held
    assert seen[:3] == [record_id(raw) for raw in small[:3]]


async def test_close_ends_the_workers_and_a_later_batch_starts_new_ones(
    batch: list[bytes],
) -> None:
    """``close`` waits for the workers to exit; the pool can be used again after it."""
    pool = VerifyPool(workers=2)
    before = set(multiprocessing.active_children())
    await pool.verifier(ROOT, batch, NOW)
    workers = set(multiprocessing.active_children()) - before
    assert workers
    pool.close()
    assert all(not w.is_alive() for w in workers)
    assert pool._pool is None
    verify = await pool.verifier(ROOT, batch, NOW)
    assert outcome(verify, batch[1]) == in_process(ROOT)(batch[1])
    pool.close()
    pool.close()  # twice is harmless


def test_the_worker_function_answers_compactly_or_with_the_error() -> None:
    """Rules 1 and 7: per envelope, ("ok", record id, leaf hash, payload type, payload,
    signers' key ids): the opened envelope and its hashes, no signature; or ("error",
    class, message, where). Equal types and key-id tuples are one object each."""
    envelopes, _ = signed_issuances(PID, "MN", MN, 3, CREATED)
    bad = other_signature(envelopes[0], envelopes[1])
    ok, refused, again = check_envelopes(root_keys(ROOT), [envelopes[1], bad, envelopes[2]])
    doc = json.loads(envelopes[1])
    assert ok[:3] == ("ok", record_id(envelopes[1]), merkle.leaf_hash(envelopes[1]))
    assert ok[3] == doc["payloadType"]
    assert ok[4] == base64.b64decode(doc["payload"])
    assert ok[5] == (MN.key_id,)
    assert len(ok) == len(again) == 6
    assert again[3] is ok[3]
    assert again[5] is ok[5]
    assert refused[:2] == ("error", "SignatureError")
    assert refused[3] == "signatures[0]"


async def test_leaf_hashes_come_from_the_workers(pool: VerifyPool, batch: list[bytes]) -> None:
    """Rule 7: the verifications carry the workers' record ids and leaf hashes."""
    verify = await pool.verifier(ROOT, batch, NOW)
    assert verify.leaf_hashes(batch) == [merkle.leaf_hash(raw) for raw in batch]
    assert [verify(raw).record_id for raw in batch] == [record_id(raw) for raw in batch]


async def test_an_expired_root_refuses_in_process_before_any_signature(
    batch: list[bytes],
) -> None:
    """Rule 9: an expired root refuses every record as ``verify_record`` does, and no
    worker starts for it."""
    expired = build_root(PID, {"JP": JP, "MN": MN}, expires=NOW - timedelta(seconds=1))
    pool = VerifyPool(workers=2)
    try:
        verify = await pool.verifier(expired, batch, NOW)
        assert pool._pool is None
        assert outcome(verify, batch[0]) == in_process(expired)(batch[0])
        assert outcome(verify, batch[0])[0].__name__ == "ExpiredError"  # type: ignore[attr-defined]
    finally:
        pool.close()


def test_tune_gc_freezes_start_up_objects_and_raises_only_the_young_threshold() -> None:
    """Rule 11, in a fresh interpreter (the collector's settings are process-wide)."""
    code = (
        "import gc, json; gc.set_threshold(700, 7, 9)\n"
        "from jcm_sync.services.verify_pool import GC_THRESHOLD, tune_gc\n"
        "assert gc.get_freeze_count() == 0; tune_gc()\n"
        "print(json.dumps([gc.get_threshold(), gc.get_freeze_count(), GC_THRESHOLD]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    threshold, frozen, wanted = json.loads(out.stdout)
    assert threshold == [wanted, 7, 9]
    assert wanted > 700
    assert frozen > 1000  # the modules imported by then: not scanned again


def test_the_lean_path_answers_as_verify_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 12: the workers' answers for good records, each spoiled one and an unknown
    key's are exactly those of ``verify_envelope`` on every envelope."""
    envelopes, _ = signed_issuances(PID, "MN", MN, 3, CREATED)
    mixed = [envelopes[0], *(spoil(envelopes[1], envelopes[2]) for spoil, _ in SPOILERS.values())]
    mixed += [envelopes[2], envelopes[0]]
    lean = check_envelopes(root_keys(ROOT), mixed)
    monkeypatch.setattr(verify_pool, "accepted_by_ed25519", lambda raw, keys: None)
    assert check_envelopes(root_keys(ROOT), mixed) == lean
    assert [o[0] for o in lean] == ["ok", "error", "error", "error", "error", "ok", "ok"]
