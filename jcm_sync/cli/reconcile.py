"""``jcm-sync reconcile``: run reconciliation, show its history, sign resolutions.

``run`` prints one table per stage (what was compared, what differs and by how much,
which serial ranges); ``--json`` gives the same content as data. ``--exit-code`` makes
``run`` exit 1 while open discrepancies remain, like ``git diff --exit-code``.
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
from jcm_sync.config import Config, load_config
from jcm_sync.errors import BadDataError
from jcm_sync.reconcile.model import Discrepancy, Report, Trail


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("reconcile", help="check that both registries' records agree")
    rs = r.add_subparsers(dest="reconcile_cmd", required=True, metavar="COMMAND")

    run = rs.add_parser("run", help="reconcile now, at the latest checkpoints of both logs")
    _common(run)
    run.add_argument(
        "--exit-code", action="store_true", help="exit 1 when open discrepancies remain"
    )
    run.set_defaults(func=cmd_run)

    st = rs.add_parser("status", help="last run and every discrepancy found, by status")
    _common(st)
    st.set_defaults(func=cmd_status)

    show = rs.add_parser("show", help="one discrepancy: records, serial ranges, trail")
    show.add_argument("id", metavar="ID", help="discrepancy id")
    _common(show)
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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    p.add_argument("--partnership", help="only this partnership (default: all of the node's)")
    add_json(p)


def _partnerships(cfg: Config, args: argparse.Namespace) -> list[str]:
    if args.partnership:
        cfg.partnership(args.partnership)  # ConfigError if the node does not serve it
        return [args.partnership]
    return [p.id for p in cfg.partnerships]


def _builtins(value: object) -> Any:
    return msgspec.to_builtins(value, order="sorted")


def _with_node(cfg: Config, work: Callable[[Any], Any]) -> Any:
    """Open the node, run ``work(service)``, close the node."""
    from jcm_sync.node import open_node
    from jcm_sync.reconcile_service import ReconcileService

    async def main() -> Any:
        node = await open_node(cfg)
        try:
            return await work(ReconcileService(node))
        finally:
            await node.close()

    return asyncio.run(main())


# --- run ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    pids = _partnerships(cfg, args)

    async def work(service: Any) -> list[Any]:
        return [await service.reconcile(pid) for pid in pids]

    results = _with_node(cfg, work)
    data = [
        {
            "partnership": r.report.partnership,
            "run": _builtins(r.run),
            "report": _builtins(r.report),
            "discrepancies": _builtins(sorted(r.history.discrepancies.values(), key=_order)),
        }
        for r in results
    ]

    def human(c: Console) -> None:
        for r in results:
            _print_run(c, r.report, r.run, r.history.discrepancies)

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


def _findings_table(found: Sequence[Discrepancy], title: str) -> Table:
    """One row per finding: id and rule, what differs (and by how much), which serials."""
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("id / rule", no_wrap=True)
    table.add_column("what differs", ratio=3)
    table.add_column("by", no_wrap=True, justify="right")
    table.add_column("serial ranges", ratio=2, overflow="fold")
    for d in found:
        diff = d.difference
        status = "" if d.status == "open" else f"\n[green]{d.status}[/]"
        table.add_row(
            f"[bold]{d.id}[/]\n{d.rule}{status}",
            escape(d.summary),
            "-" if diff is None else f"{diff:+d}",
            escape(_ranges(d)),
        )
    return table


def _print_run(c: Console, report: Report, run: Any, history: dict[str, Discrepancy]) -> None:
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
    stage1 = [d for d in report.discrepancies if d.stage == "totals"]
    if stage1:
        c.print(_findings_table(stage1, "notified vs issued, balances"))
    if t.balances:
        bal = Table(title="issued - cancelled - retired - moved out = held", title_justify="left")
        for col in ("registry", "account type", "issued", "in", "out", "cancelled", "retired",
                    "held", "by serials"):  # fmt: skip
            bal.add_column(col, justify="left" if col in ("registry", "account type") else "right")
        for row in t.balances:
            mark = "" if row.held == row.held_serials else " [yellow]≠[/]"
            bal.add_row(
                row.registry, _TYPES.get(row.account_type, row.account_type), str(row.issued),
                str(row.moved_in), str(row.moved_out), str(row.cancelled), str(row.retired),
                str(row.held), f"{row.held_serials}{mark}",
            )  # fmt: skip
        c.print(bal)
    b = report.blocks
    c.print(
        f"\n[bold]Stage 2, serial blocks[/]: {b.issued_blocks} blocks issued "
        f"({b.issued_serials} serials), {b.moved_blocks} moved ({b.moved_serials} serials) "
        f"in {', '.join(b.registries) or 'no registry'}"
    )
    stage2 = [d for d in report.discrepancies if d.stage in ("blocks", "records")]
    if stage2:
        c.print(_findings_table(stage2, "serial blocks and records"))
    c.print(f"\n[bold]Stage 3, trail[/]: {len(report.trails)} ranges traced")
    for trail in report.trails:
        _print_trail(c, trail)
    a = report.article6
    c.print(f"\n[bold]Article 6.2[/]: {a.actions} ITMO actions")
    if a.authorizations:
        auth = Table("party", "authorization", "cap", "first transferred", "remaining")
        for arow in a.authorizations:
            rem = arow.remaining
            auth.add_row(
                arow.party, arow.authorization_id, str(arow.cap), str(arow.first_transferred),
                f"[red]{rem}[/]" if rem < 0 else str(rem),
            )  # fmt: skip
        c.print(auth)
    article6 = [d for d in report.discrepancies if d.stage == "article6"]
    if article6:
        c.print(_findings_table(article6, "Article 6.2"))
    if report.pending:
        c.print(f"\n[bold]Pending[/] (awaited, not discrepancies): {len(report.pending)}")
        pend = Table("what", "detail")
        for p in report.pending:
            pend.add_row(p.what, escape(p.summary))
        c.print(pend)
    _print_history(c, history)


def _print_trail(c: Console, trail: Trail) -> None:
    rng = trail.range
    table = Table(title=f"{trail.discrepancy_id}: {rng.describe()}", title_justify="left")
    table.add_column("record", overflow="fold")
    for col in ("action", "serials", "from", "to", "on"):
        table.add_column(col, no_wrap=col in ("serials", "on"))
    for s in trail.steps:
        r = s.range
        serials = f"{r.first}..{r.last} ({r.quantity})" if r.first != r.last else f"{r.first} (1)"
        table.add_row(escape(s.record.key), s.action, serials, s.source or "-",
                      s.destination or "-", s.on)  # fmt: skip
    c.print(table)


def _print_history(c: Console, history: dict[str, Discrepancy]) -> None:
    if not history:
        c.print("\nno discrepancies found, now or before")
        return
    table = Table(title="Discrepancies (history)", title_justify="left")
    table.add_column("id", no_wrap=True)
    for col in ("status", "rule", "first seen", "resolved"):
        table.add_column(col, overflow="fold")
    for d in sorted(history.values(), key=_order):
        table.add_row(d.id, d.status, d.rule, _when(d.first_seen), _when(d.resolved_at))
    c.print(table)


# --- status and show ---------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from jcm_sync.reconcile_service import read_history

    cfg = load_config(args.config)
    data = []
    for pid in _partnerships(cfg, args):
        h = read_history(cfg.data_dir, pid)
        counts = {s: sum(1 for d in h.discrepancies.values() if d.status == s)
                  for s in ("open", "explained", "resolved")}  # fmt: skip
        data.append(
            {
                "partnership": pid,
                "last_run": _builtins(h.last_run) if h.last_run else None,
                "counts": counts,
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
            h = read_history(cfg.data_dir, p["partnership"])
            if h.discrepancies:
                _print_history(c, h.discrepancies)

    emit(args, data, human)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from jcm_sync.errors import NotFoundError
    from jcm_sync.reconcile_service import read_history, read_report

    cfg = load_config(args.config)
    for pid in _partnerships(cfg, args):
        d = read_history(cfg.data_dir, pid).discrepancies.get(args.id)
        if d is None:
            continue
        report = read_report(cfg.data_dir, pid)
        trails = [t for t in (report.trails if report else ()) if t.discrepancy_id == d.id]
        data = {"partnership": pid, "discrepancy": _builtins(d), "trails": _builtins(trails)}

        def human(c: Console, d: Discrepancy = d, trails: list[Trail] = trails) -> None:
            c.print(f"[bold]{d.id}[/] {d.rule} ({d.stage}): [bold]{d.status}[/]")
            c.print(escape(d.summary))
            if d.expected is not None and d.found is not None:
                c.print(f"expected {d.expected}, found {d.found} ({d.found - d.expected:+d})")
            c.print(f"first seen {_when(d.first_seen)}, last seen {_when(d.last_seen)}"
                    + (f", resolved {_when(d.resolved_at)}" if d.resolved_at else ""))  # fmt: skip
            c.print("Records:")
            for ref in d.records:
                c.print(f"  {ref.kind} {escape(ref.key)} (by {ref.author})\n    {ref.record_id}")
            if d.ranges:
                c.print("Serial ranges (quarantined while open):")
                for rng in d.ranges:
                    c.print(f"  {escape(rng.describe())}")
            for e in d.explanations:
                what = escape(e.explanation) if e.action == "explain" else ", ".join(e.corrections)
                c.print(f"{e.author} {e.action}: {what}")
            for t in trails:
                _print_trail(c, t)

        emit(args, data, human)
        return EXIT_OK
    raise NotFoundError(f"no discrepancy {args.id}; run `jcm-sync reconcile run` first")


# --- resolve -----------------------------------------------------------------------------


def cmd_resolve(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.explain is not None and not args.explain.strip():
        raise BadDataError("--explain needs a text")

    async def work(service: Any) -> tuple[str, str, bytes]:
        result: tuple[str, str, bytes] = await service.resolve(
            args.id,
            partnership=args.partnership,
            explanation=args.explain,
            corrections=args.correct or (),
        )
        return result

    pid, rid, _ = _with_node(cfg, work)
    action = "explain" if args.explain is not None else "correct"
    data = {"partnership": pid, "discrepancy": args.id, "action": action, "record_id": rid}
    emit(args, data, lambda c: c.print(f"{pid}: signed {action} resolution {rid} of {args.id}"))
    note("the counterpart sees it once replicated; it is explained when both sides explain it")
    return EXIT_OK
