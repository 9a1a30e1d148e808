"""Backup and restore of a node's SQLite store of N records, against copying the file.

A node (Japan's hub of a provisioned JP-ID network, SQLite store) holds N signed issuance
records in its own log, checkpointed. ``jcm-sync backup`` takes SQLite's online backup of
the database (one step, beside a running daemon), makes the copy self-contained, hashes
it, and writes the tar with its manifest, fsynced. The baseline, in the same run, is the
floor of any file-level backup: the same database, its WAL checkpointed first (outside the
timing), copied with ``shutil.copyfile`` (and fsynced, as the backup is) — which is only
safe with the daemon stopped. Runs alternate; the best of ``--rounds`` counts. Also shown:
``jcm-sync restore`` of that backup into a fresh folder, which verifies every entry's
signature, the tree and the checkpoints before it replaces anything. Informational:
always exits 0.

    python bench/backup.py [--n N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from filled_hub import filled_hub

from jcm_sync.local.config import load_config
from jcm_sync.services.backup import backup, restore


def run_baseline(db: Path, out: Path) -> float:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    gc.collect()
    start = time.perf_counter()
    shutil.copyfile(db, out)
    with out.open("rb") as f:
        os.fsync(f.fileno())
    return time.perf_counter() - start


async def run_backup(cfg: Path, out: Path) -> float:
    config = load_config(cfg, env={})
    gc.collect()
    start = time.perf_counter()
    await backup(config, out)
    return time.perf_counter() - start


async def run_restore(cfg: Path, out: Path) -> float:
    config = load_config(cfg, env={})
    gc.collect()
    start = time.perf_counter()
    await restore(config, out, force=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        net, _ = filled_hub(Path(tmp), args.n)
        cfg = net.configs["JP"]
        db = Path(load_config(cfg, env={}).store_url[len("sqlite:///") :])
        fresh = Path(tmp) / "fresh"
        shutil.copytree(net.directory, fresh, ignore=shutil.ignore_patterns("*.db*", "*.lock"))
        out, fresh_cfg = Path(tmp) / "jp.jcmbak", fresh / "jp" / "config.toml"
        best_base = best_backup = best_restore = float("inf")
        for _ in range(args.rounds):
            best_base = min(best_base, run_baseline(db, Path(tmp) / "copy.db"))
            best_backup = min(best_backup, asyncio.run(run_backup(cfg, out)))
            best_restore = min(best_restore, asyncio.run(run_restore(fresh_cfg, out)))
        size = out.stat().st_size
    print(f"{'':40} {'seconds':>8} {'records/s':>10}")
    for name, t in (
        ("file copy after checkpoint (baseline)", best_base),
        ("jcm-sync backup", best_backup),
        ("jcm-sync restore (verifies every log)", best_restore),
    ):
        print(f"{name:40} {t:8.3f} {args.n / t:10,.0f}")
    print(f"backup / baseline {best_backup / best_base:.2f}x; backup file {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
