"""A node's status as an operator reads it: each log's size, root, lag, last sync, alarm.

Why this module exists: ``jcm-sync status`` and the hub's operations listener
(``/status``, ADR 0019) show the same facts about the same logs; one function gathers
them so the two never disagree. Callers only render the ``NodeStatus`` it returns.

Rules:

1. Every partnership the configuration names is listed, the node's own log first, then
   its replica of the counterpart's; sizes and roots come from the store, the rest from
   the node-local files: the job status (``local.status``, written by the agent's jobs
   and by the hub on each push and pull) and the fork alarms (``local.alarms``).
2. ``last_sync`` of the own log is the agent's last push (the hub: the last time a
   partner pulled it); of the replica, the agent's last pull (the hub: the last push it
   received). ``last_error`` is shown only while the job is failing.
3. ``read_status`` opens the configured store without the node's keys, so an operator
   can read the status of a node whose daemon holds its lock; ``node_status`` reads a
   running node's store and touches nothing.
"""

from __future__ import annotations

import msgspec

from jcm_sync.local.alarms import AlarmBook
from jcm_sync.local.config import Config
from jcm_sync.local.status import read_status as read_job_status
from jcm_sync.services.node import Node, log_pair, open_node_store
from jcm_sync.store import LogRef, Store


class LogView(msgspec.Struct, kw_only=True):
    """One log of a partnership as this node holds it (rules 1 and 2)."""

    node: str
    own: bool
    origin: str
    local_size: int
    root: str
    """hex of the stored tree's root at ``local_size``"""
    checkpoint: int | None
    """size of the latest checkpoint stored for this log, None if none is"""
    remote_size: int | None
    lag: int | None
    last_sync: str | None
    """ISO 8601 time of the last successful sync of this log (rule 2)"""
    last_error: str | None
    alarm: str | None
    """the reason of the fork alarm that stops this log, None without one"""


class PartnershipView(msgspec.Struct, kw_only=True):
    partnership: str
    logs: list[LogView]

    @property
    def own(self) -> LogView:
        return next(lg for lg in self.logs if lg.own)

    @property
    def replica(self) -> LogView:
        return next(lg for lg in self.logs if not lg.own)


class NodeStatus(msgspec.Struct, kw_only=True):
    node: str
    partnerships: list[PartnershipView]

    @property
    def alarmed(self) -> bool:
        """True while a fork alarm stops any log of the node."""
        return any(lg.alarm for p in self.partnerships for lg in p.logs)

    def to_builtins(self) -> dict[str, object]:
        """The JSON shape of ``jcm-sync status --json``."""
        data: dict[str, object] = msgspec.to_builtins(self)
        return data


def _jobs(role: str) -> tuple[str, str]:
    """Rule 2: the jobs that sync (the own log, the replica) on a node of ``role``."""
    return ("served", "push_received") if role == "registry" else ("push", "pull")


async def _view(
    cfg: Config, store: Store, alarms: AlarmBook, refs: dict[str, tuple[LogRef, LogRef]]
) -> NodeStatus:
    out = []
    for pid, pair in refs.items():
        st = read_job_status(cfg.data_dir, pid)
        rows = []
        for ref, job_name in zip(pair, _jobs(cfg.node.role), strict=True):
            head = await store.tree_head(ref)
            held = await store.latest_checkpoint(ref)
            seen = st.logs.get(ref.node)
            remote = seen.remote_size if seen else None
            job = st.jobs.get(job_name)
            alarm = alarms.get(ref.origin)
            rows.append(
                LogView(
                    node=ref.node,
                    own=ref is pair[0],
                    origin=ref.origin,
                    local_size=head.size,
                    root=head.root.hex(),
                    checkpoint=held.size if held else None,
                    remote_size=remote,
                    lag=None if remote is None else abs(remote - head.size),
                    last_sync=job.last_success.isoformat() if job and job.last_success else None,
                    last_error=job.last_error if job and job.failures else None,
                    alarm=alarm.reason if alarm else None,
                )
            )
        out.append(PartnershipView(partnership=pid, logs=rows))
    return NodeStatus(node=cfg.node.id, partnerships=out)


async def node_status(node: Node) -> NodeStatus:
    """The status of a running node (the hub's ``/status``), from its own store."""
    refs = {p.id: (node.logs(p.id).own, node.logs(p.id).replica) for p in node.cfg.partnerships}
    return await _view(node.cfg, node.store, node.alarms, refs)


async def read_status(cfg: Config) -> NodeStatus:
    """The status of a configured node, whether or not its daemon runs (rule 3)."""
    store = await open_node_store(cfg)  # imports an earlier version's files (ADR 0027)
    try:
        refs = {}
        for p in cfg.partnerships:
            refs[p.id] = log_pair(cfg, p.id)
            for ref in refs[p.id]:
                await store.ensure_log(ref)  # a node that never ran holds no log yet
        return await _view(cfg, store, AlarmBook(cfg.data_dir / "alarms"), refs)
    finally:
        await store.close()
