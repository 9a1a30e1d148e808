"""End-to-end ingest: one partner agent pushes N records into the hub over HTTP.

The hub runs in its own process (``python -m jcm_sync registry serve``, SQLite, a free
port on 127.0.0.1), so its verification does not share a core with the agent. The
agent's own log is filled beforehand with N signed issuance records (appended through
the store's bulk path with their precomputed verifications, which is not timed); the
timed part is one ``Syncer.push()``: batches of ``--batch`` entries, each request
signed (RFC 9421), verified by the hub (request signature, every record's signature,
schema and authority, the batch's checkpoint) and appended to its replica.

The baseline is the machine's Ed25519 verification ceiling, measured in the same run:
one process per core verifying a fixed set of signatures with bare ``cryptography``
for ``--ceiling-seconds``, all at once; the ceiling is the sum of their rates. Target:
ingest / ceiling >= 0.85. Also printed, to tell missing parallelism from overhead: the
CPU the hub and the agent used during the push, and the rate against one core of bare
verification and of the hub's own record check (``trust.verify_record``, measured here
on the same envelopes). ``--profile`` runs the hub under cProfile and prints where its
main thread spends time. The figures are informational: the script always exits 0.

    python bench/ingest.py [--n N] [--batch B] [--timeout S] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import multiprocessing as mp
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jcm_sync.core.trust import TrustRoot, verify_record
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.services.agent import Syncer
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import fill_own_log, free_port, provision, signed_issuances

TARGET = 0.85
PARTNER = "ID"


# --- a hub in its own process (shared with bench/fanout.py) ----------------------------


@dataclass
class HubProcess:
    """``python -m jcm_sync registry serve`` on a provisioned config, optionally profiled."""

    config: Path
    url: str
    log: Path
    profile: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable]
        if self.profile is not None:
            cmd += ["-m", "cProfile", "-o", str(self.profile)]
        cmd += ["-m", "jcm_sync", "registry", "serve", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the hub exited ({self.proc.returncode}): {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not get ready in {timeout} s: {self.tail()}")
                await asyncio.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the hub has used so far (Linux ``/proc``; else None)."""
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM (aiohttp shuts down gracefully, cProfile writes its file), then wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- records --------------------------------------------------------------------------


