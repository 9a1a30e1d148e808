"""``jcm-sync tiles``: publish a node's logs as C2SP tlog-tiles, and verify a published log
from its tiles alone (docs/tiles.md, ADR 0041).

``write`` brings a directory or bucket up to the store's latest checkpoints, writing only
what is new. ``verify`` reads a log's prefix (a URL of any static server, or a directory),
opens its checkpoint under a trust root, checks the tiles' root, and optionally the
inclusion of one entry (or of every bundle, ``--all``) and the consistency with a checkpoint
seen before; no store.

``verify --trust`` takes a root file, a chain of them (oldest first), or one directory of
roots (a node's ``roots/``), from which the chain of the partnership the checkpoint's
origin names is taken (``roots_in``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from jcm_sync.cli.common import (
    MAX_INPUT,
    add_at,
    add_json,
    emit,
    now_of,
    read_input,
    write_output,
)
from jcm_sync.cli.trust import load_trusted
from jcm_sync.core import checkpoint, envelope, merkle
from jcm_sync.core import note as signed_note
from jcm_sync.core.trust import TrustRoot, peek_root, verify_chain
from jcm_sync.errors import BadDataError, ConfigError, NotFoundError
from jcm_sync.local.config import load_config
from jcm_sync.local.keyfiles import read_small_file
from jcm_sync.services.log_service import open_log_checkpoint
from jcm_sync.services.tiles import CHECKPOINT, DirectorySink, TilesPublisher
from jcm_sync.services.tiles_read import TiledLog, TileSource, open_tiled_log
from jcm_sync.store import LogRef, open_store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tiles", help="publish logs as C2SP tlog-tiles; verify from tiles")
    ts = p.add_subparsers(dest="tiles_cmd", required=True, metavar="COMMAND")

    w = ts.add_parser("write", help="write every log of the node's store as tiles, once")
    w.add_argument("--config", type=Path, required=True, help="the node's configuration")
    w.add_argument("--dir", type=Path, help="write into this directory (default: [tiles])")
    add_json(w)
    w.set_defaults(func=cmd_write)

    v = ts.add_parser("verify", help="verify a published log from its tiles alone")
    v.add_argument("where", metavar="URL-or-DIR", help="the log's prefix: http(s) URL or dir")
    v.add_argument("--trust", required=True, action="append", metavar="ROOT",
                   help="the trust root (chain, oldest first) whose keys sign the log, or "
                   "a directory of roots: the chain of the log's partnership is taken")  # fmt: skip
    which = v.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="check the inclusion of this entry")
    which.add_argument("--record", metavar="RECORD_ID", help="find and check this record")
    which.add_argument("--all", action="store_true",
                       help="prove every entry bundle part of the checkpoint")  # fmt: skip
    v.add_argument("--previous", metavar="FILE",
                   help="a checkpoint seen before: check the log still extends it")  # fmt: skip
    v.add_argument("--save", metavar="FILE", help="write the verified checkpoint here")
    add_at(v)
    add_json(v)
    v.set_defaults(func=cmd_verify)


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


# --- write --------------------------------------------------------------------------


def cmd_write(args: argparse.Namespace) -> int:
    return asyncio.run(_write(args))


async def _write(args: argparse.Namespace) -> int:
    from jcm_sync.net.tiles_http import tile_sink

    cfg = load_config(args.config)
    sink = DirectorySink(args.dir) if args.dir else tile_sink(cfg.tiles, cfg.path)
    if sink is None:
        raise ConfigError("give --dir, or set [tiles] dir or s3_url", where="--dir")
    try:
        async with await open_store(cfg.store_url) as store:
            results = await TilesPublisher(store, sink).publish_all()
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            await close()
    data = [{"origin": r.origin, "old_size": r.old_size, "size": r.size, "files": r.files,
             "error": None if r.error is None else str(r.error)} for r in results]  # fmt: skip

    def human(c: Console) -> None:
        for d in data:
            what = f"error: {d['error']}" if d["error"] else (
                f"{d['old_size']} -> {d['size']}, {d['files']} files")  # fmt: skip
            c.print(f"{d['origin']}: {what}")

    emit(args, data, human)
    return 1 if any(r.error for r in results) else 0


# --- verify -------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    return asyncio.run(_verify(args))


def _source(where: str) -> Any:
    if where.startswith(("http://", "https://")):
        from jcm_sync.net.tiles_http import HttpTileSource

        return HttpTileSource(where)
    if not Path(where).is_dir():
        raise NotFoundError("not a directory or an http(s) URL", where=where)
    return DirectorySink(where)


def _origin_of(raw: bytes) -> tuple[str, str]:
    """The origin a checkpoint names and the partnership in it (``<prefix>/<pid>/<node>``),
    unverified: it only chooses the root the signature is then checked under."""
    body = signed_note.parse_note(raw).text
    origin = body.split(b"\n", 1)[0].decode("utf-8", "replace")
    parts = origin.rsplit("/", 2)
    return origin, parts[1] if len(parts) == 3 else ""


def _log_of(raw: bytes, partnership: str) -> LogRef:
    """The log a checkpoint names (origin ``<prefix>/<partnership>/<node>``); its
    signature is checked next, with the keys the trust root gives that node."""
    origin, named = _origin_of(raw)
    if named != partnership:
        raise BadDataError(f"the checkpoint's origin {origin!r} is not a log of {partnership}",
                           where=CHECKPOINT)  # fmt: skip
    return LogRef(partnership, origin.rsplit("/", 1)[1], origin)


def roots_in(directory: Path, partnership: str) -> list[bytes]:
    """The chain of ``partnership``'s trust roots among the files of ``directory`` (not its
    subdirectories), oldest version first: each file that decodes as a root of that
    partnership. A draft (``*.draft.json``, awaiting its countersignature) and a file
    that is no root (a key, a note) are passed over; one file per version (a copy with
    the same bytes is the same root); none is a refusal naming the roots found."""
    found: dict[int, tuple[Path, bytes]] = {}
    others: set[str] = set()
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.endswith(".draft.json"):
            continue
        try:
            data = read_small_file(path, limit=MAX_INPUT, what="trust root")
            root = peek_root(data)
        except BadDataError:
            continue
        if root.partnership != partnership:
            others.add(root.partnership)
            continue
        held = found.setdefault(root.version, (path, data))
        if held[1] != data:
            err = BadDataError(
                f"{held[0].name} and {path.name} are two different documents of version "
                f"{root.version} of {partnership}'s trust root",
                where=str(directory),
            )
            err.next_step = (
                f"keep one of them in {directory} (`jcm-sync trust verify FILE` checks "
                "each), or give the chain with --trust FILE, oldest first"
            )
            raise err
    if not found:
        also = f"; it holds roots of {', '.join(sorted(others))} only" if others else ""
        missing = NotFoundError(
            f"no trust root of {partnership or 'the checkpoint'} in the directory{also}",
            where=str(directory),
        )
        missing.next_step = (
            f"give {partnership or 'the log'}'s trust root file with --trust FILE "
            "(`jcm-sync trust show FILE` says which partnership a root is for)"
        )
        raise missing
    return [found[v][1] for v in sorted(found)]


def _trusted(trust: list[str], raw: bytes, now: datetime) -> TrustRoot:
    """The root the checkpoint ``raw`` is opened under: the chain of ``--trust`` files, or
    that of the checkpoint's partnership in the one ``--trust`` directory."""
    dirs = [t for t in trust if t != "-" and Path(t).is_dir()]
    if not dirs:
        return load_trusted(trust, now).root
    if len(trust) > 1:
        err = ConfigError("a directory of trust roots is given alone", where=dirs[0])
        err.next_step = (
            "give --trust DIR once, or the chain of one partnership's root files, "
            "--trust FILE each, oldest first"
        )
        raise err
    return verify_chain(roots_in(Path(dirs[0]), _origin_of(raw)[1]), now).root


