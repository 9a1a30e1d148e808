"""``jcm-sync import``: authored rows and records into the node's own log, all or none.

Why this module exists: a secretariat imports a spreadsheet of thousands of rows. A
typo in one must not sign the others into an append-only log, the same file imported
twice must not double anything, and a changed row must not silently become a second
version. This use case decides what of an input is new, held or wrong, and writes the
new through the one own-log path (``own_log``).

Rules:

1. **Strict authoring.** Rows become records by ``core.tabular`` (unknown columns
   refused with a suggestion); a JSON record is refused for any member its kind does
   not have, at any depth (``tabular.unknown_members``), then decoded and validated.
   A signed envelope in a JSON input is stored as it is; a line of a JSON-lines export
   is read as the record it holds. An empty ``created`` is the
   import's time. A record of another partnership, or authored by another node, is a
   problem of its row.
2. **Every problem at once, nothing stored unless none.** Every row is converted and
   checked before anything is signed; every problem (file, sheet, row, column, value,
   reason) is collected and raised together as one ``InvalidRowsError``. Signing and
   the trust root's verification run over every record before the first is stored,
   and so does the quarantine check (``reconciliation`` rule 6).
3. **Idempotent.** A record is *held* when the own log holds a version of the same kind
   and natural key with the same content (every field but ``created`` and
   ``supersedes``); it is skipped and counted. A record whose key is held with other
   content is refused, naming the held version's record id, unless its ``supersedes``
   names that latest version. The same key twice in one import with different content
   is refused; the same content twice counts once. Envelopes are judged by the
   record inside them the same way (and one already in the log is held).
4. **Streaming and batches.** Rows are read one at a time and kept as records (about
   1 KB each); signed records are appended in batches of ``BATCH`` through
   ``own_log.append_verified`` (the quarantine check and the append), with one
   checkpoint signed after the last. There is no limit on the number of rows.
5. ``dry_run`` does every check of rules 1-3, including signing in memory and the
   verification, and stores nothing.
6. **Two cores.** Inputs of ``PARALLEL_BYTES`` or more are read and converted (rule
   1) by a spawned process, which sends records in chunks, while this process
   classifies, signs and verifies each chunk as it arrives (until the first problem):
   Ed25519 signing and verifying hold the GIL, so a thread would not overlap them.
   Nothing is appended before the whole input is read and found valid.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import chain
from multiprocessing.process import BaseProcess
from pathlib import Path
from queue import Empty
from typing import Any, Final

import msgspec

from jcm_sync import errors
from jcm_sync.core import tabular
from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import Record, decode_record, encode_record
from jcm_sync.core.trust import Verification
from jcm_sync.errors import BadDataError, CellProblem, InvalidRowsError, JcmSyncError
from jcm_sync.local.spreadsheets import SourceRow, read_source
from jcm_sync.services.node import Node
from jcm_sync.services.own_log import append_verified, verify_documents
from jcm_sync.services.reconciliation import ReconcileService

BATCH: Final = 5000
_EXPORTED: Final = frozenset({*tabular.EXPORT_COLUMNS, "kind", "record"})
PARALLEL_BYTES: Final = 1024 * 1024
"""Inputs at least this large are read by a second process (rule 6)."""
MAX_LISTED: Final = 10_000
"""At most this many problems are listed (and reported); the count says how many."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ImportResult:
    partnership: str
    rows: int
    new: int
    held: int
    size: int
    dry_run: bool

    def to_builtins(self) -> dict[str, object]:
        return {"partnership": self.partnership, "rows": self.rows, "new": self.new,
                "held": self.held, "size": self.size, "dry_run": self.dry_run}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Item:
    at: SourceRow
    record: Record | None = None
    envelope: bytes | None = None


def _content(record: Record) -> bytes:
    """Rule 3: what a record says, without when it was signed or what it replaces."""
    return encode_record(msgspec.structs.replace(record, created=_EPOCH, supersedes=None))


def _at(at: SourceRow, problems: Iterable[CellProblem]) -> list[CellProblem]:
    return [replace(p, file=at.file, sheet=at.sheet, row=at.row) for p in problems]


