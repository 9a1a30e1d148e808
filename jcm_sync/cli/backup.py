"""``jcm-sync backup`` and ``jcm-sync restore``: a node's store to one checked file and back
(``services.backup``; docs/backup-restore.md).

Rules:

1. Both take the node's ``--config``; the CLI parses, calls one service, renders what was
   written or restored (logs, sizes, bytes, seconds), or with ``--json`` the same as JSON.
2. Every refusal (damaged file, another node, newer schema, a running daemon, a store
   that holds entries, missing ``pg_dump``) is a message on stderr and exit 1; nothing is
   changed by a refused restore.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from jcm_sync.cli.common import add_json, emit
from jcm_sync.local.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backup",
        help="copy the node's whole store into one checked file, the daemon running or not",
        description="Write the node's store (logs, checkpoints, trust marks, node state) as "
        "one consistent snapshot into one file with a manifest and SHA-256 digests. Keys, "
        "the configuration and trust-root files are not in it: back them up too.",
    )
    b.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    b.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the backup file to write (an existing file is replaced only if it is a backup)",
    )
    add_json(b)
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser(
        "restore",
        help="put a backup back into the configured store, every log verified first",
        description="Check the backup's digests, node and schema version, load it beside "
        "the configured store, verify every log (entries, roots, signatures, checkpoints) "
        "and its sizes and roots against the manifest, and only then replace the store. "
        "Refused while the node's daemon runs; exit 1 on any refusal, the store unchanged.",
    )
    r.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    r.add_argument("file", type=Path, help="the backup file (jcm-sync backup --out)")
    r.add_argument(
        "--force",
        action="store_true",
        help="replace a store that already holds entries, or restore another node's backup",
    )
    add_json(r)
    r.set_defaults(func=cmd_restore)


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def cmd_backup(args: argparse.Namespace) -> int:
    from jcm_sync.services.backup import backup

    cfg = load_config(args.config)
    result = asyncio.run(backup(cfg, args.out))
    m = result.manifest

    def human(c: Console) -> None:
        entries = sum(log.size for log in m.logs)
        c.print(
            f"wrote {escape(str(result.path))}: {m.backend} store of node {m.node_id}, "
            f"schema {m.schema_version}, {len(m.logs)} logs, {entries} entries, "
            f"{_mib(result.file_bytes)} in {result.seconds:.2f} s"
        )
        for log in m.logs:
            c.print(
                f"  {escape(log.origin)}: size {log.size}, {log.checkpoints} checkpoints, "
                f"root {log.root[:16]}…"
            )
        c.print(f"  dump sha256 {m.dump_sha256}")
        c.print("  keys, the configuration and trust-root files are not in it: keep them too")

    emit(args, result.to_builtins(), human)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from jcm_sync.services.backup import restore

    cfg = load_config(args.config)
    result = asyncio.run(restore(cfg, args.file, force=args.force))
    m = result.manifest

    def human(c: Console) -> None:
        entries = sum(a.entries_checked for a in result.audits)
        c.print(
            f"restored {escape(str(result.path))} (node {m.node_id}, taken "
            f"{m.created_at.isoformat(timespec='seconds')}) into {escape(result.store)}: "
            f"{len(result.audits)} logs, {entries} entries verified in {result.seconds:.2f} s"
        )
        for a in result.audits:
            c.print(
                f"  [green]ok[/] {escape(a.log.origin)}: size {a.size}, "
                f"{a.checkpoints_checked} checkpoints, root {a.root.hex()[:16]}…"
            )
        if result.replaced_entries:
            c.print(f"  replaced {result.replaced_entries} entries the store held before")
        unsigned = sorted(
            {a.log.partnership for a in result.audits} - set(result.signatures_checked)
        )
        if unsigned:
            c.print(f"  not configured here, signatures not checked: {', '.join(unsigned)}")

    emit(args, result.to_builtins(), human)
    return 0
