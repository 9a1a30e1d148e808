"""The network half of ``make run``: Japan's hub and the MN, ID and VN agents on
127.0.0.1, seeded with sample data, synchronised by their own scheduled jobs.

Each node is a real process started with the real commands (``jcm-sync registry
serve``, ``jcm-sync agent run``) on its own configuration and SQLite file under the
demo folder; the sample data comes from ``jcm_sync.services.sample`` (committed), written as
JSON-lines files and loaded with ``jcm-sync import``. JP–ID is seeded at a size where
batching and paging show (over 1,000 records on each side, ``DEMO_SCALE``); MN and VN
stay small so their status reads at a glance. The demo waits until every
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
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from jcm_sync.cli.common import stdout
from jcm_sync.local.config import load_config
from jcm_sync.services.sample import (
    PARTNERS,
    SampleRecords,
    free_port,
    partnership_records,
    provision,
)

DEMO_PARTNERS = ["MN", "ID", "VN"]
#: sample size per partnership as (projects, monitoring periods, Japanese participants):
#: JP–ID is the large one, some 1,200 records on each side
DEMO_SCALE: dict[str, tuple[int, int, int]] = {"MN": (4, 2, 1), "ID": (60, 5, 3), "VN": (4, 2, 1)}
CONVERGE_SECONDS = 60.0

CliMain = Callable[[Sequence[str]], int]
"""The CLI's entry point, handed in by ``jcm_sync.cli`` (importing it back is a cycle)."""


