"""``services/witness.py``: mutual witnessing between a real hub and agent in process.

The witness judges with the store's held head and compare-and-persists before it
cosigns; after a push the hub cosigns the agent's checkpoint, after a pull the agent
cosigns Japan's and the hub keeps it; every checkpoint the hub serves carries the
counterpart's cosignatures; status shows each log's cosigned size.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.core import checkpoint
from jcm_sync.core.cosignature import CosignatureVerifier, verify_cosignatures
from jcm_sync.core.note import add_signature_lines, parse_note
from jcm_sync.core.witness_wire import WitnessRefusedError, format_add_checkpoint
from jcm_sync.errors import ConflictError, ForbiddenError, PeerRefusedError, UnknownKeyError
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.services.status_view import read_status
from jcm_sync.services.witness import (
    accept_cosignatures,
    add_checkpoint_as_witness,
    cosigner_name,
    cosigner_verifiers,
    node_witness,
)
from jcm_sync.store import TreeHead
from tests.services.fakes import CC, PID, Pair, open_pair


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


def witness_keys(pair: Pair, node: str) -> list[CosignatureVerifier]:
    n = pair.agent
    return cosigner_verifiers(n.logs(PID).root, n.cfg.node.origin_prefix, node, n.clock())


async def agent_checkpoint(pair: Pair) -> tuple[bytes, int]:
    cp = await pair.agent.logs(PID).service.sign_checkpoint()
    return cp.note, cp.size


async def test_push_then_pull_cosigns_both_logs_and_the_hub_serves_them(pair: Pair) -> None:
    syncer = pair.syncer()
    await syncer.sync_once()
    agent, japan = pair.agent.logs(PID), pair.japan.logs(PID)
    # the hub cosigned the agent's checkpoint; the agent keeps Japan's cosignature with it
    assert await pair.agent.store.cosigned_size(agent.own) == pair.sizes[CC]
    held = await pair.agent.store.cosignatures(agent.own, pair.sizes[CC])
    assert [s.name for s in held] == [cosigner_name("jcm-sync.example", "JP")]
    # the agent cosigned Japan's checkpoint and the hub keeps it with its own log
    assert await pair.japan.store.cosigned_size(japan.own) == pair.sizes["JP"]
    state = await pair.honest.state(PID)
    served = {s.node: s.checkpoint for s in state.logs}
    assert served["JP"] is not None
    assert served[CC] is not None
    by_mn = verify_cosignatures(served["JP"], witness_keys(pair, CC))
    by_jp = verify_cosignatures(served[CC], witness_keys(pair, "JP"))
    assert [c.name for c in by_mn] == [cosigner_name("jcm-sync.example", CC)]
    assert [c.name for c in by_jp] == [cosigner_name("jcm-sync.example", "JP")]
    # the log's own signature still verifies on the cosigned note
    checkpoint.open_checkpoint(
        served["JP"], checkpoint_verifiers(japan.root, japan.own, pair.japan.clock()),
        origin=japan.own.origin,
    )  # fmt: skip
    # status shows the newest cosigned size of each log, on both sides
    for node, sizes in ((pair.agent, pair.sizes), (pair.japan, pair.sizes)):
        view = await read_status(node.cfg)
        logs = {lg.node: lg.cosigned_size for lg in view.partnerships[0].logs}
        assert logs == {CC: sizes[CC], "JP": sizes["JP"]}


async def test_a_second_exchange_sends_no_witness_request(pair: Pair) -> None:
    """Once cosigned, nothing is asked again: anti-entropy stays one request."""
    syncer = pair.syncer()
    await syncer.sync_once()
    before = pair.honest.requests
    result = await syncer.anti_entropy()
    assert result.in_sync
    assert pair.honest.requests - before == 1


async def test_new_records_are_witnessed_from_the_held_size(pair: Pair) -> None:
    syncer = pair.syncer()
    await syncer.sync_once()
    added = await pair.more_japan()
    await syncer.pull()
    size = pair.sizes["JP"] + added
    assert await pair.japan.store.cosigned_size(pair.japan.logs(PID).own) == size
    held = await pair.agent.store.witnessed(pair.agent.logs(PID).replica.origin)
    assert held is not None
    assert held.size == size


async def test_hub_witness_status_codes(pair: Pair) -> None:
    """The spec's refusals, from the hub's witness of the partner's log."""
    await pair.syncer().push()  # the hub now holds the agent's checkpoint (and cosigned it)
    note, size = await agent_checkpoint(pair)
    caller = pair.honest.caller
    add = add_checkpoint_as_witness
    node = pair.japan
    with pytest.raises(WitnessRefusedError) as e409:  # old 0, but it cosigned `size`
        await add(node, caller, PID, format_add_checkpoint(0, [], note))
    assert (e409.value.status, e409.value.witness_size) == (409, size)
    with pytest.raises(WitnessRefusedError) as e400:  # old above the checkpoint's size
        await add(node, caller, PID, format_add_checkpoint(size + 1, [], note))
    assert e400.value.status == 400
    japan_note = (await pair.japan.logs(PID).service.sign_checkpoint()).note
    with pytest.raises(WitnessRefusedError) as e404:  # Japan's own log: not witnessed here
        await add(node, caller, PID, format_add_checkpoint(0, [], japan_note))
    assert e404.value.status == 404
    forged = japan_note.replace(b"/JP\n", b"/" + CC.encode() + b"\n", 1)
    with pytest.raises(WitnessRefusedError) as e403:  # the partner's origin, Japan's key
        await add(node, caller, PID, format_add_checkpoint(0, [], forged))
    assert e403.value.status == 403
    with pytest.raises(WitnessRefusedError) as e422:
        await add(node, caller, PID, format_add_checkpoint(size, [b"\x00" * 32], note))
    assert e422.value.status == 422
    with pytest.raises(WitnessRefusedError) as bad:
        await add(node, caller, PID, b"old x\n\n" + note)
    assert bad.value.status == 400
    with pytest.raises(ForbiddenError):  # a caller of another partnership
        await add(node, dataclasses.replace(caller, partnership="JP-ID"), PID, b"")
    # the accepted request: same size again, empty proof, same root
    answer = await add(node, caller, PID, format_add_checkpoint(size, [], note))
    assert verify_cosignatures(note + answer, witness_keys(pair, "JP"))


