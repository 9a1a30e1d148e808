"""The 31-partner fan-in over HTTP (ADR 0039): every partner pushes two batches of 50 at
once to a real hub (aiohttp on 127.0.0.1, SQLite), the hub's verify pool gathers them
into shared dispatches over its workers, each push is answered for itself (a bad
signature in one partner's batch refuses that batch only, by its own reason), and the
hub answers ``/livez`` promptly throughout."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core.envelope import AnyPrivateKey
from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import JcmSyncError
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.sample import PARTNERS, provision, signed_issuances
from tests.exchange.conftest import Running

BATCH = 50
MAX_LIVEZ_SECONDS = 1.0
SPOILED = "KE"


@pytest.fixture
async def fan_in(tmp_path: Path) -> AsyncIterator[Running]:
    net = provision(tmp_path / "net", list(PARTNERS), hub_port=0)
    # the 31 partners connect from one address here, not from 31 as they would for real
    running = Running(net, ServerSettings(max_unauthenticated_per_address=64), None)
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()


def spoil(raw: bytes) -> bytes:
    """The envelope with one bit of its signature flipped (still well-formed)."""
    doc = json.loads(raw)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[0] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


async def test_31_partners_at_once_are_coalesced_answered_each_and_livez_stays_prompt(
    fan_in: Running,
) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    pushes: list[tuple[str, PushRequest]] = []
    transport: dict[str, AnyPrivateKey] = {}
    for cc in PARTNERS:
        pid = f"JP-{cc}"
        envs, _ = signed_issuances(pid, cc, fan_in.net.keys[cc], 2 * BATCH, created)
        if cc == SPOILED:
            envs[BATCH + 7] = spoil(envs[BATCH + 7])
        transport[cc] = (await fan_in.agent(cc)).keys.transport
        for start in (0, BATCH):
            pushes.append((cc, PushRequest(start=start, entries=envs[start : start + BATCH])))

    assert fan_in.server is not None
    pool = fan_in.server.hub.pool
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll_livez() -> None:
        async with aiohttp.ClientSession() as session:
            while not done.is_set():
                t = time.perf_counter()
                async with session.get(f"{fan_in.url}/livez") as r:
                    assert r.status == 200
                latencies.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)

    async def push_all() -> list[object]:
        clients = {cc: HubClient(fan_in.url, key) for cc, key in transport.items()}

        async def push(cc: str, req: PushRequest) -> object:
            try:
                return await clients[cc].push(f"JP-{cc}", cc, req)
            except JcmSyncError as exc:
                return exc

        try:
            return await asyncio.gather(*(push(*p) for p in pushes))
        finally:
            for client in clients.values():
                await client.close()

    # The partners sign and send from a thread with its own event loop, as they would from
    # their own machines: the hub's loop (this one) then does only the hub's work, so a slow
    # /livez is the hub's, not the clients' signing and encoding done on the hub's loop.
    poller = asyncio.ensure_future(poll_livez())
    try:
        answers = await asyncio.to_thread(asyncio.run, push_all())
    finally:
        done.set()
        await poller

    for (cc, req), answer in zip(pushes, answers, strict=True):
        if cc == SPOILED and req.start == BATCH:
            assert isinstance(answer, JcmSyncError), answer
            assert answer.code == "bad-signature"
            assert answer.where == "signatures[0]"
        else:
            assert not isinstance(answer, Exception), (cc, req.start, answer)
    hub = fan_in.hub
    assert hub is not None
    for cc in PARTNERS:
        size = (await hub.store.tree_head(hub.log_ref(f"JP-{cc}", cc))).size
        assert size == (BATCH if cc == SPOILED else 2 * BATCH), cc
    # the pushes were gathered: far fewer dispatches than pushes, and nearly every record
    # went to the workers; a push that found nothing waiting and nothing in flight (the
    # first to arrive, as a rule) was verified in-process, as verify-pool rule 3 says
    total = len(PARTNERS) * 2 * BATCH
    assert pool.pooled_records + pool.inline_records == total
    assert pool.pooled_records * 10 >= total * 9, (pool.pooled_records, pool.inline_records)
    assert pool.dispatches <= len(pushes) // 2, pool.dispatches
    assert latencies
    assert max(latencies) < MAX_LIVEZ_SECONDS, f"/livez took {max(latencies):.2f} s"
