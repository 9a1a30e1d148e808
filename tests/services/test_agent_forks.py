"""Every fork branch and gap-resume path of the agent, driven by a hub that lies.

One test per branch of ``services/agent.py`` that raises or records a fork, detects an
inconsistent answer, or resumes after a gap. The agent and the hub each run on a real
SQLite store; the agent reaches the real ``Hub`` in process, through ``LyingHub``
(``tests/services/fakes.py``) where a test needs a lie. A fork must leave an alarm with
both checkpoints the code keeps, store nothing of the lie, and stop that log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import ForkError, SignatureError, TransportError, UntrustedError
from jcm_sync.local.alarms import Alarm
from jcm_sync.services.node import Node
from jcm_sync.services.sample import partnership_records
from jcm_sync.store import LogRef, StoredCheckpoint, TreeHead
from tests.services.fakes import CC, PID, Lie, LyingHub, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


def forks_counted(node: Node, log: str) -> float:
    value = node.metrics.registry.get_sample_value(
        "jcm_sync_forks_total", {"partnership": PID, "log": log}
    )
    return value or 0.0


async def alarm(node: Node, ref: LogRef) -> Alarm:
    found = await node.alarms.get(ref.origin)
    assert found is not None, f"no fork alarm for {ref.origin}"
    assert (found.partnership, found.node) == (ref.partnership, ref.node)
    return found


async def held(node: Node, ref: LogRef) -> tuple[TreeHead, StoredCheckpoint | None]:
    return await node.store.tree_head(ref), await node.store.latest_checkpoint(ref)


# --- push ------------------------------------------------------------------------------


async def pushed_honestly(pair: Pair) -> StoredCheckpoint:
    """Push the agent's whole log to the honest hub; return the agent's checkpoint."""
    assert await pair.syncer().push() == pair.sizes[CC]
    own = await pair.agent.store.latest_checkpoint(pair.agent.logs(PID).own)
    assert own is not None
    assert own.size == pair.sizes[CC]
    return own


async def test_hub_holding_more_of_our_log_than_we_wrote_is_a_fork(pair: Pair) -> None:
    """``Syncer.push``, hub size above ours: alarm with our checkpoint and the hub's size."""
    own_cp = await pushed_honestly(pair)
    liar = pair.liar(Lie.INFLATE_REPLICA)
    with pytest.raises(ForkError, match="holds"):
        await pair.syncer(liar).push()
    a = await alarm(pair.agent, pair.agent.logs(PID).own)
    assert a.held_checkpoint == own_cp.note
    assert a.offered_checkpoint is None
    assert a.detail == {"hub_size": pair.sizes[CC] + 5}
    assert forks_counted(pair.agent, CC) == 1
    assert liar.pushed == []  # nothing sent to a hub that holds another log


async def test_hub_with_another_history_of_our_log_is_a_fork(pair: Pair) -> None:
    """``Syncer.push``, another root at the hub's size: alarm with both checkpoints."""
    own_cp = await pushed_honestly(pair)
    liar = pair.liar(Lie.REWRITE_REPLICA)
    with pytest.raises(ForkError, match="differs"):
        await pair.syncer(liar).push()
    a = await alarm(pair.agent, pair.agent.logs(PID).own)
    assert a.held_checkpoint == own_cp.note
    served = liar.served[-1].logs[1]
    assert served.node == CC
    assert a.offered_checkpoint == served.checkpoint is not None
    assert forks_counted(pair.agent, CC) == 1
    assert liar.pushed == []


async def test_a_stopped_own_log_is_never_pushed_again(pair: Pair) -> None:
    """``Syncer.push`` after a fork alarm: refused before anything is asked of the hub."""
    await pushed_honestly(pair)
    with pytest.raises(ForkError):
        await pair.syncer(pair.liar(Lie.REWRITE_REPLICA)).push()
    before = pair.honest.requests
    with pytest.raises(ForkError, match="stopped by a fork alarm"):
        await pair.syncer().push()
    assert pair.honest.requests == before


