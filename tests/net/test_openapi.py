"""docs/openapi.json describes the hub's HTTP API as the code serves it.

The routes are read from a real ``HubServer`` over a provisioned hub node, the body
schemas are compared with what msgspec derives from the ``net/wire.py`` Structs, and
the problem codes listed per status are checked against ``server.status_of``, the
body checks (``server.check_content``) and the connection guard (``net/guard.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import http_exceptions as hx
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from jcm_sync.core import wire
from jcm_sync.errors import (
    AmbiguousKeyError,
    AuthorityError,
    BadDataError,
    BadParameterError,
    BatchTooLargeError,
    BodyTooLargeError,
    CheckpointFormatError,
    CheckpointRollbackError,
    ClockSkewError,
    ConflictError,
    ContentDigestError,
    CorruptStoreError,
    EnvelopeFormatError,
    ExpiredError,
    ForbiddenError,
    ForkError,
    GapError,
    JcmSyncError,
    NonceCacheFullError,
    NoteFormatError,
    NotFoundError,
    PastLogSizeError,
    RecordError,
    ReplayError,
    RequestAuthError,
    RequestExpiredError,
    RequestSignatureError,
    RevokedKeyError,
    SignatureError,
    StoreError,
    ThresholdError,
    TooManyRequestsError,
    UnknownKeyError,
    UnsupportedContentError,
    UnsupportedEncodingError,
    UntrustedError,
    WrongOriginError,
    WrongTargetError,
)
from jcm_sync.local.config import load_config
from jcm_sync.net.guard import parser_refusal
from jcm_sync.net.ops import OpsServer
from jcm_sync.net.server import (
    REQUEST_ID_HEADER,
    HubServer,
    ServerSettings,
    check_content,
    status_of,
)
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import provision

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
PROBLEM = "application/problem+json"
SIGNATURE_HEADERS = {"Signature-Input", "Signature", "Content-Digest"}
ERROR_STATUSES = {400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503}

WIRE_STRUCTS = [
    obj
    for obj in vars(wire).values()
    if inspect.isclass(obj) and issubclass(obj, msgspec.Struct) and obj.__module__ == wire.__name__
]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[HubServer]:
    net = provision(tmp_path / "net", ["MN", "ID"], hub_port=0)
    node = await open_node(load_config(net.configs["JP"], env={}))
    try:
        yield HubServer(Hub(node), ServerSettings())
    finally:
        await node.close()


def resolve(spec: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/a/b``) until a plain object."""
    while "$ref" in obj:
        target: Any = spec
        for part in obj["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        obj = target
    return obj


def operations(
    spec: dict[str, Any], listener: str | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every operation; with ``listener`` ("api" or "ops") only those of that listener,
    the operations listener's paths being those with a ``servers`` of their own."""
    for path, item in spec["paths"].items():
        if listener is not None and ("servers" in item) != (listener == "ops"):
            continue
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def error_responses(
    spec: dict[str, Any], op: dict[str, Any]
) -> Iterator[tuple[int, dict[str, Any]]]:
    for status, response in op["responses"].items():
        if status[0] in "45":
            yield int(status), resolve(spec, response)


def strip_docs(schema: Any) -> Any:
    """A schema without its prose (description, title, examples), for comparison."""
    if isinstance(schema, dict):
        return {
            k: strip_docs(v)
            for k, v in schema.items()
            if k not in ("description", "title", "examples", "example")
        }
    if isinstance(schema, list):
        return [strip_docs(v) for v in schema]
    return schema


def test_openapi_version(spec: dict[str, Any]) -> None:
    """The description is OpenAPI 3.1.x."""
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"])


def routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


async def test_routes_match_the_app(spec: dict[str, Any], server: HubServer) -> None:
    """The spec documents exactly the (method, path) pairs each listener's app registers:
    the partners' port and the operations listener (ADR 0019)."""
    documented = {(method, path) for method, path, _ in operations(spec, "api")}
    assert documented == routes(server.app())
    documented = {(method, path) for method, path, _ in operations(spec, "ops")}
    assert documented == routes(OpsServer(server.hub).app())
    assert {("GET", "/"), ("GET", "/status"), ("GET", "/metrics")} <= documented


@pytest.mark.parametrize("struct", WIRE_STRUCTS, ids=lambda s: s.__name__)
def test_schema_matches_wire_struct(spec: dict[str, Any], struct: type[msgspec.Struct]) -> None:
    """Each wire Struct has a schema with its fields, required fields and types."""
    documented = spec["components"]["schemas"][struct.__name__]
    _, derived = msgspec.json.schema_components(
        [struct], ref_template="#/components/schemas/{name}"
    )
    expected = derived[struct.__name__]
    fields = [f.encode_name for f in msgspec.structs.fields(struct)]
    assert list(documented["properties"]) == fields
    assert sorted(documented.get("required", [])) == sorted(expected.get("required", []))
    assert documented["type"] == "object"
    for name in fields:
        assert strip_docs(documented["properties"][name]) == expected["properties"][name], name


def test_v1_operations_are_signed(spec: dict[str, Any]) -> None:
    """Every /v1 operation requires the RFC 9421 scheme and its three headers; the
    operations listener's take its optional bearer token, the rest nothing."""
    schemes = spec["components"]["securitySchemes"]
    assert schemes["opsToken"]["scheme"] == "bearer"
    for _, _, op in operations(spec, "ops"):
        assert op["security"] == [{"opsToken": []}, {}]
    for method, path, op in operations(spec, "api"):
        if not path.startswith("/v1/"):
            assert op.get("security") == [], (method, path)
            continue
        assert op["security"] == [{"httpMessageSignature": []}], (method, path)
        assert "httpMessageSignature" in schemes
        headers = {
            p["name"]
            for p in (resolve(spec, p) for p in op["parameters"])
            if p["in"] == "header" and p["required"]
        }
        assert headers >= SIGNATURE_HEADERS, (method, path)


def test_v1_operations_document_401_as_problem_json(spec: dict[str, Any]) -> None:
    """Every /v1 operation documents 401, and every error it documents is problem+json."""
    problem_ref = "#/components/schemas/Problem"
    for method, path, op in operations(spec):
        errors = dict(error_responses(spec, op))
        if path.startswith("/v1/"):
            assert 401 in errors, (method, path)
        for status, response in errors.items():
            content = list(response["content"])
            if path.endswith("/witness/add-checkpoint") and status == 409:
                # C2SP tlog-witness: a size mismatch is the witness's size (ADR 0032)
                assert content[0] == "text/x.tlog.size", (method, path, status)
                content = content[1:]
            assert content == [PROBLEM], (method, path, status)
            assert response["content"][PROBLEM]["schema"] == {"$ref": problem_ref}


def test_error_statuses_are_those_the_server_uses(spec: dict[str, Any]) -> None:
    """The documented error statuses are exactly the ones ``status_of`` and the routes give."""
    documented = {s for _, _, op in operations(spec) for s, _ in error_responses(spec, op)}
    assert documented == ERROR_STATUSES


def test_429_and_503_document_retry_after(spec: dict[str, Any]) -> None:
    """Every documented 429 and 503 declares the ``Retry-After`` header the hub sends
    with each of them (ADR 0009)."""
    found = 0
    for method, path, op in operations(spec):
        for status, response in error_responses(spec, op):
            if status in (429, 503):
                found += 1
                header = response.get("headers", {}).get("Retry-After")
                assert header is not None, (method, path, status)
                assert resolve(spec, header)["schema"] == {"type": "integer", "minimum": 1}
    assert found


async def test_a_503_carries_retry_after(server: HubServer) -> None:
    """/readyz while shutting down answers 503 with ``Retry-After``, as documented."""
    async with TestClient(TestServer(server.app())) as client:
        server.shutting_down = True
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1


CODES: list[tuple[JcmSyncError | str, int]] = [
    (BadDataError("x"), 400),
    (BadParameterError("x"), 400),
    (PastLogSizeError("x", size=1), 400),
    (EnvelopeFormatError("x"), 400),
    (NoteFormatError("x"), 400),
    (CheckpointFormatError("x"), 400),
    ("http-error", 400),
    ("bad-method", 400),
    ("line-too-long", 400),
    ("bad-body", 400),
    ("bad-request", 400),
    (RequestSignatureError("x"), 401),
    (WrongTargetError("x"), 401),
    (ContentDigestError("x"), 401),
    (ClockSkewError("x"), 401),
    (RequestExpiredError("x"), 401),
    (ReplayError("x"), 401),
    (RequestAuthError(UnknownKeyError("x")), 401),
    (RequestAuthError(AuthorityError("x")), 401),
    (RequestAuthError(ExpiredError("x")), 401),
    (ForbiddenError("x"), 403),
    (NotFoundError("x"), 404),
    ("header-timeout", 408),
    ("body-timeout", 408),
    (GapError("x", size=1), 409),
    (ForkError("x"), 409),
    (ConflictError("x"), 409),
    (CheckpointRollbackError("x"), 409),
    (BodyTooLargeError("x"), 413),
    (BatchTooLargeError("x"), 413),
    (UnsupportedEncodingError("x"), 415),
    (UnsupportedContentError("x"), 415),
    (RecordError("x"), 422),
    (SignatureError("x"), 422),
    (UnknownKeyError("x"), 422),
    (AuthorityError("x"), 422),
    (ThresholdError("x"), 422),
    (ExpiredError("x"), 422),
    (UntrustedError("x"), 422),
    (RevokedKeyError("x"), 422),
    (WrongOriginError("x"), 422),
    (AmbiguousKeyError("x"), 422),
    (TooManyRequestsError("x"), 429),
    (NonceCacheFullError("x", retry_after=1.0), 503),
    (StoreError("x"), 503),
    (CorruptStoreError("x"), 503),
    ("shutting-down", 503),
    ("store-unavailable", 503),
    ("too-many-connections", 503),
]


@pytest.mark.parametrize(
    ("error", "status"),
    CODES,
    ids=[f"{s}-{e if isinstance(e, str) else type(e).__name__}" for e, s in CODES],
)
def test_status_lists_problem_code(
    spec: dict[str, Any], error: JcmSyncError | str, status: int
) -> None:
    """The server answers this cause with this status, and the spec lists its code there."""
    if isinstance(error, JcmSyncError):
        assert status_of(error) == status
        code = error.code
    else:
        code = error
    assert_documented(spec, status, code)


def assert_documented(spec: dict[str, Any], status: int, code: str) -> None:
    """Every operation of the partners' port that documents ``status`` lists ``code``."""
    descriptions = [
        response["description"]
        for _, _, op in operations(spec, "api")
        for s, response in error_responses(spec, op)
        if s == status
    ]
    assert descriptions, status
    assert all(f"`{code}`" in d for d in descriptions), (status, code)


@pytest.mark.parametrize(
    ("headers", "method", "error"),
    [
        ({"Content-Encoding": "gzip"}, "GET", UnsupportedEncodingError),
        ({"Content-Encoding": "identity", "Content-Type": "application/json"}, "POST",
         UnsupportedEncodingError),
        ({"Content-Type": "text/plain"}, "POST", UnsupportedContentError),
        ({"Content-Type": "application/json; charset=latin-1"}, "POST", UnsupportedContentError),
        ({}, "POST", UnsupportedContentError),
    ],
)  # fmt: skip
def test_body_framing_is_a_documented_415(
    spec: dict[str, Any], headers: dict[str, str], method: str, error: type[Exception]
) -> None:
    """``check_content`` refuses these before the body is read, as a 415 whose code every
    /v1 operation lists, and accepts a UTF-8 ``application/json`` body."""
    request = make_mocked_request(method, "/v1/partnerships/JP-MN/state", headers=headers)
    with pytest.raises(error) as caught:
        check_content(request)
    assert type(caught.value) is error
    assert status_of(caught.value) == 415
    assert_documented(spec, 415, caught.value.code)
    for _, path, op in operations(spec, "api"):
        assert ("415" in op["responses"]) == path.startswith("/v1/"), path
    ok = {"Content-Type": "application/json; charset=utf-8"}
    check_content(make_mocked_request("POST", "/v1/partnerships/JP-MN/state", headers=ok))


@pytest.mark.parametrize(
    "exc",
    [
        hx.BadHttpMethod("G\x01T"),
        hx.LineTooLong("x" * 9000, "8190"),
        hx.PayloadEncodingError("bad chunk"),
        hx.BadStatusLine("nonsense"),
        hx.InvalidHeader("X Bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_parser_refusals_are_documented_400(spec: dict[str, Any], exc: Exception) -> None:
    """A request aiohttp's parser refuses is a 400 whose code the spec lists (ADR 0016)."""
    code, _ = parser_refusal(exc)
    assert_documented(spec, 400, code)


def test_every_response_documents_x_request_id(spec: dict[str, Any]) -> None:
    """Every response of every operation, of both listeners and 2xx included, declares the
    ``X-Request-Id`` header the hub sends with each answer (ADR 0019)."""
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            header = resolve(spec, response).get("headers", {}).get("X-Request-Id")
            assert header is not None, (method, path, status)
            assert resolve(spec, header)["schema"] == {"type": "string"}


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """The status, headers and JSON body of a raw answer, read until the hub closes."""
    raw = await asyncio.wait_for(reader.read(), 10)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


async def test_connection_refusals_are_documented(spec: dict[str, Any], tmp_path: Path) -> None:
    """The guarded runner answers a connection over the per-address limit 503, a head
    that never completes 408 and an unparsable request 400: each problem+json, with a
    code the spec lists at that status and ``X-Request-Id`` equal to its ``request_id``."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    node = await open_node(load_config(net.configs["JP"], env={}))
    settings = ServerSettings(
        header_timeout_seconds=0.5, max_unauthenticated_per_address=1, run_jobs=False
    )
    runner = HubServer(Hub(node), settings).runner()
    await runner.setup()  # its cleanup closes the node
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        answers = []
        held_reader, held_writer = await asyncio.open_connection("127.0.0.1", port)
        held_writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # never finished
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers.append(await read_answer(reader))
        writer.close()
        answers.append(await read_answer(held_reader))
        held_writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
        answers.append(await read_answer(reader))
        writer.close()
    finally:
        await runner.cleanup()
    assert [status for status, _, _ in answers] == [503, 408, 400]
    for status, headers, body in answers:
        assert headers["Content-Type"] == PROBLEM
        assert body["status"] == status
        assert body["type"] == "urn:jcm-sync:problem:" + body["code"]
        assert_documented(spec, status, body["code"])
        assert headers[REQUEST_ID_HEADER] == body["request_id"] != ""
    assert int(answers[0][1]["Retry-After"]) >= 1


def test_path_parameters_are_declared(spec: dict[str, Any]) -> None:
    """Every ``{name}`` of a path template is a required path parameter of its operations."""
    for method, path, op in operations(spec):
        declared = {
            p["name"]
            for p in (resolve(spec, p) for p in op.get("parameters", []))
            if p["in"] == "path" and p["required"]
        }
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_refs_resolve(spec: dict[str, Any]) -> None:
    """Every ``$ref`` in the document points at something in it."""

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(spec))
    assert found
    for ref in found:
        assert ref.startswith("#/")
        resolve(spec, {"$ref": ref})


async def test_live_answers_match_the_schemas(spec: dict[str, Any], server: HubServer) -> None:
    """/livez, /readyz and an unsigned /v1 request answer with the documented bodies, and
    every answer of both listeners carries ``X-Request-Id``."""
    schemas = spec["components"]["schemas"]
    async with TestClient(TestServer(server.app())) as client:
        for path, name in (("/livez", "Liveness"), ("/readyz", "Readiness")):
            resp = await client.get(path)
            assert resp.status == 200
            assert set(await resp.json()) == set(schemas[name]["properties"])
            assert resp.headers[REQUEST_ID_HEADER]
        resp = await client.get("/v1/partnerships/JP-MN/state")
        assert resp.status == 401
        assert resp.content_type == PROBLEM
        body = await resp.json()
        assert set(schemas["Problem"]["required"]) <= set(body)
        assert set(body) <= set(schemas["Problem"]["properties"])
        assert resp.headers[REQUEST_ID_HEADER] == body["request_id"] != ""
        # the operations listener, while the hub's app (whose cleanup closes the store) runs
        async with TestClient(TestServer(OpsServer(server.hub).app())) as ops:
            for path in ("/status", "/metrics"):
                resp = await ops.get(path)
                assert resp.status == 200
                assert resp.headers[REQUEST_ID_HEADER]
