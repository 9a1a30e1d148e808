"""``services/hub.py``: Japan's hub's use cases called directly, with a verified caller.

A push is checked (authorization, batch size, gap, fork, the partner's checkpoint and
every entry) before anything is stored, and answered with Japan's countersignature;
reads answer the heads, pages and proofs of both logs, and refuse positions past a
log. The hub and the partner each run on a real SQLite store (``tests/services/fakes``);
the partner's envelopes and checkpoints are real ones, signed by its own keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core import checkpoint, merkle
from jcm_sync.core import note as signed_note
from jcm_sync.core.wire import Caller, PushRequest
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    BadParameterError,
    BatchTooLargeError,
    ForbiddenError,
    ForkError,
    GapError,
    NotFoundError,
    PastLogSizeError,
    SignatureError,
)
from jcm_sync.local.status import read_status
from jcm_sync.services import hub as hub_module
from jcm_sync.services.hub import MAX_PAGE, Hub, Limits
from jcm_sync.services.in_process_hub import caller_of
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.store import LogRef
from tests.services.fakes import CC, OTHER_ROOT, PID, Pair, _flip, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


def partner(pair: Pair) -> Caller:
    """The partner node's caller, as the server finds it from a request signature."""
    return caller_of(pair.agent.logs(PID).root, pair.agent.keys.transport)


async def own_envelopes(pair: Pair) -> list[bytes]:
    """The partner's own log, as it would push it."""
    return [e.envelope for e in await pair.agent.store.entries(pair.agent.logs(PID).own)]


def partner_checkpoint(pair: Pair, envelopes: list[bytes], root: bytes | None = None) -> bytes:
    """The partner's signed checkpoint of ``envelopes`` (or of another ``root``)."""
    origin = pair.agent.logs(PID).own.origin
    real = merkle.root([merkle.leaf_hash(raw) for raw in envelopes])
    cp = checkpoint.Checkpoint(origin, len(envelopes), real if root is None else root)
    return checkpoint.sign_checkpoint(cp, pair.agent.keys.checkpoint.key)


def replica(pair: Pair) -> LogRef:
    return pair.japan.logs(PID).replica


async def held(pair: Pair) -> list[bytes]:
    return [e.envelope for e in await pair.japan.store.entries(replica(pair))]


def counted(pair: Pair, metric: str, **labels: str) -> float:
    value = pair.japan.metrics.registry.get_sample_value(metric, {"partnership": PID, **labels})
    return value or 0.0


# --- push: accepted ---------------------------------------------------------------------


async def test_a_push_is_stored_and_answered_with_japans_countersignature(pair: Pair) -> None:
    """Rules 1-5: the batch and its checkpoint are kept; the receipt verifies under both
    the partner's and Japan's checkpoint keys."""
    envs = await own_envelopes(pair)
    note = partner_checkpoint(pair, envs)
    resp = await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs, note, len(envs)))
    assert (resp.size, resp.appended) == (len(envs), len(envs))
    assert await held(pair) == envs
    assert resp.checkpoint.size == len(envs)
    assert resp.checkpoint.root == merkle.root([merkle.leaf_hash(raw) for raw in envs])
    assert resp.checkpoint.note is not None
    logs, now = pair.japan.logs(PID), pair.japan.clock()
    japan = [
        signed_note.Verifier(logs.own.origin, v.public_key)
        for v in checkpoint_verifiers(logs.root, logs.own, now)
    ]
    mine = checkpoint_verifiers(logs.root, logs.replica, now)
    for verifiers in (japan, mine):
        opened = checkpoint.open_checkpoint(
            resp.checkpoint.note, verifiers, origin=logs.replica.origin
        )
        assert opened.checkpoint.size == len(envs)
    assert counted(pair, "jcm_sync_pushes_total", outcome="accepted") == 1
    assert counted(pair, "jcm_sync_replica_lag_entries", log=CC) == 0


