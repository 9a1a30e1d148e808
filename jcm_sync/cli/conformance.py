"""``jcm-sync conformance run``: the go-live conformance suite against a live hub.

The command parses, runs ``services.conformance_runner`` and renders: a pass/fail
table on stdout, a JSON report and one self-contained HTML report (no script, no
external style or font: it opens from a mail attachment or an archive). Exit codes
(docs/adr/0021-conformance-sandbox.md):

* 0: every check passed;
* 1: a check failed or was skipped (the table and both reports say which and why);
* 2: the run cannot start: a configuration that is not a partner agent's, a hub that
  cannot be reached, or one that serves no conformance sandbox. One line says why,
  a second line the next step; no report is written.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jcm_sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, note, stderr, stdout, write_output
from jcm_sync.errors import (
    ConfigError,
    JcmSyncError,
    PeerRefusedError,
    SandboxUnavailableError,
    TransportError,
)
from jcm_sync.local.config import Config, load_config

if TYPE_CHECKING:
    from jcm_sync.core.envelope import AnyPrivateKey
    from jcm_sync.services.conformance_runner import RunReport

EXIT_CANNOT_START: Final = EXIT_USAGE
UNREACHABLE_STEP: Final = "check that the hub runs and that [hub] url (or --hub) is its address"
STATUS_STYLE: Final = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("conformance", help="the go-live conformance suite against a live hub")
    cs = c.add_subparsers(dest="conformance_cmd", required=True, metavar="COMMAND")
    run = cs.add_parser(
        "run", help="run the scripted sandbox partnership against the hub; 0 only if all pass"
    )
    run.add_argument("--config", required=True, type=Path, help="the partner agent's TOML")
    run.add_argument("--hub", metavar="URL", help="the hub's URL (default: [hub] url)")
    run.add_argument("--out", type=Path, default=Path("."),
                     help="folder of the reports (default: the current one)")  # fmt: skip
    run.add_argument("--json", dest="json_file", metavar="FILE", type=Path,
                     help="JSON report (default: OUT/conformance-<partnership>.json)")  # fmt: skip
    run.add_argument("--html", dest="html_file", metavar="FILE", type=Path,
                     help="HTML report (default: OUT/conformance-<partnership>.html)")  # fmt: skip
    run.add_argument("--time-limit", metavar="SECONDS", type=float, default=300.0,
                     help="fail the run if it takes longer (default 300)")  # fmt: skip
    run.set_defaults(func=cmd_run)


def _partner_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if cfg.node.role != "agent" or cfg.hub is None:
        raise ConfigError(
            f"{args.config} configures the {cfg.node.role}; the suite runs as a partner's agent",
            where=str(args.config),
        )
    if args.hub:
        cfg = msgspec.structs.replace(cfg, hub=msgspec.structs.replace(cfg.hub, url=args.hub))
    return cfg


def _cannot_start(what: str, step: str) -> int:
    err = stderr()
    err.print(f"[red]cannot start:[/] {escape(what)}")
    err.print(f"  next step: {escape(step)}")
    return EXIT_CANNOT_START


def cmd_run(args: argparse.Namespace) -> int:
    from jcm_sync.services.node import load_keys

    try:
        cfg = _partner_config(args)
        key = load_keys(cfg).transport
    except JcmSyncError as exc:
        return _cannot_start(str(exc), exc.next_step or ConfigError.next_step)
    try:
        report = asyncio.run(_run(cfg, key, args.time_limit))
    except SandboxUnavailableError as exc:
        return _cannot_start(str(exc), exc.next_step)
    except TransportError as exc:
        if isinstance(exc, PeerRefusedError):
            raise  # the hub answered: a refusal main() prints, exit 1
        return _cannot_start(str(exc), UNREACHABLE_STEP)
    name = f"conformance-{report.partnership}"
    json_path = args.json_file or args.out / f"{name}.json"
    html_path = args.html_file or args.out / f"{name}.html"
    data = report.to_builtins()
    for path in (json_path, html_path):  # --out names a folder the run may create
        if path.parent == args.out:
            path.parent.mkdir(parents=True, exist_ok=True)
    write_output(json_path, json.dumps(data, indent=2, ensure_ascii=False).encode(), "JSON report")
    write_output(html_path, render_html(report).encode("utf-8"), "HTML report")
    print_table(stdout(), report)
    note(f"reports: {json_path} and {html_path}")
    return EXIT_OK if report.passed else EXIT_FAIL


async def _run(cfg: Config, key: AnyPrivateKey, limit: float) -> RunReport:
    """The run, cut at ``limit`` seconds: a run that takes longer fails (the go-live
    procedure's bound), with the checks it finished and a failed ``time-limit``."""
    from jcm_sync.net.sandbox import SandboxClient
    from jcm_sync.services.conformance_runner import ConformanceRunner

    assert cfg.hub is not None  # _partner_config refuses a config without [hub]
    client = SandboxClient(
        cfg.hub.url,
        key,
        timeout=cfg.hub.timeout_seconds,
        max_response=cfg.hub.max_response_bytes,
        ca_file=str(cfg.path(cfg.hub.ca_file)) if cfg.hub.ca_file else None,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="jcm-sync-conformance-") as work:
            runner = ConformanceRunner(cfg, client, Path(work), hub=cfg.hub.url)
            try:
                return await asyncio.wait_for(runner.run(), limit)
            except TimeoutError:
                return _timed_out(runner.report, limit)
    finally:
        await client.close()


def _timed_out(report: RunReport, limit: float) -> RunReport:
    """The report of a run stopped at ``limit``: the check it was in fails, and so does
    the ``time-limit`` check added after it."""
    from jcm_sync.services.conformance_runner import Check

    running = [c for c in report.checks if c.status == "SKIP" and not c.detail]
    for c in running:
        c.status, c.detail = "FAIL", f"stopped by the time limit of {limit:g} s"
    during = f", during {running[0].name}" if running else ""
    report.checks.append(
        Check("time-limit", f"the run finishes within {limit:g} s", "FAIL",
              f"the run did not finish within {limit:g} s{during}")
    )  # fmt: skip
    report.seconds = limit
    return report


def print_table(console: Console, report: RunReport) -> None:
    t = Table(title=f"go-live conformance: {report.partnership} ({report.node}) at {report.hub}")
    for col in ("#", "check", "result", "detail", "s"):
        t.add_column(col, overflow="fold")
    for n, c in enumerate(report.checks, 1):
        style = STATUS_STYLE[c.status]
        t.add_row(str(n), c.name, f"[{style}]{c.status}[/]", escape(c.detail), f"{c.seconds:.2f}")
    console.print(t)
    counts = report.counts()
    verdict = "[green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(
        f"{verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
        f"in {report.seconds:.1f} s (session {report.session or 'none'})"
    )


