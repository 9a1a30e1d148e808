"""The indexes of PostgreSQL's ``log_entries`` (migrations 6 and 7, ADRs 0040 and 0054):
which exist, and that every lookup of the store reads through one of them, never by
scanning the entries: each index an append pays for serves a query.

Runs against the real server of ``tests/store/conftest.py``. The entries are written
behind the store's back, 24,000 of them in four logs (lookups never check an envelope),
then analysed, so the planner chooses as on a store that has been running; each lookup is
planned both ways the server plans a statement the store prepared (custom and generic).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from jcm_sync.store import open_store, sql
from jcm_sync.store.postgres import pg
from jcm_sync.store.values import LogRef, RecordQuery
from tests.store import log_ref
from tests.store.conftest import raw
from tests.store.test_migrations import index_definitions

PER_LOG = 6000
LOGS = [log_ref(node) for node in ("JP", "ID", "MN", "TH")]
#: Entry ``i`` of log ``l``: its record id the hash of ``l * 10^7 + i``; one in four an
#: endorsement, keyed by the record id of the entry before it; one in twenty superseding
#: the entry four before; the others keyed by a serial number that every log repeats.
FILL = """
INSERT INTO log_entries (log_id, idx, record_id, kind, key, supersedes, leaf_hash, envelope,
    appended_at)
SELECT l.id, i, encode(sha256(int8send(l.id * 10000000 + i)), 'hex'),
    (ARRAY['issuance', 'transfer', 'endorsement', 'project'])[1 + i % 4],
    CASE WHEN i % 4 = 2 THEN encode(sha256(int8send(l.id * 10000000 + i - 1)), 'hex')
         ELSE 'JP/JP-2016-' || lpad(i::text, 7, '0') END,
    CASE WHEN i % 20 = 7 THEN encode(sha256(int8send(l.id * 10000000 + i - 4)), 'hex') END,
    sha256(int8send(i)), '\\x01'::bytea, now() - make_interval(secs => ($1 - i) * 60)
FROM logs l, generate_series(0, $1 - 1) i ORDER BY l.id, i
"""
HASH_OF = "SELECT encode(sha256(int8send(id * 10000000 + $2)), 'hex') FROM logs WHERE id = $1"


async def fill(url: str) -> None:
    """The store's layout with ``PER_LOG`` entries in each of ``LOGS``, analysed."""
    async with await open_store(url) as store:
        for log in LOGS:
            await store.ensure_log(log)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(FILL, PER_LOG)
        await conn.execute("ANALYZE log_entries")
    finally:
        await conn.close()


async def log_id(url: str, log: LogRef) -> int:
    rows = await raw(url, f"SELECT id FROM logs WHERE node = '{log.node}'")
    return int(rows[0][0])


async def record_id(url: str, log: LogRef, index: int) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval(HASH_OF, await log_id(url, log), index))
    finally:
        await conn.close()


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, index or relation) of every scan in an EXPLAIN (FORMAT JSON) plan."""
    out: list[tuple[str, str]] = []
    if "Scan" in plan["Node Type"]:
        out.append((plan["Node Type"], plan.get("Index Name", plan.get("Relation Name"))))
    for sub in plan.get("Plans", []):
        out += _scans(sub)
    return out


async def scans(url: str, text: str, args: Sequence[object]) -> set[tuple[str, str]]:
    """The scans of ``text`` (``?`` placeholders) planned for ``args``, custom and generic."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET enable_seqscan = on")  # the server's defaults
        found: set[tuple[str, str]] = set()
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            stmt = await conn.prepare(f"EXPLAIN (FORMAT JSON) {pg(text)}")
            found.update(_scans(json.loads(await stmt.fetchval(*args))[0]["Plan"]))
        return found
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_the_entries_have_five_indexes(pg_url: str) -> None:
    """A new store indexes its entries by position (the primary key), by record id in a
    hash index (a 4-byte code an entry: ids are random), by kind and key in a B-tree (one
    author's keys come in order: a B-tree writes them in one place, ADR 0054), by append
    time in a BRIN index, and only the superseding ones by the id they supersede."""
    async with await open_store(pg_url):
        pass
    defs = await index_definitions(pg_url)
    assert "USING hash (record_id)" in defs["log_entries_record_id"]
    assert "USING btree (kind, key)" in defs["log_entries_kind_key"]
    assert "USING brin (log_id, appended_at)" in defs["log_entries_appended"]
    assert "WHERE (supersedes IS NOT NULL)" in defs["log_entries_supersedes"]
    (primary,) = [v for k, v in defs.items() if k.endswith("_pkey")]
    assert "UNIQUE INDEX" in primary
    assert "USING btree (log_id, idx)" in primary
    assert len(defs) == 5


@pytest.mark.postgres
async def test_every_lookup_of_the_entries_reads_an_index(pg_url: str) -> None:
    """Each query the store reads entries with is answered through an index: by kind and
    key (``records``, ``endorsements``) the B-tree of both, by record id
    (``record``, ``envelope``) that of the record id, by superseded id the partial index,
    by position the primary key, by append time the BRIN index; never a sequential scan."""
    await fill(pg_url)
    jp = await log_id(pg_url, LOGS[0])
    rid, held = await record_id(pg_url, LOGS[1], 4321), await record_id(pg_url, LOGS[2], 3)
    since = datetime.now(UTC) - timedelta(hours=2)
    key, by_id, pkey = "log_entries_kind_key", "log_entries_record_id", "_pkey"
    cases: list[tuple[tuple[str, list[object]], str]] = [
        (sql.record_query(RecordQuery(kind="issuance", key="JP/JP-2016-0004000"), False), key),
        (
            sql.record_query(
                RecordQuery(kind="issuance", key="JP/JP-2016-0004000", partnership="JP-ID"), False
            ),
            key,
        ),
        (sql.record_query(RecordQuery(kind="endorsement", key=rid), False), key),
        (sql.record_query(RecordQuery(record_id=rid), False), by_id),
        (sql.record_query(RecordQuery(supersedes=held), False), "log_entries_supersedes"),
        ((sql.ENVELOPE_BY_RECORD_ID, [rid]), by_id),
        ((sql.ENTRIES, [jp, 2000, 2256]), pkey),
        ((sql.RECORD_IDS, [jp, 2000, 2500]), pkey),
        (
            (
                sql.APPEND_COUNTS.format(epoch=sql.POSTGRES_EPOCH),
                [int(since.timestamp()), 3600, jp, since - timedelta(days=1), 0],
            ),
            "log_entries_appended",
        ),
    ]
    for (text, args), index in cases:
        used = await scans(pg_url, text, args)
        on_entries = {name for node, name in used if "Index" in node and "entries" in name}
        assert on_entries, (text, used)
        assert all(name.endswith(index) for name in on_entries), (text, used)
        assert ("Seq Scan", "log_entries") not in used, (text, used)
