"""Where a node keeps its logs: one ``Store`` protocol, chosen by URL.

* ``sqlite:///relative.db`` or ``sqlite:////absolute.db``: SQLite in WAL mode, the default
  for a partner's agent (``sqlite.py``);
* ``postgresql://user@host:5432/db`` (``postgres://`` too): PostgreSQL through asyncpg, for
  Japan's hub (``postgres.py``); query parameters such as ``search_path`` are passed on as
  server settings;
* ``memory://``: a fresh in-memory store for tests (``memory.py``).

The protocol and its invariants are in ``protocol.py``, its values in ``values.py``.
"""

from __future__ import annotations

from jcm_sync.errors import ConfigError
from jcm_sync.store.base import redact_url
from jcm_sync.store.protocol import Store
from jcm_sync.store.values import (
    AppendResult,
    Entry,
    IndexedRecord,
    LogRef,
    StoredCheckpoint,
    TreeHead,
    TrustMark,
    Verify,
)

__all__ = [
    "AppendResult",
    "Entry",
    "IndexedRecord",
    "LogRef",
    "Store",
    "StoredCheckpoint",
    "TreeHead",
    "TrustMark",
    "Verify",
    "open_store",
    "redact_url",
]


async def open_store(url: str) -> Store:
    """Open (and create if needed) the store a URL names; see the module docstring."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a store URL: {url!r:.80}", where="store")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from jcm_sync.store.sqlite import SqliteStore

        return await SqliteStore.open(url)
    if scheme in ("postgresql", "postgres"):
        from jcm_sync.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    if scheme == "memory":
        from jcm_sync.store.memory import MemoryStore

        if url.lower() != "memory://":
            raise ConfigError("a memory store URL is just memory://", where=url)
        return MemoryStore(url)
    raise ConfigError(
        f"unknown store scheme {scheme!r}: use sqlite:///, postgresql:// or memory://",
        where=redact_url(url),
    )
