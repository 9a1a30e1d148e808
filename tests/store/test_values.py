"""The values a store takes and returns (``store/values.py``): frozen, comparable, and
within what both SQL backends can hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from datetime import UTC, datetime

import asyncpg
import pytest

from jcm_sync.store.values import (
    MAX_INDEX,
    AppendResult,
    Entry,
    IndexedRecord,
    LogRef,
    RecordQuery,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
)
from tests.store.conftest import PG_URL, skip_without_pg

LOG = LogRef("JP-MN", "MN", "jcm-sync.example/JP-MN/MN")
AT = datetime(2016, 6, 1, 9, 0, tzinfo=UTC)
ROOT = hashlib.sha256(b"root").digest()

VALUES = [
    LOG,
    TreeHead(3, ROOT),
    Entry(0, "ab" * 32, b"{}", AT),
    AppendResult(LOG, 0, 2, 1, 3, ROOT),
    StoredCheckpoint(3, ROOT, b"note"),
    TrustMark("JP-MN", 2, "cd" * 32),
    IndexedRecord("ab" * 32, "issuance", "MN/1", "MN", None, "JP-MN", LOG, 0),
    RecordQuery(kind="issuance"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_are_frozen_and_slotted(value: object) -> None:
    """Nobody changes a value a store handed out, nor adds attributes to it."""
    field = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)
    assert not hasattr(value, "__dict__")


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_compare_and_hash_by_content(value: object) -> None:
    """An equal copy is equal and hashes alike, so values serve as keys and in sets."""
    copy = dataclasses.replace(value)  # type: ignore[type-var]
    assert copy == value
    assert copy is not value
    assert hash(copy) == hash(value)
    assert len({value, copy}) == 1


def test_log_ref_prints_as_its_origin() -> None:
    """A log is shown by its checkpoint origin, which names it uniquely."""
    assert str(LOG) == "jcm-sync.example/JP-MN/MN"
    assert f"{LOG}" == LOG.origin
    assert LogRef("JP-MN", "MN", "o") != LOG


def test_entry_leaf_hash_is_rfc_9162() -> None:
    """An entry's leaf hash is SHA-256 of 0x00 and its exact envelope bytes."""
    env = b'{"payload":"x"}'
    entry = Entry(4, hashlib.sha256(env).hexdigest(), env, AT)
    assert entry.leaf_hash == hashlib.sha256(b"\x00" + env).digest()
    assert entry.leaf_hash != hashlib.sha256(env).digest()


def test_trust_mark_describes_version_and_digest_prefix() -> None:
    """The text of a refusal names the version and the first 12 hex digits of the root."""
    digest = hashlib.sha256(b"root v7").hexdigest()
    assert TrustMark("JP-ID", 7, digest).describe() == f"version 7 (sha256 {digest[:12]})"


def test_record_query_sets_nothing_by_default() -> None:
    """An empty query asks for every row; each field is a separate condition."""
    assert dataclasses.astuple(RecordQuery()) == (None,) * 5
    assert RecordQuery(key="MN/1") != RecordQuery(kind="MN/1")


def test_max_index_is_the_largest_signed_64_bit_integer_sqlite_keeps() -> None:
    """SQLite's INTEGER holds MAX_INDEX exactly and refuses one more."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (v BIGINT)")
        conn.execute("INSERT INTO t VALUES (?)", (MAX_INDEX,))
        assert conn.execute("SELECT v FROM t").fetchone() == (MAX_INDEX,)
        with pytest.raises(OverflowError):
            conn.execute("INSERT INTO t VALUES (?)", (MAX_INDEX + 1,))
    finally:
        conn.close()


@pytest.mark.postgres
async def test_max_index_fits_postgres_bigint(pg_reachable: str | None) -> None:
    """PostgreSQL's BIGINT holds MAX_INDEX exactly and refuses one more."""
    skip_without_pg(pg_reachable)
    conn = await asyncpg.connect(PG_URL)
    try:
        assert await conn.fetchval("SELECT $1::bigint", MAX_INDEX) == MAX_INDEX
        with pytest.raises((OverflowError, asyncpg.DataError)):
            await conn.fetchval("SELECT $1::bigint", MAX_INDEX + 1)
    finally:
        await conn.close()
