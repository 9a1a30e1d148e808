"""A request body's intake (``net/body_intake.py``): its framing checked before it is
read (rule 1), then read as sent within the size limit (rule 2)."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from jcm_sync.errors import BodyTooLargeError, UnsupportedContentError, UnsupportedEncodingError
from jcm_sync.net.body_intake import check_content, read_body
from jcm_sync.net.witness import TEXT_TYPE

STATE = "/v1/partnerships/JP-MN/state"
COSIGN = "/v1/partnerships/JP-MN/logs/JP/cosignatures"  # a witness route: C2SP text


def test_any_content_encoding_is_refused_whatever_the_method() -> None:
    """Rule 1: a Content-Encoding is 415 ``unsupported-encoding``, even ``identity``."""
    for method, encoding in (("GET", "gzip"), ("POST", "identity")):
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        with pytest.raises(UnsupportedEncodingError, match=repr(encoding)):
            check_content(make_mocked_request(method, STATE, headers=headers))


@pytest.mark.parametrize(
    ("path", "content_type", "refused"),
    [
        (STATE, "application/json", False),
        (STATE, "application/json; charset=UTF-8", False),
        (STATE, "application/json; charset=latin-1", True),
        (STATE, TEXT_TYPE, True),
        (STATE, None, True),
        (COSIGN, TEXT_TYPE, False),
        (COSIGN, "application/json", True),
    ],
)
def test_a_body_is_json_or_a_witness_routes_text_in_utf_8(
    path: str, content_type: str | None, refused: bool
) -> None:
    """Rule 1: a POST's body is ``application/json`` (the witness routes: the C2SP text
    type) in UTF-8, else 415 ``unsupported-media-type`` naming what was sent."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = make_mocked_request("POST", path, headers=headers)
    if not refused:
        check_content(request)
        return
    with pytest.raises(UnsupportedContentError, match=repr(content_type or "none")):
        check_content(request)


def test_a_bodiless_get_needs_no_content_type() -> None:
    check_content(make_mocked_request("GET", STATE))


def body_request(
    chunks: list[bytes], headers: dict[str, str]
) -> tuple[web.Request, streams.StreamReader]:
    """A POST whose body arrives as ``chunks``, and the stream it is read from."""
    protocol = mock.Mock(_reading_paused=False)
    reader = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    headers = {"Content-Type": "application/json", **headers}
    return make_mocked_request("POST", STATE, headers=headers, payload=reader), reader


async def test_the_body_is_read_as_sent_up_to_the_limit() -> None:
    """Rule 2: the bytes as received, at the limit exactly."""
    chunks = [b'{"a":', b" 1}", b"\x00\xff"]
    body = b"".join(chunks)
    request, _ = body_request(chunks, {"Content-Length": str(len(body))})
    assert await read_body(request, len(body)) == body


async def test_a_body_announced_too_large_is_refused_unread() -> None:
    """Rule 2: a Content-Length over the limit is 413 before a byte is read."""
    request, reader = body_request([b"x" * 11], {"Content-Length": "11"})
    with pytest.raises(BodyTooLargeError, match="announces 11 bytes; the limit is 10"):
        await read_body(request, 10)
    assert await reader.read() == b"x" * 11  # all of it still unread


async def test_a_body_larger_than_announced_is_refused_once_past_the_limit() -> None:
    """Rule 2: without a Content-Length (or one that understates it), 413 once more
    than the limit has arrived."""
    request, _ = body_request([b"x" * 6, b"y" * 6], {})
    with pytest.raises(BodyTooLargeError, match="larger than 10 bytes"):
        await read_body(request, 10)
