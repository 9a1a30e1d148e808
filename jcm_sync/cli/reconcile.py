"""``jcm-sync reconcile``: run reconciliation, show its history, sign resolutions.

Output stays readable at any volume (ADR 0012): ``run`` prints a summary, a line per
stage (what was compared), the findings counted per rule, the first ``--limit``
findings (two lines each: id, rule and difference; summary and first serial range)
and the path of the full JSON report it wrote; ``--json`` prints everything as data.
``show`` lists the first ``--limit`` records, ranges and trail steps of one finding and
says how many more there are. ``--exit-code`` makes ``run`` exit 1 while open
discrepancies remain, like ``git diff --exit-code``. ``report`` writes the last run,
stored, as a file for the Joint Committee (``services.jc_report``, ADR 0025).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jcm_sync.cli.common import EXIT_FAIL, EXIT_OK, add_json, emit, note
from jcm_sync.core.reconcile.model import Discrepancy, Pending, Report, Trail
from jcm_sync.errors import BadDataError
from jcm_sync.local.config import Config, load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("reconcile", help="check that both registries' records agree")
    rs = r.add_subparsers(dest="reconcile_cmd", required=True, metavar="COMMAND")

    run = rs.add_parser("run", help="reconcile now, at the latest checkpoints of both logs")
    _common(run)
    run.add_argument(
        "--exit-code", action="store_true", help="exit 1 when open discrepancies remain"
    )
    _limit(run, "findings listed")
    run.set_defaults(func=cmd_run)

    st = rs.add_parser("status", help="last run and every discrepancy found, by status")
    _common(st)
    _limit(st, "discrepancies listed")
    st.set_defaults(func=cmd_status)

    show = rs.add_parser("show", help="one discrepancy: records, serial ranges, trail")
    show.add_argument("id", metavar="ID", help="discrepancy id")
    _common(show)
    _limit(show, "records, ranges, trails and trail steps listed")
    show.set_defaults(func=cmd_show)

    res = rs.add_parser("resolve", help="sign a resolution of a discrepancy into this node's log")
    res.add_argument("id", metavar="ID", help="discrepancy id")
    _common(res)
    how = res.add_mutually_exclusive_group(required=True)
    how.add_argument("--explain", metavar="TEXT", help="why the records rightly differ")
    how.add_argument(
        "--correct", nargs="+", metavar="RECORD_ID", help="the records that correct it"
    )
    res.set_defaults(func=cmd_resolve)

    rep = rs.add_parser(
        "report", help="write the last run's report for the Joint Committee, as XLSX or HTML"
    )
    _common(rep)
    rep.add_argument("--format", required=True, choices=("xlsx", "html"), help="file format")
    rep.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="file to write, or an existing folder (default: jc-report-<partnership>.<format> "
        "in the current folder)",
    )
    rep.set_defaults(func=cmd_report)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    p.add_argument("--partnership", help="only this partnership (default: all of the node's)")
    add_json(p)


DEFAULT_LIMIT = 20


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def _limit(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"{what}, at most (default {DEFAULT_LIMIT}; --json gives all)",
    )


def _age(p: Pending) -> str:
    """`` (12 days, a finding from 2026-03-01)``: how long it has been awaited and its
    deadline, when the report was judged on a day and the rule has one."""
    parts = []
    if p.age_days is not None:
        parts.append(f"{p.age_days} day{'' if p.age_days == 1 else 's'}")
    if p.due is not None:
        parts.append(f"a finding from {p.due}")
    return f" ({', '.join(parts)})" if parts else ""


def _more(total: int, shown: int, what: str, hint: str = "") -> str | None:
    """The "… and K more" line, or None when everything was shown."""
    if total <= shown:
        return None
    return f"… and {total - shown} more {what}" + (f" ({hint})" if hint else "")


def _partnerships(cfg: Config, args: argparse.Namespace) -> list[str]:
    if args.partnership:
        cfg.partnership(args.partnership)  # ConfigError if the node does not serve it
        return [args.partnership]
    return [p.id for p in cfg.partnerships]


def _builtins(value: object) -> Any:
    return msgspec.to_builtins(value, order="sorted")


def _with_node(cfg: Config, work: Callable[[Any], Any]) -> Any:
    """Open the node, run ``work(service)``, close the node."""
    from jcm_sync.services.node import open_node
    from jcm_sync.services.reconciliation import ReconcileService

    box: list[Any] = []

    async def main() -> None:
        node = await open_node(cfg)
        try:
            box.append(await work(ReconcileService(node)))
        finally:
            await node.close()

    # The result is handed out through ``box``, not returned: on exit asyncio.run
    # restores its SIGINT handler, a partial naming the main task, and Python 3.11's
    # signal module builds (and drops) the repr of that handler, result included,
    # which took seconds for a report of a thousand findings.
    asyncio.run(main())
    return box[0]


def _with_store(cfg: Config, work: Callable[[Any], Any]) -> Any:
    """Open the node's store (no keys needed), run ``work(store)``, close it: the
    history and reports live in the store (ADR 0027)."""
    from jcm_sync.services.node import open_node_store

    box: list[Any] = []

    async def main() -> None:
        store = await open_node_store(cfg)
        try:
            box.append(await work(store))
        finally:
            await store.close()

    asyncio.run(main())  # the result goes through ``box``, as in ``_with_node``
    return box[0]


# --- run ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    pids = _partnerships(cfg, args)

    async def work(service: Any) -> list[Any]:
        return [await service.reconcile(pid) for pid in pids]

    results = _with_node(cfg, work)
    data = (  # built only for --json: the whole report is large at volume
        [
            {
                "partnership": r.report.partnership,
                "run": _builtins(r.run),
                "report": _builtins(r.report),
                "discrepancies": _builtins(sorted(r.history.discrepancies.values(), key=_order)),
            }
            for r in results
        ]
        if args.json
        else None
    )

    def human(c: Console) -> None:
        for r in results:
            hint = f"jcm-sync reconcile report --partnership {r.report.partnership} --out FILE"
            _print_run(c, r.report, r.run, r.history.discrepancies, args.limit, hint)

    emit(args, data, human)
    open_ = sum(r.run.open for r in results)
    return EXIT_FAIL if args.exit_code and open_ else EXIT_OK


def _order(d: Discrepancy) -> tuple[int, str, str]:
    rank = {"open": 0, "explained": 1, "resolved": 2}[d.status]
    return rank, d.rule, d.id


def _ranges(d: Discrepancy, limit: int = 3) -> str:
    shown = [r.describe() for r in d.ranges[:limit]]
    if len(d.ranges) > limit:
        shown.append(f"… {len(d.ranges) - limit} more")
    return "\n".join(shown) or "-"


_STATUS_STYLE = {
    "completed": "green",
    "completed_with_manual_intervention": "green",
    "totals_inconsistent": "bold red",
    "blocks_inconsistent": "bold red",
    "initiated": "yellow",
}


_TYPES = {"government_holding": "government", "participant_holding": "participant"}


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else "-"


def _finding_lines(d: Discrepancy, width: int = 160) -> str:
    """A finding in two lines: id, rule, status and difference; summary and first range."""
    diff = d.difference
    status = "" if d.status == "open" else f" [green]{d.status}[/]"
    by = "" if diff is None else f"  by {diff:+d}"
    summary = d.summary if len(d.summary) <= width else d.summary[: width - 1] + "…"
    where = ""
    if d.ranges:
        where = f"  [{escape(d.ranges[0].describe())}"
        where += f", +{len(d.ranges) - 1} more]" if len(d.ranges) > 1 else "]"
    return f"  [bold]{d.id}[/] {d.rule}{status}{by}\n    {escape(summary)}{where}"


def _rule_counts(found: Sequence[Discrepancy]) -> Table:
    table = Table(title="Findings per rule", title_justify="left")
    for col in ("rule", "stage", "open", "explained", "resolved"):
        table.add_column(col, justify="left" if col in ("rule", "stage") else "right")
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for d in found:
        row = counts.setdefault((d.rule, d.stage), {"open": 0, "explained": 0, "resolved": 0})
        row[d.status] += 1
    for (rule, stage), row in sorted(counts.items()):
        table.add_row(rule, stage, *(str(row[s]) for s in ("open", "explained", "resolved")))
    return table


def _print_run(
    c: Console,
    report: Report,
    run: Any,
    history: dict[str, Discrepancy],
    limit: int = DEFAULT_LIMIT,
    report_hint: str | None = None,
) -> None:
    """A bounded summary: about 40 lines plus two per listed finding, at any volume."""
    at = " / ".join(f"{lg.node} {lg.size}" for lg in report.logs)
    style = _STATUS_STYLE.get(report.status, "")
    c.print(
        f"[bold]{report.partnership}[/] reconciled at log sizes {at}"
        f"{' (incremental)' if run.incremental else ''}: "
        f"[{style}]{report.status.replace('_', ' ').upper()}[/]"
    )
    t = report.totals
    c.print(
        f"\n[bold]Stage 1, totals[/]: {t.decisions} effective decisions, "
        f"{t.sides_compared} sides compared (notified vs issued), {t.sides_differing} differ"
    )
    if t.balances:
        bal = Table(title="issued - cancelled - retired - moved out = held", title_justify="left")
        for col in ("registry", "account type", "issued", "in", "out", "cancelled", "retired",
                    "held", "by serials"):  # fmt: skip
            bal.add_column(col, justify="left" if col in ("registry", "account type") else "right")
        for row in t.balances[:limit]:
            mark = "" if row.held == row.held_serials else " [yellow]≠[/]"
            bal.add_row(
                row.registry, _TYPES.get(row.account_type, row.account_type), str(row.issued),
                str(row.moved_in), str(row.moved_out), str(row.cancelled), str(row.retired),
                str(row.held), f"{row.held_serials}{mark}",
            )  # fmt: skip
        c.print(bal)
        if more := _more(len(t.balances), limit, "balance rows", "--json"):
            c.print(more)
    b = report.blocks
    c.print(
        f"[bold]Stage 2, serial blocks[/]: {b.issued_blocks} blocks issued "
        f"({b.issued_serials} serials), {b.moved_blocks} moved ({b.moved_serials} serials) "
        f"in {', '.join(b.registries) or 'no registry'}"
    )
    c.print(
        f"[bold]Stage 3, trail[/]: {len(report.trails)} ranges traced"
        + (" (each in `jcm-sync reconcile show ID`)" if report.trails else "")
    )
    a = report.article6
    c.print(
        f"[bold]Article 6.2[/]: {a.actions} ITMO actions, {len(a.authorizations)} authorizations"
    )
    if a.authorizations:
        auth = Table("party", "authorization", "cap", "first transferred", "remaining")
        for arow in a.authorizations[:limit]:
            rem = arow.remaining
            auth.add_row(
                arow.party, arow.authorization_id, str(arow.cap), str(arow.first_transferred),
                f"[red]{rem}[/]" if rem < 0 else str(rem),
            )  # fmt: skip
        c.print(auth)
        if more := _more(len(a.authorizations), limit, "authorizations", "--json"):
            c.print(more)
    if report.pending:
        c.print(f"[bold]Pending[/] (awaited, not discrepancies): {len(report.pending)}")
        for p in report.pending[:limit]:
            c.print(f"  {p.what}{_age(p)}: {escape(p.summary)}")
        if more := _more(len(report.pending), limit, "pending", "--json"):
            c.print(more)
    found = sorted(report.discrepancies, key=_order)
    n_open = sum(d.status == "open" for d in found)
    c.print(
        f"\n[bold]Findings[/]: {len(found)} ({n_open} open, "
        f"{sum(d.status == 'explained' for d in found)} explained, "
        f"{sum(d.status == 'resolved' for d in found)} resolved)"
    )
    if found:
        c.print(_rule_counts(found))
        c.print(f"first {min(limit, len(found))} of {len(found)}, open first:")
        for d in found[:limit]:
            c.print(_finding_lines(d))
        hint = "jcm-sync reconcile show ID, or --json"
        if more := _more(len(found), limit, "findings", hint):
            c.print(more)
    _print_history_counts(c, history)
    if report_hint is not None:
        c.print(f"full report: {escape(report_hint)} (or --json)")


def _print_history_counts(c: Console, history: dict[str, Discrepancy]) -> None:
    if not history:
        c.print("no discrepancies found, now or before")
        return
    from jcm_sync.services.run_history import count_statuses

    counts = count_statuses(history.values())
    c.print(
        f"history: {len(history)} discrepancies ever found: {counts['open']} open, "
        f"{counts['explained']} explained, {counts['resolved']} resolved "
        "(jcm-sync reconcile status)"
    )


def _print_trail(c: Console, trail: Trail, limit: int = DEFAULT_LIMIT) -> None:
    rng = trail.range
    table = Table(title=f"{trail.discrepancy_id}: {rng.describe()}", title_justify="left")
    table.add_column("record", overflow="fold")
    for col in ("action", "serials", "from", "to", "on"):
        table.add_column(col, no_wrap=col in ("serials", "on"))
    for s in trail.steps[:limit]:
        r = s.range
        serials = f"{r.first}..{r.last} ({r.quantity})" if r.first != r.last else f"{r.first} (1)"
        table.add_row(escape(s.record.key), s.action, serials, s.source or "-",
                      s.destination or "-", s.on)  # fmt: skip
    c.print(table)
    if more := _more(len(trail.steps), limit, "steps of this trail", "--json"):
        c.print(more)


def _print_history(c: Console, history: dict[str, Discrepancy], limit: int = DEFAULT_LIMIT) -> None:
    if not history:
        c.print("\nno discrepancies found, now or before")
        return
    table = Table(title="Discrepancies (history), open first", title_justify="left")
    table.add_column("id", no_wrap=True)
    for col in ("status", "rule", "first seen", "resolved"):
        table.add_column(col, overflow="fold")
    for d in sorted(history.values(), key=_order)[:limit]:
        table.add_row(d.id, d.status, d.rule, _when(d.first_seen), _when(d.resolved_at))
    c.print(table)
    if more := _more(len(history), limit, "discrepancies", "--limit N, or --json"):
        c.print(more)


# --- status and show ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from jcm_sync.services.run_history import read_history

    cfg = load_config(args.config)
    pids = _partnerships(cfg, args)

    async def work(store: Any) -> dict[str, Any]:
        return {pid: await read_history(store, pid) for pid in pids}

    histories = _with_store(cfg, work)
    data = []
    for pid, h in histories.items():
        data.append(
            {
                "partnership": pid,
                "last_run": _builtins(h.last_run) if h.last_run else None,
                "counts": h.counts(),
                "discrepancies": _builtins(sorted(h.discrepancies.values(), key=_order)),
            }
        )

    def human(c: Console) -> None:
        for p in data:
            run = p["last_run"]
            if run is None:
                c.print(f"[bold]{p['partnership']}[/]: never reconciled")
                continue
            style = _STATUS_STYLE.get(run["status"], "")
            c.print(
                f"[bold]{p['partnership']}[/]: last run {run['started_at']} "
                f"[{style}]{run['status'].replace('_', ' ')}[/]"
                + (f" ([red]{escape(run['error'])}[/])" if run.get("error") else "")
                + f"; {p['counts']['open']} open, {p['counts']['explained']} explained, "
                f"{p['counts']['resolved']} resolved"
            )
            h = histories[p["partnership"]]
            if h.discrepancies:
                _print_history(c, h.discrepancies, args.limit)

    emit(args, data, human)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from jcm_sync.services.reconciliation import find_discrepancy

    cfg = load_config(args.config)
    pids = _partnerships(cfg, args)

    async def work(store: Any) -> tuple[str, Discrepancy, list[Any]]:
        return await find_discrepancy(store, pids, args.id)

    pid, d, trails = _with_store(cfg, work)
    data = {"partnership": pid, "discrepancy": _builtins(d), "trails": _builtins(trails)}

    def human(c: Console) -> None:
        c.print(f"[bold]{d.id}[/] {d.rule} ({d.stage}): [bold]{d.status}[/]")
        c.print(escape(d.summary))
        if d.expected is not None and d.found is not None:
            c.print(f"expected {d.expected}, found {d.found} ({d.found - d.expected:+d})")
        c.print(f"first seen {_when(d.first_seen)}, last seen {_when(d.last_seen)}"
                + (f", resolved {_when(d.resolved_at)}" if d.resolved_at else ""))  # fmt: skip
        n, hint = args.limit, "--limit N, or --json"
        c.print(f"Records ({len(d.records)}):")
        for ref in d.records[:n]:
            c.print(f"  {ref.kind} {escape(ref.key)} (by {ref.author})\n    {ref.record_id}")
        if more := _more(len(d.records), n, "records", hint):
            c.print(f"  {more}")
        if d.ranges:
            c.print(f"Serial ranges (quarantined while open; {len(d.ranges)}):")
            for rng in d.ranges[:n]:
                c.print(f"  {escape(rng.describe())}")
            if more := _more(len(d.ranges), n, "ranges", hint):
                c.print(f"  {more}")
        for e in d.explanations:
            what = escape(e.explanation) if e.action == "explain" else ", ".join(e.corrections)
            c.print(f"{e.author} {e.action}: {what}")
        for t in trails[:n]:
            _print_trail(c, t, n)
        if more := _more(len(trails), n, "trails", hint):
            c.print(more)

    emit(args, data, human)
    return EXIT_OK


# --- resolve -----------------------------------------------------------------------------


def cmd_resolve(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.explain is not None and not args.explain.strip():
        raise BadDataError("--explain needs a text")

    async def work(service: Any) -> tuple[str, str, bytes]:
        from jcm_sync.services.own_log import resolve

        return await resolve(
            service.node,
            args.id,
            partnership=args.partnership,
            explanation=args.explain,
            corrections=args.correct or (),
        )

    pid, rid, _ = _with_node(cfg, work)
    action = "explain" if args.explain is not None else "correct"
    data = {"partnership": pid, "discrepancy": args.id, "action": action, "record_id": rid}
    emit(args, data, lambda c: c.print(f"{pid}: signed {action} resolution {rid} of {args.id}"))
    note("the counterpart sees it once replicated; it is explained when both sides explain it")
    return EXIT_OK


# --- report ------------------------------------------------------------------------------


def _report_paths(args: argparse.Namespace, pids: list[str]) -> dict[str, Path]:
    """Where each partnership's report goes: ``--out`` (a file, or a folder that exists)
    or ``jc-report-<partnership>.<format>`` in the current folder."""
    out: Path | None = args.out
    name = {pid: Path(f"jc-report-{pid}.{args.format}") for pid in pids}
    if out is None:
        return name
    if out.is_dir():
        return {pid: out / n for pid, n in name.items()}
    if len(pids) > 1:
        err = BadDataError(
            f"--out names one file and this node serves {len(pids)} partnerships "
            f"({', '.join(pids)})"
        )
        err.next_step = "add --partnership P, or let --out name a folder that exists"
        raise err
    return {pids[0]: out}


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC

    from jcm_sync.cli.common import write_output
    from jcm_sync.services.jc_report import load_view
    from jcm_sync.services.jc_report_html import render_html
    from jcm_sync.services.jc_report_xlsx import render_xlsx

    cfg = load_config(args.config)
    paths = _report_paths(args, _partnerships(cfg, args))
    now = datetime.now(UTC)

    async def work(store: Any) -> dict[str, Any]:
        return {pid: await load_view(store, pid, cfg.node.id, now) for pid in paths}

    views = _with_store(cfg, work)
    data = []
    for pid, view in views.items():
        body = render_xlsx(view) if args.format == "xlsx" else render_html(view).encode("utf-8")
        write_output(paths[pid], body, f"{args.format.upper()} report")
        data.append({"partnership": pid, "format": args.format, "path": str(paths[pid]),
                     "status": view.status, "counts": view.counts(), "held": len(view.held),
                     "pending": len(view.pending)})  # fmt: skip

    def human(c: Console) -> None:
        for d in data:
            n = d["counts"]
            c.print(
                f"{d['partnership']}: wrote {escape(d['path'])} ({n['open']} open, "
                f"{n['explained']} explained, {n['resolved']} resolved; {d['held']} held "
                f"ranges; {d['pending']} pending)"
            )

    emit(args, data, human)
    return EXIT_OK
