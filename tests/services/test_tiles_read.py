"""Tests for jcm_sync.services.tiles_read: a published log read and proved from tiles alone,
and every kind of tampering refused by name."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import record_id
from jcm_sync.errors import (
    NotFoundError,
    SignatureError,
    TileFormatError,
    TilesMismatchError,
    UnknownKeyError,
)
from jcm_sync.services.tiles import DirectorySink, TilesPublisher
from jcm_sync.services.tiles_read import TiledLog, open_tiled_log
from jcm_sync.store import open_store
from tests.services.tiled import grow, make_store
from tests.store import World

SIZE = 3000


async def _publish(where: Path, world: World) -> None:
    url = await make_store(where / "s.db", world, SIZE)
    async with await open_store(url) as store:
        await TilesPublisher(store, DirectorySink(where / "tiles")).publish_all()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    """A log of 3,000 entries (11 full tiles and a partial of 184) published in a dir,
    built once per module."""
    world, where = World(), tmp_path_factory.mktemp("published")
    asyncio.run(_publish(where, world))
    return world, where


@pytest.fixture
def published(template: tuple[World, Path], tmp_path: Path) -> tuple[World, Path, str]:
    """A copy of the template's store and tiles, for one test to alter."""
    world, where = template
    shutil.copytree(where, tmp_path / "copy")
    return world, tmp_path / "copy" / "tiles", f"sqlite:///{tmp_path / 'copy' / 's.db'}"


async def _open(world: World, out: Path) -> TiledLog:
    return await open_tiled_log(DirectorySink(out), world.root, world.jp_log, world.now)


async def test_proofs_from_tiles_equal_the_stores(published: tuple[World, Path, str]) -> None:
    """Inclusion and consistency proofs computed from tiles are those the store serves."""
    world, out, url = published
    log = await _open(world, out)
    assert log.size == SIZE
    async with await open_store(url) as store:
        for index in (0, 255, 256, 2999):
            assert await log.inclusion_proof(index) == await store.inclusion_proof(
                world.jp_log, index
            )
        for old in (1, 256, 1000, 2999):
            assert await log.consistency_proof(old) == await store.consistency_proof(
                world.jp_log, old
            )
        assert await log.consistency_proof(10, 700) == await store.consistency_proof(
            world.jp_log, 10, 700
        )
        stored = [e.envelope for e in await store.entries(world.jp_log, 250, 530)]
    assert await log.entries(250, 530) == stored
    [env] = await log.entries(2500, 2501)
    assert await log.find(record_id(env)) == 2500


async def test_an_unknown_record_is_not_found(published: tuple[World, Path, str]) -> None:
    """find scans every bundle and says when no entry is the record."""
    world, out, _ = published
    with pytest.raises(NotFoundError):
        await (await _open(world, out)).find("00" * 32)


def _flip(path: Path, at: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("tile/0/011.p/184", TilesMismatchError, "root folded from the tiles"),
        ("tile/1/000.p/11", TilesMismatchError, "root folded from the tiles"),
        ("checkpoint", SignatureError, None),
    ],
    ids=["partial-level-0", "level-1", "checkpoint-signature"],
)
async def test_tampering_with_the_right_edge_is_refused_on_open(
    published: tuple[World, Path, str], path: str, error: type[Exception], match: str | None
) -> None:
    """A changed tile on the tree's right edge fails the root check; a changed
    checkpoint fails its signature."""
    world, out, _ = published
    _flip(out / "JP-ID/JP" / path, 3 if path == "checkpoint" else 40)
    with pytest.raises(error, match=match):
        await _open(world, out)


async def test_a_changed_full_tile_fails_the_proof_through_it(
    published: tuple[World, Path, str],
) -> None:
    """A changed full level-0 tile opens (it is not on the right edge) but any proof
    computed from it fails against the signed root."""
    world, out, _ = published
    _flip(out / "JP-ID/JP/tile/0/003", 32 * 7)
    log = await _open(world, out)
    await log.inclusion_proof(5)  # tile 0 is fine
    with pytest.raises(TilesMismatchError, match="inclusion proof of entry 900"):
        await log.inclusion_proof(900)


async def test_a_changed_bundle_is_refused(published: tuple[World, Path, str]) -> None:
    """An altered entry in a bundle (same length) does not match the signed tree."""
    world, out, _ = published
    _flip(out / "JP-ID/JP/tile/entries/004", 100)
    log = await _open(world, out)
    assert len(await log.entries(0, 1024)) == 1024
    with pytest.raises(TilesMismatchError, match=r"bundles of entries 1000\.\.1299"):
        await log.entries(1000, 1300)


async def test_a_checkpoint_of_another_signer_is_refused(
    published: tuple[World, Path, str], tmp_path: Path
) -> None:
    """A checkpoint with a valid signature by a key the trust root does not hold for JP."""
    world, out, _ = published
    other = World()
    url = await make_store(tmp_path / "o.db", other, 10)
    async with await open_store(url) as store:
        note = (await store.latest_checkpoint(other.jp_log)).note  # type: ignore[union-attr]
    (out / "JP-ID/JP/checkpoint").write_bytes(note)
    with pytest.raises(UnknownKeyError):
        await _open(world, out)


async def test_malformed_and_missing_files_are_refused_by_name(
    published: tuple[World, Path, str],
) -> None:
    """A truncated tile is a TileFormatError; a missing one a TilesMismatchError naming it."""
    world, out, _ = published
    level1 = out / "JP-ID/JP/tile/1/000.p/11"
    level1.write_bytes(level1.read_bytes()[:-1])
    with pytest.raises(TileFormatError):
        await _open(world, out)
    level1.unlink()
    with pytest.raises(TilesMismatchError, match=r"tile/1/000.p/11 is missing"):
        await _open(world, out)


async def test_nothing_published_is_not_found(tmp_path: Path) -> None:
    """A source with no checkpoint for the log is a NotFoundError."""
    world = World()
    with pytest.raises(NotFoundError):
        await open_tiled_log(DirectorySink(tmp_path), world.root, world.jp_log, world.now)


async def test_a_reader_follows_growth(published: tuple[World, Path, str]) -> None:
    """After the log grows and is published again, the new checkpoint is consistent with
    the old one by a proof from the new tiles, and old partial tiles are not needed."""
    world, out, url = published
    old = await _open(world, out)
    async with await open_store(url) as store:
        await grow(store, world, world.jp_log, 5000)
        await TilesPublisher(store, DirectorySink(out)).publish_all()
    new = await _open(world, out)
    proof = await new.consistency_proof(old.size)
    assert merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
