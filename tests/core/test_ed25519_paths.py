"""Every Ed25519 verifier of the project applies the one rule (ADR 0038), end to end.

Why this file exists: ``test_ed25519.py`` pins the rule's verdict on fixed vectors at each
class that verifies. Here the edge cases are signed over each path's own message (a DSSE
envelope, a signed note, a witness cosignature, an RFC 9421 request, a record as each
worker of the hub's pool checks it), on both libraries; with libsodium, a profile hook
also proves that no path calls OpenSSL's Ed25519 verification. The hub's ``VerifyPool``
itself, its spawned workers importing the rule afresh, gets a batch per signer. An
architecture check fails if code outside ``core/ed25519.py`` calls a ``verify`` that could
be ``cryptography``'s Ed25519 one.
"""

from __future__ import annotations

import ast
import base64
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

import jcm_sync
from jcm_sync.core import ed25519
from jcm_sync.core.cosignature import CosignatureVerifier, cosignature_message, verify_cosignatures
from jcm_sync.core.envelope import PrivateKey, PublicKey, sign_payload, verify_envelope
from jcm_sync.core.note import NoteSignature, Verifier, open_note
from jcm_sync.core.records import encode_record, payload_type
from jcm_sync.core.trust import TrustRoot, key_entry
from jcm_sync.errors import SignatureError, SignatureMismatchError
from jcm_sync.net.auth import HttpMessage, verify_signature
from jcm_sync.services.log_service import record_verifier
from jcm_sync.services.verify_pool import MIN_POOLED_BATCH, VerifyPool
from tests import builders
from tests.core import ed25519_reference as ref

# --- signers of the edge cases ---------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A raw public key and a way to sign any message under it; ``accept``: the rule's
    verdict on what it signs."""

    name: str
    public_key: bytes
    sign: Callable[[bytes], bytes]
    accept: bool


_KEY = Ed25519PrivateKey.from_private_bytes(b"\x2a" * 32)
_IDENTITY = (1).to_bytes(32, "little")
_TORSION = ref.torsion()[3]


def _plus_l(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "little") + ed25519.GROUP_ORDER
    return signature[:32] + s.to_bytes(32, "little")


SIGNERS = [
    Signer("honest", _KEY.public_key().public_bytes_raw(), _KEY.sign, True),
    Signer("S + L", _KEY.public_key().public_bytes_raw(), lambda m: _plus_l(_KEY.sign(m)), False),
    # OpenSSL alone accepts this for every message (test_ed25519)
    Signer("identity key", _IDENTITY, lambda m: _IDENTITY + bytes(32), False),
    Signer(
        "mixed-order key",
        ref.sign_with_torsion(11, _TORSION, b"")[0],
        lambda m: ref.sign_with_torsion(11, _TORSION, m)[1],
        True,
    ),
]


def _outcome(check: Callable[[], object]) -> bool:
    try:
        check()
    except SignatureError:
        return False
    return True


def _envelope(
    signer: Signer,
    payload_type: str = "application/vnd.jcm-sync.test+json",
    payload: bytes = b'{"n": 1}',
) -> bytes:
    """A DSSE envelope whose one signature ``signer`` made."""
    key_id = PublicKey.from_raw(signer.public_key).key_id
    fake_private: Any = SimpleNamespace(
        key=SimpleNamespace(sign=signer.sign), key_id_bytes=key_id.encode("ascii")
    )
    return sign_payload(payload_type, payload, [fake_private])


def _via_envelope(signer: Signer) -> bool:
    return _outcome(
        lambda: verify_envelope(_envelope(signer), [PublicKey.from_raw(signer.public_key)])
    )


def _via_note(signer: Signer) -> bool:
    verifier = Verifier(
        "vectors.example/log", Ed25519PublicKey.from_public_bytes(signer.public_key)
    )
    body = b"vectors.example/log\n42\n"
    line = NoteSignature(verifier.name, verifier.key_id, signer.sign(body)).line()
    return _outcome(lambda: open_note(body + b"\n" + line.encode(), [verifier]))


def _via_cosignature(signer: Signer) -> bool:
    witness = CosignatureVerifier(
        "witness.example", Ed25519PublicKey.from_public_bytes(signer.public_key)
    )
    body = b"vectors.example/log\n1\n" + base64.b64encode(bytes(32)) + b"\n"
    t = 1_764_547_200
    sig = t.to_bytes(8, "big") + signer.sign(cosignature_message(body, t))
    line = NoteSignature(witness.name, witness.key_id, sig).line()
    return _outcome(lambda: verify_cosignatures(body + b"\n" + line.encode(), [witness]))


class _Crafted(algorithms.HTTPSignatureAlgorithm):
    """Signs the signature base with the signer's callable (the 'private key')."""

    algorithm_id = "ed25519"

    def __init__(self, public_key: Any = None, private_key: Any = None) -> None:
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        return bytes(self.private_key(message))

    def verify(self, signature: bytes, message: bytes) -> None:
        raise AssertionError("signing only")


