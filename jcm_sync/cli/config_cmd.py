"""``jcm-sync config check``: validate a configuration and show every effective value.

Why this module exists: before a service starts, an operator wants to know that its
configuration loads, its key files are readable and private, its trust roots verify,
its store URL parses and its data folder is writable, and which value came from where
(the file, an environment variable, or the default). The checks are
``services.setup.check_config``; this module prints them.

Rules:

1. Exit 0 when every check passed, 1 when one failed (each failure is printed with its
   reason) or the configuration does not load (refused, as every command refuses it).
2. Every effective value is printed with its source: ``file`` and the path, ``env`` and
   the variable's name, or ``default``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from jcm_sync.cli.common import EXIT_FAIL, EXIT_OK, add_json, emit, now_of
from jcm_sync.services.setup import ConfigReport, check_config
from jcm_sync.store import redact_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check a configuration")
    cs = p.add_subparsers(dest="config_cmd", required=True, metavar="COMMAND")
    c = cs.add_parser(
        "check",
        help="validate a configuration; print each effective value and its source",
        description="Load the configuration as the service would, check key files (readable, "
        "mode 0600), trust roots (verify, hold this node's key), the store URL and data_dir, "
        "then print every effective value with its source: file, env (the variable) or "
        "default. Exit 0 if every check passed, else 1.",
    )
    c.add_argument("--config", required=True, type=Path)
    add_json(c)
    c.set_defaults(func=cmd_check)


def _shown(key: str, value: Any) -> Any:
    if key == "node.store" and isinstance(value, str) and value:
        return redact_url(value)
    return value


def report_data(report: ConfigReport) -> dict[str, Any]:
    return {
        "config": report.loaded.path,
        "ok": report.ok,
        "checks": [{"what": c.what, "ok": c.ok, "detail": c.detail} for c in report.checks],
        "values": [
            {"key": k, "value": _shown(k, v), "source": s.kind, "from": s.detail}
            for k, v, s in report.loaded.values()
        ],
    }


def render(c: Console, report: ConfigReport) -> None:
    """One line per check, then one per value (plain lines: nothing is cut to fit)."""
    c.print(f"[bold]{escape(report.loaded.path)}[/]")
    for chk in report.checks:
        result = "[green]ok[/]    " if chk.ok else "[red]FAILED[/]"
        c.print(f"  {result} {chk.what}: {escape(chk.detail)}")
    c.print("[bold]Effective values[/] (source: file, env or default)")
    for key, value, source in report.loaded.values():
        where = f"{source.kind} {source.detail}".strip()
        c.print(f"  {key} = {escape(repr(_shown(key, value)))}  [dim]({escape(where)})[/]")
    failed = [chk.what for chk in report.checks if not chk.ok]
    if failed:
        c.print(f"[red]{len(failed)} check(s) failed:[/] {escape(', '.join(failed))}")
    else:
        c.print(f"[green]all {len(report.checks)} checks passed[/]")


def cmd_check(args: argparse.Namespace) -> int:
    report = check_config(args.config, None, now_of(args))
    emit(args, report_data(report), lambda c: render(c, report))
    return EXIT_OK if report.ok else EXIT_FAIL
