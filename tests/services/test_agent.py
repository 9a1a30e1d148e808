"""``services/agent.py``: the partner agent's job through a real ``Hub`` in process.

Push batching (size, bytes, window, the checkpoint on the last batch), pull paging with
a consistency proof per page, anti-entropy in one round trip, resuming after a restart,
progress callbacks, and the daemon's back-off: exponential after a failure, at least the
hub's ``Retry-After`` after a refusal carrying it, for every exchange job; a cancellation
is a failure unless it is the shutdown. The fork branches are ``test_agent_forks.py``'s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from jcm_sync.core.wire import (
    ConsistencyProofView,
    EntriesPage,
    PartnershipState,
    Problem,
    PushRequest,
    PushResponse,
    encoder,
)
from jcm_sync.errors import JcmSyncError, PeerRefusedError, TransportError
from jcm_sync.local.status import read_status
from jcm_sync.services.agent import (
    PUSH_WINDOW,
    AgentDaemon,
    Backoff,
)
from jcm_sync.services.hub_port import HubPort
from jcm_sync.store import Entry
from tests.services.fakes import CC, PID, Lie, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


@dataclass
class Watched:
    """A ``HubPort`` that forwards to ``inner`` and records each call; it can slow calls
    down (``delay``), refuse them (``fail`` by call name) or never answer (``hang``)."""

    inner: HubPort
    delay: float = 0.0
    fail: dict[str, JcmSyncError] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    @property
    def requests(self) -> int:
        return len(self.calls)

    def named(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]

    async def _go(self, name: str, args: Any, answer: Any) -> Any:
        self.calls.append((name, args))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if name in self.hang:
                await asyncio.Event().wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if name in self.fail:
                raise self.fail[name]
            return await answer()
        finally:
            self.in_flight -= 1

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        answer: PartnershipState = await self._go(
            "state", have, lambda: self.inner.state(pid, have=have)
        )
        return answer

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        answer: PushResponse = await self._go("push", req, lambda: self.inner.push(pid, node, req))
        return answer

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        answer: EntriesPage = await self._go(
            "entries", (start, limit), lambda: self.inner.entries(pid, node, start, limit)
        )
        return answer

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        answer: ConsistencyProofView = await self._go(
            "consistency", (old, new), lambda: self.inner.consistency(pid, node, old, new)
        )
        return answer


def refusal(status: int, code: str, retry_after: float | None = None) -> PeerRefusedError:
    title = code.title().replace("-", "")
    return PeerRefusedError(Problem(type="", title=title, status=status, code=code), retry_after)


def watched(pair: Pair, **kw: Any) -> Watched:
    return Watched(pair.honest, **kw)


async def heads_agree(pair: Pair) -> bool:
    a, j = pair.agent.logs(PID), pair.japan.logs(PID)
    return (
        await pair.agent.store.tree_head(a.own) == await pair.japan.store.tree_head(j.replica)
        and await pair.agent.store.tree_head(a.replica) == await pair.japan.store.tree_head(j.own)
    )  # fmt: skip


def with_schedule(pair: Pair, **changes: Any) -> None:
    """Change the agent's ``[schedule]`` (its config is a frozen value)."""
    cfg = pair.agent.cfg
    pair.agent.cfg = msgspec.structs.replace(
        cfg, schedule=msgspec.structs.replace(cfg.schedule, **changes)
    )


# --- pure pieces ------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    """Rule 6: each delay lies in [d/2, d] for d = initial * 2^(failures-1), capped."""
    random.seed(7)
    b = Backoff(initial=1.0, maximum=10.0)
    for failures in range(1, 9):
        d = min(10.0, 2.0 ** (failures - 1))
        delay = b.failed(100.0)
        assert d / 2 <= delay <= d
        assert b.until == 100.0 + delay
        assert b.blocked(100.0 + delay - 0.001)
        assert not b.blocked(100.0 + delay)
    b.succeeded()
    assert (b.failures, b.until) == (0, 0.0)
    assert not b.blocked(0.0)


@pytest.mark.parametrize(("retry_after", "at_least"), [(4.0, 4.0), (60.0, 10.0)],
                         ids=["honoured", "capped"])  # fmt: skip