async def test_batches_in_order_and_a_resent_batch_are_accepted(pair: Pair) -> None:
    """Rule 2: batches continue where the replica ends; entries already held are a no-op."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    first = await pair.hub.push(caller, PID, CC, PushRequest(0, envs[:3]))
    assert (first.size, first.appended) == (3, 3)
    assert first.checkpoint.note is None  # no checkpoint yet: nothing to countersign
    again = await pair.hub.push(caller, PID, CC, PushRequest(0, envs[:4]))
    assert (again.size, again.appended) == (4, 1)
    rest = await pair.hub.push(
        caller, PID, CC, PushRequest(4, envs[4:], partner_checkpoint(pair, envs))
    )
    assert (rest.size, rest.appended) == (len(envs), len(envs) - 4)
    assert await held(pair) == envs


def counting_jobs(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The jobs the hub's SQLite store runs from now on: (function name, group weight)."""
    store = pair.japan.store
    jobs: list[tuple[str, int]] = []
    real = store._call  # type: ignore[attr-defined]

    async def counting(fn: Any, *args: Any, group: int = 0, **options: Any) -> Any:
        jobs.append((fn.__name__, group))
        return await real(fn, *args, group=group, **options)

    monkeypatch.setattr(store, "_call", counting)
    return jobs


async def test_a_push_reads_the_store_once_besides_its_append(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 0050, 0056: the fork alarm, the replica's head and its held checkpoint with
    its cosignatures in one job on SQLite's thread before the append, which also serves
    the answer of a push that closes nothing; the head the previous append left serves
    the next batch without reading it again."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    await pair.hub.push(
        caller, PID, CC, PushRequest(0, envs[:2], partner_checkpoint(pair, envs[:2]))
    )
    jobs = counting_jobs(pair, monkeypatch)
    resp = await pair.hub.push(caller, PID, CC, PushRequest(2, envs[2:4]))
    assert (resp.size, resp.appended) == (4, 2)
    assert [name for name, group in jobs if not group] == ["_view_sync"]
    assert ("_append_sync", 2) in jobs
    # the answer is the one a read after the append gives: the held checkpoint, countersigned
    assert resp.checkpoint == await pair.hub.views.read(replica(pair))
    assert (resp.checkpoint.size, resp.checkpoint.note is not None) == (2, True)


async def test_a_closing_push_reads_its_answer_after_its_append(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replica_view rule 3: a push whose checkpoint is kept answers with that checkpoint,
    read again after the append."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    await pair.hub.push(
        caller, PID, CC, PushRequest(0, envs[:2], partner_checkpoint(pair, envs[:2]))
    )
    jobs = counting_jobs(pair, monkeypatch)
    resp = await pair.hub.push(
        caller, PID, CC, PushRequest(2, envs[2:], partner_checkpoint(pair, envs))
    )
    reads = [name for name, group in jobs if not group]  # the root check reads nodes too
    assert (reads.count("_view_sync"), reads[-1]) == (2, "_view_sync")
    assert (resp.checkpoint.size, resp.checkpoint.note is not None) == (len(envs), True)
    assert resp.checkpoint == await pair.hub.views.read(replica(pair))


