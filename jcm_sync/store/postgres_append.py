"""The PostgreSQL append on the wire: its statements, the session functions they call and
the binary ``COPY`` data of its entries (ADRs 0045, 0049, 0054, 0059).

Why this module exists: ``postgres.py`` holds the store's connections, errors and the
order of an append's round trips; what each round trip sends is decided here, without
I/O of its own beyond the protocol calls ``define_functions``, ``warm_reads`` and
``copy_then`` make.

Rules:

1. Every value written into the text of a statement here is an integer or a hash the
   store formats itself (``literal``), never text from outside.
2. The reads of an append are planned without sequential or bitmap scans and without
   JIT: by ``BEGIN_APPEND``'s ``SET LOCAL``s in a transaction, or by the ``SET``
   clauses of the session function ``pg_temp.jcm_append_reads`` outside one (a young
   table's statistics would otherwise have the probe scan, ADR 0045), which also plan its
   statement once, generic: each part is a fenced index probe whatever the arguments
   (ADR 0059). A session without that function (a role refused temporary objects)
   appends the locked way.
3. ``copy_data`` writes PostgreSQL's binary ``COPY`` rows in ``sql.ENTRY_COLUMNS`` order,
   each value as asyncpg's own encoder would (``tests/store/test_postgres_append.py``
   compares every column); a column added to ``log_entries`` is added here.
4. A new connection is made ready to append before it is used (``open_session``, the
   pool's ``init``; ``warm_reads`` again once the migrations made the tables): its session
   functions, and one call of the reads for no log, which compiles the function, plans its
   statement, loads the catalog entries of what it reads and prepares asyncpg's statement.
   It reads and writes nothing; a first append would otherwise pay for all of it (ADR 0059).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from jcm_sync.core.subtrees import Subtree
from jcm_sync.store import sparse, sql  # the modules, not the package face
from jcm_sync.store.planning import PreparedEntry
from jcm_sync.store.values import Coord

__all__ = [
    "BEGIN_APPEND",
    "BEGIN_IF_HEAD",
    "CALL_UNLOCKED_READS",
    "COPY_ENTRIES",
    "HEAD_MOVED",
    "SESSION_FUNCTIONS",
    "SQL_APPEND_READS",
    "SQL_NODES",
    "SQL_UNLOCKED_READS",
    "WARM_ARGS",
    "WRITE_BY_FUNCTION_AND_COMMIT",
    "WRITE_HEAD_AND_COMMIT",
    "WRITE_NODES",
    "copy_data",
    "copy_then",
    "define_functions",
    "literal",
    "node_args",
    "open_session",
    "read_args",
    "warm_reads",
    "write_rest",
]

#: One round trip: every range of ``sparse.base_reads`` (stored nodes, then leaf hashes)
#: and, as level -1 rows with a record id, the entries of the log with the record ids
#: ``$7``, joined by commas (an append's probe for records already held; none when reading:
#: one string costs the client a tenth of a text array of 500; an id with a comma in it
#: would be probed in pieces, and what they find is not that id, which ``check_not_held``
#: compares). Each part is a
#: LATERAL subquery fenced by ``OFFSET 0``: one index probe per range or id, whatever the
#: array sizes a generic plan of this prepared statement assumes. The log of a held id is
#: compared outside its fence: inside, the planner ANDed the hash index with the primary
#: key's ``log_id`` prefix and read every entry of the log for each id held (0.1 s).
SQL_NODES = (
    "SELECT r.level, n.idx, n.hash, NULL::text FROM unnest($2::int[], $3::bigint[], "
    "$4::bigint[]) AS r(level, lo, hi) CROSS JOIN LATERAL (SELECT idx, hash FROM log_nodes "
    "WHERE log_id = $1 AND level = r.level AND idx >= r.lo AND idx < r.hi OFFSET 0) n "
    "UNION ALL SELECT 0, e.idx, e.leaf_hash, NULL FROM unnest($5::bigint[], $6::bigint[]) "
    "AS r(lo, hi) CROSS JOIN LATERAL (SELECT idx, leaf_hash FROM log_entries "
    "WHERE log_id = $1 AND idx >= r.lo AND idx < r.hi OFFSET 0) e "
    "UNION ALL SELECT -1, e.idx, NULL, e.record_id "
    "FROM unnest(string_to_array($7::text, ',')) AS j(value) "
    "CROSS JOIN LATERAL (SELECT log_id, idx, record_id FROM log_entries "
    "WHERE record_id = j.value OFFSET 0) e WHERE e.log_id = $1"
)
#: Opens a locked append's transaction (``postgres`` rule 1: the way an append goes when
#: the head moved under its first try), one round trip: ``SET LOCAL`` lasts to its end. A table
#: that grew from nothing has stale statistics, and a planner that believed it empty would
#: scan it once per probed key; one that believed it large priced the probe of 500 ids
#: past ``jit_above_cost`` and compiled it each time (5 ms, for a 0.5 ms probe). Without
#: bitmap scans, each probed id is one plain scan of the hash index: the planner expects
#: 236 entries per id (it has no statistics of a hash index) and set up a bitmap per id,
#: 27 µs each, 14 ms of a 500-entry append's 15 ms read (0.8 ms without).
BEGIN_APPEND: Final = (
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off"
)
#: A locked append's reads in one round trip: the head locked to the end of the
#: transaction (level -3) and as the statement's snapshot saw it (level -4), the record ids
#: at the indexes ``[$8, $9)`` the batch may overlap (level -2), then ``SQL_NODES``: the
#: frontier of the size the caller expected, and the probe for records already held. The
#: reads are of the snapshot: only when both heads agree did it see every append
#: committed before the lock was granted (an append writes its head in its transaction).
SQL_APPEND_READS: Final = (
    "WITH head AS (SELECT size, root FROM logs WHERE id = $1 FOR UPDATE) "
    "SELECT -3, size, root, NULL::text FROM head "
    "UNION ALL SELECT -4, size, root, NULL FROM logs WHERE id = $1 "
    "UNION ALL SELECT -2, idx, NULL, record_id FROM log_entries "
    "WHERE log_id = $1 AND idx >= $8 AND idx < $9 UNION ALL " + SQL_NODES
)
#: An append's reads without the head's lock (its first try): one statement, one
#: snapshot, the head as it saw it (level -4) and the rows of ``SQL_APPEND_READS``.
SQL_UNLOCKED_READS: Final = (
    "SELECT -4, size, root, NULL::text FROM logs WHERE id = $1 "
    "UNION ALL SELECT -2, idx, NULL, record_id FROM log_entries "
    "WHERE log_id = $1 AND idx >= $8 AND idx < $9 UNION ALL " + SQL_NODES
)
#: Made on each new connection (``define_functions``, the pool's ``init``), as functions
#: of the session (``pg_temp``: no schema object, nothing to migrate): the unlocked reads,
#: whose ``SET`` clauses give their statement the plan ``BEGIN_APPEND``'s ``SET LOCAL``s
#: give ``SQL_APPEND_READS`` (PL/pgSQL keeps it, planned again under those settings when
#: statistics change), with no transaction to open, and plan it once, generic (the
#: server's default planned each of the first five calls for its arguments, 0.3-0.5 ms
#: a batch more than the generic plan it then kept, ADR 0059); and the check that opens the write
#: of a first try: the head locked, then compared with the one read (after waiting for
#: another append's lock, the row as that append left it), ``HEAD_MOVED`` if it differs.
SESSION_FUNCTIONS: Final = (
    "CREATE FUNCTION pg_temp.jcm_append_reads(bigint, int[], bigint[], bigint[], bigint[], "
    "bigint[], text, bigint, bigint) RETURNS TABLE (out_level int, out_idx bigint, "
    "out_hash bytea, out_record_id text) LANGUAGE plpgsql "
    "SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off "
    "SET plan_cache_mode = force_generic_plan "
    f"AS $f$ BEGIN RETURN QUERY {SQL_UNLOCKED_READS}; END $f$",
    "CREATE FUNCTION pg_temp.jcm_head_is(bigint, bigint, bytea) RETURNS void "
    "LANGUAGE plpgsql AS $f$ BEGIN "
    "PERFORM 1 FROM logs WHERE id = $1 AND size = $2 AND root = $3 FOR UPDATE; "
    "IF NOT FOUND THEN RAISE EXCEPTION 'the head moved' USING ERRCODE = 'JCM01'; END IF; "
    "END $f$",
    "CREATE FUNCTION pg_temp.jcm_write_head(bigint, int[], bigint[], bytea[], bigint, bytea) "
    "RETURNS void LANGUAGE plpgsql AS $f$ BEGIN "
    "INSERT INTO log_nodes (log_id, level, idx, hash) "
    "SELECT $1, u.level, u.idx, u.hash FROM unnest($2, $3, $4) AS u(level, idx, hash); "
    "UPDATE logs SET size = $5, root = $6 WHERE id = $1; END $f$",
)
CALL_UNLOCKED_READS: Final = (
    "SELECT * FROM pg_temp.jcm_append_reads($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
#: Opens the write of a first try, in its query: the transaction, the head locked and
#: compared with the head read (its size and root), the SQLSTATE ``HEAD_MOVED`` if not.
BEGIN_IF_HEAD: Final = "BEGIN; SELECT pg_temp.jcm_head_is({log_id}, {size}, {root}); "
HEAD_MOVED: Final = "JCM01"
#: The second and last round trip of an append that writes (ADR 0049): the entries by
#: binary ``COPY``, then, in the same simple query, the stored nodes, the new head and the
#: ``COMMIT``. The server runs the statements after the ``COPY`` once its data ended; an
#: error in any of them ends the query there, the transaction aborted.
COPY_ENTRIES: Final = (
    f"COPY log_entries ({', '.join(sql.ENTRY_COLUMNS)}) FROM STDIN (FORMAT binary); "
)
#: After the entries, the rest of an append and its commit: every value an integer or a
#: hash we format ourselves (``literal``), never text from outside. A first try (its
#: session has the functions) writes the nodes and the head through the session function
#: ``jcm_write_head``, its arrays as literals: its statements are planned once a session,
#: where the ``INSERT`` of some 33 rows of literals was parsed and planned each time (the
#: server's CPU per batch 139-149 -> 91-102 µs, ADR 0054); the locked way writes them as
#: statements (its session may lack the functions).
WRITE_NODES: Final = "INSERT INTO log_nodes (log_id, level, idx, hash) VALUES {rows}; "
WRITE_HEAD_AND_COMMIT: Final = (
    "UPDATE logs SET size = {size}, root = {root} WHERE id = {log_id}; COMMIT"
)
WRITE_BY_FUNCTION_AND_COMMIT: Final = (
    "SELECT pg_temp.jcm_write_head({log_id}, '{{{levels}}}', '{{{indexes}}}', '{{{hashes}}}', "
    "{size}, {root}); COMMIT"
)
#: ``CALL_UNLOCKED_READS``'s arguments for no log: an id no log has (``logs.id`` counts
#: up from 1), no ranges, no ids; it reads nothing and returns no row.
WARM_ARGS: Final[tuple[object, ...]] = (-1, [], [], [], [], [], "", 0, 0)
_COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER: Final = _COPY_SIGNATURE + bytes(8)  # no flags, no header extension
_COPY_END: Final = b"\xff\xff"  # a tuple of -1 fields
_ROW_HEAD: Final = struct.Struct(">hiqiqi")  # 9 fields, log_id and idx, record id's length
_LEN: Final = struct.Struct(">i")
_TIME: Final = struct.Struct(">iq")  # a timestamptz: its length, then microseconds
_NULL: Final = _LEN.pack(-1)
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


def literal(value: bytes) -> str:
    """A ``bytea`` literal of ``value`` (hex digits only: nothing to escape)."""
    return f"'\\x{value.hex()}'::bytea"


def write_rest(
    log_id: int, nodes: Sequence[Subtree], size: int, root: bytes, by_function: bool
) -> str:
    """The statements after the ``COPY`` of an append: its stored ``nodes``, the head of
    ``size`` and ``root``, ``COMMIT``; ``by_function`` through ``jcm_write_head``."""
    head = {"log_id": int(log_id), "size": int(size), "root": literal(root)}
    if by_function:
        return WRITE_BY_FUNCTION_AND_COMMIT.format(
            levels=",".join([str(int(n.level)) for n in nodes]),
            indexes=",".join([str(int(n.index)) for n in nodes]),
            hashes=",".join([f'"\\\\x{n.hash.hex()}"' for n in nodes]),
            **head,
        )
    rows = ", ".join(
        f"({int(log_id)}, {int(n.level)}, {int(n.index)}, {literal(n.hash)})" for n in nodes
    )
    return (WRITE_NODES.format(rows=rows) if rows else "") + WRITE_HEAD_AND_COMMIT.format(**head)


async def define_functions(conn: Any) -> None:
    """A new connection's session functions (``SESSION_FUNCTIONS``). A role the database
    refuses temporary objects makes none: its appends take the locked way (rule 2)."""
    try:
        await conn.execute("; ".join(SESSION_FUNCTIONS))
    except asyncpg.InsufficientPrivilegeError:
        return


async def warm_reads(conn: Any) -> bool:
    """Call the reads' session function once, for no log (rule 4), so that a connection's
    first append does not pay for compiling it, planning its statement and loading the
    catalog entries of the tables and indexes it reads (the server's CPU of a first batch
    of 500 some 15 ms against 6.5 after this, ADR 0059), nor asyncpg for preparing
    ``CALL_UNLOCKED_READS``. False, and nothing done, where the session or the database
    lacks what it reads: the function (no TEMP privilege) or the tables (before the
    migrations made them)."""
    try:
        await conn.fetch(CALL_UNLOCKED_READS, *WARM_ARGS)
    except (asyncpg.SyntaxOrAccessError, asyncpg.InvalidSchemaNameError):
        return False  # no such table or function; no pg_temp schema: no function made
    return True


async def open_session(conn: Any) -> None:
    """The pool's ``init`` of a new connection: its session functions, then ``warm_reads``."""
    await define_functions(conn)
    await warm_reads(conn)


