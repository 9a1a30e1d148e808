"""``jcm-sync status``: everything the console shows about a node, as text or ``--json``.

Why this module exists: an operator (or a monitoring script) asks one question of a
node, "is it well?", and needs the answer as an exit code and the reasons as text:
each partnership's logs with sizes, lag, last sync and last error, fork alarms, the
trust-root version, open discrepancies with their ids and rules, key and root expiry,
the hub's URL and whether the daemon runs. ``services.status_view`` gathers it; this
module only renders it.

Rules:

1. Exit codes (``status_view`` rule 5): 0 healthy; 1 when a fork alarm is raised or
   a log's last sync failed; 3 when discrepancies are open (1 wins over 3). A refusal
   (no configuration, a store that cannot be opened) is 1 with the reason on stderr,
   as for every command.
2. ``--json`` prints ``NodeStatus.to_builtins()``, nothing else on stdout; the exit code
   is the same as for the text.
3. Health is written as a word as well as a colour (never colour alone).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jcm_sync.cli.common import add_json, emit
from jcm_sync.local.config import load_config

if TYPE_CHECKING:
    from jcm_sync.services.expiry import Expiry
    from jcm_sync.services.status_view import LogView

EXIT_CODES: Final = """exit codes:
  0  healthy
  1  a log's last sync failed, or a fork alarm is raised (also any refusal)
  3  reconciliation discrepancies are open (and nothing above)"""

COLOURS: Final = {"ok": "green", "lagging": "yellow", "discrepancies": "magenta", "fork": "red"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser(
        "status",
        help="is the node well: logs, lag, syncs, discrepancies, alarms, expiry (exit 0/1/3)",
        description=(
            "Each partnership's two logs (size, lag, last sync, last error, fork alarm),\n"
            "its trust-root version and open discrepancies; this node's key and root\n"
            "expiries (a warning within 30 days), the hub's URL and whether the daemon runs."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    add_json(st)
    st.set_defaults(func=cmd_status)


def _agreed(lg: LogView) -> str:
    """The agreed size, and ``not yet agreed`` while the latest checkpoint is below quorum."""
    size = "-" if lg.agreed_size is None else str(lg.agreed_size)
    return size if lg.agreed else f"[yellow]not yet agreed[/] ({size})"


def _health(word: str) -> str:
    return f"[bold {COLOURS.get(word, 'white')}]{word.upper()}[/]"


def _expiry_lines(expiries: list[Expiry]) -> list[tuple[str, bool]]:
    """One line per trust root and per key, a key serving several roles named once."""
    lines: list[tuple[str, bool]] = []
    roles: dict[tuple[str | None, str], list[str]] = {}
    for e in expiries:
        if e.what == "key":
            roles.setdefault((e.keyid, e.describe().split(" ", 1)[1]), []).append(e.key or "")
    done = set()
    for e in expiries:
        if e.what != "key":
            lines.append((e.describe(), e.warning))
            continue
        group = (e.keyid, e.describe().split(" ", 1)[1])
        if group not in done:
            done.add(group)
            lines.append((f"{', '.join(roles[group])} {group[1]}", e.warning))
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from jcm_sync.services.status_view import NodeStatus, read_status

    status: NodeStatus = asyncio.run(read_status(load_config(args.config)))

    def human(c: Console) -> None:
        c.print(f"node {status.node} ({status.role}): health {_health(status.health)}")
        c.print(f"hub: {escape(status.hub_url or '-')}")
        if status.daemon_running:
            holder = status.daemon or {}
            since = f" since {holder['since']}" if holder.get("since") else ""
            c.print(f"daemon: running (pid {holder.get('pid', '?')}{since})")
        else:
            c.print("daemon: [yellow]not running[/]")
        for p in status.partnerships:
            version = "-" if p.trust_root_version is None else f"v{p.trust_root_version}"
            expires = p.trust_root_expires.isoformat()[:19] if p.trust_root_expires else "-"
            t = Table(
                title=f"{p.partnership} ({status.node}): {_health(p.health)}, trust root "
                f"{version} (expires {expires})"
            )
            for col in ("log", "local size", "cosigned", "agreed", "remote size", "lag",
                        "last sync", "last error"):  # fmt: skip
                t.add_column(col)
            for lg in p.logs:
                lag = "-" if lg.lag is None else str(lg.lag) + (" (lagging)" if lg.lagging else "")
                t.add_row(
                    f"{lg.node} ({'own' if lg.own else 'replica'})",
                    str(lg.local_size),
                    "-" if lg.cosigned_size is None else str(lg.cosigned_size),
                    _agreed(lg),
                    "-" if lg.remote_size is None else str(lg.remote_size),
                    lag,
                    (lg.last_sync or "never")[:19],
                    (lg.alarm and f"[bold red]FORK: {escape(lg.alarm)}[/]")
                    or escape(lg.last_error or ""),
                )
            c.print(t)
            if p.discrepancies_open:
                c.print(f"{len(p.discrepancies_open)} open discrepancies in {p.partnership}:")
            for d in p.discrepancies_open:
                seen = d.first_seen.isoformat()[:19] if d.first_seen else "?"
                late = " [bold]past grace[/]" if d.past_grace else ""
                c.print(
                    f"  {d.id}  {d.rule} ({d.stage}), first seen {seen}{late}: {escape(d.summary)}",
                    soft_wrap=True,
                )
        for a in status.alarms:
            c.print(
                f"[bold red]FORK[/] {escape(a.origin)} since {a.raised_at.isoformat()[:19]}: "
                f"{escape(a.reason)}",
                soft_wrap=True,
            )
        for line, warning in _expiry_lines(status.expiries):
            mark = "[bold yellow]warning:[/] " if warning else ""
            c.print(f"{mark}{escape(line)}", soft_wrap=True)
        described = {e.describe() for e in status.expiries}
        for w in status.warnings:
            if w not in described:
                c.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)

    emit(args, status.to_builtins(), human)
    return status.exit_code
