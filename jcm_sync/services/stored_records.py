"""Stored records by id: find one by a short id, show it with its envelope, and endorse
the counterpart's Joint Committee records.

Why this module exists: an operator reads record ids in reconciliation findings, in
``jcm-sync log show`` and in exports, usually cut to 12 digits; to look at a record or
to countersign the other secretariat's JC record they must not copy 64 hex digits or
write an endorsement as JSON by hand. ``jcm-sync record show`` and ``jcm-sync endorse``
are thin edges over these functions (docs/adr/0024-export-record-show-and-endorse.md).

Rules:

1. **Ids.** A record is named by its full id (64 hex digits) or by a prefix of at least
   ``MIN_SHORT_ID`` hex digits. A prefix must name exactly one record in the logs of the
   node's partnerships (both logs of each, or of the one given): none is a
   ``NotFoundError``, several a ``BadDataError`` listing them. A full id is looked up in
   the record index; a prefix by reading the record ids of the logs a chunk at a time
   (the index has no prefix lookup; reading a 100,000-entry log takes about a second).
2. **Show.** A stored record is decoded from its stored envelope without verifying its
   signatures again (the store verified them before writing, ``store`` invariant 1);
   each signature's key id is mapped to its node and roles through the partnership's
   current trust root (a key rotated out of it is shown as not listed). With it: the log
   (node, origin) and index holding it, when it was appended, the endorsements the store
   holds of it and, for a JC record, whether both secretariats have signed or endorsed
   it, and which one is missing.
3. **Endorse.** Only a JC record (``methodology``, ``project``, ``issuance_decision``) of
   the counterpart's log may be endorsed, and the kind endorsed is read from the stored
   record. Every id is resolved and checked before anything is signed: an unknown or
   ambiguous id, a record of the node's own log, or a record of another kind refuses
   the whole command. A record this side has already signed or endorsed (its signature
   in the envelope, an endorsement of it in the own log, or a co-signed copy with the
   same payload in the own log) is not endorsed again: it is reported as such, and
   that is not a failure. The endorsements of a partnership are signed and appended in
   one batch through ``own_log.append_own``, the one write path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from jcm_sync.core.envelope import open_envelope
from jcm_sync.core.reconcile.inputs import decode_payload
from jcm_sync.core.records import (
    JC_KINDS,
    EndorsementRecord,
    Record,
    encode_record,
    kind_of_payload_type,
    to_builtins,
)
from jcm_sync.errors import BadDataError, EnvelopeFormatError, NotFoundError
from jcm_sync.services.node import Node
from jcm_sync.services.own_log import append_own
from jcm_sync.store import IndexedRecord, LogRef

MIN_SHORT_ID: Final = 8
"""Fewest hex digits a short record id may have (4 billion prefixes: ambiguity is rare)."""

SCAN_CHUNK: Final = 2000
"""Entries read at a time when a short id is looked up (rule 1)."""

_HEX: Final = frozenset("0123456789abcdef")


# --- rule 1: ids ------------------------------------------------------------------------


def _check_id_text(text: str) -> str:
    rid = text.strip().lower()
    if not rid or not set(rid) <= _HEX:
        raise BadDataError(f"{text!r} is not a record id (hex digits)", where="record id")
    if len(rid) > 64:
        raise BadDataError(
            f"{text!r} is longer than a record id (64 hex digits)", where="record id"
        )
    if len(rid) < MIN_SHORT_ID:
        raise BadDataError(
            f"{text!r} is too short: give at least {MIN_SHORT_ID} hex digits of the record id",
            where="record id",
        )
    return rid


def _logs(node: Node, partnership: str | None) -> list[LogRef]:
    pids = [partnership] if partnership else sorted(node.partnerships)
    out = []
    for pid in pids:
        logs = node.logs(pid)  # NotFoundError for a partnership the node does not serve
        out += [logs.own, logs.replica]
    return out


async def resolve_id(node: Node, text: str, *, partnership: str | None = None) -> IndexedRecord:
    """Rule 1: the stored record a full or short id names."""
    rid = _check_id_text(text)
    logs = _logs(node, partnership)
    if len(rid) == 64:
        try:
            found = await node.store.record(rid)
        except NotFoundError:
            found = None
        if found is not None and found.log in logs:
            return found
        raise NotFoundError(f"no record {rid[:16]} in the logs of {_names(logs)}")
    matches: list[str] = []
    for ref in logs:
        size = (await node.store.tree_head(ref)).size
        for lo in range(0, size, SCAN_CHUNK):
            for e in await node.store.entries(ref, lo, min(size, lo + SCAN_CHUNK)):
                if e.record_id.startswith(rid):
                    matches.append(e.record_id)
    if not matches:
        raise NotFoundError(f"no record id starts with {rid} in the logs of {_names(logs)}")
    if len(set(matches)) > 1:
        err = BadDataError(
            f"{rid} is ambiguous: {len(matches)} records start with it ("
            + ", ".join(m[:16] for m in sorted(set(matches))[:5])
            + ")",
            where="record id",
        )
        err.next_step = "give more digits of the record id"
        raise err
    return await node.store.record(matches[0])


def _names(logs: Sequence[LogRef]) -> str:
    return ", ".join(sorted({ref.partnership for ref in logs}))


# --- rule 2: show -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignerView:
    keyid: str
    node: str | None  # None: the key is not in the partnership's current trust root
    roles: tuple[str, ...]


@dataclass(frozen=True)
class StoredRecord:
    """A stored record, its envelope and where it sits (rule 2)."""

    record_id: str
    kind: str
    record: Record
    payload_type: str
    payload: bytes
    envelope: bytes
    signers: tuple[SignerView, ...]
    partnership: str
    log: LogRef
    own: bool
    index: int
    appended_at: datetime
    endorsements: tuple[IndexedRecord, ...] = ()
    required: frozenset[str] = field(default_factory=frozenset)

    @property
    def signed_by(self) -> frozenset[str]:
        return frozenset(s.node for s in self.signers if s.node is not None)

    @property
    def endorsed_by(self) -> frozenset[str]:
        return frozenset(e.author for e in self.endorsements)

    @property
    def missing(self) -> tuple[str, ...]:
        """For a JC record: the secretariats that have neither signed nor endorsed it."""
        return tuple(sorted(self.required - self.signed_by - self.endorsed_by))

    def to_builtins(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "kind": self.kind,
            "key": list(self.record.key()),
            "partnership": self.partnership,
            "log": {
                "node": self.log.node,
                "origin": self.log.origin,
                "own": self.own,
                "index": self.index,
            },
            "appended_at": self.appended_at.isoformat(),
            "envelope": {
                "payload_type": self.payload_type,
                "signatures": [
                    {"keyid": s.keyid, "node": s.node, "roles": list(s.roles)} for s in self.signers
                ],
            },
            "endorsements": [
                {"record_id": e.record_id, "author": e.author, "log": e.log.node, "index": e.index}
                for e in self.endorsements
            ],
            "jc_record": self.kind in JC_KINDS,
            "effective": not self.missing,
            "missing": list(self.missing),
            "record": to_builtins(self.record),
        }


async def load(node: Node, found: IndexedRecord) -> StoredRecord:
    """Rule 2: decode the stored envelope of ``found`` and describe its signers."""
    entry = await node.store.entry(found.log, found.index)
    env = open_envelope(entry.envelope)
    kind = kind_of_payload_type(env.payloadType)
    if kind is None:  # the store verified it, so this is a corrupt row, not input
        raise EnvelopeFormatError(
            f"payload type {env.payloadType!r} is not a jcm-sync record type",
            where=f"{found.log.origin} entry {found.index}",
        )
    record = decode_payload(env.payload, kind)
    root = node.logs(found.partnership).root
    signers = []
    for sig in env.signatures:
        key = root.key(sig.keyid)
        signers.append(
            SignerView(sig.keyid, key.node if key else None, tuple(key.roles) if key else ())
        )
    endorsements = tuple(await node.store.endorsements(found.record_id))
    required = frozenset({"JP", record.partner}) if kind in JC_KINDS else frozenset()
    return StoredRecord(
        record_id=found.record_id,
        kind=kind,
        record=record,
        payload_type=env.payloadType,
        payload=env.payload,
        envelope=entry.envelope,
        signers=tuple(signers),
        partnership=found.partnership,
        log=found.log,
        own=found.log == node.logs(found.partnership).own,
        index=found.index,
        appended_at=entry.appended_at,
        endorsements=endorsements,
        required=required,
    )


async def show(node: Node, text: str, *, partnership: str | None = None) -> StoredRecord:
    """Rules 1 and 2: the stored record a full or short id names."""
    return await load(node, await resolve_id(node, text, partnership=partnership))


# --- rule 3: endorse --------------------------------------------------------------------


@dataclass(frozen=True)
class Endorsed:
    """One id of an ``endorse`` command: what it named and what became of it."""

    target: StoredRecord
    endorsement_id: str | None = None  # None: already endorsed or signed by this side
    already: str = ""  # how this side already stands behind it

    def to_builtins(self) -> dict[str, Any]:
        return {
            "record_id": self.target.record_id,
            "kind": self.target.kind,
            "key": list(self.target.record.key()),
            "partnership": self.target.partnership,
            "endorsement_id": self.endorsement_id,
            "already": self.already or None,
        }


async def _already(node: Node, target: StoredRecord) -> str:
    """How this node already stands behind ``target``, or "" (rule 3)."""
    me = node.id
    if me in target.signed_by:
        return f"its envelope carries {me}'s signature"
    own = node.logs(target.partnership).own
    for e in target.endorsements:
        if e.author == me and e.log == own:
            return f"{me} endorsed it in record {e.record_id[:12]}"
    for other in await node.store.records(
        target.kind, target.record.key(), partnership=target.partnership
    ):
        if other.log != own:
            continue
        if open_envelope(await node.store.envelope(other.record_id)).payload == target.payload:
            return f"{me}'s log holds a co-signed copy, record {other.record_id[:12]}"
    return ""


async def endorse(
    node: Node, ids: Sequence[str], *, partnership: str | None = None, note: str = ""
) -> list[Endorsed]:
    """Rule 3: endorse the counterpart's JC records ``ids`` (full or short) in the
    node's own log; return one ``Endorsed`` per distinct record, in the order given."""
    if not ids:
        raise BadDataError("no record ids to endorse")
    targets: dict[str, StoredRecord] = {}
    for text in ids:
        found = await resolve_id(node, text, partnership=partnership)
        if found.record_id in targets:
            continue
        target = await load(node, found)
        short = target.record_id[:12]
        if target.own:
            err = BadDataError(
                f"{target.kind} {short} is in {node.id}'s own log: a node endorses only the "
                f"other secretariat's records",
                where=text,
            )
            err.next_step = "give the id of a record of the counterpart's log"
            raise err
        if target.kind not in JC_KINDS:
            err = BadDataError(
                f"{target.kind} {short} is not a Joint Committee record (only "
                f"{', '.join(sorted(JC_KINDS))} records are endorsed)",
                where=text,
            )
            err.next_step = "give the id of a methodology, project or issuance_decision record"
            raise err
        targets[target.record_id] = target
    results: dict[str, Endorsed] = {}
    batches: dict[str, list[tuple[str, EndorsementRecord]]] = {}
    for rid, target in targets.items():
        already = await _already(node, target)
        if already:
            results[rid] = Endorsed(target, already=already)
            continue
        rec = EndorsementRecord(
            partnership=target.partnership,
            author=node.id,
            created=node.clock(),
            endorses=rid,
            endorsed_kind=target.kind,  # type: ignore[arg-type]  # one of JC_KINDS
            note=note,
        )
        batches.setdefault(target.partnership, []).append((rid, rec))
    for pid, batch in batches.items():
        # a decode of the encoding checks the field constraints the constructor does not
        docs = [encode_record(rec) for _, rec in batch]
        await append_own(node, pid, docs, where=[f"endorsement of {rid[:12]}" for rid, _ in batch])
        for rid, _ in batch:
            endorsement = await _endorsement_by(node, pid, rid)
            results[rid] = Endorsed(targets[rid], endorsement_id=endorsement)
    return [results[rid] for rid in targets]


async def _endorsement_by(node: Node, partnership: str, rid: str) -> str:
    """The id of this node's endorsement of ``rid`` in its own log, just appended."""
    own = node.logs(partnership).own
    for e in reversed(await node.store.endorsements(rid)):
        if e.log == own and e.author == node.id:
            return e.record_id
    raise NotFoundError(f"the endorsement of {rid[:12]} is not in the own log")  # pragma: no cover
