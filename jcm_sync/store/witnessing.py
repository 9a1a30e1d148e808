"""What a node keeps as a witness: the tree head it cosigned per origin, and cosignatures.

Why this module exists: each node is a C2SP tlog-witness of its counterpart's log (ADR
0032). The spec asks a witness to keep, per log origin, the latest checkpoint it cosigned,
and to check-and-update it atomically, or two requests racing could roll the log back
(c2sp.org/tlog-witness, "add-checkpoint"). Each side also publishes its checkpoints with
the counterpart's cosignatures, so those are kept beside the checkpoints they sign. Both
live in the store (migration 4), so a backup holds them and every adapter keeps the same
rules. ``WitnessRecords`` is mixed into ``StoreBase``; ``SqlWitnessRecords`` into
``SqlStore``: the SQL is written once, here.

Rules:

1. ``witnessed(origin)`` is the (size, root) last persisted for ``origin``, or None: a
   witness that never cosigned for an origin holds size 0.
2. ``persist_witnessed(origin, old, new)`` is a compare-and-persist in ONE statement
   (one transaction): the row becomes ``new`` only if it is still ``old`` (None: no row
   yet); it returns whether it wrote. Of two requests judged against the same ``old``,
   exactly one wins; the loser learns the size now held from ``witnessed``. A head never
   moves backwards: ``new.size`` below ``old.size`` is refused before any query.
3. A cosignature is kept for a checkpoint this store holds (``put_checkpoint``), one per
   (key name, key ID) and size; the first one received is kept (its timestamp is the
   earliest evidence), later ones of the same key are ignored. Nothing here verifies a
   signature: the service does, before it stores (``services/witness.py``).
4. ``cosigned_size(log)`` is the largest size of the log that has a cosignature, or None.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from jcm_sync.core import merkle
from jcm_sync.core.note import NoteSignature, is_key_name
from jcm_sync.errors import BadDataError, CorruptStoreError
from jcm_sync.store.values import MAX_INDEX, LogRef, TreeHead

__all__ = ["SqlWitnessRecords", "WitnessRecords", "checked_cosignatures"]

#: Most cosignatures stored per checkpoint (a note carries at most 100 signatures).
MAX_COSIGNATURES: Final = 100

WITNESSED: Final = "SELECT size, root FROM witnessed WHERE origin = ?"
FIRST_WITNESSED: Final = (
    "INSERT INTO witnessed (origin, size, root, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (origin) DO NOTHING RETURNING size"
)
NEXT_WITNESSED: Final = (
    "UPDATE witnessed SET size = ?, root = ?, updated_at = ? "
    "WHERE origin = ? AND size = ? AND root = ? RETURNING size"
)
COSIGNATURES: Final = (
    "SELECT key_name, key_id, signature FROM log_cosignatures "
    "WHERE log_id = ? AND size = ? ORDER BY received_at, key_name, key_id"
)
INSERT_COSIGNATURES: Final = (
    "INSERT INTO log_cosignatures (log_id, size, key_name, key_id, signature, received_at) "
    "VALUES {values} ON CONFLICT DO NOTHING"
)
COSIGNED_SIZE: Final = "SELECT max(size) FROM log_cosignatures WHERE log_id = ?"


def _check_head(head: object, what: str) -> TreeHead:
    if (
        not isinstance(head, TreeHead)
        or isinstance(head.size, bool)
        or not isinstance(head.size, int)
        or not 0 <= head.size <= MAX_INDEX
        or not isinstance(head.root, bytes)
        or len(head.root) != merkle.HASH_SIZE
    ):
        raise BadDataError(f"{what} must be a TreeHead of a size and a 32-byte root")
    return head


class WitnessRecords(abc.ABC):
    """Rules 1-4 over a few primitives each adapter answers in one statement."""

    @abc.abstractmethod
    async def _log_id(self, log: LogRef, *, create: bool = False) -> int: ...

    @abc.abstractmethod
    async def checkpoint_at(self, log: LogRef, size: int) -> Any: ...

    @abc.abstractmethod
    async def _witnessed_row(self, origin: str) -> tuple[object, object] | None: ...

    @abc.abstractmethod
    async def _cas_witnessed(self, origin: str, old: TreeHead | None, new: TreeHead) -> bool:
        """Rule 2, in one statement."""

    @abc.abstractmethod
    async def _insert_cosignatures(
        self, log_id: int, size: int, rows: Sequence[NoteSignature]
    ) -> None: ...

    @abc.abstractmethod
    async def _cosignature_rows(self, log_id: int, size: int) -> list[tuple[object, ...]]: ...

    @abc.abstractmethod
    async def _cosigned_size(self, log_id: int) -> object: ...

    async def witnessed(self, origin: str) -> TreeHead | None:
        """Rule 1."""
        if not is_key_name(origin):
            raise BadDataError(f"not a log origin: {origin!r:.80}")
        row = await self._witnessed_row(origin)
        if row is None:
            return None
        size, root = row
        if isinstance(root, memoryview | bytearray):
            root = bytes(root)
        if not isinstance(size, int) or not isinstance(root, bytes) or len(root) != 32:
            raise CorruptStoreError(f"the witnessed head of {origin} is not a size and a root")
        return TreeHead(size, root)

    async def persist_witnessed(self, origin: str, old: TreeHead | None, new: TreeHead) -> bool:
        """Rule 2: compare-and-persist; True if ``new`` is now held."""
        if not is_key_name(origin):
            raise BadDataError(f"not a log origin: {origin!r:.80}")
        new = _check_head(new, "the new witnessed head")
        if old is not None and _check_head(old, "the old witnessed head").size > new.size:
            raise BadDataError(
                f"a witnessed head never moves back: {old.size} to {new.size}", where=origin
            )
        return await self._cas_witnessed(origin, old, new)

    async def add_cosignatures(
        self, log: LogRef, size: int, signatures: Sequence[NoteSignature]
    ) -> None:
        """Rule 3: keep ``signatures`` (already verified) of the checkpoint of ``size``."""
        await self.checkpoint_at(log, size)  # NotFoundError unless it is held
        if len(signatures) > MAX_COSIGNATURES:
            raise BadDataError(f"{len(signatures)} cosignatures; at most {MAX_COSIGNATURES}")
        for sig in signatures:
            if not isinstance(sig, NoteSignature) or not is_key_name(sig.name):
                raise BadDataError("a cosignature is a NoteSignature with a key name")
        if signatures:
            await self._insert_cosignatures(await self._log_id(log), size, signatures)

    async def cosignatures(self, log: LogRef, size: int) -> list[NoteSignature]:
        """Rule 3: the cosignatures kept for the checkpoint of ``size``, oldest first."""
        rows = await self._cosignature_rows(await self._log_id(log), size)
        return checked_cosignatures(log, size, rows)

    async def cosigned_size(self, log: LogRef) -> int | None:
        """Rule 4."""
        found = await self._cosigned_size(await self._log_id(log))
        return None if found is None else int(str(found))


class SqlWitnessRecords(WitnessRecords):
    """The primitives of ``WitnessRecords`` as the shared SQL above."""

    @abc.abstractmethod
    async def _query(self, text: str, *args: object) -> list[Any]: ...

    @staticmethod
    @abc.abstractmethod
    def _time_arg(at: datetime) -> object: ...

    _clock: Callable[[], datetime]

    async def _witnessed_row(self, origin: str) -> tuple[object, object] | None:
        rows = await self._query(WITNESSED, origin)
        return (rows[0][0], rows[0][1]) if rows else None

    async def _cas_witnessed(self, origin: str, old: TreeHead | None, new: TreeHead) -> bool:
        at = self._time_arg(self._clock())
        if old is None:
            rows = await self._query(FIRST_WITNESSED, origin, new.size, new.root, at)
        else:
            rows = await self._query(
                NEXT_WITNESSED, new.size, new.root, at, origin, old.size, old.root
            )
        return bool(rows)

    async def _insert_cosignatures(
        self, log_id: int, size: int, rows: Sequence[NoteSignature]
    ) -> None:
        at = self._time_arg(self._clock())
        args: list[object] = []
        for sig in rows:
            args += [log_id, size, sig.name, sig.key_id, sig.signature, at]
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
        await self._query(INSERT_COSIGNATURES.format(values=values), *args)

    async def _cosignature_rows(self, log_id: int, size: int) -> list[tuple[object, ...]]:
        return [tuple(r) for r in await self._query(COSIGNATURES, log_id, size)]

    async def _cosigned_size(self, log_id: int) -> object:
        rows = await self._query(COSIGNED_SIZE, log_id)
        return rows[0][0] if rows else None


def checked_cosignatures(log: LogRef, size: object, rows: Any) -> list[NoteSignature]:
    """Rule 3's check of the stored ``(name, key id, signature)`` rows of the checkpoint of
    ``size`` (``cosignatures`` and the one-job log view read them alike)."""
    out: list[NoteSignature] = []
    for name, kid, sig in rows:
        raw = bytes(sig) if isinstance(sig, bytes | bytearray | memoryview) else None
        if not isinstance(name, str) or not isinstance(kid, int) or raw is None:
            raise CorruptStoreError(f"a cosignature row of {log.origin} size {size}")
        out.append(NoteSignature(name, kid, raw))
    return out
