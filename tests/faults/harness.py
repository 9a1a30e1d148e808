"""The fault suite's harness: real hub and agent processes, a fault-injecting proxy,
and the end-of-run checks (ADR 0013).

Why this module exists: the exchange must keep every acknowledged record through a
``kill -9`` of either side and through a network that drops, delays and truncates
answers. Those properties only show with the real commands (``jcm-sync registry
serve``, ``jcm-sync agent run``, ``jcm-sync import``) running as processes over
loopback on their own SQLite files, so this module starts them, injects faults, and
checks the outcome. Other fault tests in this directory share it.

Rules:

1. Everything is loopback (127.0.0.1) and under the test's temporary directory; each
   daemon's output goes to ``<node dir>/node.log`` and its tail is quoted on failure.
2. Randomness is seeded: ``run_seed(name)`` takes ``JCM_SYNC_FAULT_SEED`` if set
   (to replay a run) or draws one, and the test prints it.
3. A record is *acknowledged* when the ``jcm-sync import`` that carried it exited 0.
   ``Exchange.check`` demands that each side's own log is exactly the acknowledged
   records in import order (nothing lost, nothing duplicated, nothing unacknowledged
   stored), that the other side's replica is entry for entry the same, that all four
   logs verify (``verify_log``, with every envelope and checkpoint signature checked
   against the trust root), that neither side raised a fork alarm, and that neither
   daemon logged a traceback or an error (faults are warnings: logged, backed off).
4. The proxy (``FaultProxy``) understands just enough HTTP/1.1 (Content-Length and
   chunked bodies, keep-alive) to act per request; a fault is decided once per request
   from the seeded RNG, and every request and fault is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from jcm_sync.core.trust import TrustRoot, verify_root
from jcm_sync.local.alarms import AlarmBook
from jcm_sync.local.config import Config, load_config
from jcm_sync.services.log_service import checkpoint_verifiers, record_verifier, verify_log
from jcm_sync.services.node import log_ref
from jcm_sync.services.sample import (
    Network,
    SampleRecords,
    free_port,
    partnership_records,
    provision,
)
from jcm_sync.store import LogRef, Store, open_store

SLOW = os.environ.get("JCM_SYNC_SLOW") == "1"
SEED_ENV = "JCM_SYNC_FAULT_SEED"
PYTHON = [sys.executable, "-m", "jcm_sync"]
READY_TIMEOUT_S = 60.0


SUMMARIES: list[str] = []
"""One line per fault test run, printed again in pytest's terminal summary (conftest.py)."""


def summary(line: str) -> None:
    """Print a test's counts now (``-s``) and in the terminal summary."""
    print(line)
    SUMMARIES.append(line)


def run_seed(name: str) -> int:
    """Rule 2: the seed of this run, printed so that a failure can be replayed."""
    value = os.environ.get(SEED_ENV)
    seed = int(value) if value else random.SystemRandom().randrange(2**32)
    print(f"{name}: seed {seed} (replay with {SEED_ENV}={seed})")
    return seed


def schedule_env(
    *,
    push: float,
    pull: float,
    anti_entropy: float,
    reconcile: float = 30.0,
    jitter: float = 0.05,
    backoff_initial: float = 0.2,
    backoff_max: float = 1.0,
    batch_size: int = 20,
) -> dict[str, str]:
    """``JCM_SYNC_SCHEDULE_*`` overrides for short intervals (config.py)."""
    values = {
        "push_seconds": push, "pull_seconds": pull, "anti_entropy_seconds": anti_entropy,
        "reconcile_seconds": reconcile, "jitter_seconds": jitter,
        "backoff_initial_seconds": backoff_initial, "backoff_max_seconds": backoff_max,
        "batch_size": batch_size,
    }  # fmt: skip
    return {f"JCM_SYNC_SCHEDULE_{k.upper()}": str(v) for k, v in values.items()}


# --- daemons ------------------------------------------------------------------------------