def _from_json(data: bytes, created: datetime) -> Record | list[CellProblem]:
    try:
        obj = msgspec.json.decode(data)
    except msgspec.MsgspecError as exc:
        return [CellProblem("record", data[:60].decode("utf-8", "replace"), f"not JSON: {exc}")]
    except RecursionError:  # msgspec's nesting limit; its traceback says nothing more
        return [CellProblem("record", "", "JSON is nested too deeply to be a record")]
    if isinstance(obj, dict) and isinstance(obj.get("record"), dict) and set(obj) <= _EXPORTED:
        # a line of `jcm-sync export --format jsonl`: the record, and what export adds
        obj = {"kind": obj.get("kind"), **obj["record"]}
        data = msgspec.json.encode(obj)
    problems = tabular.unknown_members(obj)
    if problems:
        return problems
    assert isinstance(obj, dict)
    if "created" not in obj:
        obj["created"] = tabular.format_time(created)
        data = msgspec.json.encode(obj)
    try:
        return decode_record(data)
    except JcmSyncError as exc:
        where = exc.where or "record"
        value = obj.get(where.split(".")[0].split("[")[0], "")
        return [CellProblem(where, "" if value is None else str(value)[:200], exc.message)]


def _peek(envelope: bytes) -> Record | None:
    """The record inside a signed envelope, unverified (only to classify it, rule 3); None
    if it does not open (the verification, which refuses it, says why)."""
    try:
        return decode_record(open_envelope(envelope).payload)
    except (JcmSyncError, RecursionError):
        return None


def _convert_one(
    node_id: str, partnership: str, src: SourceRow | CellProblem, created: datetime
) -> list[_Item | CellProblem]:
    """Rule 1 for one row: its record, or its problems."""
    if isinstance(src, CellProblem):
        return [src]
    if src.data is not None and b'"payloadType"' in src.data:
        return [_Item(src, record=_peek(src.data), envelope=src.data)]
    if src.cells is not None:
        try:
            out: Record | list[CellProblem] = tabular.row_to_record(
                src.kind, src.cells, created=created
            )
        except InvalidRowsError as exc:
            out = list(exc.problems)
    else:
        assert src.data is not None
        out = _from_json(src.data, created)
    if isinstance(out, list):
        return list(_at(src, out))
    own = []
    if out.partnership != partnership:
        own.append(CellProblem("partnership", out.partnership,
                               f"this import signs into {partnership}"))  # fmt: skip
    if out.author != node_id:
        own.append(CellProblem("author", out.author, f"this node signs as {node_id}"))
    return list(_at(src, own)) if own else [_Item(src, record=out)]


def convert(
    node_id: str, partnership: str, sources: Iterable[SourceRow | CellProblem], created: datetime
) -> tuple[list[_Item], list[CellProblem]]:
    """Rule 1 over every row; the rows' records and every problem found."""
    items: list[_Item] = []
    problems: list[CellProblem] = []
    for src in sources:
        for out in _convert_one(node_id, partnership, src, created):
            if isinstance(out, CellProblem):
                problems.append(out)
            else:
                items.append(out)
    return items, problems


@dataclass
class _Held:
    """The own log's record ids, its contents by (kind, key), and each key's latest
    version (the last in log order: a new version is appended after what it replaces)."""

    ids: set[str]
    contents: dict[tuple[str, tuple[str, ...]], set[bytes]]
    latest: dict[tuple[str, tuple[str, ...]], str]


async def _held(node: Node, partnership: str) -> _Held:
    own = node.logs(partnership).own
    size = (await node.store.tree_head(own)).size
    held = _Held(set(), {}, {})
    step = 10_000
    for lo in range(0, size, step):
        for e in await node.store.entries(own, lo, min(size, lo + step)):
            held.ids.add(e.record_id)
            record = decode_record(open_envelope(e.envelope).payload)
            key = (record.kind, record.key())
            held.contents.setdefault(key, set()).add(_content(record))
            held.latest[key] = e.record_id  # versions of a key are appended in order
    return held


Seen = dict[tuple[str, tuple[str, ...]], tuple[bytes, SourceRow]]


