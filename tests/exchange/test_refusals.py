"""What the hub refuses, and that a refused request stores nothing."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.wire import PushRequest, encoder
from jcm_sync.net.signing import RequestSigner, signed_request
from tests.exchange.conftest import Running

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}


async def call(
    network: Running,
    key: PrivateKey,
    method: str,
    path: str,
    body: bytes = b"",
) -> tuple[int, dict[str, object], str]:
    async with aiohttp.ClientSession() as s:
        resp = await signed_request(s, RequestSigner(key), method, network.url + path, body=body)
        async with resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else {}, resp.content_type


async def replica_size(network: Running, cc: str) -> int:
    assert network.hub is not None
    return (await network.hub.store.tree_head(network.hub.logs(f"JP-{cc}").replica)).size


async def own_entries(network: Running, cc: str) -> list[bytes]:
    agent = await network.agent(cc)
    return [e.envelope for e in await agent.store.entries(agent.logs(f"JP-{cc}").own)]


def push_body(entries: list[bytes], start: int = 0, checkpoint: bytes | None = None) -> bytes:
    return encoder.encode(PushRequest(start=start, entries=entries, checkpoint=checkpoint))


async def test_unsigned_request_is_refused(network: Running) -> None:
    """A request without an HTTP message signature gets 401 problem+json."""
    async with (
        aiohttp.ClientSession() as s,
        s.get(network.url + "/v1/partnerships/JP-MN/state") as r,
    ):
        body = await r.json(content_type=None)
        assert r.status == 401
        assert r.content_type == PROBLEM
        assert body["type"] == "urn:jcm-sync:problem:bad-request-signature"
        assert "Signature-Input" in body["detail"]


async def test_replayed_request_is_refused_and_stores_nothing(network: Running) -> None:
    """The same signed push sent twice: the second is a replay (401), not a second append."""
    await network.seed("MN")
    entries = await own_entries(network, "MN")
    body = push_body(entries[:3])
    captured: dict[str, object] = {}

    async def capture(req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType):  # type: ignore[no-untyped-def]
        captured["headers"] = dict(req.headers)
        return await handler(req)

    key = network.net.keys["MN"]
    url = network.url + "/v1/partnerships/JP-MN/logs/MN/entries"
    from jcm_sync.net.signing import SigningMiddleware

    async with (
        aiohttp.ClientSession(middlewares=(SigningMiddleware(RequestSigner(key)), capture)) as s,
        s.post(url, data=body, headers=JSON) as r,
    ):
        assert r.status == 200
    size_after_first = await replica_size(network, "MN")
    headers = {k: v for k, v in captured["headers"].items() if k.lower() != "host"}  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        problem = await r.json(content_type=None)
        assert r.status == 401
        assert problem["code"] == "replay"
    assert await replica_size(network, "MN") == size_after_first == 3


async def test_wrong_partnership_is_forbidden(network: Running) -> None:
    """Mongolia's agent may not read JP–ID, nor push Japan's or Indonesia's log."""
    await network.seed("MN")
    mn = network.net.keys["MN"]
    status, problem, ctype = await call(network, mn, "GET", "/v1/partnerships/JP-ID/state")
    assert (status, problem["code"], ctype) == (403, "forbidden", PROBLEM)
    entries = await own_entries(network, "MN")
    for target in ("JP-MN/logs/JP", "JP-ID/logs/ID"):
        status, problem, _ = await call(
            network, mn, "POST", f"/v1/partnerships/{target}/entries", push_body(entries[:1])
        )
        assert status == 403, target
    assert await replica_size(network, "MN") == 0
    assert await replica_size(network, "ID") == 0


async def test_unknown_partnership_is_forbidden(network: Running) -> None:
    """A partnership the hub does not serve is 403, like one it serves for another
    partner: the answer does not tell which exist (ADR 0019; more in test_leaks.py)."""
    status, problem, ctype = await call(
        network, network.net.keys["MN"], "GET", "/v1/partnerships/JP-TH/state"
    )
    assert (status, problem["type"], ctype) == (403, "urn:jcm-sync:problem:forbidden", PROBLEM)


async def test_entry_tampered_in_transit_is_refused(network: Running) -> None:
    """An envelope altered in transit fails its record signature: 422, nothing stored."""
    await network.seed("MN")
    entries = await own_entries(network, "MN")
    env = json.loads(entries[0])  # the project registration
    payload = base64.b64decode(env["payload"])
    tampered_payload = payload.replace(b'"registered"', b'"withdrawn"', 1)
    assert tampered_payload != payload
    env["payload"] = base64.b64encode(tampered_payload).decode()
    bad = json.dumps(env, separators=(",", ":")).encode()
    status, problem, ctype = await call(
        network, network.net.keys["MN"], "POST", "/v1/partnerships/JP-MN/logs/MN/entries",
        push_body([bad, entries[1], entries[2]]),
    )  # fmt: skip
    assert (status, ctype) == (422, PROBLEM)
    assert problem["code"] == "bad-signature"
    assert await replica_size(network, "MN") == 0