@dataclass
class Daemon:
    """One ``jcm-sync registry serve`` or ``jcm-sync agent run`` process, restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        with self.log_path.open("ab") as out:
            out.write(f"--- start {self.starts + 1} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*PYTHON, *self.argv], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )  # fmt: skip
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        assert self.proc is not None, f"{self.name} was never started"
        assert self.alive, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code (0 is a clean stop)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def problems(self) -> list[str]:
        """Lines of its log with a traceback or an error: a fault must be handled as a
        warning (logged, backed off, retried), never crash a job or the process."""
        return [
            line
            for line in self.log_text().splitlines()
            if "Traceback" in line or '"level": "error"' in line or '"level": "critical"' in line
        ]


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


# --- a hub and one agent ---------------------------------------------------------------------


@dataclass
class Exchange:
    """Japan's hub and one partner's agent as processes, on SQLite files under ``directory``.

    ``agent_hub_url`` points the agent elsewhere than the hub (at a proxy).
    """

    directory: Path
    cc: str
    net: Network
    hub: Daemon
    agent: Daemon
    hub_port: int
    acked: dict[str, list[bytes]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    imports: int = 0
    _stores: dict[str, Store] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        directory: Path,
        cc: str,
        *,
        env: dict[str, str],
        agent_hub_url: str | None = None,
        hub_port: int | None = None,
    ) -> Exchange:
        port = hub_port or free_port()
        net = provision(directory, [cc], hub_port=port)
        agent_env = dict(env)
        if agent_hub_url is not None:
            agent_env["JCM_SYNC_HUB_URL"] = agent_hub_url
        agent_env.setdefault("JCM_SYNC_HUB_TIMEOUT_SECONDS", "10")

        def daemon(node: str, argv: list[str], denv: dict[str, str]) -> Daemon:
            cfg = net.configs[node]
            return Daemon(f"{node} {argv[0]}", [*argv, "--config", str(cfg)], denv,
                          cfg.parent / "node.log")  # fmt: skip

        return cls(
            directory, cc, net,
            hub=daemon("JP", ["registry", "serve"], dict(env)),
            agent=daemon(cc, ["agent", "run"], agent_env),
            hub_port=port, acked={"JP": [], cc: []},
        )  # fmt: skip

    @property
    def partnership(self) -> str:
        return f"JP-{self.cc}"

    @property
    def hub_url(self) -> str:
        return self.net.hub_url

    def config(self, node: str) -> Config:
        return load_config(self.net.configs[node], env={})

    def records(
        self, *, projects: int, periods: int, seed: int, jp_participants: int = 1
    ) -> SampleRecords:
        return partnership_records(self.cc, self.net.keys, projects=projects, periods=periods,
                                   seed=seed, jp_participants=jp_participants)  # fmt: skip

    async def start_hub(self) -> float:
        """Start the hub and wait for /readyz; returns the seconds it took."""
        t0 = time.monotonic()
        self.hub.start()
        while not await asyncio.to_thread(http_ready, self.hub_url):
            if not self.hub.alive:
                raise AssertionError(f"the hub exited at start:\n{self.hub.tail()}")
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                raise AssertionError(f"the hub was not ready in time:\n{self.hub.tail()}")
            await asyncio.sleep(0.1)
        return time.monotonic() - t0

    async def start(self) -> None:
        await self.start_hub()
        self.agent.start()

    def stop(self) -> dict[str, int]:
        """SIGTERM both daemons; their exit codes."""
        return {"agent": self.agent.stop(), "hub": self.hub.stop()}

    async def close(self) -> None:
        self.agent.ensure_stopped()
        self.hub.ensure_stopped()
        for store in self._stores.values():
            await store.close()
        self._stores.clear()

    # --- imports -----------------------------------------------------------------------

    async def import_records(
        self, node: str, envelopes: Sequence[bytes], name: str, *, per_file: int = 2000
    ) -> bool:
        """One ``jcm-sync import`` process; on exit 0 the records are acknowledged. Files
        hold at most ``per_file`` records (the CLI reads at most 4 MiB per file)."""
        folder = self.directory / "imports"
        folder.mkdir(exist_ok=True)
        paths = []
        for n in range(0, len(envelopes), per_file):
            paths.append(folder / f"{name}.{n // per_file:03d}.jsonl")
            paths[-1].write_bytes(b"\n".join(envelopes[n : n + per_file]) + b"\n")
        cmd = [*PYTHON, "import", "--config", str(self.net.configs[node]),
               "--partnership", self.partnership, *map(str, paths)]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        self.imports += 1
        if proc.returncode == 0:
            self.acked[node].extend(envelopes)
            return True
        line = err.decode(errors="replace").strip().splitlines()
        self.refused[line[-1] if line else f"exit {proc.returncode}"] += 1
        return False

    # --- reading the stores behind the daemons' backs ------------------------------------

    async def _store(self, node: str) -> Store:
        if node not in self._stores:
            self._stores[node] = await open_store(self.config(node).store_url)
        return self._stores[node]

    def ref(self, node: str, author: str) -> LogRef:
        """The log of ``author`` held by ``node`` (own when they are the same)."""
        return log_ref(self.config(node), self.partnership, author)

    async def sizes(self) -> dict[str, int]:
        """``hub_own``, ``hub_replica``, ``agent_own``, ``agent_replica``."""
        out = {}
        for label, node, author in (
            ("hub_own", "JP", "JP"), ("hub_replica", "JP", self.cc),
            ("agent_own", self.cc, self.cc), ("agent_replica", self.cc, "JP"),
        ):  # fmt: skip
            store = await self._store(node)
            ref = self.ref(node, author)
            await store.ensure_log(ref)
            out[label] = (await store.tree_head(ref)).size
        return out

    async def pending(self) -> tuple[bool, bool]:
        """(a push is pending, a pull is pending): the other side holds less."""
        s = await self.sizes()
        return s["agent_own"] > s["hub_replica"], s["hub_own"] > s["agent_replica"]

    async def converged(self) -> bool:
        s = await self.sizes()
        return s["agent_own"] == s["hub_replica"] == len(self.acked[self.cc]) and s["hub_own"] == s[
            "agent_replica"
        ] == len(self.acked["JP"])

    async def wait_converged(self, timeout: float) -> float | None:
        """Seconds until both logs are at both sides, or None after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if await self.converged():
                return time.monotonic() - t0
            await asyncio.sleep(0.1)
        return None

    async def alarms(self) -> list[str]:
        out = []
        for node in ("JP", self.cc):
            book = AlarmBook(await self._store(node))
            out += [f"{node}: {a.origin}: {a.reason}" for a in await book.active()]
        return out

    # --- the end-of-run check (rule 3) -----------------------------------------------------

    async def check(self) -> Outcome:
        """Rule 3, with the daemons stopped. Returns the counts; raises on any failure."""
        out = Outcome(acked={n: len(v) for n, v in self.acked.items()})
        root = self._trust_root()
        now = datetime.now(UTC)
        problems: list[str] = []
        for author, holder in ((self.cc, "JP"), ("JP", self.cc)):
            acked = self.acked[author]
            own_ref, rep_ref = self.ref(author, author), self.ref(holder, author)
            own = [e.envelope for e in await (await self._store(author)).entries(own_ref)]
            rep = [e.envelope for e in await (await self._store(holder)).entries(rep_ref)]
            held = set(rep)
            out.lost += sum(1 for e in acked if e not in held)
            out.duplicated += len(own) - len(set(own)) + len(rep) - len(set(rep))
            if own != acked:
                problems.append(
                    f"{author}'s own log ({len(own)} entries) is not the {len(acked)} "
                    "acknowledged records in import order"
                )
            if rep != own:
                problems.append(
                    f"{holder}'s replica of {author}'s log ({len(rep)} entries) differs from "
                    f"the log itself ({len(own)})"
                )
            for node, ref in ((author, own_ref), (holder, rep_ref)):
                audit = await verify_log(
                    await self._store(node), ref,
                    verify=record_verifier(root, now),
                    verifiers=checkpoint_verifiers(root, ref, now),
                )  # fmt: skip
                out.verified += 1
                problems += [f"{node}'s copy of {ref.origin}: {p}" for p in audit.problems]
        out.alarms = await self.alarms()
        problems += [f"fork alarm: {a}" for a in out.alarms]
        for daemon in (self.hub, self.agent):
            problems += [f"{daemon.name} logged: {brief(line)}" for line in daemon.problems()]
        if out.lost:
            problems.append(f"{out.lost} acknowledged records lost")
        if out.duplicated:
            problems.append(f"{out.duplicated} duplicated entries")
        assert not problems, "\n".join(problems)
        return out

    def _trust_root(self) -> TrustRoot:
        raw = self.net.roots[self.partnership].read_bytes()
        return verify_root(raw, datetime.now(UTC)).root