async def test_a_checkpoint_put_while_a_push_waits_is_in_its_answer(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replica_view rules 2-3: batch N+1 read the replica before batch N, which closes the
    catch-up, kept its checkpoint; N+1's answer carries that checkpoint, not the view it
    read before it."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    closing = PushRequest(0, envs[:2], partner_checkpoint(pair, envs[:2]))
    following = PushRequest(2, envs[2:4])
    real_write = pair.hub._write
    go = asyncio.Event()

    async def slow_write(*args: Any) -> Any:
        await go.wait()  # batch N+1 reads the replica meanwhile
        return await real_write(*args)

    monkeypatch.setattr(pair.hub, "_write", slow_write)
    first = asyncio.create_task(pair.hub.push(caller, PID, CC, closing))
    second = asyncio.create_task(pair.hub.push(caller, PID, CC, following))
    for _ in range(50):  # both have read the replica: no checkpoint held yet
        await asyncio.sleep(0.01)
    go.set()
    await first
    resp = await second
    assert resp.size == 4
    assert (resp.checkpoint.size, resp.checkpoint.note is not None) == (2, True)


async def test_status_is_written_by_closing_pushes_and_at_most_each_second_between(
    pair: Pair,
) -> None:
    """Rule 12: a non-closing push soon after a status write updates the status in
    memory only; a closing push, or one ``STATUS_EVERY`` later, writes it."""
    envs = await own_envelopes(pair)
    caller = partner(pair)

    async def stored_size() -> int:
        return (await read_status(pair.japan.store, PID)).logs[CC].local_size

    await pair.hub.push(caller, PID, CC, PushRequest(0, envs[:2]))
    assert await stored_size() == 2  # the first push writes it
    await pair.hub.push(caller, PID, CC, PushRequest(2, envs[2:3]))
    assert await stored_size() == 2  # within STATUS_EVERY: not written
    assert pair.hub._status[PID].logs[CC].local_size == 3  # but kept in memory
    pair.hub._status_written[PID] -= hub_module.STATUS_EVERY
    await pair.hub.push(caller, PID, CC, PushRequest(3, envs[3:4]))
    assert await stored_size() == 4  # a second later: written
    await pair.hub.push(caller, PID, CC, PushRequest(4, envs[4:], partner_checkpoint(pair, envs)))
    assert await stored_size() == len(envs)  # a closing push: written at once


async def test_a_checkpoint_alone_closes_a_replica_already_complete(pair: Pair) -> None:
    """An empty batch with the checkpoint of what is held is kept and countersigned."""
    envs = await own_envelopes(pair)
    await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs))
    note = partner_checkpoint(pair, envs)
    resp = await pair.hub.push(partner(pair), PID, CC, PushRequest(len(envs), [], note))
    assert (resp.size, resp.appended) == (len(envs), 0)
    assert resp.checkpoint.note is not None
    assert resp.checkpoint.note.startswith(note.split(b"\n\n")[0])
    stored = await pair.japan.store.latest_checkpoint(replica(pair))
    assert stored is not None
    assert stored.note == note


# --- push: refused ----------------------------------------------------------------------


async def test_a_push_past_the_replica_is_a_gap_naming_where_to_resume(pair: Pair) -> None:
    """Rule 2: after ``gap_wait`` a batch whose predecessor never came is refused."""
    envs = await own_envelopes(pair)
    await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs[:2]))
    with pytest.raises(GapError, match="starts at 4 but the replica holds 2") as exc:
        await pair.hub.push(partner(pair), PID, CC, PushRequest(4, envs[4:6]))
    assert exc.value.size == 2
    assert await held(pair) == envs[:2]


async def test_a_batch_waits_briefly_for_its_predecessor(pair: Pair) -> None:
    """Rule 2: a batch that overtook its predecessor is stored once the predecessor is."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    late = asyncio.create_task(pair.hub.push(caller, PID, CC, PushRequest(3, envs[3:])))
    await asyncio.sleep(0.05)
    await pair.hub.push(caller, PID, CC, PushRequest(0, envs[:3]))
    assert (await late).size == len(envs)
    assert await held(pair) == envs


async def test_a_push_cancelled_while_it_waits_leaves_the_log_unlocked(pair: Pair) -> None:
    """Rule 2's wait (ADR 0061, "Found"): a batch waiting for its predecessor is
    cancelled (its client went away) just as the log's lock is released, after its wait
    timed out while another push held the lock. The log's lock is free afterwards and
    the next push of the log is stored; with ``asyncio.wait_for`` around the wait the
    lock stayed held by the wait's own task, and every later push waited for ever."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    appended = pair.hub._appended[PID]
    late = asyncio.create_task(pair.hub.push(caller, PID, CC, PushRequest(3, envs[3:])))
    for _ in range(500):  # until it waits for its predecessor (the lock is then free)
        await asyncio.sleep(0.01)
        if appended._waiters:
            break
    assert appended._waiters
    await appended.acquire()  # another push writing: the wait times out behind it
    await asyncio.sleep(pair.hub.limits.gap_wait + 0.1)
    late.cancel()
    appended.release()
    await asyncio.wait([late], timeout=5)
    assert late.cancelled()
    assert not appended.locked()
    stored = pair.hub.push(caller, PID, CC, PushRequest(0, envs[:3]))
    assert (await asyncio.wait_for(stored, 5)).size == 3
    assert await held(pair) == envs[:3]