def node_args(coords: Sequence[Coord], ids: Sequence[str]) -> list[object]:
    """The parameters ``$2``...``$7`` of ``SQL_NODES``: the ranges of ``sparse.base_reads``
    of ``coords`` and the ids to probe for (``read_args``)."""
    return read_args(sparse.base_reads(coords), ids)


def read_args(reads: Sequence[sparse.BaseRead], ids: Sequence[str]) -> list[object]:
    """The parameters ``$2``...``$7`` of ``SQL_NODES``: the range ``reads`` (stored nodes,
    then leaf hashes) and the ids to probe for."""
    nodes = [r for r in reads if r.level]
    leaves = [r for r in reads if not r.level]
    return [
        [r.level for r in nodes], [r.start for r in nodes], [r.end for r in nodes],
        [r.start for r in leaves], [r.end for r in leaves], ",".join(ids),
    ]  # fmt: skip


def copy_data(log_id: int, first: int, entries: Sequence[PreparedEntry], at: datetime) -> bytes:
    """The binary ``COPY`` data of ``entries`` at indexes ``first``, ``first + 1``...,
    in ``sql.ENTRY_COLUMNS`` order: each value in PostgreSQL's binary form (int8, text as
    UTF-8, bytea, timestamptz as microseconds since 2000-01-01 UTC, as asyncpg writes it:
    a naive ``at`` is local time). Built here rather than by asyncpg's encoders, so the
    append time, the same for the whole batch, is converted once, not per row (ADR 0049)."""
    delta = at.astimezone(UTC) - _PG_EPOCH
    stamp = _TIME.pack(8, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    head, length, kinds = _ROW_HEAD.pack, _LEN.pack, dict[str, bytes]()
    out = [_COPY_HEADER]
    put = out.append
    # PreparedEntry's order: envelope, record_id, leaf_hash, kind, key, author, supersedes
    for i, (envelope, record_id, leaf, kind_text, key_text, _, supersedes, _) in enumerate(
        entries, first
    ):
        rid, key = record_id.encode(), key_text.encode()
        kind = kinds.get(kind_text)
        if kind is None:
            kind = kinds[kind_text] = length(len(k := kind_text.encode())) + k
        put(head(9, 8, log_id, 8, i, len(rid)))
        put(rid)
        put(kind)
        put(length(len(key)))
        put(key)
        if supersedes is None:
            put(_NULL)
        else:
            put(length(len(sup := supersedes.encode())))
            put(sup)
        put(length(len(leaf)))
        put(leaf)
        put(length(len(envelope)))
        put(envelope)
        put(stamp)
    put(_COPY_END)
    return b"".join(out)


async def copy_then(conn: Any, text: str, data: bytes) -> str:
    """Run the simple query ``text`` (``BEGIN_IF_HEAD`` or nothing, then ``COPY_ENTRIES``
    and the rest), sending ``data`` as the ``COPY``'s data; return the last statement's
    status. ``copy_to_table`` writes the COPY statement itself, so the statements around
    it could not share the round trip (ADR 0049). asyncpg skips the replies before the
    ``COPY``'s and after it; an error before it leaves the data unread (the server
    ignores data outside a ``COPY``), an error anywhere aborts the transaction."""
    return str(await conn._protocol.copy_in(text, None, data, None, None, None))