@dataclass
class Outcome:
    acked: dict[str, int]
    lost: int = 0
    duplicated: int = 0
    verified: int = 0
    alarms: list[str] = field(default_factory=list)


def project_chunks(recs: SampleRecords, cc: str, per_chunk: int) -> list[tuple[str, list[bytes]]]:
    """Split a partnership's sample history into import files of ``per_chunk`` projects,
    each side's records in their own order: ``[(node, envelopes), ...]`` alternating
    partner and Japan. A project's records stay together, as a registry would export
    them, so no import holds half of an issuance."""
    from jcm_sync.core.envelope import open_envelope
    from jcm_sync.core.records import decode_record

    def project_of(env: bytes) -> str:
        rec = decode_record(open_envelope(env).payload)
        pid = getattr(rec, "project_id", None)
        if pid is None:
            decision = getattr(rec, "decision", None)
            pid = decision.project_id if decision is not None else None
        return str(pid) if pid is not None else ""

    out: list[tuple[str, list[bytes]]] = []
    groups: dict[str, dict[str, list[bytes]]] = {}
    for node in (cc, "JP"):
        current = ""
        for env in recs.by_node[node]:
            current = project_of(env) or current  # a retirement follows its issuance
            groups.setdefault(current, {}).setdefault(node, []).append(env)
    projects = list(groups)
    for i in range(0, len(projects), per_chunk):
        for node in (cc, "JP"):
            chunk = [e for p in projects[i : i + per_chunk] for e in groups[p].get(node, [])]
            if chunk:
                out.append((node, chunk))
    return out


