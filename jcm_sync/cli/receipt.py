"""``jcm-sync receipt get|verify``: a record's offline receipt (C2SP tlog-proof).

Why this module exists: a registry, a project participant or an auditor keeps one small
file per record that proves, with the partnership's trust roots alone, that the record
is in its log at a position the counterpart cosigned (``services.receipts``). This
module parses the arguments, reads and writes the files and renders the result.

Rules:

1. ``get`` reads the node's store only (no keys, no network); the receipt goes to
   ``--out`` or stdout, and what it states to stderr (or ``--json``).
2. ``verify`` opens no store and no network: the receipt, the trust-root files and, if
   the receipt does not hold it, the entry. Exit 0 when it verifies, 1 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from jcm_sync.cli.common import (
    EXIT_OK,
    add_at,
    add_json,
    emit,
    note,
    now_of,
    read_input,
    write_output,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rc = sub.add_parser(
        "receipt", help="offline receipts (C2SP tlog-proof): get one for a record, verify one"
    )
    rcsub = rc.add_subparsers(dest="receipt_command", required=True, metavar="COMMAND")
    g = rcsub.add_parser(
        "get",
        help="write a record's receipt: index, inclusion proof, the cosigned checkpoint",
        description=(
            "The receipt proves the record's inclusion in the newest checkpoint of its log\n"
            "that the counterpart cosigned (else the newest that covers it), with the\n"
            "cosignatures attached and the entry's bytes in the extra line."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    g.add_argument("record_id", metavar="RECORD-ID", help="the record id (SHA-256 hex)")
    g.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    add_json(g)
    g.set_defaults(func=cmd_get)
    v = rcsub.add_parser(
        "verify",
        help="check a receipt offline against the partnership's trust roots",
        description=(
            "Checks the checkpoint's log signature and the counterpart's cosignatures\n"
            "with the keys of the trust-root chain, the inclusion proof, and the entry as a\n"
            "record of that log. Opens no store and no network."
        ),
        epilog="exit codes:\n  0  the receipt verifies\n  1  it does not (the reason on stderr)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("file", metavar="FILE", help="the receipt (.tlog-proof)")
    v.add_argument(
        "--trust",
        required=True,
        nargs="+",
        metavar="ROOT",
        help="the partnership's trust-root files, oldest version first",
    )
    v.add_argument("--entry", metavar="FILE", help="the entry's bytes, if the receipt lacks them")
    v.add_argument(
        "--require-cosigned",
        action="store_true",
        help="refuse a receipt whose checkpoint the counterpart did not cosign",
    )
    add_at(v)
    add_json(v)
    v.set_defaults(func=cmd_verify)


def cmd_get(args: argparse.Namespace) -> int:
    from jcm_sync.local.config import load_config
    from jcm_sync.services.node import open_node_store
    from jcm_sync.services.receipts import get_receipt

    cfg = load_config(args.config)
    box: list[Any] = []

    async def main() -> None:
        store = await open_node_store(cfg)
        try:
            box.append(await get_receipt(store, args.record_id, {p.id for p in cfg.partnerships}))
        finally:
            await store.close()

    asyncio.run(main())
    receipt = box[0]
    data = {
        "record_id": receipt.record_id,
        "origin": receipt.origin,
        "index": receipt.index,
        "size": receipt.size,
        "cosigners": list(receipt.cosigners),
        "receipt": receipt.data.decode("utf-8"),
    }
    if args.json:
        if args.out is not None:
            write_output(args.out, receipt.data, "receipt")
        emit(args, data, lambda c: None)
        return EXIT_OK
    write_output(args.out, receipt.data, "receipt")
    by = ", ".join(receipt.cosigners) or "not yet cosigned"
    note(
        f"record {receipt.record_id[:16]}: entry {receipt.index} of {escape(receipt.origin)} "
        f"at size {receipt.size}, {escape(by)}"
    )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from jcm_sync.services.receipts import verify_receipt_file

    receipt = read_input(args.file, "receipt")
    trust = [read_input(t, "trust root") for t in args.trust]
    entry = read_input(args.entry, "entry") if args.entry else None
    check = verify_receipt_file(
        receipt, trust, now_of(args), entry=entry, require_cosigned=args.require_cosigned
    )
    data = {
        "ok": True,
        "record_id": check.record_id,
        "kind": check.kind,
        "author": check.author,
        "origin": check.origin,
        "index": check.index,
        "size": check.size,
        "cosigners": [{"name": n, "time": t.isoformat()} for n, t in check.cosigners],
        "received": check.received.isoformat() if check.received else None,
    }

    def human(c: Console) -> None:
        c.print(
            f"[green]OK[/]: {check.kind} record {check.record_id[:16]} by {check.author} is "
            f"entry {check.index} of {escape(check.origin)} at size {check.size}"
        )
        for name, t in check.cosigners:
            c.print(f"  cosigned by {escape(name)} at {t.isoformat()}")
        if not check.cosigners:
            c.print("  not cosigned by the counterpart")

    emit(args, data, human)
    return EXIT_OK
