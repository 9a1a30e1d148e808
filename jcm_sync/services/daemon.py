"""The schedule both daemons run on: the agent's push, pull, anti-entropy and
reconciliation (``services/agent.py``), the hub's reconciliation of every partnership
(``services/hub.py``).

Why this module exists: both build an APScheduler 3 ``AsyncIOScheduler`` with interval
jobs under the same rules, so the rules live here once.

Rules:

1. Times are UTC; every job runs once at start, then every ``seconds`` with up to
   ``jitter`` seconds of random delay, so nodes started together do not call at once.
2. ``max_instances=1`` and coalescing: a job never overlaps itself, and runs missed
   while it was busy (or the loop was blocked) collapse into one.
3. A run later than ``misfire_grace_time`` seconds is skipped (APScheduler's default,
   one second, unless the job says otherwise); the next interval runs it.
4. A scheduler is stopped paused first (``stop_scheduler``): its shutdown takes effect one
   event-loop step later, and a wake-up due in that step would otherwise make a task for
   each due job, which the shutdown cancels and APScheduler logs as an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class IntervalJob:
    """One job of a daemon's schedule."""

    id: str
    seconds: float
    run: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()
    #: rule 3: None keeps APScheduler's default
    misfire_grace_time: int | None = None


def interval_scheduler(jobs: Iterable[IntervalJob], *, jitter: float) -> Any:
    """An ``AsyncIOScheduler`` (not started) running ``jobs`` by rules 1-3."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler(timezone=UTC)
    for job in jobs:
        grace = (
            {} if job.misfire_grace_time is None else {"misfire_grace_time": job.misfire_grace_time}
        )
        scheduler.add_job(
            job.run,
            "interval",
            seconds=job.seconds,
            jitter=jitter,
            args=list(job.args),
            id=job.id,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            **grace,
        )
    return scheduler


def stop_scheduler(scheduler: Any) -> None:
    """Rule 4: pause, then shut down without waiting (the running jobs are cancelled)."""
    scheduler.pause()
    scheduler.shutdown(wait=False)
