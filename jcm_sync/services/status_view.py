"""A node's status as an operator reads it: logs, lag, syncs, discrepancies, alarms, expiry.

Why this module exists: ``jcm-sync status`` and the console of the operations listener
(hub and agent, ADR 0019) show the same facts about the same node; one function gathers
them so the two never disagree. Callers only render the ``NodeStatus`` it returns, whose
JSON (``to_builtins``) is what ``jcm-sync status --json`` prints.

The fields (names are an interface: the console and scripts read them):

- ``NodeStatus``: ``node``, ``role`` (``registry`` | ``agent``), ``hub_url`` (an agent's
  ``[hub] url``; the hub's own public origin or listen address), ``daemon_running`` and
  ``daemon`` (the lock holder's pid, command, host and start, or None), ``generated_at``,
  ``partnerships``, ``expiries`` (``services.expiry.Expiry``: what, key, keyid,
  partnership, not_after, seconds_left, warning, expired), ``alarms`` (origin,
  partnership, log, reason, raised_at), ``health`` and ``warnings`` (text lines).
- ``PartnershipView``: ``partnership``, ``logs`` (own first), ``trust_root_version``,
  ``trust_root_expires``, ``discrepancies_open`` (id, rule, stage, summary, first_seen,
  past_grace) and ``health``.
- ``LogView``: ``node``, ``own``, ``origin``, ``local_size``, ``root``, ``checkpoint``,
  ``cosigned_size``, ``agreed_size``, ``agreed`` (rule 8), ``remote_size``, ``lag``,
  ``lagging``, ``last_sync``, ``last_error``, ``alarm``.

Rules:

1. Every partnership the configuration names is listed, the node's own log first, then
   its replica of the counterpart's; sizes and roots come from the store, job status and
   fork alarms from the node's state (``local.status``, ``local.alarms``), discrepancies
   from the reconciliation history (``services.reconciliation``).
2. ``last_sync`` of the own log is the agent's last push (the hub: the last time a
   partner pulled it); of the replica, the agent's last pull (the hub: the last push it
   received). ``last_error`` is shown only while the job is failing.
3. A log is ``lagging`` when its lag is above 0 and its last sync is older than
   ``LAG_INTERVALS`` of its job's interval (the agent's ``push_seconds`` for its own log,
   ``pull_seconds`` for its replica; the other way round on the hub), or it never synced.
4. Health, of a partnership and of the node (the worst of its partnerships): ``fork``
   while a fork alarm stops a log; else ``discrepancies`` while any is open; else
   ``lagging`` while a log lags (rule 3) or its last sync failed; else ``ok``.
5. ``exit_code`` (``jcm-sync status``): 1 when a fork alarm is raised or a log's last
   sync failed; else 3 when discrepancies are open; else 0 (a log lagging behind without
   an error is not a failure: its health says so).
6. ``read_status`` opens the configured store without the node's private keys (it reads
   the ``.pub`` files for key expiry) and reads the roots as written, so an operator can
   read the status of a node whose daemon holds its lock or whose root has expired;
   ``node_status`` reads a running node and touches nothing. ``daemon_running`` asks the
   data directory's lock without taking it (``local.lock.daemon_holder``).
7. ``warnings`` holds a line per key or root expiring within ``expiry.WARN_DAYS`` days
   and per key or root that could not be read.
8. ``agreed_size`` is the size of the newest stored checkpoint that meets the trust
   root's cosignature quorum for the log (``services.agreement``, ADR 0035), the snapshot
   reconciliation runs on; ``agreed`` is false while the latest checkpoint held is not
   yet agreed (below quorum). With quorum 0 every checkpoint is agreed; without a
   readable root, agreement is unknown (``agreed_size`` None, ``agreed`` true).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import msgspec

from jcm_sync.core.reconcile import Discrepancy
from jcm_sync.core.reconcile.model import Stage
from jcm_sync.core.trust import TrustRoot
from jcm_sync.local.alarms import Alarm, AlarmBook
from jcm_sync.local.config import Config
from jcm_sync.local.lock import daemon_holder
from jcm_sync.local.status import read_status as read_job_status
from jcm_sync.services.agreement import agreed_checkpoint
from jcm_sync.services.expiry import (
    Expiry,
    config_expiries,
    config_roots,
    node_expiries,
    warnings_of,
)
from jcm_sync.services.node import Node, log_pair, open_node_store
from jcm_sync.services.reconcile_state import grace_days, past_grace
from jcm_sync.services.run_history import read_history
from jcm_sync.store import LogRef, Store

Health = Literal["ok", "lagging", "discrepancies", "fork"]

HEALTH_ORDER: Final[tuple[Health, ...]] = ("ok", "lagging", "discrepancies", "fork")
"""Rule 4, mildest first: the node's health is the worst of its partnerships'."""

LAG_INTERVALS: Final = 2
"""Rule 3: a log behind for longer than this many sync intervals is lagging."""

EXIT_OK: Final = 0
EXIT_FAILING: Final = 1
EXIT_DISCREPANCIES: Final = 3


class LogView(msgspec.Struct, kw_only=True):
    """One log of a partnership as this node holds it (rules 1 to 3)."""

    node: str
    own: bool
    origin: str
    local_size: int
    root: str
    """hex of the stored tree's root at ``local_size``"""
    checkpoint: int | None
    """size of the latest checkpoint stored for this log, None if none is"""
    cosigned_size: int | None = None
    """size of the newest checkpoint of this log the counterpart cosigned (ADR 0032)"""
    agreed_size: int | None = None
    """size of the newest checkpoint that meets the log's cosignature quorum (rule 8)"""
    agreed: bool = True
    """false while the latest checkpoint held is below quorum: not yet agreed (rule 8)"""
    remote_size: int | None
    lag: int | None
    lagging: bool
    last_sync: str | None
    """ISO 8601 time of the last successful sync of this log (rule 2)"""
    last_error: str | None
    alarm: str | None
    """the reason of the fork alarm that stops this log, None without one"""