async def test_anti_entropy_pulls_while_the_own_log_is_stopped(pair: Pair) -> None:
    """``Syncer.anti_entropy`` skips a stopped log and still replicates the other one."""
    await pushed_honestly(pair)
    with pytest.raises(ForkError):
        await pair.syncer(pair.liar(Lie.REWRITE_REPLICA)).push()
    more = partnership_records(CC, pair.net.keys, projects=1, seed=7).by_node[CC]
    await pair.agent.logs(PID).service.append(more)  # something new to push, held back
    result = await pair.syncer().anti_entropy()
    assert (result.pushed, result.pulled, result.in_sync) == (0, pair.sizes["JP"], False)
    hub_replica = await pair.japan.store.tree_head(pair.japan.logs(PID).replica)
    assert hub_replica.size == pair.sizes[CC]


async def test_a_lost_batch_is_resent_from_the_size_the_hub_names(pair: Pair) -> None:
    """``Syncer.push``'s gap path: the hub acknowledged a batch it then lost, refuses the
    next one as a gap naming its size, and the agent resends from there: no fork."""
    liar = pair.liar(Lie.LOSE_FIRST_PUSH)
    assert await pair.syncer(liar).push() == pair.sizes[CC]
    [gap] = liar.refusals
    assert (gap.code, gap.problem.size, gap.status) == ("gap", 0, 409)
    starts = [req.start for req in liar.pushed]
    assert starts[:2] == [0, 5]
    assert starts.count(0) == 2  # batch 0 went twice
    own, rep = pair.agent.logs(PID).own, pair.japan.logs(PID).replica
    assert await pair.japan.store.tree_head(rep) == await pair.agent.store.tree_head(own)
    assert await pair.agent.alarms.active() == await pair.japan.alarms.active() == []


@pytest.mark.parametrize(
    "lie", [Lie.FORGET_REPLICA_CHECKPOINT, Lie.TAMPER_REPLICA_CHECKPOINT],
    ids=["hub-shows-no-checkpoint", "hub-checkpoint-does-not-verify"],
)  # fmt: skip
async def test_a_checkpoint_the_hub_lacks_is_sent_again_alone(pair: Pair, lie: Lie) -> None:
    """``Syncer.push`` at equal sizes, ``_held_size`` None: ``_resend_checkpoint`` sends
    our checkpoint with no entries, and keeps the hub's countersigned receipt."""
    own_cp = await pushed_honestly(pair)
    syncer = pair.syncer(liar := pair.liar(lie))
    assert await syncer.push() == 0
    assert liar.pushed == [
        PushRequest(start=own_cp.size, entries=[], checkpoint=own_cp.note, source_size=own_cp.size)
    ]
    assert syncer.status.hub_receipt is not None
    assert syncer.status.hub_receipt.startswith(own_cp.note)  # ours, plus Japan's signature
    assert await pair.agent.alarms.active() == []


async def test_entries_without_their_checkpoint_at_the_hub_get_it(pair: Pair) -> None:
    """The same path against the honest hub: it stopped between the entries and their
    checkpoint (here: a push that carried none); the next push completes it."""
    own = pair.agent.logs(PID).own
    envelopes = [e.envelope for e in await pair.agent.store.entries(own)]
    await pair.honest.push(PID, CC, PushRequest(start=0, entries=envelopes))
    replica = pair.japan.logs(PID).replica
    assert await pair.japan.store.latest_checkpoint(replica) is None
    assert await pair.syncer().push() == 0
    held_cp = await pair.japan.store.latest_checkpoint(replica)
    assert held_cp is not None
    assert held_cp.size == len(envelopes)


async def test_a_receipt_without_japans_signature_is_refused(pair: Pair) -> None:
    """``Syncer._check_receipt``: a receipt Japan did not countersign is not kept."""
    syncer = pair.syncer(pair.liar(Lie.FORGE_RECEIPT))
    with pytest.raises(UntrustedError):
        await syncer.push()
    assert syncer.status.hub_receipt is None
    assert await pair.agent.alarms.active() == []


async def test_a_state_without_our_log_is_a_transport_error(pair: Pair) -> None:
    """``Syncer._remote``: an answer that lists no log of ours is refused, nothing sent."""
    liar = pair.liar(Lie.OMIT_REPLICA)
    with pytest.raises(TransportError, match="lists no log"):
        await pair.syncer(liar).push()
    assert liar.pushed == []


