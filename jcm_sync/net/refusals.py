"""One INFO event for every refused request, on either listener.

Why this module exists: an operator asked why a partner's pushes fail needs each 4xx
with its reason and who sent it, once, in the same shape whichever middleware refused
it. The hub's partner port (``net/server.py`` rule 8) and the operations listener
(``net/ops.py``) both log their refusals through ``log_refusal``.

Rules:

1. The event is ``refused`` at INFO with ``reason`` (the problem code), ``status``,
   ``partner`` (the authenticated node, else the key id the request's
   ``Signature-Input`` claims, unverified, else null), ``partnership`` (when
   authenticated), ``request_id``, ``method``, ``path``, ``remote`` and ``detail``.
2. One call per refused request, from the outermost middleware that knows the
   answer; nothing else logs a refusal, at any level.
3. Client-controlled text is cut short (path 300, detail 500, key id 128 characters).
"""

from __future__ import annotations

import logging
import re
from typing import Final

from aiohttp import web

log = logging.getLogger("jcm_sync.server")

_KEYID: Final = re.compile(r'keyid="([^"\\]{1,128})"')


def claimed_keyid(request: web.BaseRequest) -> str | None:
    """The key id a request's ``Signature-Input`` names (not verified), if any."""
    m = _KEYID.search(request.headers.get("Signature-Input", "")[:4096])
    return m.group(1) if m else None


def log_refusal(
    request: web.BaseRequest,
    status: int,
    code: str,
    partner: str | None = None,
    *,
    request_id: str | None,
    detail: str = "",
    partnership: str | None = None,
) -> None:
    """Rule 1: the one ``refused`` event of a refused request."""
    log.info(
        "refused",
        extra={
            "reason": code,
            "status": status,
            "partner": partner if partner is not None else claimed_keyid(request),
            "partnership": partnership,
            "request_id": request_id or None,
            "method": request.method,
            "path": request.path[:300],
            "remote": request.remote,
            "detail": detail[:500],
        },
    )
