"""Fan-in at the hub: 31 partner agents push at once, two batches of 50 in flight each.

The hub runs in its own process (``python -m jcm_sync registry serve``, SQLite, a free
port on 127.0.0.1) with the 31 real JCM partnerships of ``jcm_sync.services.sample.PARTNERS``.
The 31 agents (SQLite each) run in this process as asyncio tasks, each with its own
signed HTTP session and ``Syncer``; every HTTP push request is timed. The issue fixes
the fan-in at two batches in flight per agent, so its agents use ``window=FAN_IN_WINDOW``
(2) explicitly, whatever the product's default ``schedule.push_window`` (ADR 0061).

Baseline, measured in the same run against the same hub: the single-agent ingest
throughput, one agent pushing ``--solo`` records alone in batches of ``--solo-batch``
(500, as ``bench/ingest.py``) with the product's default push window (as
``bench/ingest.py``, ``agent.PUSH_WINDOW``), after a warm-up push that starts the hub's verify
workers. Then all 31 agents push ``--records`` each at once, in batches of ``--batch``
(50). Targets (issue 15): fan-in throughput >= 0.9 x the single-agent throughput, and
p99 push latency <= 1.5 x (records in flight / that throughput): with 31 x 2 batches
of 50 in flight, 3,100 records queue ahead of a request at worst, so its wait is
about 3,100 / throughput. Also reported: starvation (every agent completes; the
slowest agent's throughput against the mean), and the per-push fixed cost (ADR 0056):
with a cost v per record and c per push, each phase takes n v + p c, so the two phases
give c, from their wall times and from the CPU of the hub's process, its verify workers
and the agents (this process), with each phase's CPU per record, the hub's busiest
threads in ms per push (``/proc/<pid>/task``) and how busy the whole machine was (other
sessions included: the phases compete with them). Bounded by ``--timeout``; the script
always exits 0. ``--profile`` samples the hub's threads during the fan-in and prints
where the busy ones stood (``PROFILED_HUB``); ``--spy FILE`` records py-spy's samples of
the thread holding the interpreter lock during the fan-in into FILE (collapsed stacks;
py-spy installed beside the interpreter, for profiling only, not a dependency).

    python bench/fanout.py [--records R] [--batch B] [--solo S] [--timeout S] [--profile]
                           [--spy FILE [--spy-threads]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest import HubProcess, _proc_stat

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import Verification
from jcm_sync.core.wire import PushRequest, PushResponse
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.services.agent import PUSH_WINDOW, Syncer
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import PARTNERS, fill_own_log, free_port, provision, signed_issuances

TARGET_THROUGHPUT = 0.9
TARGET_P99 = 1.5
FAN_IN_WINDOW = 2
"""Batches in flight per fan-in agent: the issue's "two batches of 50 in flight each"."""
STARVED_BELOW = 0.5
"""An agent whose throughput is under half the mean counts as starved."""
WARMUP = 1000

Filling = tuple[list[bytes], dict[bytes, Verification]]
"""Envelopes to append to an agent's own log, and their verifications."""


PROFILED_HUB = """
import collections, pickle, signal, sys, threading, time, runpy
out, sys.argv = sys.argv[1], ["jcm_sync", *sys.argv[2:]]
IDLE = {("selectors.py", "select"), ("threading.py", "wait"), ("thread.py", "_worker"),
        ("queues.py", "_feed"), ("connection.py", "_recv"), ("connection.py", "_poll"),
        ("threading.py", "_wait_for_tstate_lock"), ("pool.py", "worker")}
samples, on = collections.Counter(), threading.Event()
def sample():
    me = threading.get_ident()
    names = {}
    while True:
        on.wait()
        time.sleep(0.002)
        for t in threading.enumerate():
            names[t.ident] = t.name
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append((code.co_filename.rsplit("/", 1)[-1], code.co_name))
                frame = frame.f_back
            if stack and stack[0] not in IDLE:
                samples[(names.get(ident, "?").split("_")[0], tuple(stack))] += 1
def stop(*_):
    on.clear()
    with open(out, "wb") as f:
        pickle.dump(dict(samples), f)
threading.Thread(target=sample, daemon=True, name="sampler").start()
signal.signal(signal.SIGUSR1, lambda *_: on.set())
signal.signal(signal.SIGUSR2, stop)
runpy.run_module("jcm_sync", run_name="__main__", alter_sys=True)
"""
"""The hub under ``--profile``: every 2 ms during the fan-in only (SIGUSR1 to SIGUSR2), the
Python stack of each of its threads not waiting (in ``IDLE``: the event loop's select,
an idle executor thread...). A C call that waits (a fsync inside SQLite) counts as its
caller's time; a thread waiting for the interpreter lock counts as where it stands."""


