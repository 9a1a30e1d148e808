"""The hub behind a real TLS-terminating reverse proxy on loopback (ADR 0015).

The proxy is an aiohttp server with a certificate issued in the test by a CA made in the
test (``cryptography``); it forwards each request to the hub over plain HTTP with the
path and query exactly as received and the Host it received, as nginx does with
``proxy_set_header Host $host``. The hub's ``public_origin`` is the proxy's
``https://`` origin; the agent trusts the test CA through ``[hub] ca_file``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from jcm_sync.errors import PeerRefusedError, TransportError
from jcm_sync.net.client import HubClient
from jcm_sync.services.agent import Syncer
from jcm_sync.services.node import Node
from tests.exchange.conftest import Running

#: headers of one hop (RFC 9110 §7.6.1), not forwarded
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length"}
)  # fmt: skip


CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost it issued, as PEM files:
    (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jcm-sync test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "server.pem", directory / "key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


@dataclass
class TlsProxy:
    """A TLS-terminating reverse proxy on 127.0.0.1 in front of the hub."""

    origin: str
    ca_file: Path
    forwarded: list[str]


async def proxy_handler(
    request: web.Request, upstream: str, session: aiohttp.ClientSession, seen: list[str]
) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers["X-Forwarded-Proto"] = "https"
    headers["X-Forwarded-For"] = request.remote or ""
    seen.append(f"{request.method} {request.raw_path} Host={request.headers.get('Host')}")
    body = await request.read()  # the agent sends no Content-Encoding: these are the bytes
    async with session.request(
        request.method,
        URL(upstream + request.raw_path, encoded=True),
        headers=headers,  # Host as received: nginx's proxy_set_header Host $host
        data=body or None,
        allow_redirects=False,
        skip_auto_headers=("Content-Type",),
    ) as up:
        answer = await up.read()
        back = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=up.status, body=answer, headers=back)


@pytest.fixture
async def tls_proxy(network: Running, tmp_path: Path) -> AsyncIterator[TlsProxy]:
    ca_pem, cert_pem, key_pem = make_ca_and_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_pem, key_pem)
    upstream = network.url
    seen: list[str] = []
    session = aiohttp.ClientSession(auto_decompress=False)
    app = web.Application(client_max_size=16 * 1024 * 1024)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await proxy_handler(request, upstream, session, seen)

    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield TlsProxy(f"https://127.0.0.1:{port}", ca_pem, seen)
    finally:
        await runner.cleanup()
        await session.close()


def through(network: Running, proxy: TlsProxy, node: Node, *, ca: bool = True) -> Syncer:
    client = HubClient(proxy.origin, node.keys.transport,  # type: ignore[arg-type]
                       ca_file=str(proxy.ca_file) if ca else None, timeout=30)  # fmt: skip
    network.clients.append(client)
    return Syncer(node, client, node.cfg.partnerships[0].id, batch_size=50)


async def assert_logs_equal(network: Running, agent: Node, pid: str) -> None:
    assert network.hub is not None
    hub, mine = network.hub.logs(pid), agent.logs(pid)
    assert await network.hub.store.tree_head(hub.replica) == await agent.store.tree_head(mine.own)
    assert await agent.store.tree_head(mine.replica) == await network.hub.store.tree_head(hub.own)
    ours = [e.envelope for e in await agent.store.entries(mine.own)]
    theirs = [e.envelope for e in await network.hub.store.entries(hub.replica)]
    assert ours == theirs
    assert ours


async def test_an_agent_syncs_through_a_tls_terminating_proxy(
    network: Running, tls_proxy: TlsProxy
) -> None:
    """With ``public_origin`` the proxy's https origin, an agent that trusts the test CA
    pushes and pulls through the proxy: both logs end identical on both sides, and every
    request went through the proxy carrying the proxy's Host."""
    assert network.server is not None
    network.server.settings.public_origin = tls_proxy.origin
    n_mn, n_jp = await network.seed("MN")
    agent = await network.agent("MN")
    result = await through(network, tls_proxy, agent).sync_once()
    assert (result.pushed, result.pulled, result.in_sync) == (n_mn, n_jp, True)
    await assert_logs_equal(network, agent, "JP-MN")
    host = tls_proxy.origin.removeprefix("https://")
    assert tls_proxy.forwarded
    assert all(line.endswith(f"Host={host}") for line in tls_proxy.forwarded)
    assert any(line.startswith("POST ") for line in tls_proxy.forwarded)


async def test_without_public_origin_the_proxy_is_wrong_target(
    network: Running, tls_proxy: TlsProxy
) -> None:
    """A hub that does not know its public origin refuses what the agent signed for the
    proxy with 401 ``wrong-target`` naming both origins (it was a silent 401 before)."""
    assert network.server is not None
    assert network.server.settings.public_origin is None
    await network.seed("MN")
    agent = await network.agent("MN")
    with pytest.raises(PeerRefusedError) as info:
        await through(network, tls_proxy, agent).sync_once()
    assert (info.value.status, info.value.code) == (401, "wrong-target")
    assert tls_proxy.origin in info.value.message
    assert network.url in info.value.message
    assert network.hub is not None
    assert (await network.hub.store.tree_head(network.hub.logs("JP-MN").replica)).size == 0


async def test_the_agent_checks_the_proxy_certificate(
    network: Running, tls_proxy: TlsProxy
) -> None:
    """Without the test CA the agent refuses the proxy's certificate: TLS is verified."""
    assert network.server is not None
    network.server.settings.public_origin = tls_proxy.origin
    agent = await network.agent("MN")
    syncer = through(network, tls_proxy, agent, ca=False)
    with pytest.raises(TransportError, match="certificate"):
        await syncer.sync_once()
    assert tls_proxy.forwarded == []


async def test_jcm_sync_sync_through_the_proxy_with_ca_file(
    network: Running, tls_proxy: TlsProxy
) -> None:
    """``jcm-sync sync`` with ``JCM_SYNC_HUB_URL`` the proxy and ``JCM_SYNC_HUB_CA_FILE``
    the test CA pushes and pulls Indonesia's partnership through the proxy."""
    assert network.server is not None
    network.server.settings.public_origin = tls_proxy.origin
    await network.seed("ID")
    await network.agents.pop("ID").close()  # the command opens the agent's store itself
    env = {**os.environ, "JCM_SYNC_HUB_URL": tls_proxy.origin,
           "JCM_SYNC_HUB_CA_FILE": str(tls_proxy.ca_file)}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jcm_sync", "sync", "--config", str(network.net.configs["ID"]),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    await assert_logs_equal(network, await network.agent("ID"), "JP-ID")