async def test_a_batch_over_the_limit_is_refused(pair: Pair) -> None:
    """Rule 2: more than ``max_batch`` entries in one push is 413, nothing stored."""
    envs = await own_envelopes(pair)
    small = Hub(pair.japan, Limits(max_batch=3, gap_wait=0.1))
    try:
        with pytest.raises(BatchTooLargeError, match="4 entries in one push; the limit is 3"):
            await small.push(partner(pair), PID, CC, PushRequest(0, envs[:4]))
        assert (await small.push(partner(pair), PID, CC, PushRequest(0, envs[:3]))).size == 3
    finally:
        small.close()


async def test_a_partner_may_push_only_its_own_log(pair: Pair) -> None:
    """Rule 1: Japan's log, or a log of another partnership, is forbidden."""
    envs = await own_envelopes(pair)
    caller = partner(pair)
    with pytest.raises(ForbiddenError, match="may push only its own log"):
        await pair.hub.push(caller, PID, "JP", PushRequest(0, envs[:1]))
    stranger = Caller("JP-ID", "ID", caller.keyid, caller.public_key)
    with pytest.raises(ForbiddenError, match="may read only partnership JP-ID"):
        await pair.hub.push(stranger, PID, CC, PushRequest(0, envs[:1]))
    japan_itself = Caller(PID, "JP", caller.keyid, caller.public_key)
    with pytest.raises(ForbiddenError):
        await pair.hub.push(japan_itself, PID, CC, PushRequest(0, envs[:1]))
    assert await held(pair) == []


async def test_a_push_to_a_log_stopped_by_a_fork_alarm_is_refused(pair: Pair) -> None:
    """``log_sync`` rule 1: once an alarm stops the replica, nothing more is stored."""
    envs = await own_envelopes(pair)
    await pair.japan.raise_fork(replica(pair), "a test fork")
    with pytest.raises(ForkError, match="stopped by a fork alarm"):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs))
    assert await held(pair) == []


async def test_another_entry_at_a_held_index_is_a_fork(pair: Pair) -> None:
    """Rule 2: the replica holds entry 1; a different one there raises an alarm."""
    envs = await own_envelopes(pair)
    await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs[:2]))
    with pytest.raises(ForkError):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(1, [envs[2], envs[3]]))
    assert await pair.japan.alarms.get(replica(pair).origin) is not None
    assert await held(pair) == envs[:2]


async def test_a_checkpoint_that_is_not_the_batchs_root_is_a_fork(pair: Pair) -> None:
    """Rule 3: the partner signed another root than its entries give; nothing stored,
    and the alarm keeps the offered checkpoint."""
    envs = await own_envelopes(pair)
    note = partner_checkpoint(pair, envs, root=OTHER_ROOT)
    with pytest.raises(ForkError, match="does not match the entries it sent"):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs, note))
    alarm = await pair.japan.alarms.get(replica(pair).origin)
    assert alarm is not None
    assert alarm.offered_checkpoint == note
    assert await held(pair) == []