def _run_cli(console: Console, cli_main: CliMain, *argv: str) -> tuple[int, str]:
    console.print(f"[dim]$[/] jcm-sync {escape(' '.join(argv))}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(argv))
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


def stop_processes(procs: Iterable[subprocess.Popen[Any]], timeout: float) -> None:
    """SIGTERM every daemon still running, then wait up to ``timeout`` seconds for each
    to stop gracefully; one that does not is killed (and reaped)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _sizes(config: Path) -> dict[str, dict[str, int | str]]:
    from jcm_sync.services.status_view import read_status

    status = await read_status(load_config(config))
    # a log counts once its quorum agrees its newest records (ADR 0035): reconciliation
    # runs on agreed snapshots, so the demo waits for the cosignatures too
    return {
        p.partnership: {
            lg.node: lg.local_size
            if lg.agreed and lg.agreed_size in (None, lg.local_size)
            else f"{lg.local_size} (agreed {lg.agreed_size})"
            for lg in p.logs
        }
        for p in status.partnerships
    }


def _converged(configs: dict[str, Path]) -> tuple[bool, dict[str, Any]]:
    hub = asyncio.run(_sizes(configs["JP"]))
    agents = {cc: asyncio.run(_sizes(configs[cc]))[f"JP-{cc}"] for cc in DEMO_PARTNERS}
    ok = all(
        hub[f"JP-{cc}"] == agents[cc] and all(isinstance(v, int) for v in agents[cc].values())
        for cc in DEMO_PARTNERS
    )
    return ok, {"hub": hub, "agents": agents}


def _wait_for(predicate: Any, timeout: float = CONVERGE_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _reconcile_steps(c: Console, cli_main: CliMain, net: Any, work: Path) -> bool:
    """Steps 5 and 6: a clean reconciliation, then one over-issued credit caught by
    both sides with the same discrepancy id, and its serials quarantined."""
    import json
    from datetime import UTC, date, datetime

    from jcm_sync.core.records import (
        Account,
        DecisionRef,
        IssuanceRecord,
        SerialBlock,
        TransactionRecord,
        encode_record,
    )
    from jcm_sync.services.sample import first_issuance_parts

    id_cfg, jp_cfg = str(net.configs["ID"]), str(net.configs["JP"])
    c.print("\n[bold]5. Reconcile[/] JP–ID from Indonesia's side (DES stages on the replicas)")
    code, out = _run_cli(c, cli_main, "reconcile", "run", "--config", id_cfg, "--exit-code")
    c.print(out.rstrip())
    if code != 0:
        c.print("[bold red]clean sample data should reconcile without discrepancies[/]")
        return False

    c.print("\n[bold]6. A fault[/]: Indonesia's registry issues 1 credit more for the May 2016 "
            "decision (10 where the JC notified 9)")  # fmt: skip
    project_id, period, _, _ = first_issuance_parts()
    now = datetime.now(UTC)
    serial = "ID-ID002-2015-000900001"
    extra = IssuanceRecord(
        partnership="JP-ID", author="ID", created=now, registry="ID",
        issuance_id="ID-ISS-ID002-EXTRA", decision=DecisionRef(project_id, period),
        issued_on=date(2016, 6, 1), amount=1, account=Account("ID-GOV-0002", "government_holding"),
        blocks=(SerialBlock(serial, serial, 1, 2015),),
    )  # fmt: skip
    fault = work / "seed" / "fault.id.jsonl"
    fault.write_bytes(encode_record(extra) + b"\n")
    code, out = _run_cli(c, cli_main, "import", "--config", id_cfg, str(fault))
    c.print("  " + escape(out.strip()))
    if code:
        return False
    if not _wait_for(lambda: _converged(net.configs)[0]):
        c.print("[bold red]the extra issuance did not reach the hub[/]")
        return False
    c.print("   the agent pushed it to Japan's hub; both sides reconcile:")
    ids: dict[str, set[str]] = {}
    for label, argv in (
        ("Indonesia's agent", ["--config", id_cfg]),
        ("Japan's hub", ["--config", jp_cfg, "--partnership", "JP-ID"]),
    ):
        code, out = _run_cli(c, cli_main, "reconcile", "run", *argv, "--exit-code", "--json")
        found = [d for d in json.loads(out)[0]["discrepancies"] if d["status"] == "open"]
        ids[label] = {d["id"] for d in found}
        c.print(f"   {label}: exit {code}, " + "; ".join(
            f"[yellow]{d['id'][:16]}[/] {escape(d['rule'])}" for d in found))  # fmt: skip
    if not ids["Japan's hub"] or ids["Japan's hub"] != ids["Indonesia's agent"]:
        c.print("[bold red]the two sides should find the same discrepancies[/]")
        return False
    c.print("   [green]both sides found the same discrepancy ids[/]")
    code, out = _run_cli(c, cli_main, "reconcile", "run", "--config", id_cfg)
    c.print(out.rstrip())

    c.print("\n   Moving the over-issued credit is refused while the discrepancy is open:")
    move = TransactionRecord(
        partnership="JP-ID", author="ID", created=now, registry="ID", txn_id="ID-TXN-DEMO",
        type="transfer", executed_on=date(2016, 7, 1),
        source=Account("ID-GOV-0002", "government_holding"),
        destination=Account("ID-PP-0002", "participant_holding"), amount=1,
        blocks=(SerialBlock(serial, serial, 1, 2015),),
    )  # fmt: skip
    move_file = work / "seed" / "move.id.jsonl"
    move_file.write_bytes(encode_record(move) + b"\n")
    code, _ = _run_cli(c, cli_main, "import", "--config", id_cfg, str(move_file))
    if code != 1:
        c.print("[bold red]a move of quarantined serials was accepted[/]")
        return False
    return True


def run_network_demo(args: argparse.Namespace) -> int:
    c = stdout()
    cli_main: CliMain = args.cli_main
    work = Path(args.dir) / "network"
    shutil.rmtree(work, ignore_errors=True)
    port = args.port or free_port()
    c.print(Panel("jcm-sync: Japan's registry hub and three partner agents on 127.0.0.1",
                  style="bold"))  # fmt: skip

    c.print("\n[bold]1. Provision[/] keys, JP–MN / JP–ID / JP–VN trust roots and configurations")
    ops_port = free_port()  # the hub's operations listener: /status, /metrics
    net = provision(work, DEMO_PARTNERS, hub_port=port, schedule_seconds=1.0, ops_port=ops_port,
                    conformance=True, cosign=True,  # mutual cosignature (ADR 0035)
                    witness=("MN",))  # fmt: skip  # MN serves its witness listener (ADR 0037)
    for node, cfg in net.configs.items():
        c.print(f"   {node}: {cfg}")

    c.print("\n[bold]2. Seed[/] sample records (services/sample.py): projects, JC decisions "
            "co-signed by both secretariats, each side's issuances and retirements;")  # fmt: skip
    c.print("   JP–ID includes the first JCM issuance (May 2016: 40 notified, 31 JP + 9 ID), "
            "and is the large one: 60 projects, over 1,000 records on each side")  # fmt: skip
    seed_dir = work / "seed"
    seed_dir.mkdir()
    expected: dict[str, tuple[int, int]] = {}
    article6: dict[str, SampleRecords] = {}  # imported once the issuances have arrived

    def seed(cc: str, node: str, envelopes: list[bytes], name: str) -> bool:
        f = seed_dir / f"jp-{cc.lower()}.{node.lower()}{name}.jsonl"
        f.write_bytes(b"\n".join(envelopes) + b"\n")
        argv = ["import", "--config", str(net.configs[node]), str(f)]
        if node == "JP":
            argv += ["--partnership", f"JP-{cc}"]
        code, out = _run_cli(c, cli_main, *argv)
        if code:
            c.print("[bold red]import failed[/]")
            return False
        c.print("  " + escape(out.strip()))
        return True

    for cc in DEMO_PARTNERS:
        projects, periods, jp_participants = DEMO_SCALE[cc]
        recs = partnership_records(cc, net.keys, projects=projects, periods=periods,
                                   jp_participants=jp_participants,
                                   article6=cc == "ID")  # fmt: skip
        for node in (cc, "JP"):
            if not seed(cc, node, recs.without_article6(node), ""):
                return 1
        expected[cc] = (len(recs.without_article6(cc)), len(recs.without_article6("JP")))
        if recs.article6:
            article6[cc] = recs

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
        sizes: dict[str, Any] = {}

        def converge() -> bool:
            nonlocal sizes
            started = time.monotonic()
            ok = False
            while time.monotonic() - started < CONVERGE_SECONDS:
                time.sleep(0.5)
                ok, sizes = _converged(net.configs)
                if ok and all(
                    sizes["agents"][cc] == {cc: expected[cc][0], "JP": expected[cc][1]}
                    for cc in DEMO_PARTNERS
                ):
                    c.print(f"   all logs converged in {time.monotonic() - started:.1f} s")
                    return True
            c.print(f"[bold red]not converged after {CONVERGE_SECONDS:.0f} s[/]: {sizes}")
            return False

        if not converge():
            return 1
        for cc, recs in article6.items():
            # as in the registries: the partner first transfers Japan's share once Japan's
            # issuances have arrived, then Japan records its acquisitions and NDC uses
            c.print(f"   Article 6.2 on JP–{cc}: {PARTNERS[cc]}'s authorization and first "
                    "transfers of Japan's share, then Japan's acquisitions, retirements for "
                    "its NDC and their ITMO uses")  # fmt: skip
            for node in (cc, "JP"):
                if not seed(cc, node, recs.article6[node], "-article6"):
                    return 1
                had_cc, had_jp = expected[cc]
                expected[cc] = (
                    len(recs.by_node[cc]) if node == cc else had_cc,
                    len(recs.by_node["JP"]) if node == "JP" else had_jp,
                )
                if not converge():
                    return 1

        c.print("\n[bold]4. Status[/] of each partnership, from each agent and from the hub")
        for node in (*DEMO_PARTNERS, "JP"):
            code, out = _run_cli(c, cli_main, "status", "--config", str(net.configs[node]))
            c.print(out.rstrip())
        table = Table("partnership", "partner", "partner's log", "Japan's log", "state")
        for cc in DEMO_PARTNERS:
            a = sizes["agents"][cc]
            table.add_row(f"JP-{cc}", PARTNERS[cc], str(a[cc]), str(a["JP"]), "[green]in sync[/]")
        c.print(table)

        if not _reconcile_steps(c, cli_main, net, work):
            return 1

        c.print("\n[bold]7. Go-live conformance[/]: Mongolia's secretariat runs the suite "
                "against the live hub's sandbox (own trust root, origins and store)")  # fmt: skip
        mn, out_dir = str(net.configs["MN"]), str(work / "conformance")
        code, out = _run_cli(c, cli_main, "conformance", "run", "--config", mn, "--out", out_dir)
        c.print(out.rstrip())
        if code:
            c.print("[bold red]the conformance run against the demo hub failed[/]")
            return 1

        if args.keep_running:
            c.print("\n[bold]Running.[/] Hub API (partners) and operations pages:")
            for path in ("/livez", "/readyz"):
                c.print(f"   {net.hub_url}{path}")
            for path in ("/status", "/metrics"):  # the operations listener only (ADR 0019)
                c.print(f"   http://127.0.0.1:{ops_port}{path}")
            c.print(f"   agents' logs: {work}/<cc>/node.log; stop with Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for p in procs.values()):
                    time.sleep(1)
        c.print("\n[bold green]ok[/]: every partner's log is at Japan's hub and Japan's "
                "log at every partner, verified record by record.")  # fmt: skip
        return 0
    finally:
        stop_processes(procs.values(), timeout=15)
        for f in logs:
            f.close()
