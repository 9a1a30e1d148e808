"""The pieces the agent and the hub share: the fork guard, the root after new leaves,
and what was last seen of a log (the daemons' schedule is ``test_daemon.py``'s)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.trust import Verification
from jcm_sync.errors import ForkError, SignatureError
from jcm_sync.local.status import AgentStatus
from jcm_sync.services.log_service import record_verifier
from jcm_sync.services.log_sync import extended, note_log, refuse_if_stopped, verify_batch
from tests.services.fakes import CC, PID, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


@pytest.mark.parametrize("held", [0, 1, 5, 8], ids=["from-empty", "from-1", "from-5", "from-8"])
async def test_the_root_after_new_leaves_is_the_log_root(pair: Pair, held: int) -> None:
    """Rule 2: the stored frontier extended by the rest equals the root of the whole log."""
    own = pair.agent.logs(PID).own
    envelopes = [e.envelope for e in await pair.agent.store.entries(own)]
    frontier = await pair.agent.store.frontier(own, held)
    after = extended(frontier, [merkle.leaf_hash(raw) for raw in envelopes[held:]])
    assert after.size == len(envelopes)
    assert after.root() == merkle.root([merkle.leaf_hash(raw) for raw in envelopes])
    assert after.root() == (await pair.agent.store.tree_head(own)).root


async def test_a_fork_alarm_stops_only_its_own_log(pair: Pair) -> None:
    """Rule 1: after an alarm on one log the guard refuses it and lets the other pass."""
    own, rep = pair.agent.logs(PID).own, pair.agent.logs(PID).replica
    await refuse_if_stopped(pair.agent, own)
    await pair.agent.raise_fork(own, "a test fork")
    with pytest.raises(ForkError, match="stopped by a fork alarm") as exc:
        await refuse_if_stopped(pair.agent, own)
    assert exc.value.where == own.origin
    await refuse_if_stopped(pair.agent, rep)


@pytest.mark.parametrize(
    ("local", "remote", "lag"), [(10, 4, 6), (4, 10, 6), (7, 7, 0)],
    ids=["ahead", "behind", "level"],
)  # fmt: skip
async def test_what_was_seen_of_a_log_sets_status_and_lag(
    pair: Pair, local: int, remote: int, lag: int
) -> None:
    """Rule 3: the sizes go to the status, their difference to the lag metric."""
    status = AgentStatus(partnership=PID)
    rep = pair.agent.logs(PID).replica
    note_log(pair.agent, status, rep, local, remote)
    seen = status.logs["JP"]
    assert (seen.origin, seen.local_size, seen.remote_size) == (rep.origin, local, remote)
    value = pair.agent.metrics.registry.get_sample_value(
        "jcm_sync_replica_lag_entries", {"partnership": PID, "log": "JP"}
    )
    assert value == lag


async def test_an_unknown_remote_size_leaves_the_lag_alone(pair: Pair) -> None:
    """Rule 3: with no figure from the other end, the lag metric keeps its last value."""
    status = AgentStatus(partnership=PID)
    own = pair.agent.logs(PID).own
    note_log(pair.agent, status, own, 9, 3)
    note_log(pair.agent, status, own, 12, None)
    assert status.logs[CC].remote_size is None
    value = pair.agent.metrics.registry.get_sample_value(
        "jcm_sync_replica_lag_entries", {"partnership": PID, "log": CC}
    )
    assert value == 6


async def test_a_batch_is_verified_once_and_refusals_wait_for_the_store(pair: Pair) -> None:
    """Rule 4: every envelope is verified up front, once; a refusal is raised only when
    that envelope is asked for; leaf hashes are the verifications' own, and the store's
    append takes them without verifying or hashing again."""
    logs = pair.agent.logs(PID)
    envelopes = [e.envelope for e in await pair.agent.store.entries(logs.own)]
    # one bit of the first signature's bytes, re-encoded: the envelope stays well formed
    # (flipping a bit of the base64 text itself could make it invalid base64 instead)
    start = envelopes[1].index(b'"sig":"') + 7
    end = envelopes[1].index(b'"', start)
    sig = bytearray(base64.b64decode(envelopes[1][start:end]))
    sig[0] ^= 1
    spoiled = envelopes[1][:start] + base64.b64encode(bytes(sig)) + envelopes[1][end:]
    calls: list[bytes] = []
    verify = record_verifier(logs.root, pair.agent.clock())

    def counting(raw: bytes) -> Verification:
        calls.append(raw)
        return verify(raw)

    batch = verify_batch(counting, [*envelopes, spoiled])
    assert calls == [*envelopes, spoiled]
    first = batch(envelopes[0])
    assert batch.leaf_hashes(envelopes[:1]) == [first.leaf_hash]
    assert batch.leaf_hashes([spoiled]) == [merkle.leaf_hash(spoiled)]
    with pytest.raises(SignatureError):
        batch(spoiled)
    replica = pair.japan.logs(PID).replica  # Japan's empty replica of this log
    result = await pair.japan.store.append_entries(replica, 0, envelopes, batch)
    assert result.root == (await pair.agent.store.tree_head(logs.own)).root
    assert len(calls) == len(envelopes) + 1  # the store asked the batch, not the verifier
