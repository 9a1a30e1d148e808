"""Builders of trust roots and realistic records, for tests and for code outside pytest.

Everything here is plain functions of values (no fixtures, no clock), so a benchmark or
a demo script can import it as ``tests.builders``. The records follow the first JCM
issuance ever: in May 2016 the Japan-Indonesia Joint Committee notified 40 credits for
project ID002; Japan's registry issued 31 (27 to the Government of Japan, 4 to Mayekawa
Manufacturing Co., Ltd.) and Indonesia's registry 9 (5 to the Government of Indonesia,
4 to PT Adib Global Food Supplies). The exact dates below are illustrative.

A ``KeyRing`` names keys (``"jp1"``, ``"id2"``): the first two letters of a name are
the key's node, so scenario tables can say which keys a root lists and who signed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from jcm_sync.core.envelope import PrivateKey, sign_payload, sign_record
from jcm_sync.core.records import (
    Account,
    Allocation,
    AuthorizationRecord,
    DecisionRef,
    EndorsementRecord,
    HolderAmount,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    MethodologyRecord,
    Participant,
    Period,
    ProjectRecord,
    Record,
    ResolutionRecord,
    SerialBlock,
    SideShare,
    TransactionRecord,
)
from jcm_sync.core.trust import (
    ROOT_PAYLOAD_TYPE,
    KeyEntry,
    NodeEntry,
    TrustRoot,
    key_entry,
    sign_root,
)

# --- times ------------------------------------------------------------------------

NOW = datetime(2016, 6, 1, 9, 0, tzinfo=UTC)
"""The reference time of the trust tests: a few days after the first issuance."""

KEYS_VALID_FROM = datetime(2015, 1, 1, tzinfo=UTC)
KEYS_VALID_UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
ROOT_LIFETIME = timedelta(days=365)

DECIDED_ON = date(2016, 5, 20)
DECISION_CREATED = datetime(2016, 5, 20, 6, 30, tzinfo=UTC)
MONITORING_PERIOD = Period(start=date(2015, 1, 1), end=date(2015, 9, 30))
PROJECT_ID = "ID002"
PARTNERSHIP = "JP-ID"

NODE_NAMES = {
    "JP": "Government of Japan",
    "ID": "Government of Indonesia",
    "MN": "Government of Mongolia",
}


# --- keys and roots ---------------------------------------------------------------


class KeyRing:
    """Ed25519 keys by name, generated on first use; ``"id2"`` is a key of node ID."""

    def __init__(self, preset: Mapping[str, PrivateKey] | None = None) -> None:
        self._keys: dict[str, PrivateKey] = dict(preset or {})

    def __getitem__(self, name: str) -> PrivateKey:
        if name not in self._keys:
            self._keys[name] = PrivateKey.generate()
        return self._keys[name]

    def keys(self, names: Iterable[str]) -> list[PrivateKey]:
        return [self[n] for n in names]

    @staticmethod
    def node_of(name: str) -> str:
        return name[:2].upper()

    def by_node(self, names: Iterable[str]) -> dict[str, list[PrivateKey]]:
        """Group named keys by node, the shape ``build_root`` takes."""
        out: dict[str, list[PrivateKey]] = {}
        for n in names:
            out.setdefault(self.node_of(n), []).append(self[n])
        return out


KeysByNode = Mapping[str, PrivateKey | Sequence[PrivateKey]]


def build_root(
    partnership: str,
    keys_by_node: KeysByNode,
    *,
    version: int = 1,
    threshold: int = 2,
    expires: datetime = NOW + ROOT_LIFETIME,
    roles: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    revoked: Mapping[str, datetime] | None = None,
    windows: Mapping[str, tuple[datetime, datetime]] | None = None,
) -> TrustRoot:
    """An (unsigned) trust root document.

    ``threshold`` defaults to 2: both governments sign their partnership's root.
    ``roles`` is one role set for every key, or a role set per node; by default a
    key holds every role. ``revoked`` and ``windows`` are keyed by key id.
    """
    revoked = revoked or {}
    windows = windows or {}
    entries: list[KeyEntry] = []
    for node, keys in keys_by_node.items():
        for key in [keys] if isinstance(keys, PrivateKey) else keys:
            node_roles = roles.get(node) if isinstance(roles, Mapping) else roles
            not_before, not_after = windows.get(key.key_id, (KEYS_VALID_FROM, KEYS_VALID_UNTIL))
            entry = key_entry(
                key.public, node, not_before=not_before, not_after=not_after, roles=node_roles
            )
            if key.key_id in revoked:
                entry = msgspec.structs.replace(entry, revoked_at=revoked[key.key_id])
            entries.append(entry)
    partner = partnership[3:]
    return TrustRoot(
        type="jcm-sync/trust-root",
        partnership=partnership,
        version=version,
        expires=expires,
        root_threshold=threshold,
        nodes=tuple(NodeEntry(id=n, name=NODE_NAMES.get(n, "")) for n in ("JP", partner)),
        keys=tuple(entries),
    )


def signed_root(root: TrustRoot, signers: Sequence[PrivateKey]) -> bytes:
    """The root's envelope, signed by ``signers`` (whether or not they are its keys)."""
    return sign_root(root, signers)


