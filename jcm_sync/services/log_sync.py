"""What both ends of a replicated log do the same way: the agent (``services/agent.py``)
and Japan's hub (``services/hub.py``) each hold one side's own log and the other's
replica, and check what the other sends by the same rules.

Rules:

1. **The fork guard.** Once a fork alarm is raised for a log (``Node.raise_fork`` keeps
   both signed checkpoints as evidence), nothing more of it is replicated, in either
   direction, until an operator clears the alarm: ``refuse_if_stopped`` raises
   ``ForkError`` before anything is sent, asked or stored.
2. **The root after these leaves.** The root a log would have once some envelopes are
   appended is computed from the stored frontier and the new leaves alone
   (``core/subtrees.Frontier``), before anything is written, so a batch or a page whose
   root does not match a signed checkpoint stores nothing.
3. **What was last seen of a log** (its size here and at the other end) is kept in the
   node's status for ``jcm-sync status``, and the difference is the replica-lag metric.
"""

from __future__ import annotations

from collections.abc import Iterable

from jcm_sync.core import merkle, subtrees
from jcm_sync.errors import ForkError
from jcm_sync.local.status import AgentStatus, LogStatus
from jcm_sync.services.node import Node
from jcm_sync.store import LogRef


def is_stopped(node: Node, ref: LogRef) -> bool:
    """Rule 1: a fork alarm stops replication of ``ref``."""
    return node.alarms.get(ref.origin) is not None


def refuse_if_stopped(node: Node, ref: LogRef) -> None:
    """Rule 1: raise ``ForkError`` if a fork alarm stops replication of ``ref``."""
    if is_stopped(node, ref):
        raise ForkError(
            f"replication of {ref.origin} is stopped by a fork alarm; an operator must investigate",
            where=ref.origin,
        )


def extended(frontier: subtrees.Frontier, envelopes: Iterable[bytes]) -> subtrees.Frontier:
    """Rule 2: the frontier of the log after ``envelopes`` are appended to ``frontier``."""
    for raw in envelopes:
        frontier, _ = frontier.append(merkle.leaf_hash(raw))
    return frontier


def note_log(node: Node, status: AgentStatus, ref: LogRef, local: int, remote: int | None) -> None:
    """Rule 3: ``local`` entries of ``ref`` held here, ``remote`` at the other end (None:
    unknown, and the lag metric is left as it was)."""
    status.logs[ref.node] = LogStatus(
        origin=ref.origin, local_size=local, remote_size=remote, checked_at=node.clock()
    )
    if remote is not None:
        node.metrics.replica_lag.labels(ref.partnership, ref.node).set(abs(remote - local))
