"""Request nonces, request rates and singleton jobs shared by every hub process on one
PostgreSQL database.

Why this module exists: several hub processes can serve one address (``SO_REUSEPORT``
or a load balancer) over one PostgreSQL database (ADR 0042). Anything a process keeps in
its own memory is then only a part of the truth: a request replayed to another process
would find its nonce unknown there, a per-node request rate would be multiplied by the
number of processes, and each process would run the scheduled reconciliation. So, when
the store is PostgreSQL, these live in the database; on SQLite (one process per data
directory, ``local/lock.py``) they stay in memory.

Rules:

1. **Nonces** (``net/auth.py`` rule 5, across processes): a nonce (already prefixed with
   its key id) is inserted into ``shared_nonces`` with the time until which it is held;
   the insert and the check are one statement, so of two processes receiving the same
   request at once exactly one accepts it. A row whose time has passed no longer counts
   (the request could not pass the time window anyway) and is replaced. Expired rows are
   deleted in bulk, by whichever process first finds ``clean_every`` seconds have passed
   since it last did.
2. **Request rate per node** (``[server] requests_per_node_per_second``, 0 = off): a
   fixed one-second window counter per (partnership, node), incremented atomically in the
   same statement as rule 1's insert; a request beyond the limit in its window is refused
   ``429 too-many-requests``. Without PostgreSQL the same counter is kept in memory.
3. The statements run on a small pool of their own with ``synchronous_commit = off``: a
   nonce costs no WAL flush. A PostgreSQL crash (or a failover to an asynchronous
   standby) may forget the nonces of the last few hundred milliseconds; the ADR weighs
   what a replay of those could do (a re-sent push is a no-op).
4. **Singleton jobs** (``LeaderLock``): a session-level advisory lock, keyed by the
   schema, held on a connection of its own; the process that holds it runs the jobs that
   must run once (reconciliation). Whether it still holds it is checked with a query
   before each run, so a lost connection (or a killed process, whose session PostgreSQL
   ends) hands the jobs to the next process that asks.
5. Errors of PostgreSQL here are ``StoreError``s, which the hub answers 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import asyncpg
from asyncpg.exceptions import InternalClientError

from jcm_sync.errors import ReplayError, StoreError, TooManyRequestsError
from jcm_sync.store.base import redact_url
from jcm_sync.store.postgres import PostgresStore

__all__ = [
    "LeaderLock",
    "LocalLimits",
    "RequestLimits",
    "SharedLimits",
    "leader_lock",
    "request_limits",
]

POOL_MAX: Final = 4
CONNECT_TIMEOUT_S: Final = 10.0
CLEAN_EVERY_S: Final = 10.0
WINDOW_S: Final = 1

#: Rule 1: insert the nonce unless it is held and unexpired; a row back means accepted.
ADMIT_NONCE: Final = """
INSERT INTO shared_nonces (nonce, until) VALUES ($1, $2)
ON CONFLICT (nonce) DO UPDATE SET until = EXCLUDED.until WHERE shared_nonces.until < $3
RETURNING 1"""
#: Rules 1 and 2 in one statement: (accepted, requests in this window).
ADMIT_COUNTED: Final = """
WITH n AS (INSERT INTO shared_nonces (nonce, until) VALUES ($1, $2)
           ON CONFLICT (nonce) DO UPDATE SET until = EXCLUDED.until
           WHERE shared_nonces.until < $3 RETURNING 1),
     r AS (INSERT INTO shared_request_counts (key, win, n) VALUES ($4, $5, 1)
           ON CONFLICT (key, win) DO UPDATE SET n = shared_request_counts.n + 1 RETURNING n)
SELECT EXISTS (SELECT 1 FROM n), (SELECT n FROM r)"""
CLEAN_NONCES: Final = "DELETE FROM shared_nonces WHERE until < $1"
CLEAN_COUNTS: Final = "DELETE FROM shared_request_counts WHERE win < $1"
#: What PostgreSQL or the connection to it can raise (rule 5).
_PG_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    InternalClientError,
    OSError,
    TimeoutError,
)
#: Rule 4: one lock per schema (advisory locks are per database).
LEADER_KEY: Final = "hashtext('jcm-sync singleton jobs ' || current_schema())"


class RequestLimits(Protocol):
    """What the hub asks of every authenticated request before reading its body."""

    async def admit(self, who: str, nonce: str, until: float, now: float | None = None) -> None:
        """Raise ``ReplayError`` or ``TooManyRequestsError``, or let the request pass."""


def _refuse_rate(who: str, count: int, limit: int) -> None:
    if count > limit:
        raise TooManyRequestsError(
            f"{who} sent {count} requests this second; the limit is {limit} per second"
        )


class LocalLimits:
    """Rule 2 in this process's memory (SQLite: one hub process); nonces are the
    ``RequestVerifier``'s own ``NonceCache``."""

    def __init__(self, per_second: int = 0) -> None:
        self.per_second = per_second
        self._window = -1
        self._counts: dict[str, int] = {}

    async def admit(self, who: str, nonce: str, until: float, now: float | None = None) -> None:
        if not self.per_second:
            return
        window = int(time.time() if now is None else now) // WINDOW_S
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts[who] = self._counts.get(who, 0) + 1
        _refuse_rate(who, count, self.per_second)


