"""Export: the records of both logs of a partnership, as of a checkpoint of each, to XLSX,
CSV or JSON lines.

Why this module exists: secretariats keep and audit registry data in spreadsheets, and
the README promised an export. What an export holds must be a state both sides can name
(a pair of checkpoints, as reconciliation uses), and a large partnership must export in
one command without holding it in memory (docs/adr/0024-export-record-show-and-endorse.md).

Rules:

1. **As of checkpoints.** Each log is exported as of one of its stored checkpoints: by
   default the latest (the node's own checkpoint of its log, the counterpart's verified
   checkpoint of the replica), as reconciliation takes them; a log never checkpointed
   is taken at its head. ``--at JP=120,ID=340`` names a log's size instead, which must
   be the size of a stored checkpoint of it (0 exports none of that log); a log not
   named is taken at its latest. The stored tree's root at that size must be the
   checkpoint's root, or nothing is written.
2. **What a row holds.** Every record of the two logs up to those sizes, Japan's log
   first, each in log order: its record id, the log (node) and index holding it, the
   nodes whose signatures its envelope carries (``signers``, ``;``-separated in a cell)
   and the record's fields in the layout of ``core.tabular`` (``EXPORT_COLUMNS`` then
   ``tabular.headers(kind)``). In JSON lines, a line is ``{"record_id", "log",
   "log_index", "signers", "kind", "record"}`` with the record as its JSON object.
3. **Kinds.** One sheet or file per kind asked for (all kinds by default), each present
   even when empty; records of other kinds are skipped.
4. **Streaming.** Entries are read from the store ``CHUNK`` at a time, decoded without
   checking their signatures again (``reconcile.inputs`` rule 2: the store verified
   them) and written as they come, on a worker thread; nothing is kept but the counts.
   The next chunk is read from the store while the worker writes this one, so the
   store's reads overlap the writing.
5. **No partial files.** The files are written under a temporary name and renamed into
   place once complete (``local.export_files`` rule 3).
"""

from __future__ import annotations

import asyncio
import base64
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jcm_sync.core import merkle, tabular
from jcm_sync.core.reconcile.inputs import iter_stored, signer_nodes
from jcm_sync.core.records import KINDS, to_builtins
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError, CorruptStoreError, NotFoundError
from jcm_sync.local.export_files import JsonlSink, Sink
from jcm_sync.services.node import Node
from jcm_sync.store import LogRef, StoredCheckpoint

FORMATS: Final = ("xlsx", "csv", "jsonl")
CHUNK: Final = 2000
"""Entries read, decoded and written at a time (rule 4)."""


# --- rule 1: which state ------------------------------------------------------------------


def parse_at(texts: Iterable[str]) -> dict[str, int]:
    """``JP=120,ID=340`` (or several such arguments) as sizes by node; BadDataError."""
    out: dict[str, int] = {}
    for text in texts:
        for part in text.split(","):
            node, sep, size = part.strip().partition("=")
            node = node.strip().upper()
            if not sep or not node or not size.strip().isdigit():
                raise BadDataError(
                    f"{part.strip()!r} is not NODE=SIZE, e.g. JP=120,ID=340", where="--at"
                )
            if node in out:
                raise BadDataError(f"the size of {node}'s log is given twice", where="--at")
            out[node] = int(size)
    return out


