"""``jcm-sync record``: sign a record into an envelope, verify one against a trust root."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jcm_sync.cli.common import (
    add_at,
    add_json,
    emit,
    note,
    now_of,
    parse_time,
    read_input,
    write_output,
)
from jcm_sync.cli.trust import load_trusted
from jcm_sync.core.records import to_builtins
from jcm_sync.core.trust import Verification, require_effective
from jcm_sync.local.keyfiles import load_passphrase, load_private_key
from jcm_sync.services.record_signing import sign_document, verify_endorsed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="sign and verify records")
    rs = p.add_subparsers(dest="record_cmd", required=True, metavar="COMMAND")

    s = rs.add_parser(
        "sign",
        help="sign a record (JSON) into an envelope, or countersign an envelope",
    )
    s.add_argument("file", help="record JSON or an envelope to countersign; - for stdin")
    s.add_argument("--key", required=True, type=Path)
    s.add_argument("--passphrase-file", type=Path)
    s.add_argument("--trust", required=True, action="append", metavar="ROOT")
    s.add_argument("--out", help="default: stdout")
    add_at(s)
    s.set_defaults(func=cmd_sign)

    v = rs.add_parser("verify", help="verify an envelope: kind, key, signers; exit 1 if untrusted")
    v.add_argument("file")
    v.add_argument("--trust", required=True, action="append", metavar="ROOT")
    v.add_argument(
        "--endorsement",
        action="append",
        default=[],
        metavar="FILE",
        help="an endorsement envelope by the other secretariat",
    )
    v.add_argument(
        "--allow-pending",
        action="store_true",
        help="accept a JC record that still lacks the other side (exit 0, reported pending)",
    )
    v.add_argument(
        "--received",
        metavar="TIME",
        type=parse_time,
        default=None,
        help="when this node first received the envelope (default: --at, or now); a "
        "revoked key is judged at this time, its window at the record's created time",
    )
    add_at(v)
    add_json(v)
    v.set_defaults(func=cmd_verify)


def cmd_sign(args: argparse.Namespace) -> int:
    now = now_of(args)
    root = load_trusted(args.trust, now).root
    key = load_private_key(args.key, load_passphrase(args.passphrase_file))
    # verified before it is written: nothing the partnership would refuse is handed out
    v = sign_document(read_input(args.file, "record"), key, root, now)
    write_output(args.out, v.raw)
    if args.out:
        note(f"wrote {args.out}: {v.kind} {v.record_id}")
    return 0


def _verification_data(v: Verification) -> dict[str, Any]:
    return {
        "record_id": v.record_id,
        "kind": v.kind,
        "key": list(v.record.key()),
        "author": v.record.author,
        "partnership": v.record.partnership,
        "signers": [{"keyid": s.keyid, "node": s.node} for s in v.signers],
        "endorsed_by": list(v.endorsed_by),
        "effective": v.effective,
        "missing": v.describe_missing(),
        "record": to_builtins(v.record),
    }


def cmd_verify(args: argparse.Namespace) -> int:
    now = now_of(args)
    root = load_trusted(args.trust, now).root
    envelope = read_input(args.file, "envelope")
    endorsements = [read_input(f, "endorsement") for f in args.endorsement]
    # revocation by receipt (docs/adr/0018-revocation-by-receipt.md)
    v = verify_endorsed(root, envelope, endorsements, now, args.received)
    d = _verification_data(v)

    def human(c: Console) -> None:
        c.print(f"[bold]{v.kind}[/] {'/'.join(v.record.key())}  (record {v.record_id[:16]})")
        t = Table("signed by node", "key id")
        for s in v.signers:
            t.add_row(s.node, s.keyid)
        for n in v.endorsed_by:
            t.add_row(n, "(endorsement)")
        c.print(t)
        if v.effective:
            c.print("[green]trusted[/]: signed by every party it needs")
        else:
            c.print("[yellow]pending[/]: missing " + ", ".join(v.describe_missing()))

    emit(args, d, human)
    if not args.allow_pending:
        require_effective(v)
    return 0
