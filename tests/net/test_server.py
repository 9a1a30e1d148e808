"""``net/server.py``: the hub's HTTP surface beyond what ``test_openapi.py`` checks of
the contract: request ids on every answer, the problem+json of each kind of error
(and what it must not say), the query-integer and body-framing refusals, page cutting,
health routes, the per-request metric, and the settings read from a configuration.

Live tests run a real hub (``HubServer.runner()``, aiohttp on 127.0.0.1 port 0, SQLite)
and send requests signed by the partner's real key through ``net/signing.py``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from jcm_sync.core.wire import PROBLEM_CONTENT_TYPE, EntriesPage, Problem
from jcm_sync.errors import (
    CorruptStoreError,
    ForbiddenError,
    GapError,
    JcmSyncError,
    NonceCacheFullError,
    PastLogSizeError,
    SignatureError,
    StoreError,
    UnsupportedContentError,
    UnsupportedEncodingError,
)
from jcm_sync.local.config import load_config
from jcm_sync.net.server import (
    INTERNAL_ERROR,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    STORE_UNAVAILABLE,
    ProtocolLog,
    ServerSettings,
    check_content,
    cut_page,
    problem,
    problem_of,
    settings_from,
)
from jcm_sync.net.signing import RequestSigner, SigningMiddleware
from jcm_sync.services.sample import provision
from jcm_sync.store.values import MAX_INDEX
from tests.exchange.conftest import Running

PID = "JP-MN"
LOGS = f"/v1/partnerships/{PID}/logs"


def decoded(resp: web.Response) -> Problem:
    assert isinstance(resp.body, bytes)
    return Problem(**json.loads(resp.body))


# --- problem_of: what each error says -----------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "detail", "size"),
    [
        (ForbiddenError("only JP-MN", where="pid"), 403, "only JP-MN", None),
        (GapError("starts at 9", size=4), 409, "starts at 9", 4),
        (PastLogSizeError("start 9 is past", size=7, where="start"), 400, "start 9 is past", 7),
        (SignatureError("bad signature", where="signatures[0]"), 422, "bad signature", None),
        (StoreError("postgresql://hub:secret@db: no table"), 503, STORE_UNAVAILABLE, None),
        (CorruptStoreError("row 12 of entries: bad hash"), 503, STORE_UNAVAILABLE, None),
        (JcmSyncError("a bug's own words"), 500, INTERNAL_ERROR, None),
    ],
    ids=["forbidden", "gap", "past-log-size", "untrusted", "store", "corrupt-store", "other"],
)  # fmt: skip
def test_each_error_has_its_problem_and_internals_stay_out(
    exc: JcmSyncError, status: int, detail: str, size: int | None
) -> None:
    """Rule 7: a refusal says why (and where, and the size to resume from); a store error
    or any other 5xx says only that the hub cannot answer."""
    token = REQUEST_ID.set("0123456789abcdef")
    try:
        resp = problem_of(exc)
    finally:
        REQUEST_ID.reset(token)
    p = decoded(resp)
    assert (resp.status, p.status, p.code, p.detail, p.size) == (status, status, exc.code, detail,
                                                                size)  # fmt: skip
    assert p.type == f"urn:jcm-sync:problem:{exc.code}"
    assert p.title == type(exc).__name__.removesuffix("Error")
    assert p.where == ("" if status >= 500 else (exc.where or ""))
    assert p.request_id == resp.headers[REQUEST_ID_HEADER] == "0123456789abcdef"
    assert resp.content_type == PROBLEM_CONTENT_TYPE
    text = resp.text or ""
    assert "secret" not in text
    assert "row 12" not in text


@pytest.mark.parametrize(("wait", "header"), [(0.2, "2"), (4.5, "6")], ids=["short", "long"])
def test_a_full_replay_cache_says_when_to_retry(wait: float, header: str) -> None:
    """Rule 1: the cache's own figure, plus a second, at least one, whole seconds up."""
    resp = problem_of(NonceCacheFullError("the replay cache is full", retry_after=wait))
    assert (resp.status, resp.headers["Retry-After"]) == (503, header)
    assert decoded(resp).detail == "the replay cache is full"


def test_a_problem_outside_a_request_has_no_id() -> None:
    """With no request being answered there is no id to send."""
    resp = problem(404, "not-found", "NotFound", "nothing here")
    assert REQUEST_ID_HEADER not in resp.headers
    assert decoded(resp).request_id == ""


