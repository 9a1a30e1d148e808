"""``services/replica_view.py``: the hub's answer about a partner's replica.

On a real hub and partner (``tests/services/fakes``, SQLite): with nothing held the answer
is the head, unsigned; a held checkpoint is answered countersigned by Japan, with its
cosignatures, and signed once per note; a push's answer comes from the view it read
before its append only while no checkpoint was put since, and never when it is told not
to reuse it (a closing push, a store shared by several hub processes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core import checkpoint
from jcm_sync.core import note as signed_note
from jcm_sync.core.wire import PushRequest
from jcm_sync.services import replica_view
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.store import TreeHead
from tests.services.fakes import CC, PID, Pair, open_pair
from tests.services.test_hub import own_envelopes, partner, partner_checkpoint, replica


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


async def push(pair: Pair, start: int, end: int, *, close: bool) -> None:
    """The partner's own entries ``start:end``, with its checkpoint of ``:end`` if ``close``."""
    envs = await own_envelopes(pair)
    note = partner_checkpoint(pair, envs[:end]) if close else None
    await pair.hub.push(partner(pair), PID, CC, PushRequest(start, envs[start:end], note))


def counting_reads(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    store = pair.japan.store
    reads: list[str] = []
    real = store.log_view

    async def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append("log_view")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "log_view", counting)
    return reads


async def test_with_nothing_held_the_answer_is_the_head_unsigned(pair: Pair) -> None:
    await push(pair, 0, 2, close=False)
    answer = await pair.hub.views.read(replica(pair))
    head = await pair.japan.store.tree_head(replica(pair))
    assert (answer.size, answer.root, answer.note) == (2, head.root, None)


async def test_a_held_checkpoint_is_countersigned_once_per_note(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 1: the note verifies under Japan's checkpoint key; an unchanged note is not
    signed again."""
    await push(pair, 0, 2, close=True)
    signed: list[bytes] = []
    real = signed_note.add_signature

    def counting(note: bytes, *args: Any) -> bytes:
        signed.append(note)
        return real(note, *args)

    monkeypatch.setattr(replica_view.signed_note, "add_signature", counting)
    views = replica_view.ReplicaViews(pair.japan)
    first, second = await views.read(replica(pair)), await views.read(replica(pair))
    assert first == second
    assert (first.size, first.note is not None) == (2, True)
    assert len(signed) == 1
    logs = pair.japan.logs(PID)
    japan = [
        signed_note.Verifier(logs.own.origin, v.public_key)
        for v in checkpoint_verifiers(logs.root, logs.own, pair.japan.clock())
    ]
    opened = checkpoint.open_checkpoint(first.note, japan, origin=logs.replica.origin)
    assert opened.checkpoint.size == 2


async def test_a_push_answer_reuses_its_view_only_while_nothing_was_put(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rules 2 and 3: the view read at a generation serves while the generation holds,
    with the head given; after ``wrote``, or without ``reuse``, the store is read again."""
    await push(pair, 0, 2, close=True)
    views, rep = pair.hub.views, replica(pair)
    generation = views.generation(rep)
    before = await pair.japan.store.log_view(rep)
    reads = counting_reads(pair, monkeypatch)
    later = TreeHead(3, b"\x01" * 32)  # the head an append left; a checkpoint is held
    reused = await views.answer(rep, before, generation, later, reuse=True)
    assert reads == []
    assert reused == views.of(rep, before, later)
    assert reused.size == 2  # the held checkpoint's, countersigned
    await views.answer(rep, before, generation, later, reuse=False)
    assert reads == ["log_view"]
    views.wrote(rep)
    assert views.generation(rep) == generation + 1
    fresh = await views.answer(rep, before, generation, later, reuse=True)
    assert reads == ["log_view", "log_view"]
    assert fresh == await views.read(rep)


async def test_a_kept_checkpoint_advances_the_generation(pair: Pair) -> None:
    """Rule 2: the hub's push calls ``wrote`` for the checkpoint it keeps, not otherwise."""
    views, rep = pair.hub.views, replica(pair)
    start = views.generation(rep)
    await push(pair, 0, 2, close=False)
    assert views.generation(rep) == start
    await push(pair, 2, 3, close=True)
    assert views.generation(rep) == start + 1