_CSS: Final = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}"
    ".PASS{color:#060;font-weight:bold}.FAIL{color:#b00;font-weight:bold}"
    ".SKIP{color:#a60;font-weight:bold}td.s{text-align:right}"
)


def render_html(report: RunReport) -> str:
    """One self-contained page: the run's facts and the table, every value escaped."""
    e = html.escape
    counts = report.counts()
    verdict = "PASSED" if report.passed else "FAILED"
    rows = "".join(
        f"<tr><td>{n}</td><td>{e(c.name)}</td><td>{e(c.title)}</td>"
        f'<td class="{c.status}">{c.status}</td><td>{e(c.detail)}</td>'
        f'<td class="s">{c.seconds:.2f}</td></tr>\n'
        for n, c in enumerate(report.checks, 1)
    )
    facts = {
        "partnership": report.partnership,
        "node": report.node,
        "hub": report.hub,
        "session": report.session or "none",
        "sandbox origins": report.origin_prefix or "none",
        "started": report.started.isoformat(timespec="seconds"),
        "duration": f"{report.seconds:.1f} s",
        "result": f"{verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, "
        f"{counts['SKIP']} skipped",
    }
    dl = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts.items())
    title = f"jcm-sync go-live conformance: {report.partnership} {verdict}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{e(title)}</h1>\n<table>{dl}</table>\n<h2>Checks</h2>\n"
        "<table><tr><th>#</th><th>check</th><th>what</th><th>result</th><th>detail</th>"
        f"<th>seconds</th></tr>\n{rows}</table>\n</body></html>\n"
    )