def print_samples(path: Path, top: int = 30) -> None:
    """Samples by thread, then the functions most often on a busy stack (inclusive)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], int] = pickle.loads(path.read_bytes())
    total = sum(samples.values()) or 1
    by_thread: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str, str]] = Counter()
    leaf: Counter[tuple[str, str, str]] = Counter()
    for (thread, stack), n in samples.items():
        by_thread[thread] += n
        leaf[(thread, *stack[0])] += n
        for frame in set(stack):
            inclusive[(thread, *frame)] += n
    print(f"\nhub samples during the fan-in ({total} busy samples, every 2 ms):")
    print("  by thread: " + ", ".join(f"{t} {n / total:.0%}" for t, n in by_thread.most_common()))
    print("  inclusive, by thread (share of all busy samples; frames under every sample of")
    print("  their thread left out):")
    for thread, in_thread in by_thread.most_common(4):
        rows = [(k, n) for k, n in inclusive.most_common() if k[0] == thread and n < in_thread]
        for (_, file, fn), n in rows[: top // 2]:
            print(f"    {n / total:6.1%}  {thread:12} {file}:{fn}")
    print("  leaf:")
    for (thread, file, fn), n in leaf.most_common(top):
        print(f"    {n / total:6.1%}  {thread:12} {file}:{fn}")


@dataclass
class ProfiledHub(HubProcess):
    """``HubProcess`` profiled during the fan-in only (``PROFILED_HUB``)."""

    def start(self) -> None:
        if self.profile is None:
            return super().start()
        cmd = [sys.executable, "-c", PROFILED_HUB, str(self.profile)]
        cmd += ["registry", "serve", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        if self.profile is not None and self.proc is not None:
            self.proc.send_signal(sig)


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far (Linux ``/proc/stat``)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / tick, sum(ticks) / tick


@dataclass
class Phase:
    """CPU seconds of one phase: the hub's own process by thread, its workers, the machine."""

    seconds: float = 0.0
    hub: float = 0.0
    workers: float = 0.0
    threads: dict[int, float] = field(default_factory=dict)
    machine: float = 0.0
    """busy core-seconds of the whole machine (other sessions included)"""
    agents: float = 0.0
    """CPU seconds of this process (the agents)"""
    loop: int = 0
    """the hub's event loop's thread id (its process id)"""


