"""What reconciliation reads: log entries as verified records, and the trust boundary.

Why this module exists: verifying a record's signatures costs about 100 µs, most of a
full reconciliation of a large partnership, and every entry of a node's logs was already
verified when it entered the store (``store.base`` invariant 1: nothing is written unless
every envelope verified under the partnership's trust root). So reconciliation takes
entries in two ways and this module is where the choice is made, explicitly:

1. ``verify_envelopes`` (untrusted bytes, e.g. a snapshot someone handed over): every
   envelope goes through ``trust.verify_record`` at the given time, as on ingest.
2. ``decode_stored`` (bytes read back from this node's own store): the envelope's shape is
   read (its payload, payload type and signatures' key ids, not their bytes;
   ``envelope.open_envelope`` names the fault of one that does not parse), the payload is
   decoded and validated as the kind its payload type names, and the signers' nodes are
   read from the key ids through the trust root. Signatures are NOT checked again. This is
   sound only for bytes that come out of a ``Store``: the store verified them, and checks
   each row's bytes against its record id when it reads it (``store.base`` invariant 6).
   A key id the root does not list (a key since removed by rotation) names no node, so
   such a signature counts for nothing: a JC record relying on it is not effective.
   With ``validate=False`` (the reconciler's store paths) the payload's shape only is
   decoded (``decode_stored_payload``: its fields and their types, as a subclass of the
   record class without the patterns, bounds and cross-field checks), on the same
   grounds: the store validated the record on ingest, and re-validating it was four
   fifths of decoding it (ADR 0052).
3. Either way an entry carries its record id (SHA-256 of the envelope), its Merkle leaf
   hash (so the reconciler can check the entries against the snapshot's checkpoint root),
   its kind and its payload bytes. The reconciler keeps the payload, not the decoded
   record, and decodes again on the rare occasions it needs a record it folded long ago
   (a payload is one compact, untracked object where a decoded record is some twenty);
   equal payloads are also how it recognises two envelopes of one record, such as a
   proposal and its co-signed copy (one record, the union of their signers; ADR 0001).
"""

from __future__ import annotations

import hashlib
import sys
import types
import typing
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Final

import msgspec

from jcm_sync.core import merkle
from jcm_sync.core.envelope import Envelope, open_envelope
from jcm_sync.core.records import RECORD_TYPES, Record, decode_record, kind_of_payload_type
from jcm_sync.core.trust import TrustRoot, Verification, verify_record
from jcm_sync.errors import BadDataError, EnvelopeFormatError, JcmSyncError


class VerifiedEntry(msgspec.Struct, frozen=True, gc=False):
    """A log entry whose signatures are known good: its record and its signers' nodes.

    A Struct, not a dataclass: one is made per entry, and a frozen dataclass's
    ``__init__`` cost as much as decoding the envelope's shape (ADR 0052)."""

    record_id: str
    record: Record
    signers: frozenset[str]
    leaf_hash: bytes
    kind: str
    payload: bytes


# One decoder per kind: the payload type already names the kind, and decoding into that
# Struct checks its tag, so one pass does what ``records.decode_record(payload, kind)``
# does in two. On any error the slow path runs, for its ``RecordError`` naming the field.
_DECODERS: dict[str, msgspec.json.Decoder[Record]] = {
    kind: msgspec.json.Decoder(t) for kind, t in RECORD_TYPES.items()
}


class _Signature(msgspec.Struct, gc=False):
    """What rule 2 reads of a stored signature: its key id (not the signature bytes)."""

    keyid: str = ""


class _Envelope(msgspec.Struct, gc=False):
    """What rule 2 reads of a stored envelope (``envelope.Envelope`` less the signatures'
    bytes, which it does not check: decoding their base64 was half the envelope's cost)."""

    payload: bytes
    payloadType: str
    signatures: tuple[_Signature, ...]


_envelope = msgspec.json.Decoder(_Envelope)

# --- stored payloads: their shape only (rule 2) -----------------------------------------


