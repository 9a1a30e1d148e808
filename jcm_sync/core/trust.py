"""Trust roots, roles, authority and rotation: who may sign what, decided purely.

Why this module exists: jcm-sync links two sovereign parties, so nothing is accepted
because of where it came from; a record is accepted because the partnership's trust
root says its signers may author it. This module holds that decision. It does no
I/O and reads no clock: bytes and values in, values out, ``now`` passed in (the
shape of python-tuf's ``TrustedMetadataSet``).

Theory of operation
-------------------

A partnership (``JP-MN``) has one trust root at a time, itself a DSSE envelope of
payload type ``application/vnd.jcm-sync.trust-root+json``. It lists the two nodes
(``JP`` and the partner), their Ed25519 (and ML-DSA-44) keys, each key's roles and
validity window, and the root threshold. Roles are record kinds (``issuance`` …), ``transport``
(signs HTTP requests), ``checkpoint`` (signs log checkpoints) and ``root`` (signs
trust roots).

Rules:

1. A root is trusted only when a threshold of its own ``root`` keys signed it and
   it has not expired (``verify_root`` with no previous root: the bootstrap, taken
   from a file the operator received out of band). In a chain (``verify_chain``)
   only the last root must be unexpired, as in TUF.
2. Version N+1 replaces N only if a threshold of N's root keys **and** a threshold
   of N+1's root keys signed it, its version is exactly N+1 and it names the same
   partnership. Lower or equal versions are rollbacks, higher ones skip; both are
   refused (TUF specification §5.3.4).
3. A key is usable at time t when ``not_before <= t < not_after`` and it is not
   revoked at t. Revoking a key is a new root in which the key stays listed with a
   ``revoked_at`` time, so the records it signed before remain verifiable. A record
   is judged twice (docs/adr/0018-revocation-by-receipt.md):

   * **expiry by its claim**: its ``created`` time (which may not lie in the future
     of ``now`` beyond the allowed skew) must be inside every signing key's window,
     so routine rotation never invalidates what a key signed in its time;
   * **revocation by receipt**: every signing key must still be unrevoked when this
     node *first received* the record (``received``, default ``now``; under a quorum,
     the witnessed time, rule 8), and the record may not claim a signing time at or
     after the revocation (the thief chooses ``created``). Stored entries are judged
     when appended (``Entry.appended_at``). Refusal: ``RevokedKeyError`` (``key-revoked``).
4. Every signature is by a key the root lists (``envelope.py`` rule 2) whose node is of
   the partnership and which holds the role named by the record's kind.
5. Authority (DESIGN §2): an issuance or transaction is signed by the node of its
   ``registry`` only; an authorization or itmo_action by its ``party`` only; an
   endorsement and a resolution by their ``author`` only. In every kind the author
   is among the signers. So Indonesia's key can never sign a Japan-side issuance.
6. A Joint Committee record (methodology, project, issuance_decision) is evidence
   as soon as its author signed it, but it takes **effect** only when both
   secretariats have signed it or the missing one has endorsed it
   (``with_endorsements``). The result says which nodes are still missing.
7. Algorithms (docs/adr/0033-ml-dsa-44-hybrid-signatures.md): a root may list
   ML-DSA-44 keys beside Ed25519 ones (a key's algorithm is told by its raw length,
   32 or 1,312 bytes, so roots without ML-DSA encode exactly as before) and state in
   ``required_algorithms``, per record kind or ``transport``: ``ed25519`` (default),
   ``ml-dsa-44`` or ``both``. Each node that signs a record must have used every
   required algorithm (``pq.check_algorithms``, ``AlgorithmRequiredError``).
8. ``cosign_quorum`` states per log whose cosignatures make its checkpoints agreed
   (``cosign_policy``; ADR 0035: revocation is then judged at the witnessed time).

Verification never returns a half-answer: either a ``Verification`` that names the
signers and what is missing, or an ``UntrustedError`` that says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Annotated, Final, Literal

import msgspec

from jcm_sync.core import merkle
from jcm_sync.core.cosign_policy import Quorum, check_quorums
from jcm_sync.core.ed25519 import key_refusal
from jcm_sync.core.envelope import (
    AnyPrivateKey,
    AnyPublicKey,
    VerifiedEnvelope,
    add_signature,
    open_envelope,
    public_key_from_raw,
    sign_payload,
    verify_envelope,
)
from jcm_sync.core.pq import (
    ML_DSA_44_PUBLIC_KEY_SIZE,
    Requirement,
    algorithm_of_raw,
    check_algorithms,
    check_requirements,
)
from jcm_sync.core.records import (
    JC_KINDS,
    KINDS,
    Created,
    EndorsementRecord,
    Node,
    Partnership,
    Record,
)
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    EnvelopeFormatError,
    ExpiredError,
    RevokedKeyError,
    RotationError,
    ThresholdError,
    UntrustedError,
)

ROOT_PAYLOAD_TYPE: Final = "application/vnd.jcm-sync.trust-root+json"

SERVICE_ROLES: Final = ("transport", "checkpoint", "root")
ROLES: Final = frozenset(KINDS) | frozenset(SERVICE_ROLES)

DEFAULT_SKEW: Final = timedelta(minutes=5)

Role = Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}(?!\n)$")]
REQUIRABLE_ROLES: Final = frozenset(KINDS) | frozenset({"transport", "checkpoint"})


# --- the root document ------------------------------------------------------------


class NodeEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: Node
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class KeyEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One key: whose it is, what it may sign, and when."""

    keyid: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}(?!\n)$")]
    public_key: Annotated[
        bytes, msgspec.Meta(min_length=32, max_length=ML_DSA_44_PUBLIC_KEY_SIZE)
    ]  # Ed25519: 32 bytes; ML-DSA-44: 1,312 (rule 7)
    node: Node
    roles: tuple[Role, ...]
    not_before: Created
    not_after: Created
    revoked_at: Created | None = None

    @property
    def algorithm(self) -> str:  # rule 7
        return algorithm_of_raw(self.public_key)

    def usable_at(self, t: datetime) -> bool:
        """Rule 3: inside the validity window and not (yet) revoked."""
        if not self.not_before <= t < self.not_after:
            return False
        return self.revoked_at is None or t < self.revoked_at

    def why_unusable(self, t: datetime) -> str:
        if t < self.not_before:
            return f"key {self.keyid[:16]} is not valid before {self.not_before.isoformat()}"
        if t >= self.not_after:
            return f"key {self.keyid[:16]} expired at {self.not_after.isoformat()}"
        assert self.revoked_at is not None
        return f"key {self.keyid[:16]} was revoked at {self.revoked_at.isoformat()}"