async def test_a_checkpoint_of_another_size_is_bad_data(pair: Pair) -> None:
    """Rule 3: the checkpoint must be of the size the batch ends at."""
    envs = await own_envelopes(pair)
    note = partner_checkpoint(pair, envs[:3])
    with pytest.raises(BadDataError, match="of size 3, but the batch ends at 4"):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs[:4], note))
    assert await held(pair) == []


async def test_a_checkpoint_not_signed_by_the_partner_is_refused(pair: Pair) -> None:
    """Rule 3: its signature is checked with the partner's checkpoint keys first."""
    envs = await own_envelopes(pair)
    note = _flip(partner_checkpoint(pair, envs))
    with pytest.raises(SignatureError):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(0, envs, note))
    assert await held(pair) == []


async def test_one_tampered_entry_refuses_the_whole_batch(pair: Pair) -> None:
    """Rule 4: every entry is verified; one bad one stores nothing of the batch."""
    envs = await own_envelopes(pair)
    doc, donor = json.loads(envs[2]), json.loads(envs[3])
    doc["signatures"][0]["sig"] = donor["signatures"][0]["sig"]  # another record's signature
    tampered = json.dumps(doc, separators=(",", ":")).encode()
    bad = [*envs[:2], tampered, *envs[3:]]
    with pytest.raises(SignatureError, match="does not verify"):
        await pair.hub.push(partner(pair), PID, CC, PushRequest(0, bad))
    assert await held(pair) == []
    assert counted(pair, "jcm_sync_pushes_total", outcome="refused") == 1


# --- reads ------------------------------------------------------------------------------


async def test_state_gives_both_heads_and_clamps_have(pair: Pair) -> None:
    """Both logs' sizes, roots and checkpoints; ``have`` past Japan's log is clamped
    (rule 11) in the status kept for ``jcm-sync status``."""
    envs = await own_envelopes(pair)
    await pair.hub.push(
        partner(pair), PID, CC, PushRequest(0, envs, partner_checkpoint(pair, envs))
    )
    state = await pair.hub.state(partner(pair), PID, have=10_000)
    jp, mn = state.logs
    own_head = await pair.japan.store.tree_head(pair.japan.logs(PID).own)
    assert (jp.node, jp.size, jp.root) == ("JP", own_head.size, own_head.root)
    assert (mn.node, mn.size) == (CC, len(envs))
    assert mn.root == merkle.root([merkle.leaf_hash(raw) for raw in envs])
    assert jp.checkpoint is not None
    assert mn.checkpoint is not None
    status = await read_status(pair.japan.store, PID)
    assert status.logs["JP"].remote_size == own_head.size == pair.sizes["JP"]


async def test_state_of_another_partnership_is_forbidden(pair: Pair) -> None:
    """Rule 9: 403 whether or not the hub serves it; the own one dropped is 404."""
    caller = partner(pair)
    for pid in ("JP-ID", "JP-XX"):
        with pytest.raises(ForbiddenError):
            await pair.hub.state(Caller(PID, CC, caller.keyid, caller.public_key), pid)
    with pytest.raises(NotFoundError):
        await pair.hub.state(Caller("JP-XX", "XX", caller.keyid, caller.public_key), "JP-XX")


@pytest.mark.parametrize(("start", "limit"), [(0, 3), (2, 100), (0, 0), (5, 2)])
async def test_entries_are_served_in_pages(pair: Pair, start: int, limit: int) -> None:
    """A page from ``start`` of at most ``limit`` (at least one) entries, and the size."""
    everything = [e.envelope for e in await pair.japan.store.entries(pair.japan.logs(PID).own)]
    page = await pair.hub.entries(partner(pair), PID, "JP", start, limit)
    assert page.start == start
    assert page.size == len(everything)
    assert page.entries == everything[start : start + max(1, limit)]


async def test_a_page_is_at_most_max_page_entries(pair: Pair) -> None:
    """However large the ``limit`` asked for."""
    assert MAX_PAGE == 1000
    page = await pair.hub.entries(partner(pair), PID, "JP", 0, 10**9)
    assert len(page.entries) == min(pair.sizes["JP"], MAX_PAGE)


