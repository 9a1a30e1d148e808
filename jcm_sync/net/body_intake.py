"""A request body's intake at the hub's server: its framing checked before it is read,
then read as sent within the size limit (ADR 0015).

Why this module exists: ``net/server.py``'s middleware and the listeners that reuse its
steps (the conformance sandbox, an agent's witness listener) take a body the same way,
after the signature's headers passed and before its ``Content-Digest`` is compared;
these two steps were split out of ``net/server.py`` to keep it under the project's size
limit (ADR 0063), unchanged.

Rules:

1. ``check_content``: any Content-Encoding is 415 ``unsupported-encoding``; a body is
   ``application/json`` (the witness routes: the C2SP text type), UTF-8, else 415
   ``unsupported-media-type``. Checked before the body is read.
2. ``read_body``: the bytes as received, 413 as soon as the Content-Length announces
   more than the limit, or once more than that has arrived.
"""

from __future__ import annotations

from aiohttp import web

from jcm_sync.errors import BodyTooLargeError, UnsupportedContentError, UnsupportedEncodingError
from jcm_sync.net.witness import TEXT_TYPE, is_text_route

__all__ = ["check_content", "read_body"]


def check_content(request: web.Request) -> None:
    """ADR 0015: a body is ``application/json`` (UTF-8) with no Content-Encoding, else 415.

    Checked before the body is read: aiohttp would decode an encoded body while it is
    read, and the digest covers the bytes as sent (RFC 9530), so none is read at all.
    """
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None:
        raise UnsupportedEncodingError(
            f"Content-Encoding {encoding[:40]!r} is refused: the hub reads bodies as sent, "
            "which the Content-Digest covers; send the body without a Content-Encoding",
            where="Content-Encoding",
        )
    if request.method in ("POST", "PUT", "PATCH") or request.body_exists:
        charset = (request.charset or "utf-8").lower()
        # the witness routes take the C2SP text bodies (ADR 0032)
        wanted = TEXT_TYPE if is_text_route(request.path) else "application/json"
        if request.content_type != wanted or charset != "utf-8":
            sent = request.headers.get("Content-Type", "none")
            raise UnsupportedContentError(
                f"a request body here is {wanted} (UTF-8), not {sent[:80]!r}",
                where="Content-Type",
            )


async def read_body(request: web.Request, limit: int) -> bytes:
    """ADR 0015: the body bytes as received, refused (413) as soon as its Content-Length
    announces more than ``limit`` bytes, or once more than that has arrived."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise BodyTooLargeError(
            f"the body announces {announced} bytes; the limit is {limit} (server.max_body_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(
                f"the body is larger than {limit} bytes (server.max_body_bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)
