"""Slow and idle clients are closed within the hub's timeouts, and too many
unauthenticated connections from one address are refused, while signed requests from
a real ``HubClient`` are served meanwhile (``net/guard.py``, ADR 0016). The clients
are raw sockets on 127.0.0.1; the timeouts are short so the test is quick, and the
margins allow for a loaded 2-core machine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.net.client import HubClient
from jcm_sync.net.server import ServerSettings
from jcm_sync.net.signing import RequestSigner
from jcm_sync.services.sample import free_port, provision
from tests.exchange.conftest import Running

HEAD_S, BODY_S, IDLE_S = 1.5, 2.0, 2.5
#: how late a close may come on a loaded machine
MARGIN_S = 3.0
PROBLEM = "application/problem+json"


async def hub_with(tmp_path: Path, **settings: object) -> Running:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    s = ServerSettings(run_jobs=False, **settings)  # type: ignore[arg-type]
    running = Running(net, s, None)
    await running.start_hub()
    return running


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Running]:
    running = await hub_with(
        tmp_path,
        header_timeout_seconds=HEAD_S,
        body_timeout_seconds=BODY_S,
        keepalive_timeout_seconds=IDLE_S,
    )
    try:
        yield running
    finally:
        await running.close()


def refused(hub: Running, reason: str) -> float:
    assert hub.hub is not None
    value = hub.hub.metrics.registry.get_sample_value(
        "jcm_sync_http_refused_total", {"reason": reason}
    )
    return value or 0.0


async def read_until_closed(reader: asyncio.StreamReader, limit_s: float) -> bytes:
    chunks = []
    try:
        async with asyncio.timeout(limit_s):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def problem_of(answer: bytes) -> tuple[int, str, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    status = int(lines[0].split()[1])
    length = int(headers.get("content-length", len(body)))
    return status, headers.get("content-type", ""), json.loads(body[:length]) if body else {}


class Slow:
    """One raw connection: what it does, when it was closed and what it was answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answer = b""
        self.elapsed = 0.0

    async def run(self, opening: bytes, trickle: bytes = b"", *, idle_after_answer: bool = False,
                  ) -> None:  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        started = time.monotonic()
        writer.write(opening)
        await writer.drain()
        if idle_after_answer:  # wait for the answer, then stay idle on the connection
            self.answer = await reader.readuntil(b"\r\n\r\n")
            started = time.monotonic()
        dripping = asyncio.create_task(self._drip(writer, trickle)) if trickle else None
        try:
            self.answer += await read_until_closed(reader, max(HEAD_S, BODY_S, IDLE_S) + 20)
        finally:
            self.elapsed = time.monotonic() - started
            if dripping is not None:
                dripping.cancel()
            writer.close()

    @staticmethod
    async def _drip(writer: asyncio.StreamWriter, trickle: bytes) -> None:
        try:
            while True:  # one byte every 0.2 s: far slower than any real client
                for b in trickle:
                    await asyncio.sleep(0.2)
                    writer.write(bytes([b]))
                    await writer.drain()
        except ConnectionError:
            pass


async def test_slow_clients_are_closed_while_signed_requests_are_served(hub: Running) -> None:
    agent = await hub.agent("MN")
    client = HubClient(hub.url, agent.keys.transport)  # type: ignore[arg-type]
    hub.clients.append(client)
    served: list[float] = []
    baseline: list[float] = []

    async def signed_requests(stop: asyncio.Event, served: list[float]) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            state = await client.state("JP-MN")
            served.append(time.monotonic() - t0)
            assert state.partnership == "JP-MN"
            await asyncio.sleep(0.1)

    trickler = Slow(hub.port)  # a head that never ends: rule 1
    withholder = Slow(hub.port)  # announces 8,000,000 bytes, sends 1,000: rule 2
    idler = Slow(hub.port)  # one request, then idle on the keep-alive connection: rule 3
    silent = Slow(hub.port)  # opens a connection and sends nothing: rule 1
    signed = Slow(hub.port)  # a signed push that sends 1,000 of its 100,000 bytes: rule 2
    push = "/v1/partnerships/JP-MN/logs/MN/entries"
    body = b"[" * 100_000
    headers = {"Host": f"127.0.0.1:{hub.port}", "Content-Type": "application/json",
               "Content-Length": str(len(body))}  # fmt: skip
    RequestSigner(agent.keys.transport).sign("POST", hub.url + push, headers, body)  # type: ignore[arg-type]
    signed_head = f"POST {push} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    before = {r: refused(hub, r) for r in ("header-timeout", "body-timeout")}
    # the same signed requests for a second without slow clients: the baseline
    stop = asyncio.Event()
    requests = asyncio.create_task(signed_requests(stop, baseline))
    await asyncio.sleep(1.0)
    stop.set()
    await requests
    stop = asyncio.Event()
    requests = asyncio.create_task(signed_requests(stop, served))
    await asyncio.gather(
        trickler.run(b"GET /livez HTTP/1.1\r\nHost: h\r\n", b"X-Slow: 1\r\n"),
        withholder.run(
            f"POST {push} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            "Content-Length: 8000000\r\n\r\n".encode()
            + b"{" * 1000
        ),
        idler.run(b"GET /livez HTTP/1.1\r\nHost: h\r\n\r\n", idle_after_answer=True),
        silent.run(b""),
        signed.run(signed_head.encode() + b"\r\n" + body[:1000]),
    )
    stop.set()
    await requests

    print(  # the figures ADR 0016 quotes
        f"slow clients closed after (s): trickled head {trickler.elapsed:.2f} and silent "
        f"{silent.elapsed:.2f} (head timeout {HEAD_S}), withheld unsigned body "
        f"{withholder.elapsed:.2f} and signed body {signed.elapsed:.2f} (body timeout "
        f"{BODY_S}), idle {idler.elapsed:.2f} (keep-alive {IDLE_S}); meanwhile {len(served)} "
        f"signed requests served, slowest {max(served):.3f} s, median "
        f"{sorted(served)[len(served) // 2]:.3f} s (without slow clients, same run: slowest "
        f"{max(baseline):.3f} s, median {sorted(baseline)[len(baseline) // 2]:.3f} s)"
    )
    for who, limit in ((trickler, HEAD_S), (silent, HEAD_S), (withholder, BODY_S),
                       (signed, BODY_S), (idler, IDLE_S)):  # fmt: skip
        # not before the timeout (less the two ends' clocks and loop turns), nor long after
        assert limit - 0.5 <= who.elapsed <= limit + MARGIN_S, (who.answer[:200], who.elapsed)
    for who, code in ((trickler, "header-timeout"), (silent, "header-timeout"),
                      (signed, "body-timeout")):  # fmt: skip
        status, ctype, problem = problem_of(who.answer)
        assert (status, ctype) == (408, PROBLEM), who.answer[:300]
        assert problem["type"] == "urn:jcm-sync:problem:" + code
    # the withheld body: refused 401 from its head alone (the signature is checked before
    # the body is read), else 408 when its body's deadline passed; closed either way
    status, ctype, problem = problem_of(withholder.answer)
    assert status in (401, 408), withholder.answer[:300]
    assert ctype == PROBLEM, withholder.answer[:300]
    assert idler.answer.startswith(b"HTTP/1.1 200 ")
    assert refused(hub, "header-timeout") == before["header-timeout"] + 2
    assert refused(hub, "body-timeout") >= before["body-timeout"] + 1
    # signed requests kept being served the whole time, and quickly
    assert len(served) >= 5, served
    assert max(served) < 2.0, served
    assert hub.server is not None
    assert not hub.server.guard.unauthenticated


