"""The JSON bodies of the hub's HTTP API, shared by the server and the client.

Envelopes and checkpoint notes travel as base64 of their exact bytes, so nothing in
transit re-encodes a signed record (DESIGN §3). Bodies are decoded with these
Structs and nothing else; unknown fields are tolerated (a newer peer may add some).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from jcm_sync.core.envelope import AnyPublicKey
from jcm_sync.errors import (
    BadDataError,
    BadParameterError,
    BodyTooLargeError,
    ConflictError,
    ForbiddenError,
    ForkError,
    GapError,
    JcmSyncError,
    NonceCacheFullError,
    NotFoundError,
    PastLogSizeError,
    RecordError,
    RequestSignatureError,
    StoreError,
    TooManyRequestsError,
    UnsupportedContentError,
    UntrustedError,
)


@dataclass(frozen=True)
class Caller:
    """The node a verified request comes from, and the key it signed with.

    A plain value: ``net/auth.py`` finds it from a request's signature, and the hub
    (``services/hub.py``) authorizes each call by it, over HTTP or in process."""

    partnership: str
    node: str
    keyid: str
    public_key: AnyPublicKey = field(repr=False, compare=False)


Index = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Hash = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class PushRequest(msgspec.Struct, frozen=True):
    """Entries of the sender's own log from ``start``, in order.

    ``checkpoint`` is the sender's signed checkpoint of size ``start + len(entries)``
    (required on the last batch of a push, optional before); ``source_size`` is the
    sender's whole log size, so the hub can report its lag.
    """

    start: Index
    entries: list[bytes]
    checkpoint: bytes | None = None
    source_size: Index | None = None


class CheckpointView(msgspec.Struct, frozen=True, omit_defaults=True):
    origin: str
    size: Index
    root: Hash
    note: bytes | None = None


class PushResponse(msgspec.Struct, frozen=True):
    size: Index
    appended: Index
    checkpoint: CheckpointView


class EntriesPage(msgspec.Struct, frozen=True):
    start: Index
    entries: list[bytes]
    size: Index


class LogState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One log as the hub holds it: its head and its latest signed checkpoint."""

    node: str
    origin: str
    size: Index
    root: Hash
    checkpoint: bytes | None = None


class PartnershipState(msgspec.Struct, frozen=True):
    """Everything anti-entropy needs in one response: both logs' heads."""

    partnership: str
    logs: list[LogState]


class ConsistencyProofView(msgspec.Struct, frozen=True):
    old_size: Index
    new_size: Index
    proof: list[Hash]


class InclusionProofView(msgspec.Struct, frozen=True):
    index: Index
    size: Index
    leaf_hash: Hash
    proof: list[Hash]


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details. ``request_id`` is the hub's id of the request (also its
    ``X-Request-Id`` header), under which the hub's log holds what the detail leaves out
    (ADR 0019)."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    where: str = ""
    code: str = ""
    size: int | None = None
    request_id: str = ""


PROTOCOL_VERSION = "1"
"""The version of this HTTP API: its paths start ``/v{PROTOCOL_VERSION}/``."""
API_PREFIX = f"/v{PROTOCOL_VERSION}/"

PROBLEM_TYPE_PREFIX = "urn:jcm-sync:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

encoder = msgspec.json.Encoder()


def query_int(raw: str | None, name: str, default: int | None, maximum: int) -> int | None:
    """A query parameter's integer: ASCII digits up to ``maximum`` (the stores' largest
    index), or ``default`` when absent. ``str.isdigit()`` alone also accepts "²", which
    ``int()`` refuses (a 500 found by tests/faults/test_fuzz.py)."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > maximum:
        raise BadParameterError(
            f"query parameter {name} must be ASCII digits, at most {maximum}", where=name
        )
    return int(raw)


def status_of(exc: JcmSyncError) -> int:
    """The HTTP status of an error, by cause."""
    if isinstance(exc, NonceCacheFullError):
        return 503
    if isinstance(exc, TooManyRequestsError):
        return 429
    if isinstance(exc, BodyTooLargeError) or exc.code == "batch-too-large":
        return 413
    if isinstance(exc, UnsupportedContentError):
        return 415
    if isinstance(exc, RequestSignatureError):
        return 401
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, ForkError | ConflictError):
        return 409
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, RecordError | UntrustedError):
        return 422
    if isinstance(exc, BadDataError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    return 500


def problem_for(exc: JcmSyncError) -> Problem:
    """The problem details of a refusal as the hub's code raised it, before the server's
    redaction of 5xx details: what an in-process hub answers (``services/in_process_hub``)."""
    size = exc.size if isinstance(exc, GapError | PastLogSizeError) else None
    return Problem(
        type=PROBLEM_TYPE_PREFIX + exc.code,
        title=type(exc).__name__.removesuffix("Error") or "Error",
        status=status_of(exc),
        detail=exc.message,
        where=exc.where or "",
        code=exc.code,
        size=size,
    )
