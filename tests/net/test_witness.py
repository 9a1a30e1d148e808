"""``net/witness.py``: the hub's C2SP tlog-witness endpoint and cosignature delivery over
HTTP, a real hub on 127.0.0.1 (SQLite and PostgreSQL) and a real agent's ``HubClient``.

Each status code tlog-witness prescribes, the exact 409 ``text/x.tlog.size`` answer,
concurrent requests of which exactly one is cosigned, cosignatures stored and served
with the checkpoints, and ``status`` showing each log's cosigned size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core import checkpoint
from jcm_sync.core.cosignature import CosignatureVerifier, verify_cosignatures
from jcm_sync.core.note import parse_note
from jcm_sync.core.witness_wire import WitnessRefusedError, format_add_checkpoint
from jcm_sync.errors import PeerRefusedError
from jcm_sync.net.client import HubClient
from jcm_sync.net.witness import is_text_route
from jcm_sync.services.node import Node
from jcm_sync.services.status_view import node_status
from jcm_sync.services.witness import cosigner_name, cosigner_verifiers
from tests.exchange.conftest import Running
from tests.store.conftest import pg_reachable
from tests.witnessed_net import BACKENDS, witnessed_net

__all__ = ["pg_reachable"]

PID = "JP-MN"
ADD = f"/v1/partnerships/{PID}/witness/add-checkpoint"


@pytest.fixture(params=BACKENDS)
async def hub(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Running]:
    """A hub on SQLite or PostgreSQL, with Japan's and MN's own logs seeded."""
    async with witnessed_net(tmp_path, request.param, pg_reachable, seed=2) as running:
        yield running


@pytest.fixture
async def client(hub: Running) -> AsyncIterator[HubClient]:
    agent = await hub.agent("MN")
    async with HubClient(hub.url, agent.keys.transport) as c:
        yield c


def keys_of(node: Node, who: str) -> list[CosignatureVerifier]:
    return cosigner_verifiers(node.logs(PID).root, node.cfg.node.origin_prefix, who, node.clock())


async def signed(agent: Node, size: int) -> bytes:
    own = agent.logs(PID).own
    root = await agent.store.root_at(own, size)
    cp = checkpoint.Checkpoint(own.origin, size, root)
    return checkpoint.sign_checkpoint(cp, agent.keys.checkpoint.key)


async def raw_post(client: HubClient, path: str, body: bytes, kind: str) -> tuple[int, str, bytes]:
    """A signed POST with any content type; (status, Content-Type, body)."""
    headers = {"Content-Type": kind}
    async with client._sess().post(client.base_url + path, data=body, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_every_spec_status_over_http(hub: Running, client: HubClient) -> None:
    agent = await hub.agent("MN")
    size = (await agent.store.tree_head(agent.logs(PID).own)).size
    note = await signed(agent, size)
    # 200: the first checkpoint, old 0, empty proof; the answer is cosignature lines
    answer = await client.add_checkpoint(PID, format_add_checkpoint(0, [], note))
    assert [c.name for c in verify_cosignatures(note + answer, keys_of(agent, "JP"))] == [
        cosigner_name("jcm-sync.example", "JP")
    ]
    # 409, exactly as the spec says: text/x.tlog.size, the size and a newline
    status, kind, body = await raw_post(
        client, ADD, format_add_checkpoint(0, [], note), "text/plain; charset=utf-8"
    )
    assert (status, kind, body) == (409, "text/x.tlog.size", f"{size}\n".encode())
    with pytest.raises(WitnessRefusedError) as conflict:
        await client.add_checkpoint(PID, format_add_checkpoint(1, [], note))
    assert conflict.value.witness_size == size
    # 400, 404, 403, 422 as problem+json with the spec's status
    japan = hub.hub
    assert japan is not None
    japan_note = (await japan.logs(PID).service.sign_checkpoint()).note
    forged = japan_note.replace(b"/JP\n", b"/MN\n", 1)
    cases = [
        (format_add_checkpoint(size + 1, [], note), 400, "bad-add-checkpoint"),
        (b"old 01\n\n" + note, 400, "bad-add-checkpoint"),
        (format_add_checkpoint(0, [], japan_note), 404, "unknown-log"),
        (format_add_checkpoint(0, [], forged), 403, "untrusted-checkpoint"),
        (format_add_checkpoint(size, [b"\x00" * 32], note), 422, "bad-consistency-proof"),
    ]
    for body, want, code in cases:
        with pytest.raises(PeerRefusedError) as refused:
            await client.add_checkpoint(PID, body)
        assert (refused.value.problem.status, refused.value.problem.code) == (want, code)
    # a JSON body is not the spec's: 415, before anything is judged
    status, _, _ = await raw_post(client, ADD, b"{}", "application/json")
    assert status == 415
    # another partnership is 403 before the body is looked at
    with pytest.raises(PeerRefusedError) as other:
        await client.add_checkpoint("JP-ID", format_add_checkpoint(0, [], note))
    assert other.value.problem.status == 403
    held = await japan.store.witnessed(agent.logs(PID).own.origin)
    assert held is not None
    assert held.size == size  # no refused request moved it


async def test_concurrent_requests_one_is_cosigned(hub: Running, client: HubClient) -> None:
    """Four requests from the same held size, for four sizes, at once: one 200, the rest
    409 with the winner's size (the compare-and-persist of tlog-witness)."""
    agent = await hub.agent("MN")
    first = await signed(agent, 1)
    await client.add_checkpoint(PID, format_add_checkpoint(0, [], first))
    own = agent.logs(PID).own
    bodies = []
    for n in range(2, 6):
        proof = await agent.store.consistency_proof(own, 1, n)
        bodies.append(format_add_checkpoint(1, proof, await signed(agent, n)))
    results = await asyncio.gather(
        *(client.add_checkpoint(PID, b) for b in bodies), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if isinstance(r, bytes)]
    assert len(winners) == 1
    size = 2 + winners[0]
    assert all(
        isinstance(r, WitnessRefusedError) and r.witness_size == size
        for i, r in enumerate(results)
        if i != winners[0]
    ), results
    assert hub.hub is not None
    held = await hub.hub.store.witnessed(own.origin)
    assert held is not None
    assert held.size == size