class DiscrepancyView(msgspec.Struct, kw_only=True):
    """An open discrepancy of the reconciliation history."""

    id: str
    rule: str
    stage: Stage
    summary: str
    first_seen: datetime | None
    past_grace: bool


class AlarmView(msgspec.Struct, kw_only=True):
    origin: str
    partnership: str
    log: str
    reason: str
    raised_at: datetime


class PartnershipView(msgspec.Struct, kw_only=True):
    partnership: str
    logs: list[LogView]
    trust_root_version: int | None
    trust_root_expires: datetime | None
    discrepancies_open: list[DiscrepancyView]
    health: Health

    @property
    def own(self) -> LogView:
        return next(lg for lg in self.logs if lg.own)

    @property
    def replica(self) -> LogView:
        return next(lg for lg in self.logs if not lg.own)


class NodeStatus(msgspec.Struct, kw_only=True):
    node: str
    role: str
    hub_url: str | None
    daemon_running: bool
    daemon: dict[str, Any] | None
    generated_at: datetime
    partnerships: list[PartnershipView]
    expiries: list[Expiry]
    alarms: list[AlarmView]
    health: Health
    warnings: list[str]

    @property
    def alarmed(self) -> bool:
        """True while a fork alarm stops any log of the node."""
        return bool(self.alarms) or any(lg.alarm for p in self.partnerships for lg in p.logs)

    @property
    def failing(self) -> bool:
        """True while the last sync of any log failed."""
        return any(lg.last_error for p in self.partnerships for lg in p.logs)

    @property
    def discrepancies(self) -> int:
        return sum(len(p.discrepancies_open) for p in self.partnerships)

    @property
    def exit_code(self) -> int:
        """Rule 5."""
        if self.alarmed or self.failing:
            return EXIT_FAILING
        return EXIT_DISCREPANCIES if self.discrepancies else EXIT_OK

    def to_builtins(self) -> dict[str, object]:
        """The JSON shape of ``jcm-sync status --json``."""
        data: dict[str, object] = msgspec.to_builtins(self)
        return data


def worst(healths: list[Health]) -> Health:
    return max(healths, key=HEALTH_ORDER.index, default="ok")


def _jobs(role: str) -> tuple[str, str]:
    """Rule 2: the jobs that sync (the own log, the replica) on a node of ``role``."""
    return ("served", "push_received") if role == "registry" else ("push", "pull")


def _intervals(cfg: Config) -> tuple[float, float]:
    """Rule 3: the sync interval of (the own log, the replica) on this node's role."""
    s = cfg.schedule
    if cfg.node.role == "registry":
        return s.pull_seconds, s.push_seconds
    return s.push_seconds, s.pull_seconds


def hub_url(cfg: Config) -> str | None:
    if cfg.node.role == "agent":
        return cfg.hub.url if cfg.hub else None
    return cfg.server.public_origin or f"http://{cfg.server.host}:{cfg.server.port}"


def _lagging(lag: int | None, last: datetime | None, interval: float, now: datetime) -> bool:
    if not lag:
        return False
    return last is None or now - last > timedelta(seconds=LAG_INTERVALS * interval)


def _health(alarm: bool, discrepancies: bool, logs: list[LogView]) -> Health:
    """Rule 4."""
    if alarm:
        return "fork"
    if discrepancies:
        return "discrepancies"
    if any(lg.lagging or lg.last_error for lg in logs):
        return "lagging"
    return "ok"