def _shape_of_type(tp: Any, made: dict[type, type]) -> Any:
    """``tp`` with each record Struct in it replaced by its shape (``_shape``)."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _shape(tp, made)
    origin = typing.get_origin(tp)
    if origin is None or origin is typing.Literal:
        return tp
    args = tuple(_shape_of_type(a, made) for a in typing.get_args(tp))
    if origin is types.UnionType or origin is typing.Union:
        return typing.Union[args]  # noqa: UP007 (built from a tuple of types)
    return origin[args]


def _no_checks(self: object) -> None:
    """A shape's ``__post_init__``: the store checked the record's rules on ingest."""


def _shape(cls: type[msgspec.Struct], made: dict[type, type]) -> type[msgspec.Struct]:
    """A subclass of the record Struct ``cls`` with its fields' types and no more: no
    patterns or bounds (``typing.get_type_hints`` drops the ``Annotated`` metadata), no
    ``__post_init__`` checks, untracked by the garbage collector. Its instances are
    instances of ``cls`` with the same fields, tag and methods; decoding into it costs a
    fifth of decoding into ``cls`` (ADR 0052). ``made`` holds the shapes made so far, so
    that a Struct met twice gets one shape."""
    got = made.get(cls)
    if got is not None:
        return got
    hints = typing.get_type_hints(cls)
    config = cls.__struct_config__
    ns: dict[str, Any] = {
        "__annotations__": {f: _shape_of_type(hints[f], made) for f in cls.__struct_fields__},
        "__post_init__": _no_checks,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": f"{cls.__name__}, decoded without its checks (rule 2).",
    }
    defaults = cls.__struct_defaults__
    if defaults:
        ns.update(zip(cls.__struct_fields__[-len(defaults) :], defaults, strict=True))
    kw: dict[str, Any] = {"frozen": config.frozen, "gc": False, "kw_only": True}
    if isinstance(config.tag, str):
        kw["tag"] = config.tag
    shape = types.new_class(cls.__name__, (cls,), kw, lambda d: d.update(ns))
    made[cls] = shape
    return shape


def _stored_decoders() -> dict[str, msgspec.json.Decoder[Record]]:
    """One decoder per kind into its shape, built once at import."""
    made: dict[type, type] = {}
    return {kind: msgspec.json.Decoder(_shape(t, made)) for kind, t in RECORD_TYPES.items()}


_STORED: Final[dict[str, msgspec.json.Decoder[Record]]] = _stored_decoders()


def decode_payload(payload: bytes, kind: str) -> Record:
    """Decode and validate a payload of ``kind`` (as ``records.decode_record`` does)."""
    try:
        return _DECODERS[kind].decode(payload)
    except (msgspec.MsgspecError, UnicodeDecodeError, KeyError):
        return decode_record(payload, kind)  # raises the RecordError, or agrees


def decode_stored_payload(payload: bytes, kind: str) -> Record:
    """Decode a payload of ``kind`` that a store holds, checking its shape only (rule 2):
    its fields and their types, not the patterns, bounds and cross-field rules the store
    checked on ingest. The record is an instance of its kind's class, with the same
    fields as ``decode_payload`` gives. A payload not even of that shape raises the
    ``RecordError`` of ``decode_payload``."""
    try:
        return _STORED[kind].decode(payload)
    except (msgspec.MsgspecError, UnicodeDecodeError, KeyError, RecursionError):
        return decode_payload(payload, kind)


def from_verification(v: Verification) -> VerifiedEntry:
    """An entry from ``trust.verify_record``'s result (which keeps the envelope bytes)."""
    if not v.raw:
        raise BadDataError("a Verification without its envelope bytes cannot be reconciled")
    payload = open_envelope(v.raw).payload
    return VerifiedEntry(
        record_id=v.record_id,
        record=v.record,
        signers=frozenset(s.node for s in v.signers),
        leaf_hash=merkle.leaf_hash(v.raw),
        kind=v.kind,
        payload=payload,
    )


def verify_envelopes(
    root: TrustRoot, envelopes: Iterable[bytes], now: datetime
) -> list[VerifiedEntry]:
    """Rule 1: verify every envelope under ``root`` at ``now``, as on ingest."""
    out = []
    for n, raw in enumerate(envelopes):
        try:
            out.append(from_verification(verify_record(root, raw, now)))
        except JcmSyncError as exc:
            exc.where = f"entry {n}" + (f": {exc.where}" if exc.where else "")
            raise
    return out


def signer_nodes(root: TrustRoot) -> dict[str, str]:
    """Key id to node, for ``decode_stored``."""
    return {k.keyid: k.node for k in root.keys}


def decode_stored(
    root: TrustRoot,
    envelopes: Iterable[bytes],
    *,
    nodes: dict[str, str] | None = None,
    validate: bool = True,
) -> list[VerifiedEntry]:
    """Rule 2: decode envelopes a store already verified, without checking signatures again.

    ``nodes`` (from ``signer_nodes``) saves rebuilding the key map on every chunk. With
    ``validate=False`` the payloads are decoded as ``decode_stored_payload`` does (their
    shape only; the store validated them on ingest), for the reconciler, which reads the
    fields and never re-encodes a record.
    """
    return list(iter_stored(root, envelopes, nodes=nodes, validate=validate))


def iter_stored(
    root: TrustRoot,
    envelopes: Iterable[bytes],
    *,
    nodes: dict[str, str] | None = None,
    validate: bool = True,
) -> Iterator[VerifiedEntry]:
    """``decode_stored`` one entry at a time: given to ``Reconciler.apply``, each decoded
    record is dropped as soon as it is folded, so a large log never has many decoded at
    once (and the garbage collector never sees them grow old)."""
    by_key = nodes if nodes is not None else signer_nodes(root)
    decode = decode_payload if validate else decode_stored_payload
    sha256, leaf = hashlib.sha256, merkle.leaf_hash
    # entries share their signer sets: a set per entry would cost 216 bytes each
    shared: dict[tuple[str, ...], frozenset[str]] = {}  # by the signatures' key ids
    kinds: dict[str, str] = {}
    partnership = root.partnership
    for n, raw in enumerate(envelopes):
        # the store checked the envelope's canonical form when it verified it; here only
        # its shape is read again (rule 2)
        env: _Envelope | Envelope
        try:
            env = _envelope.decode(raw)
        except msgspec.MsgspecError:
            env = open_envelope(raw)  # raises the EnvelopeFormatError
        kind = kinds.get(env.payloadType)
        if kind is None:
            found = kind_of_payload_type(env.payloadType)
            if found is None:
                raise EnvelopeFormatError(
                    f"payload type {env.payloadType!r} is not a jcm-sync record type",
                    where=f"entry {n}",
                )
            # one string per kind, not one per entry
            kind = kinds[env.payloadType] = sys.intern(found)
        record = decode(env.payload, kind)
        if record.partnership != partnership:
            raise BadDataError(
                f"record of {record.partnership} in a log of {root.partnership}",
                where=f"entry {n}",
            )
        keyids = tuple([s.keyid for s in env.signatures])
        signers = shared.get(keyids)
        if signers is None:
            signers = shared[keyids] = frozenset(by_key[k] for k in keyids if k in by_key)
        # positional (record_id, record, signers, leaf_hash, kind, payload): keywords
        # cost a Struct more to match than its fields to set
        yield VerifiedEntry(sha256(raw).hexdigest(), record, signers, leaf(raw), kind, env.payload)
