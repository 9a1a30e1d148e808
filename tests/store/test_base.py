"""``StoreBase`` (``store/base.py``): what it does around the adapters' primitives and the
protocol suite does not show: its log cache, argument checks before any query, chunked
node reads, its clock, and the checks it makes on what an adapter returns.

The adapter under it is the real ``MemoryStore``, counting its primitive calls; the clock
test runs on every backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.errors import (
    BadDataError,
    ConflictError,
    CorruptStoreError,
    NotFoundError,
    StoreError,
    UnknownKeyError,
)
from jcm_sync.store import LogRef, Store, TrustMark
from jcm_sync.store.base import QUERY_CHUNK, StoreBase, redact_url
from jcm_sync.store.memory import MemoryStore
from tests import builders
from tests.core.merkle_reference import ref_mth
from tests.store import World

PRIMITIVES = (
    "_lookup_log",
    "_list_logs",
    "_head",
    "_nodes",
    "_entry_rows",
    "_append",
    "_insert_checkpoint",
    "_checkpoint_rows",
    "_record_rows",
    "_envelope_row",
    "_trust_mark_rows",
    "_advance_trust_marks",
)


class CountingStore(MemoryStore):
    """A MemoryStore that records each primitive call (name, first argument lengths)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in PRIMITIVES:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(
        self, name: str, inner: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return await inner(*args)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore()


def rid(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()


def test_memory_and_sql_stores_are_store_bases() -> None:
    """Every adapter implements the protocol through StoreBase, so they share its rules."""
    from jcm_sync.store.postgres import PostgresStore
    from jcm_sync.store.sqlite import SqliteStore

    for cls in (MemoryStore, SqliteStore, PostgresStore):
        assert issubclass(cls, StoreBase)


async def test_a_log_is_looked_up_once(counting: CountingStore, world: World) -> None:
    """After the first lookup, reads of a log use its cached id and origin."""
    await counting.append_entries(world.jp_log, 0, world.envelopes("JP", 3), world.verify)
    for _ in range(3):
        await counting.tree_head(world.jp_log)
        await counting.entries(world.jp_log)
    assert counting.names().count("_lookup_log") == 1


async def test_an_unknown_log_is_not_cached(counting: CountingStore, world: World) -> None:
    """A NotFoundError is not remembered: the log can be created and then read."""
    with pytest.raises(NotFoundError):
        await counting.tree_head(world.jp_log)
    await counting.ensure_log(world.jp_log)
    assert (await counting.tree_head(world.jp_log)).size == 0
    assert counting.names().count("_lookup_log") == 2


async def test_the_cached_origin_is_still_checked(counting: CountingStore, world: World) -> None:
    """A cached log answers a LogRef of another origin with ConflictError, not its data."""
    await counting.ensure_log(world.jp_log)
    counting.calls.clear()
    other = LogRef(world.jp_log.partnership, world.jp_log.node, "elsewhere.example/x")
    with pytest.raises(ConflictError, match="has origin"):
        await counting.tree_head(other)
    assert counting.calls == []


def test_the_cache_belongs_to_one_store() -> None:
    """Two store objects do not share a cache (no module-level state)."""
    a, b = MemoryStore(), MemoryStore()
    assert a._cache is not b._cache


BAD_CALLS: list[tuple[str, Callable[[Store, World], Awaitable[object]], type[Exception]]] = [
    ("entries-start", lambda s, w: s.entries(w.jp_log, -1), BadDataError),
    ("entry-index", lambda s, w: s.entry(w.jp_log, True), BadDataError),
    ("inclusion-index", lambda s, w: s.inclusion_proof(w.jp_log, "0"), BadDataError),  # type: ignore[arg-type]
    ("consistency-old", lambda s, w: s.consistency_proof(w.jp_log, -2), BadDataError),
    ("checkpoint-size", lambda s, w: s.checkpoint_at(w.jp_log, 2**63), BadDataError),
    ("record-id", lambda s, w: s.record("AB" * 32), BadDataError),
    ("envelope-id", lambda s, w: s.envelope("xyz"), BadDataError),
    ("endorsed-id", lambda s, w: s.endorsements("ab"), BadDataError),
    ("log", lambda s, w: s.tree_head(("JP-ID", "JP", "o")), BadDataError),  # type: ignore[arg-type]
    ("checkpoint-note", lambda s, w: s.put_checkpoint(w.jp_log, b"junk"), BadDataError),
    (
        "trust-chain",
        lambda s, w: s.advance_trust_marks({"JP-ID": [TrustMark("JP-ID", 1, "x")]}),
        BadDataError,
    ),
    (
        "append-start",
        lambda s, w: s.append_entries(w.jp_log, -1, w.envelopes("JP", 1), w.verify),
        BadDataError,
    ),
    (
        "append-forged",
        lambda s, w: s.append(
            w.jp_log,
            0,
            builders.signed(w.issuance("JP", 5), PrivateKey.generate()),
            w.verify,
        ),
        UnknownKeyError,
    ),
]


@pytest.mark.parametrize(
    ("call", "error"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_arguments_are_refused_before_any_query(
    counting: CountingStore,
    world: World,
    call: Callable[[Store, World], Awaitable[object]],
    error: type[Exception],
) -> None:
    """An argument that cannot be right is refused without a query (once the log is known)."""
    await counting.ensure_log(world.jp_log)
    counting.calls.clear()
    with pytest.raises(error):
        await call(counting, world)
    assert counting.calls == []


async def test_tree_nodes_are_read_in_chunks(counting: CountingStore, world: World) -> None:
    """A large node read is split into queries of at most QUERY_CHUNK coordinates, each
    coordinate asked once; the missing ones are then reported."""
    await counting.append_entries(world.jp_log, 0, world.envelopes("JP", 4), world.verify)
    wanted = [(0, i) for i in range(2 * QUERY_CHUNK + 1)]
    counting.calls.clear()
    with pytest.raises(CorruptStoreError, match="tree node is missing") as info:
        await counting.tree_nodes(world.jp_log, wanted + wanted[:10])
    sizes = [len(args[1]) for name, args in counting.calls if name == "_nodes"]
    assert sizes == [QUERY_CHUNK, QUERY_CHUNK, 1]
    assert info.value.where == f"{world.jp_log.origin} node (level 0, index 4)"


async def test_tree_nodes_returns_each_asked_node_once(
    counting: CountingStore, world: World
) -> None:
    """Duplicate coordinates are answered once, with the RFC 9162 subtree hashes."""
    envs = world.envelopes("JP", 4)
    await counting.append_entries(world.jp_log, 0, envs, world.verify)
    got = await counting.tree_nodes(world.jp_log, [(1, 1), (2, 0), (1, 1)])
    assert got == {(1, 1): ref_mth(envs[2:4]), (2, 0): ref_mth(envs)}


async def test_appended_at_is_the_stores_clock(store: Store, world: World) -> None:
    """Entries are stamped with the clock set on the store, read back as the same instant."""
    first = datetime(2016, 6, 1, 9, 0, 0, 250_000, tzinfo=UTC)
    store.set_clock(lambda: first)
    await store.append_entries(world.jp_log, 0, world.envelopes("JP", 2), world.verify)
    store.set_clock(lambda: first + timedelta(days=1))
    await store.append(world.jp_log, None, world.envelopes("JP", 1, 2)[0], world.verify)
    times = [e.appended_at for e in await store.entries(world.jp_log)]
    assert times == [first, first, first + timedelta(days=1)]
    assert all(t.utcoffset() == timedelta(0) for t in times)


async def test_the_default_clock_is_now_in_utc(world: World) -> None:
    """Without set_clock, an entry is stamped with the current UTC time."""
    store = MemoryStore()
    before = datetime.now(UTC)
    await store.append_entries(world.jp_log, 0, world.envelopes("JP", 1), world.verify)
    at = (await store.entry(world.jp_log, 0)).appended_at
    assert before <= at <= datetime.now(UTC)


async def test_context_manager_closes_and_repr_names_the_url() -> None:
    """``async with`` closes the store; its repr says which class and which URL."""
    store = MemoryStore()
    assert repr(store) == "<MemoryStore memory://>"
    async with store as s:
        assert s is store
        assert await s.logs() == []
    with pytest.raises(StoreError, match="closed"):
        await store.trust_marks()


async def test_envelope_bytes_are_checked_against_their_id(world: World) -> None:
    """``envelope`` returns only bytes that hash to the record id asked for."""
    store = MemoryStore()
    envs = world.envelopes("JP", 2)
    await store.append_entries(world.jp_log, 0, envs, world.verify)
    assert await store.envelope(rid(envs[1])) == envs[1]
    table = store.tables[1]
    record_id, _, at = table.entries[1]
    table.entries[1] = (record_id, envs[1][:-1], at)
    with pytest.raises(CorruptStoreError, match="truncated or altered") as info:
        await store.envelope(rid(envs[1]))
    assert info.value.where == f"{world.jp_log.origin} entry 1"


async def test_a_supersedes_loop_is_reported(world: World) -> None:
    """A stored chain of versions that loops is a corrupt store, not an endless walk."""
    store = MemoryStore()
    v1 = world.sign(world.issuance("JP", 1))
    v2 = world.sign(world.issuance("JP", 1, supersedes=rid(v1)))
    await store.append_entries(world.jp_log, 0, [v1, v2], world.verify)
    records = store.tables[1].records
    records[0] = records[0]._replace(supersedes=rid(v2))  # the disk says v1 supersedes v2
    with pytest.raises(CorruptStoreError, match="loops"):
        await store.latest_version(rid(v1))


async def test_latest_version_ignores_other_kinds_naming_it(world: World) -> None:
    """Only a record of the same kind and partnership is a newer version."""
    store = MemoryStore()
    v1 = world.sign(world.issuance("JP", 1))
    await store.append(world.jp_log, 0, v1, world.verify)
    endorsement = world.sign(builders.endorsement("ID", rid(v1)))
    await store.append(world.id_log, 0, endorsement, world.verify)
    other = store.tables[2].records
    other[0] = other[0]._replace(supersedes=rid(v1))
    assert (await store.latest_version(rid(v1))).record_id == rid(v1)


# --- redact_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:s:e:c@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h/db?search_path=x", "postgresql://u:***@h/db?search_path=x"),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:///data/jp.db", "sqlite:///data/jp.db"),
        ("not a url u:p@h", "not a url u:p@h"),
    ],
    ids=[
        "password",
        "colons",
        "at-sign",
        "empty-password",
        "user-only",
        "no-user",
        "sqlite",
        "no-scheme",
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """The password, whatever it holds, never shows; the rest of the URL does."""
    assert redact_url(url) == shown