async def _verify(args: argparse.Namespace) -> int:
    now = now_of(args)
    source: TileSource = _source(args.where)
    try:
        raw = await source.read(CHECKPOINT)
        if raw is None:
            raise NotFoundError("no checkpoint published here", where=args.where)
        root = _trusted(args.trust, raw, now)
        ref = _log_of(raw, root.partnership)
        log = await open_tiled_log(source, root, ref, now, prefix="")
        data: dict[str, Any] = {
            "origin": ref.origin, "size": log.size, "root": _b64(log.root),
            "signed_by": list(log.checkpoint.verified_by),
        }  # fmt: skip
        await _check_entry(args, log, data)
        if args.previous:
            data["consistent_with"] = await _check_previous(args, log, root, ref, now)
        data["tiles_fetched"] = log.fetched
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            await close()
    if args.save:
        write_output(args.save, log.checkpoint.note, "checkpoint")

    def human(c: Console) -> None:
        c.print(f"[green]verified[/] {ref.origin}: size {log.size}, root {data['root']}, "
                f"signed by {', '.join(data['signed_by'])}")  # fmt: skip
        if "index" in data:
            c.print(f"entry {data['index']} ({data['record_id']}) is included")
        if "entries_checked" in data:
            c.print(f"all {data['entries_checked']} entries match their tiles and checkpoint")
        if "consistent_with" in data:
            c.print(f"consistent with the checkpoint of size {data['consistent_with']}")
        c.print(f"{log.fetched} files fetched")

    emit(args, data, human)
    return 0


async def _check_entry(args: argparse.Namespace, log: TiledLog, data: dict[str, Any]) -> None:
    if args.all:
        data["entries_checked"] = sum([1 async for _ in log.scan()])
        return
    if args.index is None and args.record is None:
        return
    index = args.index if args.index is not None else await log.find(args.record)
    if not 0 <= index < log.size:
        raise NotFoundError(f"entry {index} is outside a log of {log.size}", where="--index")
    env = (await log.entries(index, index + 1))[0]
    await log.inclusion_proof(index, merkle.leaf_hash(env))  # raises unless it verifies
    data["index"], data["record_id"] = index, envelope.record_id(env)


async def _check_previous(
    args: argparse.Namespace, log: TiledLog, root: Any, ref: LogRef, now: Any
) -> int:
    old = open_log_checkpoint(root, ref, read_input(args.previous, "checkpoint"), now)
    prev = old.checkpoint
    proof = await log.consistency_proof(prev.size) if prev.size < log.size else []
    checkpoint.check_append_only(prev, log.checkpoint.checkpoint, proof)
    return prev.size