def root_document(root: TrustRoot) -> dict[str, Any]:
    """The root as JSON builtins, to be broken on purpose by tests of bad roots."""
    doc = msgspec.json.decode(msgspec.json.encode(root))  # lists, not tuples
    assert isinstance(doc, dict)
    return doc


def sign_root_document(doc: Mapping[str, Any], signers: Sequence[PrivateKey]) -> bytes:
    """Sign an arbitrary root document, valid or not, into a root envelope."""
    return sign_payload(ROOT_PAYLOAD_TYPE, msgspec.json.encode(doc), signers)


# --- records ----------------------------------------------------------------------


def _base(author: str, partnership: str, created: datetime) -> dict[str, Any]:
    return {"partnership": partnership, "author": author, "created": created}


def first_issuance_decision(
    *,
    author: str = "JP",
    created: datetime = DECISION_CREATED,
    partnership: str = PARTNERSHIP,
) -> IssuanceDecisionRecord:
    """The JC decision behind the first JCM issuance (Indonesia, May 2016): 40 = 31 + 9."""
    return IssuanceDecisionRecord(
        **_base(author, partnership, created),
        project_id=PROJECT_ID,
        monitoring_period=MONITORING_PERIOD,
        decided_on=DECIDED_ON,
        total_notified=40,
        shares=(
            SideShare(
                side="JP",
                notified=31,
                allocations=(
                    HolderAmount("Government of Japan", "government_holding", 27),
                    HolderAmount("Mayekawa Manufacturing Co., Ltd.", "participant_holding", 4),
                ),
            ),
            SideShare(
                side=partnership[3:],
                notified=9,
                allocations=(
                    HolderAmount("Government of Indonesia", "government_holding", 5),
                    HolderAmount("PT Adib Global Food Supplies", "participant_holding", 4),
                ),
            ),
        ),
    )


def methodology(
    author: str, *, created: datetime = DECISION_CREATED, partnership: str = PARTNERSHIP
) -> MethodologyRecord:
    return MethodologyRecord(
        **_base(author, partnership, created),
        methodology_id="ID_AM004",
        version="ver01.0",
        title="Installation of Inverter-Type Air Conditioning System for Cooling",
        sectoral_scope="Energy demand",
        approved_on=date(2015, 3, 9),
    )


def project(
    author: str, *, created: datetime = DECISION_CREATED, partnership: str = PARTNERSHIP
) -> ProjectRecord:
    partner = partnership[3:]
    return ProjectRecord(
        **_base(author, partnership, created),
        project_id=PROJECT_ID,
        title="Energy Saving for Cold Storage with High Efficiency Refrigeration System",
        status="registered",
        methodologies=("ID_AM004",),
        participants=(
            Participant(name="Mayekawa Manufacturing Co., Ltd.", side="JP"),
            Participant(name="PT Adib Global Food Supplies", side=partner),
        ),
        allocation=(
            Allocation(holder="Government of Japan", side="JP", percent=67),
            Allocation(holder="Mayekawa Manufacturing Co., Ltd.", side="JP", percent=10),
            Allocation(holder="Government of Indonesia", side=partner, percent=13),
            Allocation(holder="PT Adib Global Food Supplies", side=partner, percent=10),
        ),
        registered_on=date(2015, 10, 30),
    )


def issuance(
    registry: str,
    *,
    author: str | None = None,
    created: datetime = DECISION_CREATED + timedelta(days=3),
    partnership: str = PARTNERSHIP,
) -> IssuanceRecord:
    """The government-holding part of ``registry``'s share of the first issuance."""
    amount = 27 if registry == "JP" else 5
    return IssuanceRecord(
        **_base(author or registry, partnership, created),
        registry=registry,
        issuance_id=f"{registry}-2016-0001",
        decision=DecisionRef(project_id=PROJECT_ID, monitoring_period=MONITORING_PERIOD),
        issued_on=created.date(),
        amount=amount,
        account=Account(id=f"{registry}-GOV-001", type="government_holding"),
        blocks=(
            SerialBlock(
                start=f"{registry}-{PROJECT_ID}-2015-000001",
                end=f"{registry}-{PROJECT_ID}-2015-{amount:06d}",
                quantity=amount,
                vintage=2015,
            ),
        ),
    )


