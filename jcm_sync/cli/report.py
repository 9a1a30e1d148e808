"""``jcm-sync report``: reports to other bodies, made from the node's signed records.

``report aef`` writes the node's Party's Article 6.2 Agreed Electronic Format for a year
(decision 4/CMA.6, annex II) as one XLSX workbook and one CSV per table, with the
trace of every row to its record ids and the result of the consistency checks the
UNFCCC platform runs (``services.aef``). A failed check is listed on stderr, one line
each, and exits 1, with the files still written so the rows to correct can be seen
(docs/adr/0026-article-6-2-aef-report.md).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from jcm_sync.cli.common import EXIT_FAIL, EXIT_OK, add_json, emit, stderr
from jcm_sync.errors import BadDataError
from jcm_sync.local.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("report", help="write reports made from the signed records")
    rs = r.add_subparsers(dest="report_cmd", required=True, metavar="COMMAND")
    aef = rs.add_parser(
        "aef", help="the Article 6.2 Agreed Electronic Format of this node's Party for a year"
    )
    aef.add_argument("--year", required=True, type=_year, help="the reported year (YYYY)")
    aef.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    aef.add_argument("--partnership", action="append", help="only this partnership (repeatable)")
    aef.add_argument("--out", type=Path, default=Path("."), help="folder to write into (.)")
    aef.add_argument(
        "--format", choices=("xlsx", "csv", "both"), default="both", help="files to write"
    )
    aef.add_argument(
        "--approach-id",
        action="append",
        default=[],
        type=_approach,
        metavar="NAME=CANNNN",
        help="the CARP id of a cooperative approach an authorization names (repeatable)",
    )
    aef.add_argument(
        "--submitted", type=date.fromisoformat, help="date of submission (default: today, UTC)"
    )
    aef.add_argument("--submission-version", default="1.0", help="X.Y, 1.0 for the first")
    aef.add_argument(
        "--ndc-period",
        type=_period,
        default=(2021, 2030),
        metavar="FIRST-LAST",
        help="the years of the NDC implementation period (2021-2030)",
    )
    aef.add_argument(
        "--oimp-first-transfer",
        choices=("Authorisation", "Issuance", "Use or Cancellation"),
        help="the Party's first transfer definition for OIMP, for authorizations covering OIMP",
    )
    add_json(aef)
    aef.set_defaults(func=cmd_aef)


def _year(text: str) -> int:
    if len(text) != 4 or not text.isdigit() or not 2000 <= int(text) <= 2200:
        raise argparse.ArgumentTypeError(f"expected a year YYYY, got {text!r}")
    return int(text)


def _approach(text: str) -> tuple[str, str]:
    name, sep, ident = text.rpartition("=")
    if not sep or not name or not ident:
        raise argparse.ArgumentTypeError(f"expected NAME=CANNNN, got {text!r}")
    return name, ident


def _period(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        a, b = _year(first.strip()), _year(last.strip())
    except argparse.ArgumentTypeError:
        a = b = 0
    if not sep or not a or a > b:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST years, got {text!r}")
    return a, b


def cmd_aef(args: argparse.Namespace) -> int:
    from jcm_sync.services.aef import aef_report, write_aef
    from jcm_sync.services.aef_rows import TABLES, AefOptions
    from jcm_sync.services.node import open_node

    cfg = load_config(args.config)
    opts = AefOptions(
        year=args.year,
        submitted=args.submitted or datetime.now(UTC).date(),
        version=args.submission_version,
        ndc_period=args.ndc_period,
        approach_ids=dict(args.approach_id),
        oimp_first_transfer=args.oimp_first_transfer,
    )
    box: list[Any] = []

    async def main() -> None:
        node = await open_node(cfg)
        try:
            box.append(await aef_report(node, opts, args.partnership))
        finally:
            await node.close()

    asyncio.run(main())
    report = box[0]
    formats = ("xlsx", "csv") if args.format == "both" else (args.format,)
    try:  # --out names a folder to write into, made when missing
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadDataError(
            f"cannot make the folder: {exc.strerror or exc}", where=str(args.out)
        ) from None
    files = write_aef(report, args.out, formats)
    data = {
        "party": report.party,
        "year": report.year,
        "nomenclature": report.nomenclature,
        "files": [str(f) for f in files],
        "rows": {t: len(report.tables[t]) for t in TABLES},
        "problems": [
            {"severity": p.severity, "check": p.check, "table": p.table, "row": p.row,
             "detail": p.detail}
            for p in report.problems
        ],
    }  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"AEF of {report.party} for {report.year} "
                f"(common nomenclatures of {report.nomenclature}):")  # fmt: skip
        for t in TABLES:
            c.print(f"  table {t}: {len(report.tables[t])} rows")
        for f in files:
            c.print(f"  wrote {escape(str(f))}")

    emit(args, data, human)
    err = stderr()
    for p in report.problems:
        where = f"table {p.table}" + (f" row {p.row}" if p.row is not None else "")
        err.print(f"{p.severity}: {p.check}: {where}: {escape(p.detail)}")
    failures = report.failures
    if failures:
        _fail(err, len(failures))
        return EXIT_FAIL
    return EXIT_OK


def _fail(err: Console, n: int) -> None:
    err.print(
        f"[red]refused:[/] {n} consistency check{'s' if n != 1 else ''} failed; the files "
        "were written with the failures on their Checks sheet, not for submission"
    )
    err.print(
        "  next step: give what a failure asks for (such as --approach-id), or correct "
        "the records the Trace sheet names for its row; then run report aef again"
    )
