"""AWS Signature Version 4 for S3-compatible object stores: the header-signing subset.

Why this module exists: publishing tiles into a bucket (ADR 0041) needs PUT and GET
requests signed the way every S3-compatible store (AWS S3, MinIO, Ceph RGW, R2, GCS's
interoperability mode) checks them. A full SDK would be a large dependency for two
requests; this is the algorithm itself, pinned by AWS's published GET Object example
(tests/net/test_sigv4.py), and used both by the client and by the test bucket that
checks what the client sends.

Rules:

1. The canonical request is ``METHOD``, the URI path with each segment percent-encoded
   (RFC 3986 unreserved characters kept, ``/`` kept), the sorted query string (empty
   here), the lower-cased signed headers with trimmed values each followed by a newline,
   the signed header names joined by ``;``, and the hex SHA-256 of the payload (sent as
   ``x-amz-content-sha256``).
2. The string to sign is ``AWS4-HMAC-SHA256``, the ``x-amz-date`` time
   (``YYYYMMDDTHHMMSSZ``), the scope ``date/region/s3/aws4_request`` and the hex SHA-256
   of the canonical request, one per line; the key is HMAC-SHA256 chained over
   ``"AWS4" + secret``, the date, the region, ``s3`` and ``aws4_request``.
3. Pure: time, keys and bytes in, headers out.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair (``ACCESS_KEY_ID:SECRET`` in a credentials file)."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key={self.access_key!r})"


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, path: str, headers: Mapping[str, str], content_sha256: str
) -> tuple[str, str]:
    """Rule 1: the canonical request and the signed-headers list."""
    names = sorted(h.lower() for h in headers)
    values = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    canon_headers = "".join(f"{n}:{values[n]}\n" for n in names)
    signed = ";".join(names)
    uri = quote(path, safe="/-_.~")
    return f"{method}\n{uri}\n\n{canon_headers}\n{signed}\n{content_sha256}", signed


def signature(creds: Credentials, region: str, amz_date: str, canonical: str) -> tuple[str, str]:
    """Rule 2: the hex signature of a canonical request, and its credential scope."""
    day = amz_date[:8]
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    key = ("AWS4" + creds.secret_key).encode()
    for part in (day, region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), scope


def sign_headers(
    method: str,
    host: str,
    path: str,
    body: bytes,
    creds: Credentials,
    region: str,
    now: datetime,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of a signed request: ``extra`` plus ``host``, ``x-amz-date``,
    ``x-amz-content-sha256`` and ``Authorization`` (all of them signed)."""
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    sha = payload_hash(body)
    headers = {**(extra or {}), "host": host, "x-amz-date": amz_date,
               "x-amz-content-sha256": sha}  # fmt: skip
    canonical, signed = canonical_request(method, path, headers, sha)
    sig, scope = signature(creds, region, amz_date, canonical)
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key}/{scope},SignedHeaders={signed},Signature={sig}"
    )
    return headers