# --- pure helpers -------------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=20), st.integers(0, 400))
def test_a_page_is_cut_at_max_page_bytes(entries: list[bytes], max_bytes: int) -> None:
    """Rule 4: the longest prefix within the bytes, at least one entry, start and size kept."""
    page = EntriesPage(start=5, entries=entries, size=99)
    cut = cut_page(page, max_bytes)
    n = len(cut.entries)
    assert (cut.start, cut.size) == (5, 99)
    assert cut.entries == entries[:n]
    if entries:
        assert n >= 1
        assert sum(map(len, cut.entries)) <= max_bytes or n == 1
    if n < len(entries):
        assert sum(map(len, entries[: n + 1])) > max_bytes


@pytest.mark.parametrize(
    ("method", "headers", "error"),
    [
        ("GET", {}, None),
        ("POST", {"Content-Type": "application/json"}, None),
        ("POST", {"Content-Type": "application/json; charset=UTF-8"}, None),
        ("POST", {"Content-Type": "text/plain"}, UnsupportedContentError),
        ("POST", {}, UnsupportedContentError),
        ("POST", {"Content-Type": "application/json; charset=latin-1"}, UnsupportedContentError),
        ("POST", {"Content-Type": "application/json", "Content-Encoding": "gzip"},
         UnsupportedEncodingError),
        ("GET", {"Content-Encoding": "identity"}, UnsupportedEncodingError),
    ],
    ids=["get", "json", "json-utf8", "text", "no-type", "latin-1", "gzip", "any-encoding"],
)  # fmt: skip
def test_body_framing_is_checked_before_the_body(
    method: str, headers: dict[str, str], error: type[Exception] | None
) -> None:
    """ADR 0015: JSON in UTF-8, no Content-Encoding at all, else 415."""
    request = make_mocked_request(method, f"{LOGS}/MN/entries", headers=CIMultiDict(headers))
    if error is None:
        check_content(request)
    else:
        with pytest.raises(error):
            check_content(request)


def test_the_protocol_log_keeps_parser_refusals_to_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A malformed request aiohttp logs itself is one INFO line; a real error keeps its
    traceback."""
    adapter = ProtocolLog(logging.getLogger("jcm_sync.server"), {})
    with caplog.at_level(logging.INFO, logger="jcm_sync.server"):
        adapter.exception("Error handling request", exc_info=BadHttpMessage("bad\n  chunk"))
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            adapter.exception("Error handling request")
    info, error = caplog.records
    assert (info.levelno, info.exc_info) == (logging.INFO, None)
    assert info.getMessage() == "refused-malformed-http"
    assert "\n" not in info.detail
    assert error.levelno == logging.ERROR
    assert error.exc_info is not None


def test_settings_come_from_the_server_section(tmp_path: Path) -> None:
    """Every ``[server]`` value the hub's HTTP surface uses is taken from the config."""
    net = provision(tmp_path, ["MN"], hub_port=8765)
    cfg = load_config(net.configs["JP"], env={})
    s, c = settings_from(cfg), cfg.server
    assert s.host == c.host == "127.0.0.1"
    assert (s.max_body_bytes, s.max_concurrency_per_node) == (
        c.max_body_bytes, c.max_concurrency_per_node)  # fmt: skip
    assert (s.clock_skew_seconds, s.retry_after_seconds, s.max_page_bytes) == (
        c.clock_skew_seconds, c.retry_after_seconds, c.max_page_bytes)  # fmt: skip
    assert (s.header_timeout_seconds, s.body_timeout_seconds, s.keepalive_timeout_seconds) == (
        c.header_timeout_seconds, c.body_timeout_seconds, c.keepalive_timeout_seconds)  # fmt: skip
    assert s.max_unauthenticated_per_address == c.max_unauthenticated_per_address
    assert s.public_origin is None  # empty in the file: the listening address
    assert s.run_jobs


# --- a live hub ---------------------------------------------------------------------------


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Running]:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False, max_body_bytes=64 * 1024), None)
    await running.start_hub()
    await running.seed("MN", projects=1)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def signed(hub: Running) -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose requests the partner's transport key signs."""
    agent = await hub.agent("MN")
    middleware = SigningMiddleware(RequestSigner(agent.keys.transport))
    async with aiohttp.ClientSession(hub.url, middlewares=(middleware,)) as s:
        yield s


