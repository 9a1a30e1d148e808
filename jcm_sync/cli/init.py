"""``jcm-sync init``: a new node's folder with keys, a draft trust root and a configuration.

Why this module exists: a new secretariat needs one command that makes every file a
node starts from, with the right permissions, and says what to do next. The work is
``services.setup.init_node``; this module reads the options and prints the standing.

Rules:

1. Everything printed on stdout is the standing (what was written, each partnership's
   root, the numbered next steps); ``--json`` prints the same as data.
2. A re-run on the same folder is how an operator asks "where am I?": it changes
   nothing that exists and prints the same standing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from jcm_sync.cli.common import add_json, emit, now_of
from jcm_sync.services.setup import HUB_PORT, OPS_PORT, InitRequest, Standing, init_node


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="first setup: keys, a draft trust root, a configuration, and the next steps",
        description="Make a node's folder (0700): keys (0600), a configuration, an "
        "EnvironmentFile example, and, given the counterpart's public key, a draft trust root "
        "signed by this side. Re-run it on the same folder to see where it stands.",
    )
    p.add_argument("--role", required=True, choices=["partner", "registry"])
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 code; JP for the registry")
    p.add_argument("--dir", required=True, type=Path, help="the folder to make (empty or new)")
    p.add_argument("--hub-url", default="", help="a partner's: the origin of Japan's hub")
    p.add_argument(
        "--partnership",
        action="append",
        default=[],
        help="JP-<partner> (a partner's is JP-<its country>); repeat on the registry",
    )
    p.add_argument(
        "--counterpart-key",
        type=Path,
        metavar="PUBFILE",
        help="the other side's signing .pub: make the draft trust root with it",
    )
    p.add_argument(
        "--import-root",
        type=Path,
        metavar="ROOT",
        help="a root the counterpart countersigned: verify it and put it in place",
    )
    p.add_argument(
        "--port", type=int, default=HUB_PORT, help="the registry's hub port (default 8700)"
    )
    p.add_argument(
        "--ops-port", type=int, default=OPS_PORT, help="the console's port (default 8701)"
    )
    p.add_argument(
        "--pq",
        action="store_true",
        help="also make an ML-DSA-44 key for records and checkpoints ([keys] signing_pq, "
        "checkpoint_pq) and list it in the draft trust root",
    )
    p.add_argument(
        "--counterpart-pq-key",
        type=Path,
        metavar="PUBFILE",
        help="with --pq: the other side's ML-DSA-44 .pub; the draft root then requires both "
        "algorithms for checkpoints and every record kind",
    )
    p.add_argument(
        "--force", action="store_true", help="use a non-empty folder (keys are never overwritten)"
    )
    add_json(p)
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    req = InitRequest(
        role=args.role,
        country=args.country,
        directory=args.dir,
        partnerships=tuple(args.partnership),
        hub_url=args.hub_url,
        counterpart_key=args.counterpart_key,
        import_root=args.import_root,
        force=args.force,
        ops_port=args.ops_port,
        port=args.port,
        pq=args.pq,
        counterpart_pq_key=args.counterpart_pq_key,
    )
    standing = init_node(req, now_of(args))
    emit(args, standing_data(standing), lambda c: render(c, standing))
    return 0


def standing_data(s: Standing) -> dict[str, Any]:
    return {
        "directory": str(s.request.directory),
        "role": s.request.role,
        "country": s.request.country,
        "config": str(s.config),
        "key_id": s.key_id,
        "pq_key_id": s.pq_key_id,
        "written": [str(p) for p in s.written],
        "roots": [
            {
                "partnership": r.partnership,
                "state": r.state,
                "path": str(r.path),
                "detail": r.detail,
            }
            for r in s.roots
        ],
        "next_steps": s.steps,
    }


def render(c: Console, s: Standing) -> None:
    c.print(f"[bold]{escape(str(s.request.directory))}[/]: {s.request.role} {s.request.country}, "
            f"signing key {s.key_id}")  # fmt: skip
    if s.pq_key_id:
        c.print(f"  ML-DSA-44 key {s.pq_key_id} (signing_pq, checkpoint_pq)")
    for path in s.written:
        mode = path.stat().st_mode & 0o777
        c.print(f"  wrote {escape(str(path))} (mode {mode:04o})")
    if not s.written:
        c.print("  nothing to write: every file is in place")
    for r in s.roots:
        colour = {"trusted": "green", "draft": "yellow"}.get(r.state, "red")
        c.print(f"  trust root {r.partnership}: [{colour}]{r.state}[/] ({escape(r.detail)})")
    c.print("[bold]Next steps[/]")
    for n, step in enumerate(s.steps, 1):
        c.print(f"  {n}. {escape(step)}")
