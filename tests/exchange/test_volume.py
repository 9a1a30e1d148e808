"""The exchange at volume (issue 8, ADR 0009): pages of the largest batch over the real
``HubClient`` against a real hub with its default limits, and the answers a client must
refuse as transport failures rather than decode errors (too large, cut short)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from jcm_sync.core.envelope import PrivateKey, add_signature, sign_record
from jcm_sync.core.records import Allocation, Participant, ProjectRecord
from jcm_sync.core.wire import EntriesPage, PushRequest, PushResponse, encoder
from jcm_sync.errors import TransportError
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.log_service import verify_log
from jcm_sync.services.node import Node
from tests.exchange.conftest import Running
from tests.witnessed_net import BACKENDS, witnessed_net

MAX_BATCH = 1000
"""The hub's default ``server.max_batch`` and the most a page of entries holds."""

DESCRIPTION = (
    "Installation of high-efficiency refrigeration and heat-recovery equipment at cold "
    "storage warehouses, with monitoring of electricity consumption per tonne stored, "
    "metered every fifteen minutes and reported to the Joint Committee each period. "
)


def projects(
    cc: str,
    author: str,
    keys: dict[str, PrivateKey],
    n: int,
    *,
    title_chars: int = 1200,
    text: str = DESCRIPTION,
) -> list[bytes]:
    """``n`` JC project records of ``author``, co-signed by both sides, with a long title
    (the schema allows 4,000 characters) so that 1,000 of them weigh over 1 MB."""
    created = datetime.now(UTC)
    pid = f"JP-{cc}"
    out = []
    for i in range(n):
        project_id = f"{cc}{i:03d}" if i < 1000 else f"{cc}_PIN{i - 1000:03d}"
        title = f"{project_id}: " + (text * (title_chars // len(text) + 1))
        record = ProjectRecord(
            partnership=pid, author=author, created=created, project_id=project_id,
            title=title[:title_chars], status="registered", methodologies=(f"{cc}_AM001",),
            participants=(Participant("Japanese Participant Co., Ltd.", "JP"),
                          Participant(f"Participant {i} LLC", cc)),
            allocation=(Allocation("Government of Japan", "JP", 50),
                        Allocation(f"Participant {i} LLC", cc, 50)),
            registered_on=date(2016, 1 + i % 12, 10),
        )  # fmt: skip
        other = "JP" if author != "JP" else cc
        out.append(add_signature(sign_record(record, [keys[author]]), keys[other]))
    return out


@pytest.fixture(params=BACKENDS)
async def hub(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Running]:
    """A hub with the default limits (8 MiB bodies, 1,000-entry batches), no jobs."""
    async with witnessed_net(tmp_path, request.param, pg_reachable) as running:
        yield running


async def entries_of(node: Node, which: str) -> list[bytes]:
    logs = node.logs("JP-MN")
    ref = logs.own if which == "own" else logs.replica
    return [e.envelope for e in await node.store.entries(ref)]


async def test_pages_of_the_largest_batch_go_both_ways(hub: Running) -> None:
    """2,000 entries each way in pages of 1,000 (each over 1 MB on the wire), through
    the real client and the hub's default limits: both logs match entry for entry and
    verify on both sides."""
    keys = hub.net.keys
    agent = await hub.agent("MN")
    assert hub.hub is not None
    mine = projects("MN", "MN", keys, 2 * MAX_BATCH)
    japan = projects("MN", "JP", keys, 2 * MAX_BATCH)
    await agent.logs("JP-MN").service.append(mine)
    await hub.hub.logs("JP-MN").service.append(japan)
    syncer = hub.syncer(agent, batch_size=MAX_BATCH)
    client = syncer.client
    pushes: list[tuple[int, int]] = []
    pages: list[tuple[int, int]] = []
    push, entries = client.push, client.entries

    async def counting_push(pid: str, node: str, req: PushRequest) -> PushResponse:
        pushes.append((len(req.entries), len(encoder.encode(req))))
        return await push(pid, node, req)

    async def counting_entries(pid: str, node: str, start: int, limit: int) -> EntriesPage:
        before = client.bytes_received
        page = await entries(pid, node, start, limit)
        pages.append((len(page.entries), client.bytes_received - before))
        return page

    client.push = counting_push  # type: ignore[method-assign]
    client.entries = counting_entries  # type: ignore[method-assign]

    assert await syncer.push() == 2 * MAX_BATCH
    assert await syncer.pull() == 2 * MAX_BATCH

    assert [n for n, _ in pushes] == [MAX_BATCH, MAX_BATCH]
    assert all(size > 1_000_000 for _, size in pushes), pushes
    assert [n for n, _ in pages] == [MAX_BATCH, MAX_BATCH]
    assert all(size > 1_000_000 for _, size in pages), pages
    assert await entries_of(hub.hub, "replica") == mine == await entries_of(agent, "own")
    assert await entries_of(agent, "replica") == japan == await entries_of(hub.hub, "own")
    for node in (agent, hub.hub):
        for ref in (node.logs("JP-MN").own, node.logs("JP-MN").replica):
            audit = await verify_log(node.store, ref)
            assert audit.ok, (node.id, ref.origin, audit.problems)
    held = await agent.store.latest_checkpoint(agent.logs("JP-MN").replica)
    assert held is not None
    assert held.size == 2 * MAX_BATCH


async def test_records_at_the_schema_limit_are_cut_into_batches_and_pages(
    tmp_path: Path,
) -> None:
    """Records with 4,000-character titles (about 20 KB on the wire each): 1,000 of them
    would be over 20 MB, past the hub's 8 MiB body limit. The agent cuts its push batches
    at ``schedule.batch_bytes`` and the hub its pages at ``server.max_page_bytes``, so
    every entry arrives without a 413 and without an answer over the client's limit."""
    settings = ServerSettings(run_jobs=False, max_page_bytes=2 << 20)
    async with witnessed_net(tmp_path, settings=settings) as running:
        keys, agent = running.net.keys, await running.agent("MN")
        assert running.hub is not None
        # three bytes each in UTF-8: about the largest title the schema allows
        big = projects("MN", "MN", keys, 500, title_chars=4000, text="配")
        japan = projects("MN", "JP", keys, 400, title_chars=4000, text="配")
        # in base64 on the wire, one batch of them would be refused (413)
        assert sum(4 * len(e) // 3 for e in big) > 8 << 20
        await agent.logs("JP-MN").service.append(big)
        await running.hub.logs("JP-MN").service.append(japan)
        syncer = running.syncer(agent, batch_size=MAX_BATCH)
        client = syncer.client
        client.max_response = 4 << 20  # a page must stay under this, whatever it holds
        sizes: list[int] = []
        push = client.push

        async def counting_push(pid: str, node: str, req: PushRequest) -> PushResponse:
            sizes.append(len(encoder.encode(req)))
            return await push(pid, node, req)

        client.push = counting_push  # type: ignore[method-assign]
        assert await syncer.push() == len(big)
        assert await syncer.pull() == len(japan)
        assert len(sizes) >= 3, sizes
        assert max(sizes) <= agent.cfg.schedule.batch_bytes, sizes
        assert await entries_of(running.hub, "replica") == big
        assert await entries_of(agent, "replica") == japan


async def test_an_answer_over_the_limit_is_a_transport_error_naming_it(hub: Running) -> None:
    """A page larger than the client's ``max_response``: a TransportError that names the
    limit and its setting, not a decode error of a partial body; nothing is appended."""
    assert hub.hub is not None
    await hub.hub.logs("JP-MN").service.append(projects("MN", "JP", hub.net.keys, 300))
    agent = await hub.agent("MN")
    syncer = hub.syncer(agent, batch_size=MAX_BATCH)
    syncer.client.max_response = 256 * 1024
    with pytest.raises(TransportError) as caught:
        await syncer.pull()
    message = str(caught.value)
    assert "262144" in message, message
    assert "hub.max_response_bytes" in message, message
    assert "malformed" not in message
    assert await entries_of(agent, "replica") == []


async def test_a_truncated_answer_is_a_transport_error(tmp_path: Path) -> None:
    """A server that announces 100,000 bytes, sends 1,000 and closes the connection:
    the client says the answer was cut short (a TransportError, not a decode error)."""
    served = asyncio.Event()

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + b'{"start": 0, "entries": ["' + b"A" * 974
        )
        await writer.drain()
        writer.close()
        served.set()

    server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HubClient(f"http://127.0.0.1:{port}", PrivateKey.generate())
    try:
        with pytest.raises(TransportError) as caught:
            await client.entries("JP-MN", "JP", 0, 1000)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert served.is_set()
    message = str(caught.value)
    assert "cut short" in message, message
    assert "malformed" not in message
