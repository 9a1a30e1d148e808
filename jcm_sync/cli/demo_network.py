"""The network half of ``make run``: Japan's hub and the MN, ID and VN agents on
127.0.0.1, seeded with sample data, synchronised by their own scheduled jobs.

Each node is a real process started with the real commands (``jcm-sync registry
serve``, ``jcm-sync agent run``) on its own configuration and SQLite file under the
demo folder; the sample data comes from ``jcm_sync.sample`` (committed), written as
JSON-lines files and loaded with ``jcm-sync import``. The demo waits until every
agent's logs and the hub's agree, prints each partnership's status and stops the
processes with SIGTERM, unless ``--keep-running`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from jcm_sync.cli.common import stdout
from jcm_sync.config import load_config
from jcm_sync.sample import PARTNERS, partnership_records, provision

DEMO_PARTNERS = ["MN", "ID", "VN"]
CONVERGE_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_cli(console: Console, *argv: str) -> tuple[int, str]:
    from jcm_sync.cli import main

    console.print(f"[dim]$[/] jcm-sync {escape(' '.join(argv))}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    if err.getvalue().strip():
        console.print(f"[dim]{escape(err.getvalue().rstrip())}[/]")
    return code, out.getvalue()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the hub did not become ready in time")


async def _sizes(config: Path) -> dict[str, dict[str, int]]:
    from jcm_sync.cli.node import _status

    data = await _status(load_config(config))
    return {
        p["partnership"]: {lg["node"]: lg["local_size"] for lg in p["logs"]}
        for p in data["partnerships"]
    }


def _converged(configs: dict[str, Path]) -> tuple[bool, dict[str, Any]]:
    hub = asyncio.run(_sizes(configs["JP"]))
    agents = {cc: asyncio.run(_sizes(configs[cc]))[f"JP-{cc}"] for cc in DEMO_PARTNERS}
    ok = all(hub[f"JP-{cc}"] == agents[cc] for cc in DEMO_PARTNERS)
    return ok, {"hub": hub, "agents": agents}


def run_network_demo(args: argparse.Namespace) -> int:
    c = stdout()
    work = Path(args.dir) / "network"
    shutil.rmtree(work, ignore_errors=True)
    port = args.port or _free_port()
    c.print(Panel("jcm-sync: Japan's registry hub and three partner agents on 127.0.0.1",
                  style="bold"))  # fmt: skip

    c.print("\n[bold]1. Provision[/] keys, JP–MN / JP–ID / JP–VN trust roots and configurations")
    net = provision(work, DEMO_PARTNERS, hub_port=port, schedule_seconds=1.0)
    for node, cfg in net.configs.items():
        c.print(f"   {node}: {cfg}")

    c.print("\n[bold]2. Seed[/] sample records (jcm_sync/sample.py): projects, JC decisions "
            "co-signed by both secretariats, each side's issuances and retirements;")  # fmt: skip
    c.print("   JP–ID includes the first JCM issuance (May 2016: 40 notified, 31 JP + 9 ID)")
    seed_dir = work / "seed"
    seed_dir.mkdir()
    expected: dict[str, tuple[int, int]] = {}
    for cc in DEMO_PARTNERS:
        recs = partnership_records(cc, net.keys, projects=4)
        for node in (cc, "JP"):
            f = seed_dir / f"jp-{cc.lower()}.{node.lower()}.jsonl"
            f.write_bytes(b"\n".join(recs.by_node[node]) + b"\n")
            argv = ["import", "--config", str(net.configs[node]), str(f)]
            if node == "JP":
                argv += ["--partnership", f"JP-{cc}"]
            code, out = _run_cli(c, *argv)
            if code:
                c.print("[bold red]import failed[/]")
                return 1
            c.print("  " + escape(out.strip()))
        expected[cc] = (len(recs.by_node[cc]), len(recs.by_node["JP"]))

    c.print("\n[bold]3. Start[/] the hub and the agents; their scheduled jobs synchronise")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: list[Any] = []

    def start(node: str, *argv: str) -> None:
        log_file = (net.configs[node].parent / "node.log").open("wb")
        logs.append(log_file)
        cmd = [sys.executable, "-m", "jcm_sync", *argv, "--config", str(net.configs[node])]
        c.print(f"[dim]$[/] jcm-sync {' '.join(cmd[3:])} &")
        procs[node] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)

    try:
        start("JP", "registry", "serve")
        _wait_ready(net.hub_url, procs["JP"])
        c.print(f"   hub ready at {net.hub_url}")
        for cc in DEMO_PARTNERS:
            start(cc, "agent", "run")
        started = time.monotonic()
        ok, sizes = False, dict[str, Any]()
        while time.monotonic() - started < CONVERGE_SECONDS:
            time.sleep(0.5)
            ok, sizes = _converged(net.configs)
            if ok and all(
                sizes["agents"][cc] == {cc: expected[cc][0], "JP": expected[cc][1]}
                for cc in DEMO_PARTNERS
            ):
                break
            ok = False
        elapsed = time.monotonic() - started
        if not ok:
            c.print(f"[bold red]not converged after {CONVERGE_SECONDS:.0f} s[/]: {sizes}")
            return 1
        c.print(f"   all logs converged in {elapsed:.1f} s")

        c.print("\n[bold]4. Status[/] of each partnership, from each agent and from the hub")
        for node in (*DEMO_PARTNERS, "JP"):
            code, out = _run_cli(c, "status", "--config", str(net.configs[node]))
            c.print(out.rstrip())
        table = Table("partnership", "partner", "partner's log", "Japan's log", "state")
        for cc in DEMO_PARTNERS:
            a = sizes["agents"][cc]
            table.add_row(f"JP-{cc}", PARTNERS[cc], str(a[cc]), str(a["JP"]), "[green]in sync[/]")
        c.print(table)

        if args.keep_running:
            c.print("\n[bold]Running.[/] Hub API and pages:")
            for path in ("/status", "/metrics", "/livez", "/readyz"):
                c.print(f"   {net.hub_url}{path}")
            c.print(f"   agents' logs: {work}/<cc>/node.log; stop with Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for p in procs.values()):
                    time.sleep(1)
        c.print("\n[bold green]ok[/]: every partner's log is at Japan's hub and Japan's "
                "log at every partner, verified record by record.")  # fmt: skip
        return 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
