"""``jcm-sync trust``: create, sign, inspect, verify and rotate a partnership's trust root."""

from __future__ import annotations

import argparse
from datetime import datetime
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
from jcm_sync.core.cosign_policy import Quorum, parse_cosign
from jcm_sync.core.envelope import AnyPublicKey, open_envelope
from jcm_sync.core.records import KINDS
from jcm_sync.core.trust import (
    TrustedRoot,
    TrustRoot,
    countersign_root,
    peek_root,
    verify_chain,
    verify_chain_history,
)
from jcm_sync.errors import BadDataError
from jcm_sync.local.keyfiles import load_any_private_key, load_any_public_key, load_passphrase
from jcm_sync.services.trust_roots import Validity, new_root, rotate_root, sign_new_root


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trust", help="manage a partnership's trust root")
    ts = p.add_subparsers(dest="trust_cmd", required=True, metavar="COMMAND")

    i = ts.add_parser("init", help="create version 1 of a partnership's trust root")
    i.add_argument("--partnership", required=True, help="e.g. JP-ID")
    i.add_argument(
        "--node",
        action="append",
        required=True,
        metavar="NODE=PUBFILE",
        help="a node's key (repeat for each node and key), e.g. JP=keys/jp-registry.pub",
    )
    i.add_argument("--root-threshold", type=int, default=None, help="default: one per node")
    _validity_options(i)
    _sign_options(i)
    i.add_argument("--out", required=True, help="file to write the signed root to")
    i.set_defaults(func=cmd_init)

    s = ts.add_parser("sign", help="add a signature to a root (countersign)")
    s.add_argument("root")
    s.add_argument("--key", required=True, type=Path, action="append")
    s.add_argument("--passphrase-file", type=Path)
    s.add_argument("--out", help="default: rewrite ROOT in place")
    s.set_defaults(func=cmd_sign)

    sh = ts.add_parser("show", help="show a root's content (without trusting it)")
    sh.add_argument("root")
    add_json(sh)
    sh.set_defaults(func=cmd_show)

    v = ts.add_parser("verify", help="verify a root, or a chain of roots v1 v2 … in order")
    v.add_argument("roots", nargs="+", metavar="ROOT")
    add_at(v)
    add_json(v)
    v.set_defaults(func=cmd_verify)

    r = ts.add_parser("rotate", help="make version N+1: replace, add or revoke keys")
    r.add_argument("root", help="the current trusted root (version N)")
    r.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="KEYID=PUBFILE",
        help="revoke a key and give its node and roles to a new key",
    )
    r.add_argument("--add", action="append", default=[], metavar="NODE=PUBFILE")
    r.add_argument("--revoke", action="append", default=[], metavar="KEYID")
    r.add_argument("--revoke-at", type=parse_time, help="revocation time (default: now)")
    r.add_argument("--root-threshold", type=int)
    _validity_options(r)
    _sign_options(r)
    r.add_argument("--out", required=True)
    r.set_defaults(func=cmd_rotate)


def _validity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="ROLE=ALG",
        help="signature algorithms a record kind or transport requires: ed25519 (the "
        "default), ml-dsa-44 or both; repeat per role (rotate keeps the current ones)",
    )
    p.add_argument(
        "--cosign",
        action="append",
        default=[],
        metavar="LOG=NODE[:K]",
        help="the cosignature quorum of a log: JP=MN means Japan's log is agreed once MN "
        "cosigned its checkpoint; LOG=N1,N2:K for K of several, LOG=none for quorum 0 "
        "(the default; rotate keeps the current ones)",
    )
    p.add_argument("--expires-days", type=int, default=365, help="root lifetime (default 365)")
    p.add_argument("--key-days", type=int, default=5 * 365, help="new keys' lifetime")
    add_at(p)


def _sign_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign", action="append", default=[], type=Path, metavar="KEYFILE", help="sign with"
    )
    p.add_argument("--passphrase-file", type=Path)


def _node_key(spec: str, what: str) -> tuple[str, AnyPublicKey]:
    node, sep, path = spec.partition("=")
    if not sep or not node or not path:
        raise BadDataError(f"expected NODE=PUBFILE, got {spec!r}", where=what)
    return node, load_any_public_key(Path(path))


def _required(specs: list[str]) -> dict[str, str]:
    """``--require ROLE=ALG`` options: a record kind or transport, and the algorithm."""
    out: dict[str, str] = {}
    for spec in specs:
        role, sep, alg = spec.partition("=")
        if not sep or alg not in ("ed25519", "ml-dsa-44", "both"):
            raise BadDataError(
                f"expected ROLE=ed25519|ml-dsa-44|both, got {spec!r}", where="--require"
            )
        out[role] = alg
    return out


def _cosign(specs: list[str]) -> dict[str, Quorum | None]:
    """``--cosign LOG=NODE[,NODE...][:K]`` options, at most one per log."""
    out: dict[str, Quorum | None] = {}
    for spec in specs:
        log, quorum = parse_cosign(spec)
        if log in out:
            raise BadDataError(f"--cosign names log {log} twice", where="--cosign")
        out[log] = quorum
    return out


def _signers(args: argparse.Namespace) -> list[Any]:
    if not args.sign:
        raise BadDataError(
            "a root must be signed: give at least one --sign KEYFILE", where="--sign"
        )
    pp = load_passphrase(args.passphrase_file)
    return [load_any_private_key(p, pp) for p in args.sign]


