"""Mutual witnessing: each node a C2SP tlog-witness of its counterpart's log (ADR 0032, 0037).

Why this module exists: a checkpoint signed by its own log says what that log claims; a
checkpoint cosigned by the counterpart says that, at a stated time, the other party had
checked it extends everything it saw before. That is the evidence a third party can
verify from files alone, years later. Both nodes serve the spec's endpoint with one
function (``add_checkpoint_as_witness``, mounted by ``net/witness.py``): the hub on its
partners' port, an agent with ``[witness] listen`` on a listener of its own
(``net/witness_listener.py``). Each log asks its counterpart to witness it with
``cosign_own_log``: the agent after a push, the hub on its schedule when the partner's
agent has a ``witness_url`` (``services/witness_push.py``). An agent without a listener
(behind NAT) runs the same ``Witness`` on the checkpoint it pulled and delivers its
cosignature to the hub through a signed request (``witness_counterpart``). Both publish
their checkpoints with the counterpart's cosignatures attached (``cosigned_note``).

Rules:

1. ``Witness.add_checkpoint`` judges a tlog-witness ``add-checkpoint`` body with
   ``core/witness_wire.judge_add_checkpoint`` against the head the store holds for the
   origin, then compare-and-persists the new head (``Store.persist_witnessed``, one
   statement) and only then cosigns. A lost race is the spec's 409 with the size now
   held; nothing is cosigned that was not persisted.
2. A node cosigns with its checkpoint keys (Ed25519, and ML-DSA-44 with ``[keys]
   checkpoint_pq``, ADR 0036) under the cosigner name
   ``<origin prefix>/witness/<node>`` (``cosigner_name``): one name per key, whatever the
   partnership, as tlog-cosignature requires of an Ed25519 cosigner. The counterpart's
   cosigner keys are its checkpoint-role keys in the trust root (``cosigner_verifiers``).
3. Cosignatures are stored only after they verified, and only for a checkpoint the store
   holds, its text byte for byte the one cosigned (``accept_cosignatures``).
4. Witnessing never fails a push, a pull or the hub's job: a refusal or an outage is
   logged and the next exchange (or run) tries again (``cosign_own_log``,
   ``witness_counterpart``).
   A 409 is retried once from the size the witness says it holds.
5. A client that cannot witness (an older hub, a test's lying hub) is skipped: witnessing
   needs a ``WitnessPort``.
6. Only the counterpart may ask a node to witness (``add_checkpoint_as_witness``): a
   caller of another partnership, or a node's own key, is 403 before the body is judged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PublicKey

from jcm_sync.core import checkpoint
from jcm_sync.core.cosignature import CosignatureVerifier, CosignerPrivateKey, cosign
from jcm_sync.core.envelope import PublicKey
from jcm_sync.core.note import NoteSignature, NoteVerifier, add_signature_lines, parse_note
from jcm_sync.core.pq import ML_DSA_44_PUBLIC_KEY_SIZE
from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.core.witness_wire import (
    WitnessRefusedError,
    attach_cosignatures,
    format_add_checkpoint,
    format_cosignature_response,
    judge_add_checkpoint,
    parse_add_checkpoint,
    parse_cosignature_response,
)
from jcm_sync.errors import (
    ConflictError,
    ForbiddenError,
    JcmSyncError,
    NotFoundError,
    UnknownKeyError,
)
from jcm_sync.services.checkpoint_algorithms import pq_checkpoint_verifiers
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.services.node import Node
from jcm_sync.store import LogRef, Store, TreeHead

__all__ = [
    "CosignedView",
    "Witness",
    "WitnessPort",
    "accept_cosignatures",
    "add_checkpoint_as_witness",
    "cosign_own_log",
    "cosigned_note",
    "cosigner_name",
    "cosigner_verifiers",
    "node_witness",
    "witness_counterpart",
    "witness_exchange",
]

log = logging.getLogger("jcm_sync.services.witness")


def cosigner_name(prefix: str, node: str) -> str:
    """Rule 2: ``jcm-sync.example/witness/MN``, one name per node and key."""
    return f"{prefix}/witness/{node}"


def cosigner_verifiers(
    root: TrustRoot, prefix: str, node: str, at: datetime
) -> list[CosignatureVerifier]:
    """The cosigner keys of ``node``: its checkpoint-role keys usable at ``at`` (rule 2)."""
    name = cosigner_name(prefix, node)
    out = []
    for k in root.keys_for(node, "checkpoint", at):
        try:
            if len(k.public_key) == ML_DSA_44_PUBLIC_KEY_SIZE:  # subtree/v1, type 0x06
                out.append(
                    CosignatureVerifier(name, MLDSA44PublicKey.from_public_bytes(k.public_key))
                )
            else:  # cosignature/v1, type 0x04
                out.append(CosignatureVerifier(name, PublicKey.from_raw(k.public_key).key))
        except (JcmSyncError, ValueError):  # a key no cosigner can hold
            continue
    return out


@dataclass
class Witness:
    """A tlog-witness over a store: judge, compare-and-persist, then cosign (rule 1)."""

    store: Store
    name: str
    #: one cosignature per key: Ed25519 (``cosignature/v1``) and, where the node has one,
    #: ML-DSA-44 (``subtree/v1``), all under ``name``
    keys: Sequence[CosignerPrivateKey]
    clock: Callable[[], datetime]

    async def add_checkpoint(
        self, body: bytes, logs: Mapping[str, Sequence[NoteVerifier]]
    ) -> tuple[checkpoint.Checkpoint, list[NoteSignature]]:
        """The checkpoint of an accepted request and our cosignature lines of it;
        ``WitnessRefusedError`` with the spec's status otherwise. ``logs`` maps each
        witnessed origin to its log's keys."""
        request = parse_add_checkpoint(body)
        held = await self.store.witnessed(request.origin) if logs.get(request.origin) else None
        accepted = judge_add_checkpoint(
            None if held is None else (held.size, held.root), request, logs
        )
        cp = accepted.checkpoint
        if not await self.store.persist_witnessed(cp.origin, held, TreeHead(cp.size, cp.root_hash)):
            now_held = await self.store.witnessed(cp.origin)
            size = 0 if now_held is None else now_held.size
            raise WitnessRefusedError(
                409,
                "witness-size-mismatch",
                f"another request moved the witnessed size of {cp.origin} to {size} meanwhile",
                witness_size=size,
            )
        now = int(self.clock().timestamp())
        return cp, [cosign(accepted.text, self.name, key, now) for key in self.keys]


