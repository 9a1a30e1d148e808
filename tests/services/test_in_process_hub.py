"""``InProcessHub``: the agent's port to a real ``Hub`` without HTTP, authorized and
refusing exactly as over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.core.wire import Caller, PushRequest
from jcm_sync.errors import PeerRefusedError
from jcm_sync.services.in_process_hub import InProcessHub
from tests.services.fakes import CC, PID, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


async def test_sync_through_the_in_process_hub_converges(pair: Pair) -> None:
    """One sync pass pushes and pulls everything; the next anti-entropy is one request."""
    syncer = pair.syncer()
    result = await syncer.sync_once()
    assert (result.pushed, result.pulled, result.in_sync) == (
        pair.sizes[CC],
        pair.sizes["JP"],
        True,
    )
    agent, japan = pair.agent.logs(PID), pair.japan.logs(PID)
    assert await pair.japan.store.tree_head(japan.replica) == await pair.agent.store.tree_head(
        agent.own
    )
    assert await pair.agent.store.tree_head(agent.replica) == await pair.japan.store.tree_head(
        japan.own
    )
    again = await syncer.anti_entropy()
    assert (again.in_sync, again.round_trips) == (True, 1)


async def test_a_partner_pushing_another_log_is_refused_403(pair: Pair) -> None:
    """Rule 1: the hub authorizes the caller in process as over HTTP."""
    with pytest.raises(PeerRefusedError) as exc:
        await pair.honest.push(PID, "JP", PushRequest(start=0, entries=[]))
    assert (exc.value.status, exc.value.code) == (403, "forbidden")


async def test_another_partnership_is_refused_403(pair: Pair) -> None:
    """Rule 1: a caller of another partnership learns nothing, whatever it asks."""
    other = pair.honest.caller
    stranger = InProcessHub(pair.hub, Caller("JP-ID", "ID", other.keyid, other.public_key))
    with pytest.raises(PeerRefusedError) as exc:
        await stranger.state(PID)
    assert (exc.value.status, exc.value.code) == (403, "forbidden")


async def test_a_read_past_the_log_is_refused_with_its_size(pair: Pair) -> None:
    """Rule 2: the hub's refusal arrives as problem details, with the size to use."""
    with pytest.raises(PeerRefusedError) as exc:
        await pair.honest.entries(PID, "JP", pair.sizes["JP"] + 1, 10)
    assert (exc.value.status, exc.value.code) == (400, "past-log-size")
    assert exc.value.problem.size == pair.sizes["JP"]
