"""``jcm-sync trust``: create, sign, inspect, verify and rotate a partnership's trust root."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
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
from jcm_sync.core.envelope import PublicKey, open_envelope
from jcm_sync.core.records import KINDS
from jcm_sync.core.trust import (
    DEFAULT_SKEW,
    KeyEntry,
    NodeEntry,
    TrustedRoot,
    TrustRoot,
    countersign_root,
    key_entry,
    peek_root,
    sign_root,
    verify_chain,
    verify_chain_history,
)
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.local.keyfiles import load_passphrase, load_private_key, load_public_key


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
    p.add_argument("--expires-days", type=int, default=365, help="root lifetime (default 365)")
    p.add_argument("--key-days", type=int, default=5 * 365, help="new keys' lifetime")
    add_at(p)


def _sign_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign", action="append", default=[], type=Path, metavar="KEYFILE", help="sign with"
    )
    p.add_argument("--passphrase-file", type=Path)


def _node_key(spec: str, what: str) -> tuple[str, PublicKey]:
    node, sep, path = spec.partition("=")
    if not sep or not node or not path:
        raise BadDataError(f"expected NODE=PUBFILE, got {spec!r}", where=what)
    return node, load_public_key(Path(path))


def _signers(args: argparse.Namespace) -> list[Any]:
    if not args.sign:
        raise BadDataError(
            "a root must be signed: give at least one --sign KEYFILE", where="--sign"
        )
    pp = load_passphrase(args.passphrase_file)
    return [load_private_key(p, pp) for p in args.sign]


def _finish(root: TrustRoot, args: argparse.Namespace) -> bytes:
    try:
        envelope = sign_root(root, _signers(args))
    except ValueError as exc:  # a TrustRoot that fails its own checks on re-decode
        raise BadDataError(str(exc), where="trust root") from None  # same text, now named
    write_output(args.out, envelope, "trust root")
    note(f"wrote {args.out}: {root.partnership} trust root version {root.version}")
    return envelope


def _build(
    partnership: str,
    version: int,
    keys: list[KeyEntry],
    threshold: int,
    expires: datetime,
) -> TrustRoot:
    partner = partnership[3:] if partnership.startswith("JP-") else "?"
    try:
        return TrustRoot(
            type="jcm-sync/trust-root",
            partnership=partnership,
            version=version,
            expires=expires,
            root_threshold=threshold,
            nodes=(NodeEntry(id="JP"), NodeEntry(id=partner)),
            keys=tuple(keys),
        )
    except (ValueError, TypeError) as exc:  # the field checks of the Struct: bad options
        raise BadDataError(str(exc), where="trust root") from None  # same text, now named


def _check_by_decode(root: TrustRoot) -> TrustRoot:
    # Struct constructors do not run pattern checks; a decode does, and runs
    # __post_init__, so a root we write is one we would accept.
    from jcm_sync.core.trust import decode_root, encode_root

    return decode_root(encode_root(root))


def _key_start(now: datetime) -> datetime:
    # a key becomes valid a little before now: the other side's clock may run behind
    return (now - DEFAULT_SKEW).replace(microsecond=0)


def cmd_init(args: argparse.Namespace) -> int:
    now = now_of(args)
    keys = []
    for spec in args.node:
        node, pub = _node_key(spec, "--node")
        keys.append(
            key_entry(
                pub, node, not_before=_key_start(now), not_after=now + timedelta(days=args.key_days)
            )
        )
    nodes = {k.node for k in keys}
    threshold = args.root_threshold or len(nodes)
    root = _check_by_decode(
        _build(args.partnership, 1, keys, threshold, now + timedelta(days=args.expires_days))
    )
    _finish(root, args)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    data = read_input(args.root, "trust root")
    peek_root(data)  # refuse to sign something that is not a root
    pp = load_passphrase(args.passphrase_file)
    for path in args.key:
        data = countersign_root(data, load_private_key(path, pp))
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
                "roles": list(k.roles),
                "not_before": k.not_before.isoformat(),
                "not_after": k.not_after.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in root.keys
        ],
        "signed_by": signer_ids,
    }


def _render_root(c: Console, data: dict[str, Any]) -> None:
    c.print(
        f"[bold]{data['partnership']}[/] trust root version {data['version']}, "
        f"expires {data['expires']}, root threshold {data['root_threshold']}"
    )
    t = Table("key id", "node", "roles", "valid until", "revoked at", "signed")
    for k in data["keys"]:
        t.add_row(
            k["keyid"][:16],
            k["node"],
            _roles_text(k["roles"]),
            k["not_after"][:19],
            (k["revoked_at"] or "")[:19],
            "yes" if k["keyid"] in data["signed_by"] else "",
        )
    c.print(t)


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
    now = now_of(args)
    current = load_trusted([args.root], now).root
    revoke_at = args.revoke_at or now
    keys = {k.keyid: k for k in current.keys}
    key_end = now + timedelta(days=args.key_days)

    def revoke(keyid: str) -> KeyEntry:
        matches = [k for k in keys if k.startswith(keyid)] if len(keyid) >= 8 else []
        if len(matches) != 1:
            raise NotFoundError(f"no single key with id {keyid!r} in version {current.version}")
        old = keys[matches[0]]
        if old.revoked_at is not None:
            raise BadDataError(f"key {old.keyid[:16]} is already revoked", where="--revoke")
        import msgspec

        keys[old.keyid] = msgspec.structs.replace(old, revoked_at=revoke_at)
        return old

    for keyid in args.revoke:
        revoke(keyid)
    for spec in args.replace:
        old_id, sep, path = spec.partition("=")
        if not sep:
            raise BadDataError(f"expected KEYID=PUBFILE, got {spec!r}", where="--replace")
        old = revoke(old_id)
        pub = load_public_key(Path(path))
        keys[pub.key_id] = key_entry(
            pub, old.node, not_before=_key_start(now), not_after=key_end, roles=old.roles
        )
    for spec in args.add:
        node, pub = _node_key(spec, "--add")
        keys[pub.key_id] = key_entry(pub, node, not_before=_key_start(now), not_after=key_end)
    root = _check_by_decode(
        _build(
            current.partnership,
            current.version + 1,
            list(keys.values()),
            args.root_threshold or current.root_threshold,
            now + timedelta(days=args.expires_days),
        )
    )
    _finish(root, args)
    return 0
