"""The network ends of the static read path (ADR 0041): reading tiles over HTTP from any
static server or CDN, and publishing them into an S3-compatible bucket.

Why this module exists: ``services/tiles.py`` and ``services/tiles_read.py`` see a sink
and a source (``read``/``write`` of paths); this module is the aiohttp adapter for both,
and the one place their foreign errors become ``TransportError``.

Rules:

1. **Source**: ``GET <base>/<path>``; 404 is "nothing there" (None), 200 is the bytes
   (gzip or not: aiohttp decodes ``Content-Encoding``), anything else, an unreachable
   server or an answer over ``max_bytes`` is a ``TransportError``.
2. **Bucket**: ``PUT`` and ``GET`` of ``<s3_url>/<path>``, path-style, each request
   signed with AWS Signature Version 4 (``sigv4.py``); tiles and bundles are sent with a
   long-lived ``Cache-Control`` (they are immutable), the checkpoint with ``no-cache``
   (tlog-tiles: "headers SHOULD prevent caching beyond a few seconds"). An S3 PUT
   replaces an object whole, so a reader never sees a torn object.
3. ``tile_sink`` builds the sink ``[tiles]`` configures: a directory, a bucket, or None;
   ``start_tiles_job`` schedules publishing into it (hub and agent daemons), and
   ``tiles_hub_port`` gives the agent's pull its tiles source (``[hub] tiles_url``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from jcm_sync.errors import ConfigError, TransportError
from jcm_sync.local.config import TilesSection
from jcm_sync.local.keyfiles import read_small_file
from jcm_sync.net.sigv4 import Credentials, sign_headers
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.node import Node
from jcm_sync.services.tiles import CHECKPOINT, DirectorySink, TileSink, TilesJob, TilesPublisher
from jcm_sync.services.tiles_pull import TilesHubPort

#: a full entry bundle is at most 256 entries of 65,537 bytes
MAX_TILE_RESPONSE = 256 * 65_537 + 1024
#: PUTs in flight at once
PUT_CONCURRENCY = 8


class _Http:
    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _body(resp: aiohttp.ClientResponse, url: str, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise TransportError(f"{resp.content_length} bytes, over {max_bytes}", where=url)
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):  # read() returns what arrived
        data += chunk
        if len(data) > max_bytes:
            raise TransportError(f"an answer over {max_bytes} bytes", where=url)
    return bytes(data)


class HttpTileSource(_Http):
    """Rule 1: tiles read from ``base_url`` (a log's prefix, or the root of a node's
    published logs: ``services.tiles_read.open_tiled_log`` adds ``<pid>/<node>/``)."""

    def __init__(
        self, base_url: str, *, timeout: float = 30.0, max_bytes: int = MAX_TILE_RESPONSE
    ) -> None:
        super().__init__(timeout)
        self.base_url = base_url.rstrip("/")
        self.max_bytes = max_bytes

    async def read(self, path: str) -> bytes | None:
        url = f"{self.base_url}/{path}"
        try:
            async with self.session().get(url) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise TransportError(f"HTTP {resp.status}", where=url)
                return await _body(resp, url, self.max_bytes)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"cannot fetch: {exc or type(exc).__name__}", where=url) from exc


class S3Sink(_Http):
    """Rule 2: a path-style S3-compatible bucket (``https://host/bucket[/prefix]``)."""

    def __init__(
        self,
        s3_url: str,
        creds: Credentials,
        *,
        region: str = "us-east-1",
        timeout: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(timeout)
        parts = urlsplit(s3_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path in ("", "/"):
            raise ConfigError(f"not a bucket URL (https://host/bucket): {s3_url!r}",
                              where="tiles.s3_url")  # fmt: skip
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.creds, self.region, self.clock = creds, region, clock

    async def _request(self, method: str, path: str, body: bytes = b"",
                       extra: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
        key = f"{self.base_path}/{path}"
        url = self.origin + key
        headers = sign_headers(method, self.host, key, body, self.creds, self.region,
                               self.clock(), extra)  # fmt: skip
        try:
            async with self.session().request(method, url, data=body or None,
                                              headers=headers) as resp:  # fmt: skip
                return resp.status, await _body(resp, url, MAX_TILE_RESPONSE)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} failed: {exc or type(exc).__name__}",
                                 where=url) from exc  # fmt: skip

    async def read(self, path: str) -> bytes | None:
        status, data = await self._request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise TransportError(f"GET answered {status}: {data[:200]!r}", where=path)
        return data

    async def write(self, files: Sequence[tuple[str, bytes]]) -> None:
        limit = asyncio.Semaphore(PUT_CONCURRENCY)

        async def put(path: str, data: bytes) -> None:
            last = path.rsplit("/", 1)[-1] == CHECKPOINT
            extra = {
                "content-type": "text/plain; charset=utf-8" if last
                else "application/octet-stream",
                "cache-control": "no-cache" if last else "public, max-age=31536000, immutable",
            }  # fmt: skip
            async with limit:
                status, body = await self._request("PUT", path, data, extra)
            if status not in (200, 201, 204):
                raise TransportError(f"PUT answered {status}: {body[:200]!r}", where=path)

        await asyncio.gather(*(put(p, d) for p, d in files))


def read_credentials(path: Path) -> Credentials:
    """``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` from a small file."""
    text = read_small_file(path, what="S3 credentials").decode("utf-8", "replace").strip()
    access, sep, secret = text.partition(":")
    if not sep or not access or not secret:
        raise ConfigError("expected ACCESS_KEY_ID:SECRET_ACCESS_KEY", where=str(path))
    return Credentials(access, secret)


def tile_sink(t: TilesSection, resolve: Callable[[str], Path]) -> TileSink | None:
    """Rule 3: the sink ``[tiles]`` names (paths resolved by ``resolve``, the config's
    ``Config.path``), or None."""
    if t.dir and t.s3_url:
        raise ConfigError("set one of tiles.dir and tiles.s3_url", where="tiles")
    if t.dir:
        return DirectorySink(resolve(t.dir))
    if t.s3_url:
        if not t.s3_credentials_file:
            raise ConfigError("tiles.s3_url needs tiles.s3_credentials_file", where="tiles")
        creds = read_credentials(resolve(t.s3_credentials_file))
        return S3Sink(t.s3_url, creds, region=t.s3_region)
    return None


def start_tiles_job(
    node: Node, only_if: Callable[[], Awaitable[bool]] | None = None
) -> TilesJob | None:
    """The hub's or agent's scheduled publishing, as ``[tiles]`` configures it (None:
    not configured), started; ``only_if`` is asked before each run (the hub's job lock
    when several hub processes share one PostgreSQL, ADR 0042)."""
    sink = tile_sink(node.cfg.tiles, node.cfg.path)
    if sink is None:
        return None
    job = TilesJob(TilesPublisher(node.store, sink), node.cfg.tiles.interval_seconds,
                   jitter=node.cfg.schedule.jitter_seconds, only_if=only_if)  # fmt: skip
    job.start()
    return job


def tiles_hub_port(inner: HubPort, node: Node, partnership: str, url: str) -> HubPort:
    """The agent's port to the hub reading Japan's log from the tiles at ``url`` (the
    ``[hub] tiles_url``; ``services/tiles_pull.py``)."""
    return TilesHubPort(inner, HttpTileSource(url), node, partnership)
