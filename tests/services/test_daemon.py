"""``services/daemon.py``: the schedule both daemons run on (interval jobs, run at once,
jittered, never overlapping themselves, late runs coalesced)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jcm_sync.services.daemon import IntervalJob, interval_scheduler, stop_scheduler


async def test_the_schedule_runs_each_job_at_once_and_never_twice_at_a_time() -> None:
    """``daemon.py`` rules 1-3: every job starts now, one instance, coalesced, jittered."""
    ran: list[str] = []
    started = asyncio.Event()

    async def job(name: str) -> None:
        ran.append(name)
        if len(ran) == 2:
            started.set()

    scheduler = interval_scheduler(
        [
            IntervalJob("a", 60, job, ("a",)),
            IntervalJob("b", 30, job, ("b",), misfire_grace_time=30),
        ],
        jitter=2,
    )
    scheduler.start()
    try:
        a, b = scheduler.get_job("a"), scheduler.get_job("b")
        assert (a.max_instances, a.coalesce, b.max_instances, b.coalesce) == (1, True, 1, True)
        assert (a.misfire_grace_time, b.misfire_grace_time) == (1, 30)
        assert (a.trigger.interval.total_seconds(), a.trigger.jitter) == (60, 2)
        await asyncio.wait_for(started.wait(), 10)
        assert sorted(ran) == ["a", "b"]
    finally:
        scheduler.shutdown(wait=False)


async def test_a_job_slower_than_its_interval_never_overlaps_itself() -> None:
    """Rule 2: a job due again while it still runs is not started a second time."""
    running = 0
    most = 0
    runs = 0
    done = asyncio.Event()

    async def slow() -> None:
        nonlocal running, most, runs
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.3)
        finally:
            running -= 1
            runs += 1
            if runs == 2:
                done.set()

    scheduler = interval_scheduler([IntervalJob("slow", 0.05, slow)], jitter=0)
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        scheduler.shutdown(wait=False)
    assert runs >= 2
    assert most == 1


async def test_a_job_runs_again_every_interval_with_its_arguments() -> None:
    """Rule 1: after the first run at once, the job runs again each interval, with ``args``."""
    seen: list[tuple[str, int]] = []
    thrice = asyncio.Event()

    async def job(name: str, n: int) -> None:
        seen.append((name, n))
        if len(seen) == 3:
            thrice.set()

    scheduler = interval_scheduler([IntervalJob("j", 0.05, job, ("x", 7))], jitter=0)
    scheduler.start()
    try:
        await asyncio.wait_for(thrice.wait(), 10)
    finally:
        scheduler.shutdown(wait=False)
    assert seen[:3] == [("x", 7)] * 3


def test_the_scheduler_is_returned_not_started_and_runs_in_utc() -> None:
    """The caller starts it (rule 1: times are UTC)."""

    async def job() -> None:
        return None

    scheduler = interval_scheduler([IntervalJob("j", 5, job)], jitter=0.5)
    assert not scheduler.running
    assert str(scheduler.timezone) == "UTC"
    assert [j.id for j in scheduler.get_jobs()] == ["j"]


async def test_a_stopped_schedule_makes_no_task_for_a_wake_up_due_as_it_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rule 4: a job due in the very step the scheduler stops is never started, and
    nothing is logged as a failed run (the agent's own test forces the daemon's case)."""
    ran: list[str] = []

    async def job() -> None:
        ran.append("ran")

    caplog.set_level(logging.DEBUG, logger="apscheduler")
    scheduler = interval_scheduler([IntervalJob("a", 60, job)], jitter=0)
    scheduler.start()
    stop_scheduler(scheduler)  # in the same step: the job's first run was due now
    await asyncio.sleep(0.2)
    assert not scheduler.running
    assert ran == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