class _Resolver(HTTPSignatureKeyResolver):
    def __init__(self, sign: Callable[[bytes], bytes]) -> None:
        self._sign = sign

    def resolve_private_key(self, key_id: str) -> object:
        return self._sign

    def resolve_public_key(self, key_id: str) -> object:
        raise AssertionError("signing only")


def _via_http(signer: Signer) -> bool:
    url = "http://127.0.0.1:8443/v1/partnerships/JP-ID/logs/ID/entries"
    headers: dict[str, str] = {}
    HTTPMessageSigner(signature_algorithm=_Crafted, key_resolver=_Resolver(signer.sign)).sign(
        HttpMessage("GET", url, headers),
        key_id="vectors",
        created=datetime(2026, 12, 1, tzinfo=UTC),
        covered_component_ids=("@method", "@target-uri"),
    )
    key = PublicKey.from_raw(signer.public_key)
    try:
        verify_signature("GET", url, headers, lambda _: key)
    except SignatureMismatchError:  # nothing else: the request itself is well formed
        return False
    return True


def _root_with(signer: Signer) -> TrustRoot:
    """JP-ID's root with ``signer``'s key as ID's only key (every role)."""
    jp = PrivateKey.from_seed(b"\x01" * 32)
    root = builders.build_root("JP-ID", {"JP": jp, "ID": PrivateKey.from_seed(b"\x02" * 32)})
    entry = key_entry(
        PublicKey.from_raw(signer.public_key),
        "ID",
        not_before=builders.KEYS_VALID_FROM,
        not_after=builders.KEYS_VALID_UNTIL,
    )
    doc = builders.root_document(root)
    doc["keys"][1] = msgspec.to_builtins(entry)
    return msgspec.convert(doc, TrustRoot, from_attributes=False)


def _records(signer: Signer, n: int) -> list[bytes]:
    """``n`` distinct issuance records by ID, each signed by ``signer``."""
    out = []
    for i in range(n):
        record = builders.issuance(
            "ID", created=builders.DECISION_CREATED + timedelta(days=3, seconds=i)
        )
        out.append(_envelope(signer, payload_type(record.kind), encode_record(record)))
    return out


def _via_record_verifier(signer: Signer) -> bool:
    """What each worker of the hub's pool runs on each record (``verify_pool``)."""
    try:
        root = _root_with(signer)
    except msgspec.ValidationError as exc:  # ADR 0038: a root cannot list such a key
        if "verifies nothing" not in str(exc):
            raise
        return False
    verify = record_verifier(root, builders.NOW)
    return _outcome(lambda: verify(_records(signer, 1)[0]))


PATHS: dict[str, Callable[[Signer], bool]] = {
    "DSSE envelope": _via_envelope,
    "signed note": _via_note,
    "witness cosignature": _via_cosignature,
    "RFC 9421 request": _via_http,
    "record verifier (pool worker)": _via_record_verifier,
}


@contextmanager
def _no_openssl_ed25519_verify() -> Iterator[list[str]]:
    """Record every call of ``cryptography``'s ``Ed25519PublicKey.verify`` in this thread."""
    calls: list[str] = []

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "c_call"
            and getattr(arg, "__name__", "") == "verify"
            and isinstance(getattr(arg, "__self__", None), Ed25519PublicKey)
        ):
            calls.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")

    sys.setprofile(hook)
    try:
        yield calls
    finally:
        sys.setprofile(None)


@pytest.fixture(params=sorted(ed25519.BACKENDS))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    monkeypatch.setattr(ed25519, "_EQUATION", ed25519.BACKENDS[name])
    return name


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("signer", SIGNERS, ids=[s.name for s in SIGNERS])
def test_every_path_gives_each_edge_case_the_rules_verdict(
    path: str, signer: Signer, backend: str
) -> None:
    with _no_openssl_ed25519_verify() as openssl_calls:
        verdict = PATHS[path](signer)
    assert verdict is signer.accept
    if backend == "libsodium":
        assert not openssl_calls, f"{path} verified with OpenSSL directly at {openssl_calls}"


def test_the_profile_hook_sees_a_direct_openssl_verification() -> None:
    """The hook above can fail: it catches what a path that bypassed the rule would do."""
    with _no_openssl_ed25519_verify() as calls:
        ed25519.BACKENDS["cryptography"](
            _KEY.public_key().public_bytes_raw(), _KEY.sign(b"x"), b"x"
        )
    assert len(calls) == 1


