"""``jcm-sync export``: both logs of a partnership, as of their checkpoints, to XLSX, CSV
or JSON lines (``services.export``; docs/adr/0024-export-record-show-and-endorse.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from jcm_sync.cli.common import add_json, emit, note
from jcm_sync.errors import BadDataError
from jcm_sync.local.config import Config, load_config

if TYPE_CHECKING:
    from jcm_sync.services.export import ExportResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jcm_sync.services.export import FORMATS

    p = sub.add_parser(
        "export",
        help="both logs of a partnership as of their checkpoints, to xlsx, csv or jsonl",
    )
    p.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument(
        "--kind", nargs="+", action="extend", metavar="KIND", help="only these kinds (default: all)"
    )
    p.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="NODE=SIZE,...",
        help="export a log as of its checkpoint of this size, e.g. JP=120,ID=340 "
        "(default: each log's latest checkpoint)",
    )
    p.add_argument(
        "--out",
        help="file (xlsx, jsonl; - for stdout) or folder to create (csv); "
        "default: export-PARTNERSHIP.xlsx, .jsonl or folder export-PARTNERSHIP",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--partnership", help="needed when the node serves several")
    add_json(p)
    p.set_defaults(func=cmd_export)


def _partnership(cfg: Config, given: str | None) -> str:
    if given:
        return given
    if len(cfg.partnerships) == 1:
        return cfg.partnerships[0].id
    raise BadDataError("this node serves several partnerships: give --partnership")


def cmd_export(args: argparse.Namespace) -> int:
    from jcm_sync.services.export import parse_at, parse_kinds

    cfg = load_config(args.config)
    pid = _partnership(cfg, args.partnership)
    kinds, at = parse_kinds(args.kind), parse_at(args.at)  # refused before the node opens
    result = asyncio.run(_export(cfg, args, pid, kinds, at))
    data = result.to_builtins()

    def human(c: Console) -> None:
        logs = ", ".join(f"{cut.ref.node} {cut.size}" for cut in result.cuts)
        by_kind = ", ".join(f"{n} {k}" for k, n in result.counts.items() if n)
        c.print(f"{pid}: exported {result.total} records as of {logs} to {result.target}")
        if by_kind:
            c.print(f"  {by_kind}")

    if result.target == "-":
        note(f"{pid}: exported {result.total} records")
    else:
        emit(args, data, human)
    return 0


async def _export(
    cfg: Config, args: argparse.Namespace, pid: str, kinds: tuple[str, ...], at: dict[str, int]
) -> ExportResult:
    from jcm_sync.local.export_files import CsvSink, JsonlSink, Sink, XlsxSink
    from jcm_sync.services.export import export
    from jcm_sync.services.node import open_node

    fmt: str = args.format
    default = f"export-{pid}" + ("" if fmt == "csv" else f".{fmt}")
    target = Path(args.out or default)
    sink: Sink
    if fmt == "xlsx":
        sink = XlsxSink(target, overwrite=args.force, description=f"jcm-sync export of {pid}")
    elif fmt == "csv":
        sink = CsvSink(target, overwrite=args.force)
    elif args.out == "-":
        sink = JsonlSink(target, stdout=sys.stdout.buffer)
    else:
        sink = JsonlSink(target, overwrite=args.force)
    node = await open_node(cfg)
    try:
        return await export(node, pid, sink, kinds=kinds, at=at, fmt=fmt)
    finally:
        await node.close()