def transaction(
    registry: str,
    *,
    author: str | None = None,
    created: datetime = DECISION_CREATED + timedelta(days=10),
    partnership: str = PARTNERSHIP,
) -> TransactionRecord:
    return TransactionRecord(
        **_base(author or registry, partnership, created),
        registry=registry,
        txn_id=f"{registry}-T-2016-0001",
        type="retirement",
        executed_on=created.date(),
        source=Account(id=f"{registry}-GOV-001", type="government_holding"),
        destination=Account(id=f"{registry}-RET-001", type="retirement"),
        amount=2,
        blocks=(
            SerialBlock(
                start=f"{registry}-{PROJECT_ID}-2015-000001",
                end=f"{registry}-{PROJECT_ID}-2015-000002",
                quantity=2,
                vintage=2015,
            ),
        ),
    )


def authorization(
    party: str,
    *,
    author: str | None = None,
    created: datetime = DECISION_CREATED,
    partnership: str = PARTNERSHIP,
) -> AuthorizationRecord:
    return AuthorizationRecord(
        **_base(author or party, partnership, created),
        party=party,
        authorization_id=f"{party}-A6.2-001",
        cooperative_approach="JCM",
        authorized_on=created.date(),
        cap=1000,
        purposes=("ndc",),
        projects=(PROJECT_ID,),
        vintages=(2015,),
    )


def itmo_action(
    party: str,
    *,
    author: str | None = None,
    created: datetime = DECISION_CREATED,
    partnership: str = PARTNERSHIP,
) -> ItmoActionRecord:
    return ItmoActionRecord(
        **_base(author or party, partnership, created),
        party=party,
        action_id=f"{party}-AEF-0001",
        action="first_transfer",
        occurred_on=created.date(),
        authorization_id=f"{party}-A6.2-001",
        project_id=PROJECT_ID,
        vintage=2015,
        quantity=5,
        purpose="ndc",
    )


def endorsement(
    author: str,
    endorses: str = "ab" * 32,
    endorsed_kind: str = "issuance_decision",
    *,
    created: datetime = DECISION_CREATED + timedelta(hours=1),
    partnership: str = PARTNERSHIP,
) -> EndorsementRecord:
    """``author``'s endorsement of the record whose id is ``endorses``."""
    return EndorsementRecord(
        **_base(author, partnership, created),
        endorses=endorses,
        endorsed_kind=endorsed_kind,  # type: ignore[arg-type]
        note="endorsed by the secretariat",
    )


def resolution(
    author: str, *, created: datetime = DECISION_CREATED, partnership: str = PARTNERSHIP
) -> ResolutionRecord:
    return ResolutionRecord(
        **_base(author, partnership, created),
        discrepancy_id="0123456789abcdef",
        action="explain",
        explanation="the Indonesian share was issued in two blocks",
    )


SIDE_FIELD: dict[str, str] = {
    "methodology": "author",
    "project": "author",
    "issuance_decision": "author",
    "issuance": "registry",
    "transaction": "registry",
    "authorization": "party",
    "itmo_action": "party",
    "endorsement": "author",
    "resolution": "author",
}
"""For each kind, the field naming the side whose node may sign it (DESIGN §2)."""


def record_for(
    kind: str,
    side: str,
    *,
    created: datetime | None = None,
    partnership: str = PARTNERSHIP,
) -> Record:
    """One record of ``kind`` about ``side``: its registry, party or author."""
    kw: dict[str, Any] = {"partnership": partnership}
    if created is not None:
        kw["created"] = created
    if kind == "issuance_decision":
        return first_issuance_decision(author=side, **kw)
    builders: dict[str, Any] = {
        "methodology": methodology,
        "project": project,
        "issuance": issuance,
        "transaction": transaction,
        "authorization": authorization,
        "itmo_action": itmo_action,
        "endorsement": endorsement,
        "resolution": resolution,
    }
    if kind not in builders:
        raise ValueError(f"no builder for kind {kind!r}")
    record: Record = builders[kind](side, **kw)
    return record


def signed(record: Record, *keys: PrivateKey) -> bytes:
    """The record's envelope signed by ``keys``, in order."""
    return sign_record(record, list(keys))