def parse_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    """The kinds asked for, in ``records.KINDS`` order; every kind when none is named."""
    if not kinds:
        return KINDS
    for k in kinds:
        if k not in KINDS:
            close = difflib.get_close_matches(k, KINDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (kinds: {', '.join(KINDS)})"
            raise BadDataError(f"no record kind {k!r}{hint}", where="--kind")
    return tuple(k for k in KINDS if k in kinds)


@dataclass(frozen=True)
class LogCut:
    """One log as of a checkpoint (rule 1)."""

    ref: LogRef
    size: int
    root: bytes
    checkpoint: bytes | None  # the signed note; None when the log was never checkpointed

    def to_builtins(self) -> dict[str, Any]:
        return {"node": self.ref.node, "origin": self.ref.origin, "size": self.size,
                "root": base64.b64encode(self.root).decode(),
                "checkpointed": self.checkpoint is not None}  # fmt: skip


async def cut_logs(node: Node, partnership: str, at: Mapping[str, int]) -> list[LogCut]:
    """Rule 1: both logs of ``partnership`` as of their checkpoints, Japan's first."""
    logs = node.logs(partnership)
    refs = sorted((logs.own, logs.replica), key=lambda r: r.node != "JP")
    unknown = set(at) - {r.node for r in refs}
    if unknown:
        raise BadDataError(
            f"partnership {partnership} has no log of {', '.join(sorted(unknown))} "
            f"(its logs: {', '.join(r.node for r in refs)})",
            where="--at",
        )
    store, cuts = node.store, []
    for ref in refs:
        if at.get(ref.node) == 0:
            cuts.append(LogCut(ref, 0, merkle.EMPTY_ROOT, None))
            continue
        cp: StoredCheckpoint | None = None
        if ref.node in at:
            try:
                cp = await store.checkpoint_at(ref, at[ref.node])
            except NotFoundError:
                sizes = [str(c.size) for c in await store.checkpoints(ref)][-10:]
                err = NotFoundError(
                    f"{ref.node}'s log has no checkpoint of size {at[ref.node]} "
                    f"(its latest checkpoints: {', '.join(sizes) or 'none'})",
                    where="--at",
                )
                err.next_step = "name the size of one of its checkpoints, or 0"
                raise err from None
        else:
            cp = await store.latest_checkpoint(ref)
        if cp is None:
            head = await store.tree_head(ref)
            cuts.append(LogCut(ref, head.size, head.root, None))
            continue
        if await store.root_at(ref, cp.size) != cp.root:
            raise CorruptStoreError(
                f"the stored tree of size {cp.size} does not have its checkpoint's root",
                where=ref.origin,
            )
        cuts.append(LogCut(ref, cp.size, cp.root, cp.note))
    return cuts


# --- rules 2-4: the rows ------------------------------------------------------------------


def sheet_headers(kinds: Sequence[str]) -> dict[str, list[str]]:
    """The header row of each kind's sheet (rule 2)."""
    return {k: [*tabular.EXPORT_COLUMNS, *tabular.headers(k)] for k in kinds}


@dataclass
class ExportResult:
    """What an export wrote: the logs' cuts and how many records of each kind."""

    partnership: str
    format: str
    target: str
    cuts: list[LogCut]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_builtins(self) -> dict[str, Any]:
        return {"partnership": self.partnership, "format": self.format, "out": self.target,
                "logs": [c.to_builtins() for c in self.cuts], "records": self.total,
                "by_kind": self.counts}  # fmt: skip


def _write_chunk(
    sink: Sink,
    root: TrustRoot,
    nodes: dict[str, str],
    log_node: str,
    start: int,
    envelopes: list[bytes],
    wanted: frozenset[str],
    counts: dict[str, int],
) -> None:
    """Rules 2-4 for one chunk: decode each entry and write its row (worker thread)."""
    jsonl = sink if isinstance(sink, JsonlSink) else None
    sep = tabular.SEP
    for n, e in enumerate(iter_stored(root, envelopes, nodes=nodes)):
        if e.kind not in wanted:
            continue
        counts[e.kind] += 1
        signers = sorted(e.signers)
        if jsonl is not None:
            jsonl.write_object({"record_id": e.record_id, "log": log_node,
                               "log_index": start + n, "signers": signers, "kind": e.kind,
                               "record": to_builtins(e.record)})  # fmt: skip
            continue
        row = tabular.record_to_row(e.record)
        try:
            sink.write(e.kind, [e.record_id, log_node, start + n, sep.join(signers), *row.values()])
        except BadDataError as exc:
            exc.where = f"record {e.record_id[:12]} ({log_node} #{start + n})"
            raise


async def export(
    node: Node,
    partnership: str,
    sink: Sink,
    *,
    kinds: Sequence[str] = KINDS,
    at: Mapping[str, int] | None = None,
    fmt: str = "",
) -> ExportResult:
    """Export both logs of ``partnership`` into ``sink`` (all the rules)."""
    cuts = await cut_logs(node, partnership, at or {})
    root = node.logs(partnership).root
    nodes = signer_nodes(root)
    wanted = frozenset(kinds)
    result = ExportResult(partnership, fmt, str(sink.target), cuts, dict.fromkeys(kinds, 0))
    sink.begin(sheet_headers(kinds))
    chunks = [(cut, lo) for cut in cuts for lo in range(0, cut.size, CHUNK)]

    def fetch(i: int) -> asyncio.Task[list[Any]] | None:
        if i >= len(chunks):
            return None
        cut, lo = chunks[i]
        return asyncio.ensure_future(node.store.entries(cut.ref, lo, min(cut.size, lo + CHUNK)))

    # the next chunk is read from the store while this one is written (rule 4)
    ahead = fetch(0)
    try:
        for i, (cut, lo) in enumerate(chunks):
            assert ahead is not None
            entries = await ahead
            ahead = fetch(i + 1)
            envelopes = [e.envelope for e in entries]
            await asyncio.to_thread(_write_chunk, sink, root, nodes, cut.ref.node, lo,
                                    envelopes, wanted, result.counts)  # fmt: skip
        await asyncio.to_thread(sink.commit)
    except BaseException:
        if ahead is not None:
            ahead.cancel()
        sink.abort()
        raise
    return result
