"""docs/openapi.json describes the hub's HTTP API as the code serves it.

The routes are read from a real ``HubServer`` over a provisioned hub node, the body
schemas are compared with what msgspec derives from the ``net/wire.py`` Structs, and
the problem codes listed per status are checked against ``server.status_of``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jcm_sync.checkpoint import (
    AmbiguousKeyError,
    CheckpointFormatError,
    NoteFormatError,
    RollbackError,
    WrongOriginError,
)
from jcm_sync.config import load_config
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    ConflictError,
    CorruptStoreError,
    EnvelopeFormatError,
    ExpiredError,
    ForkError,
    JcmSyncError,
    NotFoundError,
    RecordError,
    SignatureError,
    StoreError,
    ThresholdError,
    UnknownKeyError,
    UntrustedError,
)
from jcm_sync.net import wire
from jcm_sync.net.auth import (
    ClockSkewError,
    ContentDigestError,
    NonceCacheFullError,
    ReplayError,
    RequestExpiredError,
    RequestSignatureError,
)
from jcm_sync.net.ops import OpsServer
from jcm_sync.net.server import (
    BodyTooLargeError,
    HubServer,
    RequestAuthError,
    ServerSettings,
    TooManyRequestsError,
    status_of,
)
from jcm_sync.node import open_node
from jcm_sync.registry import (
    BadParameterError,
    BatchTooLargeError,
    ForbiddenError,
    GapError,
    Hub,
    PastLogSizeError,
)
from jcm_sync.sample import provision

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
PROBLEM = "application/problem+json"
SIGNATURE_HEADERS = {"Signature-Input", "Signature", "Content-Digest"}
ERROR_STATUSES = {400, 401, 403, 404, 409, 413, 422, 429, 503}

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
    assert documented == {("GET", "/status"), ("GET", "/metrics")}


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
            assert list(response["content"]) == [PROBLEM], (method, path, status)
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
    (RequestSignatureError("x"), 401),
    (ContentDigestError("x"), 401),
    (ClockSkewError("x"), 401),
    (RequestExpiredError("x"), 401),
    (ReplayError("x"), 401),
    (RequestAuthError(UnknownKeyError("x")), 401),
    (RequestAuthError(AuthorityError("x")), 401),
    (RequestAuthError(ExpiredError("x")), 401),
    (ForbiddenError("x"), 403),
    (NotFoundError("x"), 404),
    (GapError("x", size=1), 409),
    (ForkError("x"), 409),
    (ConflictError("x"), 409),
    (RollbackError("x"), 409),
    (BodyTooLargeError("x"), 413),
    (BatchTooLargeError("x"), 413),
    (RecordError("x"), 422),
    (SignatureError("x"), 422),
    (UnknownKeyError("x"), 422),
    (AuthorityError("x"), 422),
    (ThresholdError("x"), 422),
    (ExpiredError("x"), 422),
    (UntrustedError("x"), 422),
    (WrongOriginError("x"), 422),
    (AmbiguousKeyError("x"), 422),
    (TooManyRequestsError("x"), 429),
    (NonceCacheFullError("x", retry_after=1.0), 503),
    (StoreError("x"), 503),
    (CorruptStoreError("x"), 503),
    ("shutting-down", 503),
    ("store-unavailable", 503),
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
    descriptions = [
        response["description"]
        for _, _, op in operations(spec, "api")
        for s, response in error_responses(spec, op)
        if s == status
    ]
    assert descriptions
    assert all(f"`{code}`" in d for d in descriptions), (status, code)


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
    """/livez, /readyz and an unsigned /v1 request answer with the documented bodies."""
    schemas = spec["components"]["schemas"]
    async with TestClient(TestServer(server.app())) as client:
        for path, name in (("/livez", "Liveness"), ("/readyz", "Readiness")):
            resp = await client.get(path)
            assert resp.status == 200
            assert set(await resp.json()) == set(schemas[name]["properties"])
        resp = await client.get("/v1/partnerships/JP-MN/state")
        assert resp.status == 401
        assert resp.content_type == PROBLEM
        body = await resp.json()
        assert set(schemas["Problem"]["required"]) <= set(body)
        assert set(body) <= set(schemas["Problem"]["properties"])
