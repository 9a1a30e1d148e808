"""The SQL the SQLite and PostgreSQL stores share: the table layout, the statements, the rows.

Why this module exists: both SQL adapters keep the same tables and must read and write them
the same way, or a database could not move from one to the other and a fix to one query
would miss the other. Every statement is written once, here, with ``?`` placeholders; the
PostgreSQL adapter numbers them (``$1``...). The DDL names its few dialect differences
(serial, blob and time types, ``WITHOUT ROWID``) as format fields.

``SCHEMA_VERSION`` counts layouts (rule 8 of ``protocol.py``): every DDL statement is
``IF NOT EXISTS``, so running it on an older database adds what it lacks; a newer one is
refused by ``check_schema_version``. Adapters use this module by name (``sql.HEAD``).

``SqlStore`` answers the primitives of ``StoreBase`` that are one shared query and a
reshaping of its rows, so the two adapters write only what differs: connections,
transactions, and how each reads tree nodes and appends.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NoReturn

from jcm_sync.errors import NotFoundError, StoreError
from jcm_sync.store.base import EntryRow, RecordRow, StoreBase
from jcm_sync.store.planning import (
    AppendPlan,
    duplicate_error,
    plan_trust_marks,
    rows_past_head_error,
    trust_marks_from,
)
from jcm_sync.store.values import LogRef, RecordQuery, StoredCheckpoint, TrustMark

__all__ = [
    "SCHEMA_VERSION",
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
#: Version of the table layout; an adapter migrates an older database and refuses a newer
#: one (rule 8). 2 added ``trust_marks``.
SCHEMA_VERSION: Final = 2

SCHEMA_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS logs (
        id {serial} PRIMARY KEY,
        partnership TEXT NOT NULL,
        node TEXT NOT NULL,
        origin TEXT NOT NULL UNIQUE,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        UNIQUE (partnership, node))""",
    """CREATE TABLE IF NOT EXISTS log_entries (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        envelope {blob} NOT NULL,
        appended_at {time} NOT NULL,
        PRIMARY KEY (log_id, idx))""",
    """CREATE TABLE IF NOT EXISTS log_nodes (
        log_id BIGINT NOT NULL,
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash {blob} NOT NULL,
        PRIMARY KEY (log_id, level, idx)){without_rowid}""",
    """CREATE TABLE IF NOT EXISTS log_checkpoints (
        log_id BIGINT NOT NULL,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        note {blob} NOT NULL,
        PRIMARY KEY (log_id, size))""",
    """CREATE TABLE IF NOT EXISTS record_index (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        partnership TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        author TEXT NOT NULL,
        supersedes TEXT,
        PRIMARY KEY (log_id, idx)){without_rowid}""",
    "CREATE UNIQUE INDEX IF NOT EXISTS record_index_id ON record_index (record_id, log_id)",
    "CREATE INDEX IF NOT EXISTS record_index_kind_key ON record_index (kind, key)",
    (
        "CREATE INDEX IF NOT EXISTS record_index_supersedes ON record_index (supersedes) "
        "WHERE supersedes IS NOT NULL"
    ),
    # schema version 2
    """CREATE TABLE IF NOT EXISTS trust_marks (
        partnership TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        digest TEXT NOT NULL,
        recorded_at {time} NOT NULL)""",
)

READ_SCHEMA_VERSION: Final = "SELECT value FROM store_meta WHERE key = 'schema_version'"
SET_SCHEMA_VERSION: Final = (
    "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
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


def check_schema_version(found: object, where: str) -> None:
    """Refuse a database whose layout this code does not know (rule 8): a newer one.

    An older one (or a new one, ``found`` None) is fine: the DDL just run added what it
    lacked, and the adapter then records ``SCHEMA_VERSION``.
    """
    if found is None:
        return
    text = str(found)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {found}; this jcm-sync knows version "
            f"{SCHEMA_VERSION}",
            where=where,
        )


def stored_time(value: object) -> object:
    """An append time as read: SQLite keeps ISO 8601 text, PostgreSQL a ``datetime``."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # reported as corrupt by check_entry
    return value


class SqlStore(StoreBase):
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
