"""Agreed checkpoints and witnessed times, read from a node's store under its trust root.

Why this module exists: the trust root states per log whose cosignatures make a
checkpoint agreed (``core/cosign_policy``); the store keeps each checkpoint's
cosignatures (ADR 0032). Reconciliation (which snapshot), status (``agreed_size``) and
record verification (the witnessed time of a stored entry) all need the same reading of
the two, so it is here (docs/adr/0035-cosignature-quorum-and-witnessed-time.md).

Rules:

1. A stored cosignature belongs to the node whose cosigner name it carries
   (``<origin prefix>/witness/<node>``, ADR 0032). The store keeps only cosignatures it
   verified when they arrived (store protocol rule 10), so they are not verified again
   here; their timestamp is the first 8 bytes of the signature, for both types.
2. ``agreed_checkpoint``: the newest stored checkpoint of the log that meets the log's
   quorum. With quorum 0 it is the newest stored checkpoint (what reconciliation used
   before quorums existed). None when no checkpoint is agreed yet.
3. ``witnessed_times``: for each agreed checkpoint, the instant it became agreed
   (``cosign_policy.agreed_at``); ``WitnessedTimes.at(index)`` is the earliest of those
   over the checkpoints that include entry ``index``, or None. Empty with quorum 0.
4. **Revocation by witnessed time** (``stored_verifier``): under a quorum, a stored entry
   is judged as received at its witnessed time, and at ``now`` when no agreed checkpoint
   includes it yet; so a record signed by a key revoked at T stays valid only if the
   counterpart cosigned a checkpoint including it before T. Under quorum 0 the
   fallback is ADR 0018's: as received when it was appended.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from jcm_sync.core.cosign_policy import agreed_at, meets
from jcm_sync.core.note import NoteSignature
from jcm_sync.core.trust import TrustRoot
from jcm_sync.services.log_service import RecordVerifier
from jcm_sync.services.witness import cosigner_name
from jcm_sync.store import LogRef, Store, StoredCheckpoint

__all__ = [
    "WitnessedTimes",
    "agreed_checkpoint",
    "cosigned_by",
    "stored_verifier",
    "witnessed_times",
]


def cosigned_by(
    root: TrustRoot, log: LogRef, sigs: Iterable[NoteSignature]
) -> list[tuple[str, datetime]]:
    """Rule 1: (cosigner node, timestamp) of each stored cosignature of ``log``."""
    prefix = log.origin.removesuffix(f"/{log.partnership}/{log.node}")
    names = {cosigner_name(prefix, n.id): n.id for n in root.nodes if n.id != log.node}
    out = []
    for s in sigs:
        node = names.get(s.name)
        if node is not None and len(s.signature) >= 8:
            out.append((node, datetime.fromtimestamp(int.from_bytes(s.signature[:8]), UTC)))
    return out


async def agreed_checkpoint(store: Store, root: TrustRoot, log: LogRef) -> StoredCheckpoint | None:
    """Rule 2: the newest stored checkpoint of ``log`` its quorum agrees."""
    quorum = root.cosign_quorum.get(log.node)
    if quorum is None:
        return await store.latest_checkpoint(log)
    cosigned = await store.cosigned_size(log)
    if cosigned is None:
        return None
    for cp in sorted(await store.checkpoints(log), key=lambda c: c.size, reverse=True):
        if cp.size > cosigned:
            continue
        by = cosigned_by(root, log, await store.cosignatures(log, cp.size))
        if meets(quorum, (n for n, _ in by)):
            return cp
    return None


@dataclass(frozen=True)
class WitnessedTimes:
    """Rule 3: agreed checkpoint sizes ascending, each with the earliest instant a
    checkpoint of at least that size became agreed."""

    sizes: tuple[int, ...] = ()
    times: tuple[datetime, ...] = ()

    @classmethod
    def of(cls, agreed: Iterable[tuple[int, datetime]]) -> WitnessedTimes:
        """From (checkpoint size, when it became agreed) pairs, in any order."""
        pairs = sorted(agreed)
        sizes, times = [s for s, _ in pairs], [t for _, t in pairs]
        for n in range(len(times) - 2, -1, -1):  # the earliest over this and every larger
            times[n] = min(times[n], times[n + 1])
        return cls(tuple(sizes), tuple(times))

    def at(self, index: int) -> datetime | None:
        """When a checkpoint including entry ``index`` was first agreed, or None."""
        n = bisect.bisect_right(self.sizes, index)
        return self.times[n] if n < len(self.sizes) else None


async def witnessed_times(store: Store, root: TrustRoot, log: LogRef) -> WitnessedTimes:
    """Rule 3, for every stored checkpoint of ``log``."""
    quorum = root.cosign_quorum.get(log.node)
    if quorum is None or await store.cosigned_size(log) is None:
        return WitnessedTimes()
    agreed: list[tuple[int, datetime]] = []
    for cp in await store.checkpoints(log):
        when = agreed_at(quorum, cosigned_by(root, log, await store.cosignatures(log, cp.size)))
        if when is not None:
            agreed.append((cp.size, when))
    return WitnessedTimes.of(agreed)


async def stored_verifier(
    store: Store, root: TrustRoot, log: LogRef, now: datetime
) -> RecordVerifier:
    """Rule 4: a ``RecordVerifier`` whose ``stored`` judges ``log``'s entries at their
    witnessed time under a quorum (``now`` if not yet agreed), else when appended."""
    verifier = RecordVerifier(root, now)
    if root.cosign_quorum.get(log.node) is not None:
        times = await witnessed_times(store, root, log)
        verifier.witnessed = lambda entry: times.at(entry.index)
    return verifier