class _Pool:
    """A lazily opened asyncpg pool of its own, with errors translated (rule 5)."""

    def __init__(self, url: str, settings: dict[str, str], max_size: int) -> None:
        self.url = url
        self.where = redact_url(url)
        self._settings = settings
        self._max = max_size
        self._pool: Any = None
        self._opening = asyncio.Lock()  # the first requests arrive together

    async def _opened(self) -> Any:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=0, max_size=self._max, timeout=CONNECT_TIMEOUT_S,
                    server_settings=self._settings,
                )  # fmt: skip
            return self._pool

    async def run(self, doing: str, call: Callable[[Any], Any]) -> Any:
        try:
            pool = self._pool or await self._opened()
            async with pool.acquire() as conn:
                return await call(conn)
        except _PG_ERRORS as exc:
            raise StoreError(
                f"PostgreSQL failed {doing}: {type(exc).__name__}: {exc}", where=self.where
            ) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except _PG_ERRORS:
                pool.terminate()


class SharedLimits:
    """Rules 1-3: nonces and request counts in PostgreSQL, for every hub process."""

    def __init__(self, url: str, per_second: int = 0, *, clean_every: float = CLEAN_EVERY_S):
        self.per_second = per_second
        self.clean_every = clean_every
        self._pool = _Pool(url, {"synchronous_commit": "off"}, POOL_MAX)
        self._cleaned = 0.0

    async def admit(self, who: str, nonce: str, until: float, now: float | None = None) -> None:
        t = time.time() if now is None else now
        window = int(t) // WINDOW_S
        if self.per_second:
            accepted, count = await self._pool.run(
                "checking a request nonce",
                lambda c: c.fetchrow(ADMIT_COUNTED, nonce, until, t, who, window),
            )
        else:
            row = await self._pool.run(
                "checking a request nonce", lambda c: c.fetchrow(ADMIT_NONCE, nonce, until, t)
            )
            accepted, count = row is not None, 0
        if t - self._cleaned >= self.clean_every:
            self._cleaned = t
            await self.clean(t)
        if not accepted:
            raise ReplayError("nonce already used (seen by another hub process): a replay")
        _refuse_rate(who, count, self.per_second)

    async def clean(self, now: float) -> None:
        """Rule 1's bulk delete of expired nonces (and of past request windows)."""

        async def both(conn: Any) -> None:
            await conn.execute(CLEAN_NONCES, now)
            await conn.execute(CLEAN_COUNTS, int(now) // WINDOW_S - 1)

        await self._pool.run("forgetting expired nonces", both)

    async def close(self) -> None:
        await self._pool.close()


class LeaderLock:
    """Rule 4: whether this process runs the jobs that must run once."""

    def __init__(self, url: str) -> None:
        self.where = redact_url(url)
        self._url = url
        self._conn: Any = None
        self._closed = False
        self._asking = asyncio.Lock()  # jobs of several partnerships ask at once

    async def held(self) -> bool:
        """True if this process holds (or has just taken) the lock; False if another does,
        PostgreSQL cannot be reached (then nobody runs the jobs until it can) or the lock
        was closed (the store closed: the process is stopping)."""
        async with self._asking:
            return await self._ask()

    async def _ask(self) -> bool:
        try:
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.fetchval("SELECT 1")  # still alive: the lock is still ours
                return True
            await self._end()
            if self._closed:
                return False
            self._conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT_S)
            if self._closed:  # closed while connecting: this session must not linger
                await self._end()
                return False
            if await self._conn.fetchval(f"SELECT pg_try_advisory_lock({LEADER_KEY})"):
                return True
        except _PG_ERRORS:
            pass
        await self._end()
        return False

    async def close(self) -> None:
        """End the session, which releases the lock, and take no other."""
        self._closed = True
        await self._end()

    async def _end(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
        except _PG_ERRORS:
            conn.terminate()


def request_limits(store: object, per_second: int = 0) -> RequestLimits:
    """Shared limits on a PostgreSQL store (closed with it), in-memory ones otherwise."""
    if not isinstance(store, PostgresStore):
        return LocalLimits(per_second)
    shared = SharedLimits(store.url, per_second)
    store.close_with(shared.close)
    return shared


def leader_lock(store: object) -> LeaderLock | None:
    """A ``LeaderLock`` on a PostgreSQL store (closed with it); None (always the leader)
    otherwise."""
    if not isinstance(store, PostgresStore):
        return None
    lock = LeaderLock(store.url)
    store.close_with(lock.close)
    return lock
