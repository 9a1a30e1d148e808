"""The agent's side of the hub's HTTP API: signed requests, typed answers.

Every request is signed (``SigningMiddleware``, RFC 9421); every answer is decoded
into the ``wire`` Structs or, for a refusal, turned into a ``PeerRefusedError``
carrying the problem's code, so the agent can tell a gap (resume from ``size``)
from a fork from an outage, and the ``Retry-After`` the hub asked for (429, 503).

Rules: an answer is read whole, up to ``max_response`` bytes (``hub.max_response_bytes``),
however many reads that takes; a larger one, one cut short (connection closed
mid-body) and a connection failure are each a ``TransportError`` that says which,
never a decode error of a partial body.
"""

from __future__ import annotations

import email.utils
import math
import ssl
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import msgspec
from aiohttp.payload import TOO_LARGE_BYTES_BODY

from jcm_sync import __version__
from jcm_sync.core.envelope import AnyPrivateKey
from jcm_sync.core.wire import (
    CheckpointView,
    ConsistencyProofView,
    EntriesPage,
    PartnershipState,
    Problem,
    PushRequest,
    PushResponse,
    encoder,
)
from jcm_sync.core.witness_wire import TLOG_SIZE_CONTENT_TYPE as TLOG_SIZE
from jcm_sync.core.witness_wire import WitnessRefusedError, parse_size_conflict
from jcm_sync.errors import BadDataError, ConfigError, PeerRefusedError, TransportError
from jcm_sync.net.signing import RequestSigner, SigningMiddleware
from jcm_sync.services.witness import CosignedView

if TYPE_CHECKING:
    from jcm_sync.services.hub_port import HubPort

T = TypeVar("T")

USER_AGENT = f"jcm-sync/{__version__}"
"""What this client names itself in every request (the hub's access logs show it)."""

MAX_RESPONSE = 64 * 1024 * 1024
"""Default limit on one answer's body (bytes). A page of 1,000 entries is a few MB."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3): delay-seconds
    or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value[:9]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return float(max(0, math.ceil(seconds)))


class Body(aiohttp.BytesPayload):
    """A request body held in memory. aiohttp warns (ResourceWarning) about bytes over
    1 MiB because one write of them might hold the loop; a push body is at most
    ``schedule.batch_bytes`` (4 MiB), already built, and signed as a whole, so it is
    sent as one payload on purpose. The warning filter is set only for a body aiohttp
    would warn about: setting it costs more than the payload (ADR 0056 amendment)."""

    def __init__(self, value: bytes) -> None:
        if len(value) <= TOO_LARGE_BYTES_BODY:  # aiohttp warns only above this
            super().__init__(value, content_type="application/json")
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            super().__init__(value, content_type="application/json")


def ca_context(ca_file: str) -> ssl.SSLContext:
    """A TLS client context that trusts the CA certificates in the PEM file ``ca_file``
    (``[hub] ca_file``: a hub behind a proxy whose certificate a private CA issued)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read CA certificates from {ca_file}: {exc}",
                          where="[hub] ca_file") from None  # fmt: skip


