"""``Store.swap_state`` (``store/state_swap.py``): compare-and-set of a small node-state
value on every backend: from no value once, from the value held only, exactly one winner
among concurrent callers on separate connections, durable, and bad values refused."""

from __future__ import annotations

import asyncio

import pytest

from jcm_sync.errors import BadDataError
from jcm_sync.store import Store, open_store
from jcm_sync.store.state_swap import MAX_SWAP_VALUE, check_swap, swap_by_query

KEY = "reconcile/JP-MN/last-run"


async def test_swap_from_no_value_then_from_the_value_held(store: Store) -> None:
    """Rule 2: the first swap from None writes; a second from None does not and leaves the
    value; a swap from a value not held does not; from the value held it does."""
    assert await store.swap_state(KEY, None, b"1")
    assert not await store.swap_state(KEY, None, b"9")
    assert await store.get_state(KEY) == b"1"
    assert not await store.swap_state(KEY, b"2", b"3")
    assert await store.get_state(KEY) == b"1"
    assert await store.swap_state(KEY, b"1", b"2")
    assert await store.get_state(KEY) == b"2"
    assert await store.swap_state(KEY, bytearray(b"2"), memoryview(b"")) is True  # type: ignore[arg-type]
    assert await store.get_state(KEY) == b""
    assert await store.delete_state(KEY)
    assert await store.swap_state(KEY, None, b"again")
    assert await store.state_keys("reconcile/") == [KEY]


async def test_of_concurrent_swaps_from_one_value_exactly_one_writes(store_url: str) -> None:
    """Rule 2: two stores on one database (two connections, or one memory store twice),
    each swapping 10 times at once from the same held value to its own: one wins, and
    the value held is the winner's."""
    a = await open_store(store_url)
    b = a if store_url == "memory://" else await open_store(store_url)
    try:
        assert await a.swap_state(KEY, None, b"0")
        racers = [(a if i % 2 else b, f"{i}".encode()) for i in range(1, 21)]
        won = await asyncio.gather(*(s.swap_state(KEY, b"0", v) for s, v in racers))
        assert sum(won) == 1
        winner = next(v for (_, v), w in zip(racers, won, strict=True) if w)
        assert await b.get_state(KEY) == winner
        fresh = await asyncio.gather(*(s.swap_state("other", None, v) for s, v in racers))
        assert sum(fresh) == 1
    finally:
        await a.close()
        if b is not a:
            await b.close()


async def test_a_swapped_value_survives_reopening(store_url: str) -> None:
    """Rule 2: a swap that returned True is committed."""
    if store_url == "memory://":
        pytest.skip("memory:// keeps nothing after close, by design")
    store = await open_store(store_url)
    assert await store.swap_state(KEY, None, b"7")
    await store.close()
    store = await open_store(store_url)
    try:
        assert await store.get_state(KEY) == b"7"
        assert await store.swap_state(KEY, b"7", b"8")
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (None, b"x" * (MAX_SWAP_VALUE + 1), "new is over"),
        (b"x" * (MAX_SWAP_VALUE + 1), b"1", "old is over"),
        (None, "1", "new is bytes, not str"),
        (1, b"1", "old is bytes, not int"),
    ],
)
async def test_a_bad_value_is_refused_and_nothing_written(
    store: Store, old: object, new: object, match: str
) -> None:
    """Rule 1: values over ``MAX_SWAP_VALUE`` or not bytes are refused before a query."""
    with pytest.raises(BadDataError, match=match):
        await store.swap_state(KEY, old, new)  # type: ignore[arg-type]
    with pytest.raises(BadDataError, match="state key"):
        await store.swap_state("", None, b"1")
    assert await store.get_state(KEY) is None


async def test_a_value_of_several_chunks_is_never_swapped(store: Store) -> None:
    """Rule 1: a swap compares one row; a multi-chunk value's first row is a whole
    chunk, longer than any ``old``, so even its own first bytes do not match."""
    big = b"1" + b"\0" * (9 * 1024 * 1024)
    await store.put_state("big", big)
    assert not await store.swap_state("big", b"1", b"2")
    assert not await store.swap_state("big", None, b"2")
    assert await store.get_state("big") == big


def test_check_swap_gives_bytes() -> None:
    assert check_swap(KEY, None, bytearray(b"a")) == (None, b"a")
    assert check_swap(KEY, memoryview(b"b"), b"c") == (b"b", b"c")
    assert check_swap(KEY, b"x" * MAX_SWAP_VALUE, b"") == (b"x" * MAX_SWAP_VALUE, b"")


async def test_a_store_without_a_query_cannot_swap() -> None:
    """Rule 3: an adapter with neither a ``_query`` nor its own ``_swap_state`` says so."""
    with pytest.raises(NotImplementedError, match="object has no compare-and-set"):
        await swap_by_query(object(), None, KEY, None, b"1")  # type: ignore[arg-type]
