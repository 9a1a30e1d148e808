"""Tests for jcm_sync.services.tiles: publishing a store's logs as tlog-tiles, incrementally."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from jcm_sync.core import merkle, tiles
from jcm_sync.core.tiles import Tile
from jcm_sync.errors import PublishedTilesConflictError, TransportError
from jcm_sync.services.tiles import DirectorySink, TilesJob, TilesPublisher
from jcm_sync.store import open_store
from tests.services.tiled import fill, grow, make_store
from tests.store import World
from tests.store.conftest import (
    PG_URL,
    drop_schema,
    make_schema,
    pg_reachable,
    skip_without_pg,
    with_param,
)

__all__ = ["pg_reachable"]  # a fixture, used by name


def _files(root: Path) -> dict[str, int]:
    """Every published file (relative path) and its modification time in ns."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


async def test_a_log_of_ten_thousand_is_published_as_the_spec_lays_it_out(tmp_path: Path) -> None:
    """39 full level-0 tiles and bundles, a partial of 16, level-1 and level-2 tiles and the
    checkpoint, each hash tile the store's nodes and each bundle its envelopes."""
    world = World()
    url = await make_store(tmp_path / "s.db", world, 10_000)
    out = tmp_path / "tiles"
    async with await open_store(url) as store:
        [result] = await TilesPublisher(store, DirectorySink(out)).publish_all()
        entries = [e.envelope for e in await store.entries(world.jp_log)]
        latest = await store.latest_checkpoint(world.jp_log)
    assert result.error is None
    assert (result.old_size, result.size) == (0, 10_000)
    base = out / "JP-ID" / "JP"
    assert (base / "checkpoint").read_bytes() == latest.note if latest else False
    assert (base / "tile/0/038").stat().st_size == 8192
    assert (base / "tile/0/039.p/16").stat().st_size == 16 * 32
    assert (base / "tile/1/000.p/39").stat().st_size == 39 * 32
    expected = tiles.build_tiles([merkle.leaf_hash(e) for e in entries])
    assert (base / "tile/1/000.p/39").read_bytes() == tiles.encode_tile(expected[Tile(1, 0, 39)])
    assert (base / "tile/entries/039.p/16").read_bytes() == tiles.encode_bundle(entries[9984:])
    assert result.files == len(tiles.new_tiles(0, 10_000)) + 1


async def test_growth_writes_only_new_tiles_and_keeps_old_ones(tmp_path: Path) -> None:
    """From 600 to 1300 entries, full tiles written before are untouched (immutable), the
    old partial tile stays, and only the tiles of new_tiles(600, 1300) are written."""
    world = World()
    url = await make_store(tmp_path / "s.db", world, 600)
    out = tmp_path / "tiles"
    async with await open_store(url) as store:
        publisher = TilesPublisher(store, DirectorySink(out))
        await publisher.publish_all()
        before = _files(out)
        assert (await publisher.publish(world.jp_log)).files == 0  # nothing new: nothing
        await grow(store, world, world.jp_log, 1300)
        result = await publisher.publish(world.jp_log)
    after = _files(out)
    changed = {p for p in after if before.get(p) != after[p]}
    new = {f"JP-ID/JP/{t.path}" for t in tiles.new_tiles(600, 1300)}
    assert changed == new | {"JP-ID/JP/checkpoint"}
    assert "JP-ID/JP/tile/0/002.p/88" in after  # the old partial tile is kept
    assert result.files == len(new) + 1


class _FailingSink(DirectorySink):
    """A directory sink that fails when asked to write the checkpoint."""

    fail = True

    async def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        if self.fail and any(p.endswith("checkpoint") for p, _ in files):
            raise TransportError("the bucket went away")
        await super().write(files)


async def test_the_checkpoint_is_written_last_and_a_failed_run_is_redone(tmp_path: Path) -> None:
    """A run that fails before the checkpoint leaves the old checkpoint published; the
    next run completes from it."""
    world = World()
    url = await make_store(tmp_path / "s.db", world, 300)
    out = tmp_path / "tiles"
    async with await open_store(url) as store:
        await TilesPublisher(store, DirectorySink(out)).publish_all()
        old = (out / "JP-ID/JP/checkpoint").read_bytes()
        await grow(store, world, world.jp_log, 700)
        sink = _FailingSink(out)
        [failed] = await TilesPublisher(store, sink).publish_all()
        assert isinstance(failed.error, TransportError)
        assert (out / "JP-ID/JP/checkpoint").read_bytes() == old
        sink.fail = False
        [done] = await TilesPublisher(store, sink).publish_all()
    assert (done.old_size, done.size, done.error) == (300, 700, None)