async def test_body_changed_after_signing_is_refused(network: Running) -> None:
    """A body altered between signing and arrival fails the content digest."""
    await network.seed("MN")
    entries = await own_entries(network, "MN")

    async def tamper(req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType):  # type: ignore[no-untyped-def]
        req.update_body_from_data(push_body(entries[:2]))
        return await handler(req)

    from jcm_sync.net.signing import SigningMiddleware

    key = network.net.keys["MN"]
    url = network.url + "/v1/partnerships/JP-MN/logs/MN/entries"
    async with (
        aiohttp.ClientSession(middlewares=(SigningMiddleware(RequestSigner(key)), tamper)) as s,
        s.post(url, data=push_body(entries[:1]), headers=JSON) as r,
    ):
        problem = await r.json(content_type=None)
        assert r.status == 401
        assert problem["code"] == "content-digest-mismatch"
    assert await replica_size(network, "MN") == 0


async def test_foreign_key_is_refused(network: Running) -> None:
    """A request signed by a key no served root lists is 401."""
    status, problem, _ = await call(
        network, PrivateKey.generate(), "GET", "/v1/partnerships/JP-MN/state"
    )
    assert status == 401
    assert problem["code"] == "unknown-key"


async def test_oversized_body_and_batch_are_413(network: Running) -> None:
    """Bodies over the limit and batches over max_batch are refused with 413."""
    key = network.net.keys["MN"]
    big = push_body([b"x" * 1024] * 300)  # about 400 KB; the test hub allows 256 KiB
    status, problem, ctype = await call(
        network, key, "POST", "/v1/partnerships/JP-MN/logs/MN/entries", big
    )
    assert (status, ctype) == (413, PROBLEM)
    assert problem["code"] == "body-too-large"
    assert network.hub is not None
    hub = network.hub
    from jcm_sync.services.hub import Limits

    await network.seed("MN")
    entries = await own_entries(network, "MN")
    limits: Limits = _hub(network).limits
    limits.max_batch = 2
    status, problem, _ = await call(network, key, "POST", "/v1/partnerships/JP-MN/logs/MN/entries",
                                    push_body(entries[:3]))  # fmt: skip
    assert status == 413
    assert problem["code"] == "batch-too-large"
    assert (await hub.store.tree_head(hub.logs("JP-MN").replica)).size == 0


def _hub(network: Running):  # type: ignore[no-untyped-def]
    return network.server.hub  # type: ignore[attr-defined]


async def test_concurrency_per_node_is_429(network: Running) -> None:
    """Requests beyond the per-node concurrency limit are refused with 429."""
    hub = _hub(network)
    gate = asyncio.Event()
    real_state = hub.state

    async def slow_state(*a, **kw):  # type: ignore[no-untyped-def]
        await gate.wait()
        return await real_state(*a, **kw)

    hub.state = slow_state
    key = network.net.keys["MN"]
    tasks = [asyncio.create_task(call(network, key, "GET", "/v1/partnerships/JP-MN/state"))
             for _ in range(network.settings.max_concurrency_per_node + 2)]  # fmt: skip
    await asyncio.sleep(0.3)
    gate.set()
    results = await asyncio.gather(*tasks)
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) == network.settings.max_concurrency_per_node
    assert statuses.count(429) == 2
    # another partner is not starved by Mongolia's backlog
    assert (await call(network, network.net.keys["ID"], "GET", "/v1/partnerships/JP-ID/state"))[
        0
    ] == 200


async def test_malformed_push_body_is_400(network: Running) -> None:
    """A push body that is not a PushRequest is 400 problem+json, naming what is wrong."""
    path = "/v1/partnerships/JP-MN/logs/MN/entries"
    status, problem, ctype = await call(network, network.net.keys["MN"], "POST", path,
                                        b'{"start": -1}')  # fmt: skip
    assert (status, ctype) == (400, PROBLEM)
    assert "start" in problem["detail"]


