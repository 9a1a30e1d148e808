"""Tests for jcm_sync.net.tiles_http: tiles read over HTTP from a real static server, and
published into an S3-compatible test bucket that checks every SigV4 signature."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from jcm_sync.core import merkle
from jcm_sync.errors import ConfigError, TilesMismatchError, TransportError
from jcm_sync.local.config import TilesSection
from jcm_sync.net import sigv4
from jcm_sync.net.tiles_http import HttpTileSource, S3Sink, read_credentials, tile_sink
from jcm_sync.services.tiles import DirectorySink, TilesPublisher
from jcm_sync.services.tiles_read import open_tiled_log
from jcm_sync.store import open_store
from tests.net.static_server import serve
from tests.services.tiled import grow, make_store
from tests.store import World

CREDS = sigv4.Credentials("TESTKEY", "test/secret")


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real static server on loopback serving an empty directory, and that directory."""
    root = tmp_path / "www"
    root.mkdir()
    with serve(root) as url:
        yield url, root


async def test_a_log_of_ten_thousand_verifies_over_a_static_server(
    static_server: tuple[str, Path], tmp_path: Path
) -> None:
    """Published at 10,000 then 10,500 entries into the served dir, the log is read over
    HTTP: root, inclusion, entries from bundles, and consistency across the growth."""
    base, root = static_server
    world = World()
    url = await make_store(tmp_path / "s.db", world, 10_000)
    async with await open_store(url) as store:
        await TilesPublisher(store, DirectorySink(root)).publish_all()
        async with HttpTileSource(base) as source:
            first = await open_tiled_log(source, world.root, world.jp_log, world.now)
            assert first.size == 10_000
            proof = await first.inclusion_proof(4321)
            assert proof == await store.inclusion_proof(world.jp_log, 4321)
            await grow(store, world, world.jp_log, 10_500)
            await TilesPublisher(store, DirectorySink(root)).publish_all()
            second = await open_tiled_log(source, world.root, world.jp_log, world.now)
            consistency = await second.consistency_proof(first.size)
            assert merkle.verify_consistency(10_000, 10_500, first.root, second.root, consistency)
            stored = [e.envelope for e in await store.entries(world.jp_log, 9_900, 10_500)]
            assert await second.entries(9_900, 10_500) == stored


async def test_a_tile_changed_on_the_server_is_refused(
    static_server: tuple[str, Path], tmp_path: Path
) -> None:
    """A level-1 tile altered on the static server fails the root check over HTTP."""
    base, root = static_server
    world = World()
    url = await make_store(tmp_path / "s.db", world, 600)
    async with await open_store(url) as store:
        await TilesPublisher(store, DirectorySink(root)).publish_all()
    tile = root / "JP-ID/JP/tile/1/000.p/2"
    data = bytearray(tile.read_bytes())
    data[0] ^= 1
    tile.write_bytes(bytes(data))
    async with HttpTileSource(base) as source:
        with pytest.raises(TilesMismatchError):
            await open_tiled_log(source, world.root, world.jp_log, world.now)


async def test_an_unreachable_or_failing_server_is_a_transport_error() -> None:
    """Nothing listening, or an answer other than 200/404, is a TransportError."""
    async with HttpTileSource("http://127.0.0.1:9") as source:
        with pytest.raises(TransportError):
            await source.read("checkpoint")


# --- an S3-compatible bucket -----------------------------------------------------------


_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request,"
    r"SignedHeaders=([a-z0-9;-]+),Signature=([0-9a-f]{64})"
)


