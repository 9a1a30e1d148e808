"""``jcm-sync key``: generate and inspect Ed25519 and ML-DSA-44 key files.

Both commands first check that this installation can do ML-DSA-44 (``core/pq.py``
rule 4) and stop with the remedy when it cannot, whichever algorithm is asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from jcm_sync.cli.common import add_json, emit, note, read_input
from jcm_sync.core.envelope import generate_key, private_key_from_pem, public_key_from_pem
from jcm_sync.core.pq import ALGORITHMS, require_mldsa
from jcm_sync.local.keyfiles import load_passphrase, write_key_pair

_NAMES = {"ed25519": "Ed25519", "ml-dsa-44": "ML-DSA-44"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("key", help="generate and inspect keys")
    ks = p.add_subparsers(dest="key_cmd", required=True, metavar="COMMAND")

    g = ks.add_parser("generate", help="write NAME.key (0600) and NAME.pub, print the key id")
    g.add_argument("--name", required=True, help="file name stem, e.g. jp-registry")
    g.add_argument("--out", default=".", help="directory to write into (default: .)")
    g.add_argument(
        "--alg",
        choices=ALGORITHMS,
        default="ed25519",
        help="signature algorithm (default: ed25519); an ml-dsa-44 private key is its "
        "32-byte seed in PKCS#8",
    )
    g.add_argument("--force", action="store_true", help="overwrite existing key files")
    g.add_argument("--passphrase-file", type=Path, help="encrypt the private key with this")
    add_json(g)
    g.set_defaults(func=cmd_generate)

    s = ks.add_parser("show", help="show a key file's algorithm, type and key id")
    s.add_argument("file")
    s.add_argument("--passphrase-file", type=Path)
    add_json(s)
    s.set_defaults(func=cmd_show)


def cmd_generate(args: argparse.Namespace) -> int:
    require_mldsa()
    key = generate_key(args.alg)
    key_path, pub_path = write_key_pair(
        Path(args.out),
        args.name,
        key,
        passphrase=load_passphrase(args.passphrase_file),
        force=args.force,
    )
    data = {
        "key_id": key.key_id,
        "algorithm": key.algorithm,
        "private": str(key_path),
        "public": str(pub_path),
    }

    def human(c: Console) -> None:
        note(f"wrote {_NAMES[key.algorithm]} key {key_path} (mode 0600) and {pub_path}")
        c.print(key.key_id)

    emit(args, data, human)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    require_mldsa()
    raw = read_input(args.file, "key file")
    if b"PRIVATE KEY" in raw:
        pub = private_key_from_pem(
            raw, load_passphrase(args.passphrase_file), where=args.file
        ).public
        kind = "private"
    else:
        pub = public_key_from_pem(raw, where=args.file)
        kind = "public"
    data = {
        "file": args.file,
        "type": kind,
        "algorithm": pub.algorithm,
        "key_id": pub.key_id,
        "public_key_bytes": len(pub.raw),
        "public_key_pem": pub.pem().decode(),
    }

    def human(c: Console) -> None:
        c.print(f"[bold]{args.file}[/]: {_NAMES[pub.algorithm]} {kind} key")
        c.print(f"key id  {pub.key_id}")

    emit(args, data, human)
    return 0
