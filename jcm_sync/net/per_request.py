"""What the hub's server does for every request besides checking it, made cheaply: the
request's id and its latency metric's child.

Why this module exists: both are fixed costs of every request, paid by each push of 50
in a fan-in as by each push of 500 alone (ADR 0063): an id was a system call for 8
random bytes (``secrets.token_hex``), and the latency histogram's child was looked up by
``labels()`` (formatting and hashing its label values under the metric's lock) on every
answer.

Rules:

1. ``RequestIds()`` gives ids as ``secrets.token_hex(8)`` does, 16 lower-case hex
   digits of 8 bytes from the operating system's CSPRNG (``os.urandom``), drawn
   ``POOL_BYTES`` at a time; each byte is used once. Ids are for correlation (server
   rule 7), never secrets; an instance is used by one event loop.
2. ``LatencyChildren(histogram)`` observes a request's seconds into the child
   ``labels(route, method, str(status))`` gives, which it keeps for the first
   ``KEPT_CHILDREN`` label values seen (routes, methods and statuses are few; a client
   sending odd methods gets the child looked up per request, as before). The
   histogram is read from the node each time, so a replaced ``Metrics`` is heard.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from prometheus_client import Histogram

__all__ = ["KEPT_CHILDREN", "POOL_BYTES", "LatencyChildren", "RequestIds"]

POOL_BYTES: Final = 4096
"""Random bytes drawn at once for request ids (512 ids)."""
KEPT_CHILDREN: Final = 256
"""Label values of the latency histogram whose child is kept."""
_ID_BYTES: Final = 8


class RequestIds:
    """Rule 1."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at + _ID_BYTES > len(self._pool):
            self._pool, at = os.urandom(POOL_BYTES), 0
        self._at = at + _ID_BYTES
        return self._pool[at : at + _ID_BYTES].hex()


class LatencyChildren:
    """Rule 2 for the histogram ``histogram()`` gives."""

    def __init__(self, histogram: Callable[[], Histogram]) -> None:
        self._histogram = histogram
        self._kept: dict[tuple[str, str, int], tuple[Histogram, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        parent = self._histogram()
        kept = self._kept.get((route, method, status))
        if kept is None or kept[0] is not parent:
            kept = (parent, parent.labels(route, method, str(status)))
            if len(self._kept) < KEPT_CHILDREN or (route, method, status) in self._kept:
                self._kept[(route, method, status)] = kept
        kept[1].observe(seconds)
