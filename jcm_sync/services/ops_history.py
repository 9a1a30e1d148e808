"""The operations console's 7-day history: lag and records appended per hour, per log.

Why this module exists: the console's partnership page charts how far each log lagged
and how many records arrived, hour by hour, over the last week. Records appended come
from the store (``log_entries.appended_at``); lag is nowhere in the store, so the ops
listener samples it while it runs and keeps one small value per partnership in the
node's state, which a backup carries and a restart keeps.

Rules:

1. **Hours.** A bucket is an hour of UTC, named by the Unix time of its start. The window
   is the ``WINDOW_HOURS`` hours ending with the current one (7 days).
2. **Records per hour** are ``store.append_counts(log, since, 3600)`` for each of the
   partnership's two logs; an hour with no entry is 0.
3. **Lag per hour** is the largest lag (entries the other side holds that this node does
   not, or the reverse; ``status_view`` rule 1) sampled in that hour, per log. A log whose
   lag is unknown (never synced) is not sampled; its hours stay empty, shown as gaps.
4. **Sampling.** ``LagSampler`` samples every ``SAMPLE_SECONDS`` while the ops listener
   runs, and the console samples at each page it renders. A sample is written only when
   it raises an hour's maximum or drops hours older than the window, so a page view costs
   no write in the common case.
5. **Stored** as ``ops/lag/<partnership>`` in the store's state (``Store.put_state``), a
   msgspec JSON value of at most ``WINDOW_HOURS`` entries per log; a value that does not
   decode is replaced, not fatal (it is a chart, not a record).
6. **Never in the way.** A sample that fails is logged and skipped; the sampler and the
   pages keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from jcm_sync.services.node import Node
from jcm_sync.services.status_view import NodeStatus, node_status
from jcm_sync.store import LogRef, Store

log = logging.getLogger("jcm_sync.services.ops_history")

HOUR: Final = 3600
WINDOW_HOURS: Final = 7 * 24
SAMPLE_SECONDS: Final = 60.0
KEY_PREFIX: Final = "ops/lag/"


class LagHistory(msgspec.Struct, forbid_unknown_fields=True):
    """Rule 5: per log (its node id), the largest lag seen in each hour (Unix start)."""

    logs: dict[str, dict[int, int]] = msgspec.field(default_factory=dict)


class LogSeries(msgspec.Struct, kw_only=True):
    """One log's hourly figures, aligned with ``Series.hours``."""

    node: str
    own: bool
    lag: list[int | None]
    appended: list[int]


class Series(msgspec.Struct, kw_only=True):
    """A partnership's last ``WINDOW_HOURS`` hours, oldest first."""

    partnership: str
    hours: list[datetime]
    logs: list[LogSeries]


def hour_of(t: datetime) -> int:
    """Rule 1: the Unix time of the start of ``t``'s hour."""
    ts = int(t.timestamp())
    return ts - ts % HOUR


def window(now: datetime) -> list[int]:
    """Rule 1: the window's hours, oldest first, ending with ``now``'s."""
    last = hour_of(now)
    return [last - HOUR * i for i in range(WINDOW_HOURS - 1, -1, -1)]


def state_key(partnership: str) -> str:
    return KEY_PREFIX + partnership


def merge_lag(history: LagHistory, node: str, lag: int, now: datetime) -> bool:
    """Rules 3 and 4: fold one sample in, drop hours before the window; True if changed."""
    changed = False
    oldest = hour_of(now) - HOUR * (WINDOW_HOURS - 1)
    for hours in history.logs.values():
        for h in [h for h in hours if h < oldest]:
            del hours[h]
            changed = True
    hours = history.logs.setdefault(node, {})
    here = hour_of(now)
    if hours.get(here, -1) < lag:
        hours[here] = lag
        changed = True
    return changed


async def read_lag(store: Store, partnership: str) -> LagHistory:
    """Rule 5: the stored lag history of a partnership (empty if none or unreadable)."""
    data = await store.get_state(state_key(partnership))
    if data is None:
        return LagHistory()
    try:
        return msgspec.json.decode(data, type=LagHistory)
    except msgspec.MsgspecError as exc:
        log.warning("lag-history-unreadable", extra={"partnership": partnership, "error": str(exc)})
        return LagHistory()


def lags_of(status: NodeStatus) -> dict[str, dict[str, int | None]]:
    """Each partnership's lag per log (node id), as ``status`` shows it."""
    return {p.partnership: {lg.node: lg.lag for lg in p.logs} for p in status.partnerships}


async def record_lag(
    store: Store, lags: Mapping[str, Mapping[str, int | None]], now: datetime
) -> int:
    """Rule 4: fold a sample (partnership -> log -> lag, ``lags_of``) into each
    partnership's history; return how many partnerships' values were written."""
    written = 0
    for pid, logs in lags.items():
        history = await read_lag(store, pid)
        changed = False
        for node, lag in logs.items():
            if lag is not None:
                changed |= merge_lag(history, node, lag, now)
        if changed:
            await store.put_state(state_key(pid), msgspec.json.encode(history))
            written += 1
    return written


async def series(
    store: Store, partnership: str, logs: Sequence[LogRef], own: str, now: datetime
) -> Series:
    """Rules 1-3: the hourly lag and records appended of ``logs`` over the window."""
    hours = window(now)
    since = datetime.fromtimestamp(hours[0], UTC)
    history = await read_lag(store, partnership)
    out = []
    for ref in logs:
        counts = {
            hour_of(t if t.tzinfo else t.replace(tzinfo=UTC)): n
            for t, n in await store.append_counts(ref, since, HOUR)
        }
        lags = history.logs.get(ref.node, {})
        out.append(
            LogSeries(
                node=ref.node,
                own=ref.node == own,
                lag=[lags.get(h) for h in hours],
                appended=[counts.get(h, 0) for h in hours],
            )
        )
    return Series(
        partnership=partnership,
        hours=[datetime.fromtimestamp(h, UTC) for h in hours],
        logs=out,
    )


async def sample(node: Node) -> NodeStatus:
    """Take the node's status now and fold its lags in (rule 4); the status is returned
    for the page that asked."""
    status = await node_status(node)
    try:
        await record_lag(node.store, lags_of(status), node.clock())
    except Exception:  # rule 6: a chart's sample never fails a page
        log.exception("lag-sample-not-recorded")
    return status


class LagSampler:
    """Rule 4: a task sampling a running node's lag every ``interval`` seconds."""

    def __init__(self, node: Node, interval: float = SAMPLE_SECONDS) -> None:
        self.node = node
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await sample(self.node)
            except Exception:  # rule 6
                log.exception("lag-sample-failed")
            await asyncio.sleep(self.interval)
