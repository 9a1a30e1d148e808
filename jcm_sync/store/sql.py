"""The SQL the SQLite and PostgreSQL stores share: the table layout, the statements, the rows.

Why this module exists: both SQL adapters keep the same tables and must read and write them
the same way, or a database could not move from one to the other and a fix to one query
would miss the other. Every statement is written once, here, with ``?`` placeholders; the
PostgreSQL adapter numbers them (``$1``...). The DDL names its few dialect differences
(serial, blob and time types, ``WITHOUT ROWID``) as format fields.

The layout itself is built by the ordered migrations of ``migrations.py`` (rule 8 of
``protocol.py``): each adapter runs ``migrations.migration_steps`` when it opens. The
node-state statements (``STATE_CHUNKS``...) and ``APPEND_COUNTS`` serve protocol rule 9.
Adapters use this module by name (``sql.HEAD``).

The layout of ADR 0040: one ``log_entries`` row per entry (its record-index fields and
leaf hash included), tree nodes only at levels 4, 8, 12... (ADR 0046; ``sparse.py`` computes the
others), and record ids as 64-bit keys in ``ID_TABLES``: on SQLite fed in bulk through
``middle_record_ids`` and ``upper_record_ids`` from the small ``recent_record_ids``
(migration 9, ADR 0053), so no append writes at scattered places of a large index;
PostgreSQL finds them by a hash index of ``log_entries.record_id`` (migration 7).

``SqlStore`` answers the primitives of ``StoreBase`` that are one shared query and a
reshaping of its rows, so the two adapters write only what differs: connections,
transactions, and how each reads tree nodes and appends.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

from jcm_sync.errors import NotFoundError
from jcm_sync.store import sparse
from jcm_sync.store.base import EntryRow, RecordRow, StoreBase
from jcm_sync.store.migrations import (
    BOOKKEEPING_DDL,
    MIGRATIONS,
    READ_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SET_SCHEMA_VERSION,
    check_schema_version,
    dialect_statements,
)
from jcm_sync.store.planning import (
    AppendPlan,
    duplicate_error,
    plan_trust_marks,
    rows_past_head_error,
    trust_marks_from,
)
from jcm_sync.store.values import LogRef, RecordQuery, StoredCheckpoint, TrustMark
from jcm_sync.store.witnessing import SqlWitnessRecords

__all__ = [
    "READ_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "SET_SCHEMA_VERSION",
    "SqlStore",
    "append_rows",
    "check_not_held",
    "check_schema_version",
    "checkpoint_query",
    "entry_inserts",
    "epoch_us",
    "id_key",
    "id_keys",
    "merges_between",
    "record_query",
    "refuse_append",
    "schema_ddl",
    "stored_time",
    "trust_mark_writes",
]
#: Every DDL statement of the layout, bookkeeping first, then the migrations in order.
SCHEMA_DDL: Final = BOOKKEEPING_DDL + tuple(
    stmt for migration in MIGRATIONS for stmt in migration.statements
)

#: Node state (protocol rule 9): a value is rows ``(key, chunk 0..n-1)`` of at most
#: ``STATE_CHUNK`` bytes each, replaced in one transaction.
STATE_CHUNKS: Final = "SELECT chunk, value FROM node_state WHERE key = ? ORDER BY chunk"
DELETE_STATE: Final = "DELETE FROM node_state WHERE key = ? RETURNING chunk"
INSERT_STATE: Final = "INSERT INTO node_state (key, chunk, value, updated_at) VALUES (?, ?, ?, ?)"
STATE_KEYS: Final = (
    "SELECT key FROM node_state WHERE chunk = 0 "
    "AND substr(key, 1, length(CAST(? AS TEXT))) = CAST(? AS TEXT)"
)
#: Entries appended per bucket: ``{epoch}`` is the dialect's whole seconds of appended_at.
#: The ``appended_at >= ?`` bound (a day early, a margin kept from when SQLite compared
#: ISO text as wall time) lets the index of migration 3 skip the older entries.
APPEND_COUNTS: Final = (
    "SELECT ({epoch} - ?) / ? AS bucket, count(*) FROM log_entries "
    "WHERE log_id = ? AND appended_at >= ? AND {epoch} >= ? GROUP BY bucket ORDER BY bucket"
)
#: SQLite keeps ``appended_at`` as integer microseconds since the epoch (migration 8).
SQLITE_EPOCH: Final = "(appended_at / 1000000)"
POSTGRES_EPOCH: Final = "CAST(floor(extract(epoch FROM appended_at)) AS BIGINT)"
TRUST_MARKS: Final = "SELECT partnership, version, digest FROM trust_marks"
RAISE_TRUST_MARK: Final = (
    "INSERT INTO trust_marks (partnership, version, digest, recorded_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (partnership) DO UPDATE SET version = excluded.version, "
    "digest = excluded.digest, recorded_at = excluded.recorded_at "
    "WHERE trust_marks.version < excluded.version"
)
LOOKUP_LOG: Final = "SELECT id, origin FROM logs WHERE partnership = ? AND node = ?"
INSERT_LOG: Final = (
    "INSERT INTO logs (partnership, node, origin, size, root) VALUES (?, ?, ?, 0, ?) "
    "ON CONFLICT DO NOTHING"
)
LIST_LOGS: Final = "SELECT partnership, node, origin FROM logs ORDER BY partnership, node"
HEAD: Final = "SELECT size, root FROM logs WHERE id = ?"
UPDATE_HEAD: Final = "UPDATE logs SET size = ?, root = ? WHERE id = ?"
#: The rows ``sparse.base_reads`` asks for: stored nodes of one level, or leaf hashes.
NODE_RANGE: Final = (
    "SELECT idx, hash FROM log_nodes WHERE log_id = ? AND level = ? AND idx >= ? AND idx < ?"
)
LEAF_RANGE: Final = (
    "SELECT idx, leaf_hash FROM log_entries WHERE log_id = ? AND idx >= ? AND idx < ?"
)
RECORD_IDS: Final = (
    "SELECT idx, record_id FROM log_entries WHERE log_id = ? AND idx >= ? AND idx < ?"
)
ENTRIES: Final = (
    "SELECT idx, record_id, envelope, appended_at FROM log_entries "
    "WHERE log_id = ? AND idx >= ? AND idx < ? ORDER BY idx"
)
ENTRY_COLUMNS: Final = (
    "log_id", "idx", "record_id", "kind", "key", "supersedes", "leaf_hash", "envelope",
    "appended_at",
)  # fmt: skip
INSERT_ENTRY: Final = (
    f"INSERT INTO log_entries ({', '.join(ENTRY_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: SQLite inserts a batch's entries up to ``ENTRY_CHUNK`` rows to a statement, one
#: multi-row VALUES (``entry_inserts``): a quarter less CPU per row than a step of
#: ``executemany`` each (ADR 0062). 64 rows bind 576 values, under the 999 a SQLite
#: before 3.32 allows.
ENTRY_CHUNK: Final = 64
#: ``INSERT_ENTRY`` of n rows, for n = ``ENTRY_CHUNK``, half of it ... 1: a batch is
#: inserted by these seven texts only, each prepared once in the connection's cache.
INSERT_ENTRIES: Final = {
    n: INSERT_ENTRY.replace(" VALUES ", " VALUES " + "(?, ?, ?, ?, ?, ?, ?, ?, ?), " * (n - 1))
    for n in (1 << b for b in range(ENTRY_CHUNK.bit_length()))
}
INSERT_NODE: Final = "INSERT INTO log_nodes (log_id, level, idx, hash) VALUES (?, ?, ?, ?)"
#: The id index (ADR 0040, 0053), four tables of one shape, largest first: new ids go to
#: ``recent_record_ids`` (a few pages, always cached); every ``RECENT_IDS`` entries of a
#: log, one statement moves them all, in key order, into ``middle_record_ids``; every
#: ``MIDDLE_IDS``, those into ``upper_record_ids``; every ``UPPER_IDS``, those into
#: ``record_ids``. A merge touches each page of its target at most once, and no append
#: writes at scattered places of a large table. Eight times as many ids between one
#: level's merges as the level's below (migration 9): the pages a merge rewrites per entry
#: are about a level's ratio over the ids a page holds, so three merges of ratio 8 write
#: half the pages of ADR 0040's two (ratio 32, and ``record_ids`` every 131,072).
ID_TABLES: Final = ("record_ids", "upper_record_ids", "middle_record_ids", "recent_record_ids")
ID_COLUMNS: Final = ("id_key", "log_id", "idx")
INSERT_RECENT_ID: Final = "INSERT INTO recent_record_ids (id_key, log_id, idx) VALUES (?, ?, ?)"
#: A batch's recent ids in one SQLite statement: (log id, first index, the keys as one JSON
#: array in index order); half the CPU of a bound row each (ADR 0058).
INSERT_RECENT_IDS_SQLITE: Final = (
    "INSERT INTO recent_record_ids (id_key, log_id, idx) SELECT value, ?, ? + key FROM json_each(?)"
)
RECENT_IDS: Final = 1 << 12
MIDDLE_IDS: Final = 1 << 15
UPPER_IDS: Final = 1 << 18
#: The merges of the id index, (source, target), smallest first: the order they run in.
ID_MERGES: Final = (
    ("recent_record_ids", "middle_record_ids"),
    ("middle_record_ids", "upper_record_ids"),
    ("upper_record_ids", "record_ids"),
)
#: SQLite runs a merge as two statements under its one writer's lock.
MERGE_IDS_SQLITE: Final = {
    (source, target): (
        f"INSERT INTO {target} (id_key, log_id, idx) "
        f"SELECT id_key, log_id, idx FROM {source} ORDER BY id_key, log_id, idx",
        f"DELETE FROM {source}",
    )
    for source, target in ID_MERGES
}
#: The entries whose record id may be one sought (``{keys}``: one key ``?``), as a FROM
#: clause: the four parts of the id index, then the entry.
ID_PLACES: Final = (
    "("
    + " UNION ALL ".join(
        f"SELECT log_id, idx FROM {t} WHERE id_key IN ({{keys}})" for t in ID_TABLES
    )
    + ") k JOIN log_entries e ON e.log_id = k.log_id AND e.idx = k.idx"
)
#: Entries of one log whose id key is among a batch's: the held ids an append must refuse.
#: ``{keys}`` is the dialect's table ``j(value)`` of the keys; CROSS JOIN keeps SQLite
#: probing the index from each key rather than scanning the log's entries.
HELD_IDS: Final = " UNION ALL ".join(
    f"SELECT e.record_id, e.idx FROM {{keys}} CROSS JOIN {table} r CROSS JOIN log_entries e "
    "WHERE r.id_key = j.value AND r.log_id = ? AND e.log_id = r.log_id AND e.idx = r.idx"
    for table in ID_TABLES
)
SQLITE_KEYS: Final = "json_each(?) j"
INSERT_CHECKPOINT: Final = (
    "INSERT INTO log_checkpoints (log_id, size, root, note) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
CHECKPOINT_AT: Final = "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? AND size = ?"
CHECKPOINT_LATEST: Final = (
    "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? ORDER BY size DESC LIMIT 1"
)
CHECKPOINTS: Final = "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? ORDER BY size"
ONE_ID: Final = ID_PLACES.format(keys="?")
ENVELOPE: Final = (
    "SELECT l.origin, e.idx, e.record_id, e.envelope, e.appended_at "
    f"FROM {ONE_ID} JOIN logs l ON l.id = e.log_id WHERE e.record_id = ? "
    "ORDER BY e.log_id LIMIT 1"
)
#: ``ENVELOPE`` where the entries are indexed by record id (PostgreSQL, migration 7).
ENVELOPE_BY_RECORD_ID: Final = (
    "SELECT l.origin, e.idx, e.record_id, e.envelope, e.appended_at "
    "FROM log_entries e JOIN logs l ON l.id = e.log_id WHERE e.record_id = ? "
    "ORDER BY e.log_id LIMIT 1"
)


def schema_ddl(**dialect: str) -> list[str]:
    """The DDL statements with the dialect's types filled in (``dialect_statements``)."""
    return dialect_statements(SCHEMA_DDL, **dialect)


