"""``jcm-sync demo`` (what ``make run`` runs): the signed-record core, end to end.

It replays the first JCM issuance ever (May 2016, Indonesia) through the real
commands: keys for Japan's registry and the Indonesian and Mongolian secretariats, a
JP–ID trust root signed by both sides, the issuance decision signed by both
secretariats and verified, and then the inputs a registry must refuse: a tampered
copy, a copy signed by one side only, a record signed by a key outside the
partnership, and Indonesia's key signing a Japan-side issuance. It exits 0 only if
every good input was accepted and every bad one refused for the expected reason.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from jcm_sync.cli.common import stdout
from jcm_sync.cli.demo_network import CliMain, run_network_demo
from jcm_sync.core.records import (
    Account,
    DecisionRef,
    IssuanceDecisionRecord,
    IssuanceRecord,
    Period,
    SerialBlock,
    encode_record,
)
from jcm_sync.services.sample import first_issuance_parts


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], cli_main: CliMain) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demonstration (what `make run` runs)")
    p.add_argument("--dir", default="demo-data", help="working directory (recreated)")
    p.add_argument(
        "--part",
        choices=["records", "network", "all"],
        default="all",
        help="records: signed records and trust roots; network: hub and agents (default: all)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the hub and agents running and print their URLs (stop with Ctrl-C)",
    )
    p.add_argument("--port", type=int, default=0, help="hub port (default: a free one)")
    p.set_defaults(func=cmd_demo, cli_main=cli_main)


def first_issuance_decision(created: datetime) -> IssuanceDecisionRecord:
    """The JC decision behind the first JCM credits (carbon-pulse.com/19918, May 2016)."""
    project_id, period, decided_on, shares = first_issuance_parts()
    return IssuanceDecisionRecord(
        partnership="JP-ID",
        author="ID",
        created=created,
        project_id=project_id,
        monitoring_period=period,
        decided_on=decided_on,
        total_notified=40,
        shares=tuple(shares),
    )


def japan_issuance(created: datetime, author: str) -> IssuanceRecord:
    return IssuanceRecord(
        partnership="JP-ID",
        author=author,
        created=created,
        registry="JP",
        issuance_id="JP-ISS-2016-0001",
        decision=DecisionRef(
            project_id="ID002",
            monitoring_period=Period(datetime(2015, 4, 1).date(), datetime(2015, 12, 31).date()),
        ),
        issued_on=datetime(2016, 5, 27).date(),
        amount=27,
        account=Account(id="JP-GOV-0001", type="government_holding"),
        blocks=(SerialBlock("JP-ID002-2015-000001", "JP-ID002-2015-000027", 27, 2015),),
    )


class _StepFailed(Exception):
    """A step that must succeed did not; the demo stops there."""


class _Runner:
    """Runs CLI commands in-process, printing each like a terminal session."""

    def __init__(self, console: Console, root: Path, cli_main: CliMain) -> None:
        self.console = console
        self.root = root
        self.cli_main = cli_main
        self.failures: list[str] = []

    def run(self, *argv: str, expect: int = 0, show_out: bool = True) -> tuple[int, str, str]:
        shown = " ".join(argv)
        self.console.print(f"[dim]$[/] jcm-sync {escape(shown)}")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = self.cli_main(list(argv))
        text_out, text_err = out.getvalue(), err.getvalue()
        if show_out and text_out.strip():
            self.console.print(escape(text_out.rstrip()))
        if text_err.strip():
            style = "red" if code else "dim"
            self.console.print(f"[{style}]{escape(text_err.rstrip())}[/]")
        if code != expect:
            self.failures.append(f"jcm-sync {shown}: exit {code}, expected {expect}")
            if expect == 0:
                raise _StepFailed(shown)
        return code, text_out, text_err


def _tamper(envelope: bytes) -> bytes:
    """Change Japan's notified share from 31 to 32 and keep the old signatures."""
    env = json.loads(envelope)
    payload = base64.b64decode(env["payload"])
    assert b'"notified":31' in payload
    env["payload"] = base64.b64encode(payload.replace(b'"notified":31', b'"notified":32')).decode()
    return json.dumps(env, separators=(",", ":")).encode()


def cmd_demo(args: argparse.Namespace) -> int:
    code = 0
    if args.part in ("records", "all"):
        code = cmd_records_demo(args)
    if code == 0 and args.part in ("network", "all"):
        code = run_network_demo(args)
    return code


