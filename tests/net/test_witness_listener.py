"""``net/witness_listener.py``: the agent's own C2SP tlog-witness endpoint for Japan's log,
a real listener on 127.0.0.1 (port 0) over the agent's SQLite store, called by the hub's
signed ``HubClient``.

Every status tlog-witness prescribes, the exact 409 ``text/x.tlog.size`` answer, the
hub's request checks (401 unsigned, 415, 403 for anyone but Japan), the atomic
compare-and-persist under concurrent requests, and the listener's start from
``[witness] listen``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core.cosignature import verify_cosignatures
from jcm_sync.core.note import add_signature_lines
from jcm_sync.core.witness_wire import WitnessRefusedError, format_add_checkpoint
from jcm_sync.errors import ConfigError, PeerRefusedError, TransportError
from jcm_sync.local.config import load_config, load_config_with_sources
from jcm_sync.net.client import HubClient
from jcm_sync.net.witness_listener import agent_witness_listener, listener_settings
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import fill_own_log, free_port, provision, signed_issuances
from jcm_sync.services.witness import cosigner_name, cosigner_verifiers, log_keys, node_witness
from tests.faults.harness import PYTHON
from tests.net.witness_agents import ADD, PID, Listening, open_listening


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Listening]:
    async with open_listening(tmp_path / "net") as p:
        yield p


def agent_keys(p: Listening) -> list:  # type: ignore[type-arg]
    root = p.hub.logs(PID).root
    return cosigner_verifiers(root, "jcm-sync.example", "MN", p.hub.clock())


async def raw_post(c: HubClient, path: str, body: bytes, kind: str) -> tuple[int, str, bytes]:
    async with c._sess().post(c.base_url + path, data=body, headers={"Content-Type": kind}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_every_spec_status_on_the_agents_endpoint(pair: Listening) -> None:
    size = await pair.append_japan(40)
    client = pair.client()
    first = await pair.japan_body(0, 20)
    # 200: cosignature lines by the agent's witness key, over Japan's checkpoint
    answer = await client.add_checkpoint(PID, first)
    note = first.split(b"\n\n", 1)[1]
    cosigs = verify_cosignatures(note + answer, agent_keys(pair))
    assert [c.name for c in cosigs] == [cosigner_name("jcm-sync.example", "MN")]
    held = await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin)
    assert held is not None
    assert held.size == 20
    # 409, exactly as the spec says, and as the client reads it
    status, kind, body = await raw_post(client, ADD, first, "text/plain; charset=utf-8")
    assert (status, kind, body) == (409, "text/x.tlog.size", b"20\n")
    with pytest.raises(WitnessRefusedError) as conflict:
        await client.add_checkpoint(PID, await pair.japan_body(10, size))
    assert conflict.value.witness_size == 20
    # 400, 404, 403, 422 as the hub's problem+json, with the spec's status
    mn_note = (await pair.agent.logs(PID).service.sign_checkpoint()).note
    forged = mn_note.replace(b"/MN\n", b"/JP\n", 1)  # Japan's origin, MN's key
    good = await pair.japan_body(20, size)
    bad_proof = good.replace(good.split(b"\n")[1], b"A" * 43 + b"=", 1)
    cases = [
        (format_add_checkpoint(size + 1, [], note), 400, "bad-add-checkpoint"),
        (b"old 01\n\n" + note, 400, "bad-add-checkpoint"),
        (format_add_checkpoint(0, [], mn_note), 404, "unknown-log"),  # its own log
        (format_add_checkpoint(0, [], forged), 403, "untrusted-checkpoint"),
        (bad_proof, 422, "bad-consistency-proof"),
        (format_add_checkpoint(20, [b"\x00" * 32], note), 422, "bad-consistency-proof"),
    ]
    for request, want, code in cases:
        with pytest.raises(PeerRefusedError) as refused:
            await client.add_checkpoint(PID, request)
        got = refused.value.problem
        assert (got.status, got.code) == (want, code), request[:60]
        assert got.request_id  # the hub's problem details, with the request id
    # another partnership: 403 before the body is judged
    with pytest.raises(PeerRefusedError) as other:
        await client.add_checkpoint("JP-ID", good)
    assert other.value.problem.status == 403
    # no refused request moved the witnessed size; the good one does
    held = await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin)
    assert held is not None
    assert held.size == 20
    assert verify_cosignatures(
        good.split(b"\n\n", 1)[1] + await client.add_checkpoint(PID, good), agent_keys(pair)
    )
    held = await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin)
    assert held is not None
    assert held.size == size


async def test_requests_are_checked_as_the_hubs(pair: Listening) -> None:
    await pair.append_japan(5)
    body = await pair.japan_body(0, 5)
    # a plain C2SP witness client (no RFC 9421 signature): 401, as on the hub (ADR 0032)
    async with (
        aiohttp.ClientSession() as http,
        http.post(pair.url + ADD, data=body, headers={"Content-Type": "text/plain"}) as r,
    ):
        assert r.status == 401
        assert r.content_type == "application/problem+json"
        assert r.headers["X-Request-Id"]
    # JSON is not the spec's body: 415 before anything is judged
    client = pair.client()
    status, _, _ = await raw_post(client, ADD, b"{}", "application/json")
    assert status == 415
    # the agent's own transport key is a member's, but only Japan may ask: 403
    own = pair.client(pair.agent.keys.transport)
    with pytest.raises(PeerRefusedError) as forbidden:
        await own.add_checkpoint(PID, body)
    assert (forbidden.value.problem.status, forbidden.value.problem.code) == (403, "forbidden")
    # nothing else is served (signed or not); /livez is
    async with client._sess().get(pair.url + f"/v1/partnerships/{PID}/state") as r:
        assert (r.status, (await r.json())["code"]) == (404, "not-found")
    async with aiohttp.ClientSession() as http, http.get(pair.url + "/livez") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    assert await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin) is None


async def test_concurrent_submissions_one_is_cosigned(pair: Listening) -> None:
    """Six requests from the same held size, for six sizes, at once: one 200, the others
    409 with the winner's size (tlog-witness's compare-and-persist, on the agent)."""
    await pair.append_japan(30)
    client = pair.client()
    await client.add_checkpoint(PID, await pair.japan_body(0, 4))
    bodies = [await pair.japan_body(4, n) for n in range(10, 16)]
    results = await asyncio.gather(
        *(client.add_checkpoint(PID, b) for b in bodies), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if isinstance(r, bytes)]
    assert len(winners) == 1, results
    size = 10 + winners[0]
    losers = [r for i, r in enumerate(results) if i != winners[0]]
    assert all(isinstance(r, WitnessRefusedError) and r.witness_size == size for r in losers)
    held = await pair.agent.store.witnessed(pair.hub.logs(PID).own.origin)
    assert held is not None
    assert held.size == size


async def test_listener_starts_from_its_configuration(tmp_path: Path) -> None:
    async with open_listening(tmp_path / "net") as p:
        path = p.running.net.configs["MN"]
        # absent: no listener
        async with agent_witness_listener(p.agent) as url:
            assert url is None
        node = await open_node(load_config(path, env={"JCM_SYNC_WITNESS_LISTEN": "127.0.0.1:0"}))
        try:
            assert listener_settings(node).host == "127.0.0.1"
            async with (
                agent_witness_listener(node) as url,
                aiohttp.ClientSession() as http,
            ):
                assert url is not None
                async with http.get(url + "/livez") as r:
                    assert r.status == 200
            with socket.socket() as taken:  # a port in use: a clear refusal
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                port = taken.getsockname()[1]
                env = {"JCM_SYNC_WITNESS_LISTEN": f"127.0.0.1:{port}"}
                busy = await open_node(load_config(path, env=env))
                try:
                    with pytest.raises(TransportError, match="already in use"):
                        async with agent_witness_listener(busy):
                            pass
                finally:
                    await busy.close()
        finally:
            await node.close()
        # a malformed address and the wrong role are refused at load
        with pytest.raises(ConfigError, match="host:port"):
            load_config(path, env={"JCM_SYNC_WITNESS_LISTEN": "8702"})
        hub_path = p.running.net.configs["JP"]
        with pytest.raises(ConfigError, match="agent's"):
            load_config(hub_path, env={"JCM_SYNC_WITNESS_LISTEN": "127.0.0.1:8702"})
        assert load_config_with_sources(hub_path, env={}).config.partnerships[0].witness_url


async def test_agent_run_serves_the_listener(tmp_path: Path) -> None:
    """``jcm-sync agent run`` with ``[witness] listen`` (provisioned) serves
    the endpoint beside its jobs, says so in a ``witness-listening`` event, and the hub's
    signed request is cosigned by the running agent; SIGTERM stops it cleanly."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port(), cosign=True, witness=("MN",))
    argv = [*PYTHON, "agent", "run", "--config", str(net.configs["MN"]), "--log-format", "json"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    hub = await open_node(load_config(net.configs["JP"], env={}))
    url = hub.cfg.partnerships[0].witness_url  # provisioned: the hub knows the listener
    try:
        assert proc.stderr is not None
        events: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while not any(e.get("event") == "witness-listening" for e in events):
            assert time.monotonic() < deadline, events
            line = await asyncio.to_thread(proc.stderr.readline)
            assert line, f"agent exited {proc.poll()}: {events}"
            events.append(json.loads(line))
        assert url == f"http://{load_config(net.configs['MN'], env={}).witness.listen}"
        assert [e["witness_address"] for e in events if "witness_address" in e] == [url]
        envs, checked = signed_issuances(PID, "JP", net.keys["JP"], 5, datetime.now(UTC))
        await fill_own_log(hub, PID, envs, checked)
        note = (await hub.logs(PID).service.sign_checkpoint()).note
        async with HubClient(url, hub.keys.transport) as client:
            answer = await client.add_checkpoint(PID, format_add_checkpoint(0, [], note))
        root = hub.logs(PID).root
        mn = cosigner_verifiers(root, "jcm-sync.example", "MN", hub.clock())
        assert [c.name for c in verify_cosignatures(note + answer, mn)] == [
            cosigner_name("jcm-sync.example", "MN")
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        if proc.stderr is not None:
            proc.stderr.close()
        await hub.close()
    assert code == 0


async def test_the_agent_takes_delivered_cosignatures_of_its_own_log(pair: Listening) -> None:
    """The hub's cosignatures route, mounted on the agent too: Japan's verified cosignature
    of the agent's checkpoint is kept with it; one of another log is refused."""
    envs, checked = signed_issuances(PID, "MN", pair.running.net.keys["MN"], 6, datetime.now(UTC))
    await fill_own_log(pair.agent, PID, envs, checked)
    cp = await pair.agent.logs(PID).service.sign_checkpoint()
    mn_log = pair.hub.logs(PID).replica
    verifiers = {mn_log.origin: log_keys(pair.hub.logs(PID).root, mn_log, pair.hub.clock())}
    _, lines = await node_witness(pair.hub).add_checkpoint(
        format_add_checkpoint(0, [], cp.note), verifiers
    )
    client = pair.client()
    view = await client.deliver_cosignatures(PID, "MN", add_signature_lines(cp.note, lines))
    assert (view.size, view.cosignatures) == (cp.size, 1)
    own = pair.agent.logs(PID).own
    assert await pair.agent.store.cosigned_size(own) == cp.size
    with pytest.raises(PeerRefusedError) as refused:  # Japan's log is not the agent's own
        await client.deliver_cosignatures(PID, "JP", add_signature_lines(cp.note, lines))
    assert refused.value.problem.status == 403