async def test_metrics_and_health(network: Running) -> None:
    """/livez and /readyz answer without authentication; /metrics and /status on the
    operations listener only (ADR 0019), 404 problem+json on the partners' port."""
    await network.seed("MN")
    agent = await network.agent("MN")
    await network.syncer(agent).sync_once()
    async with aiohttp.ClientSession() as s:
        async with s.get(network.url + "/livez") as r:
            assert r.status == 200
        async with s.get(network.url + "/readyz") as r:
            assert r.status == 200
            assert "JP-MN" in (await r.json())["partnerships"]
        for path in ("/metrics", "/status"):
            async with s.get(network.url + path) as r:
                assert (r.status, r.content_type) == (404, PROBLEM), path
        async with s.get(network.ops_url + "/metrics") as r:
            text = await r.text()
            assert 'jcm_sync_pushes_total{outcome="accepted",partnership="JP-MN"}' in text
            assert "jcm_sync_request_seconds_bucket" in text
            assert (
                'jcm_sync_entries_total{outcome="accepted",partnership="JP-MN",reason=""}' in text
            )
        async with s.get(network.ops_url + "/status") as r:
            assert "JP-MN" in await r.text()


def test_problem_types_are_distinct() -> None:
    """Each refusal cause has its own problem type."""
    from jcm_sync import errors
    from jcm_sync.net.server import status_of

    assert status_of(errors.ForkError("x")) == 409
    assert status_of(errors.NotFoundError("x")) == 404
    assert status_of(errors.RecordError("x")) == 422
    codes = {c.code for c in (errors.ForkError, errors.ConflictError, errors.RecordError,
                              errors.SignatureError, errors.NotFoundError)}  # fmt: skip
    assert len(codes) == 5


_ = msgspec, pytest


async def test_large_batches_are_checked_in_worker_processes_with_the_same_refusals(
    network: Running,
) -> None:
    """A batch big enough for the verification pool is refused for the same reason, and a
    clean one is accepted whole."""
    from jcm_sync.services.verify_pool import MIN_POOLED_BATCH

    await network.seed("MN", projects=12)
    entries = await own_entries(network, "MN")
    assert len(entries) >= MIN_POOLED_BATCH
    env = json.loads(entries[-1])
    env["signatures"][0]["sig"] = env["signatures"][1 if len(env["signatures"]) > 1 else 0]["sig"]
    sig = base64.b64decode(env["signatures"][0]["sig"])
    env["signatures"][0]["sig"] = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    bad = json.dumps(env, separators=(",", ":")).encode()
    key, path = network.net.keys["MN"], "/v1/partnerships/JP-MN/logs/MN/entries"
    status, problem, _ = await call(network, key, "POST", path, push_body([*entries[:-1], bad]))
    assert (status, problem["code"]) == (422, "bad-signature")
    assert "does not verify" in problem["detail"]
    assert await replica_size(network, "MN") == 0
    status, _, _ = await call(network, key, "POST", path, push_body(entries))
    assert status == 200
    assert await replica_size(network, "MN") == len(entries)


async def test_proofs_served_by_the_hub_verify(network: Running) -> None:
    """Inclusion and consistency proofs of Japan's log verify against the hub's checkpoint;
    bad parameters are 400 or 404 problem+json."""
    from jcm_sync.core import merkle

    await network.seed("MN")
    key = network.net.keys["MN"]
    base = "/v1/partnerships/JP-MN/logs/JP"
    status, cp, _ = await call(network, key, "GET", f"{base}/checkpoint")
    assert status == 200
    size, root = int(cp["size"]), base64.b64decode(cp["root"])
    assert size >= 4
    status, inc, _ = await call(network, key, "GET", f"{base}/proofs/inclusion?index=2&size={size}")
    assert status == 200
    proof = [base64.b64decode(h) for h in inc["proof"]]
    leaf = base64.b64decode(inc["leaf_hash"])
    assert merkle.verify_inclusion(leaf, 2, size, proof, root)
    assert not merkle.verify_inclusion(leaf, 3, size, proof, root)
    status, con, _ = await call(network, key, "GET", f"{base}/proofs/consistency?old=3&new={size}")
    assert status == 200
    assert network.hub is not None
    old_root = await network.hub.store.root_at(network.hub.logs("JP-MN").own, 3)
    path = [base64.b64decode(h) for h in con["proof"]]
    assert merkle.verify_consistency(3, size, old_root, root, path)
    for query, expected in (
        ("proofs/inclusion", 400),
        ("proofs/inclusion?index=x", 400),
        (f"proofs/inclusion?index={size}&size={size}", 400),
        (f"proofs/consistency?old={size + 1}", 400),
    ):
        status, problem, ctype = await call(network, key, "GET", f"{base}/{query}")
        assert ctype == PROBLEM, query
        assert status in (expected, 404), (query, status, problem)