def node_witness(node: Node) -> Witness:
    """This node's witness: its checkpoint key under its cosigner name (rule 2)."""
    name = cosigner_name(node.cfg.node.origin_prefix, node.cfg.node.id)
    pq = node.keys.checkpoint_pq  # ML-DSA-44 (type 0x06) beside Ed25519 (ADR 0036)
    keys: list[CosignerPrivateKey] = [node.keys.checkpoint.key]
    return Witness(node.store, name, keys if pq is None else [*keys, pq.key], node.clock)


def log_keys(root: TrustRoot, log_ref: LogRef, at: datetime) -> list[NoteVerifier]:
    """The keys of ``log_ref``'s checkpoints, Ed25519 and ML-DSA-44: a witness checks every
    line of them (a forged ML-DSA-44 line refuses the checkpoint)."""
    return [*checkpoint_verifiers(root, log_ref, at), *pq_checkpoint_verifiers(root, log_ref, at)]


async def cosigned_note(store: Store, log_ref: LogRef, size: int, note: bytes) -> bytes:
    """``note`` (the log's checkpoint of ``size``) with the cosignatures held for it."""
    held = await store.cosignatures(log_ref, size)
    return add_signature_lines(note, held) if held else note


def _check_member(caller: Caller, partnership: str) -> None:
    if caller.partnership != partnership:
        raise ForbiddenError(
            f"{caller.node} of {caller.partnership} may reach only partnership {caller.partnership}"
        )


