"""``jcm-sync template`` and ``jcm-sync import``: authoring records in spreadsheets.

The rules are in ``services.importer`` (what is new, held or refused),
``local.spreadsheets`` (files) and ``core.tabular`` (the layout); this module parses
arguments and prints. A refused import prints every problem on stderr, one line each
(file:sheet:row column = value: reason), writes ``--report`` if asked, then the one
refusal line.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from jcm_sync.cli.common import add_json, emit, note, stderr
from jcm_sync.core.records import KINDS
from jcm_sync.errors import BadDataError, InvalidRowsError
from jcm_sync.local.config import load_config

if TYPE_CHECKING:
    from jcm_sync.services.importer import ImportResult

FORMAT_CHOICES = ("xlsx", "csv", "jsonl", "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser(
        "template", help="write an empty XLSX or CSV template of one or every record kind"
    )
    t.add_argument("--format", choices=["xlsx", "csv"], default="xlsx")
    t.add_argument("--kind", choices=KINDS, help="only this kind (default: every kind)")
    t.add_argument(
        "--out",
        type=Path,
        help="file (.xlsx, or .csv for one kind) or folder of KIND.csv files "
        "(default: jcm-sync-template.xlsx, or the folder jcm-sync-template)",
    )
    t.set_defaults(func=cmd_template)

    im = sub.add_parser(
        "import",
        help="sign records from XLSX, CSV or JSON files into this node's own log, all or none",
    )
    im.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    im.add_argument("files", nargs="+", metavar="FILE", type=Path)
    im.add_argument("--partnership", help="needed when the node serves several")
    im.add_argument(
        "--format", choices=FORMAT_CHOICES, help="the files' format (default: by extension)"
    )
    im.add_argument("--kind", choices=KINDS, help="the record kind of CSV files")
    im.add_argument(
        "--dry-run", action="store_true", help="check every row and sign nothing into the log"
    )
    im.add_argument(
        "--report",
        type=Path,
        metavar="FILE.xlsx",
        help="on problems, write a copy of the input with bad cells highlighted and commented",
    )
    add_json(im)
    im.set_defaults(func=cmd_import)


def cmd_template(args: argparse.Namespace) -> int:
    from jcm_sync.local.spreadsheets import write_template

    kinds = [args.kind] if args.kind else list(KINDS)
    out = args.out
    if out is None:
        out = Path("jcm-sync-template.xlsx" if args.format == "xlsx" else "jcm-sync-template")
    written = write_template(out, args.format, kinds)
    for path in written:
        note(f"wrote {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    pid = args.partnership or (cfg.partnerships[0].id if len(cfg.partnerships) == 1 else None)
    if pid is None:
        raise BadDataError("this node serves several partnerships: give --partnership")
    if args.report is not None and args.report.suffix.lower() != ".xlsx":
        raise BadDataError("the report is a workbook: name it FILE.xlsx", where=str(args.report))
    from jcm_sync.local.spreadsheets import format_of

    inputs = [(path, format_of(path, args.format)) for path in args.files]
    try:
        result = asyncio.run(_import(cfg, pid, args, inputs))
    except InvalidRowsError as exc:
        err = stderr()
        for p in exc.problems:
            err.print(escape(p.line()))
        if args.report is not None:
            from jcm_sync.local.spreadsheets import write_report

            write_report(args.report, inputs, exc.problems)
            note(f"wrote the report {args.report}")
        raise

    def human(c: object) -> None:
        from rich.console import Console

        assert isinstance(c, Console)
        c.print(_summary(result))

    emit(args, result.to_builtins(), human)
    return 0


def _summary(r: ImportResult) -> str:
    if r.dry_run:
        return (
            f"{r.partnership}: dry run, nothing stored: {r.new:,} new, {r.held:,} already held "
            f"of {r.rows:,} rows; log size {r.size:,}"
        )
    return f"{r.partnership}: {r.new:,} new, {r.held:,} already held; log size {r.size:,}"


async def _import(
    cfg: object, pid: str, args: argparse.Namespace, inputs: list[tuple[Path, str]]
) -> ImportResult:
    from jcm_sync.local.config import Config
    from jcm_sync.services.importer import import_files
    from jcm_sync.services.node import open_node

    assert isinstance(cfg, Config)
    node = await open_node(cfg)
    try:
        return await import_files(node, pid, inputs, kind=args.kind, dry_run=args.dry_run)
    finally:
        await node.close()
