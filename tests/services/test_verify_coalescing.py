"""``services/verify_pool.py`` rule 3 at the scale of the fan-in: 31 partnerships pushing
two batches of 50 each at once, and pages of the largest batch a push may carry, are
gathered into a few shared dispatches over every worker; each push is answered with
its own verdicts, under its own partnership's keys, and one push's bad record refuses
that push only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import SignatureError, UnknownKeyError
from jcm_sync.services.hub import Limits
from jcm_sync.services.log_sync import VerifiedBatch
from jcm_sync.services.sample import PARTNERS, signed_issuances
from jcm_sync.services.verify_pool import VerifyPool
from tests.builders import NOW, build_root
from tests.services.test_verify_pool import in_process, other_signature, outcome

JP = PrivateKey.generate()
CREATED = NOW - timedelta(hours=2)
BATCH = 50
MAX_BATCH = Limits().max_batch


class Partner:
    """One partnership's root and two batches of its partner's records."""

    def __init__(self, cc: str, records: int = 2 * BATCH) -> None:
        self.cc, self.pid, self.key = cc, f"JP-{cc}", PrivateKey.generate()
        self.root: TrustRoot = build_root(self.pid, {"JP": JP, cc: self.key})
        self.envelopes, _ = signed_issuances(self.pid, cc, self.key, records, CREATED)

    def batches(self, size: int = BATCH) -> list[list[bytes]]:
        e = self.envelopes
        return [e[i : i + size] for i in range(0, len(e), size)]


@pytest.fixture(scope="module")
def partners() -> list[Partner]:
    return [Partner(cc) for cc in PARTNERS]


@pytest.fixture
def pool() -> Iterator[VerifyPool]:
    p = VerifyPool(workers=2)
    yield p
    p.close()


def assert_as_in_process(root: TrustRoot, verify: VerifiedBatch, batch: list[bytes]) -> None:
    reference = in_process(root)
    for raw in batch:
        assert outcome(verify, raw) == reference(raw)


async def test_the_fan_in_is_coalesced_and_each_push_gets_its_own_answers(
    pool: VerifyPool, partners: list[Partner]
) -> None:
    """31 partnerships x 2 batches of 50 in flight: far fewer dispatches than pushes, all
    3,100 records on the workers, every push's answers those of its own root."""
    assert len(partners) == 31
    pushes = [(p.root, b) for p in partners for b in p.batches()]
    verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
    assert pool.pooled_records == 31 * 2 * BATCH
    assert pool.dispatches <= len(pushes) // 4, pool.dispatches
    for (root, batch), verify in zip(pushes, verifies, strict=True):
        assert_as_in_process(root, verify, batch)


async def test_a_bad_record_refuses_only_its_own_push(
    pool: VerifyPool, partners: list[Partner]
) -> None:
    """A spoiled signature in one push, and a record signed by another partnership's key
    in a second (whose key travels in the same dispatch): each refuses that record of its
    own push only; every other push verifies whole."""
    pushes = [(p.root, list(b)) for p in partners for b in p.batches()]
    spoiled_at, stranger_at = 7, 20
    root, batch = pushes[spoiled_at]
    batch[3] = other_signature(batch[3], batch[4])
    foreign = partners[0].envelopes[0]  # MN's record, pushed into another partnership
    pushes[stranger_at][1][5] = foreign
    verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
    assert pool.dispatches < len(pushes)
    with pytest.raises(SignatureError):
        verifies[spoiled_at](batch[3])
    with pytest.raises(UnknownKeyError):
        verifies[stranger_at](foreign)
    for n, ((root, batch), verify) in enumerate(zip(pushes, verifies, strict=True)):
        for raw in batch:
            if (n, raw) in ((spoiled_at, batch[3]), (stranger_at, foreign)):
                continue
            verify(raw)  # nothing else is refused
        assert_as_in_process(root, verify, batch)


async def test_pages_of_the_largest_batch_share_the_workers_with_small_pushes(
    pool: VerifyPool, partners: list[Partner]
) -> None:
    """Two pushes of the largest batch at once with the 31 small ones: every record goes
    to the workers and each push is answered as in process."""
    big = Partner("MN", records=2 * MAX_BATCH)
    pushes = [(big.root, b) for b in big.batches(MAX_BATCH)]
    pushes += [(p.root, p.batches()[0]) for p in partners]
    verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
    assert pool.pooled_records == 2 * MAX_BATCH + 31 * BATCH
    for (root, batch), verify in zip(pushes, verifies, strict=True):
        assert_as_in_process(root, verify, batch)


async def test_a_push_that_goes_away_while_waiting_leaves_the_others_answered(
    partners: list[Partner],
) -> None:
    """A push cancelled while it waits for the window (its client went away) is dropped
    from the dispatch; the pushes waiting with it are answered as before."""
    pool = VerifyPool(workers=2, max_wait=0.05, flush_at=10_000)
    try:
        pushes = [(p.root, p.batches()[0]) for p in partners[:4]]
        tasks = [asyncio.ensure_future(pool.verifier(r, b, NOW)) for r, b in pushes]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert pool.pooled_records == 3 * BATCH
        for n in (0, 2, 3):
            verify = done[n]
            assert isinstance(verify, VerifiedBatch)
            assert_as_in_process(pushes[n][0], verify, pushes[n][1])
    finally:
        pool.close()


async def test_small_pushes_together_under_the_minimum_stay_in_process(
    partners: list[Partner],
) -> None:
    """Rule 3: what is waiting when the window closes, under the minimum in all, is
    verified in-process: no worker starts."""
    pool = VerifyPool(workers=2)
    try:
        pushes = [(p.root, p.batches()[0][:10]) for p in partners[:3]]
        verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
        assert pool._pool is None
        assert pool.dispatches == 0
        for (root, batch), verify in zip(pushes, verifies, strict=True):
            assert_as_in_process(root, verify, batch)
    finally:
        pool.close()


async def test_a_worker_that_dies_costs_no_push(partners: list[Partner]) -> None:
    """Rule 10: the pushes of a dispatch whose worker was killed are verified in-process
    (answered as ever), and the next dispatch starts new workers."""
    pool = VerifyPool(workers=2)
    try:
        pushes = [(p.root, p.batches()[0]) for p in partners[:4]]
        await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
        assert pool._pool is not None
        first = pool._pool
        for proc in list(first._processes.values()):
            proc.kill()
        verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
        for (root, batch), verify in zip(pushes, verifies, strict=True):
            assert_as_in_process(root, verify, batch)
        verifies = await asyncio.gather(*(pool.verifier(r, b, NOW) for r, b in pushes))
        assert pool._pool is not None
        assert pool._pool is not first  # new workers
        for (root, batch), verify in zip(pushes, verifies, strict=True):
            assert_as_in_process(root, verify, batch)
    finally:
        pool.close()
