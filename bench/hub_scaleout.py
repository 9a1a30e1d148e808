"""Fan-in with one and with two hub processes on one PostgreSQL database (ADR 0042).

The 31 partner agents of ``jcm_sync.services.sample.PARTNERS`` (SQLite each, in this
process as asyncio tasks, each with its own signed HTTP session) push ``--records``
signed issuance records each, all at once, in requests of ``--batch`` entries, to
``python -m jcm_sync registry serve --reuse-port`` processes sharing one address and one
throwaway PostgreSQL schema (``JCM_SYNC_TEST_PG_URL``, default the test server at
127.0.0.1:5432). The kernel (``SO_REUSEPORT``) spreads the agents' connections among
the hub processes; appends to a log are serialised by the database, nonces shared in it.

Baseline, measured in the same run: the same agents, the same amount, through ONE hub
process. Then every agent appends as many records again and all push at once through
TWO hub processes. Reported: throughput (records/s), p50 and p99 push latency, and the
ratio two/one. Every process of this run (hubs, their verify workers, PostgreSQL and the
agents) shares this machine's cores, so the ratio says what a second process adds here,
not what a second machine would. Bounded by ``--timeout`` per phase; the script always
exits 0 (a failed phase is reported).

    python bench/hub_scaleout.py [--records R] [--batch B] [--agents N] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from fanout import TimedClient, pct

from jcm_sync.core.trust import Verification
from jcm_sync.local.config import load_config
from jcm_sync.services.agent import Syncer
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import (
    PARTNERS,
    fill_own_log,
    free_port,
    provision,
    signed_issuances,
)

PG_URL = os.environ.get("JCM_SYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Agent:
    cc: str
    node: Node
    client: TimedClient
    syncer: Syncer
    later: list[bytes]
    checked: dict[bytes, Verification]


@dataclass
class Phase:
    hubs: int
    seconds: float = 0.0
    records: int = 0
    latencies: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class Hubs:
    """``--hubs`` registry processes on one address, started and stopped together."""

    def __init__(self, config: Path, logs: Path, n: int) -> None:
        self.config, self.logs, self.n = config, logs, n
        self.procs: list[subprocess.Popen[bytes]] = []

    def _log(self, i: int) -> Path:
        return self.logs / f"hub{self.n}-{i}.log"

    async def __aenter__(self) -> Hubs:
        cmd = [sys.executable, "-m", "jcm_sync", "registry", "serve",
               "--config", str(self.config), "--reuse-port"]  # fmt: skip
        for i in range(self.n):
            with self._log(i).open("wb") as out:
                self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        for i, proc in enumerate(self.procs):  # each says it listens once its app started
            while not re.search(r'"listening"|listening', self._log(i).read_text(errors="replace")):
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = self._log(i).read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"hub process {i} did not start: {text}")
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def push_all(agents: list[Agent], phase: Phase, records: int, timeout: float) -> None:
    """Every agent pushes its new records at once; the phase's time is the last one's."""
    for a in agents:
        a.client.latencies = []
    start = time.perf_counter()

    async def one(a: Agent) -> int:
        return await a.syncer.push()

    results = await asyncio.wait_for(
        asyncio.gather(*(one(a) for a in agents), return_exceptions=True), timeout
    )
    phase.seconds = time.perf_counter() - start
    for a, r in zip(agents, results, strict=True):
        if isinstance(r, BaseException):
            phase.failed.append(f"{a.cc}: {type(r).__name__}: {r}")
        else:
            phase.records += r
            if r != records:
                phase.failed.append(f"{a.cc}: pushed {r} records, not {records}")
        phase.latencies += a.client.latencies


async def run(args: argparse.Namespace, tmp: Path) -> list[Phase]:
    schema = f"jcm_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={schema}"
    partners = list(PARTNERS)[: args.agents]
    net = provision(tmp / "net", partners, hub_port=free_port(), hub_store=url)
    jp = net.configs["JP"]  # every agent comes from 127.0.0.1, as through a proxy
    jp.write_text(
        jp.read_text().replace("[server]\n", "[server]\nmax_unauthenticated_per_address = 0\n", 1)
    )
    created = datetime.now(UTC) - timedelta(hours=1)
    agents: list[Agent] = []
    phases = [Phase(1), Phase(2)]
    t = time.perf_counter()
    try:
        for cc in partners:
            pid = f"JP-{cc}"
            envs, checked = signed_issuances(pid, cc, net.keys[cc], 2 * args.records, created)
            node = await open_node(load_config(net.configs[cc], env={}))
            client = TimedClient(net.hub_url, node.keys.transport)
            syncer = Syncer(node, client, pid, batch_size=args.batch)
            agents.append(Agent(cc, node, client, syncer, envs[args.records :], checked))
            await fill_own_log(node, pid, envs[: args.records], checked)
        print(f"set-up: {len(agents)} agents with {args.records} records each per phase in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)  # fmt: skip
        for i, phase in enumerate(phases):
            if i:
                for a in agents:
                    await fill_own_log(a.node, a.syncer.partnership, a.later, a.checked)
            async with Hubs(net.configs["JP"], tmp, phase.hubs):
                try:
                    await push_all(agents, phase, args.records, args.timeout)
                except TimeoutError:
                    phase.failed.append(f"not done within {args.timeout} s")
            for a in agents:
                await a.client.close()  # the next phase's processes get new connections
    finally:
        for a in agents:
            await a.client.close()
            await a.node.close()
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return phases


def report(phases: list[Phase], agents: int, batch: int) -> None:
    one, two = phases
    print(f"fan-in on PostgreSQL: {agents} agents push at once in requests of <= {batch} "
          f"entries, through hub processes sharing one address (SO_REUSEPORT) and one "
          f"database; {os.cpu_count()} cores shared by hubs, PostgreSQL and agents\n"
          f"baseline: one hub process, same run")  # fmt: skip
    print(f"{'':24} {'1 process':>10} {'2 processes':>12} {'ratio':>7}")
    print(f"{'throughput (records/s)':24} {one.rate:10,.0f} {two.rate:12,.0f} "
          f"{two.rate / one.rate if one.rate else 0:7.2f}")  # fmt: skip
    for name, q in (("p50 push latency (ms)", 0.5), ("p99 push latency (ms)", 0.99)):
        a, b = (pct(p.latencies, q) * 1000 if p.latencies else 0.0 for p in phases)
        print(f"{name:24} {a:10.1f} {b:12.1f} {b / a if a else 0:7.2f}")
    print(f"{'records pushed':24} {one.records:10,} {two.records:12,}")
    for phase in phases:
        for line in phase.failed[:5]:
            print(f"  FAILED with {phase.hubs} process(es): {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200, help="records per agent per phase")
    parser.add_argument("--batch", type=int, default=50, help="entries per push request")
    parser.add_argument("--agents", type=int, default=len(PARTNERS), help="partners taking part")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per phase at most")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch < 1 or not 1 <= args.agents <= len(PARTNERS):
        parser.error(f"--records and --batch must be positive, --agents 1..{len(PARTNERS)}")
    try:
        with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
            phases = asyncio.run(run(args, Path(tmp)))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"no PostgreSQL at {PG_URL} ({exc}); set JCM_SYNC_TEST_PG_URL", file=sys.stderr)
        return 0
    report(phases, args.agents, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