class TrustRoot(
    msgspec.Struct, frozen=True, forbid_unknown_fields=False, dict=True, omit_defaults=True
):
    """The signed statement of who may sign what for one partnership.

    ``dict=True``: a ``__dict__`` never encoded nor compared caches the parsed keys;
    ``omit_defaults`` keeps roots without ``required_algorithms``/``cosign_quorum`` as before.
    """

    type: Literal["jcm-sync/trust-root"]
    partnership: Partnership
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31)]
    expires: Created
    root_threshold: Annotated[int, msgspec.Meta(ge=1, le=16)]
    nodes: tuple[NodeEntry, ...]
    keys: tuple[KeyEntry, ...]
    required_algorithms: dict[Role, Requirement] = msgspec.field(default_factory=dict)
    cosign_quorum: dict[Node, Quorum] = msgspec.field(default_factory=dict)  # rule 8

    def __post_init__(self) -> None:
        node_ids = [n.id for n in self.nodes]
        partner = self.partnership[3:]
        if sorted(node_ids) != sorted(["JP", partner]):
            raise ValueError(f"nodes must be exactly JP and {partner}, not {node_ids}")
        ids = [k.keyid for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("a key id is listed twice")
        parsed: dict[str, AnyPublicKey] = {}
        for n, k in enumerate(self.keys):
            if len(k.public_key) not in (32, ML_DSA_44_PUBLIC_KEY_SIZE):
                raise ValueError(
                    f"keys[{n}] is {len(k.public_key)} bytes: an Ed25519 key is 32 bytes, "
                    f"an ML-DSA-44 key {ML_DSA_44_PUBLIC_KEY_SIZE}"
                )
            refusal = key_refusal(k.public_key) if len(k.public_key) == 32 else None
            if refusal is not None:  # ADR 0038: every signature by it would be refused
                raise ValueError(f"keys[{n}] is an Ed25519 key that verifies nothing: {refusal}")
            if k.node not in node_ids:
                raise ValueError(f"keys[{n}] belongs to {k.node}, not a node of the root")
            unknown = set(k.roles) - ROLES
            if unknown:
                raise ValueError(f"keys[{n}] has unknown roles {sorted(unknown)}")
            parsed[k.keyid] = public_key_from_raw(k.public_key)
            if parsed[k.keyid].key_id != k.keyid:
                raise ValueError(f"keys[{n}] keyid is not the SHA-256 of its key's SPKI DER")
        check_requirements(self.required_algorithms, REQUIRABLE_ROLES)
        check_quorums(self.cosign_quorum, node_ids, self.keys)
        if self.root_threshold > sum(1 for k in self.keys if "root" in k.roles):
            raise ValueError("root_threshold is larger than the number of root keys")
        # The keys were parsed for the check above; seed ``_public_keys`` with them (a
        # frozen Struct refuses attribute assignment, its instance dict does not).
        self.__dict__["_public_keys"] = parsed

    @property
    def partner(self) -> str:
        return self.partnership[3:]

    def key(self, keyid: str) -> KeyEntry | None:
        return self._key_index.get(keyid)

    @cached_property
    def _key_index(self) -> dict[str, KeyEntry]:
        """Each key id's entry (the first listed), looked up once per signer per record."""
        index: dict[str, KeyEntry] = {}
        for k in self.keys:
            index.setdefault(k.keyid, k)
        return index

    def requirement(self, role: str) -> Requirement:
        """Rule 7: what each signer of ``role`` must sign with (``ed25519`` if unstated)."""
        return self.required_algorithms.get(role, "ed25519")

    @cached_property
    def _public_keys(self) -> dict[str, AnyPublicKey]:
        return {k.keyid: public_key_from_raw(k.public_key) for k in self.keys}

    def public_keys(self) -> dict[str, AnyPublicKey]:
        """The root's keys by key id (built once per root object: every record verified
        under a root asks for them)."""
        return self._public_keys

    def keys_for(self, node: str, role: str, at: datetime) -> list[KeyEntry]:
        """Keys of ``node`` holding ``role`` and usable at ``at``."""
        return [k for k in self.keys if k.node == node and role in k.roles and k.usable_at(at)]


_root_encoder = msgspec.json.Encoder(order="sorted")
_root_decoder = msgspec.json.Decoder(TrustRoot)


def encode_root(root: TrustRoot) -> bytes:
    return _root_encoder.encode(root)


def decode_root(payload: bytes) -> TrustRoot:
    try:
        return _root_decoder.decode(payload)
    except msgspec.MsgspecError as exc:
        raise BadDataError(f"not a valid trust root: {exc}", where="trust root") from None
    except RecursionError:  # msgspec's nesting limit: bad input, not a bug
        raise BadDataError(
            "JSON is nested too deeply to be a trust root", where="trust root"
        ) from None


def key_entry(
    key: AnyPublicKey,
    node: str,
    *,
    not_before: datetime,
    not_after: datetime,
    roles: Iterable[str] | None = None,
) -> KeyEntry:
    """A key entry holding, by default, every role (authority still binds it to its node)."""
    return KeyEntry(
        keyid=key.key_id,
        public_key=key.raw,
        node=Node(node),
        roles=tuple(sorted(ROLES if roles is None else roles)),
        not_before=not_before,
        not_after=not_after,
    )


def sign_root(root: TrustRoot, keys: Sequence[AnyPrivateKey]) -> bytes:
    """Sign a root document into its envelope."""
    return sign_payload(ROOT_PAYLOAD_TYPE, encode_root(root), keys)


def countersign_root(envelope: bytes, key: AnyPrivateKey) -> bytes:
    return add_signature(envelope, key)


# --- verifying roots --------------------------------------------------------------


@dataclass(frozen=True)
class TrustedRoot:
    """A root that passed rule 1 or 2, with its envelope bytes and signers."""

    root: TrustRoot
    raw: bytes
    signers: tuple[str, ...]

    @property
    def version(self) -> int:
        return self.root.version

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the root document as signed (the envelope's payload bytes).

        Extra signatures on the same document (a countersignature) keep the digest;
        any change to the document changes it. Stores keep it as the high-water mark.
        """
        return root_digest(self.raw)


def root_digest(envelope: bytes) -> str:
    """SHA-256 (hex) of a root envelope's payload: the document its signatures cover."""
    return hashlib.sha256(open_envelope(envelope).payload).hexdigest()


def _root_signers(root: TrustRoot, signers: Iterable[str], at: datetime) -> set[str]:
    return {
        k.keyid
        for k in root.keys
        if k.keyid in set(signers) and "root" in k.roles and k.usable_at(at)
    }


def peek_root(data: bytes) -> TrustRoot:
    """Decode a root envelope's payload WITHOUT trusting it (for display and diagnostics)."""
    env = open_envelope(data)
    if env.payloadType != ROOT_PAYLOAD_TYPE:
        raise EnvelopeFormatError(
            f"payload type {env.payloadType!r} is not a trust root", where="payloadType"
        )
    return decode_root(env.payload)


def verify_root(data: bytes, now: datetime, previous: TrustedRoot | None = None) -> TrustedRoot:
    """Rules 1 and 2: trust a root on its own (bootstrap) or as the successor of ``previous``."""
    trusted = _follow_root(data, now, previous)
    _check_unexpired(trusted.root, now)
    return trusted


def _follow_root(data: bytes, now: datetime, previous: TrustedRoot | None) -> TrustedRoot:
    """Rules 1 and 2 without the expiry check, which only the newest root must pass."""
    new = peek_root(data)
    if previous is not None:
        # Checked on the still unverified document, before the signatures: these
        # checks can only refuse, and a replayed older root carries signatures of
        # keys the current root no longer lists, which would otherwise hide the
        # rollback behind an "unknown key" error.
        old = previous.root
        if new.partnership != old.partnership:
            raise RotationError(
                f"root for {new.partnership} cannot follow the root of {old.partnership}"
            )
        if new.version <= old.version:
            raise RotationError(
                f"rollback: version {new.version} is not newer than trusted version {old.version}"
            )
        if new.version != old.version + 1:
            raise RotationError(f"skipped version: expected {old.version + 1}, got {new.version}")
    known = new.public_keys()
    if previous is not None:
        known = {**previous.root.public_keys(), **known}
    verified = verify_envelope(data, known)
    signer_ids = verified.signer_ids

    if previous is not None:
        old = previous.root
        old_ok = _root_signers(old, signer_ids, now)
        if len(old_ok) < old.root_threshold:
            raise ThresholdError(
                f"version {new.version} is signed by {len(old_ok)} of the root keys of "
                f"version {old.version}; {old.root_threshold} needed"
            )
    new_ok = _root_signers(new, signer_ids, now)
    if len(new_ok) < new.root_threshold:
        raise ThresholdError(
            f"version {new.version} is signed by {len(new_ok)} of its own root keys; "
            f"{new.root_threshold} needed"
        )
    return TrustedRoot(root=new, raw=data, signers=tuple(signer_ids))


def _check_unexpired(root: TrustRoot, now: datetime) -> None:
    if root.expires <= now:
        raise ExpiredError(
            f"trust root version {root.version} expired at {root.expires.isoformat()}"
        )


def verify_chain(envelopes: Sequence[bytes], now: datetime) -> TrustedRoot:
    """Bootstrap from the first root and rotate through the rest, in order.

    As in TUF (specification §5.3.10), only the last root must be unexpired: the
    ones before it are steps of the chain, and an operator who bootstraps from an
    old root file must still be able to follow the rotations made since.
    """
    return verify_chain_history(envelopes, now)[-1]


def verify_chain_history(envelopes: Sequence[bytes], now: datetime) -> tuple[TrustedRoot, ...]:
    """``verify_chain``, keeping every version it passed through, oldest first.

    Evidence signed before a rotation (a log's old checkpoints) is judged by the keys
    the chain held then, and a key dropped from a later version is known only from the
    versions that listed it.
    """
    if not envelopes:
        raise BadDataError("no trust root given")
    chain = [_follow_root(envelopes[0], now, None)]
    for data in envelopes[1:]:
        chain.append(_follow_root(data, now, chain[-1]))
    _check_unexpired(chain[-1].root, now)
    return tuple(chain)


# --- verifying records ------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    keyid: str
    node: str
    algorithm: str = "ed25519"


@dataclass(frozen=True)
class Verification:
    """What a record's signatures establish under a trust root.

    ``missing`` names, for a JC record, the nodes whose signature or endorsement is
    still needed; ``effective`` is true when nothing is missing.
    """

    record_id: str
    kind: str
    record: Record
    signers: tuple[Signer, ...]
    required_nodes: frozenset[str]
    endorsed_by: tuple[str, ...] = ()
    raw: bytes = b""

    @cached_property
    def leaf_hash(self) -> bytes:
        """The Merkle leaf hash of ``raw``, computed once: the root check before an append
        and the store's tree (``store/planning.prepare_batch``) both use it."""
        return merkle.leaf_hash(self.raw)

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(s.node for s in self.signers) | frozenset(self.endorsed_by)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(sorted(self.required_nodes - self.nodes))

    @property
    def effective(self) -> bool:
        return not self.missing

    def describe_missing(self) -> list[str]:
        return [f"signature or endorsement of {n}" for n in self.missing]


def authorised_nodes(record: Record) -> frozenset[str]:
    """Rule 5: the nodes whose keys may sign this record at all."""
    if record.kind in JC_KINDS:
        return frozenset({"JP", record.partner})
    side = getattr(record, "registry", None) or getattr(record, "party", None)
    if side is not None:
        return frozenset({side})
    return frozenset({record.author})


def check_key_for_record(entry: KeyEntry, signed_at: datetime, received: datetime) -> None:
    """Rule 3 for one signing key: its window at the record's claimed ``signed_at``
    (expiry by claim), its revocation at ``received`` (revocation by receipt)."""
    if not entry.not_before <= signed_at < entry.not_after:
        raise ExpiredError(
            f"{entry.why_unusable(signed_at)}; the record was signed at {signed_at.isoformat()}",
            where="signatures",
        )
    revoked = entry.revoked_at
    if revoked is None:
        return
    if received >= revoked:
        raise RevokedKeyError(
            f"key {entry.keyid[:16]} of {entry.node} was revoked at {revoked.isoformat()}; "
            f"this record reached us at {received.isoformat()}, after the revocation "
            f"(it claims to be signed at {signed_at.isoformat()}, which the signer chooses)",
            where="signatures",
        )
    if signed_at >= revoked:
        raise RevokedKeyError(
            f"key {entry.keyid[:16]} of {entry.node} was revoked at {revoked.isoformat()}; "
            f"the record was signed at {signed_at.isoformat()}, after the revocation",
            where="signatures",
        )


def verify_record(
    root: TrustRoot,
    data: bytes,
    now: datetime,
    *,
    skew: timedelta = DEFAULT_SKEW,
    verified: VerifiedEnvelope | None = None,
    received: datetime | None = None,
) -> Verification:
    """Verify an envelope's signatures, schema and authority under ``root`` (rules 3-6).

    ``now`` is the verifying node's clock; ``received`` is when the node first received
    the envelope (None: now, as on ingest), the time revocation is judged at (rule 3).
    Raises ``UntrustedError`` subclasses with the reason; returns a Verification
    that may still be not ``effective`` (a JC record awaiting the other side).
    """
    if root.expires <= now:
        raise ExpiredError(
            f"trust root version {root.version} expired at {root.expires.isoformat()}"
        )
    env = verified if verified is not None else verify_envelope(data, root.public_keys())
    record = env.record()
    kind = record.kind
    if record.partnership != root.partnership:
        raise AuthorityError(
            f"record belongs to partnership {record.partnership}, not {root.partnership}",
            where="partnership",
        )
    if record.created > now + skew:
        raise UntrustedError(
            f"record is dated {record.created.isoformat()}, in the future", where="created"
        )
    signed_at = record.created
    allowed = authorised_nodes(record)
    if record.author not in allowed:
        raise AuthorityError(
            f"{record.author} may not author {kind} records of {'/'.join(sorted(allowed))}",
            where="author",
        )
    signers: list[Signer] = []
    for pub in env.signers:
        entry = root.key(pub.key_id)
        if entry is None:  # verify_envelope only accepts keys of this root
            raise AuthorityError(f"key {pub.key_id[:16]} is not in trust root")
        check_key_for_record(entry, signed_at, now if received is None else received)
        if kind not in entry.roles:
            raise AuthorityError(
                f"key {entry.keyid[:16]} of {entry.node} does not hold the role {kind!r}",
                where="signatures",
            )
        if entry.node not in allowed:
            raise AuthorityError(
                f"{entry.node}'s key cannot sign {kind} records of {'/'.join(sorted(allowed))}",
                where="signatures",
            )
        signers.append(Signer(keyid=entry.keyid, node=entry.node, algorithm=entry.algorithm))
    if record.author not in {s.node for s in signers}:
        raise AuthorityError(
            f"the author {record.author} did not sign this {kind} record", where="signatures"
        )
    check_algorithms(
        root.requirement(kind), kind, ((s.node, s.algorithm) for s in signers), root.version
    )
    required = allowed if kind in JC_KINDS else frozenset({record.author})
    return Verification(
        record_id=env.record_id,
        kind=kind,
        record=record,
        signers=tuple(signers),
        required_nodes=required,
        raw=data,
    )


def with_endorsements(target: Verification, endorsements: Iterable[Verification]) -> Verification:
    """Rule 6: count verified endorsements of ``target`` by the nodes it still misses."""
    added: list[str] = list(target.endorsed_by)
    for e in endorsements:
        rec = e.record
        if not isinstance(rec, EndorsementRecord) or rec.endorses != target.record_id:
            continue
        if rec.endorsed_kind != target.kind:
            raise AuthorityError(
                f"endorsement {e.record_id[:16]} names kind {rec.endorsed_kind}, "
                f"but the record is a {target.kind}"
            )
        if rec.author in target.required_nodes and rec.author not in added:
            added.append(rec.author)
    return replace(target, endorsed_by=tuple(added))


def require_effective(v: Verification) -> Verification:
    """Refuse a record that has not taken effect, saying what is missing."""
    if not v.effective:
        raise ThresholdError(
            f"{v.kind} {v.record_id[:16]} is not effective: missing "
            + ", ".join(v.describe_missing())
        )
    return v
