"""Fixtures of the store tests: one ``store`` per backend, and a way to corrupt its rows.

The PostgreSQL backend runs against ``JCM_SYNC_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each test in a fresh schema named
``jcm_test_<random>`` that is dropped afterwards; without a reachable server those tests
are skipped, saying why (or fail, when ``JCM_SYNC_REQUIRE_PG=1``, as in CI).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jcm_sync.store import LogRef, Store, open_store, sparse
from jcm_sync.store.memory import MemoryStore
from tests.store import World

PG_URL = os.environ.get("JCM_SYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("JCM_SYNC_REQUIRE_PG") == "1"

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PERSISTENT = [b for b in BACKENDS if b.values[0] != "memory"]


def with_param(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


@pytest.fixture(scope="session")
def pg_reachable() -> str | None:
    """None if the test server answers, else why not (checked once per session)."""

    async def probe() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL} ({type(exc).__name__}: {exc}); set JCM_SYNC_TEST_PG_URL"
    return None


async def pg_execute(sql: str, url: str = PG_URL) -> None:
    """Run ``sql`` (one or more statements) on a connection of its own to ``url``."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def make_schema() -> str:
    name = f"jcm_test_{uuid.uuid4().hex[:12]}"
    await pg_execute(f'CREATE SCHEMA "{name}"')
    return name


async def drop_schema(name: str) -> None:
    await pg_execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def skip_without_pg(reason: str | None) -> None:
    """Skip (or, with JCM_SYNC_REQUIRE_PG=1, fail) a test that needs the server."""
    if reason is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"JCM_SYNC_REQUIRE_PG=1 but {reason}")
    pytest.skip(reason)


@asynccontextmanager
async def pg_schema_url(pg_reachable: str | None) -> AsyncIterator[str]:
    """A PostgreSQL store URL whose tables live in a fresh schema, dropped afterwards."""
    skip_without_pg(pg_reachable)
    schema = await make_schema()
    try:
        yield with_param(PG_URL, "search_path", schema)
    finally:
        await drop_schema(schema)


async def raw(url: str, text: str) -> list[tuple[Any, ...]]:
    """Rows read behind the store's back, from a SQLite file or a PostgreSQL URL."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return [tuple(r) for r in conn.execute(text).fetchall()]
        finally:
            conn.close()
    pconn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await pconn.fetch(text)]
    finally:
        await pconn.close()


@pytest.fixture
async def pg_url(pg_reachable: str | None) -> AsyncIterator[str]:
    """A PostgreSQL store URL whose tables live in a schema of this test only."""
    async with pg_schema_url(pg_reachable) as url:
        yield url


@pytest.fixture(params=BACKENDS)
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[str]:
    """The URL of an empty store of each backend."""
    backend = request.param
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        async with pg_schema_url(pg_reachable) as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def world() -> World:
    return World()


class Corruptor:
    """Alters stored rows behind the store's back, the way a disk or an operator might."""

    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        self.url = url

    async def _sql(self, sql: str, *args: Any) -> None:
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.url[len("sqlite:///") :], isolation_level=None)
            try:
                conn.execute(sql, args)
            finally:
                conn.close()
        else:
            n = iter(range(1, 100))
            pg_sql = "".join(f"${next(n)}" if ch == "?" else ch for ch in sql)
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(pg_sql, *args)
            finally:
                await conn.close()

    def _mem(self, log: LogRef) -> Any:
        assert isinstance(self.store, MemoryStore)
        return next(t for t in self.store.tables.values() if t.ref == log)

    _LOG = "(SELECT id FROM logs WHERE origin = ?)"

    @staticmethod
    def _stored_row(level: int, idx: int) -> tuple[int, int]:
        """The SQL row a node is (level 0: the entry's leaf hash; 4, 8...: ``log_nodes``) or,
        for a level the SQL stores compute (ADR 0040), the first row it is computed from."""
        span = level % sparse.TILE_HEIGHT
        return level - span, idx << span

    async def set_node(self, log: LogRef, level: int, idx: int, value: bytes) -> None:
        if isinstance(self.store, MemoryStore):
            self._mem(log).nodes[(level, idx)] = value
            return
        level, idx = self._stored_row(level, idx)
        if level == 0:
            await self._sql(
                f"UPDATE log_entries SET leaf_hash = ? WHERE log_id = {self._LOG} AND idx = ?",
                value, log.origin, idx,
            )  # fmt: skip
        else:
            await self._sql(
                "UPDATE log_nodes SET hash = ? "
                f"WHERE log_id = {self._LOG} AND level = ? AND idx = ?",
                value, log.origin, level, idx,
            )  # fmt: skip

    async def delete_node(self, log: LogRef, level: int, idx: int) -> None:
        if isinstance(self.store, MemoryStore):
            del self._mem(log).nodes[(level, idx)]
            return
        level, idx = self._stored_row(level, idx)
        if level == 0:
            await self.delete_entry(log, idx)
        else:
            await self._sql(
                f"DELETE FROM log_nodes WHERE log_id = {self._LOG} AND level = ? AND idx = ?",
                log.origin, level, idx,
            )  # fmt: skip

    async def set_envelope(self, log: LogRef, idx: int, value: bytes) -> None:
        if isinstance(self.store, MemoryStore):
            entries = self._mem(log).entries
            rid, _, at = entries[idx]
            entries[idx] = (rid, value, at)
        else:
            await self._sql(
                f"UPDATE log_entries SET envelope = ? WHERE log_id = {self._LOG} AND idx = ?",
                value, log.origin, idx,
            )  # fmt: skip

    async def delete_entry(self, log: LogRef, idx: int) -> None:
        if isinstance(self.store, MemoryStore):
            del self._mem(log).entries[idx]
        else:
            await self._sql(
                f"DELETE FROM log_entries WHERE log_id = {self._LOG} AND idx = ?", log.origin, idx
            )

    async def set_head(self, log: LogRef, size: int, root: bytes) -> None:
        if isinstance(self.store, MemoryStore):
            t = self._mem(log)
            t.size, t.root = size, root
        else:
            await self._sql(
                "UPDATE logs SET size = ?, root = ? WHERE origin = ?", size, root, log.origin
            )


@pytest.fixture
def corrupt(store: Store, store_url: str) -> Corruptor:
    return Corruptor(store, store_url)