def test_backoff_waits_at_least_retry_after_up_to_the_cap(
    retry_after: float, at_least: float
) -> None:
    """Rule 8: the hub's Retry-After is a floor on the delay, up to ``maximum``."""
    b = Backoff(initial=0.5, maximum=10.0)
    assert b.failed(0.0, at_least=retry_after) == pytest.approx(at_least)


# --- push -------------------------------------------------------------------------------


async def test_push_sends_batches_with_the_checkpoint_on_the_last(pair: Pair) -> None:
    """Rule 1: batches of ``batch_size`` from the hub's size; only the last carries the
    agent's signed checkpoint; each says the source's size."""
    port = watched(pair)
    total = pair.sizes[CC]
    assert await pair.syncer(port, batch_size=4).push() == total
    pushes: list[PushRequest] = port.named("push")
    assert [p.start for p in pushes] == list(range(0, total, 4))
    assert all(len(p.entries) == min(4, total - p.start) for p in pushes)
    assert [p.checkpoint is not None for p in pushes] == [False] * (len(pushes) - 1) + [True]
    assert {p.source_size for p in pushes} == {total}
    assert await heads_agree(pair) is False  # Japan's log is not pulled yet
    rep = pair.japan.logs(PID).replica
    assert (await pair.japan.store.tree_head(rep)).size == total
    assert await pair.syncer(port).push() == 0  # nothing left: no push sent
    assert len(port.named("push")) == len(pushes)


async def test_push_reads_its_own_log_ahead_not_per_batch(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 1 (push_batches rule 2): the batches are cut from entries read ahead in
    growing chunks, not one store read of the own log per batch."""
    own = pair.agent.logs(PID).own
    reads: list[tuple[int, int | None]] = []
    real = pair.agent.store.entries

    async def counted(log: Any, start: int = 0, end: int | None = None) -> list[Entry]:
        if log == own:
            reads.append((start, end))
        return await real(log, start, end)

    monkeypatch.setattr(pair.agent.store, "entries", counted)
    port = watched(pair)
    total = pair.sizes[CC]
    assert await pair.syncer(port, batch_size=2).push() == total
    assert len(port.named("push")) == (total + 1) // 2 > 2
    # the first read holds two batches, each later one twice the one before
    ends = [min(total, 4 * (2**i - 1)) for i in range(1, len(reads) + 1)]
    assert reads == list(zip([0, *ends[:-1]], ends, strict=True))
    assert ends[-1] == total
    assert len(reads) < len(port.named("push"))


async def test_push_keeps_at_most_the_window_in_flight(pair: Pair) -> None:
    """Rule 1: the window's batches in flight at a time (``schedule.push_window``, three
    by default, ADR 0061), never more."""
    port = watched(pair, delay=0.02)
    await pair.syncer(port, batch_size=2).push()
    assert PUSH_WINDOW == pair.agent.cfg.schedule.push_window == 3
    assert len(port.named("push")) > PUSH_WINDOW
    assert port.most_in_flight == PUSH_WINDOW


async def test_push_cuts_batches_at_batch_bytes(tmp_path: Path) -> None:
    """Rule 1: a batch's body stays within ``schedule.batch_bytes``, whatever
    ``batch_size`` allows."""
    async with open_pair(tmp_path, projects=8) as pair:
        with_schedule(pair, batch_bytes=64 * 1024)
        port = watched(pair)
        assert await pair.syncer(port, batch_size=10_000).push() == pair.sizes[CC]
        pushes: list[PushRequest] = port.named("push")
        assert len(pushes) > 1
        assert all(len(encoder.encode(p)) <= 64 * 1024 for p in pushes)
        assert sum(len(p.entries) for p in pushes) == pair.sizes[CC]


async def test_push_resumes_from_what_the_hub_holds(pair: Pair) -> None:
    """Rule 5: after a restart nothing in memory is needed: the next push starts at the
    hub's replica size."""
    envs = [e.envelope for e in await pair.agent.store.entries(pair.agent.logs(PID).own)]
    await pair.honest.push(PID, CC, PushRequest(0, envs[:5]))
    port = watched(pair)
    assert await pair.syncer(port).push() == len(envs) - 5
    assert port.named("push")[0].start == 5