# --- pull ------------------------------------------------------------------------------


async def test_a_checkpoint_japan_did_not_sign_is_refused(pair: Pair) -> None:
    """``Syncer.pull``: a checkpoint that does not verify under Japan's keys stores nothing."""
    rep = pair.agent.logs(PID).replica
    before = await held(pair.agent, rep)
    with pytest.raises(SignatureError):
        await pair.syncer(pair.liar(Lie.TAMPER_JAPAN_CHECKPOINT)).pull()
    assert await held(pair.agent, rep) == before
    assert before[0].size == 0
    assert before[1] is None
    assert await pair.agent.alarms.active() == []


async def test_entries_that_are_not_those_of_the_checkpoint_are_a_fork(pair: Pair) -> None:
    """``Syncer._fetch_pages``, last page: Japan signed a root its entries do not have."""
    rep = pair.agent.logs(PID).replica
    liar = pair.liar(Lie.MISMATCHED_JAPAN_CHECKPOINT)
    with pytest.raises(ForkError, match="are not those of Japan's signed checkpoint"):
        await pair.syncer(liar, batch_size=1000).pull()
    a = await alarm(pair.agent, rep)
    assert a.held_checkpoint is None  # nothing was held yet
    assert a.offered_checkpoint == liar.served[0].logs[0].checkpoint
    assert (await pair.agent.store.tree_head(rep)).size == 0
    assert forks_counted(pair.agent, "JP") == 1


@pytest.mark.parametrize(
    "lie", [Lie.SKIP_ENTRIES, Lie.BAD_PROOF], ids=["entries-skipped", "proof-does-not-verify"]
)
async def test_a_page_not_consistent_with_the_checkpoint_is_a_fork(pair: Pair, lie: Lie) -> None:
    """``Syncer._fetch_pages``, a page before the last: its root must be proved consistent
    with the new checkpoint; a page missing an entry, or a bad proof, is a fork."""
    rep = pair.agent.logs(PID).replica
    assert pair.sizes["JP"] > 3  # more than one page
    liar = pair.liar(lie)
    with pytest.raises(ForkError, match=r"entries 0\.\.[12] served by the hub"):
        await pair.syncer(liar, batch_size=3).pull()
    a = await alarm(pair.agent, rep)
    assert a.offered_checkpoint == liar.served[0].logs[0].checkpoint
    assert (await pair.agent.store.tree_head(rep)).size == 0
    assert await pair.agent.store.latest_checkpoint(rep) is None


@pytest.mark.parametrize(
    "lie", [Lie.SHIFT_PAGE, Lie.EMPTY_PAGE], ids=["page-starts-later", "page-empty"]
)
async def test_a_page_that_skips_ahead_is_a_transport_error(pair: Pair, lie: Lie) -> None:
    """``Syncer._fetch_pages``: a page from elsewhere than asked, or none, is refused
    before anything is appended; it is not a fork (nothing signed is contradicted)."""
    rep = pair.agent.logs(PID).replica
    with pytest.raises(TransportError, match="sent no entries from 0"):
        await pair.syncer(pair.liar(lie)).pull()
    assert (await pair.agent.store.tree_head(rep)).size == 0
    assert await pair.agent.alarms.active() == []


async def pulled_honestly(pair: Pair) -> StoredCheckpoint:
    """Pull Japan's whole log from the honest hub; return the checkpoint now held."""
    assert await pair.syncer().pull() == pair.sizes["JP"]
    cp = await pair.agent.store.latest_checkpoint(pair.agent.logs(PID).replica)
    assert cp is not None
    assert cp.size == pair.sizes["JP"]
    return cp


async def test_another_root_at_the_size_held_is_a_fork(pair: Pair) -> None:
    """``Syncer.pull``, same size: Japan signed another root for it; both kept."""
    held_cp = await pulled_honestly(pair)
    rep = pair.agent.logs(PID).replica
    before = await held(pair.agent, rep)
    liar = pair.liar(Lie.MISMATCHED_JAPAN_CHECKPOINT)
    with pytest.raises(ForkError, match="has another root"):
        await pair.syncer(liar).pull()
    a = await alarm(pair.agent, rep)
    assert a.held_checkpoint == held_cp.note
    assert a.offered_checkpoint == liar.served[0].logs[0].checkpoint != held_cp.note
    assert await held(pair.agent, rep) == before