# --- the witness endpoint, on either node ----------------------------------------------


async def add_checkpoint_as_witness(
    node: Node, caller: Caller, partnership: str, body: bytes
) -> bytes:
    """The spec's add-checkpoint for the counterpart's log of ``partnership``: the 200
    body, or ``WitnessRefusedError``. The hub witnesses the partner's log, an agent
    Japan's (``logs.replica`` on either node); only the counterpart may ask (403).

    The node's own cosignature is kept with its replica's checkpoint of that size, if
    held, so the replica's checkpoint is served cosigned."""
    _check_member(caller, partnership)
    logs = node.logs(partnership)
    replica = logs.replica
    if caller.node != replica.node:
        raise ForbiddenError(
            f"{caller.node} may not ask this witness; only {replica.node}, whose log it "
            "witnesses, may"
        )
    verifiers = {replica.origin: log_keys(logs.root, replica, node.clock())}
    cp, lines = await node_witness(node).add_checkpoint(body, verifiers)
    try:
        held = await node.store.checkpoint_at(replica, cp.size)
    except NotFoundError:  # the entries of that checkpoint have not reached the replica
        held = None
    if held is not None and held.root == cp.root_hash:
        await node.store.add_cosignatures(replica, cp.size, lines)
    return format_cosignature_response(lines)


@dataclass(frozen=True)
class CosignedView:
    """What the hub answers to a delivery of cosignatures."""

    size: int
    cosignatures: int


async def accept_cosignatures(
    node: Node, caller: Caller, partnership: str, log_node: str, note: bytes
) -> CosignedView:
    """Rule 3: keep the partner's verified cosignatures of Japan's checkpoint ``note``."""
    _check_member(caller, partnership)
    logs = node.logs(partnership)
    own, now = logs.own, node.clock()
    if log_node != own.node or caller.node != logs.replica.node:
        raise ForbiddenError(
            f"{caller.node} may deliver only its cosignatures of the log of {own.node}"
        )
    opened = checkpoint.open_checkpoint(
        note, checkpoint_verifiers(logs.root, own, now), origin=own.origin
    )
    held = await node.store.checkpoint_at(own, opened.checkpoint.size)
    if parse_note(held.note).text != parse_note(note).text:
        raise ConflictError(
            f"the cosigned checkpoint of size {held.size} is not the one this log holds",
            where="body",
        )
    prefix = node.cfg.node.origin_prefix
    witnesses = cosigner_verifiers(logs.root, prefix, caller.node, now)
    _, cosigs = attach_cosignatures(held.note, _lines_of(note), witnesses)
    if not cosigs:
        raise UnknownKeyError(
            f"the checkpoint carries no cosignature by the witness key of {caller.node} "
            f"({cosigner_name(prefix, caller.node)})"
        )
    trusted = {(c.name, c.key_id) for c in cosigs}
    lines = [s for s in parse_note(note).signatures if (s.name, s.key_id) in trusted]
    await node.store.add_cosignatures(own, held.size, lines)
    return CosignedView(size=held.size, cosignatures=len(lines))


def _lines_of(note: bytes) -> bytes:
    return "".join(s.line() for s in parse_note(note).signatures).encode("utf-8")


# --- asking the counterpart to witness -------------------------------------------------


@runtime_checkable
class WitnessPort(Protocol):
    """The counterpart's witnessing calls: the hub's as the agent makes them
    (``HubClient``, ``InProcessHub``), or an agent's listener's as the hub makes them
    (a ``HubClient`` of its ``witness_url``)."""

    async def add_checkpoint(self, pid: str, body: bytes) -> bytes:
        """POST an add-checkpoint body; the 200 body, or ``WitnessRefusedError`` for a 409
        of a size mismatch (with ``witness_size``), ``PeerRefusedError`` for the rest."""
        ...

    async def deliver_cosignatures(self, pid: str, node: str, note: bytes) -> CosignedView:
        """POST our cosigned copy of a checkpoint of ``node``'s log."""
        ...