async def test_a_replica_without_checkpoint_gets_the_checkpoint_alone(pair: Pair) -> None:
    """Rule 1: the hub holds every entry but no checkpoint of them: the checkpoint is
    sent again with no entries, and the hub's receipt is kept in the status."""
    envs = [e.envelope for e in await pair.agent.store.entries(pair.agent.logs(PID).own)]
    await pair.honest.push(PID, CC, PushRequest(0, envs))
    port = watched(pair)
    syncer = pair.syncer(port)
    assert syncer.status.hub_receipt is None
    assert await syncer.push() == 0
    (resend,) = port.named("push")
    assert (resend.start, resend.entries, resend.source_size) == (len(envs), [], len(envs))
    assert resend.checkpoint is not None
    assert syncer.status.hub_receipt is not None
    assert syncer.status.hub_receipt.startswith(resend.checkpoint.split(b"\n\n")[0])
    assert await pair.syncer(port).push() == 0  # now held: nothing more sent
    assert len(port.named("push")) == 1


async def test_push_reports_progress_to_the_total(pair: Pair) -> None:
    """``progress("push", done, total)`` grows to the total."""
    seen: list[tuple[str, int, int]] = []
    syncer = pair.syncer(batch_size=3)
    syncer.progress = lambda task, done, total: seen.append((task, done, total))
    await syncer.push()
    total = pair.sizes[CC]
    assert {t for t, _, _ in seen} == {"push"}
    done = [d for _, d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == ("push", total, total)


# --- pull -------------------------------------------------------------------------------


async def test_pull_fetches_pages_each_proved_against_the_checkpoint(pair: Pair) -> None:
    """Rule 2: pages of ``batch_size`` from the held size, a consistency proof for each
    page short of the checkpoint's size; the replica is then Japan's log."""
    port = watched(pair)
    total = pair.sizes["JP"]
    assert await pair.syncer(port, batch_size=2).pull() == total
    assert port.named("entries") == [(s, min(2, total - s)) for s in range(0, total, 2)]
    assert port.named("consistency") == [(e, total) for e in range(2, total, 2)]
    jp, rep = pair.japan.logs(PID).own, pair.agent.logs(PID).replica
    assert await pair.agent.store.tree_head(rep) == await pair.japan.store.tree_head(jp)
    held = await pair.agent.store.latest_checkpoint(rep)
    assert held is not None
    assert held.size == total
    assert port.named("state")[-1] == total  # it told the hub what it now holds


async def test_a_second_pull_fetches_only_what_is_new(pair: Pair) -> None:
    """Rule 2: the new checkpoint is proved consistent with the one held, then only the
    entries after the held size are fetched."""
    await pair.syncer().pull()
    held = pair.sizes["JP"]
    more = await pair.more_japan()
    port = watched(pair)
    assert await pair.syncer(port, batch_size=100).pull() == more
    assert port.named("consistency")[0] == (held, held + more)
    assert port.named("entries") == [(held, more)]
    assert await pair.syncer(port).pull() == 0  # up to date: no entries asked
    assert len(port.named("entries")) == 1


async def test_pull_reports_progress_to_the_total(pair: Pair) -> None:
    """``progress("pull", done, total)`` after each page, ending at the total."""
    seen: list[tuple[str, int, int]] = []
    syncer = pair.syncer(batch_size=2)
    syncer.progress = lambda task, done, total: seen.append((task, done, total))
    await syncer.pull()
    total = pair.sizes["JP"]
    assert seen == [("pull", min(d, total), total) for d in range(2, total + 2, 2)]


async def test_a_page_that_starts_elsewhere_is_a_transport_error(pair: Pair) -> None:
    """Rule 2: a page not from where asked is nonsense, not a fork; nothing is stored."""

    with pytest.raises(TransportError, match="sent no entries from 0"):
        await pair.syncer(pair.liar(Lie.SHIFT_PAGE)).pull()
    rep = pair.agent.logs(PID).replica
    assert (await pair.agent.store.tree_head(rep)).size == 0
    assert await pair.agent.alarms.get(rep.origin) is None


# --- anti-entropy and sync_once --------------------------------------------------------


async def test_anti_entropy_syncs_what_differs_then_is_one_request(pair: Pair) -> None:
    """Rule 3: out of sync it pushes and pulls; in sync it sends one ``/state`` only."""
    port = watched(pair)
    syncer = pair.syncer(port)
    first = await syncer.anti_entropy()
    assert (first.pushed, first.pulled, first.in_sync) == (pair.sizes[CC], pair.sizes["JP"], False)
    assert first.round_trips == port.requests
    assert await heads_agree(pair)
    again = await syncer.anti_entropy()
    assert (again.pushed, again.pulled, again.in_sync, again.round_trips) == (0, 0, True, 1)
    assert port.calls[-1][0] == "state"


async def test_sync_once_records_each_job_and_raises_the_first_failure(pair: Pair) -> None:
    """Push, pull and anti-entropy all run and are recorded; the first error is raised,
    and the status file says which job failed and why."""
    port = watched(pair, fail={"push": refusal(503, "store-unavailable")})
    syncer = pair.syncer(port)
    with pytest.raises(PeerRefusedError, match="503 store-unavailable"):
        await syncer.sync_once()
    status = await read_status(pair.agent.store, PID)
    assert status.jobs["push"].failures == 1
    assert "store-unavailable" in (status.jobs["push"].last_error or "")
    assert status.jobs["anti_entropy"].failures == 1  # its own push failed the same way
    assert status.jobs["pull"].failures == 0
    assert status.jobs["pull"].last_success is not None
    rep = pair.agent.logs(PID).replica
    assert (await pair.agent.store.tree_head(rep)).size == pair.sizes["JP"]
    runs = pair.agent.metrics.registry.get_sample_value(
        "jcm_sync_job_runs_total", {"partnership": PID, "job": "pull", "outcome": "ok"}
    )
    assert runs == 1


# --- the daemon -------------------------------------------------------------------------


def job(daemon: AgentDaemon, name: str) -> Any:
    """The function the scheduler runs for ``name``."""
    return daemon.scheduler.get_job(name).func


async def test_a_refusal_with_retry_after_quiets_every_exchange_job(pair: Pair) -> None:
    """Rule 8: after a 429 with Retry-After, that job backs off at least that long and no
    exchange job sends anything before it has passed."""
    port = watched(pair, fail={"state": refusal(429, "too-many-requests", retry_after=5)})
    daemon = AgentDaemon(pair.syncer(port))
    before = time.monotonic()
    await job(daemon, "push")()
    assert daemon.backoff["push"].until >= before + 5
    assert daemon.hub_quiet_until >= before + 5
    sent = port.requests
    port.fail.clear()
    assert await job(daemon, "pull")() is None
    await job(daemon, "anti_entropy")()
    assert port.requests == sent  # quiet: nothing sent
    assert daemon.backoff["pull"].failures == 0  # not a failure of theirs
    status = await read_status(pair.agent.store, PID)
    assert status.jobs["push"].failures == 1
    assert "retry after 5 s" in (status.jobs["push"].last_error or "")


async def test_retry_after_is_honoured_only_up_to_the_cap(pair: Pair) -> None:
    """Rule 8: a Retry-After beyond ``backoff_max_seconds`` waits the cap."""
    cap = pair.agent.cfg.schedule.backoff_max_seconds
    port = watched(pair, fail={"state": refusal(503, "replay-cache-full", retry_after=cap * 50)})
    daemon = AgentDaemon(pair.syncer(port))
    before = time.monotonic()
    await job(daemon, "push")()
    after = time.monotonic()
    assert before + cap <= daemon.hub_quiet_until <= after + cap
    assert daemon.backoff["push"].until <= after + cap


async def test_a_transport_failure_backs_off_that_job_alone(pair: Pair) -> None:
    """Rule 6: an outage backs the failing job off exponentially; another job still runs,
    and success resets the back-off."""
    port = watched(pair, fail={"push": TransportError("hub unreachable")})
    daemon = AgentDaemon(pair.syncer(port))
    await job(daemon, "push")()
    b = daemon.backoff["push"]
    assert b.failures == 1
    assert b.blocked(time.monotonic())
    assert daemon.hub_quiet_until == 0.0
    await job(daemon, "pull")()  # runs: the replica is Japan's log
    rep = pair.agent.logs(PID).replica
    assert (await pair.agent.store.tree_head(rep)).size == pair.sizes["JP"]
    pushes = len(port.named("push"))
    await job(daemon, "push")()  # still backing off: not even tried
    assert len(port.named("push")) == pushes
    port.fail.clear()
    b.until = 0.0
    await job(daemon, "push")()
    assert b.failures == 0
    assert not b.blocked(time.monotonic())


async def test_exchange_jobs_take_turns(pair: Pair) -> None:
    """Rule 7: push, pull and anti-entropy run one at a time, so the agent has at most
    ``PUSH_WINDOW`` requests in flight however the schedules line up."""
    port = watched(pair, delay=0.01)
    daemon = AgentDaemon(pair.syncer(port, batch_size=2))
    await asyncio.gather(
        job(daemon, "push")(), job(daemon, "pull")(), job(daemon, "anti_entropy")()
    )
    assert port.most_in_flight <= PUSH_WINDOW
    assert await heads_agree(pair)


async def test_a_pull_that_brings_records_is_reconciled_at_once(pair: Pair) -> None:
    """Rule 6: reconciliation runs right after a pull that brought new records, and not
    after one that brought none."""
    daemon = AgentDaemon(pair.syncer())

    def reconciled() -> float:
        value = pair.agent.metrics.registry.get_sample_value(
            "jcm_sync_job_runs_total", {"partnership": PID, "job": "reconcile", "outcome": "ok"}
        )
        return value or 0.0

    await job(daemon, "pull")()
    assert reconciled() == 1
    await job(daemon, "pull")()
    assert reconciled() == 1


async def test_a_cancelled_job_is_a_failure_while_the_daemon_runs(pair: Pair) -> None:
    """Rule 9: a bare cancellation (aiohttp's timeout) is recorded and backed off; the
    job's task ends normally."""
    port = watched(pair, hang={"state"})
    daemon = AgentDaemon(pair.syncer(port))
    task = asyncio.create_task(job(daemon, "push")())
    while not port.calls:
        await asyncio.sleep(0.01)
    task.cancel()
    assert await task is None
    assert not task.cancelled()
    assert daemon.backoff["push"].failures == 1
    status = await read_status(pair.agent.store, PID)
    assert "cancelled before the hub answered" in (status.jobs["push"].last_error or "")


async def test_the_shutdown_ends_running_jobs_quietly(pair: Pair) -> None:
    """Rule 9: once ``run`` stops, a job cancelled in flight is not a failure."""
    port = watched(pair, hang={"state"})
    with_schedule(pair, jitter_seconds=0.0)
    daemon = AgentDaemon(pair.syncer(port))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    while not port.calls:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert all(b.failures == 0 for b in daemon.backoff.values())
    status = await read_status(pair.agent.store, PID)
    assert all(j.failures == 0 for j in status.jobs.values())


async def test_a_wake_up_due_as_the_shutdown_begins_makes_no_job_and_no_error(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 9: the scheduler's wake-up (its timer) runs in the same loop step as ``run``
    resuming from ``stop``, just after it. The scheduler's shutdown is itself a callback
    of the next step, so without a pause that wake-up would make every due job's task
    and the shutdown would cancel them before their first step, which the scheduler logs
    as "Error running job" (seen in a kill -9 fault run). Paused first, it makes none."""
    port = watched(pair)
    with_schedule(pair, jitter_seconds=0.0)
    daemon = AgentDaemon(pair.syncer(port))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    with caplog.at_level(logging.INFO, logger="apscheduler"):
        while not port.calls or daemon._running:  # the first runs are over
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        calls, first = len(port.calls), len(caplog.records)
        daemon.scheduler.pause()  # so that making them due wakes nothing yet
        for scheduled in daemon.scheduler.get_jobs():
            scheduled.modify(next_run_time=datetime.now(UTC))
        stop.set()  # run resumes in the next step ...
        daemon.scheduler.resume()  # ... and this wake-up right after it, in the same step
        await asyncio.wait_for(running, 10)
        await asyncio.sleep(0.05)  # any job's task ends and the scheduler hears of it
    errors = [r.getMessage() for r in caplog.records[first:] if r.levelno >= logging.ERROR]
    assert errors == []
    assert len(port.calls) == calls  # no job sent anything after the shutdown began
    assert all(b.failures == 0 for b in daemon.backoff.values())