class HubClient:
    """One node's signed connection to the hub: the agent's ``HubPort`` over HTTP.

    ``ca_file`` names PEM CA certificates to check an ``https`` hub's certificate against
    instead of the system's trust store.
    """

    def __init__(
        self,
        base_url: str,
        transport_key: AnyPrivateKey,
        *,
        timeout: float = 30.0,
        max_response: int = MAX_RESPONSE,
        ca_file: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_response = max_response
        self._ssl: ssl.SSLContext | None = None if ca_file is None else ca_context(ca_file)
        self._signer = RequestSigner(transport_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        #: bytes sent and received, and requests made (for the anti-entropy benchmark)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = None if self._ssl is None else aiohttp.TCPConnector(ssl=self._ssl)
            # the agent names itself, and asks for no content coding: neither side
            # compresses (a signed body's digest covers the bytes sent), so aiohttp's
            # default Accept and Accept-Encoding would only cost bytes on every request
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                middlewares=(SigningMiddleware(self._signer),),
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: bytes = b"",
        params: dict[str, Any] | None = None,
    ) -> T:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"} if body else {}
        self.requests += 1
        self.bytes_sent += len(body)
        try:
            async with self._sess().request(
                method, url, data=Body(body) if body else None, params=params, headers=headers,
                allow_redirects=False,
            ) as resp:  # fmt: skip
                data = await self._read_whole(resp, url)
                if resp.status >= 400:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raise self._refusal(resp.status, resp.reason or "", data, retry_after)
        except aiohttp.ClientPayloadError as exc:
            raise TransportError(f"the answer from {url} was cut short: {exc}") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"hub unreachable at {self.base_url}: {exc}") from None
        except TimeoutError:
            raise TransportError(f"hub at {self.base_url} did not answer in time") from None
        try:
            return msgspec.json.decode(data, type=answer)
        except msgspec.MsgspecError as exc:
            raise TransportError(f"malformed answer from {url}: {exc}") from None

    async def _read_whole(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        """The whole body, however many reads it takes, up to ``max_response`` bytes.

        ``StreamReader.read(n)`` returns what has arrived so far, not ``n`` bytes: one
        read of a large answer takes a prefix of it (the size cliff of issue 8)."""
        limit = self.max_response
        if resp.content_length is not None and resp.content_length > limit:
            raise TransportError(
                f"answer from {url} announces {resp.content_length} bytes; "
                f"the limit is {limit} (hub.max_response_bytes)"
            )
        if resp.content_length is not None:  # announced and within the limit: one read
            data = await resp.read()
            self.bytes_received += len(data)
            return data
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(256 * 1024):
            size += len(chunk)
            self.bytes_received += len(chunk)
            if size > limit:
                raise TransportError(
                    f"answer from {url} is larger than {limit} bytes (hub.max_response_bytes)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _refusal(
        status: int, reason: str, data: bytes, retry_after: float | None = None
    ) -> PeerRefusedError:
        try:
            problem = msgspec.json.decode(data, type=Problem)
        except msgspec.MsgspecError:
            problem = Problem(type="about:blank", title=reason, status=status,
                              detail=data[:200].decode("utf-8", "replace"))  # fmt: skip
        return PeerRefusedError(problem, retry_after)

    @staticmethod
    def _logs(pid: str, node: str) -> str:
        return f"/v1/partnerships/{pid}/logs/{node}"

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        """Both logs' heads; ``have`` tells the hub how much of Japan's log we hold."""
        params = None if have is None else {"have": str(have)}
        return await self._call("GET", f"/v1/partnerships/{pid}/state", PartnershipState,
                                params=params)  # fmt: skip

    async def push(self, pid: str, node: str, req: PushRequest) -> PushResponse:
        body = encoder.encode(req)
        return await self._call("POST", self._logs(pid, node) + "/entries", PushResponse, body=body)

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        params = {"start": str(start), "limit": str(limit)}
        return await self._call("GET", self._logs(pid, node) + "/entries", EntriesPage,
                                params=params)  # fmt: skip

    async def checkpoint(self, pid: str, node: str) -> CheckpointView:
        return await self._call("GET", self._logs(pid, node) + "/checkpoint", CheckpointView)

    async def consistency(self, pid: str, node: str, old: int, new: int) -> ConsistencyProofView:
        return await self._call(
            "GET",
            self._logs(pid, node) + "/proofs/consistency",
            ConsistencyProofView,
            params={"old": str(old), "new": str(new)},
        )

    # --- witnessing (ADR 0032): text bodies, the spec's answers ---------------------------

    async def _text(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        """POST a ``text/plain`` body; (status, content type, body) of a 200 or a 409 of
        ``text/x.tlog.size``; any other refusal is a ``PeerRefusedError``."""
        url = self.base_url + path
        self.requests += 1
        self.bytes_sent += len(body)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        try:
            async with self._sess().post(url, data=body, headers=headers,
                                         allow_redirects=False) as resp:  # fmt: skip
                data = await self._read_whole(resp, url)
                kind = resp.content_type
                if resp.status >= 400 and not (resp.status == 409 and kind == TLOG_SIZE):
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raise self._refusal(resp.status, resp.reason or "", data, retry_after)
                return resp.status, kind, data
        except aiohttp.ClientError as exc:
            raise TransportError(f"hub unreachable at {self.base_url}: {exc}") from None
        except TimeoutError:
            raise TransportError(f"hub at {self.base_url} did not answer in time") from None

    async def add_checkpoint(self, pid: str, body: bytes) -> bytes:
        """tlog-witness add-checkpoint: the signature lines, or ``WitnessRefusedError``
        with the witness's size for a 409 size mismatch."""
        status, _, data = await self._text(f"/v1/partnerships/{pid}/witness/add-checkpoint", body)
        if status == 409:
            try:
                size = parse_size_conflict(data)
            except BadDataError as exc:
                raise TransportError(f"malformed text/x.tlog.size answer: {exc}") from None
            raise WitnessRefusedError(409, "witness-size-mismatch", f"the witness holds {size}",
                                       witness_size=size)  # fmt: skip
        return data

    async def deliver_cosignatures(self, pid: str, node: str, note: bytes) -> CosignedView:
        """Our cosigned copy of a checkpoint of ``node``'s log, for the hub to keep."""
        _, _, data = await self._text(self._logs(pid, node) + "/cosignatures", note)
        try:
            return msgspec.json.decode(data, type=CosignedView)
        except msgspec.MsgspecError as exc:
            raise TransportError(f"malformed answer to a cosignature delivery: {exc}") from None


if TYPE_CHECKING:  # mypy proves here that the agent can be handed a HubClient
    _IMPLEMENTS_PORT: type[HubPort] = HubClient
