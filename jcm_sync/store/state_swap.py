"""Compare-and-set of a small node-state value (protocol rule 9, ``Store.swap_state``).

Why this module exists: ``put_state`` replaces a value whoever wrote it last, so two
processes sharing one store (the daemon and a manual ``jcm-sync reconcile``; two hub
processes on one PostgreSQL, ADR 0042) cannot claim something once each with it: both read
the same value and both write. ``swap_state`` writes only if the value is still the one
the caller read, decided by the database in ONE statement, so of several callers judging
against the same old value exactly one writes (a run number claimed once,
``services.reconcile_state`` rule 6).

Rules:

1. A swapped value is one row of ``node_state`` (chunk 0) of at most ``MAX_SWAP_VALUE``
   bytes; a held value of several chunks, whose chunk 0 is ``STATE_CHUNK`` bytes, never
   equals an ``old`` this small, so it is never swapped.
2. From no value (``old`` None) the row is inserted unless the key has one
   (``SWAP_STATE_NEW``); from a value it is updated only where it still holds ``old``
   (``SWAP_STATE``). Each is one statement committed on its own: SQLite in autocommit
   with ``synchronous=FULL`` and one writer at a time, PostgreSQL outside a transaction,
   where an UPDATE that waited for another one re-checks its WHERE on the new row.
3. The SQL stores run it through the one-statement ``_query`` they share, with their own
   time column type (``_time_arg``); another store overrides ``StoreBase._swap_state``
   (the memory store compares and writes with no await between).
4. A key written by ``swap_state`` is written only by it (and removed by
   ``delete_state``): a ``put_state`` racing an insert of the same key could meet its
   row on PostgreSQL's primary key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from jcm_sync.errors import BadDataError

__all__ = ["MAX_SWAP_VALUE", "SWAP_STATE", "SWAP_STATE_NEW", "check_swap", "swap_by_query"]

#: Rule 1: the largest value ``swap_state`` compares or writes.
MAX_SWAP_VALUE: Final = 64 * 1024
#: Rule 2, from no value.
SWAP_STATE_NEW: Final = (
    "INSERT INTO node_state (key, chunk, value, updated_at) VALUES (?, 0, ?, ?) "
    "ON CONFLICT (key, chunk) DO NOTHING RETURNING chunk"
)
#: Rule 2, from a value.
SWAP_STATE: Final = (
    "UPDATE node_state SET value = ?, updated_at = ? "
    "WHERE key = ? AND chunk = 0 AND value = ? RETURNING chunk"
)


def check_swap(key: str, old: object, new: object) -> tuple[bytes | None, bytes]:
    """Rule 1: ``old`` (None or bytes) and ``new`` (bytes) as ``bytes``, each at most
    ``MAX_SWAP_VALUE`` bytes; ``BadDataError`` otherwise."""
    return (None if old is None else _small(key, "old", old)), _small(key, "new", new)


def _small(key: str, what: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise BadDataError(f"swap_state: {what} is bytes, not {type(value).__name__}", where=key)
    if len(value) > MAX_SWAP_VALUE:
        raise BadDataError(f"swap_state: {what} is over {MAX_SWAP_VALUE} bytes", where=key)
    return bytes(value)


async def swap_by_query(
    store: object, at: datetime, key: str, old: bytes | None, new: bytes
) -> bool:
    """Rules 2 and 3: one statement through ``store._query``; True if it wrote."""
    query = getattr(store, "_query", None)
    time_arg = getattr(store, "_time_arg", None)
    if query is None or time_arg is None:
        raise NotImplementedError(f"{type(store).__name__} has no compare-and-set of state")
    if old is None:
        rows = await query(SWAP_STATE_NEW, key, new, time_arg(at))
    else:
        rows = await query(SWAP_STATE, new, time_arg(at), key, old)
    return bool(rows)
