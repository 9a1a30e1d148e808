"""Keys, trust roots, signed requests and a real verifying server shared by the tests of
``net/auth.py``, ``net/signing.py`` and ``net/origin.py``.

Keys come from fixed seeds and roots from ``tests.builders``; every request is signed at
an explicit ``now`` (``builders.NOW``). The fixtures ``hub`` and ``session`` are imported
by the test modules that use them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import ROLES
from jcm_sync.core.wire import Caller
from jcm_sync.errors import UntrustedError
from jcm_sync.net.auth import RequestVerifier
from jcm_sync.net.origin import own_origin, target_uri, verify_aiohttp_request
from jcm_sync.net.signing import RequestSigner
from tests import builders

NOW = builders.NOW
T = NOW.timestamp()
WINDOW = 300

ID_KEY = PrivateKey.from_seed(b"\x01" * 32)  # Indonesia's transport key
JP_KEY = PrivateKey.from_seed(b"\x02" * 32)
MN_KEY = PrivateKey.from_seed(b"\x03" * 32)  # Mongolia: no transport role
JP_MN_KEY = PrivateKey.from_seed(b"\x04" * 32)
REVOKED_KEY = PrivateKey.from_seed(b"\x05" * 32)
EXPIRED_KEY = PrivateKey.from_seed(b"\x06" * 32)
STRANGER_KEY = PrivateKey.from_seed(b"\x07" * 32)  # in no root

JP_ID = builders.build_root(
    "JP-ID",
    {"JP": JP_KEY, "ID": [ID_KEY, REVOKED_KEY, EXPIRED_KEY]},
    revoked={REVOKED_KEY.key_id: NOW - timedelta(days=1)},
    windows={EXPIRED_KEY.key_id: (builders.KEYS_VALID_FROM, NOW - timedelta(days=1))},
)
JP_MN = builders.build_root(
    "JP-MN",
    {"JP": JP_MN_KEY, "MN": MN_KEY},
    roles={"JP": sorted(ROLES), "MN": ["issuance", "transaction", "checkpoint", "root"]},
)
ROOTS = {"JP-ID": JP_ID, "JP-MN": JP_MN}

URL = "http://127.0.0.1:8443/v1/partnerships/JP-ID/logs/ID/entries?from=12&limit=100"
BODY = b'{"entries": ["aGVsbG8="]}'


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def signed(
    *,
    key: PrivateKey = ID_KEY,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    at: float = T,
    lifetime: int = WINDOW,
    key_id: str | None = None,
) -> Req:
    headers = {"Content-Type": "application/json"}
    RequestSigner(key, key_id=key_id, lifetime=lifetime).sign(method, url, headers, body, now=at)
    return Req(method, url, headers, body)


def sha256_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def check(verifier: RequestVerifier, req: Req, at: float = T) -> Caller:
    return verifier.verify(req.method, req.url, req.headers, req.body, now=at)


ID_CALLER = Caller("JP-ID", "ID", ID_KEY.key_id, ID_KEY.public)


@dataclass
class Hub:
    base: str
    verifier: RequestVerifier


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A real aiohttp server on 127.0.0.1, port 0, that verifies every request."""
    verifier = RequestVerifier(ROOTS, window=WINDOW)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        origin = own_origin(request)
        try:
            caller = await verify_aiohttp_request(verifier, request, body, origin=origin, now=T)
        except UntrustedError as exc:
            return web.json_response({"code": exc.code, "detail": str(exc)}, status=401)
        return web.json_response(
            {
                "partnership": caller.partnership,
                "node": caller.node,
                "bytes": len(body),
                "target": target_uri(request, origin=origin),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Hub(f"http://{host}:{port}", verifier)
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


SIGNER = RequestSigner(ID_KEY)
