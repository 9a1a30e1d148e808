"""What a request signature's headers say, read once: its algorithm, its coverage, its digest.

Why this module exists: ``http-message-signatures`` parses the same structured fields
several times per request when asked for everything at once (``Signature-Input`` to pick
the algorithm, each covered component id again to check required coverage, and again to
find the digest components for the body). At batches of 50 records that was a
measurable share of the hub's per-request CPU (ADR 0039, amendment). ``net/auth.py``
still lets the library parse and verify the signature; these helpers answer the three
questions from what the library already returned, with the library's own semantics.

Rules:

1. The algorithm is the registered class the signature's ``alg`` names, Ed25519 for a
   missing or unknown one (the library then refuses with its own reason). A
   ``Signature-Input`` that names no other registered algorithm is Ed25519 without
   being parsed.
2. Coverage: the library keys covered components by each item's canonical
   serialization, so a required id without parameters is covered exactly when its
   serialization is a key; one with parameters is compared as the library compares
   (value and parameter set, order ignored).
3. The body digest: when the covered ids are the plain rule-1 set, the one digest
   component is ``"content-digest"`` and only its value is checked; otherwise every
   covered id is parsed, as the library does, to find each digest component.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final

import http_sf
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPSignatureAlgorithm,
    InvalidSignature,
)
from http_message_signatures._components import _component_identity, _parse_component_ids
from http_sf.compat import Item

from jcm_sync.net.httpsig_pq import HTTPSIG_ALGORITHMS

_ED25519: Final = HTTPSIG_ALGORITHMS["ed25519"]
_OTHER_ALGORITHMS: Final = tuple(f'"{alg}"' for alg in HTTPSIG_ALGORITHMS if alg != "ed25519")
_DIGEST: Final = '"content-digest"'
_PLAIN_COMPONENTS: Final = frozenset({'"@method"', '"@target-uri"', _DIGEST, '"@signature-params"'})


def signed_algorithm(headers: Mapping[str, str]) -> type[HTTPSignatureAlgorithm]:
    """Rule 1: the algorithm class of the request's (first) signature."""
    value = next((v for k, v in headers.items() if k.lower() == "signature-input"), "")
    if not any(alg in value for alg in _OTHER_ALGORITHMS):
        return _ED25519
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):  # the library names the fault
        return _ED25519
    member = next(iter(parsed.values()), None) if isinstance(parsed, dict) else None
    params = member[1] if isinstance(member, tuple) and len(member) == 2 else None
    alg = params.get("alg") if isinstance(params, dict) else None
    return HTTPSIG_ALGORITHMS.get(alg, _ED25519) if isinstance(alg, str) else _ED25519


@functools.lru_cache(maxsize=64)
def required_components(require: tuple[str, ...]) -> tuple[Item, ...]:
    """The required component ids, parsed once per tuple as the library parses them.

    Raises ``HTTPMessageSignaturesException`` for a malformed or repeated id.
    """
    nodes = _parse_component_ids(require)
    if len({_component_identity(node) for node in nodes}) != len(nodes):
        raise HTTPMessageSignaturesException("Duplicate required component identifier")
    return tuple(nodes)


def check_coverage(required: Sequence[Item], covered: Mapping[str, str]) -> None:
    """Rule 2: raise ``InvalidSignature`` unless ``covered`` has every required id."""
    identities: set[Any] | None = None
    for node in required:
        if not node.params and str(node) in covered:
            continue
        if identities is None:
            identities = {_component_identity(n) for n in _parse_component_ids(tuple(covered))}
        if _component_identity(node) not in identities:
            raise InvalidSignature(f"Required component {node} was not covered by the signature")


def verify_digest(covered: Mapping[str, str], body: bytes) -> bool:
    """Rule 3: check ``body`` against every covered digest; whether one was covered.

    Raises the library's ``HTTPMessageSignaturesException`` on a mismatch or a
    malformed digest.
    """
    if _DIGEST in covered and covered.keys() <= _PLAIN_COMPONENTS:
        ContentDigest.verify(covered[_DIGEST], body)
        return True
    return bool(ContentDigest.verify_components(covered, body))