def classify(
    items: list[_Item], held: _Held, seen: Seen | None = None
) -> tuple[list[_Item], int, list[CellProblem]]:
    """Rule 3: the items to sign, how many are held, and the refused changes; ``seen``
    carries the keys of earlier items of the same import across calls."""
    new: list[_Item] = []
    count = 0
    problems: list[CellProblem] = []
    seen = {} if seen is None else seen
    for item in items:
        if item.envelope is not None and record_id(item.envelope) in held.ids:
            count += 1
            continue
        record = item.record
        if record is None:  # an envelope that does not open: its verification says why
            new.append(item)
            continue
        key = (record.kind, record.key())
        content = _content(record)
        if content in held.contents.get(key, ()):
            count += 1
            continue
        if key in seen:
            if seen[key][0] == content:
                count += 1
                continue
            first = seen[key][1]
            problems += _at(item.at, [CellProblem(
                "record", " ".join(key[1]),
                f"the same {record.kind} as row {first.row} of {first.file}, with other content",
            )])  # fmt: skip
            continue
        seen[key] = (content, item.at)
        latest = held.latest.get(key)
        if latest is not None and record.supersedes != latest:
            reason = (
                f"changed {record.kind}: the log holds it as record {latest}; "
                f"to replace it, set supersedes to {latest}"
            )
            if record.supersedes:
                reason = (
                    f"supersedes {record.supersedes[:16]}, but the latest held version is {latest}"
                )
            problems += _at(item.at, [CellProblem("supersedes", record.supersedes or "", reason)])
            continue
        new.append(item)
    return new, count, problems


def _sign_all(
    node: Node, partnership: str, items: list[_Item]
) -> tuple[list[Verification], list[CellProblem]]:
    """Rule 2: sign and verify every new record (in batches; one by one in a batch that
    fails, to name every failing row)."""
    out: list[Verification] = []
    problems: list[CellProblem] = []
    for lo in range(0, len(items), BATCH):
        batch = items[lo : lo + BATCH]
        try:
            out += verify_documents(node, partnership, [_doc(i) for i in batch])
            continue
        except JcmSyncError:
            pass
        for item in batch:
            try:
                out += verify_documents(node, partnership, [_doc(item)])
            except JcmSyncError as exc:
                problems += _at(item.at, [CellProblem(exc.where or "record", "", exc.message)])
    return out, problems


def _doc(item: _Item) -> bytes | Record:
    if item.envelope is not None:
        return item.envelope
    assert item.record is not None
    return item.record


class _Run:
    """One import's state as chunks of rows arrive: counts, problems, signed records.

    Records are signed and verified as they arrive (in memory; nothing is stored) until
    the first problem; after it, rows are still converted and classified, to list every
    problem, but no longer signed (rule 2)."""

    def __init__(self, node: Node, partnership: str, held: _Held) -> None:
        self.node, self.partnership, self.held = node, partnership, held
        self.seen: Seen = {}
        self.rows: set[tuple[str, str, int]] = set()
        self.count = 0
        self.problems: list[CellProblem] = []
        self.verified: list[Verification] = []

    def feed(self, items: list[_Item], problems: list[CellProblem]) -> None:
        """Classify, sign and verify one chunk (CPU-bound: runs on a worker thread)."""
        self.rows.update((i.at.file, i.at.sheet, i.at.row) for i in items)
        self.rows.update((p.file, p.sheet, p.row) for p in problems if p.row)
        self.problems += problems
        new, count, refused = classify(items, self.held, self.seen)
        self.count += count
        self.problems += refused
        if not self.problems:
            verified, failed = _sign_all(self.node, self.partnership, new)
            self.verified += verified
            self.problems += failed

    async def finish(self, dry_run: bool) -> ImportResult:
        """Rules 2, 4, 5: refuse with every problem, or check quarantine and append."""
        node, pid = self.node, self.partnership
        if not self.rows and not self.problems:
            raise BadDataError("no rows or records in the input")
        if self.problems:
            raise _refusal(self.problems, len(self.rows))
        verified = self.verified
        if verified:
            await ReconcileService(node).check(pid, verified)
        if not dry_run:
            for lo in range(0, len(verified), BATCH):
                last = lo + BATCH >= len(verified)
                await append_verified(node, pid, verified[lo : lo + BATCH], checkpoint=last)
        size = (await node.store.tree_head(node.logs(pid).own)).size
        return ImportResult(pid, len(self.rows), len(verified), self.count, size, dry_run)


async def import_rows(
    node: Node,
    partnership: str,
    sources: Iterable[SourceRow | CellProblem],
    *,
    dry_run: bool = False,
    created: datetime | None = None,
) -> ImportResult:
    """Rules 1-5: import ``sources`` (read lazily) into the own log of ``partnership``,
    in this process: every row is converted before the first is signed."""
    node.logs(partnership)  # NotFoundError for a partnership the node does not serve
    now = created or node.clock()
    items, problems = await asyncio.to_thread(convert, node.id, partnership, sources, now)
    run = _Run(node, partnership, await _held(node, partnership))
    await asyncio.to_thread(run.feed, items, problems)
    return await run.finish(dry_run)