async def test_too_many_unauthenticated_connections_from_one_address(tmp_path: Path) -> None:
    hub = await hub_with(tmp_path, header_timeout_seconds=3.0, max_unauthenticated_per_address=3)
    try:
        agent = await hub.agent("MN")
        client = HubClient(hub.url, agent.keys.transport)  # type: ignore[arg-type]
        hub.clients.append(client)
        await client.state("JP-MN")  # its connection is authenticated: it does not count
        assert hub.server is not None
        assert not hub.server.guard.unauthenticated
        held = [await asyncio.open_connection("127.0.0.1", hub.port) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert hub.server.guard.unauthenticated == {"127.0.0.1": 3}
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        answer = await read_until_closed(reader, 5)
        writer.close()
        assert time.monotonic() - t0 < 2.0  # at once, not at the head timeout
        status, ctype, problem = problem_of(answer)
        assert (status, ctype) == (503, PROBLEM), answer[:300]
        assert problem["type"] == "urn:jcm-sync:problem:too-many-connections"
        assert b"\r\nRetry-After: 1\r\n" in answer
        assert refused(hub, "too-many-connections") == 1
        # the authenticated client is still served over its own connection
        assert (await client.state("JP-MN")).partnership == "JP-MN"
        # once the held connections are closed by the head timeout, a new one is admitted
        for r, _ in held:
            assert (await read_until_closed(r, 3.0 + MARGIN_S)).startswith(b"HTTP/1.1 408 ")
        for _, w in held:
            w.close()
        assert not hub.server.guard.unauthenticated
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert (await read_until_closed(reader, 5)).startswith(b"HTTP/1.1 200 ")
        writer.close()
    finally:
        await hub.close()


async def test_registry_serve_applies_the_configured_defences(tmp_path: Path) -> None:
    """``jcm-sync registry serve`` runs the hub with the guard and ``[server]``'s keys
    (here set by environment variables): a silent connection is answered 408 after the
    head timeout, and a third unauthenticated connection from one address 503."""
    port = free_port()
    net = provision(tmp_path / "net", ["MN"], hub_port=port)
    env = {
        **os.environ,
        "JCM_SYNC_SERVER_HEADER_TIMEOUT_SECONDS": str(HEAD_S),
        "JCM_SYNC_SERVER_MAX_UNAUTHENTICATED_PER_ADDRESS": "2",
    }
    cmd = [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config"]
    hub = subprocess.Popen([*cmd, str(net.configs["JP"])], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                assert hub.poll() is None, hub.stderr.read().decode() if hub.stderr else ""
                assert time.monotonic() < deadline, "the hub did not start"
                await asyncio.sleep(0.2)
        t0 = time.monotonic()
        second = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.2)
        third = await asyncio.open_connection("127.0.0.1", port)
        refused_answer = await read_until_closed(third[0], 5)
        third[1].close()
        status, ctype, problem = problem_of(refused_answer)
        assert (status, ctype) == (503, PROBLEM), refused_answer[:300]
        assert problem["type"] == "urn:jcm-sync:problem:too-many-connections"
        answer = await read_until_closed(reader, HEAD_S + MARGIN_S + 1)
        elapsed = time.monotonic() - t0
        writer.close()
        second[1].close()
        status, ctype, problem = problem_of(answer)
        assert (status, ctype) == (408, PROBLEM), answer[:300]
        assert problem["type"] == "urn:jcm-sync:problem:header-timeout"
        assert elapsed <= HEAD_S + MARGIN_S, elapsed
    finally:
        hub.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(hub.wait, 30)
        assert hub.stderr is not None
        stderr = hub.stderr.read().decode()
        hub.stderr.close()
        assert code == 0, stderr
