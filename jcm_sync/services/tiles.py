"""Publishing a node's logs as C2SP tlog-tiles, incrementally, into a directory or bucket.

Why this module exists: the static read path of issue 15 (docs/adr/0041). Each log a node
holds is written as tiles, entry bundles and its latest checkpoint (``core/tiles.py``)
under ``<partnership>/<node>/`` of a *sink* (a directory here, an S3-compatible bucket in
``net/tiles_s3.py``), which any static server or CDN can then serve; readers verify what
they fetch against the signed checkpoint (``services/tiles_read.py``).

Rules:

1. **Only what is new.** The checkpoint already published says which tree the sink holds;
   a run writes ``core.tiles.new_tiles(published, latest)`` only: the full tiles completed
   since and the partial tiles of the new size. What was written is never rewritten
   (tiles are immutable), and an old partial tile is left in place.
2. **Checkpoint last.** Tiles and bundles are written first; the ``checkpoint`` file is
   replaced only after all of them, so a reader never sees a checkpoint whose tiles are
   missing, and a run that stops half-way is redone from the old checkpoint next time.
3. **Atomic, durable files.** A directory sink writes each file to a temporary name in
   the same directory, fsyncs it and renames it over the target, then fsyncs the
   directories, so a reader sees the old bytes or the new, never a torn file, and after a
   crash no checkpoint names a tile that was lost (a full tile is never rewritten).
4. **The store is the history.** The published checkpoint must be a prefix of the store's
   log (same root at its size, checked with ``Store.root_at``); otherwise the tiles are of
   another history and nothing is written (``PublishedTilesConflictError``).
5. **What is published is what is stored.** The checkpoint file is the latest stored
   signed note with the cosignatures kept for it (C2SP checkpoints may carry more
   signatures); tile hashes are the store's perfect-subtree nodes, bundles its envelopes.
   An envelope over 65,535 bytes cannot be bundled (``TileEntryTooLargeError``): that
   log's tiles stop at the checkpoint before it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jcm_sync.core import checkpoint, tiles
from jcm_sync.core import note as signed_note
from jcm_sync.core.tiles import Tile
from jcm_sync.errors import JcmSyncError, PublishedTilesConflictError
from jcm_sync.services.daemon import IntervalJob, interval_scheduler, stop_scheduler
from jcm_sync.store import LogRef, Store
from jcm_sync.store.backup import fsync_path

log = logging.getLogger("jcm_sync.services.tiles")

CHECKPOINT = "checkpoint"
#: level-0 tiles whose entries are read from the store in one query
TILES_PER_READ = 16


class TileSink(Protocol):
    """Where tiles are published: a directory (``DirectorySink``) or a bucket."""

    async def read(self, path: str) -> bytes | None:
        """The bytes at ``path``, or None if there is nothing there."""
        ...

    async def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Write each ``(path, bytes)``, each atomically (rule 3)."""
        ...


class DirectorySink:
    """A sink on a local directory (rule 3: temporary file, then rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _file(self, path: str) -> Path:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a relative tile path: {path!r}")  # a caller bug
        return self.root.joinpath(*parts)

    async def read(self, path: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._file(path).read_bytes)
        except FileNotFoundError:
            return None

    async def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        await asyncio.to_thread(self._write_all, files)

    def _write_all(self, files: Sequence[tuple[str, bytes]]) -> None:
        folders: set[Path] = set()
        for path, data in files:
            target = self._file(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # durable before it is named: no empty tile
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            folders.add(target.parent)
        for folder in folders:  # the renames too, before the caller writes what follows
            fsync_path(folder)


def log_prefix(ref: LogRef) -> str:
    """Where a log's tiles live in a sink: ``<partnership>/<node>/``."""
    return f"{ref.partnership}/{ref.node}/"


@dataclass
class Published:
    """What one run did for one log."""

    origin: str
    old_size: int
    size: int
    files: int = 0
    error: JcmSyncError | None = None