async def import_files(
    node: Node,
    partnership: str,
    inputs: Sequence[tuple[Path, str]],
    *,
    kind: str | None = None,
    dry_run: bool = False,
    created: datetime | None = None,
) -> ImportResult:
    """Rule 6: import files; large ones are read and converted by a second process while
    this one signs and verifies, small ones in this process (``import_rows``)."""
    node.logs(partnership)
    now = created or node.clock()
    size = sum(p.stat().st_size for p, _ in inputs if p.is_file())
    if size < PARALLEL_BYTES or (os.cpu_count() or 1) < 2:
        sources = chain.from_iterable(read_source(p, fmt, kind) for p, fmt in inputs)
        return await import_rows(node, partnership, sources, dry_run=dry_run, created=now)
    run = _Run(node, partnership, await _held(node, partnership))
    ctx = multiprocessing.get_context("spawn")  # the store's threads: never fork them
    queue: multiprocessing.Queue[Any] = ctx.Queue(maxsize=8)
    args = (list(inputs), kind, node.id, partnership, now, queue)
    child = ctx.Process(target=read_in_child, args=args, daemon=True)
    child.start()
    try:
        while True:
            chunk = await asyncio.to_thread(_next_chunk, queue, child)
            if chunk is None:
                break
            items, problems = _from_child(chunk)
            await asyncio.to_thread(run.feed, items, problems)
        child.join()
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    return await run.finish(dry_run)


_CHUNK_ROWS: Final = 2000


def read_in_child(
    inputs: list[tuple[Path, str]],
    kind: str | None,
    node_id: str,
    partnership: str,
    created: datetime,
    queue: multiprocessing.Queue[Any],
) -> None:
    """In the reading process: rule 1 over every row, sent in chunks (records encoded,
    problems as they are); then ``None``, or the error that stopped the reading."""
    try:
        sources = chain.from_iterable(read_source(p, fmt, kind) for p, fmt in inputs)
        chunk: list[Any] = []
        for src in sources:
            for out in _convert_one(node_id, partnership, src, created):
                if isinstance(out, CellProblem):
                    chunk.append(out)
                else:
                    at, payload = out.at, out.envelope or encode_record(out.record)  # type: ignore[arg-type]
                    chunk.append((at.file, at.sheet, at.row, at.kind, payload, bool(out.envelope)))
            if len(chunk) >= _CHUNK_ROWS:
                queue.put(chunk)
                chunk = []
        queue.put(chunk)
        queue.put(None)
    except JcmSyncError as exc:
        queue.put(("error", type(exc).__name__, exc.message, exc.where))
    except Exception:  # a bug: its traceback, for the parent to raise
        queue.put(("bug", traceback.format_exc()))


def _next_chunk(queue: multiprocessing.Queue[Any], child: BaseProcess) -> Any:
    while True:
        try:
            chunk = queue.get(timeout=1)
        except Empty:
            if not child.is_alive() and queue.empty():
                raise RuntimeError(f"the reading process ended with {child.exitcode}") from None
            continue
        if isinstance(chunk, tuple):
            if chunk[0] == "error":
                cls = getattr(errors, chunk[1], BadDataError)
                raise cls(chunk[2], where=chunk[3])
            raise RuntimeError(f"the reading process failed:\n{chunk[1]}")
        return chunk


def _from_child(chunk: list[Any]) -> tuple[list[_Item], list[CellProblem]]:
    items: list[_Item] = []
    problems: list[CellProblem] = []
    for entry in chunk:
        if isinstance(entry, CellProblem):
            problems.append(entry)
            continue
        file, sheet, row, kind, payload, envelope = entry
        at = SourceRow(file, sheet, row, kind)
        if envelope:
            items.append(_Item(at, record=_peek(payload), envelope=payload))
        else:
            items.append(_Item(at, record=decode_record(payload)))
    return items, problems


def _refusal(problems: list[CellProblem], rows: int) -> InvalidRowsError:
    bad = len({(p.file, p.sheet, p.row) for p in problems})
    listed = "" if len(problems) <= MAX_LISTED else f" (the first {MAX_LISTED:,} listed)"
    return InvalidRowsError(
        f"{len(problems):,} problem(s){listed} in {bad:,} row(s) or header(s) of {rows:,}; "
        "nothing was stored",
        problems[:MAX_LISTED],
    )