def _bucket_app(objects: dict[str, bytes], secrets: dict[str, str]) -> web.Application:
    """A tiny path-style S3: PUT and GET of objects, every request's SigV4 checked."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        m = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        if m is None or m.group(1) not in secrets:
            return web.Response(status=403, text="InvalidAccessKeyId")
        sha = request.headers.get("x-amz-content-sha256", "")
        if sha != sigv4.payload_hash(body):
            return web.Response(status=400, text="XAmzContentSHA256Mismatch")
        signed = m.group(4).split(";")
        headers = {h: request.headers.get(h, "") for h in signed}
        canonical, _ = sigv4.canonical_request(request.method, request.path, headers, sha)
        creds = sigv4.Credentials(m.group(1), secrets[m.group(1)])
        expected, _ = sigv4.signature(creds, m.group(3), request.headers["x-amz-date"], canonical)
        if expected != m.group(5) or "host" not in signed:
            return web.Response(status=403, text="SignatureDoesNotMatch")
        if request.method == "PUT":
            objects[request.path] = body
            return web.Response(status=200)
        if request.path in objects:
            return web.Response(body=objects[request.path])
        return web.Response(status=404, text="NoSuchKey")

    app = web.Application()
    app.router.add_route("*", "/{key:.*}", handle)
    return app


@pytest.fixture
async def bucket() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    objects: dict[str, bytes] = {}
    runner = web.AppRunner(_bucket_app(objects, {CREDS.access_key: CREDS.secret_key}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", objects
    finally:
        await runner.cleanup()


async def test_tiles_are_published_into_a_bucket_and_verify_from_it(
    bucket: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    """Every PUT is signed (the bucket checks it), tiles and checkpoint land under the
    prefix, growth writes only new objects, and a reader verifies the log from the bucket."""
    base, objects = bucket
    world = World()
    url = await make_store(tmp_path / "s.db", world, 700)
    async with await open_store(url) as store, S3Sink(f"{base}/tiles/prod", CREDS) as sink:
        await TilesPublisher(store, sink).publish_all()
        assert "/tiles/prod/JP-ID/JP/checkpoint" in objects
        assert len(objects["/tiles/prod/JP-ID/JP/tile/0/001"]) == 8192
        first = set(objects)
        await grow(store, world, world.jp_log, 800)
        [r] = await TilesPublisher(store, sink).publish_all()
        assert r.files == len(set(objects) - first) + 1  # new objects, and the checkpoint
        log = await open_tiled_log(sink, world.root, world.jp_log, world.now)
        assert log.size == 800
        assert await log.inclusion_proof(799) == await store.inclusion_proof(world.jp_log, 799)


async def test_a_wrong_secret_is_refused_by_the_bucket(
    bucket: tuple[str, dict[str, bytes]],
) -> None:
    """A PUT signed with the wrong secret is a 403, raised as a TransportError."""
    base, objects = bucket
    async with S3Sink(f"{base}/b", sigv4.Credentials(CREDS.access_key, "wrong")) as sink:
        with pytest.raises(TransportError, match="403"):
            await sink.write([("tile/0/000", b"x" * 32)])
    assert objects == {}


def test_the_sink_is_chosen_by_the_tiles_section(tmp_path: Path) -> None:
    """[tiles] dir gives a directory, s3_url a bucket (with a credentials file), both or
    a bucket without credentials is a ConfigError."""

    def cfg(**kw: str) -> tuple[TilesSection, Callable[[str], Path]]:
        return TilesSection(**kw), lambda p: tmp_path / p  # type: ignore[arg-type]

    assert isinstance(tile_sink(*cfg(dir="t")), DirectorySink)
    assert tile_sink(*cfg()) is None
    (tmp_path / "s3.cred").write_text("AK:SECRET\n")
    sink = tile_sink(*cfg(s3_url="http://127.0.0.1:1/bucket", s3_credentials_file="s3.cred"))
    assert isinstance(sink, S3Sink)
    assert sink.creds == sigv4.Credentials("AK", "SECRET")
    for bad in ({"dir": "t", "s3_url": "http://h/b"}, {"s3_url": "http://h/b"}):
        with pytest.raises(ConfigError):
            tile_sink(*cfg(**bad))
    (tmp_path / "bad.cred").write_text("no-colon")
    with pytest.raises(ConfigError):
        read_credentials(tmp_path / "bad.cred")
    with pytest.raises(ConfigError):
        S3Sink("http://h", CREDS)


async def test_a_configured_node_publishes_on_its_schedule(tmp_path: Path) -> None:
    """[tiles] dir and interval_seconds: the started job publishes the node's logs."""
    from msgspec.structs import replace

    from jcm_sync.local.config import load_config
    from jcm_sync.net.tiles_http import start_tiles_job
    from jcm_sync.services.node import open_node
    from jcm_sync.services.sample import partnership_records, provision

    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg = load_config(net.configs["JP"], env={})
    cfg = replace(cfg, tiles=TilesSection(dir=str(tmp_path / "pub"), interval_seconds=0.2))
    node = await open_node(cfg)
    try:
        recs = partnership_records("MN", net.keys, projects=1)
        await node.logs("JP-MN").service.append(recs.by_node["JP"])
        job = start_tiles_job(node)
        assert job is not None
        try:
            for _ in range(100):
                if (tmp_path / "pub/JP-MN/JP/checkpoint").exists():
                    break
                await asyncio.sleep(0.05)
        finally:
            await job.close()
        assert (tmp_path / "pub/JP-MN/JP/checkpoint").exists()
        assert job.runs >= 1
    finally:
        await node.close()