async def test_a_smaller_checkpoint_of_another_history_is_a_fork(pair: Pair) -> None:
    """``Syncer.pull``, smaller size: not a prefix of what is held, so a fork."""
    held_cp = await pulled_honestly(pair)
    rep = pair.agent.logs(PID).replica
    before = await held(pair.agent, rep)
    liar = pair.liar(Lie.SMALLER_OTHER_JAPAN_CHECKPOINT)
    with pytest.raises(ForkError, match="is not a prefix"):
        await pair.syncer(liar).pull()
    a = await alarm(pair.agent, rep)
    assert a.held_checkpoint == held_cp.note
    assert a.offered_checkpoint == liar.served[0].logs[0].checkpoint
    assert await held(pair.agent, rep) == before


async def test_an_older_genuine_checkpoint_is_not_a_fork(pair: Pair) -> None:
    """``Syncer.pull``, smaller size and a prefix of what is held (a stale or rolled-back
    answer): nothing to pull, no alarm."""
    liar = pair.liar()
    syncer = pair.syncer(liar)
    assert await syncer.pull() == pair.sizes["JP"]
    more = await pair.more_japan()
    assert await syncer.pull() == more
    liar.lies.add(Lie.ROLLBACK)
    rep = pair.agent.logs(PID).replica
    before = await held(pair.agent, rep)
    assert await syncer.pull() == 0
    assert await held(pair.agent, rep) == before
    assert before[0].size == pair.sizes["JP"] + more
    assert await pair.agent.alarms.active() == []


async def rewritten(pair: Pair) -> LyingHub:
    """A hub serving another, longer history of Japan's log."""
    await pair.with_history(projects=4, seed=5)
    assert pair.other_japan is not None
    other = await pair.other_japan.store.tree_head(pair.other_japan.logs(PID).own)
    assert other.size > pair.sizes["JP"]
    return pair.liar(Lie.REWRITE_JAPAN)


async def longer_with_bad_proofs(pair: Pair) -> LyingHub:
    """The honest, longer history of Japan's log, with consistency proofs that fail."""
    await pair.more_japan()
    return pair.liar(Lie.BAD_PROOF)


@pytest.mark.parametrize(
    "lie", [rewritten, longer_with_bad_proofs], ids=["history-rewritten", "proof-does-not-verify"]
)
async def test_a_checkpoint_not_consistent_with_the_one_held_is_a_fork(
    pair: Pair, lie: object
) -> None:
    """``Syncer.pull``, larger size: the consistency proof from the held checkpoint must
    verify; when it does not, both checkpoints are kept and nothing is appended."""
    held_cp = await pulled_honestly(pair)
    rep = pair.agent.logs(PID).replica
    before = await held(pair.agent, rep)
    liar = await lie(pair)  # type: ignore[operator]
    with pytest.raises(ForkError, match="is not consistent with the one"):
        await pair.syncer(liar).pull()
    a = await alarm(pair.agent, rep)
    assert a.held_checkpoint == held_cp.note
    assert a.offered_checkpoint == liar.served[0].logs[0].checkpoint != held_cp.note
    assert await held(pair.agent, rep) == before
    assert forks_counted(pair.agent, "JP") == 1


async def test_a_stopped_replica_is_never_pulled_again(pair: Pair) -> None:
    """``Syncer.pull`` after a fork alarm: refused before anything is asked of the hub,
    and the alarm keeps the first evidence."""
    with pytest.raises(ForkError):
        await pair.syncer(pair.liar(Lie.MISMATCHED_JAPAN_CHECKPOINT), batch_size=1000).pull()
    first = await alarm(pair.agent, pair.agent.logs(PID).replica)
    before = pair.honest.requests
    with pytest.raises(ForkError, match="stopped by a fork alarm"):
        await pair.syncer().pull()
    assert pair.honest.requests == before
    assert await alarm(pair.agent, pair.agent.logs(PID).replica) == first
