"""What one anti-entropy pass costs when both logs of a partnership are in sync.

For each N (default 10^3 and 10^5 entries per log), a hub (aiohttp, in this process,
127.0.0.1) and one partner agent, both on SQLite, hold the same two logs of N signed
records each: the partner's own log and the hub's replica of it, Japan's own log and
the agent's replica of it, with each side's latest checkpoint of the other's log (the
set-up appends through the store's bulk path and is not measured). Then the agent runs
``Syncer.anti_entropy()`` a few times and we count round trips (HTTP requests) and
bytes: the bodies (``HubClient.bytes_sent`` + ``bytes_received``) and everything on
the wire, headers included, through a counting TCP proxy in front of the hub.

The baseline is a naive full listing: the bytes of every entry of both logs, which a
comparison without Merkle trees would have to move. Targets: 1 round trip and at most
1 KB per log on the wire, whatever N. Informational: the script always exits 0.

    python bench/anti_entropy.py [--sizes 1000,100000] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from ingest import fill_own_log, issuances

from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import HubServer, ServerSettings
from jcm_sync.services.agent import Syncer
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import provision

PARTNER = "MN"
LOGS = 2
TARGET_TRIPS = 1
TARGET_BYTES_PER_LOG = 1024


class CountingProxy:
    """A TCP relay on 127.0.0.1 that counts the bytes going each way."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.up = 0
        self.down = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@dataclass
class Row:
    n: int
    trips: int
    wire: int
    body: int
    listing: int
    setup: float


async def in_sync_pair(tmp: Path, n: int) -> tuple[Node, Node, int]:
    """A hub node and an agent node whose two logs of ``n`` entries agree; listing bytes."""
    net = provision(tmp / "net", [PARTNER], hub_port=0)
    pid = f"JP-{PARTNER}"
    created = datetime.now(UTC) - timedelta(hours=1)
    hub = await open_node(load_config(net.configs["JP"], env={}))
    agent = await open_node(load_config(net.configs[PARTNER], env={}))
    listing = 0
    for author, own, other in ((PARTNER, agent, hub), ("JP", hub, agent)):
        envs, checked = issuances(pid, author, net.keys[author], n, created)
        listing += sum(map(len, envs))
        await fill_own_log(own, pid, envs, checked)
        replica = other.logs(pid).replica
        for i in range(0, n, 10_000):
            await other.store.append_entries(replica, i, envs[i : i + 10_000], checked.__getitem__)
        cp = await own.logs(pid).service.sign_checkpoint()
        await other.store.put_checkpoint(replica, cp.note)
    return hub, agent, listing


async def measure(n: int, repeat: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        t = time.perf_counter()
        hub, agent, listing = await in_sync_pair(Path(tmp), n)
        setup = time.perf_counter() - t
        # the agent signs the proxy's URL, so that is the hub's public origin (ADR 0015)
        proxy = CountingProxy(0)
        port = await proxy.start()
        settings = ServerSettings(public_origin=f"http://127.0.0.1:{port}")
        runner = HubServer(Hub(hub), settings).runner()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        proxy.port = runner.addresses[0][1]
        client = HubClient(f"http://127.0.0.1:{port}", agent.keys.transport)
        try:
            syncer = Syncer(agent, client, f"JP-{PARTNER}")
            # one pass first: it also witnesses both logs (ADR 0032), which the pair built
            # by direct appends lacks; the measured passes are the steady state
            await syncer.anti_entropy()
            trips = wire = body = 0
            for _ in range(repeat):
                up, down = proxy.up, proxy.down
                sent, received = client.bytes_sent, client.bytes_received
                result = await syncer.anti_entropy()
                await asyncio.sleep(0.01)  # let the proxy relay the last bytes
                if not result.in_sync or result.pushed or result.pulled:
                    raise RuntimeError(f"the logs of size {n} were not found in sync: {result}")
                trips = max(trips, result.round_trips)
                wire = max(wire, proxy.up - up + proxy.down - down)
                body = max(body, client.bytes_sent - sent + client.bytes_received - received)
        finally:
            await client.close()
            await proxy.close()
            await runner.cleanup()  # closes the hub's store
            await agent.close()
    return Row(n, trips, wire, body, listing, setup)


async def run(sizes: list[int], repeat: int) -> list[Row]:
    rows = []
    for n in sizes:
        row = await measure(n, repeat)
        print(f"  N = {n:,}: set-up {row.setup:.1f} s", file=sys.stderr)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="entries per log, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="passes measured; the largest counts")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        parser.error("--sizes must list positive sizes, --repeat must be positive")
    rows = asyncio.run(run(sizes, args.repeat))

    print(f"anti-entropy, both logs in sync (hub and agent on SQLite, 127.0.0.1); largest of "
          f"{args.repeat} passes; wire = requests and responses, headers included")  # fmt: skip
    print(f"{'N/log':>9} {'trips':>5} {'wire B':>7} {'body B':>7} {'wire B/log':>10} "
          f"{'listing B':>12} {'listing/wire':>12}  target")  # fmt: skip
    for r in rows:
        per_log = r.wire / LOGS
        ok = r.trips <= TARGET_TRIPS and per_log <= TARGET_BYTES_PER_LOG
        print(f"{r.n:9,} {r.trips:5} {r.wire:7,} {r.body:7,} {per_log:10,.0f} {r.listing:12,} "
              f"{r.listing / r.wire:11,.0f}x  {TARGET_TRIPS} trip, <= {TARGET_BYTES_PER_LOG} "
              f"B/log: {'ok' if ok else 'MISS'}")  # fmt: skip
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        print(f"growth from N = {lo.n:,} to {hi.n:,}: wire bytes x{hi.wire / lo.wire:.2f}, "
              f"listing x{hi.listing / lo.listing:,.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
