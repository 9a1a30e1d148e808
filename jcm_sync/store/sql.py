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

``SqlStore`` answers the primitives of ``StoreBase`` that are one shared query and a
reshaping of its rows, so the two adapters write only what differs: connections,
transactions, and how each reads tree nodes and appends.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

from jcm_sync.errors import NotFoundError
from jcm_sync.store.base import EntryRow, RecordRow, StoreBase
from jcm_sync.store.migrations import (
    BOOKKEEPING_DDL,
    MIGRATIONS,
    READ_SCHEMA_VERSION,
    SCHEMA_VERSION,
    SET_SCHEMA_VERSION,
    check_schema_version,
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
    "check_schema_version",
    "checkpoint_query",
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
#: The ``appended_at >= ?`` bound (a day early: SQLite compares its ISO text as wall time,
#: whatever the offset) lets the index of migration 3 skip the older entries.
APPEND_COUNTS: Final = (
    "SELECT ({epoch} - ?) / ? AS bucket, count(*) FROM log_entries "
    "WHERE log_id = ? AND appended_at >= ? AND {epoch} >= ? GROUP BY bucket ORDER BY bucket"
)
SQLITE_EPOCH: Final = "CAST(strftime('%s', appended_at) AS INTEGER)"
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
NODE: Final = "SELECT hash FROM log_nodes WHERE log_id = ? AND level = ? AND idx = ?"
RECORD_IDS: Final = (
    "SELECT idx, record_id FROM log_entries WHERE log_id = ? AND idx >= ? AND idx < ?"
)
ENTRIES: Final = (
    "SELECT idx, record_id, envelope, appended_at FROM log_entries "
    "WHERE log_id = ? AND idx >= ? AND idx < ? ORDER BY idx"
)
INSERT_ENTRY: Final = (
    "INSERT INTO log_entries (log_id, idx, record_id, envelope, appended_at) VALUES (?, ?, ?, ?, ?)"
)
INSERT_NODE: Final = "INSERT INTO log_nodes (log_id, level, idx, hash) VALUES (?, ?, ?, ?)"
INSERT_RECORD: Final = (
    "INSERT INTO record_index "
    "(log_id, idx, record_id, partnership, kind, key, author, supersedes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
FIND_RECORD: Final = "SELECT idx FROM record_index WHERE record_id = ? AND log_id = ?"
INSERT_CHECKPOINT: Final = (
    "INSERT INTO log_checkpoints (log_id, size, root, note) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
CHECKPOINT_AT: Final = "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? AND size = ?"
CHECKPOINT_LATEST: Final = (
    "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? ORDER BY size DESC LIMIT 1"
)
CHECKPOINTS: Final = "SELECT size, root, note FROM log_checkpoints WHERE log_id = ? ORDER BY size"
ENVELOPE: Final = (
    "SELECT l.origin, e.idx, e.record_id, e.envelope, e.appended_at "
    "FROM record_index r JOIN log_entries e ON e.log_id = r.log_id AND e.idx = r.idx "
    "JOIN logs l ON l.id = r.log_id WHERE r.record_id = ? ORDER BY r.log_id LIMIT 1"
)


def schema_ddl(**dialect: str) -> list[str]:
    """The DDL statements with the dialect's types filled in."""
    return [stmt.format(**dialect) for stmt in SCHEMA_DDL]


def checkpoint_query(log_id: int, size: int | None, latest: bool) -> tuple[str, list[object]]:
    """The SELECT of (size, root, note) rows: at ``size``, the latest one, or all by size."""
    if size is not None:
        return CHECKPOINT_AT, [log_id, size]
    return (CHECKPOINT_LATEST if latest else CHECKPOINTS), [log_id]


def record_query(query: RecordQuery) -> tuple[str, list[object]]:
    """The SELECT for a record-index lookup, returning ``base.RecordRow``s."""
    conds: list[str] = []
    args: list[object] = []
    for column, value in (
        ("r.record_id", query.record_id),
        ("r.kind", query.kind),
        ("r.key", query.key),
        ("r.partnership", query.partnership),
        ("r.supersedes", query.supersedes),
    ):
        if value is not None:
            conds.append(f"{column} = ?")
            args.append(value)
    where = " WHERE " + " AND ".join(conds) if conds else ""
    sql = (
        "SELECT r.record_id, r.kind, r.key, r.author, r.supersedes, r.partnership, "
        "l.partnership, l.node, l.origin, r.idx "
        f"FROM record_index r JOIN logs l ON l.id = r.log_id{where} ORDER BY r.log_id, r.idx"
    )
    return sql, args


Rows = list[tuple[Any, ...]]


def append_rows(log_id: int, plan: AppendPlan, appended_at: object) -> tuple[Rows, Rows, Rows]:
    """The parameter rows of an append plan: entries, nodes, record index."""
    entries: Rows = [
        (log_id, i, e.record_id, e.envelope, appended_at)
        for i, e in enumerate(plan.new, plan.first)
    ]
    nodes: Rows = [(log_id, n.level, n.index, n.hash) for n in plan.nodes]
    records: Rows = [
        (log_id, i, e.record_id, e.partnership, e.kind, e.key, e.author, e.supersedes)
        for i, e in enumerate(plan.new, plan.first)
    ]
    return entries, nodes, records


def refuse_append(
    log: LogRef, plan: AppendPlan, held: Mapping[str, int | None], exc: Exception
) -> NoReturn:
    """Explain a unique-key violation raised writing ``plan``; call it in the ``except``.

    ``held`` maps each new record id to the index ``FIND_RECORD`` found it at in this log,
    or None: a record already held is a ``ConflictError`` (invariant 2); otherwise rows lie
    past the stored head, a corrupt store.
    """
    found = {rid: int(idx) for rid, idx in held.items() if idx is not None}
    if found:
        raise duplicate_error(log, found) from None
    raise rows_past_head_error(log, plan, str(exc)) from exc


def trust_mark_writes(
    rows: Iterable[Sequence[object]], offered: Mapping[str, Sequence[TrustMark]], at: object
) -> tuple[list[TrustMark], Rows]:
    """Judge ``offered`` against the held ``TRUST_MARKS`` rows (rule 7): the marks that rise
    and the ``RAISE_TRUST_MARK`` parameter rows that write them, stamped ``at``."""
    rising = plan_trust_marks(trust_marks_from((r[0], r[1], r[2]) for r in rows), offered)
    return rising, [(m.partnership, m.version, m.digest, at) for m in rising]


def stored_time(value: object) -> object:
    """An append time as read: SQLite keeps ISO 8601 text, PostgreSQL a ``datetime``."""
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

    async def _record_rows(self, query: RecordQuery) -> list[RecordRow]:
        text, args = record_query(query)
        return [tuple(r) for r in await self._query(text, *args)]

    async def _envelope_row(self, record_id: str) -> tuple[str, int, object, object, object]:
        rows = await self._query(ENVELOPE, record_id)
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
        """A time as the dialect stores ``appended_at``: SQLite keeps ISO 8601 text."""
        return at.isoformat()

    async def _state_chunks(self, key: str) -> list[tuple[object, object]]:
        return [(r[0], r[1]) for r in await self._query(STATE_CHUNKS, key)]

    async def _delete_state(self, key: str) -> bool:
        return bool(await self._query(DELETE_STATE, key))

    async def _state_keys(self, prefix: str) -> list[str]:
        return [str(r[0]) for r in await self._query(STATE_KEYS, prefix, prefix)]

    async def _append_counts(self, log_id: int, since: int, bucket: int) -> list[tuple[int, int]]:
        text = APPEND_COUNTS.format(epoch=self.EPOCH)
        early = self._time_arg(datetime.fromtimestamp(since, UTC) - timedelta(days=1))
        rows = await self._query(text, since, bucket, log_id, early, since)
        return [(int(r[0]), int(r[1])) for r in rows]
