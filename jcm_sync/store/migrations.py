"""The ordered, versioned schema migrations both SQL stores apply when they open a database.

Why this module exists: a node upgraded in place must keep its logs; the layout of its
database has to move forward one recorded step at a time, the same way on SQLite and on
PostgreSQL, and an older jcm-sync must refuse a layout it does not know rather than run on
it (protocol rule 8). Each ``Migration`` is a version, a description and its DDL, with the
dialect's few differences as format fields (``{serial}``, ``{blob}``, ``{time}``,
``{without_rowid}``).

Rules:

1. ``MIGRATIONS`` is ordered by version, 1, 2, 3, ... with no gap; a migration, once
   released, is never edited: a change to the layout is a new migration at the end, and
   ``SCHEMA_VERSION`` is the version of the last one.
2. Opening a store runs, in ONE transaction (under the adapter's write lock): the
   bookkeeping DDL, the read of the recorded version (``store_meta.schema_version``; none
   means a new, empty database, version 0), the refusal of a newer version
   (``check_schema_version``), every migration above the recorded one in order, one
   ``schema_migrations`` row per migration applied (with ``applied_at``), and the new
   version. Either the database moves to ``SCHEMA_VERSION`` or it stays as it was.
3. A database older than the ``schema_migrations`` table (made by a jcm-sync that only kept
   ``store_meta.schema_version``) gets a row for each version it already had, with
   ``applied_at`` NULL: "before migrations were recorded".
4. Statements are ``IF NOT EXISTS`` where the dialects allow it, so a database that got a
   table outside this path (a half-done manual repair) still migrates.
5. Version 1 is the original layout (logs, entries, tree nodes, checkpoints, record
   index), 2 adds ``trust_marks`` (ADR 0017), 3 adds ``node_state``, the chunked key/value
   table holding the node's own state (ADR 0027), and an index of entries by append time;
   4 adds ``witnessed`` (the tree head a witness cosigned per origin) and
   ``log_cosignatures`` (the counterpart's cosignatures of stored checkpoints, ADR 0032);
   5 adds ``shared_nonces`` and ``shared_request_counts``, the request nonces and
   per-node request counts every hub process on one PostgreSQL shares (ADR 0042);
   6 merges the record index into ``log_entries`` with each entry's leaf hash, keeps record
   ids as 64-bit keys in ``record_ids`` fed in bulk through ``middle_record_ids`` from
   ``recent_record_ids``, and keeps
   only the tree nodes of levels 8, 16, ... (ADR 0040). It rebuilds ``log_entries`` and
   moves its rows, so it cannot be ``IF NOT EXISTS``-idempotent: like every migration it
   runs once, in the transaction that records it. Its dialect fields ``{leaf_hash}`` and
   ``{id_key}`` are the expressions computing an entry's RFC 9162 leaf hash from
   ``e.envelope`` and a record id's 64-bit key from ``record_id`` (``sql.id_key``).
   7 changes PostgreSQL only (ADR 0040, amendment): record ids are found through a hash
   index of ``log_entries.record_id`` (``record_ids`` is emptied), and the index of
   entries by append time is a BRIN index. Its statements are whole dialect fields, empty
   on SQLite; ``dialect_statements`` leaves out a statement that formats to nothing.
   8 changes SQLite only (ADR 0044): ``log_entries`` is rebuilt with ``appended_at`` as
   an integer count of microseconds since the epoch (UTC) instead of ISO 8601 text,
   converted by the registered ``jcm_epoch_us`` (text it cannot read stays as it was, and
   a read reports it as corrupt). Its statements are whole dialect fields
   (``ENTRIES_V8_FIELDS``, filled by ``SQLITE_V8``), empty on PostgreSQL.
   9 adds ``upper_record_ids``, a fourth table of the id index between
   ``middle_record_ids`` and ``record_ids`` (ADR 0053), and moves the middle table's ids
   into it. On PostgreSQL it is made empty, as its other id tables are since 7, so both
   dialects keep one set of tables; its ids and indexes are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from jcm_sync.errors import StoreError

__all__ = [
    "APPLIED_MIGRATIONS",
    "BOOKKEEPING_DDL",
    "ENTRIES_V8_FIELDS",
    "MIGRATIONS",
    "READ_SCHEMA_VERSION",
    "RECORD_MIGRATION",
    "SCHEMA_VERSION",
    "SET_SCHEMA_VERSION",
    "SQLITE_V8",
    "Migration",
    "backfill",
    "check_schema_version",
    "dialect_statements",
    "migration_steps",
    "pending",
    "recorded_version",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the layout: what it is for and the DDL that takes a database there."""

    version: int
    description: str
    statements: tuple[str, ...]