class PhaseMeter:
    """Measures a ``Phase`` of ``hub`` between ``__init__`` and ``done``."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.t = time.perf_counter()
        self.cpu = hub.cpu()
        self.threads = hub.threads()
        self.machine = machine_busy()[0]
        self.agents = time.process_time()

    def done(self) -> Phase:
        cpu, threads = self.hub.cpu(), self.hub.threads()
        out = Phase(time.perf_counter() - self.t, machine=machine_busy()[0] - self.machine,
                    agents=time.process_time() - self.agents)  # fmt: skip
        if cpu is not None and self.cpu is not None:
            out.hub, out.workers = cpu[0] - self.cpu[0], cpu[1] - self.cpu[1]
        out.threads = {k: v - self.threads.get(k, 0.0) for k, v in threads.items()}
        out.loop = self.hub.proc.pid if self.hub.proc is not None else 0
        return out


def user_system(pid: int | None) -> Counter[str]:
    """User and system CPU seconds of the process ``pid`` (Linux ``/proc``; else none)."""
    out: Counter[str] = Counter()
    fields = _proc_stat(pid) if pid is not None else None
    if fields is None:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    out["user"], out["system"] = int(fields[11]) / tick, int(fields[12]) / tick
    return out


def start_spy(
    out: str | None, hub: HubProcess, every_thread: bool = False
) -> subprocess.Popen[bytes] | None:
    """``--spy``: py-spy (installed beside Python, not a dependency) samples the hub's
    threads holding the interpreter lock during the fan-in, as collapsed stacks; with
    ``--spy-threads``, every busy thread (SQLite and libsodium run without the lock),
    each stack under its thread's name."""
    if out is None or hub.proc is None:
        return None
    exe = Path(sys.executable).with_name("py-spy")
    held = ["--threads"] if every_thread else ["--gil"]
    cmd = [str(exe), "record", *held, "--native", "--format", "raw", "--rate", "250"]
    cmd += ["-o", out, "--pid", str(hub.proc.pid)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the first push
    return spy


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


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
    done_at: float | None = None
    latencies: list[float] = field(default_factory=list)


@dataclass
class Result:
    agents: list[Agent]
    records: int
    solo_records: int
    solo_seconds: float
    makespan: float
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds during the fan-in: the hub's process, its verify workers, the agents"""
    solo_phase: Phase = field(default_factory=Phase)
    fan_phase: Phase = field(default_factory=Phase)
    pushes: tuple[int, int] = (0, 0)
    """HTTP pushes of the single agent's timed part and of the fan-in"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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


async def solo(
    hub: HubProcess, node: Node, pid: str, later: list[Filling], batch: int, timeout: float
) -> tuple[float, Phase, int]:
    """The baseline: one agent pushes alone, a warm-up then the timed part; its seconds,
    the hub's CPU during it and its pushes."""
    async with TimedClient(hub.url, node.keys.transport) as client:
        syncer = Syncer(node, client, pid, batch_size=batch)
        (warm, warm_checked), (timed, timed_checked) = later
        await fill_own_log(node, pid, warm, warm_checked)
        await asyncio.wait_for(syncer.push(), timeout)  # starts the hub's verify workers
        await fill_own_log(node, pid, timed, timed_checked)
        await hub.wait_idle()  # nor the warm-up's in the baseline
        before = len(client.latencies)
        meter = PhaseMeter(hub)
        t = time.perf_counter()
        await asyncio.wait_for(syncer.push(), timeout)
        seconds = time.perf_counter() - t
        return seconds, meter.done(), len(client.latencies) - before


async def run(args: argparse.Namespace, tmp: Path) -> Result:
    partners = list(PARTNERS)[: args.agents]
    net = provision(tmp / "net", partners, hub_port=free_port())
    # the agents all connect from 127.0.0.1 here, not from one address each as for real
    hub_config = net.configs["JP"]
    text = hub_config.read_text().replace(
        "\n[server]\n", f"\n[server]\nmax_unauthenticated_per_address = {4 * len(partners)}\n", 1
    )
    hub_config.write_text(text)
    created = datetime.now(UTC) - timedelta(hours=1)
    agents: list[Agent] = []
    t = time.perf_counter()
    try:
        for n, cc in enumerate(partners):
            pid = f"JP-{cc}"
            extra = WARMUP + args.solo if n == 0 else 0
            envs, checked = signed_issuances(pid, cc, net.keys[cc], args.records + extra, created)
            node = await open_node(load_config(net.configs[cc], env={}))
            client = TimedClient(net.hub_url, node.keys.transport)
            syncer = Syncer(node, client, pid, batch_size=args.batch, window=FAN_IN_WINDOW)
            agents.append(Agent(cc, node, client, syncer))
            if n == 0:
                first = [(envs[:WARMUP], checked), (envs[WARMUP:extra], checked)]
                fan_in_of_first = (envs[extra:], checked)
            else:
                await fill_own_log(node, pid, envs, checked)
        print(f"set-up: {len(agents)} agents, {args.records} records each for the fan-in and "
              f"{args.solo} for the single agent, in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)  # fmt: skip
        profile = tmp / "hub.prof" if args.profile else None
        hub = ProfiledHub(net.configs["JP"], net.hub_url, tmp / "hub.log", profile=profile)
        hub.start()
        try:
            await hub.wait_ready()
            a0 = agents[0]
            solo_seconds, solo_phase, solo_pushes = await solo(
                hub, a0.node, a0.syncer.partnership, first, args.solo_batch, args.timeout
            )
            await fill_own_log(a0.node, a0.syncer.partnership, *fan_in_of_first)
            await hub.wait_idle()  # the lone agent's reconciliation is not in the fan-in
            split_before = user_system(hub.proc.pid if hub.proc else None)
            hub.signal(signal.SIGUSR1)
            spy = start_spy(args.spy, hub, args.spy_threads)
            meter = PhaseMeter(hub)
            makespan = await push_all(agents, args.records, args.timeout)
            fan_phase = meter.done()
            stop_spy(spy)
            hub.signal(signal.SIGUSR2)
            split = user_system(hub.proc.pid if hub.proc else None)
            split.subtract(split_before)
            shown = ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
            print(f"the hub's own process during the fan-in: {shown}", file=sys.stderr)
            cpu = {"agents": fan_phase.agents}  # the meter's figures, not measured again
            if meter.cpu is not None:
                cpu["hub"], cpu["workers"] = fan_phase.hub, fan_phase.workers
            for a in agents:
                a.latencies = a.client.latencies
        finally:
            hub.stop()
        if profile is not None and profile.exists():
            print_samples(profile)
    finally:
        for a in agents:
            await a.client.close()
            await a.node.close()
    fan_pushes = sum(len(a.latencies) for a in agents)
    return Result(agents, args.records, args.solo, solo_seconds, makespan, cpu,
                  solo_phase, fan_phase, (solo_pushes, fan_pushes))  # fmt: skip


def per_push(res: Result) -> None:
    """The per-push fixed cost, from the two throughputs and from the hub's CPU: with a
    cost v per record and c per push, a phase of n records in p pushes takes n v + p c."""
    n_solo, n_fan = res.solo_records, len(res.agents) * res.records
    p_solo, p_fan = res.pushes
    if not (p_solo and p_fan) or p_fan / n_fan <= p_solo / n_solo:
        return
    extra = p_fan / n_fan - p_solo / n_solo  # pushes per record, fan-in minus alone

    def cost(solo: float, fan: float) -> float:  # ms per push: (fan/n - solo/n) / extra
        return (fan / n_fan - solo / n_solo) / extra * 1e3

    s, f = res.solo_phase, res.fan_phase
    print(f"per push (fixed cost, from {p_solo} pushes alone and {p_fan} in the fan-in): "
          f"wall {cost(res.solo_seconds, res.makespan):.2f} ms; CPU: hub's process "
          f"{cost(s.hub, f.hub):.2f} ms, its workers {cost(s.workers, f.workers):.2f} ms, "
          f"the agents {cost(s.agents, f.agents):.2f} ms")  # fmt: skip
    for name, ph, n, p in (("alone", s, n_solo, p_solo), ("fan-in", f, n_fan, p_fan)):
        busiest = sorted(ph.threads.items(), key=lambda kv: -kv[1])[:4]
        shown = ", ".join(f"{'loop' if i == ph.loop else i} {v / p * 1e3:.2f}"
                          for i, v in busiest)  # fmt: skip
        busy = ph.machine / max(ph.seconds, 1e-9)
        print(f"  {name:6}: {ph.seconds:.2f} s, hub {ph.hub / n * 1e6:.0f} + workers "
              f"{ph.workers / n * 1e6:.0f} + agents {ph.agents / n * 1e6:.0f} us per "
              f"record; hub's threads, ms per push: {shown}; machine busy {busy:.2f} "
              f"of {os.cpu_count()} cores")  # fmt: skip


def report(res: Result, batch: int, solo_batch: int) -> None:
    agents = res.agents
    n = len(agents)
    latencies = [x for a in agents for x in a.latencies]
    done = [a for a in agents if a.done_at is not None]
    total = n * res.records
    solo_rate = res.solo_records / res.solo_seconds
    fan_rate = total / max(res.makespan, 1e-9)
    in_flight = n * FAN_IN_WINDOW * batch
    bound = TARGET_P99 * in_flight / solo_rate
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    print(f"fan-in: {n} agents x {res.records} records in pushes of <= {batch}, "
          f"{FAN_IN_WINDOW} in flight each, to one hub (own process, SQLite, "
          "127.0.0.1)")  # fmt: skip
    print(f"baseline: one agent alone, {res.solo_records:,} records in pushes of <= "
          f"{solo_batch}, {PUSH_WINDOW} in flight (the default): "
          f"{res.solo_seconds:.2f} s")  # fmt: skip
    print(f"{'':28} {'fan-in':>10} {'baseline':>10} {'ratio':>7}  target")
    ok = "ok" if fan_rate / solo_rate >= TARGET_THROUGHPUT else "MISS"
    print(f"{'throughput (records/s)':28} {fan_rate:10,.0f} {solo_rate:10,.0f} "
          f"{fan_rate / solo_rate:7.2f}  >= {TARGET_THROUGHPUT} {ok}")  # fmt: skip
    ok = "ok" if p99 <= bound else "MISS"
    print(f"{'p99 push latency (ms)':28} {p99 * 1e3:10.1f} {bound * 1e3:10.1f} "
          f"{p99 / bound:7.2f}  <= 1.00 {ok} (baseline: {TARGET_P99} x {in_flight:,} "
          "in flight / the single-agent throughput)")  # fmt: skip
    print(f"{'p50 push latency (ms)':28} {p50 * 1e3:10.1f}")
    if res.cpu:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in res.cpu.items())
        print(f"CPU during the fan-in ({res.makespan:.2f} s on {os.cpu_count()} cores): {parts}")

    print(f"starvation: {len(done)}/{n} agents completed", end="")
    if done:
        times = [a.done_at for a in done if a.done_at is not None]
        rates = [res.records / t for t in times]
        mean = statistics.fmean(rates)
        fair = len(done) == n and min(rates) / mean >= STARVED_BELOW
        verdict = "no partner starved" if fair else "STARVED"
        print(f"; completion min {min(times):.2f} s, max {max(times):.2f} s; slowest agent "
              f"{min(rates):,.0f} records/s vs mean {mean:,.0f} (ratio {min(rates) / mean:.2f}, "
              f"target >= {STARVED_BELOW}): {verdict}")  # fmt: skip
    else:
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500, help="records per agent, fan-in")
    parser.add_argument("--batch", type=int, default=50, help="entries per push, fan-in")
    parser.add_argument("--solo", type=int, default=15_500, help="records of the lone agent")
    parser.add_argument("--solo-batch", type=int, default=500, help="entries per push, alone")
    parser.add_argument("--agents", type=int, default=len(PARTNERS), help="partners taking part")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument("--profile", action="store_true", help="profile the hub with cProfile")
    parser.add_argument("--spy", metavar="FILE", help="py-spy the hub's fan-in into FILE")
    parser.add_argument("--spy-threads", action="store_true",
                        help="--spy samples every busy thread, not the lock's holder")  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.records, args.batch, args.solo, args.solo_batch) < 1 or not (
        1 <= args.agents <= len(PARTNERS)
    ):
        parser.error(f"sizes must be positive, --agents 1..{len(PARTNERS)}")
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    report(result, args.batch, args.solo_batch)
    per_push(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
