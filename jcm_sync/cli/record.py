"""``jcm-sync record``: sign a record into an envelope, verify one against a trust root,
show a stored one; ``jcm-sync endorse``: countersign the other side's JC records.

``record show`` and ``endorse`` open the configured node and take full or short record
ids (``services.stored_records``, docs/adr/0024-export-record-show-and-endorse.md).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from jcm_sync.local.config import load_config
from jcm_sync.local.keyfiles import load_any_private_key, load_passphrase
from jcm_sync.services.record_signing import sign_document, verify_endorsed

if TYPE_CHECKING:
    from jcm_sync.services.stored_records import Endorsed, StoredRecord


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="sign, verify and show records")
    rs = p.add_subparsers(dest="record_cmd", required=True, metavar="COMMAND")

    s = rs.add_parser(
        "sign",
        help="sign a record (JSON) into an envelope, or countersign an envelope",
    )
    s.add_argument("file", help="record JSON or an envelope to countersign; - for stdin")
    s.add_argument(
        "--key",
        required=True,
        type=Path,
        action="append",
        help="a private key file (Ed25519 or ML-DSA-44); repeat to sign with each "
        "(a hybrid envelope)",
    )
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

    sh = rs.add_parser(
        "show", help="a stored record by full or short id: fields, envelope, log and index"
    )
    sh.add_argument("id", metavar="ID", help=f"record id, or its first {_min_digits()}+ digits")
    _node_args(sh)
    add_json(sh)
    sh.set_defaults(func=cmd_show)

    en = sub.add_parser(
        "endorse",
        help="sign endorsements of the counterpart's Joint Committee records into the own log",
    )
    en.add_argument("ids", nargs="+", metavar="RECORD-ID", help="full or short record ids")
    _node_args(en)
    en.add_argument("--note", default="", help="a note carried by each endorsement")
    add_json(en)
    en.set_defaults(func=cmd_endorse)


def _min_digits() -> int:
    from jcm_sync.services.stored_records import MIN_SHORT_ID

    return MIN_SHORT_ID


def _node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")
    p.add_argument("--partnership", help="look only in this partnership's logs")


def cmd_sign(args: argparse.Namespace) -> int:
    now = now_of(args)
    root = load_trusted(args.trust, now).root
    passphrase = load_passphrase(args.passphrase_file)
    keys = [load_any_private_key(path, passphrase) for path in args.key]
    # verified before it is written: nothing the partnership would refuse is handed out
    v = sign_document(read_input(args.file, "record"), keys, root, now)
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


# --- stored records: show and endorse ---------------------------------------------------


async def _show(args: argparse.Namespace) -> StoredRecord:
    from jcm_sync.services.node import open_node
    from jcm_sync.services.stored_records import show

    node = await open_node(load_config(args.config))
    try:
        return await show(node, args.id, partnership=args.partnership)
    finally:
        await node.close()


def cmd_show(args: argparse.Namespace) -> int:
    rec = asyncio.run(_show(args))

    def human(c: Console) -> None:
        where = "own log" if rec.own else "replica"
        c.print(f"[bold]{rec.kind}[/] {'/'.join(rec.record.key())}")
        c.print(f"record id     {rec.record_id}")
        c.print(f"log           {rec.log.node} ({where}) {rec.log.origin}, index {rec.index}")
        c.print(f"appended at   {rec.appended_at.isoformat()}")
        c.print(f"payload type  {rec.payload_type}")
        c.print("signatures")
        for s in rec.signers:
            c.print(f"  {s.node or '(a key not in the current trust root)'}  key {s.keyid}")
            if s.roles:
                c.print(f"      roles: {', '.join(s.roles)}")
        for e in rec.endorsements:
            c.print(f"  {e.author}  endorsement {e.record_id} ({e.log.node} #{e.index})")
        if rec.required:
            if rec.missing:
                c.print("[yellow]not effective[/]: missing the signature or endorsement of "
                        + ", ".join(rec.missing))  # fmt: skip
            else:
                c.print("[green]effective[/]: signed or endorsed by both secretariats")
        f = Table("field", "value", title="record")
        for name, value in to_builtins(rec.record).items():
            f.add_row(name, _cell(value))
        c.print(f)

    emit(args, rec.to_builtins(), human)
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


async def _endorse(args: argparse.Namespace) -> list[Endorsed]:
    from jcm_sync.services.node import open_node
    from jcm_sync.services.stored_records import endorse

    node = await open_node(load_config(args.config))
    try:
        return await endorse(node, args.ids, partnership=args.partnership, note=args.note)
    finally:
        await node.close()


def cmd_endorse(args: argparse.Namespace) -> int:
    done = asyncio.run(_endorse(args))

    def human(c: Console) -> None:
        for d in done:
            what = f"{d.target.kind} {'/'.join(d.target.record.key())} ({d.target.record_id[:12]})"
            if d.endorsement_id:
                c.print(f"endorsed {what}: endorsement {d.endorsement_id[:12]}")
            else:
                c.print(f"already endorsed {what}: {d.already}")
        new = sum(1 for d in done if d.endorsement_id)
        c.print(f"{new} endorsed, {len(done) - new} already endorsed")

    emit(args, [d.to_builtins() for d in done], human)
    return 0