async def test_tiles_of_another_history_are_not_overwritten(tmp_path: Path) -> None:
    """A published checkpoint whose root is not the store's at its size is refused."""
    url_a = await make_store(tmp_path / "a.db", World(), 300)
    url_b = await make_store(tmp_path / "b.db", World(), 400)  # other keys: other entries
    out = tmp_path / "tiles"
    async with await open_store(url_a) as a:
        await TilesPublisher(a, DirectorySink(out)).publish_all()
    async with await open_store(url_b) as b:
        with pytest.raises(PublishedTilesConflictError, match="another root"):
            await TilesPublisher(b, DirectorySink(out)).publish(World().jp_log)
    async with await open_store(f"sqlite:///{tmp_path / 'c.db'}") as c:
        world = World()
        await c.ensure_log(world.jp_log)
        await grow(c, world, world.jp_log, 100)
        with pytest.raises(PublishedTilesConflictError, match="not a prefix"):
            await TilesPublisher(c, DirectorySink(out)).publish(world.jp_log)


async def test_the_job_publishes_and_survives_a_failing_log(tmp_path: Path) -> None:
    """One scheduled run publishes every log; a store failure is logged, not raised."""
    world = World()
    url = await make_store(tmp_path / "s.db", world, 50)
    async with await open_store(url) as store:
        job = TilesJob(TilesPublisher(store, DirectorySink(tmp_path / "t")), 3600)
        [r] = await job.run_once()
        assert (r.size, job.runs) == (50, 1)
        await job.close()


def test_a_directory_sink_refuses_paths_outside_it(tmp_path: Path) -> None:
    """A path with '..' or a leading '/' is a caller bug, refused."""
    sink = DirectorySink(tmp_path)
    for bad in ("../x", "/etc/passwd", "a//b", ""):
        with pytest.raises(ValueError, match="relative"):
            sink._file(bad)


async def test_an_entry_too_long_for_a_bundle_stops_that_log_at_its_last_checkpoint(
    tmp_path: Path,
) -> None:
    """A 70,000-byte envelope cannot be bundled: the run reports TileEntryTooLargeError and
    the published checkpoint stays the previous one (the store accepts any bytes here:
    the verifier is the test's)."""
    import dataclasses
    import hashlib

    from jcm_sync.core import checkpoint
    from jcm_sync.errors import TileEntryTooLargeError

    world = World()
    url = await make_store(tmp_path / "s.db", world, 10)
    out = tmp_path / "tiles"
    async with await open_store(url) as store:
        await TilesPublisher(store, DirectorySink(out)).publish_all()
        before = (out / "JP-ID/JP/checkpoint").read_bytes()
        template = world.verify(world.envelopes("JP", 1)[0])

        def accept(raw: bytes) -> object:
            return dataclasses.replace(template, record_id=hashlib.sha256(raw).hexdigest(),
                                       raw=raw)  # fmt: skip

        await store.append_entries(world.jp_log, 10, [b"x" * 70_000], accept)  # type: ignore[arg-type]
        head = await store.tree_head(world.jp_log)
        note = checkpoint.sign_checkpoint(
            checkpoint.Checkpoint(world.jp_log.origin, head.size, head.root),
            world.key_of("JP").key,
        )
        await store.put_checkpoint(world.jp_log, note)
        [r] = await TilesPublisher(store, DirectorySink(out)).publish_all()
    assert isinstance(r.error, TileEntryTooLargeError)
    assert (out / "JP-ID/JP/checkpoint").read_bytes() == before


@pytest.mark.postgres
async def test_a_postgresql_store_publishes_the_same_files(
    tmp_path: Path, pg_reachable: str | None
) -> None:
    """The same log in PostgreSQL and in SQLite publishes byte-identical tiles, bundles and
    checkpoint, first at 2,000 entries then incrementally at 2,600."""
    skip_without_pg(pg_reachable)
    world = World()
    schema = await make_schema()
    try:
        urls = [with_param(PG_URL, "search_path", schema), f"sqlite:///{tmp_path / 's.db'}"]
        outs = [tmp_path / "pg", tmp_path / "sqlite"]
        for url, out in zip(urls, outs, strict=True):
            await fill(url, world, 2000)
            async with await open_store(url) as store:
                await TilesPublisher(store, DirectorySink(out)).publish_all()
                await grow(store, world, world.jp_log, 2600)
                [r] = await TilesPublisher(store, DirectorySink(out)).publish_all()
                assert (r.old_size, r.size, r.error) == (2000, 2600, None)
    finally:
        await drop_schema(schema)
    pg, lite = ({p.relative_to(o): p.read_bytes() for p in o.rglob("*") if p.is_file()}
                for o in outs)  # fmt: skip
    assert pg == lite
    assert Path("JP-ID/JP/tile/0/009") in pg