@pytest.fixture
async def plain(hub: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(hub.url) as s:
        yield s


async def problem_from(resp: aiohttp.ClientResponse) -> Problem:
    assert resp.content_type == PROBLEM_CONTENT_TYPE
    p = Problem(**await resp.json(content_type=None))
    assert p.request_id == resp.headers[REQUEST_ID_HEADER]
    assert p.status == resp.status
    return p


async def test_every_answer_carries_its_own_request_id(
    signed: aiohttp.ClientSession, plain: aiohttp.ClientSession
) -> None:
    """Rule 7: 200s and refusals alike carry a new 16-hex ``X-Request-Id``."""
    ids = []
    for session, path in [(plain, "/livez"), (plain, "/readyz"), (plain, "/nowhere"),
                          (plain, f"/v1/partnerships/{PID}/state"),
                          (signed, f"/v1/partnerships/{PID}/state"),
                          (signed, f"{LOGS}/JP/entries?start=999")]:  # fmt: skip
        async with session.get(path) as resp:
            ids.append(resp.headers[REQUEST_ID_HEADER])
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


async def test_a_refusal_is_logged_once_under_its_request_id(
    signed: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 8: one INFO event naming the request id, the method and the path."""
    with caplog.at_level(logging.INFO, logger="jcm_sync.server"):
        async with signed.get(f"{LOGS}/JP/entries?start=999") as resp:
            p = await problem_from(resp)
    assert (resp.status, p.code) == (400, "past-log-size")
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == p.request_id]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert (lines[0].method, lines[0].path) == ("GET", f"{LOGS}/JP/entries")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=%C2%B2", "must be ASCII digits"),
        ("start=-1", "must be ASCII digits"),
        (f"start={MAX_INDEX + 1}", "must be ASCII digits"),
        ("start=" + "9" * 20, "must be ASCII digits"),
        ("start=1&limit=x", "limit must be ASCII digits"),
    ],
    ids=["superscript-two", "negative", "past-max-index", "twenty-digits", "bad-limit"],
)
async def test_a_query_integer_is_ascii_digits_up_to_max_index(
    signed: aiohttp.ClientSession, query: str, message: str
) -> None:
    """Rule 5: anything else is 400 ``bad-parameter`` naming the parameter, never a 500."""
    async with signed.get(f"{LOGS}/JP/entries?{query}") as resp:
        p = await problem_from(resp)
    assert (resp.status, p.code) == (400, "bad-parameter")
    assert message in p.detail
    assert p.where in ("start", "limit")


async def test_a_required_parameter_missing_is_named(signed: aiohttp.ClientSession) -> None:
    """``old`` of a consistency proof and ``index`` of an inclusion proof are required."""
    for path, name in [("proofs/consistency", "old"), ("proofs/inclusion", "index")]:
        async with signed.get(f"{LOGS}/JP/{path}") as resp:
            p = await problem_from(resp)
        assert (resp.status, p.code, p.where) == (400, "bad-parameter", name)
        assert p.detail == f"query parameter {name} is required"


async def test_a_push_body_that_is_not_json_is_400(signed: aiohttp.ClientSession) -> None:
    """Rule 5: a body msgspec cannot read as a push is ``bad-data``, not a 500."""
    bodies = [b"[]", b"{" * 5000, b'{"start": 0, "entries": ["\xff"]}']
    for body in bodies:
        async with signed.post(f"{LOGS}/MN/entries", data=body,
                               headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
            p = await problem_from(resp)
        assert (resp.status, p.code) == (400, "bad-data")
        assert p.detail.startswith("not a push body")


async def test_a_body_over_max_body_bytes_is_413(signed: aiohttp.ClientSession) -> None:
    """ADR 0015: refused once announced larger than ``max_body_bytes``."""
    body = b'{"start":0,"entries":["' + b"A" * (70 * 1024) + b'"]}'
    async with signed.post(f"{LOGS}/MN/entries", data=body,
                           headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
        p = await problem_from(resp)
    assert (resp.status, p.code) == (413, "body-too-large")
    assert "65536" in p.detail


async def test_unknown_routes_and_methods_are_problem_json(plain: aiohttp.ClientSession) -> None:
    """404 and 405 are problem+json like every other refusal; ``/status`` and ``/metrics``
    are served on the operations listener only."""
    for path in ("/nowhere", "/status", "/metrics"):
        async with plain.get(path) as resp:
            assert (resp.status, (await problem_from(resp)).code) == (404, "not-found")
    async with plain.delete("/livez") as resp:
        assert (resp.status, (await problem_from(resp)).code) == (405, "method-not-allowed")


async def test_v1_needs_a_signature_and_health_does_not(plain: aiohttp.ClientSession) -> None:
    """``/livez`` and ``/readyz`` answer anyone; every ``/v1/`` route wants a signature."""
    async with plain.get("/livez") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    async with plain.get("/readyz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ready",
                                                          "partnerships": [PID]})  # fmt: skip
    async with plain.get(f"/v1/partnerships/{PID}/state") as resp:
        assert resp.status == 401
        await problem_from(resp)


async def test_readyz_is_503_while_the_store_fails_without_saying_why(
    hub: Running, plain: aiohttp.ClientSession
) -> None:
    """Rule 6: a store that cannot answer makes the hub not ready; rule 7: the store's
    own words stay in the log."""
    assert hub.hub is not None
    await hub.hub.store.close()
    async with plain.get("/readyz") as resp:
        p = await problem_from(resp)
        assert "Retry-After" in resp.headers
    assert (resp.status, p.code, p.detail) == (503, "store-unavailable", STORE_UNAVAILABLE)


async def test_each_request_is_measured_by_route_and_status(
    hub: Running, plain: aiohttp.ClientSession
) -> None:
    """``jcm_sync_request_seconds`` counts answers by route template, method and status."""
    for _ in range(3):
        async with plain.get("/livez"):
            pass
    async with plain.get(f"/v1/partnerships/{PID}/state"):
        pass
    assert hub.hub is not None
    registry = hub.hub.metrics.registry

    def count(route: str, status: str) -> Any:
        labels = {"route": route, "method": "GET", "status": status}
        return registry.get_sample_value("jcm_sync_request_seconds_count", labels)

    assert count("/livez", "200") == 3
    assert count("/v1/partnerships/{pid}/state", "401") == 1


def refusal_events(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    """The log records about one request."""
    return [r for r in caplog.records if getattr(r, "request_id", None) == request_id]


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status", "code"),
    [
        ("plain", "GET", f"/v1/partnerships/{PID}/state", None, 401, "bad-request-signature"),
        ("signed", "GET", f"{LOGS}/JP/entries?start=999", None, 400, "past-log-size"),
        (
            "signed",
            "POST",
            f"{LOGS}/MN/entries",
            b'{"start":0,"entries":["' + b"A" * 70_000 + b'"]}',
            413,
            "body-too-large",
        ),
        ("signed", "POST", f"{LOGS}/MN/entries", b'{"start":99,"entries":[]}', 409, "gap"),
    ],
)
async def test_each_refusal_is_one_info_event_with_its_fields(
    signed: aiohttp.ClientSession,
    plain: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    who: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    """Rule 8: exactly one INFO ``refused`` event, with reason (the problem code), status,
    partner (the authenticated node, else null), request id, method, path and remote."""
    session = signed if who == "signed" else plain
    headers = {"Content-Type": "application/json"} if body is not None else {}
    with caplog.at_level(logging.DEBUG):
        async with session.request(method, path, data=body, headers=headers) as resp:
            p = await problem_from(resp)
    assert (resp.status, p.code) == (status, code)
    (event,) = refusal_events(caplog, p.request_id)
    assert (event.levelno, event.getMessage()) == (logging.INFO, "refused")
    assert (event.reason, event.status) == (code, status)
    assert (event.method, event.path.split("?")[0]) == (method, path.split("?")[0])
    assert event.remote == "127.0.0.1"
    if who == "signed" and status != 413:  # a body too large is refused before the caller
        assert (event.partner, event.partnership) == ("MN", PID)
    elif who == "plain":
        assert event.partner is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_refused_signature_names_the_key_it_claims(
    hub: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 8: an unauthenticated request's ``partner`` is the key id its signature claims."""
    from jcm_sync.core.envelope import PrivateKey

    stranger = PrivateKey.generate()
    middleware = SigningMiddleware(RequestSigner(stranger))
    with caplog.at_level(logging.INFO):
        async with (
            aiohttp.ClientSession(hub.url, middlewares=(middleware,)) as s,
            s.get(f"/v1/partnerships/{PID}/state") as resp,
        ):
            p = await problem_from(resp)
    assert resp.status == 401
    (event,) = refusal_events(caplog, p.request_id)
    assert event.partner == stranger.key_id
    assert event.partnership is None
