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
4. **Each received envelope is verified and hashed once.** A batch (a push at the hub,
   a page the agent pulls) is verified before its root is checked (``verify_batch``);
   the leaf hash each verification carries serves rule 2 and then the store's append,
   which takes the record id and leaf hash from the verification of the same bytes
   (``store/planning.prepare_batch``). A record's refusal is kept and raised when the
   store asks for that record, in the store's order, so a batch refused answers as if
   it had been verified inside the append.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jcm_sync.core import merkle, subtrees
from jcm_sync.core.trust import Verification
from jcm_sync.errors import ForkError, JcmSyncError
from jcm_sync.local.status import AgentStatus, LogStatus
from jcm_sync.services.node import Node
from jcm_sync.store import LogRef, Verify


class VerifiedBatch:
    """Rule 4: a batch's verifications, made before the store asks for them.

    Called on envelope bytes it is a ``store.Verify`` that looks the result up, raising
    the record's refusal (bytes it was not given are verified with ``fallback``);
    ``leaf_hashes`` gives rule 2 the leaf hashes the verifications carry.
    """

    __slots__ = ("_done", "_fallback")

    def __init__(self, done: Mapping[bytes, Verification | JcmSyncError], fallback: Verify) -> None:
        self._done = done
        self._fallback = fallback

    def __call__(self, raw: bytes) -> Verification:
        result = self._done.get(raw)
        if result is None:
            return self._fallback(raw)
        if isinstance(result, JcmSyncError):
            raise result
        return result

    def leaf_hashes(self, envelopes: Iterable[bytes]) -> list[bytes]:
        """The leaf hash of each envelope: its verification's (computed once, reused by
        the store), or computed here for one that was refused or not given."""
        out: list[bytes] = []
        for raw in envelopes:
            result = self._done.get(raw)
            out.append(
                result.leaf_hash if isinstance(result, Verification) else merkle.leaf_hash(raw)
            )
        return out


def verify_batch(verify: Verify, envelopes: Iterable[bytes]) -> VerifiedBatch:
    """Rule 4: verify every envelope of a batch now, in this thread, keeping refusals.

    What is not an envelope at all (not bytes, or empty) is left to the store to refuse.
    """
    done: dict[bytes, Verification | JcmSyncError] = {}
    for raw in envelopes:
        if not isinstance(raw, bytes) or not raw or raw in done:
            continue
        try:
            done[raw] = verify(raw)
        except JcmSyncError as exc:
            done[raw] = exc
    return VerifiedBatch(done, verify)


async def is_stopped(node: Node, ref: LogRef) -> bool:
    """Rule 1: a fork alarm stops replication of ``ref``."""
    return await node.alarms.get(ref.origin) is not None


async def refuse_if_stopped(node: Node, ref: LogRef) -> None:
    """Rule 1: raise ``ForkError`` if a fork alarm stops replication of ``ref``."""
    if await is_stopped(node, ref):
        raise stopped(ref)


def stopped(ref: LogRef) -> ForkError:
    """Rule 1's refusal: replication of ``ref`` is stopped by a fork alarm."""
    return ForkError(
        f"replication of {ref.origin} is stopped by a fork alarm; an operator must investigate",
        where=ref.origin,
    )


def extended(frontier: subtrees.Frontier, leaf_hashes: Iterable[bytes]) -> subtrees.Frontier:
    """Rule 2: the frontier of the log after entries with ``leaf_hashes`` (in order, see
    ``VerifiedBatch.leaf_hashes``) are appended to ``frontier``."""
    return frontier.extend(list(leaf_hashes))[0]


def note_log(node: Node, status: AgentStatus, ref: LogRef, local: int, remote: int | None) -> None:
    """Rule 3: ``local`` entries of ``ref`` held here, ``remote`` at the other end (None:
    unknown, and the lag metric is left as it was)."""
    status.logs[ref.node] = LogStatus(
        origin=ref.origin, local_size=local, remote_size=remote, checked_at=node.clock()
    )
    if remote is not None:
        node.metrics.replica_lag.labels(ref.partnership, ref.node).set(abs(remote - local))
