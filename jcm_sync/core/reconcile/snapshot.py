"""A snapshot of a partnership, and reconciling one in a single call.

Why this module exists: reconciliation runs on a pair of checkpoints so that both sides,
computing it, get the same answer (DESIGN §5). A ``Snapshot`` is exactly that input: the
partnership's trust root and, for each of its two logs, the checkpoint's size and root and
the envelopes up to that size. ``reconcile`` is the pure function of the design: the same
snapshot always gives the same report.

Rules:

1. A snapshot holds both logs of one partnership: Japan's and the partner's, each once.
2. Its entries must hash to its roots (``reconciler`` rule 1); otherwise it is refused with
   ``BadDataError``, since a report about other records than the checkpoints commit to
   would be evidence of nothing.
3. With ``now`` given, every envelope is verified as on ingest; without it, the envelopes
   are taken as a store's verified entries (``inputs`` rule 2: the trust boundary).
4. With ``now`` given, the report is also judged on its UTC day, with the issuance grace
   period given (``reconciler`` rule 3); without it, a partly made issuance is judged
   strictly, as a discrepancy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from jcm_sync.core.reconcile.inputs import iter_stored, signer_nodes, verify_envelopes
from jcm_sync.core.reconcile.model import DEFAULT_ISSUANCE_GRACE_DAYS, Report
from jcm_sync.core.reconcile.reconciler import Reconciler
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError


@dataclass(frozen=True)
class LogSnapshot:
    """One log at a checkpoint: its node, size, root and the envelopes ``[0, size)``."""

    node: str
    size: int
    root: bytes
    envelopes: Sequence[bytes]


@dataclass(frozen=True)
class Snapshot:
    """Both logs of a partnership at a checkpoint each, and the trust root (module rule 1)."""

    root: TrustRoot
    logs: tuple[LogSnapshot, ...]


def check_position(reconciler: Reconciler, node: str, size: int, root: bytes) -> None:
    """Rule 2: the folded entries of ``node``'s log are the checkpoint's."""
    held_size, held_root = reconciler.position()[node]
    if held_size != size or held_root != root:
        raise BadDataError(
            f"the entries of {node}'s log ({held_size}) do not hash to the checkpoint of "
            f"size {size} and root {root.hex()[:16]}",
            where=f"snapshot of {reconciler.partnership}",
        )


def reconcile(
    snapshot: Snapshot,
    *,
    now: datetime | None = None,
    issuance_grace_days: int = DEFAULT_ISSUANCE_GRACE_DAYS,
) -> Report:
    """Reconcile a snapshot (module rules 1-4)."""
    root = snapshot.root
    nodes = sorted(log.node for log in snapshot.logs)
    if nodes != sorted(["JP", root.partner]):
        raise BadDataError(
            f"a snapshot of {root.partnership} holds the logs of JP and {root.partner}, "
            f"not of {', '.join(nodes) or 'nothing'}"
        )
    reconciler = Reconciler(root)
    keys = signer_nodes(root)
    for log in snapshot.logs:
        if len(log.envelopes) != log.size:
            raise BadDataError(
                f"{log.node}'s log has {len(log.envelopes)} envelopes for a checkpoint of "
                f"size {log.size}"
            )
        entries = (
            verify_envelopes(root, log.envelopes, now)
            if now is not None
            else iter_stored(root, log.envelopes, nodes=keys, validate=False)
        )
        reconciler.apply(log.node, entries, start=0)
        check_position(reconciler, log.node, log.size, log.root)
    return reconciler.report(now, issuance_grace_days=issuance_grace_days)