async def test_a_read_past_the_log_is_refused_with_its_size(pair: Pair) -> None:
    """Rule 10: a start past the size is ``past-log-size``; the size itself is an empty page."""
    size = pair.sizes["JP"]
    assert (await pair.hub.entries(partner(pair), PID, "JP", size, 10)).entries == []
    with pytest.raises(
        PastLogSizeError, match=f"start {size + 1} is past the log's size {size}"
    ) as exc:
        await pair.hub.entries(partner(pair), PID, "JP", size + 1, 10)
    assert exc.value.size == size


async def test_consistency_proofs_verify_against_the_stored_roots(pair: Pair) -> None:
    """Every (old, new) pair's proof verifies between the roots the store holds."""
    own = pair.japan.logs(PID).own
    size = pair.sizes["JP"]
    for old in range(size + 1):
        for new in range(old, size + 1):
            view = await pair.hub.consistency(partner(pair), PID, "JP", old, new)
            a = await pair.japan.store.root_at(own, old)
            b = await pair.japan.store.root_at(own, new)
            assert (view.old_size, view.new_size) == (old, new)
            assert merkle.verify_consistency(old, new, a, b, view.proof)
    latest = await pair.hub.consistency(partner(pair), PID, "JP", 1, None)
    assert latest.new_size == size


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        (3, 2, BadParameterError, "old 3 is larger than new 2"),
        (99, None, PastLogSizeError, "old 99 is past"),
        (0, 99, PastLogSizeError, "new 99 is past"),
    ],
    ids=["old-above-new", "old-past-log", "new-past-log"],
)
async def test_impossible_consistency_proofs_are_refused(
    pair: Pair, old: int, new: int | None, error: type[Exception], message: str
) -> None:
    """Rule 10."""
    with pytest.raises(error, match=message):
        await pair.hub.consistency(partner(pair), PID, "JP", old, new)


async def test_inclusion_proofs_verify_for_every_entry(pair: Pair) -> None:
    """Each entry's proof verifies under the log's root, at the full size."""
    own = pair.japan.logs(PID).own
    head = await pair.japan.store.tree_head(own)
    for e in await pair.japan.store.entries(own):
        view = await pair.hub.inclusion(partner(pair), PID, "JP", e.index, None)
        assert view.leaf_hash == merkle.leaf_hash(e.envelope)
        assert merkle.verify_inclusion(view.leaf_hash, e.index, head.size, view.proof, head.root)


@pytest.mark.parametrize(
    ("index", "size", "error"),
    [(99, None, PastLogSizeError), (3, 3, BadParameterError), (0, 99, PastLogSizeError)],
    ids=["index-past-log", "index-not-below-size", "size-past-log"],
)
async def test_impossible_inclusion_proofs_are_refused(
    pair: Pair, index: int, size: int | None, error: type[Exception]
) -> None:
    """Rule 10."""
    with pytest.raises(error):
        await pair.hub.inclusion(partner(pair), PID, "JP", index, size)


async def test_japans_checkpoint_is_signed_by_japan(pair: Pair) -> None:
    """The own log's checkpoint verifies under Japan's checkpoint keys, at its size."""
    view = await pair.hub.checkpoint(partner(pair), PID, "JP")
    logs = pair.japan.logs(PID)
    assert view.note is not None
    verifiers = checkpoint_verifiers(logs.root, logs.own, pair.japan.clock())
    opened = checkpoint.open_checkpoint(view.note, verifiers, origin=logs.own.origin)
    assert (opened.checkpoint.size, view.size) == (pair.sizes["JP"], pair.sizes["JP"])


async def test_the_hub_runs_only_as_japan(pair: Pair) -> None:
    """A partner's node cannot be made a hub."""
    with pytest.raises(AuthorityError, match="runs as node JP, not MN"):
        Hub(pair.agent)
