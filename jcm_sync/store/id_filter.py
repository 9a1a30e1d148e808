"""An in-memory filter of each log's record ids, so a SQLite append probes the id tables
only for the few ids it cannot rule out (ADR 0058).

Why this module exists: an append must refuse a record its log already holds (base.py
invariant 2), so every new id was looked up in the four id tables of ``sql.ID_TABLES``,
and at 10^6 entries those B-tree descents were the largest part of what grows (ADR 0053).
The answer is almost always "not held". A bit map of the log's id keys answers "certainly
not held" without SQL; only a key whose bit is set goes to the SQL probe, which compares
the full record id.

Invariants:

1. False positives only, never a false negative: every key of an entry the log holds has
   its bit set when ``maybe_held`` answers. A key is set before its append writes, so an
   append rolled back leaves extra bits (false positives), never a missing one.
2. Every commit is seen, another connection's or process's included. SQLite's
   ``PRAGMA data_version`` changes when another connection committed to the file; then
   the keys of the log's entries from ``low`` to the head are read from ``log_entries``
   and set. ``low`` is a committed size below which every entry's key is set: the head
   read by the first append to the log in a transaction (``txn`` changed) when no other
   connection committed since the last look. A head read after an earlier append of the
   same transaction may hold that append's uncommitted rows, so it never raises ``low``
   (a transaction that fails after it, then another writer filling those indexes, would
   otherwise leave keys unset). A head below ``low`` (a log replaced) rebuilds the log's
   filter from the id tables. Committed entries are never rewritten under an open store
   (a restore refuses to run under a daemon), so entries below ``low`` stay covered.
3. One bit per key, at the key's low bits (record ids are SHA-256 digests, their keys
   uniform): ``BITS_PER_KEY`` to ``2 * BITS_PER_KEY`` bits per key when built, so about
   1 to 2 % false positives; the map is rebuilt from the id tables, four times larger,
   once the keys set pass a sixteenth of its bits (6 % false positives). Memory: 8 MiB for
   a log of 10^6 entries (a Python set of the keys would take some 60 MB).
4. Built for every log when the store opens (``load``, one read of the id tables), so no
   append pays for it; a log created later starts with ``MIN_BITS``.
5. State lives on the store's ``IdFilters`` (no module-level mutable state); it is used
   only on the store's one thread (sqlite.py invariant 2).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from jcm_sync.store import sql

__all__ = ["BITS_PER_KEY", "MIN_BITS", "IdFilters", "KeyBits", "data_version"]

BITS_PER_KEY: Final = 64
"""At least this many bits per key when a map is built (rule 3)."""
MIN_BITS: Final = 1 << 18
"""The smallest map, 32 KiB: a new log appends 4,096 ids before its first rebuild."""
FULL_AT: Final = 16
"""A map is full when its keys pass ``bits / FULL_AT``."""
DATA_VERSION: Final = "PRAGMA data_version"
LOG_SIZES: Final = "SELECT id, size FROM logs"
TABLES: Final = "SELECT name FROM sqlite_master WHERE type = 'table'"
ALL_KEYS: Final = "SELECT log_id, id_key FROM {table}"
LOG_KEYS: Final = "SELECT id_key FROM {table} WHERE log_id = ?"


def data_version(db: sqlite3.Connection) -> int:
    """``PRAGMA data_version``: it changes when another connection committed (rule 2)."""
    return int(db.execute(DATA_VERSION).fetchone()[0])


def bits_for(keys: int) -> int:
    """The size of a map for ``keys`` keys (rule 3): a power of two, at least ``MIN_BITS``."""
    bits = MIN_BITS
    while bits < keys * BITS_PER_KEY:
        bits <<= 1
    return bits


def entry_keys(rows: Iterable[Sequence[object]]) -> list[int]:
    """The id keys of ``sql.RECORD_IDS`` rows; a record id that has none (a corrupt row,
    reported by the reads that check entries) is left out: no append can hold it."""
    keys: list[int] = []
    for row in rows:
        try:
            keys.append(sql.id_key(str(row[1])))
        except ValueError:
            continue
    return keys


@dataclass(eq=False)
class KeyBits:
    """A bit map of 64-bit keys: ``test_and_set`` answers which keys may be held."""

    bits: int
    count: int = 0
    """Keys set, counted with repeats (rolled-back appends' included)."""
    low: int = 0
    """A committed size below which every entry's key is set (rule 2)."""
    version: int = -1
    """``PRAGMA data_version`` when the log was last brought up to date."""
    txn: int | None = None
    """The transaction that last looked (``maybe_held``'s ``txn``)."""
    map: bytearray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bits < 8 or self.bits & (self.bits - 1):
            raise ValueError("a key map's size is a power of two of at least 8 bits")
        self.map = bytearray(self.bits >> 3)

    def set(self, keys: Iterable[int]) -> None:
        """Set the bits of ``keys``."""
        m, mask = self.map, self.bits - 1
        n = 0
        for k in keys:
            p = k & mask
            m[p >> 3] |= 1 << (p & 7)
            n += 1
        self.count += n

    def test_and_set(self, keys: Sequence[int]) -> list[int]:
        """The keys whose bit was set already (perhaps held), and set every key's bit."""
        m, mask = self.map, self.bits - 1
        maybe: list[int] = []
        for k in keys:
            p = k & mask
            i, bit = p >> 3, 1 << (p & 7)
            v = m[i]
            if v & bit:
                maybe.append(k)
            else:
                m[i] = v | bit
        self.count += len(keys)
        return maybe


class IdFilters:
    """The key maps of one SQLite store's logs (rules 1 to 5)."""

    def __init__(self) -> None:
        self._logs: dict[int, KeyBits] = {}
        self._tables: tuple[str, ...] = sql.ID_TABLES
        """The id tables the file has (an older schema, opened by an older release's
        migrations in the tests of migrations.py, has fewer)."""

    @property
    def nbytes(self) -> int:
        """Memory of the maps, in bytes."""
        return sum(len(f.map) for f in self._logs.values())

    def load(self, db: sqlite3.Connection) -> None:
        """Build every log's map (rule 4); call inside a read transaction."""
        version = data_version(db)
        present = {str(name) for (name,) in db.execute(TABLES)}
        self._tables = tuple(t for t in sql.ID_TABLES if t in present)
        logs: dict[object, KeyBits] = {}
        for log_id, size in db.execute(LOG_SIZES):
            n = size if isinstance(size, int) and size > 0 else 0  # else reported as corrupt
            logs[log_id] = KeyBits(bits_for(n), low=n, version=version)
        for table in self._tables:
            for log_id, key in db.execute(ALL_KEYS.format(table=table)):
                f = logs.get(log_id)
                if f is not None and isinstance(key, int):
                    p = key & (f.bits - 1)
                    f.map[p >> 3] |= 1 << (p & 7)
                    f.count += 1
        self._logs = {int(log_id): f for log_id, f in logs.items() if isinstance(log_id, int)}

    def _build(self, db: sqlite3.Connection, log_id: int, size: int, extra: int) -> KeyBits:
        """A log's map from its id tables, with room for ``extra`` more keys."""
        f = KeyBits(bits_for(size + extra))
        for table in self._tables:
            rows = db.execute(LOG_KEYS.format(table=table), (log_id,))
            f.set(k for (k,) in rows if isinstance(k, int))
        return f

    def maybe_held(
        self,
        db: sqlite3.Connection,
        log_id: int,
        size: int,
        keys: Sequence[int],
        txn: int,
        version: int | None = None,
    ) -> list[int]:
        """Of ``keys``, about to be appended at ``size`` (the head read under the write
        lock) in transaction ``txn``, those the log may hold; every one is set (rule 1).
        ``version``: ``PRAGMA data_version`` read under that lock, if the caller has."""
        if version is None:
            version = data_version(db)
        f = self._logs.get(log_id)
        if f is None or size < f.low:
            f = self._build(db, log_id, size, len(keys))
            f.low, f.version = size, version
        elif version != f.version:  # another connection committed (rule 2)
            if f.low < size:
                f.set(entry_keys(db.execute(sql.RECORD_IDS, (log_id, f.low, size))))
            f.low, f.version = size, version
        elif txn != f.txn:  # the log's first append of a transaction: size is committed
            f.low = size
        if f.count + len(keys) > f.bits // FULL_AT:
            grown = self._build(db, log_id, size, len(keys))
            grown.low, grown.version = f.low, f.version
            f = grown
        f.txn = txn
        self._logs[log_id] = f
        return f.test_and_set(keys)
