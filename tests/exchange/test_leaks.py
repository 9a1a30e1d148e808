"""Nothing internal crosses the wire, query integers are ASCII digits within the log,
and another partnership is 403 whether or not the hub serves it (ADR 0019).

Each case asserts the status, the problem type, the request id (body and
``X-Request-Id``) and that the hub's store is unchanged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from jcm_sync.errors import StoreError
from jcm_sync.net.server import REQUEST_ID_HEADER
from jcm_sync.net.signing import RequestSigner, signed_request
from jcm_sync.store.postgres import PostgresStore
from tests.exchange.conftest import Running
from tests.logs import rendered

PROBLEM = "application/problem+json"
TYPE = "urn:jcm-sync:problem:"
SECRET_URL = "postgresql://jcm:hunter2@db.internal.example:5432/jcm_hub"
DRIVER_TEXT = "ConnectionRefusedError: [Errno 111] Connect call failed"


async def call(network: Running, cc: str, path: str) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s:
        key = network.net.keys[cc]
        resp = await signed_request(s, RequestSigner(key), "GET", network.url + path)
        async with resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else {}, resp


async def sizes(network: Running) -> dict[str, int]:
    assert network.hub is not None
    hub = network.hub
    out = {}
    for pid, p in hub.partnerships.items():
        for ref in (p.own, p.replica):
            out[f"{pid}/{ref.node}"] = (await hub.store.tree_head(ref)).size
    return out


def assert_problem(status: int, body: dict[str, Any], resp: Any, expected: int, code: str) -> None:
    assert (status, body.get("type")) == (expected, TYPE + code), body
    assert resp.content_type == PROBLEM
    assert len(body["request_id"]) == 16
    assert resp.headers[REQUEST_ID_HEADER] == body["request_id"]


async def seeded(network: Running) -> int:
    await network.seed("MN")
    agent = await network.agent("MN")
    await network.syncer(agent).sync_once()
    assert network.hub is not None
    return (await network.hub.store.tree_head(network.hub.logs("JP-MN").own)).size


LOGS = "/v1/partnerships/JP-MN/logs"


@pytest.mark.parametrize(
    "query",
    [
        f"JP/proofs/inclusion?index={q}"
        for q in ("%C2%B2", "%D9%A1", "1%C2%B2", "+1", "-1", "1.0", "", "0x1", "9" * 20)
    ]
    + [
        "JP/proofs/consistency?old=%D9%A1",
        "JP/proofs/consistency?old=1&new=%C2%B2",
        "JP/entries?start=%C2%B2",
        "JP/entries?limit=%D9%A1",
        "JP/proofs/inclusion?index=0&size=%EF%BC%91",  # a full-width 1
        "../state?have=%C2%B2",
        "../state?have=%D9%A1",
    ],
)
async def test_integer_parameters_are_ascii_digits(network: Running, query: str) -> None:
    """Superscripts, Arabic-Indic and full-width digits, signs and decimals are 400
    ``bad-parameter``, never a 500 nor read as a number."""
    await seeded(network)
    before = await sizes(network)
    path = f"{LOGS}/{query}" if not query.startswith("..") else "/v1/partnerships/JP-MN/state?"
    if query.startswith(".."):
        path += query.split("?", 1)[1]
    status, body, resp = await call(network, "MN", path)
    assert_problem(status, body, resp, 400, "bad-parameter")
    assert await sizes(network) == before


async def test_positions_past_the_log_are_refused_with_its_size(network: Running) -> None:
    """``start``, ``index``, ``old``, ``new`` and ``size`` past the log's size are 400
    ``past-log-size`` naming the size; inconsistent pairs are ``bad-parameter``."""
    size = await seeded(network)
    before = await sizes(network)
    for query, where in (
        (f"JP/entries?start={size + 1}", "start"),
        (f"JP/proofs/inclusion?index={size}", "index"),
        (f"JP/proofs/inclusion?index=0&size={size + 1}", "size"),
        (f"JP/proofs/consistency?old={size + 1}", "old"),
        (f"JP/proofs/consistency?old=1&new={size + 1}", "new"),
        ("JP/entries?start=9223372036854775807", "start"),
    ):
        status, body, resp = await call(network, "MN", f"{LOGS}/{query}")
        assert_problem(status, body, resp, 400, "past-log-size")
        assert (body["size"], body["where"]) == (size, where), query
    for query in ("JP/proofs/inclusion?index=2&size=2", "JP/proofs/consistency?old=3&new=2"):
        status, body, resp = await call(network, "MN", f"{LOGS}/{query}")
        assert_problem(status, body, resp, 400, "bad-parameter")
    status, body, _ = await call(network, "MN", f"{LOGS}/JP/entries?start={size}")
    assert (status, body["entries"]) == (200, [])
    assert await sizes(network) == before


async def test_have_beyond_the_log_is_clamped_and_the_lag_bounded(network: Running) -> None:
    """``have=2^63-1`` is answered, logged, and leaves the lag at 0, not 9.2e18."""
    size = await seeded(network)
    assert network.hub is not None
    lag = network.hub.metrics.replica_lag.labels("JP-MN", "JP")
    status, _, _ = await call(network, "MN", "/v1/partnerships/JP-MN/state?have=2")
    assert status == 200
    assert lag._value.get() == size - 2
    status, _, _ = await call(
        network, "MN", "/v1/partnerships/JP-MN/state?have=9223372036854775807"
    )
    assert status == 200
    assert lag._value.get() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/partnerships/JP-TH/state",  # served by no one
        "/v1/partnerships/JP-ID/state",  # served, someone else's
        "/v1/partnerships/JP-TH/logs/TH/checkpoint",
        "/v1/partnerships/JP-ID/logs/ID/checkpoint",
        "/v1/partnerships/JP-ID/logs/XX/checkpoint",  # unknown node of another's
        "/v1/partnerships/JP-TH/logs/XX/entries?start=0",
        "/v1/partnerships/JP-ID/logs/XX/entries?start=0",
        "/v1/partnerships/JP-ID/logs/JP/proofs/inclusion?index=0",
        "/v1/partnerships/JP-TH/logs/JP/proofs/consistency?old=1",
        "/v1/partnerships/JP-ID/logs/XX/proofs/consistency?old=1",
    ],
)
async def test_other_partnerships_are_403_whether_served_or_not(
    network: Running, path: str
) -> None:
    """A partner learns nothing about which partnerships or nodes exist elsewhere."""
    await seeded(network)
    before = await sizes(network)
    status, body, resp = await call(network, "MN", path)
    assert_problem(status, body, resp, 403, "forbidden")
    assert "JP-ID" not in body["detail"]
    assert "JP-TH" not in body["detail"]
    assert await sizes(network) == before


async def test_unknown_node_of_own_partnership_is_404(network: Running) -> None:
    status, body, resp = await call(network, "MN", f"{LOGS}/XX/checkpoint")
    assert_problem(status, body, resp, 404, "not-found")


async def test_store_error_text_stays_in_the_log(
    network: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A store error naming its URL and driver message answers a generic 503 with
    Retry-After and the request id; the log holds the URL and text under that id."""
    await seeded(network)
    assert network.hub is not None
    store = network.hub.store
    before = await sizes(network)
    real = store.tree_head

    async def failing(*a: object, **kw: object) -> Any:
        raise StoreError(f"PostgreSQL failed reading: {DRIVER_TEXT}", where=SECRET_URL)

    store.tree_head = failing  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="jcm_sync")
    try:
        for path in ("/v1/partnerships/JP-MN/state", f"{LOGS}/JP/entries?start=0", "/readyz"):
            status, body, resp = await call(network, "MN", path)
            assert status == 503, path
            assert body["code"] in ("store", "store-unavailable")
            assert resp.headers[REQUEST_ID_HEADER] == body["request_id"]
            assert int(resp.headers["Retry-After"]) >= 1
            text = json.dumps(body)
            for secret in ("hunter2", "db.internal", "postgresql", "Errno", "Connect call"):
                assert secret not in text, (path, body)
            assert "store is unavailable" in body["detail"]
            logged = [rendered(r) for r in caplog.records if body["request_id"] in rendered(r)]
            assert any(SECRET_URL in m and DRIVER_TEXT in m for m in logged), (path, logged)
    finally:
        store.tree_head = real  # type: ignore[method-assign]
    assert await sizes(network) == before


