"""``jcm-sync log``: show, append to, checkpoint, prove and audit a node's logs in a store.

Each command names a store (``--store URL``, or ``--config FILE`` for the node's own store,
partnership, node, trust root and checkpoint key) and a log (``--partnership``, ``--node``,
``--origin-prefix``). Read commands take ``--json``; hashes are printed in base64, as in
checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jcm_sync.cli.common import add_at, add_json, emit, note, now_of, read_input
from jcm_sync.cli.trust import load_chain, load_trusted
from jcm_sync.core import checkpoint
from jcm_sync.core import note as signed_note
from jcm_sync.core.envelope import PrivateKey, PublicKey
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import ConfigError
from jcm_sync.local.config import Config, load_config
from jcm_sync.local.keyfiles import load_passphrase, load_private_key
from jcm_sync.services.log_service import (
    LogService,
    append_checked,
    checkpoint_key_history,
    list_entries,
    prove_consistency,
    prove_inclusion,
    prove_record,
    verify_log,
)
from jcm_sync.store import AppendResult, LogRef, Store, StoredCheckpoint, open_store

DEFAULT_ORIGIN_PREFIX = "jcm-sync.example"
SHOW_LAST = 20


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("log", help="inspect and maintain the logs in a store")
    ls = p.add_subparsers(dest="log_cmd", required=True, metavar="COMMAND")

    s = ls.add_parser("show", help="size, root, latest checkpoint and entries of a log")
    _target(s)
    s.add_argument(
        "--from", dest="start", type=int, help=f"first index (default: last {SHOW_LAST})"
    )
    s.add_argument("--to", dest="end", type=int, help="end index, exclusive (default: size)")
    add_json(s)
    s.set_defaults(func=_run(show))

    a = ls.add_parser("append", help="verify envelopes and append them at the end of a log")
    _target(a)
    a.add_argument("files", nargs="+", metavar="ENVELOPE", help="envelope files; - for stdin")
    _trust(a)
    _key(a, "sign a checkpoint of the new tree with this key (default with --config)")
    a.add_argument("--no-checkpoint", action="store_true", help="append without signing")
    add_at(a)
    add_json(a)
    a.set_defaults(func=cmd_append)

    c = ls.add_parser(
        "checkpoint", help="sign a checkpoint of the current tree, or print the latest"
    )
    _target(c)
    _trust(c)
    _key(c, "sign with this key; without it, print the latest stored checkpoint")
    add_at(c)
    add_json(c)
    c.set_defaults(func=_run(sign_checkpoint))

    v = ls.add_parser("vkey", help="print the signed-note verifier key of a log's checkpoints")
    _target(v, store=False)
    v.add_argument("--key", type=Path, help="the checkpoint key, private (.key) or public (.pub)")
    v.add_argument("--passphrase-file", type=Path)
    add_json(v)
    v.set_defaults(func=cmd_vkey)

    i = ls.add_parser("prove-inclusion", help="an inclusion proof of an entry, from stored nodes")
    _target(i)
    which = i.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int)
    which.add_argument("--record", metavar="RECORD_ID")
    i.add_argument("--size", type=int, help="tree size (default: current)")
    add_json(i)
    i.set_defaults(func=_run(inclusion))

    k = ls.add_parser("prove-consistency", help="a consistency proof between two tree sizes")
    _target(k)
    k.add_argument("--old", type=int, required=True, help="the older tree size")
    k.add_argument("--new", type=int, help="the newer tree size (default: current)")
    add_json(k)
    k.set_defaults(func=_run(consistency))

    f = ls.add_parser("verify", help="recompute a log from its entries; exit 1 on any problem")
    _target(f)
    f.add_argument("--trust", action="append", metavar="ROOT", help="also re-verify every "
                   "envelope and checkpoint signature under this root (chain)")  # fmt: skip
    add_at(f)
    add_json(f)
    f.set_defaults(func=_run(audit))


# --- options ------------------------------------------------------------------------


def _target(p: argparse.ArgumentParser, *, store: bool = True) -> None:
    if store:
        p.add_argument(
            "--store", metavar="URL", help="sqlite:///FILE, postgresql://... or memory://"
        )
    p.add_argument("--config", type=Path, help="a node configuration: store, log and keys")
    p.add_argument("--partnership", help="e.g. JP-ID (default: the configured one)")
    p.add_argument("--node", help="whose log: JP or the partner (default: this node)")
    p.add_argument("--origin-prefix", help=f"origin prefix (default {DEFAULT_ORIGIN_PREFIX})")


def _trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", action="append", metavar="ROOT", help="the trust root (chain)")


def _key(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--key", type=Path, help=text)
    p.add_argument("--passphrase-file", type=Path)


@dataclass
class Target:
    """The store and log a command works on, from options and configuration."""

    url: str
    log: LogRef
    config: Config | None
    args: argparse.Namespace

    def _trust_paths(self) -> list[str]:
        paths: list[str] = getattr(self.args, "trust", None) or []
        if not paths and self.config is not None:
            paths = [
                str(self.config.path(p))
                for p in self.config.partnership(self.log.partnership).trust_root
            ]
        return paths

    def trust_root(self, now: datetime) -> TrustRoot | None:
        paths = self._trust_paths()
        return load_trusted(paths, now).root if paths else None

    def trust_chain(self, now: datetime) -> tuple[TrustRoot, ...]:
        """Every version of the given chain, oldest first (empty if none is given)."""
        paths = self._trust_paths()
        return tuple(t.root for t in load_chain(paths, now)) if paths else ()

    def private_key(self) -> PrivateKey | None:
        path: Path | None = getattr(self.args, "key", None)
        pass_file: Path | None = getattr(self.args, "passphrase_file", None)
        if path is None and self.config is not None and self.log.node == self.config.node.id:
            keys = self.config.keys
            path = self.config.path(keys.checkpoint or keys.signing)
            if pass_file is None and keys.passphrase_file:
                pass_file = self.config.path(keys.passphrase_file)
        if path is None:
            return None
        return load_private_key(path, load_passphrase(pass_file))


def resolve(args: argparse.Namespace, *, need_store: bool = True) -> Target:
    cfg = load_config(args.config) if args.config else None
    url = getattr(args, "store", None) or (cfg.store_url if cfg else None)
    if need_store and not url:
        raise ConfigError("name a store with --store URL or --config FILE", where="--store")
    partnership = args.partnership
    if partnership is None and cfg is not None:
        if len(cfg.partnerships) != 1:
            raise ConfigError("this node serves several partnerships: give --partnership")
        partnership = cfg.partnerships[0].id
    node = args.node or (cfg.node.id if cfg else None)
    if not partnership or not node:
        raise ConfigError("name the log with --partnership and --node (or --config FILE)")
    prefix = args.origin_prefix or (cfg.node.origin_prefix if cfg else DEFAULT_ORIGIN_PREFIX)
    log = LogRef(partnership, node, checkpoint.origin_for(prefix, partnership, node))
    return Target(url or "", log, cfg, args)


def _run(
    body: Callable[[Target, Store], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command body: resolve the target, open and close the store."""

    def command(args: argparse.Namespace) -> int:
        target = resolve(args)

        async def main() -> int:
            async with await open_store(target.url) as store:
                # entries are stamped as received at --at, as they are verified (ADR 0018)
                store.set_clock(lambda: now_of(target.args))
                return await body(target, store)

        return asyncio.run(main())

    return command