#: Migration 8's dialect fields, in order, each a whole statement: ``SQLITE_V8`` fills
#: them on SQLite, PostgreSQL with nothing (its layout is unchanged).
ENTRIES_V8_FIELDS: Final = (
    "v8_entries", "v8_rows", "v8_drop", "v8_rename", "v8_by_time", "v8_by_kind_key",
    "v8_by_supersedes",
)  # fmt: skip
#: Migration 8 on SQLite: ``log_entries`` rebuilt with ``appended_at`` as INTEGER (a TEXT
#: column would store a number as text), converted by the registered ``jcm_epoch_us``.
SQLITE_V8: Final = dict(
    zip(
        ENTRIES_V8_FIELDS,
        (
            """CREATE TABLE IF NOT EXISTS log_entries_v8 (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        supersedes TEXT,
        leaf_hash BLOB NOT NULL,
        envelope BLOB NOT NULL,
        appended_at INTEGER NOT NULL,
        PRIMARY KEY (log_id, idx))""",
            """INSERT INTO log_entries_v8 (log_id, idx, record_id, kind, key, supersedes,
        leaf_hash, envelope, appended_at)
        SELECT log_id, idx, record_id, kind, key, supersedes, leaf_hash, envelope,
        jcm_epoch_us(appended_at) FROM log_entries ORDER BY log_id, idx""",
            "DROP TABLE IF EXISTS log_entries",
            "ALTER TABLE log_entries_v8 RENAME TO log_entries",
            "CREATE INDEX IF NOT EXISTS log_entries_appended ON log_entries (log_id, appended_at)",
            "CREATE INDEX IF NOT EXISTS log_entries_kind_key ON log_entries (kind, key)",
            "CREATE INDEX IF NOT EXISTS log_entries_supersedes ON log_entries (supersedes) "
            "WHERE supersedes IS NOT NULL",
        ),
        strict=True,
    )
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "logs, entries, tree nodes, checkpoints and the record index",
        (
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
        ),
    ),
    Migration(
        2,
        "trust marks: the highest trust-root version per partnership",
        (
            """CREATE TABLE IF NOT EXISTS trust_marks (
        partnership TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        digest TEXT NOT NULL,
        recorded_at {time} NOT NULL)""",
        ),
    ),
    Migration(
        3,
        "node state in chunks; entries by append time",
        (
            # A rowid table even on SQLite: chunks are large, and WITHOUT ROWID suits small rows.
            """CREATE TABLE IF NOT EXISTS node_state (
        key TEXT NOT NULL,
        chunk INTEGER NOT NULL,
        value {blob} NOT NULL,
        updated_at {time} NOT NULL,
        PRIMARY KEY (key, chunk))""",
            # append_counts reads recent entries from this index, not the envelopes' pages
            "CREATE INDEX IF NOT EXISTS log_entries_appended ON log_entries (log_id, appended_at)",
        ),
    ),
    Migration(
        4,
        "witnessed tree heads per origin; cosignatures of stored checkpoints",
        (
            """CREATE TABLE IF NOT EXISTS witnessed (
        origin TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        root {blob} NOT NULL,
        updated_at {time} NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS log_cosignatures (
        log_id BIGINT NOT NULL,
        size BIGINT NOT NULL,
        key_name TEXT NOT NULL,
        key_id BIGINT NOT NULL,
        signature {blob} NOT NULL,
        received_at {time} NOT NULL,
        PRIMARY KEY (log_id, size, key_name, key_id))""",
        ),
    ),
    Migration(
        5,
        "request nonces and request counts shared by several hub processes",
        (
            """CREATE TABLE IF NOT EXISTS shared_nonces (
        nonce TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS shared_nonces_until ON shared_nonces (until)",
            """CREATE TABLE IF NOT EXISTS shared_request_counts (
        key TEXT NOT NULL,
        win BIGINT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (key, win))""",
        ),
    ),
    Migration(
        6,
        "entries hold their index fields and leaf hash; ids in a bulk-merged index; sparse nodes",
        (
            # ADR 0040: one row per entry (the record index merged in, with the leaf hash),
            # record ids as 64-bit keys in an index merged in bulk from a small recent one,
            # and tree nodes only at levels 8, 16, ... (the rest are computed on demand).
            """CREATE TABLE IF NOT EXISTS log_entries_v6 (
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        record_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        supersedes TEXT,
        leaf_hash {blob} NOT NULL,
        envelope {blob} NOT NULL,
        appended_at {time} NOT NULL,
        PRIMARY KEY (log_id, idx))""",
            # a LEFT JOIN: an entry without its index row fails kind's NOT NULL, loudly
            """INSERT INTO log_entries_v6 (log_id, idx, record_id, kind, key, supersedes,
        leaf_hash, envelope, appended_at)
        SELECT e.log_id, e.idx, e.record_id, r.kind, r.key, r.supersedes,
        {leaf_hash}, e.envelope, e.appended_at
        FROM log_entries e LEFT JOIN record_index r ON r.log_id = e.log_id AND r.idx = e.idx
        ORDER BY e.log_id, e.idx""",
            "DROP TABLE IF EXISTS record_index",
            "DROP TABLE IF EXISTS log_entries",
            "ALTER TABLE log_entries_v6 RENAME TO log_entries",
            "CREATE INDEX IF NOT EXISTS log_entries_appended ON log_entries (log_id, appended_at)",
            "CREATE INDEX IF NOT EXISTS log_entries_kind_key ON log_entries (kind, key)",
            (
                "CREATE INDEX IF NOT EXISTS log_entries_supersedes ON log_entries (supersedes) "
                "WHERE supersedes IS NOT NULL"
            ),
            """CREATE TABLE IF NOT EXISTS record_ids (
        id_key BIGINT NOT NULL,
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        PRIMARY KEY (id_key, log_id, idx)){without_rowid}""",
            """CREATE TABLE IF NOT EXISTS middle_record_ids (
        id_key BIGINT NOT NULL,
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        PRIMARY KEY (id_key, log_id, idx)){without_rowid}""",
            """CREATE TABLE IF NOT EXISTS recent_record_ids (
        id_key BIGINT NOT NULL,
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        PRIMARY KEY (id_key, log_id, idx)){without_rowid}""",
            """INSERT INTO record_ids (id_key, log_id, idx)
        SELECT {id_key}, log_id, idx FROM log_entries ORDER BY 1, 2, 3""",
            "DELETE FROM log_nodes WHERE level = 0 OR level % 8 <> 0",
        ),
    ),
    Migration(
        7,
        "PostgreSQL: record ids in a hash index of the entries, append times in a BRIN index",
        (
            # ADR 0040, amendment: on PostgreSQL a row of record_ids (heap tuple and
            # B-tree entry) per entry cost more than a hash index of log_entries.record_id,
            # and a B-tree of append times more than a BRIN summary of time-ordered pages.
            # Whole statements as dialect fields: SQLite keeps its layout (empty fields).
            "{entries_by_record_id}",
            "{drop_keyed_ids}",
            "{drop_entries_by_time}",
            "{entries_by_time}",
        ),
    ),
    Migration(
        8,
        "SQLite: append times as integer microseconds, four entries to a page",
        # ADR 0044: the ISO text of an append time (32 bytes) made an entry row just too
        # long for four to a 4 KiB page; as a 64-bit count of microseconds since the epoch
        # four fit, and every append writes about a quarter fewer pages. PostgreSQL keeps
        # its timestamptz column: whole statements as dialect fields, empty there.
        tuple(f"{{{field}}}" for field in ENTRIES_V8_FIELDS),
    ),
    Migration(
        9,
        "a fourth id table: record ids merged in steps of eight",
        (
            # ADR 0053: each merge of the id index rewrites its target's pages; with
            # ratio 8 between levels instead of 32 a SQLite append writes about half the
            # id pages at 10^6 entries. The ids of the middle table move up, as its next
            # merge would move them. PostgreSQL's id tables are empty (migration 7).
            """CREATE TABLE IF NOT EXISTS upper_record_ids (
        id_key BIGINT NOT NULL,
        log_id BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        PRIMARY KEY (id_key, log_id, idx)){without_rowid}""",
            """INSERT INTO upper_record_ids (id_key, log_id, idx)
        SELECT id_key, log_id, idx FROM middle_record_ids ORDER BY id_key, log_id, idx""",
            "DELETE FROM middle_record_ids",
        ),
    ),
)

#: Version of the table layout: the last migration's (rule 1).
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

#: Run first on every open, before the version is read (rule 2).
BOOKKEEPING_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        description TEXT NOT NULL,
        applied_at {time})""",
)
READ_SCHEMA_VERSION: Final = "SELECT value FROM store_meta WHERE key = 'schema_version'"
SET_SCHEMA_VERSION: Final = (
    "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
RECORD_MIGRATION: Final = (
    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?) "
    "ON CONFLICT (version) DO NOTHING"
)
APPLIED_MIGRATIONS: Final = (
    "SELECT version, description, applied_at FROM schema_migrations ORDER BY version"
)


def dialect_statements(statements: tuple[str, ...], **dialect: str) -> list[str]:
    """``statements`` with the dialect's types filled in; one the dialect fills with
    nothing (a field naming a whole statement of another dialect) is left out."""
    return [text for text in (stmt.format(**dialect) for stmt in statements) if text.strip()]


def check_schema_version(found: object, where: str) -> None:
    """Refuse a database whose layout this code does not know (rule 8): a newer one.

    An older one (or a new one, ``found`` None) is fine: the migrations above it run.
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


def recorded_version(found: object, where: str) -> int:
    """The version ``READ_SCHEMA_VERSION`` found (0 for a new database), refused if newer."""
    check_schema_version(found, where)
    return 0 if found is None else int(str(found))


def pending(version: int) -> list[Migration]:
    """The migrations a database at ``version`` lacks, in order."""
    return [m for m in MIGRATIONS if m.version > version]


def backfill(version: int) -> list[Migration]:
    """The migrations a database at ``version`` already had (rule 3)."""
    return [m for m in MIGRATIONS if m.version <= version]


Step = tuple[str, tuple[object, ...]]
"""One statement (``?`` placeholders) and its parameters."""


def migration_steps(found: object, where: str, applied_at: object, **dialect: str) -> list[Step]:
    """What to run, after ``BOOKKEEPING_DDL`` and ``READ_SCHEMA_VERSION`` found ``found``,
    to bring the database to ``SCHEMA_VERSION`` (rules 2 and 3); ``StoreError`` if newer.

    Empty when the database is current, so opening a current store writes nothing.
    """
    version = recorded_version(found, where)
    if version == SCHEMA_VERSION:
        return []
    steps: list[Step] = [
        (RECORD_MIGRATION, (m.version, m.description, None)) for m in backfill(version)
    ]
    for m in pending(version):
        steps += [(stmt, ()) for stmt in dialect_statements(m.statements, **dialect)]
        steps.append((RECORD_MIGRATION, (m.version, m.description, applied_at)))
    steps.append((SET_SCHEMA_VERSION, (str(SCHEMA_VERSION),)))
    return steps