async def test_concurrent_requests_have_one_winner(pair: Pair) -> None:
    """Ten requests from the same held size for ten different sizes: one is cosigned."""
    agent = pair.agent.logs(PID)
    store = pair.agent.store
    witness = node_witness(pair.japan)
    logs = {agent.own.origin: checkpoint_verifiers(agent.root, agent.own, pair.japan.clock())}
    bodies = []
    for n in range(1, min(11, pair.sizes[CC] + 1)):
        root = await store.root_at(agent.own, n)
        cp = checkpoint.Checkpoint(agent.own.origin, n, root)
        note = checkpoint.sign_checkpoint(cp, pair.agent.keys.checkpoint.key)
        bodies.append(format_add_checkpoint(0, [], note))
    results = await asyncio.gather(
        *(witness.add_checkpoint(b, logs) for b in bodies), return_exceptions=True
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, WitnessRefusedError)]
    assert len(won) == 1
    assert len(lost) == len(bodies) - 1 >= 3
    assert all(r.status == 409 and r.witness_size == won[0][0].size for r in lost)
    held = await pair.japan.store.witnessed(agent.own.origin)
    assert held is not None
    assert held.size == won[0][0].size


async def test_delivered_cosignatures_are_checked(pair: Pair) -> None:
    await pair.syncer().sync_once()
    japan = pair.japan.logs(PID)
    held = await pair.japan.store.latest_checkpoint(japan.own)
    assert held is not None
    caller = pair.honest.caller
    with pytest.raises(UnknownKeyError):  # no cosignature of the partner's witness key
        await accept_cosignatures(pair.japan, caller, PID, "JP", parse_note(held.note).text
                                  + b"\n" + _own_line(held.note))  # fmt: skip
    with pytest.raises(ForbiddenError):  # only Japan's log takes the partner's cosignatures
        await accept_cosignatures(pair.japan, caller, PID, CC, held.note)
    # a cosignature of another checkpoint of the same size (another root) is refused
    with pytest.raises(ConflictError):
        await accept_cosignatures(pair.japan, caller, PID, "JP", _forged(pair, held.note))