# --- commands -----------------------------------------------------------------------


async def show(t: Target, store: Store) -> int:
    head = await store.tree_head(t.log)
    latest = await store.latest_checkpoint(t.log)
    end = head.size if t.args.end is None else t.args.end
    start = max(0, end - SHOW_LAST) if t.args.start is None else t.args.start
    rows = [
        {**dataclasses.asdict(r), "appended_at": r.appended_at.isoformat()}
        for r in await list_entries(store, t.log, start, end)
    ]
    data = {
        "origin": t.log.origin,
        "size": head.size,
        "root": b64(head.root),
        "latest_checkpoint": None if latest is None else latest.size,
        "entries": rows,
    }

    def human(c: Console) -> None:
        c.print(f"[bold]{escape(t.log.origin)}[/]  size {head.size}  root {data['root']}")
        c.print(f"latest checkpoint: {'none' if latest is None else f'size {latest.size}'}")
        if rows:
            table = Table("index", "record id", "kind", "key", "appended at")
            for r in rows:
                cells = (r["record_id"][:16], r["kind"], r["key"], r["appended_at"])
                table.add_row(str(r["index"]), *map(escape, cells))
            c.print(table)

    emit(t.args, data, human)
    return 0


async def _guard_trust(t: Target, store: Store, *, advance: bool) -> None:
    """No trust-root rollback (ADR 0017): a chain older than, or different from, the
    store's mark is refused; a command that writes raises the mark to a newer one."""
    from jcm_sync.services.node import check_roots, guard_roots

    paths = t._trust_paths()
    if not paths:
        return
    chain = load_chain(paths, now_of(t.args))
    chains = {chain[-1].root.partnership: chain}
    await (guard_roots(store, chains) if advance else check_roots(store, chains))


