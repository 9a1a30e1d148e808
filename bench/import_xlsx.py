"""XLSX import of N rows (default 100,000): rows per second, against openpyxl's
read-only reading of the same file alone, measured in the same run.

The file is one ``transaction`` sheet of Indonesia's registry (JP-ID): N transfers
between a government and a participant account, each with its serial block, written
with openpyxl's write-only workbook (not measured). The baseline reads every row of it
with ``load_workbook(read_only=True)`` and ``iter_rows(values_only=True)``, which any
import must do at least. The measured import is the whole ``jcm-sync import`` use case
in this process on a fresh SQLite node: read, convert and validate every row
(``core.tabular``), check what the own log holds, sign and verify every record, append
in batches and sign the checkpoint. Then the same file is imported again (every row
already held), the idempotent path. Target: import rows/s >= 0.5 x the baseline's.
Informational: the script always exits 0.

    python bench/import_xlsx.py [--n 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import openpyxl

from jcm_sync.core import tabular
from jcm_sync.core.records import Account, SerialBlock, TransactionRecord
from jcm_sync.services.importer import import_files
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import provision

TARGET = 0.5


def transfers(n: int, created: datetime) -> list[TransactionRecord]:
    """N transfers in Indonesia's registry, each moving one block of 1-50 credits."""
    out = []
    first = 1
    for i in range(n):
        qty = 1 + i % 50
        prefix = f"ID-ID{1 + i % 60:03d}-{2016 + i % 8}-"
        block = SerialBlock(f"{prefix}{first:09d}", f"{prefix}{first + qty - 1:09d}", qty,
                            2016 + i % 8)  # fmt: skip
        first += qty
        out.append(TransactionRecord(
            partnership="JP-ID", author="ID", created=created, registry="ID",
            txn_id=f"ID-TXN-{i + 1:07d}", type="transfer",
            executed_on=date(2017, 1, 1) + timedelta(days=i % 2500),
            source=Account("ID-GOV-001", "government_holding"),
            destination=Account(f"ID-PP-{1 + i % 60:03d}", "participant_holding"),
            amount=qty, blocks=(block,),
        ))  # fmt: skip
    return out


def write_sheet(path: Path, records: list[TransactionRecord]) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("transaction")
    names = tabular.headers("transaction")
    ws.append(names)
    for r in records:
        row = tabular.record_to_row(r)
        ws.append([row[n] for n in names])
    wb.save(path)


def read_alone(path: Path) -> int:
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    n = 0
    for ws in wb.worksheets:
        for _ in ws.iter_rows(values_only=True):
            n += 1
    wb.close()
    return n - 1


async def import_once(config: Path, path: Path) -> tuple[int, int]:
    from jcm_sync.local.config import load_config

    node = await open_node(load_config(config, env={}))
    try:
        result = await import_files(node, "JP-ID", [(path, "xlsx")])
    finally:
        await node.close()
    return result.new, result.held


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        now = datetime.now(UTC)
        net = provision(Path(tmp) / "net", ["ID"], hub_port=1, now=now - timedelta(days=1))
        path = Path(tmp) / "transactions.xlsx"
        t = time.perf_counter()
        write_sheet(path, transfers(args.n, now))
        print(f"wrote {args.n:,} rows ({path.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t:.1f} s (not measured)")  # fmt: skip

        t = time.perf_counter()
        rows = read_alone(path)
        base = time.perf_counter() - t
        t = time.perf_counter()
        new, held = asyncio.run(import_once(net.configs["ID"], path))
        first = time.perf_counter() - t
        t = time.perf_counter()
        new2, held2 = asyncio.run(import_once(net.configs["ID"], path))
        again = time.perf_counter() - t
    assert (rows, new, held, new2, held2) == (args.n, args.n, 0, 0, args.n)
    print(f"\n{'what':44} {'seconds':>8} {'rows/s':>10} {'x baseline':>10}")
    print(f"{'baseline: openpyxl read-only read alone':44} {base:8.2f} {rows / base:10,.0f} "
          f"{1.0:10.2f}")  # fmt: skip
    for label, s in (("import (all new: sign, verify, append)", first),
                     ("import again (all already held)", again)):  # fmt: skip
        print(f"{label:44} {s:8.2f} {rows / s:10,.0f} {base / s:10.2f}")
    ratio = base / first
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:,.0f} MB")
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"\ntarget: import >= {TARGET} x the read-only read's rows/s: {ratio:.2f} ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