async def cosign_own_log(node: Node, client: object, partnership: str) -> int | None:
    """Have the counterpart witness our latest checkpoint; keep its cosignature: the
    agent after a push, the hub on its schedule (``witness_push``).

    Returns the size now cosigned, or None if nothing was (rule 4, rule 5)."""
    if not isinstance(client, WitnessPort):
        return None
    logs, store = node.logs(partnership), node.store
    own = logs.own
    try:
        cp = await store.latest_checkpoint(own)
        if cp is None or cp.size == 0:
            return None
        prefix, now = node.cfg.node.origin_prefix, node.clock()
        hub_keys = cosigner_verifiers(logs.root, prefix, logs.replica.node, now)
        trusted = {(w.name, w.key_id) for w in hub_keys}
        if any((s.name, s.key_id) in trusted for s in await store.cosignatures(own, cp.size)):
            return cp.size  # already cosigned: no request
        old = await store.cosigned_size(own) or 0
        for _ in range(2):  # rule 4: once more from the witness's size after a 409
            if old > cp.size:
                return None
            proof = await store.consistency_proof(own, old, cp.size) if old else []
            try:
                answer = await client.add_checkpoint(
                    partnership, format_add_checkpoint(old, proof, cp.note)
                )
            except WitnessRefusedError as exc:
                if exc.witness_size is None:
                    raise
                old = exc.witness_size
                continue
            _, cosigs = attach_cosignatures(cp.note, answer, hub_keys)
            mine = {(c.name, c.key_id) for c in cosigs}
            lines = [s for s in parse_cosignature_response(answer) if (s.name, s.key_id) in mine]
            await store.add_cosignatures(own, cp.size, lines)
            return cp.size if lines else None
    except JcmSyncError as exc:
        log.warning("witness-failed", extra={"partnership": partnership, "log": own.origin,
                                             "error": exc.diagnostics()})  # fmt: skip
    return None


async def witness_counterpart(node: Node, client: object, partnership: str) -> int | None:
    """After a pull: witness Japan's latest checkpoint held with the same ``Witness`` the
    hub runs, and deliver the cosignature to the hub; keep it with the replica's
    checkpoint once the hub has it. Returns the size cosigned, or None (rules 4, 5)."""
    if not isinstance(client, WitnessPort):
        return None
    logs, store = node.logs(partnership), node.store
    rep = logs.replica
    try:
        cp = await store.latest_checkpoint(rep)
        if cp is None or cp.size == 0:
            return None
        witness = node_witness(node)
        if any(s.name == witness.name for s in await store.cosignatures(rep, cp.size)):
            return cp.size  # already witnessed and delivered: no request
        held = await store.witnessed(rep.origin)
        old = 0 if held is None else held.size
        if old > cp.size:
            return None  # witnessed further already (a newer pull is on its way)
        proof = await store.consistency_proof(rep, old, cp.size) if 0 < old < cp.size else []
        body = format_add_checkpoint(old, proof, cp.note)
        verifiers = {rep.origin: log_keys(logs.root, rep, node.clock())}
        _, lines = await witness.add_checkpoint(body, verifiers)
        await client.deliver_cosignatures(
            partnership, rep.node, add_signature_lines(cp.note, lines)
        )
        await store.add_cosignatures(rep, cp.size, lines)
        return cp.size
    except JcmSyncError as exc:
        log.warning("witness-failed", extra={"partnership": partnership, "log": rep.origin,
                                             "error": exc.diagnostics()})  # fmt: skip
    return None


async def witness_exchange(node: Node, client: object, partnership: str) -> None:
    """After a push or a pull that moved a log (``agent.Syncer``): the hub witnesses our
    latest checkpoint, we witness Japan's; each is a no-op once done, so either exchange
    also retries what an earlier one could not finish (rule 4)."""
    await cosign_own_log(node, client, partnership)
    await witness_counterpart(node, client, partnership)