def _verify_worker(seconds: float, barrier: Barrier, results: mp.Queue[float]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = key.public_key()
    pairs = [(m, key.sign(m)) for m in (os.urandom(700) for _ in range(64))]
    for m, s in pairs:  # warm up
        pub.verify(s, m)
    barrier.wait()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for m, s in pairs:
            pub.verify(s, m)
        count += len(pairs)
    results.put(count / elapsed)


def verify_ceiling(processes: int, seconds: float) -> list[float]:
    """Verifications per second of each of ``processes`` processes running at once."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: mp.Queue[float] = ctx.Queue()
    procs = [
        ctx.Process(target=_verify_worker, args=(seconds, barrier, results))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    rates = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return rates


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def our_verify_rate(root: TrustRoot, envelopes: list[bytes], seconds: float = 1.5) -> float:
    """Records per second through the hub's own check (``trust.verify_record``), one core."""
    sample = envelopes[:1000]
    now = datetime.now(UTC)
    for raw in sample[:100]:  # warm up
        verify_record(root, raw, now)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for raw in sample:
            verify_record(root, raw, now)
        count += len(sample)
    return count / elapsed


# --- profile summary ------------------------------------------------------------------


def print_profile(path: Path, top: int = 25) -> None:
    """Where the hub's main thread spent its time (the store's thread is not seen)."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(
        r"verify_record|prepare_batch|verify_envelope|registry\.py.*push|_authenticate|"
        r"append_entries|_check_offered|_observe|decode"
    )
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print("\nhub profile (cProfile, main thread):")
    print("\n".join(line.replace(str(Path.cwd()) + os.sep, "") for line in lines))


# --- the run --------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    port = free_port()
    net = provision(tmp / "net", [PARTNER], hub_port=port)
    pid = f"JP-{PARTNER}"
    created = datetime.now(UTC) - timedelta(hours=1)
    t = time.perf_counter()
    envs, checked = signed_issuances(pid, PARTNER, net.keys[PARTNER], args.n, created)
    agent = await open_node(load_config(net.configs[PARTNER], env={}))
    try:
        await fill_own_log(agent, pid, envs, checked)
        setup = time.perf_counter() - t
        size = sum(map(len, envs))
        print(f"set-up: {args.n:,} signed issuance records ({size / args.n:,.0f} B each) in "
              f"the agent's log in {setup:.1f} s", file=sys.stderr)  # fmt: skip
        del checked
        ours = our_verify_rate(agent.logs(pid).root, envs)
        hub = HubProcess(
            net.configs["JP"], net.hub_url, tmp / "hub.log",
            profile=tmp / "hub.prof" if args.profile else None,
        )  # fmt: skip
        hub.start()
        try:
            await hub.wait_ready()
            async with HubClient(net.hub_url, agent.keys.transport, timeout=60) as client:
                syncer = Syncer(agent, client, pid, batch_size=args.batch)
                hub_cpu, own_cpu = hub.cpu_seconds(), time.process_time()
                t = time.perf_counter()
                pushed = await asyncio.wait_for(syncer.push(), args.timeout)
                elapsed = time.perf_counter() - t
                own_cpu = time.process_time() - own_cpu
                hub_after = hub.cpu_seconds()
                hub_cpu = -1.0 if hub_cpu is None or hub_after is None else hub_after - hub_cpu
                requests, sent = client.requests, client.bytes_sent
                state = await client.state(pid)
                held = next(s.size for s in state.logs if s.node == PARTNER)
                if pushed != args.n or held != args.n:
                    raise RuntimeError(f"pushed {pushed}, hub holds {held}, expected {args.n}")
        finally:
            hub.stop()
        if args.profile and hub.profile is not None and hub.profile.exists():
            print_profile(hub.profile)
    finally:
        await agent.close()
    return {
        "seconds": elapsed, "requests": requests - 1, "sent": sent,  # less the first /state
        "hub_cpu": hub_cpu, "agent_cpu": own_cpu, "ours": ours,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="records to push")
    parser.add_argument("--batch", type=int, default=500, help="entries per push request")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the push may take")
    parser.add_argument("--ceiling-seconds", type=float, default=2.0, help="baseline duration")
    parser.add_argument("--profile", action="store_true", help="profile the hub with cProfile")
    args = parser.parse_args(argv)
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")

    # the ceiling is measured before and after the push and the higher counts, so that
    # a moment of contention on the machine does not flatter the ratio
    n_cores = cores()
    before = verify_ceiling(n_cores, args.ceiling_seconds)
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    after = verify_ceiling(n_cores, args.ceiling_seconds)
    rates = max(before, after, key=sum)
    ceiling = sum(rates)
    ingest = args.n / result["seconds"]
    one_core = max(rates)

    print(f"ingest: 1 agent -> hub (own process) over HTTP on 127.0.0.1, {args.n:,} records "
          f"in {result['requests']:.0f} pushes of <= {args.batch}, "
          f"{result['sent'] / 1e6:,.1f} MB of bodies, {result['seconds']:.1f} s")  # fmt: skip
    if result["hub_cpu"] >= 0:
        wall = result["seconds"]
        print(f"CPU during the push: hub {result['hub_cpu']:.1f} s "
              f"({result['hub_cpu'] / wall:.0%} of one core), agent {result['agent_cpu']:.1f} s "
              f"({result['agent_cpu'] / wall:.0%} of one core)")  # fmt: skip
    per_core = " + ".join(f"{r:,.0f}" for r in rates)
    print(f"baseline: bare Ed25519 verify on {n_cores} core(s) at once: {per_core} = "
          f"{ceiling:,.0f} /s (best of: before the push {sum(before):,.0f}, "
          f"after {sum(after):,.0f})")  # fmt: skip

    def row(name: str, ours: float, base: float, target: str) -> str:
        return f"{name:36} {ours:11,.0f} {base:11,.0f} {ours / base:7.2f}  {target}"

    print(f"{'':36} {'records/s':>11} {'baseline/s':>11} {'ratio':>7}  target")
    verdict = "ok" if ingest / ceiling >= TARGET else "MISS"
    print(row(f"end to end vs {n_cores}-core verify ceiling", ingest, ceiling,
              f">= {TARGET} {verdict}"))  # fmt: skip
    print(row("end to end vs 1-core bare verify", ingest, one_core, "(information)"))
    print(row("end to end vs 1-core verify_record", ingest, result["ours"], "(information)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