def checkpoint_query(log_id: int, size: int | None, latest: bool) -> tuple[str, list[object]]:
    """The SELECT of (size, root, note) rows: at ``size``, the latest one, or all by size."""
    if size is not None:
        return CHECKPOINT_AT, [log_id, size]
    return (CHECKPOINT_LATEST if latest else CHECKPOINTS), [log_id]


def id_key(record_id: str) -> int:
    """The signed 64-bit key of a record id in ``record_ids``: its first 8 bytes, big-endian.

    Two ids may share a key; every lookup also compares the entry's full record id.
    """
    value = int(record_id[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def id_keys(record_ids: Sequence[str]) -> tuple[int, ...]:
    """``id_key`` of each record id, in one conversion of their first 16 hex digits."""
    prefixes = bytes.fromhex("".join([r[:16] for r in record_ids]))
    return struct.unpack(f">{len(record_ids)}q", prefixes)


def record_query(query: RecordQuery, keyed: bool = True) -> tuple[str, list[object]]:
    """The SELECT for a record-index lookup, returning ``base.RecordRow``s; ``keyed``:
    find a record id through the id tables (SQLite), else by ``log_entries.record_id``
    alone (PostgreSQL's hash index, migration 7).

    A record's partnership and author are its log's: ``prepare_batch`` refuses any other.
    """
    conds: list[str] = []
    args: list[object] = []
    source = "log_entries e"
    if query.record_id is not None and keyed:
        key = id_key(query.record_id)
        source = ONE_ID
        args += [key] * len(ID_TABLES)
    for column, value in (
        ("e.record_id", query.record_id),
        ("e.kind", query.kind),
        ("e.key", query.key),
        ("l.partnership", query.partnership),
        ("e.supersedes", query.supersedes),
    ):
        if value is not None:
            conds.append(f"{column} = ?")
            args.append(value)
    where = " WHERE " + " AND ".join(conds) if conds else ""
    sql = (
        "SELECT e.record_id, e.kind, e.key, l.node, e.supersedes, l.partnership, "
        "l.partnership, l.node, l.origin, e.idx "
        f"FROM {source} JOIN logs l ON l.id = e.log_id{where} ORDER BY e.log_id, e.idx"
    )
    return sql, args


Rows = list[tuple[Any, ...]]


def append_rows(log_id: int, plan: AppendPlan, appended_at: object) -> tuple[Rows, Rows, Rows]:
    """The parameter rows of an append plan: entries, stored nodes, recent ids."""
    # unpacked, not by attribute: a hub batch is thousands of entries (PreparedEntry's order)
    entries: Rows = [
        (log_id, i, rid, kind, key, sup, leaf, env, appended_at)
        for i, (env, rid, leaf, kind, key, _author, sup, _p) in enumerate(plan.new, plan.first)
    ]
    nodes: Rows = [(log_id, n.level, n.index, n.hash) for n in sparse.stored(plan.nodes)]
    keys = id_keys([row[2] for row in entries])
    ids: Rows = [(k, log_id, i) for i, k in enumerate(keys, plan.first)]
    return entries, nodes, ids


def entry_inserts(rows: Sequence[Sequence[object]]) -> list[tuple[str, list[object]]]:
    """The statements of ``INSERT_ENTRIES`` that insert ``rows`` (``append_rows``'
    entries) in order, with their values: ``ENTRY_CHUNK`` rows each, the rest in pieces
    of the powers of two of its size, largest first."""
    out: list[tuple[str, list[object]]] = []
    at, n = 0, len(rows)
    while at < n:
        size = min(ENTRY_CHUNK, 1 << ((n - at).bit_length() - 1))
        out.append((INSERT_ENTRIES[size], [v for row in rows[at : at + size] for v in row]))
        at += size
    return out


def merges_between(first: int, size: int) -> list[tuple[str, str]]:
    """The merges of ``ID_MERGES`` a log growing from ``first`` to ``size`` entries makes, in
    order: each level's when the log crosses a multiple of its period (``RECENT_IDS``,
    ``MIDDLE_IDS``, ``UPPER_IDS``), the smaller ones first."""
    periods = (RECENT_IDS, MIDDLE_IDS, UPPER_IDS)
    return [
        step
        for every, step in zip(periods, ID_MERGES, strict=True)
        if first // every != size // every
    ]


def check_not_held(log: LogRef, plan: AppendPlan, rows: Iterable[Sequence[object]]) -> None:
    """Refuse an append of a record the log already holds (invariant 2): ``rows`` are the
    (record id, index) ``HELD_IDS`` found for the new entries' keys, collisions included."""
    held = list(rows)
    if not held:  # the usual case: nothing more to build
        return
    new = {e.record_id for e in plan.new}
    found = {str(r[0]): int(str(r[1])) for r in held if r[0] in new}
    if found:
        raise duplicate_error(log, found)


def refuse_append(log: LogRef, plan: AppendPlan, exc: Exception) -> NoReturn:
    """Explain a primary-key violation raised writing ``plan`` (call it in the ``except``):
    duplicates were refused before writing, so rows lie past the stored head."""
    raise rows_past_head_error(log, plan, str(exc)) from exc


def trust_mark_writes(
    rows: Iterable[Sequence[object]], offered: Mapping[str, Sequence[TrustMark]], at: object
) -> tuple[list[TrustMark], Rows]:
    """Judge ``offered`` against the held ``TRUST_MARKS`` rows (rule 7): the marks that rise
    and the ``RAISE_TRUST_MARK`` parameter rows that write them, stamped ``at``."""
    rising = plan_trust_marks(trust_marks_from((r[0], r[1], r[2]) for r in rows), offered)
    return rising, [(m.partnership, m.version, m.digest, at) for m in rising]


UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US: Final = timedelta(microseconds=1)


def epoch_us(at: datetime) -> int:
    """An append time as SQLite keeps it (migration 8): whole microseconds since the
    epoch, exactly (no float); a naive time is taken as UTC."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - UNIX_EPOCH) // ONE_US


def stored_time(value: object) -> object:
    """An append time as read: SQLite keeps integer microseconds since the epoch (ISO
    8601 text before migration 8), PostgreSQL a ``datetime``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return UNIX_EPOCH + value * ONE_US
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # reported as corrupt by check_entry
    return value


class SqlStore(SqlWitnessRecords, StoreBase):
    """The ``StoreBase`` primitives that are one shared query, over the adapter's ``_query``."""

    @abc.abstractmethod
    async def _query(self, text: str, *args: object) -> list[Any]:
        """Run one statement of this module (``?`` placeholders) and return its rows."""

    def _origin_of(self, log_id: int) -> str:
        """The origin of a log looked up before, to name it in an error."""
        return next((o for i, o in self._cache.ids.values() if i == log_id), f"log {log_id}")

    async def _list_logs(self) -> list[tuple[str, str, str]]:
        return [(r[0], r[1], r[2]) for r in await self._query(LIST_LOGS)]

    async def _head(self, log_id: int) -> tuple[object, object]:
        rows = await self._query(HEAD, log_id)
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    async def _entry_rows(self, log_id: int, start: int, end: int) -> list[EntryRow]:
        rows = await self._query(ENTRIES, log_id, start, end)
        return [(r[0], r[1], r[2], stored_time(r[3])) for r in rows]

    async def _insert_checkpoint(self, log_id: int, cp: StoredCheckpoint) -> None:
        await self._query(INSERT_CHECKPOINT, log_id, cp.size, cp.root, cp.note)

    async def _checkpoint_rows(
        self, log_id: int, size: int | None, latest: bool
    ) -> list[tuple[object, object, object]]:
        text, args = checkpoint_query(log_id, size, latest)
        return [(r[0], r[1], r[2]) for r in await self._query(text, *args)]

    #: True where record ids are found through the id tables (``ID_TABLES``, SQLite);
    #: False where ``log_entries.record_id`` is indexed itself (PostgreSQL).
    ID_KEYED: bool = True

    async def _record_rows(self, query: RecordQuery) -> list[RecordRow]:
        text, args = record_query(query, self.ID_KEYED)
        return [tuple(r) for r in await self._query(text, *args)]

    async def _envelope_row(self, record_id: str) -> tuple[str, int, object, object, object]:
        if self.ID_KEYED:
            keys = [id_key(record_id)] * len(ID_TABLES)
            rows = await self._query(ENVELOPE, *keys, record_id)
        else:
            rows = await self._query(ENVELOPE_BY_RECORD_ID, record_id)
        if not rows:
            raise NotFoundError(f"no log holds record {record_id[:16]}")
        origin, idx, rid, env, at = rows[0]
        return origin, idx, rid, env, stored_time(at)

    async def _trust_mark_rows(self) -> list[tuple[object, object, object]]:
        return [(r[0], r[1], r[2]) for r in await self._query(TRUST_MARKS)]

    #: The dialect's whole epoch seconds of ``appended_at`` (``SQLITE_EPOCH``...).
    EPOCH: str = SQLITE_EPOCH

    @staticmethod
    def _time_arg(at: datetime) -> object:
        """A time as the dialect stores it (the other tables' times): SQLite keeps ISO
        8601 text."""
        return at.isoformat()

    def _entry_time(self, at: datetime) -> object:
        """A time as the dialect stores ``appended_at``: ``_time_arg``'s unless the
        adapter says otherwise (SQLite: ``epoch_us``)."""
        return self._time_arg(at)

    async def _state_chunks(self, key: str) -> list[tuple[object, object]]:
        return [(r[0], r[1]) for r in await self._query(STATE_CHUNKS, key)]

    async def _delete_state(self, key: str) -> bool:
        return bool(await self._query(DELETE_STATE, key))

    async def _state_keys(self, prefix: str) -> list[str]:
        return [str(r[0]) for r in await self._query(STATE_KEYS, prefix, prefix)]

    async def _append_counts(self, log_id: int, since: int, bucket: int) -> list[tuple[int, int]]:
        text = APPEND_COUNTS.format(epoch=self.EPOCH)
        early = self._entry_time(datetime.fromtimestamp(since, UTC) - timedelta(days=1))
        rows = await self._query(text, since, bucket, log_id, early, since)
        return [(int(r[0]), int(r[1])) for r in rows]
