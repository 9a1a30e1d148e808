"""Export of N records to XLSX, against openpyxl's write-only writing of the same rows.

A node (Japan's hub of a provisioned JP-ID network, SQLite store) holds N signed issuance
records in its own log, checkpointed. ``jcm-sync export --format xlsx`` does, per record:
read the entry from the store, decode the envelope and its record (signatures are not
checked again: the store verified them), build the row (``core.tabular``) and append it
to a write-only workbook, one sheet per kind. The baseline, in the same run, is openpyxl
alone writing the very same rows (computed beforehand, outside the timing) into a
write-only workbook with the same sheets and headers and saving it: the floor of any
streaming XLSX export. Runs alternate; the best of ``--rounds`` counts. Target:
baseline time / export time >= 0.7. Informational: always exits 0.

    python bench/export_xlsx.py [--n N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from filled_hub import PID, filled_hub
from openpyxl import Workbook

from jcm_sync.core import tabular
from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import KINDS, decode_record
from jcm_sync.local.config import load_config
from jcm_sync.local.export_files import XlsxSink
from jcm_sync.services.export import export, sheet_headers
from jcm_sync.services.node import open_node

TARGET = 0.7


def rows_of(envs: list[bytes]) -> list[list[Any]]:
    """The rows an export of Japan's log of ``envs`` writes."""
    rows = []
    for i, env in enumerate(envs):
        rec = decode_record(open_envelope(env).payload)
        rows.append([record_id(env), "JP", i, "JP", *tabular.record_to_row(rec).values()])
    return rows


async def run_export(cfg: Path, out: Path) -> float:
    node = await open_node(load_config(cfg, env={}))
    try:
        gc.collect()
        start = time.perf_counter()
        result = await export(node, PID, XlsxSink(out, overwrite=True), fmt="xlsx")
        elapsed = time.perf_counter() - start
    finally:
        await node.close()
    assert result.counts["issuance"] > 0
    return elapsed


def run_baseline(rows: list[list[Any]], out: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    book = Workbook(write_only=True)
    sheets = {}
    for name, header in sheet_headers(KINDS).items():
        sheets[name] = book.create_sheet(title=name)
        sheets[name].append(header)
    ws = sheets["issuance"]
    for row in rows:
        ws.append(row)
    book.save(out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        net, envs = filled_hub(Path(tmp), args.n)
        cfg, rows = net.configs["JP"], rows_of(envs)
        best_export = best_base = float("inf")
        for _ in range(args.rounds):
            best_base = min(best_base, run_baseline(rows, Path(tmp) / "baseline.xlsx"))
            best_export = min(best_export, asyncio.run(run_export(cfg, Path(tmp) / "x.xlsx")))
        size = (Path(tmp) / "x.xlsx").stat().st_size
    ratio = best_base / best_export
    print(f"{'':34} {'seconds':>8} {'records/s':>10}")
    print(f"{'openpyxl write-only (baseline)':34} {best_base:8.2f} {args.n / best_base:10,.0f}")
    print(f"{'jcm-sync export --format xlsx':34} {best_export:8.2f} {args.n / best_export:10,.0f}")
    print(f"ratio baseline/export {ratio:.2f} (target >= {TARGET}): "
          f"{'met' if ratio >= TARGET else 'MISSED'}; file {size / 1e6:.1f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
