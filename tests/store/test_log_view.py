"""``Store.log_view`` on every backend: the head, the latest checkpoint with its
cosignatures and a state value read together are what the single calls read, checked as
they check (``store/log_view.py``, ADR 0050)."""

from __future__ import annotations

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.note import NoteSignature
from jcm_sync.errors import BadDataError, CorruptStoreError, NotFoundError
from jcm_sync.store import Store
from jcm_sync.store.log_view import LogView, checked_view, composed_view
from tests.store import World
from tests.store.conftest import Corruptor
from tests.store.test_protocol import filled, leaves, signed_checkpoint

ALARM = "alarm/jcm-sync.example/JP-ID/JP"


async def singles(store: Store, world: World, state_key: str | None) -> LogView:
    """What the view must be: the single calls, one after another."""
    log = world.jp_log
    held = await store.latest_checkpoint(log)
    cosigned = await store.cosignatures(log, held.size) if held is not None else []
    state = await store.get_state(state_key) if state_key is not None else None
    return LogView(await store.tree_head(log), held, cosigned, state)


async def test_the_view_is_what_the_single_calls_read(store: Store, world: World) -> None:
    log = world.jp_log
    await store.ensure_log(log)
    assert await store.log_view(log) == LogView(await store.tree_head(log))  # empty log
    envs = await filled(store, world, 6)
    assert await store.log_view(log) == await singles(store, world, None)
    assert (await store.log_view(log)).checkpoint is None
    for size in (3, 6):  # the latest checkpoint, not the first
        note = signed_checkpoint(log, size, merkle.root(leaves(envs[:size])), world.key_of("JP"))
        await store.put_checkpoint(log, note)
    view = await store.log_view(log)
    assert view.checkpoint is not None
    assert view.checkpoint.size == 6
    assert view.cosignatures == []
    sigs = [
        NoteSignature("w.example/MN", 7, b"a" * 72),
        NoteSignature("w.example/ID", 9, b"c" * 72),
    ]
    await store.add_cosignatures(log, 6, sigs[:1])
    await store.add_cosignatures(log, 3, sigs[1:])  # of another size: not in the view
    await store.add_cosignatures(log, 6, sigs[1:])
    view = await store.log_view(log, state_key=ALARM)
    assert view == await singles(store, world, ALARM)
    assert view.cosignatures == sigs
    assert view.state is None
    await store.put_state(ALARM, b"x" * 70_000)  # several chunks
    view = await store.log_view(log, state_key=ALARM)
    assert view == await singles(store, world, ALARM)
    assert view.state == b"x" * 70_000
    assert view == await composed_view(store, log, state_key=ALARM)


async def test_without_checkpoint_or_state_neither_is_read(store: Store, world: World) -> None:
    log = world.jp_log
    envs = await filled(store, world, 2)
    await store.put_checkpoint(
        log, signed_checkpoint(log, 2, merkle.root(leaves(envs)), world.key_of("JP"))
    )
    await store.put_state(ALARM, b"alarm")
    view = await store.log_view(log, checkpoint=False)
    assert view == LogView(await store.tree_head(log))
    view = await store.log_view(log, checkpoint=False, state_key=ALARM)
    assert view == LogView(await store.tree_head(log), state=b"alarm")


async def test_an_unknown_log_or_a_bad_key_is_refused(store: Store, world: World) -> None:
    with pytest.raises(NotFoundError, match="no log of JP"):
        await store.log_view(world.jp_log)
    await store.ensure_log(world.jp_log)
    with pytest.raises(BadDataError):
        await store.log_view(world.jp_log, state_key="")


async def test_a_corrupt_head_is_corrupt_not_a_value(
    store: Store, world: World, corrupt: Corruptor
) -> None:
    await filled(store, world, 2)
    await corrupt.set_head(world.jp_log, 2, b"short")
    with pytest.raises(CorruptStoreError):
        await store.log_view(world.jp_log)


def test_checked_view_refuses_malformed_rows(world: World) -> None:
    """Rule 2 on rows a store might hand back: each is refused as its single call does."""
    log, root = world.jp_log, b"r" * 32
    good = checked_view(log, ((1, root), (1, root, b"n"), [("w.example/MN", 7, b"s")], None), None)
    assert good.cosignatures == [NoteSignature("w.example/MN", 7, b"s")]
    bad: list[tuple[object, ...]] = [
        (None, None, [], None),  # no head row
        ((1, root), (1, root, 5), [], None),  # a note that is not bytes
        ((1, root), (1, root, b"n"), [("w.example/MN", "7", b"s")], None),  # key id
        ((1, root), None, [], [(1, b"x")]),  # chunk 0 missing
        ((1, root), None, [], [(0, "text")]),  # not bytes
    ]
    for raw in bad:
        with pytest.raises(CorruptStoreError):
            checked_view(log, raw, "k")  # type: ignore[arg-type]
    assert checked_view(log, ((1, root), None, [], []), "k").state is None  # no chunks: absent