async def test_the_hubs_worker_pool_gives_each_edge_case_the_rules_verdict() -> None:
    """The hub's pool, its spawned workers importing the rule afresh (libsodium there too):
    a batch per signer, large enough to go to the workers."""
    pool = VerifyPool(workers=2)
    try:
        verdicts = []
        for signer in [s for s in SIGNERS if s.name != "identity key"]:  # no root lists it
            envelopes = _records(signer, MIN_POOLED_BATCH)
            batch = await pool.verifier(_root_with(signer), envelopes, builders.NOW)
            outcomes = {_outcome(partial(batch, raw)) for raw in envelopes}
            verdicts.append((signer.name, outcomes))
        assert pool.dispatches == 3
    finally:
        pool.close()
    assert verdicts == [(s.name, {s.accept}) for s in SIGNERS if s.name != "identity key"]


# --- architecture: no Ed25519 verification outside core/ed25519.py ------------------------

#: Calls ``<receiver>.verify(a, b)`` (the shape of ``cryptography``'s ``verify(signature,
#: data)``) allowed outside ``core/ed25519.py``, by (file, receiver): how many, and why the
#: receiver is not ``cryptography``'s Ed25519 key. An entry that no longer matches its count
#: fails the test, so the list follows the code.
ALLOWED_VERIFY_CALLS: dict[tuple[str, str], tuple[int, str]] = {
    ("jcm_sync/core/envelope.py", "k"): (1, "our PublicKey / MLDSA44PublicKey wrappers"),
    ("jcm_sync/core/envelope.py", "key"): (1, "our PublicKey / MLDSA44PublicKey wrappers"),
    ("jcm_sync/core/note.py", "verifier"): (1, "a NoteVerifier: Verifier, CosignatureVerifier"),
    ("jcm_sync/core/cosignature.py", "verifier"): (1, "a CosignatureVerifier"),
    ("jcm_sync/core/cosignature.py", "self.public_key"): (
        1,
        "ML-DSA-44 only: _check sends Ed25519 keys to the rule first",
    ),
    ("jcm_sync/core/pq.py", "self.key"): (1, "an ML-DSA-44 key"),
    ("jcm_sync/net/httpsig_pq.py", "self.public_key"): (1, "MLDSA44.verify: an ML-DSA-44 key"),
    ("jcm_sync/net/httpsig_parse.py", "ContentDigest"): (1, "a body digest (SHA-256), no key"),
}

#: Names whose use verifies Ed25519 outside the rule, allowed only where listed.
FORBIDDEN_ATTRIBUTES = {("Ed25519PublicKey", "verify"), ("algorithms", "ED25519")}
ALLOWED_ATTRIBUTES = {("jcm_sync/net/httpsig_pq.py", "algorithms.ED25519")}


def scan(source: str, filename: str) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Two-argument ``.verify`` calls by (file, receiver), and forbidden attribute uses."""
    calls: dict[tuple[str, str], int] = {}
    forbidden: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES
            and (filename, f"{node.value.id}.{node.attr}") not in ALLOWED_ATTRIBUTES
        ):
            forbidden.append(f"{filename}:{node.lineno}: {node.value.id}.{node.attr}")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        keywords = {k.arg for k in node.keywords}
        if node.func.attr == "verify" and (len(node.args) == 2 or keywords & {"signature", "data"}):
            key = (filename, ast.unparse(node.func.value))
            calls[key] = calls.get(key, 0) + 1
    return calls, forbidden


def test_no_ed25519_verification_outside_the_rule() -> None:
    package = Path(jcm_sync.__file__).parent
    calls: dict[tuple[str, str], int] = {}
    forbidden: list[str] = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package.parent).as_posix()
        if name == "jcm_sync/core/ed25519.py":
            continue
        found, bad = scan(path.read_text(encoding="utf-8"), name)
        calls.update(found)
        forbidden += bad
    unexpected = {k: n for k, n in calls.items() if ALLOWED_VERIFY_CALLS.get(k, (0, ""))[0] != n}
    stale = [k for k in ALLOWED_VERIFY_CALLS if k not in calls]
    assert not forbidden, f"Ed25519 verified outside core/ed25519.py (ADR 0038): {forbidden}"
    assert not unexpected, (
        "a new .verify(signature, data) call: verify Ed25519 with core.ed25519.verify, or "
        f"list the call in ALLOWED_VERIFY_CALLS with why it is not Ed25519: {unexpected}"
    )
    assert not stale, f"ALLOWED_VERIFY_CALLS entries that match nothing: {stale}"


@pytest.mark.parametrize(
    "source",
    [
        "Ed25519PublicKey.from_public_bytes(raw).verify(sig, msg)",
        "self.public_key.verify(signature=sig, data=msg)",
        "x = Ed25519PublicKey.verify",
        "cls = algorithms.ED25519",
    ],
)
def test_the_scan_flags_a_direct_verification(source: str) -> None:
    calls, forbidden = scan(source, "jcm_sync/services/new.py")
    assert calls or forbidden
