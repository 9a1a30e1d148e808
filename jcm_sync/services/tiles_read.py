"""Reading a log from C2SP tlog-tiles: checkpoint, proofs and entries, with no store.

Why this module exists: the static read path (docs/adr/0041). A partner, an auditor or
the agent's pull fetches a published log from any static server or CDN (``TileSource``:
a directory here, HTTP in ``net/tiles_http.py``) and trusts nothing of it but the
signed checkpoint, which it opens under the trust root like any other.

Rules:

1. **The checkpoint first.** ``open_tiled_log`` opens ``checkpoint`` with the log's keys
   (``log_service.open_log_checkpoint``: every checkpoint key and the root's algorithm
   requirement) and only then reads tiles, at that checkpoint's size (tlog-tiles: no
   partial tile a checkpoint does not require).
2. **Tiles prove themselves.** The root folded from the tiles must be the checkpoint's
   (else ``TilesMismatchError``); every proof computed from tiles is verified against
   the checkpoint's root before it is returned; entries read from bundles are returned
   only once their leaves, appended to the tiles' frontier before them, give a tree the
   checkpoint's consistency proof (from tiles) accepts. So an altered tile, bundle or
   checkpoint is refused, and names what did not match.
3. **Malformed is not altered.** A tile or bundle of the wrong length or shape is a
   ``TileFormatError``; a tile the checkpoint needs that the source lacks is a
   ``TilesMismatchError`` (the mirror is incomplete).
4. Tiles are immutable, so a ``TiledLog`` caches every tile it decoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from jcm_sync.core import envelope, merkle, tiles
from jcm_sync.core.checkpoint import VerifiedCheckpoint
from jcm_sync.core.tiles import Tile
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import NotFoundError, TilesMismatchError
from jcm_sync.services.log_service import open_log_checkpoint
from jcm_sync.services.tiles import CHECKPOINT, log_prefix
from jcm_sync.store import LogRef

#: tiles fetched at once from a source
FETCH_CONCURRENCY = 16


class TileSource(Protocol):
    """Where tiles are read from (``services.tiles.DirectorySink`` is one)."""

    async def read(self, path: str) -> bytes | None:
        """The bytes at ``path``, or None if the source has nothing there."""
        ...


@dataclass
class TiledLog:
    """One published log at one verified checkpoint (rules 2-4)."""

    source: TileSource
    prefix: str
    checkpoint: VerifiedCheckpoint
    _cache: dict[Tile, list[bytes]] = field(default_factory=dict, repr=False)
    fetched: int = 0

    @property
    def size(self) -> int:
        return self.checkpoint.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.checkpoint.root_hash

    def _mismatch(self, what: str) -> TilesMismatchError:
        return TilesMismatchError(
            f"{what}, against the signed checkpoint of size {self.size}", where=self.prefix
        )

    async def _read(self, path: str) -> bytes:
        data = await self.source.read(self.prefix + path)
        if data is None:
            raise self._mismatch(f"{path} is missing")
        self.fetched += 1
        return data

    async def fetch(self, needed: Iterable[Tile]) -> dict[Tile, list[bytes]]:
        """The decoded tiles, fetched (concurrently) unless cached (rule 4)."""
        wanted = sorted(set(needed))
        missing = [t for t in wanted if t not in self._cache]
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(t: Tile) -> None:
            async with limit:
                data = await self._read(t.path)
            self._cache[t] = tiles.decode_tile(t, data)

        await asyncio.gather(*(one(t) for t in missing))
        return {t: self._cache[t] for t in wanted}

    async def check_root(self) -> None:
        """Rule 2: the tiles' root is the checkpoint's."""
        got = tiles.root(self.size, await self.fetch(tiles.root_tiles(self.size)))
        if got != self.root:
            raise self._mismatch("the root folded from the tiles differs")

    async def inclusion_proof(self, index: int, leaf_hash: bytes | None = None) -> list[bytes]:
        """The proof of entry ``index`` (leaf hash from the level-0 tile unless given),
        verified against the checkpoint."""
        needed = await self.fetch(tiles.inclusion_tiles(index, self.size))
        leaf = leaf_hash or tiles.leaf_from_tiles(index, self.size, needed)
        proof = tiles.inclusion_proof(index, self.size, needed)
        if not merkle.verify_inclusion(leaf, index, self.size, proof, self.root):
            raise self._mismatch(f"the inclusion proof of entry {index} from tiles fails")
        return proof

    async def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, new) from tiles (``new`` at most the checkpoint's size); when ``new``
        is the checkpoint's size it is verified against the checkpoint's root (rule 2),
        which takes the root at ``old``, also from tiles."""
        new = self.size if new is None else new
        needed = await self.fetch(tiles.consistency_tiles(old, new, self.size))
        proof = tiles.consistency_proof(old, new, needed, self.size)
        if new == self.size:
            old_root = await self.root_at(old)
            if not merkle.verify_consistency(old, new, old_root, self.root, proof):
                raise self._mismatch(f"the consistency proof from size {old} from tiles fails")
        return proof

    async def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` entries, folded from tiles (not verified alone:
        ``consistency_proof`` ties it to the checkpoint)."""
        return tiles.root(size, await self.fetch(tiles.root_tiles(size, self.size)), self.size)

    async def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``start .. end-1`` from bundles, proved part of the checkpoint's tree
        (rule 2): the tiles' frontier at ``start`` extended by their leaves, checked with
        the consistency proof from ``end`` to the checkpoint's size."""
        if not 0 <= start < end <= self.size:
            raise NotFoundError(f"entries {start}..{end - 1} are not in a log of {self.size}")
        first, last = start // tiles.TILE_WIDTH, (end - 1) // tiles.TILE_WIDTH
        bundles = [tiles.tile_at(self.size, 0, n).bundle() for n in range(first, last + 1)]
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(b: Tile) -> list[bytes]:
            async with limit:
                data = await self._read(b.path)
            return tiles.decode_bundle(b, data)

        decoded = await asyncio.gather(*(one(b) for b in bundles))
        skip = start - first * tiles.TILE_WIDTH
        out = [e for bundle in decoded for e in bundle][skip : skip + end - start]
        frontier = tiles.frontier(start, await self.fetch(tiles.root_tiles(start, self.size)),
                                  self.size)  # fmt: skip
        grown = frontier.extend([merkle.leaf_hash(e) for e in out])[0]
        if end == self.size:
            ok = grown.root() == self.root
        else:
            needed = await self.fetch(tiles.consistency_tiles(end, self.size))
            proof = tiles.consistency_proof(end, self.size, needed)
            ok = merkle.verify_consistency(end, self.size, grown.root(), self.root, proof)
        if not ok:
            raise self._mismatch(f"the bundles of entries {start}..{end - 1} do not match")
        return out

    async def scan(self, step: int = tiles.TILE_WIDTH * 16) -> AsyncIterator[tuple[int, bytes]]:
        """Every entry with its index, each page proved as ``entries`` proves it: reading
        them all audits every bundle and tile the entries depend on."""
        for start in range(0, self.size, step):
            end = min(start + step, self.size)
            for i, e in enumerate(await self.entries(start, end)):
                yield start + i, e

    async def find(self, record_id: str) -> int:
        """The index of the entry whose envelope's SHA-256 is ``record_id`` (a scan of
        every bundle: tiles carry no index). ``NotFoundError`` if none."""
        async for index, e in self.scan():
            if envelope.record_id(e) == record_id:
                return index
        raise NotFoundError(f"no entry of {self.checkpoint.checkpoint.origin} is {record_id}")


async def open_tiled_log(
    source: TileSource, root: TrustRoot, ref: LogRef, at: datetime, *, prefix: str | None = None
) -> TiledLog:
    """Rule 1: the log ``ref`` as published in ``source`` (under ``<partnership>/<node>/``
    unless ``prefix`` says otherwise), at its checkpoint verified under ``root``."""
    prefix = log_prefix(ref) if prefix is None else prefix
    raw = await source.read(prefix + CHECKPOINT)
    if raw is None:
        raise NotFoundError(f"no checkpoint is published for {ref.origin}", where=prefix)
    opened = open_log_checkpoint(root, ref, raw, at)
    log = TiledLog(source, prefix, opened)
    await log.check_root()
    return log