def cmd_records_demo(args: argparse.Namespace) -> int:
    c = stdout()
    work = Path(args.dir) / "records-demo"
    shutil.rmtree(work, ignore_errors=True)
    (work / "records").mkdir(parents=True)
    r = _Runner(c, work, args.cli_main)
    now = datetime.now(UTC).replace(microsecond=0)

    c.print(Panel("jcm-sync: signed JCM records and trust roots", style="bold"))
    with contextlib.suppress(_StepFailed):  # the failure is in r.failures
        _steps(c, r, work, now)
    if r.failures:
        c.print("[bold red]demo failed:[/]")
        for f in r.failures:
            c.print(f"  {escape(f)}")
        return 1
    c.print("\n[bold green]ok[/]: the signed decision verifies; every bad copy was refused.")
    c.print(f"Files are in {work}/.")
    return 0


def _steps(c: Console, r: _Runner, work: Path, now: datetime) -> None:
    keys, recs = work / "keys", work / "records"
    c.print("\n[bold]1. Keys[/] for Japan's registry and the Indonesian and Mongolian secretariats")
    for name in ("jp-registry", "id-secretariat", "mn-secretariat"):
        r.run("key", "generate", "--name", name, "--out", str(keys))

    c.print("\n[bold]2. The JP–ID trust root[/], signed by both sides")
    root = str(work / "jp-id.root.json")
    r.run(
        "trust", "init", "--partnership", "JP-ID",
        "--node", f"JP={keys / 'jp-registry.pub'}",
        "--node", f"ID={keys / 'id-secretariat.pub'}",
        "--sign", str(keys / "jp-registry.key"), "--out", root,
    )  # fmt: skip
    r.run("trust", "sign", root, "--key", str(keys / "id-secretariat.key"))
    r.run("trust", "verify", root)

    c.print("\n[bold]3. The first JCM issuance decision[/] (May 2016): 40 credits notified,")
    c.print("   31 to Japan's registry (27 government + 4 participant),")
    c.print("   9 to Indonesia's (5 government + 4 participant)")
    decision = recs / "decision.json"
    decision.write_bytes(encode_record(first_issuance_decision(now)))
    proposed, both = recs / "decision.id-signed.json", recs / "decision.signed.json"
    r.run("record", "sign", "--key", str(keys / "id-secretariat.key"), "--trust", root,
          str(decision), "--out", str(proposed))  # fmt: skip
    r.run("record", "sign", "--key", str(keys / "jp-registry.key"), "--trust", root,
          str(proposed), "--out", str(both))  # fmt: skip

    c.print("\n[bold]4. Verify[/] the decision signed by both secretariats")
    r.run("record", "verify", "--trust", root, str(both))

    c.print("\n[bold]5. What the partnership refuses[/]")
    tampered = recs / "decision.tampered.json"
    tampered.write_bytes(_tamper(both.read_bytes()))
    mn_signed = recs / "decision.mn-signed.json"
    jp_issuance = recs / "jp-issuance.json"
    jp_issuance.write_bytes(encode_record(japan_issuance(now, author="JP")))
    verify = ["record", "verify", "--trust", root]
    sign_as = {n: ["record", "sign", "--trust", root, "--key", str(keys / f"{n}.key")]
               for n in ("id-secretariat", "mn-secretariat")}  # fmt: skip
    cases = [
        ("tampered copy (31 → 32 for Japan)", [*verify, str(tampered)]),
        ("signed by Indonesia only", [*verify, str(proposed)]),
        (
            "signed by Mongolia's key, outside JP–ID",
            [*sign_as["mn-secretariat"], str(decision), "--out", str(mn_signed)],
        ),
        (
            "Indonesia's key signing Japan's issuance",
            [*sign_as["id-secretariat"], str(jp_issuance)],
        ),
    ]
    table = Table("input", "result", "reason")
    for label, argv in cases:
        c.print(f"\n[italic]{label}[/]")
        code, _, err = r.run(*argv, expect=1, show_out=False)
        reason = err.strip().removeprefix("refused:").strip().splitlines()[0] if err else ""
        table.add_row(label, "[red]refused[/]" if code == 1 else "[bold red]ACCEPTED[/]", reason)
    c.print()
    c.print(table)