async def test_sync_stores_serves_and_shows_cosigned_checkpoints(
    hub: Running, client: HubClient
) -> None:
    agent = await hub.agent("MN")
    syncer = hub.syncer(agent)
    await syncer.sync_once()
    japan = hub.hub
    assert japan is not None
    sizes = {n: (await japan.store.tree_head(japan.log_ref(PID, n))).size for n in ("JP", "MN")}
    # served: Japan's checkpoint cosigned by MN, MN's checkpoint cosigned by Japan
    jp_view = await client.checkpoint(PID, "JP")
    mn_view = await client.checkpoint(PID, "MN")
    assert jp_view.note is not None
    assert mn_view.note is not None
    assert [c.name for c in verify_cosignatures(jp_view.note, keys_of(agent, "MN"))] == [
        cosigner_name("jcm-sync.example", "MN")
    ]
    assert verify_cosignatures(mn_view.note, keys_of(agent, "JP"))
    # stored: each side holds the other's cosignature of its own log
    assert await japan.store.cosigned_size(japan.logs(PID).own) == sizes["JP"]
    assert await agent.store.cosigned_size(agent.logs(PID).own) == sizes["MN"]
    assert parse_note(jp_view.note).text.startswith(b"jcm-sync.example/JP-MN/JP\n")
    # shown: status of both nodes names each log's cosigned size
    for node in (japan, agent):
        view = await node_status(node)
        got = {lg.node: lg.cosigned_size for lg in view.partnerships[0].logs}
        assert got == sizes, node.cfg.node.id
    # the console's partnership page shows them too
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hub.ops_url}/partnerships/{PID}", headers={"Accept": "text/html"}) as page,
    ):
        html = await page.text()
    for n in ("JP", "MN"):
        row = html.split(f'data-log="{n}"', 1)[1].split("</tr>", 1)[0]
        assert f'data-field="cosigned_size">{sizes[n]}<' in row, n
    # a delivery that is not a cosigned checkpoint is refused, and stores nothing
    status, _, _ = await raw_post(
        client, f"/v1/partnerships/{PID}/logs/JP/cosignatures", b"junk", "text/plain"
    )
    assert status == 400


def test_text_routes() -> None:
    assert is_text_route(ADD)
    assert is_text_route("/v1/partnerships/JP-MN/logs/JP/cosignatures")
    assert not is_text_route("/v1/partnerships/JP-MN/logs/JP/entries")


async def test_only_the_partner_may_ask_the_hub(hub: Running) -> None:
    """The hub's own transport key is a member's, but it witnesses only the partner's
    requests (ADR 0037: the rule both nodes' endpoint applies)."""
    agent = await hub.agent("MN")
    size = (await agent.store.tree_head(agent.logs(PID).own)).size
    note = await signed(agent, size)
    assert hub.hub is not None
    async with HubClient(hub.url, hub.hub.keys.transport) as own:
        with pytest.raises(PeerRefusedError) as refused:
            await own.add_checkpoint(PID, format_add_checkpoint(0, [], note))
    assert (refused.value.problem.status, refused.value.problem.code) == (403, "forbidden")
    assert await hub.hub.store.witnessed(agent.logs(PID).own.origin) is None