async def _discrepancies(
    store: Store, partnership: str, grace: Mapping[str, int], now: datetime
) -> list[DiscrepancyView]:
    found: list[Discrepancy] = (await read_history(store, partnership)).open()
    return [
        DiscrepancyView(
            id=d.id,
            rule=d.rule,
            stage=d.stage,
            summary=d.summary,
            first_seen=d.first_seen,
            past_grace=past_grace(d, grace, now),
        )
        for d in sorted(found, key=lambda d: (d.first_seen or now, d.rule, d.id))
    ]


async def _view(
    cfg: Config,
    store: Store,
    book: AlarmBook,
    refs: dict[str, tuple[LogRef, LogRef]],
    roots: Mapping[str, TrustRoot],
    found: tuple[list[Expiry], list[str]],
    now: datetime,
) -> NodeStatus:
    alarms: dict[str, Alarm] = {a.origin: a for a in await book.active()}
    grace = grace_days(cfg.reconcile.grace_days())
    out = []
    for pid, pair in refs.items():
        st = await read_job_status(store, pid)
        root = roots.get(pid)
        rows = []
        for ref, job_name, interval in zip(pair, _jobs(cfg.node.role), _intervals(cfg),
                                           strict=True):  # fmt: skip
            head = await store.tree_head(ref)
            held = await store.latest_checkpoint(ref)
            seen = st.logs.get(ref.node)
            remote = seen.remote_size if seen else None
            job = st.jobs.get(job_name)
            last = job.last_success if job else None
            lag = None if remote is None else abs(remote - head.size)
            alarm = alarms.get(ref.origin)
            agreed = await agreed_checkpoint(store, root, ref) if root else None
            rows.append(
                LogView(
                    node=ref.node,
                    own=ref is pair[0],
                    origin=ref.origin,
                    local_size=head.size,
                    root=head.root.hex(),
                    checkpoint=held.size if held else None,
                    cosigned_size=await store.cosigned_size(ref),
                    agreed_size=agreed.size if agreed else None,
                    agreed=root is None
                    or held is None
                    or (agreed is not None and agreed.size == held.size),
                    remote_size=remote,
                    lag=lag,
                    lagging=_lagging(lag, last, interval, now),
                    last_sync=last.isoformat() if last else None,
                    last_error=job.last_error if job and job.failures else None,
                    alarm=alarm.reason if alarm else None,
                )
            )
        open_ = await _discrepancies(store, pid, grace, now)
        out.append(
            PartnershipView(
                partnership=pid,
                logs=rows,
                trust_root_version=root.version if root else None,
                trust_root_expires=root.expires if root else None,
                discrepancies_open=open_,
                health=_health(any(lg.alarm for lg in rows), bool(open_), rows),
            )
        )
    holder = daemon_holder(cfg.data_dir)
    expiries, problems = found
    return NodeStatus(
        node=cfg.node.id,
        role=cfg.node.role,
        hub_url=hub_url(cfg),
        daemon_running=holder is not None,
        daemon=holder,
        generated_at=now,
        partnerships=out,
        expiries=expiries,
        alarms=[
            AlarmView(
                origin=a.origin,
                partnership=a.partnership,
                log=a.node,
                reason=a.reason,
                raised_at=a.raised_at,
            )
            for a in sorted(alarms.values(), key=lambda a: a.raised_at)
        ],
        health=worst([p.health for p in out] + (["fork"] if alarms else [])),
        warnings=warnings_of(expiries) + problems,
    )


async def node_status(node: Node) -> NodeStatus:
    """The status of a running node (its console), from its own store (rule 6)."""
    refs = {p.id: (node.logs(p.id).own, node.logs(p.id).replica) for p in node.cfg.partnerships}
    found: tuple[list[Expiry], list[str]] = (node_expiries(node), [])
    return await _view(node.cfg, node.store, node.alarms, refs, node.roots(), found, node.clock())


async def read_status(cfg: Config, *, now: datetime | None = None) -> NodeStatus:
    """The status of a configured node, whether or not its daemon runs (rule 6)."""
    now = now or datetime.now(UTC)
    store = await open_node_store(cfg)  # imports an earlier version's files (ADR 0027)
    try:
        refs = {}
        for p in cfg.partnerships:
            refs[p.id] = log_pair(cfg, p.id)
            for ref in refs[p.id]:
                await store.ensure_log(ref)  # a node that never ran holds no log yet
        roots, _ = config_roots(cfg)
        found = config_expiries(cfg, now)
        return await _view(cfg, store, AlarmBook(store), refs, roots, found,
                           now)  # fmt: skip
    finally:
        await store.close()
