"""The request signature of this project's own agents, checked without re-parsing it.

Why this module exists: ``http-message-signatures`` parses ``Signature-Input`` and
``Signature`` as RFC 8941 dictionaries character by character (twice per request) and
serialises every parameter again to build the signature base; under the fan-in (31
partners, pushes of 50 records) that was most of the hub's 0.9 ms of CPU per request
check, serial on the event loop (ADR 0043). Every agent signs with ``net/signing.py``,
so nearly every request carries the same canonical form, which needs no general parser.

Rules:

1. ``fast_verify`` answers only for one exact form: one field line each of
   ``Signature-Input``, ``Signature`` and ``Content-Digest``; a ``Signature-Input`` of one
   member ``label=("@method" "@target-uri" "content-digest")`` with the parameters
   ``created``, ``keyid``, ``alg="ed25519"``, ``expires`` and ``nonce`` in the order
   ``net/signing.py`` writes them, integers without leading zeros and strings of a few
   safe characters; a ``Signature`` of the same label and one canonical base64 byte
   sequence. In that form the text after ``label=`` is its own RFC 8941 serialisation,
   which is exactly what the library writes as ``@signature-params``.
2. Component values are what the library's component resolver gives, checked as the
   library checks them; the key is resolved by ``net/auth.py``'s resolver and the
   signature verified by the one Ed25519 rule (``core/ed25519.py``, ADR 0038), as the
   library's ``ed25519`` class of ``net/httpsig_pq.py`` does. For a plain target
   (``PLAIN_URL``: ``http`` or ``https``, a lower-case host name or a bracketed IPv6
   address, a port, a path and query of unreserved characters and sub-delimiters, no
   percent-escape, user or fragment) and an upper-case method, the values are read
   directly: ``@method`` is the method, ``@target-uri`` the URL (with ``/`` for an
   absent path, as the library writes it), ``content-digest`` the one field line
   trimmed of spaces and tabs; any other target goes through the library's resolver,
   which builds a case-insensitive copy of every header (ADR 0056: a third of the
   check's Python on the hub's loop).
3. It returns None whenever anything is unusual (another form, an unknown or refused
   key, a signature that does not verify): the caller then runs the library, which
   accepts or refuses with its own reason. So this accepts only what the library
   accepts, with the same result (``tests/net/test_httpsig_fast.py`` compares both on
   valid and altered requests), and never refuses anything itself.
4. ``sha256_digest`` reads a ``Content-Digest`` of exactly one member ``sha-256`` with a
   canonical base64 byte sequence of 32 bytes, the form ``net/signing.py`` writes, without
   the RFC 8941 parser; anything else is None and goes to the library (ADR 0050). For
   that form the library's check is the comparison of the body's SHA-256 with it.
5. ``signed_form`` writes that exact form for the signer (``net/signing.py``): the
   ``Content-Digest`` value, the ``Signature-Input`` member's value and the signature
   base, byte for byte what the library's ``prepare`` writes for an Ed25519 key, a
   plain target (rule 2) and parameters rule 1 accepts; for anything else it is None
   and the library signs (ADR 0056: the library's RFC 8941 serialisation was most of
   an agent's CPU per push outside its own store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from http_message_signatures.resolvers import HTTPSignatureComponentResolver
from http_sf.compat import Item

from jcm_sync.core.ed25519 import verify as ed25519_verify

__all__ = [
    "PLAIN_COVERED",
    "PLAIN_URL",
    "SIGNATURE_INPUT",
    "body_matches",
    "fast_verify",
    "plain_values",
    "sha256_digest",
    "signed_form",
]

SIGNATURE_INPUT: Final = re.compile(
    r'(?P<label>[a-z][a-z0-9_.-]{0,31})=(?P<params>\("@method" "@target-uri" "content-digest"\)'
    r";created=(?P<created>0|[1-9][0-9]{0,14})"
    r';keyid="(?P<keyid>[A-Za-z0-9_.:+/=-]{1,256})"'
    r';alg="ed25519"'
    r";expires=(?P<expires>0|[1-9][0-9]{0,14})"
    r';nonce="(?P<nonce>[A-Za-z0-9_-]{1,256})")'
)
"""Rule 1's ``Signature-Input`` (matched in full)."""
_SIGNATURE: Final = re.compile(r"(?P<label>[a-z][a-z0-9_.-]{0,31})=:(?P<sig>[A-Za-z0-9+/]+={0,2}):")
_NAMES: Final = ("signature-input", "signature", "content-digest")
_COMPONENTS: Final = (Item("@method"), Item("@target-uri"), Item("content-digest"))
_KEYS: Final = ('"@method"', '"@target-uri"', '"content-digest"')
PLAIN_COVERED: Final = frozenset({*_KEYS, '"@signature-params"'})
"""Covered components whose one digest is the ``content-digest`` field itself."""
_DIGEST_VALUE: Final = re.compile(r"sha-256=:(?P<digest>[A-Za-z0-9+/]{43}=):")
_PCHARS: Final = r"A-Za-z0-9._~!$&'()*+,;=:@/-"
PLAIN_URL: Final = re.compile(
    r"(?P<origin>https?://(?:[a-z0-9][a-z0-9.-]*|\[(?P<ipv6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?)"
    rf"(?P<path>/[{_PCHARS}]*)?(?P<query>\?[?{_PCHARS}]*)?"
)
"""Rule 2's plain target: the library's ``@target-uri`` of it is the URL itself."""