@dataclass
class TilesPublisher:
    """Publishes every log of a store into one sink (rules 1-5)."""

    store: Store
    sink: TileSink

    async def publish_all(self) -> list[Published]:
        """One run over every log; a log that fails is reported and the others go on."""
        out = []
        for ref in await self.store.logs():
            try:
                out.append(await self.publish(ref))
            except JcmSyncError as exc:
                log.error("tiles-failed", extra={"origin": ref.origin, "reason": exc.code,
                          "error": exc.diagnostics()})  # fmt: skip
                out.append(Published(ref.origin, 0, 0, error=exc))
        return out

    async def publish(self, ref: LogRef) -> Published:
        """Bring the sink's copy of ``ref`` up to the store's latest checkpoint."""
        latest = await self.store.latest_checkpoint(ref)
        if latest is None:
            return Published(ref.origin, 0, 0)
        prefix = log_prefix(ref)
        note = signed_note.add_signature_lines(
            latest.note, await self.store.cosignatures(ref, latest.size)
        )
        old = await self._published_size(ref, prefix)
        if old == latest.size:
            if await self.sink.read(prefix + CHECKPOINT) != note:  # new cosignatures
                await self.sink.write([(prefix + CHECKPOINT, note)])
                return Published(ref.origin, old, latest.size, 1)
            return Published(ref.origin, old, latest.size)
        batches: list[list[Tile]] = []
        for tile in tiles.new_tiles(old, latest.size):
            if tile.level == Tile.ENTRIES:
                continue  # written with its level-0 tile
            if not batches or tile.level > 0 or len(batches[-1]) == TILES_PER_READ:
                batches.append([])
            batches[-1].append(tile)
        written, writing = 0, None
        try:
            for batch in batches:  # one batch is written while the next is read
                files = await self._tile_files(ref, prefix, batch)
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(self.sink.write(files))
                written += len(files)
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
        await self.sink.write([(prefix + CHECKPOINT, note)])  # rule 2: last
        log.info("tiles-published", extra={"origin": ref.origin, "old_size": old,
                 "size": latest.size, "files": written + 1})  # fmt: skip
        return Published(ref.origin, old, latest.size, written + 1)

    async def _published_size(self, ref: LogRef, prefix: str) -> int:
        """Rule 4: the size of the published checkpoint, after checking it is a prefix of
        the store's log (0 when nothing is published)."""
        raw = await self.sink.read(prefix + CHECKPOINT)
        if raw is None:
            return 0
        try:
            cp = checkpoint.parse_body(signed_note.parse_note(raw).text)
        except JcmSyncError as exc:
            raise PublishedTilesConflictError(
                "the published checkpoint cannot be read", where=prefix + CHECKPOINT
            ) from exc
        head = await self.store.tree_head(ref)
        if cp.origin != ref.origin or cp.size > head.size:
            raise PublishedTilesConflictError(
                f"the published checkpoint ({cp.origin}, size {cp.size}) is not a prefix of "
                f"the {head.size} entries of {ref.origin} in the store",
                where=prefix + CHECKPOINT,
            )
        if await self.store.root_at(ref, cp.size) != cp.root_hash:
            raise PublishedTilesConflictError(
                f"the published tiles of size {cp.size} have another root than the store's",
                where=prefix + CHECKPOINT,
            )
        return cp.size

    async def _tile_files(
        self, ref: LogRef, prefix: str, batch: Sequence[Tile]
    ) -> list[tuple[str, bytes]]:
        """The files of ``batch`` (consecutive level-0 tiles with their bundles, or one
        tile of a higher level), hashes and envelopes read from the store."""
        files: list[tuple[str, bytes]] = []
        if batch[0].level == 0:
            start = batch[0].index * tiles.TILE_WIDTH
            end = batch[-1].index * tiles.TILE_WIDTH + batch[-1].width
            envelopes = [e.envelope for e in await self.store.entries(ref, start, end)]
            hashes = await self.store.tree_nodes(ref, [(0, i) for i in range(start, end)])
            for t in batch:
                lo = t.index * tiles.TILE_WIDTH - start
                run = envelopes[lo : lo + t.width]
                files.append((prefix + t.path, tiles.encode_tile(
                    [hashes[(0, start + lo + j)] for j in range(t.width)])))  # fmt: skip
                files.append((prefix + t.bundle().path, tiles.encode_bundle(run)))
        else:
            for t in batch:
                height = t.level * tiles.TILE_HEIGHT
                first = t.index * tiles.TILE_WIDTH
                coords = [(height, first + j) for j in range(t.width)]
                nodes = await self.store.tree_nodes(ref, coords)
                files.append((prefix + t.path, tiles.encode_tile([nodes[c] for c in coords])))
        return files


class TilesJob:
    """Publishing on the ``[tiles]`` interval, for the hub and the agent daemons (the
    ``daemon.py`` rules: jitter, one run at a time, a failure logged and retried at the
    next interval)."""

    def __init__(
        self,
        publisher: TilesPublisher,
        seconds: float,
        *,
        jitter: float = 0.0,
        only_if: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.publisher = publisher
        self.runs = 0
        #: hub processes sharing one PostgreSQL: only the holder of the job lock writes
        #: (ADR 0042); None: always
        self.only_if = only_if
        self.scheduler = interval_scheduler(
            [IntervalJob("tiles", seconds, self.run_once)], jitter=jitter
        )

    async def run_once(self) -> list[Published]:
        if self.only_if is not None and not await self.only_if():
            return []  # another hub process on this database writes the tiles (ADR 0042)
        self.runs += 1
        try:
            return await self.publisher.publish_all()
        except JcmSyncError as exc:  # the store failed: the next interval tries again
            log.error("tiles-failed", extra={"reason": exc.code, "error": exc.diagnostics()})
            return []

    def start(self) -> None:
        self.scheduler.start()

    async def close(self) -> None:
        if self.scheduler.running:
            stop_scheduler(self.scheduler)
        close = getattr(self.publisher.sink, "close", None)
        if close is not None:
            await close()
