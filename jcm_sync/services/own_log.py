"""The one way into a node's own log: decode, authorise, sign, hold back quarantined
moves, append and checkpoint.

Why this module exists: ``jcm-sync import``, ``jcm-sync log append`` (on a node's own
log), reconciliation's resolutions and the tests all write records into the node's own
log. Each check that guards it (the trust root's authority, quarantine) must hold
whoever writes, so there is one function that does it all: ``append_own``.

Rules:

1. **Decoded once.** A document is a record's JSON, a signed DSSE envelope (told apart
   by its ``payloadType`` member), or an already built ``Record``. A record is decoded
   (and validated) once and signed with the node's signing key (and its ML-DSA-44 one,
   ``[keys] signing_pq``: a hybrid envelope, ADR 0036); an envelope is verified
   once. What later steps need (the record, its signers, its bytes) is taken from that
   ``Verification``; nothing is decoded again before the store writes it.
2. **Authority.** Every envelope, including the ones signed here, is verified with the
   log service's own verifier (``LogService.verifier``: signatures, schema, the signer's
   key role for the kind and the side; ``log_service`` rule 1), so a record the node's
   key may not sign, or that another node authored, is refused before anything else.
3. **Quarantine** (``reconciliation`` rule 6): the batch is refused whole if one of its
   transactions moves a range held by a discrepancy the last run found open and still
   open with this batch folded in; nothing is stored then.
4. **Append and checkpoint.** The batch is appended in one transaction at the end of the
   own log and a checkpoint of the new tree is signed (unless the caller asks not to).
   Verification, signing and decoding run off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TypeAlias

import msgspec

from jcm_sync.core.envelope import sign_record
from jcm_sync.core.records import Record, ResolutionRecord, decode_record, encode_record
from jcm_sync.core.trust import Verification
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.services.node import Node
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.store import AppendResult

Document: TypeAlias = bytes | Record
"""A record's JSON, a signed envelope, or a built record (rule 1)."""


def split_documents(data: bytes, where: str) -> list[bytes]:
    """One JSON document per line, or a JSON array, or a single document.

    An array is only split (each item kept as its exact bytes), not decoded: each item
    is decoded once, by ``append_own`` (rule 1).
    """
    text = data.strip()
    if not text:
        raise BadDataError("no records in file", where=where)
    if text.startswith(b"["):
        try:
            items = msgspec.json.decode(text, type=list[msgspec.Raw])
        except msgspec.MsgspecError as exc:  # the decoder's text is in the message
            raise BadDataError(f"not valid JSON: {exc}", where=where) from None
        except RecursionError:  # msgspec's nesting limit; its traceback says nothing more
            raise BadDataError("JSON is nested too deeply to hold records", where=where) from None
        return [bytes(i) for i in items]
    return [line for line in text.splitlines() if line.strip()]


def _is_envelope(doc: bytes) -> bool:
    return b'"payloadType"' in doc


def verify_documents(
    node: Node,
    partnership: str,
    documents: Sequence[Document],
    where: Sequence[str] | None = None,
    *,
    sign: bool = True,
) -> list[Verification]:
    """Rules 1 and 2: each document decoded once, signed if it is a record, verified.

    ``where`` names each document (``FILE:LINE``) in the error a bad record raises.
    Without ``sign`` every byte string is taken as an envelope (``jcm-sync log append``).
    CPU-bound: ``append_own`` runs it on a worker thread.
    """
    verify = node.logs(partnership).service.verifier()
    keys = node.keys.record_keys()  # hybrid with an ML-DSA-44 signing key (ADR 0036)
    out = []
    for n, doc in enumerate(documents):
        if isinstance(doc, bytes) and (not sign or _is_envelope(doc)):
            out.append(verify(doc))
            continue
        if isinstance(doc, bytes):
            try:
                doc = decode_record(doc)
            except BadDataError as exc:
                if where is None:
                    raise
                # the file and line name the record; the decoder's traceback adds nothing
                raise BadDataError(str(exc), where=where[n]) from None
        out.append(verify(sign_record(doc, keys)))
    return out


async def append_verified(
    node: Node, partnership: str, verified: Sequence[Verification], *, checkpoint: bool = True
) -> AppendResult:
    """Rules 3 and 4 for records ``verify_documents`` verified: refuse quarantined moves,
    append, sign a checkpoint."""
    if not verified:
        raise NotFoundError("no records to import")
    await ReconcileService(node).check(partnership, verified)
    return await node.logs(partnership).service.append_verified(verified, sign=checkpoint)


async def append_own(
    node: Node,
    partnership: str,
    documents: Sequence[Document],
    *,
    where: Sequence[str] | None = None,
    sign: bool = True,
    checkpoint: bool = True,
) -> AppendResult:
    """Write ``documents`` into the node's own log in ``partnership`` (all the rules);
    ``sign`` and ``where`` as ``verify_documents`` takes them."""
    verified = await asyncio.to_thread(
        functools.partial(verify_documents, node, partnership, documents, where, sign=sign)
    )
    return await append_verified(node, partnership, verified, checkpoint=checkpoint)


async def resolve(
    node: Node,
    discrepancy: str,
    *,
    partnership: str | None = None,
    explanation: str | None = None,
    corrections: Sequence[str] = (),
) -> tuple[str, str, bytes]:
    """Sign a resolution of a discrepancy into the node's own log (``reconciliation``
    rule 5); return (partnership, record id, envelope).

    A new resolution of the same discrepancy supersedes the node's previous one.
    """
    if (explanation is None) == (not corrections):
        raise BadDataError("a resolution either explains (text) or names corrections")
    pid, _ = await ReconcileService(node).find(discrepancy, partnership)
    own, store = node.logs(pid).own, node.store
    for rid in corrections:
        await store.record(rid)  # NotFoundError: a correction must be a record we hold
    previous = [
        r
        for r in await store.records("resolution", (discrepancy, node.id), partnership=pid)
        if r.log == own
    ]
    supersedes = None
    if previous:
        supersedes = (await store.latest_version(previous[-1].record_id)).record_id
    record = ResolutionRecord(
        partnership=pid,
        author=node.id,
        created=node.clock(),
        supersedes=supersedes,
        discrepancy_id=discrepancy,
        action="explain" if explanation is not None else "correct",
        explanation=explanation or "",
        corrections=tuple(corrections),
    )
    # the constructor does not check field constraints; a decode of the encoding does
    (v,) = verify_documents(node, pid, [encode_record(record)])
    await append_verified(node, pid, [v])
    return pid, v.record_id, v.raw