def _service(t: Target, store: Store, *, need_key: bool) -> LogService | None:
    now = now_of(t.args)
    key = t.private_key()
    if key is None:
        if need_key:
            raise ConfigError("give the checkpoint key with --key (or --config)", where="--key")
        return None
    root = t.trust_root(now)
    if root is None:
        raise ConfigError("give the trust root with --trust (or --config)", where="--trust")
    return LogService(store, t.log, root=root, checkpoint_key=key, clock=lambda: now)


def cmd_append(args: argparse.Namespace) -> int:
    t = resolve(args)
    if t.config is not None and t.log.node == t.config.node.id:
        return asyncio.run(_append_own(t, t.config))
    return _run(append)(args)


async def _append_own(t: Target, cfg: Config) -> int:
    """The node's own log: the node's one write path, quarantine check included."""
    from jcm_sync.services.node import load_keys, open_node
    from jcm_sync.services.own_log import append_own

    envelopes = [read_input(f, "envelope") for f in t.args.files]
    now = now_of(t.args)
    keys, key = load_keys(cfg), t.private_key()
    if t.args.key is not None and key is not None:
        keys = dataclasses.replace(keys, checkpoint=key)
    store = await open_store(t.url) if t.args.store else None
    node = await open_node(cfg, clock=lambda: now, store=store, keys=keys)
    try:
        await _guard_trust(t, node.store, advance=True)
        sign = not t.args.no_checkpoint
        result = await append_own(node, t.log.partnership, envelopes, sign=False, checkpoint=sign)
        latest = await node.store.latest_checkpoint(t.log)
    finally:
        await node.close()
    _print_append(t, result, latest, signed=sign)
    return 0


async def append(t: Target, store: Store) -> int:
    """Another node's log, or a store without a node: verify and append, no quarantine
    (which only a node's own log has)."""
    envelopes = [read_input(f, "envelope") for f in t.args.files]
    now = now_of(t.args)
    await _guard_trust(t, store, advance=True)
    key = None if t.args.no_checkpoint else t.private_key()
    root = t.trust_root(now)
    if root is None:
        raise ConfigError("give the trust root with --trust (or --config)", where="--trust")
    result = await append_checked(store, t.log, envelopes, root=root, now=now, checkpoint_key=key)
    latest = await store.latest_checkpoint(t.log)
    _print_append(t, result, latest, signed=key is not None)
    return 0


def _print_append(
    t: Target, result: AppendResult, latest: StoredCheckpoint | None, *, signed: bool
) -> None:
    data = {
        "origin": t.log.origin, "start": result.start, "appended": result.appended,
        "present": result.present, "size": result.size, "root": b64(result.root),
        "checkpoint": None if latest is None else latest.size,
    }  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"appended {result.appended} at {result.start}; size {result.size}, "
                f"root {data['root']}")  # fmt: skip
        if signed:
            note(f"signed checkpoint of size {data['checkpoint']}")

    emit(t.args, data, human)