async def test_a_bug_is_a_generic_500_with_its_traceback_in_the_log(
    network: Running, caplog: pytest.LogCaptureFixture
) -> None:
    server = network.server
    assert server is not None

    async def broken(*a: object, **kw: object) -> Any:
        raise RuntimeError("SELECT secret FROM internal_table")

    server.hub.state = broken  # type: ignore[method-assign]
    status, body, resp = await call(network, "MN", "/v1/partnerships/JP-MN/state")
    assert_problem(status, body, resp, 500, "internal")
    assert "SELECT" not in json.dumps(body)
    rec = next(r for r in caplog.records if body["request_id"] in rendered(r))
    assert rec.exc_info is not None
    assert "internal_table" in str(rec.exc_info[1])


async def test_real_postgres_outage_leaks_nothing(
    network: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub's PostgreSQL pool pointed at a closed port: asyncpg's own error text and
    the store's URL are in the log under the request id, not in the answer."""
    assert network.hub is not None
    store = network.hub.store
    if not isinstance(store, PostgresStore):
        pytest.skip("needs the hub on PostgreSQL")
    import socket

    import asyncpg

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"postgresql://postgres:hunter2@127.0.0.1:{closed}/test"
    real_pool = store._pool
    store._pool = asyncpg.create_pool(url, min_size=0, max_size=1)  # type: ignore[assignment]
    await store._pool  # type: ignore[misc]
    caplog.set_level(logging.INFO, logger="jcm_sync")
    try:
        status, body, resp = await call(network, "MN", "/v1/partnerships/JP-MN/state")
    finally:
        bad, store._pool = store._pool, real_pool
        await bad.close()  # type: ignore[union-attr]
    assert (status, body["code"]) == (503, "store")
    assert resp.headers[REQUEST_ID_HEADER] == body["request_id"]
    text = json.dumps(body)
    assert str(closed) not in text
    assert "PostgreSQL" not in text
    assert "hunter2" not in text
    logged = [rendered(r) for r in caplog.records if body["request_id"] in rendered(r)]
    assert any(str(closed) in m and "PostgreSQL" in m for m in logged), logged
    assert all("hunter2" not in m for m in logged)
    assert (await sizes(network))["JP-MN/MN"] == 0


async def test_an_agent_refusal_names_the_hubs_request_id(
    network: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal seen by an agent carries the hub's request id in its message, and the
    hub's log line of that refusal carries the same id: what an operator quotes to Japan."""
    from jcm_sync.errors import PeerRefusedError

    agent = await network.agent("MN")
    client = network.syncer(agent).client
    caplog.set_level(logging.INFO, logger="jcm_sync")
    with pytest.raises(PeerRefusedError) as refused:
        await client.state("JP-ID")
    rid = refused.value.problem.request_id
    assert refused.value.status == 403
    assert rid
    assert f"[hub request {rid}]" in str(refused.value)
    assert any(rid in rendered(r) for r in caplog.records if r.name.startswith("jcm_sync"))
