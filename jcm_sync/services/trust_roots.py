"""Making a partnership's trust root: version 1, and each rotation to version N+1.

Why this module exists: ``jcm-sync trust init`` and ``trust rotate`` decide what goes into
a root (which keys, valid from and until when, which are revoked, the threshold); the
same rules must hold whoever makes a root, so they live here and the CLI only reads key
files, calls these and writes the signed result.

Rules:

1. A new key is valid from a little before ``now`` (``DEFAULT_SKEW``: the other side's
   clock may run behind) for ``key_days``; a root expires ``expires_days`` after ``now``.
2. A root has the two nodes of its partnership, Japan and the partner, and by default a
   threshold of one signature per node holding a key.
3. Rotation keeps every key of version N: a revoked key stays, with its revocation time,
   so records signed before it stay verifiable (trust rule 3); a replaced key is revoked
   and its node and roles go to the new key. The algorithm requirements and cosignature
   quorums are kept unless changed (a quorum set to None is dropped: quorum 0).
4. A root is made by decoding its encoding, which runs the checks a constructor skips,
   so a root written is one the nodes would accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from jcm_sync.core.cosign_policy import Quorum
from jcm_sync.core.envelope import AnyPrivateKey, AnyPublicKey
from jcm_sync.core.trust import (
    DEFAULT_SKEW,
    KeyEntry,
    NodeEntry,
    TrustRoot,
    decode_root,
    encode_root,
    key_entry,
    sign_root,
)
from jcm_sync.errors import BadDataError, NotFoundError


@dataclass(frozen=True)
class Validity:
    """Rule 1: when a root is made and for how long it and its new keys hold."""

    now: datetime
    key_days: int
    expires_days: int

    @property
    def key_start(self) -> datetime:
        return (self.now - DEFAULT_SKEW).replace(microsecond=0)

    @property
    def key_end(self) -> datetime:
        return self.now + timedelta(days=self.key_days)

    @property
    def expires(self) -> datetime:
        return self.now + timedelta(days=self.expires_days)

    def key(self, pub: AnyPublicKey, node: str, roles: Sequence[str] | None = None) -> KeyEntry:
        return key_entry(pub, node, not_before=self.key_start, not_after=self.key_end, roles=roles)


def _build(
    partnership: str,
    version: int,
    keys: Sequence[KeyEntry],
    threshold: int,
    expires: datetime,
    required: Mapping[str, str] | None = None,
    cosign: Mapping[str, Quorum] | None = None,
) -> TrustRoot:
    """Rules 2 and 4."""
    partner = partnership[3:] if partnership.startswith("JP-") else "?"
    try:
        root = TrustRoot(
            type="jcm-sync/trust-root",
            partnership=partnership,
            version=version,
            expires=expires,
            root_threshold=threshold,
            nodes=(NodeEntry(id="JP"), NodeEntry(id=partner)),
            keys=tuple(keys),
            required_algorithms=dict(required or {}),  # type: ignore[arg-type]
            cosign_quorum=dict(cosign or {}),
        )
    except (ValueError, TypeError) as exc:  # the field checks of the Struct: bad options
        raise BadDataError(str(exc), where="trust root") from None  # same text, now named
    # Struct constructors do not run pattern checks; a decode does, and runs
    # __post_init__, so a root we write is one we would accept (rule 4)
    return decode_root(encode_root(root))


def new_root(
    partnership: str,
    keys: Sequence[tuple[str, AnyPublicKey]],
    valid: Validity,
    threshold: int | None = None,
    required: Mapping[str, str] | None = None,
    cosign: Mapping[str, Quorum | None] | None = None,
) -> TrustRoot:
    """Version 1 with a key entry for each (node, public key) (rules 1, 2 and 4);
    ``required``: role -> signature algorithms (``core/trust.py`` rule 7); ``cosign``:
    log node -> cosignature quorum (``core/cosign_policy.py``)."""
    entries = [valid.key(pub, node) for node, pub in keys]
    nodes = {k.node for k in entries}
    quorums = {n: q for n, q in (cosign or {}).items() if q is not None}
    return _build(
        partnership, 1, entries, threshold or len(nodes), valid.expires, required, quorums
    )


def rotate_root(
    current: TrustRoot,
    valid: Validity,
    *,
    revoke: Sequence[str] = (),
    replace: Sequence[tuple[str, AnyPublicKey]] = (),
    add: Sequence[tuple[str, AnyPublicKey]] = (),
    revoke_at: datetime | None = None,
    threshold: int | None = None,
    required: Mapping[str, str] | None = None,
    cosign: Mapping[str, Quorum | None] | None = None,
) -> TrustRoot:
    """Version N+1 of ``current`` (rule 3): ``revoke`` keys by id (a unique prefix of at
    least 8 characters), ``replace`` (key id, new key) pairs, ``add`` (node, key) pairs;
    revocations take effect at ``revoke_at`` (``now`` by default)."""
    keys = {k.keyid: k for k in current.keys}
    at = revoke_at or valid.now

    def revoked(keyid: str) -> KeyEntry:
        matches = [k for k in keys if k.startswith(keyid)] if len(keyid) >= 8 else []
        if len(matches) != 1:
            raise NotFoundError(f"no single key with id {keyid!r} in version {current.version}")
        old = keys[matches[0]]
        if old.revoked_at is not None:
            raise BadDataError(f"key {old.keyid[:16]} is already revoked", where="--revoke")
        keys[old.keyid] = msgspec.structs.replace(old, revoked_at=at)
        return old

    for keyid in revoke:
        revoked(keyid)
    for keyid, pub in replace:
        old = revoked(keyid)
        keys[pub.key_id] = valid.key(pub, old.node, roles=old.roles)
    for node, pub in add:
        keys[pub.key_id] = valid.key(pub, node)
    return _build(
        current.partnership,
        current.version + 1,
        list(keys.values()),
        threshold or current.root_threshold,
        valid.expires,
        {**current.required_algorithms, **(required or {})},  # kept unless changed
        {n: q for n, q in {**current.cosign_quorum, **(cosign or {})}.items() if q is not None},
    )


def sign_new_root(root: TrustRoot, signers: Sequence[AnyPrivateKey]) -> bytes:
    """The signed envelope of a root made here."""
    try:
        return sign_root(root, list(signers))
    except ValueError as exc:  # a TrustRoot that fails its own checks on re-decode
        raise BadDataError(str(exc), where="trust root") from None  # same text, now named
