"""Fan-in at the hub: all 31 partner agents push at once; is anyone starved?

The hub runs in its own process (``python -m jcm_sync registry serve``, SQLite, a free
port on 127.0.0.1) with the 31 real JCM partnerships of ``jcm_sync.services.sample.PARTNERS``.
The 31 agents (SQLite each) run in this process as asyncio tasks, each with its own
signed HTTP session, and each holds ``--records`` signed issuance records to push in
requests of ``--batch`` entries. Every HTTP push request is timed.

Baseline, measured in the same run: the same agents push the same amount one after
another (each alone with the hub). Then every agent appends as many records again and
all push at once. Reported: p50 and p99 push latency, alone and under fan-in, overall
and per agent; total throughput of both phases; and starvation: every agent completes,
the spread of completion times (max / min) and the slowest agent's throughput against
the mean. A fair hub serves the 31 in turn, so under fan-in a request waits for about
one request of each other agent: latency grows about 31-fold, throughput does not fall,
and every agent finishes at about the same time. Bounded by ``--timeout``; the script
always exits 0.

    python bench/fanout.py [--records R] [--batch B] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest import HubProcess, fill_own_log, free_port, issuances

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import Verification
from jcm_sync.core.wire import PushRequest, PushResponse
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.services.agent import Syncer
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import PARTNERS, provision

STARVED_BELOW = 0.5
"""An agent whose throughput is under half the mean counts as starved."""


class TimedClient(HubClient):
    """A ``HubClient`` that times every push request."""

    def __init__(self, base_url: str, transport_key: PrivateKey) -> None:
        super().__init__(base_url, transport_key, timeout=120)
        self.latencies: list[float] = []

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        t = time.perf_counter()
        try:
            return await super().push(pid, node, req)
        finally:
            self.latencies.append(time.perf_counter() - t)


@dataclass
class Agent:
    cc: str
    node: Node
    client: TimedClient
    syncer: Syncer
    later: list[bytes]
    checked: dict[bytes, Verification]
    solo: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    solo_seconds: float = 0.0
    done_at: float | None = None


@dataclass
class Result:
    agents: list[Agent]
    records: int
    sequential: float
    makespan: float


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


async def push_all(agents: list[Agent], records: int, timeout: float) -> float:
    """All agents push at once; returns the time until the last one is done."""
    start = time.perf_counter()

    async def one(a: Agent) -> None:
        pushed = await a.syncer.push()
        if pushed != records:
            raise RuntimeError(f"{a.cc} pushed {pushed} records, not {records}")
        a.done_at = time.perf_counter() - start

    results = await asyncio.wait_for(
        asyncio.gather(*(one(a) for a in agents), return_exceptions=True), timeout
    )
    for a, r in zip(agents, results, strict=True):
        if isinstance(r, BaseException):
            print(f"  {a.cc} failed: {r}", file=sys.stderr)
    return time.perf_counter() - start


async def run(args: argparse.Namespace, tmp: Path) -> Result:
    partners = list(PARTNERS)[: args.agents]
    net = provision(tmp / "net", partners, hub_port=free_port())
    created = datetime.now(UTC) - timedelta(hours=1)
    agents: list[Agent] = []
    t = time.perf_counter()
    try:
        for cc in partners:
            pid = f"JP-{cc}"
            envs, checked = issuances(pid, cc, net.keys[cc], 2 * args.records, created)
            node = await open_node(load_config(net.configs[cc], env={}))
            client = TimedClient(net.hub_url, node.keys.transport)
            syncer = Syncer(node, client, pid, batch_size=args.batch)
            agents.append(Agent(cc, node, client, syncer, envs[args.records :], checked))
            await fill_own_log(node, pid, envs[: args.records], checked)
        print(f"set-up: {len(agents)} agents with {args.records} records each in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)  # fmt: skip
        hub = HubProcess(net.configs["JP"], net.hub_url, tmp / "hub.log")
        hub.start()
        try:
            await hub.wait_ready()
            # baseline: one agent at a time
            seq_start = time.perf_counter()
            for a in agents:
                t = time.perf_counter()
                await asyncio.wait_for(a.syncer.push(), args.timeout)
                a.solo_seconds = time.perf_counter() - t
                a.solo, a.client.latencies = a.client.latencies, []
            sequential = time.perf_counter() - seq_start
            for a in agents:
                await fill_own_log(a.node, a.syncer.partnership, a.later, a.checked)
            # fan-in: everyone at once
            makespan = await push_all(agents, args.records, args.timeout)
            for a in agents:
                a.busy = a.client.latencies
        finally:
            hub.stop()
    finally:
        for a in agents:
            await a.client.close()
            await a.node.close()
    return Result(agents, args.records, sequential, makespan)


def report(res: Result, batch: int) -> None:
    agents = res.agents
    n = len(agents)
    solo = [x for a in agents for x in a.solo]
    busy = [x for a in agents for x in a.busy]
    done = [a for a in agents if a.done_at is not None]
    print(f"fan-in: {n} agents x {res.records} records in pushes of <= {batch} to one hub "
          f"(own process, SQLite, 127.0.0.1)\nbaseline: the same agents one at a time")  # fmt: skip
    print(f"{'push latency (ms)':22} {'alone':>8} {'fan-in':>8} {'ratio':>7}  expected ~{n}x "
          "(one request of each other agent ahead)")  # fmt: skip
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        alone, under_load = pct(solo, q), pct(busy, q)
        print(f"{name:22} {ms(alone)} {ms(under_load)} {under_load / alone:7.1f}")
    total = n * res.records
    seq_rate, fan_rate = total / res.sequential, total / max(res.makespan, 1e-9)
    print(f"{'throughput (records/s)':22} {seq_rate:8,.0f} {fan_rate:8,.0f} "
          f"{fan_rate / seq_rate:7.2f}  target >= 0.9")  # fmt: skip

    print(f"\nstarvation: {len(done)}/{n} agents completed", end="")
    if done:
        times = [a.done_at for a in done if a.done_at is not None]
        rates = [res.records / t for t in times]
        mean = statistics.fmean(rates)
        spread = max(times) / min(times)
        ok = len(done) == n and min(rates) / mean >= STARVED_BELOW
        print(f"; completion min {min(times):.2f} s, median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s (max/min {spread:.2f}); slowest agent "
              f"{min(rates):,.0f} records/s vs mean {mean:,.0f} "
              f"(ratio {min(rates) / mean:.2f}, target >= {STARVED_BELOW}): "
              f"{'no partner starved' if ok else 'STARVED'}")  # fmt: skip
    else:
        print()

    print(f"\n{'agent':6} {'reqs':>4} {'alone p50':>9} {'p99':>8} {'fan-in p50':>10} {'p99':>8} "
          f"{'alone s':>7} {'fan-in s':>8} {'rec/s':>7}")  # fmt: skip
    for a in sorted(agents, key=lambda a: a.done_at if a.done_at is not None else 1e9):
        fin = f"{a.done_at:8.2f}" if a.done_at is not None else "  failed"
        rate = f"{res.records / a.done_at:7,.0f}" if a.done_at else "      -"
        print(f"{a.cc:6} {len(a.busy):4} {ms(pct(a.solo, 0.5)):>9} {ms(pct(a.solo, 0.99))} "
              f"{ms(pct(a.busy, 0.5)):>10} {ms(pct(a.busy, 0.99))} {a.solo_seconds:7.2f} "
              f"{fin} {rate}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500, help="records per agent per phase")
    parser.add_argument("--batch", type=int, default=50, help="entries per push request")
    parser.add_argument("--agents", type=int, default=len(PARTNERS), help="partners taking part")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per phase at most")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch < 1 or not 1 <= args.agents <= len(PARTNERS):
        parser.error(f"--records and --batch must be positive, --agents 1..{len(PARTNERS)}")
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    report(result, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