async def sign_checkpoint(t: Target, store: Store) -> int:
    service = _service(t, store, need_key=False)
    if service is not None:
        await _guard_trust(t, store, advance=True)
        stored = await service.sign_checkpoint()
    else:
        latest = await store.latest_checkpoint(t.log)
        if latest is None:
            note("no checkpoint is stored for this log")
            return 1
        stored = latest
    data = {"origin": t.log.origin, "size": stored.size, "root": b64(stored.root),
            "note": stored.note.decode()}  # fmt: skip
    emit(t.args, data, lambda c: c.print(stored.note.decode(), end="", markup=False))
    return 0


def cmd_vkey(args: argparse.Namespace) -> int:
    t = resolve(args, need_store=False)
    if args.key is not None and b"PRIVATE KEY" not in read_input(str(args.key), "key file"):
        public = PublicKey.from_pem(read_input(str(args.key), "key file"), where=str(args.key))
    else:
        key = t.private_key()
        if key is None:
            raise ConfigError("give the checkpoint key with --key (or --config)", where="--key")
        public = key.public
    vkey = signed_note.vkey(t.log.origin, public.key)
    emit(args, {"origin": t.log.origin, "vkey": vkey}, lambda c: c.print(vkey, markup=False))
    return 0


async def inclusion(t: Target, store: Store) -> int:
    if t.args.record is not None:
        proof = await prove_record(store, t.log, t.args.record, t.args.size)
    else:
        proof = await prove_inclusion(store, t.log, t.args.index, t.args.size)
    data = {
        "origin": t.log.origin, "index": proof.index, "size": proof.size,
        "leaf_hash": b64(proof.leaf_hash), "root": b64(proof.root),
        "path": [b64(h) for h in proof.path],
    }  # fmt: skip
    emit(t.args, data, lambda c: _print_proof(c, data))
    return 0


async def consistency(t: Target, store: Store) -> int:
    proof = await prove_consistency(store, t.log, t.args.old, t.args.new)
    data = {
        "origin": t.log.origin, "old_size": proof.old_size, "new_size": proof.new_size,
        "old_root": b64(proof.old_root), "new_root": b64(proof.new_root),
        "path": [b64(h) for h in proof.path],
    }  # fmt: skip
    emit(t.args, data, lambda c: _print_proof(c, data))
    return 0


def _print_proof(c: Console, data: dict[str, Any]) -> None:
    for k, v in data.items():
        if k != "path":
            c.print(f"{k:10} {v}", markup=False)
    for n, h in enumerate(data["path"]):
        c.print(f"path[{n}]    {h}", markup=False)


async def audit(t: Target, store: Store) -> int:
    now = now_of(t.args)
    chain = t.trust_chain(now)
    root = chain[-1] if chain else None
    if chain:
        await _guard_trust(t, store, advance=False)
    # checkpoints are judged by every key the chain held (log.py rule 5), so the ones
    # signed before a rotation stay verifiable
    # entries judged at their witnessed time under a cosignature quorum (ADR 0035)
    from jcm_sync.services.agreement import stored_verifier

    result = await verify_log(
        store,
        t.log,
        verify=None if root is None else await stored_verifier(store, root, t.log, now),
        keys=checkpoint_key_history(chain, t.log) if chain else None,
    )
    data = {
        "origin": t.log.origin, "ok": result.ok, "size": result.size, "root": b64(result.root),
        "entries_checked": result.entries_checked,
        "checkpoints_checked": result.checkpoints_checked,
        "signatures_checked": root is not None, "problems": result.problems,
    }  # fmt: skip

    def human(c: Console) -> None:
        c.print(f"[bold]{escape(t.log.origin)}[/]: {result.entries_checked} entries, "
                f"{result.checkpoints_checked} checkpoints checked")  # fmt: skip
        for p in result.problems:
            c.print(f"[red]problem[/]: {escape(p)}")
        if result.ok:
            c.print(f"[green]ok[/]: size {result.size}, root {data['root']}")

    emit(t.args, data, human)
    return 0 if result.ok else 1