# --- the fault proxy (rule 4) ------------------------------------------------------------

FAULTS = ("close_before", "close_after", "delay", "truncate")


def brief(line: str) -> str:
    """A logged problem for a failure message: its event and the end of its traceback
    (where the exception is named), not the first lines every traceback shares."""
    try:
        doc = json.loads(line)
    except ValueError:
        return line[-600:]
    if not isinstance(doc, dict):
        return line[-600:]
    tail = str(doc.get("exception", ""))[-900:]
    return f"{doc.get('event')!r} at {doc.get('timestamp')}: ...{tail}"


@dataclass
class FaultProxy:
    """A TCP proxy on 127.0.0.1 between an agent and the hub that, for ``rate`` of the
    requests, closes the connection before forwarding, closes it after forwarding (the
    answer is lost), delays the answer 0.5–2 s, or truncates the answer."""

    upstream_port: int
    rng: random.Random
    rate: float = 0.2
    faults_on: bool = True
    port: int = 0
    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def hold(self) -> None:
        """Requests that arrive from now on wait, unforwarded, until ``release``: a
        partition, so that what is imported meanwhile is certainly still pending."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    def _decide(self) -> str | None:
        self.requests += 1
        if not self.faults_on or self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(FAULTS)
        self.faults[kind] += 1
        return kind

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head, body = await read_message(reader, request=True)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await self._flowing.wait()
                fault = self._decide()
                if fault == "close_before":
                    return
                if up is None:
                    up = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                up[1].write(head + body)
                await up[1].drain()
                rhead, rbody = await read_message(up[0], request=False)
                if fault == "close_after":
                    return
                if fault == "delay":
                    await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                if fault == "truncate":
                    whole = rhead + rbody
                    cut = self.rng.randrange(len(rhead) // 2, len(whole))
                    writer.write(whole[:cut])
                    await writer.drain()
                    return
                writer.write(rhead + rbody)
                await writer.drain()
                if b"\r\nconnection: close" in rhead.lower():
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for w in (writer, up[1] if up else None):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()
            self._tasks.discard(task)


async def read_message(reader: asyncio.StreamReader, *, request: bool) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message: (head with its blank line, body as framed on the wire)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            body += size_line + await reader.readexactly(size + 2)
            if size == 0:
                return head, body
    if "content-length" in headers:
        return head, await reader.readexactly(int(headers["content-length"]))
    status = "" if request else lines[0].split(" ")[1]
    if request or status in ("204", "304") or status.startswith("1"):
        return head, b""
    return head, await reader.read()  # delimited by the end of the connection