def _finish(root: TrustRoot, args: argparse.Namespace) -> bytes:
    envelope = sign_new_root(root, _signers(args))
    write_output(args.out, envelope, "trust root")
    note(f"wrote {args.out}: {root.partnership} trust root version {root.version}")
    return envelope


def _validity(args: argparse.Namespace) -> Validity:
    return Validity(now_of(args), key_days=args.key_days, expires_days=args.expires_days)


def cmd_init(args: argparse.Namespace) -> int:
    keys = [_node_key(spec, "--node") for spec in args.node]
    root = new_root(
        args.partnership,
        keys,
        _validity(args),
        args.root_threshold,
        _required(args.require),
        _cosign(args.cosign),
    )
    _finish(root, args)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    data = read_input(args.root, "trust root")
    peek_root(data)  # refuse to sign something that is not a root
    pp = load_passphrase(args.passphrase_file)
    for path in args.key:
        data = countersign_root(data, load_any_private_key(path, pp))
    out = args.out or args.root
    write_output(out, data, "trust root")
    note(f"wrote {out} with {len(open_envelope(data).signatures)} signatures")
    return 0


def _root_data(root: TrustRoot, signer_ids: list[str]) -> dict[str, Any]:
    return {
        "partnership": root.partnership,
        "version": root.version,
        "expires": root.expires.isoformat(),
        "root_threshold": root.root_threshold,
        "nodes": [n.id for n in root.nodes],
        "keys": [
            {
                "keyid": k.keyid,
                "node": k.node,
                "algorithm": k.algorithm,
                "roles": list(k.roles),
                "not_before": k.not_before.isoformat(),
                "not_after": k.not_after.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in root.keys
        ],
        "required_algorithms": {"default": "ed25519", **root.required_algorithms},
        "cosign_quorum": {
            log: {"cosigners": list(q.cosigners), "threshold": q.threshold}
            for log, q in sorted(root.cosign_quorum.items())
        },
        "signed_by": signer_ids,
    }


def _render_root(c: Console, data: dict[str, Any]) -> None:
    c.print(
        f"[bold]{data['partnership']}[/] trust root version {data['version']}, "
        f"expires {data['expires']}, root threshold {data['root_threshold']}"
    )
    t = Table("key id", "node", "algorithm", "roles", "valid until", "revoked at", "signed")
    for k in data["keys"]:
        t.add_row(
            k["keyid"][:16],
            k["node"],
            k["algorithm"],
            _roles_text(k["roles"]),
            k["not_after"][:19],
            (k["revoked_at"] or "")[:19],
            "yes" if k["keyid"] in data["signed_by"] else "",
        )
    c.print(t)
    needs = ", ".join(f"{r}: {a}" for r, a in data["required_algorithms"].items())
    c.print(f"signature algorithms required: {needs}")
    for log in data["nodes"]:
        q = data["cosign_quorum"].get(log)
        c.print(
            f"{log}'s log is agreed when "
            + (
                f"cosigned by {q['threshold']} of {', '.join(q['cosigners'])}"
                if q
                else "signed by it alone (cosignature quorum 0)"
            )
        )


def _roles_text(roles: list[str]) -> str:
    if set(KINDS) <= set(roles):
        return ", ".join(["all record kinds", *sorted(set(roles) - set(KINDS))])
    return ", ".join(roles)


def cmd_show(args: argparse.Namespace) -> int:
    data = read_input(args.root, "trust root")
    root = peek_root(data)
    signer_ids = [s.keyid for s in open_envelope(data).signatures]
    d = _root_data(root, signer_ids)
    d["trusted"] = None  # show does not verify; see `trust verify`
    emit(args, d, lambda c: _render_root(c, d))
    return 0


def load_trusted(paths: list[str], now: datetime) -> TrustedRoot:
    """Verify a root (or chain of roots) named on the command line."""
    return verify_chain([read_input(p, "trust root") for p in paths], now)


def load_chain(paths: list[str], now: datetime) -> tuple[TrustedRoot, ...]:
    """Verify a chain of roots named on the command line, keeping every version."""
    return verify_chain_history([read_input(p, "trust root") for p in paths], now)


def cmd_verify(args: argparse.Namespace) -> int:
    trusted = load_trusted(args.roots, now_of(args))
    d = _root_data(trusted.root, list(trusted.signers))
    d["trusted"] = True

    def human(c: Console) -> None:
        _render_root(c, d)
        c.print(f"[green]trusted[/]: version {trusted.version} verified")

    emit(args, d, human)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    valid = _validity(args)
    current = load_trusted([args.root], valid.now).root
    replace = []
    for spec in args.replace:
        old_id, sep, path = spec.partition("=")
        if not sep:
            raise BadDataError(f"expected KEYID=PUBFILE, got {spec!r}", where="--replace")
        replace.append((old_id, load_any_public_key(Path(path))))
    root = rotate_root(
        current,
        valid,
        revoke=args.revoke,
        replace=replace,
        add=[_node_key(spec, "--add") for spec in args.add],
        revoke_at=args.revoke_at,
        threshold=args.root_threshold,
        required=_required(args.require),
        cosign=_cosign(args.cosign),
    )
    _finish(root, args)
    return 0
