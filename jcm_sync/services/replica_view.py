"""What the hub answers about a partner's replica: its latest checkpoint held,
countersigned by Japan (``hub`` rule 5), or its head when none is held.

Why this module exists: every push is answered with this view, and reading it after the
append was one more store job per push, a hand-off to SQLite's one thread and a wake-up
of the event loop, paid for every batch of 50 in a fan-in as for every batch of 500 of a
lone agent (ADR 0056). The push already reads the replica before its append (the fork
alarm and the head, ``Store.log_view``); the held checkpoint and its cosignatures come
in that same job, and serve the answer when nothing has changed them since.

Rules:

1. The answer's note is the held checkpoint's note with the cosignatures held for it
   (ADR 0032), countersigned by Japan's checkpoint key; the countersigned note of the
   last note signed for each replica is kept, so an unchanged note is not signed again
   (ADR 0043). With no checkpoint held, the answer is the replica's head, unsigned.
2. ``wrote(replica)`` is called once a checkpoint the hub put for the replica has been
   stored; it advances the replica's ``generation``. A push takes the generation before
   it reads the view it may answer from.
3. ``answer`` serves a push from the view it read before its append only when the push
   carried no checkpoint, no other hub process can share the store (the caller says so:
   the hub on a PostgreSQL store, which several may share, never reuses), and the replica's
   generation is the one taken before that read: then no checkpoint was put for the
   replica since (in one hub process only the hub's push puts them, after the store
   committed, so a put the view missed has advanced the generation), and the append
   changed the head alone, which the answer takes from the append's result. Otherwise
   it reads the view again (one store job), as every push did before ADR 0056.
4. A cosignature a witness adds between that read and the answer is not in the answer;
   it is in every later one. The answer is what the hub held when the push read it,
   with the push's own entries; a cosignature's arrival does not depend on the push.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jcm_sync.core import note as signed_note
from jcm_sync.core.note import add_signature_lines
from jcm_sync.core.wire import CheckpointView
from jcm_sync.services.node import Node
from jcm_sync.store import LogRef, TreeHead
from jcm_sync.store.log_view import LogView

__all__ = ["ReplicaViews"]


@dataclass
class ReplicaViews:
    """Rule 1's answers for the replicas of ``node``, with rule 2's generations."""

    node: Node
    _countersigned: dict[str, tuple[bytes, Any, str, bytes]] = field(default_factory=dict)
    _generation: dict[str, int] = field(default_factory=dict)

    def generation(self, replica: LogRef) -> int:
        """Rule 2: how many checkpoints this process has put for ``replica``."""
        return self._generation.get(replica.origin, 0)

    def wrote(self, replica: LogRef) -> None:
        """Rule 2: a checkpoint put for ``replica`` was stored."""
        self._generation[replica.origin] = self.generation(replica) + 1

    async def read(self, replica: LogRef) -> CheckpointView:
        """Rule 1, from one read of the store (``Store.log_view``, ADR 0050)."""
        view = await self.node.store.log_view(replica)
        return self.of(replica, view, view.head)

    async def answer(
        self, replica: LogRef, before: LogView, generation: int, head: TreeHead, *, reuse: bool
    ) -> CheckpointView:
        """Rule 3: a push's answer, from ``before`` (read with its checkpoint, at
        ``generation``) and the ``head`` its append left when ``reuse`` allows it and
        nothing was put since; else from a new read."""
        if reuse and self.generation(replica) == generation:
            return self.of(replica, before, head)
        return await self.read(replica)

    def of(self, replica: LogRef, view: LogView, head: TreeHead) -> CheckpointView:
        """Rule 1 for the checkpoint and cosignatures of ``view`` and the head ``head``."""
        held = view.checkpoint
        if held is None:
            return CheckpointView(origin=replica.origin, size=head.size, root=head.root)
        note = add_signature_lines(held.note, view.cosignatures) if view.cosignatures else held.note
        key = self.node.keys.checkpoint.key
        origin = self.node.logs(replica.partnership).own.origin
        last = self._countersigned.get(replica.origin)
        if last is None or last[:3] != (note, key, origin):
            last = (note, key, origin, signed_note.add_signature(note, origin, key))
            self._countersigned[replica.origin] = last
        return CheckpointView(origin=replica.origin, size=held.size, root=held.root, note=last[3])