def sha256_digest(value: str) -> bytes | None:
    """Rule 4: the digest of a ``Content-Digest`` value of the one canonical form, or None."""
    m = _DIGEST_VALUE.fullmatch(value)
    if m is None:
        return None
    digest = base64.b64decode(m["digest"])  # 43 base64 characters and "=": always decodes
    return digest if base64.b64encode(digest).decode("ascii") == m["digest"] else None


def body_matches(covered: Mapping[str, str], body: bytes) -> bool | None:
    """Rule 4: whether ``body`` matches the covered ``Content-Digest`` when the covered
    components are ``PLAIN_COVERED`` and the digest is of the canonical form; else None
    (the library decides)."""
    if covered.keys() != PLAIN_COVERED:
        return None
    digest = sha256_digest(covered['"content-digest"'])
    if digest is None:
        return None
    return hmac.compare_digest(digest, hashlib.sha256(body).digest())


def _one_line_each(headers: Mapping[str, str]) -> list[str] | None:
    """The one field line of each of ``_NAMES``, or None."""
    found: list[str | None] = [None, None, None]
    for name, value in headers.items():
        lower = name.lower()
        if lower in _NAMES:
            i = _NAMES.index(lower)
            if found[i] is not None:
                return None
            found[i] = value
    return None if None in found else [v for v in found if v is not None]


def plain_values(method: str, url: str, digest_line: str) -> list[str] | None:
    """Rule 2: the covered values of a plain target and upper-case method as the library
    resolves them (``digest_line`` the one ``Content-Digest`` field line), or None."""
    m = PLAIN_URL.fullmatch(url)
    if m is None or method != method.upper() or "\r" in digest_line or "\n" in digest_line:
        return None
    if m["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(m["ipv6"])
        except ValueError:
            return None
    target = url if m["path"] else f"{m['origin']}/{m['query'] or ''}"
    return [method, target, digest_line.strip(" \t")]


def _checked_values(
    method: str, url: str, headers: Mapping[str, str], digest_line: str
) -> list[str] | None:
    """Rule 2: the covered values as the library resolves and checks them, or None."""
    values = plain_values(method, url, digest_line)
    if values is None:
        try:
            resolver = HTTPSignatureComponentResolver(_Message(method, url, headers))  # type: ignore[no-untyped-call]
            values = [resolver.resolve(c) for c in _COMPONENTS]
        except Exception:  # the library will say why
            return None
    for n, value in enumerate(values):
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            return None
        if n < 2 and value and (not value.isprintable() or value != value.strip(" ")):
            return None
        if n == 2 and value and not value.replace("\t", " ").isprintable():
            return None
    return values


class _Message:
    """The request view the library's resolver reads (as ``net/auth.HttpMessage``)."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def fast_verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    resolve_key: Callable[[str], Any],
) -> tuple[str, dict[str, int | str], dict[str, str]] | None:
    """Rules 1-3: ``(label, parameters, covered)`` as the library would return them for a
    verified signature, or None to let the library decide.

    ``resolve_key(keyid)`` returns the Ed25519 public key object the library's
    algorithm class would take, or None (``net/auth.py``'s resolver, which also refuses a
    key of another algorithm).
    """
    lines = _one_line_each(headers)
    if lines is None:
        return None
    sig_input, signature = (v.strip(" \t") for v in lines[:2])
    m = SIGNATURE_INPUT.fullmatch(sig_input)
    s = _SIGNATURE.fullmatch(signature)
    if m is None or s is None or m["label"] != s["label"]:
        return None
    try:
        sig = base64.b64decode(s["sig"], validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(sig).decode("ascii") != s["sig"]:
        return None
    values = _checked_values(method, url, headers, lines[2])
    if values is None:
        return None
    params_text = m["params"]
    base = "".join(f"{k}: {v}\n" for k, v in zip(_KEYS, values, strict=True))
    base += f'"@signature-params": {params_text}'
    key = resolve_key(m["keyid"])  # None for a refused key: the library says why
    if key is None or not ed25519_verify(key.public_bytes_raw(), sig, base.encode()):
        return None
    parameters: dict[str, int | str] = {
        "created": int(m["created"]),
        "keyid": m["keyid"],
        "alg": "ed25519",
        "expires": int(m["expires"]),
        "nonce": m["nonce"],
    }
    covered = dict(zip(_KEYS, values, strict=True))
    covered['"@signature-params"'] = params_text
    return m["label"], parameters, covered


def signed_form(
    method: str,
    url: str,
    body: bytes,
    *,
    label: str,
    keyid: str,
    created: int,
    expires: int,
    nonce: str,
) -> tuple[str, str, bytes] | None:
    """Rule 5: ``(Content-Digest value, Signature-Input member value, signature base)``
    of an Ed25519 signature in rule 1's form, or None to let the library sign."""
    params = (
        f'("@method" "@target-uri" "content-digest");created={created};keyid="{keyid}"'
        f';alg="ed25519";expires={expires};nonce="{nonce}"'
    )
    if SIGNATURE_INPUT.fullmatch(f"{label}={params}") is None:  # rule 1's parameters only
        return None
    digest = f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"
    values = plain_values(method, url, digest)
    if values is None:
        return None
    base = "".join(f"{k}: {v}\n" for k, v in zip(_KEYS, values, strict=True))
    return digest, params, f'{base}"@signature-params": {params}'.encode()