def _own_line(note: bytes) -> bytes:
    return parse_note(note).signatures[0].line().encode()


def _forged(pair: Pair, note: bytes) -> bytes:
    """A Japan-signed note of the same size with another root."""
    cp = checkpoint.parse_body(parse_note(note).text)
    fake = checkpoint.Checkpoint(cp.origin, cp.size, b"\x11" * 32)
    return checkpoint.sign_checkpoint(fake, pair.japan.keys.checkpoint.key)


async def test_in_process_refusals_keep_the_spec_status(pair: Pair) -> None:
    note, _ = await agent_checkpoint(pair)
    with pytest.raises(PeerRefusedError) as refused:
        await pair.honest.add_checkpoint(PID, format_add_checkpoint(0, [b"\x01" * 32], note))
    assert refused.value.problem.status == 422


async def test_a_witness_with_an_ml_dsa_key_cosigns_with_both(pair: Pair) -> None:
    """Ed25519 ``cosignature/v1`` and ML-DSA-44 ``subtree/v1`` lines, one per key, each
    verifying under the one cosigner name."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

    from jcm_sync.core.cosignature import MLDSA44_COSIGNATURE_TYPE, CosignatureVerifier
    from jcm_sync.services.witness import Witness

    ed, pq = Ed25519PrivateKey.generate(), MLDSA44PrivateKey.generate()
    name = cosigner_name("jcm-sync.example", "JP")
    witness = Witness(pair.japan.store, name, [ed, pq], pair.japan.clock)
    agent = pair.agent.logs(PID)
    logs = {agent.own.origin: checkpoint_verifiers(agent.root, agent.own, pair.japan.clock())}
    note, _ = await agent_checkpoint(pair)
    _, lines = await witness.add_checkpoint(format_add_checkpoint(0, [], note), logs)
    assert len(lines) == 2
    keys = [CosignatureVerifier(name, ed.public_key()), CosignatureVerifier(name, pq.public_key())]
    found = verify_cosignatures(add_signature_lines(note, lines), keys)
    assert sorted(c.signature_type for c in found) == [0x04, MLDSA44_COSIGNATURE_TYPE]


async def test_the_agent_retries_from_the_witness_size_after_a_409(pair: Pair) -> None:
    """The hub already witnessed a prefix the agent does not know of: the agent's first
    request (old 0) is a 409 naming it, the second, from there with a proof, is cosigned."""
    own = pair.agent.logs(PID).own
    prefix = TreeHead(3, await pair.agent.store.root_at(own, 3))
    assert await pair.japan.store.persist_witnessed(own.origin, None, prefix)
    before = pair.honest.requests
    await pair.syncer().push()
    assert await pair.agent.store.cosigned_size(own) == pair.sizes[CC]
    held = await pair.japan.store.witnessed(own.origin)
    assert held == TreeHead(pair.sizes[CC], await pair.agent.store.root_at(own, pair.sizes[CC]))
    assert pair.honest.requests - before >= 3  # state, push..., two add-checkpoints


async def test_a_failed_witnessing_does_not_fail_the_push(pair: Pair) -> None:
    """The hub witnessed a longer (other) history of the agent's log: it can never
    cosign this one. The push succeeds all the same, and nothing is stored as cosigned."""
    own = pair.agent.logs(PID).own
    assert await pair.japan.store.persist_witnessed(
        own.origin, None, TreeHead(pair.sizes[CC] + 5, b"\x07" * 32)
    )
    pushed = await pair.syncer().push()
    assert pushed == pair.sizes[CC]
    assert await pair.agent.store.cosigned_size(own) is None
