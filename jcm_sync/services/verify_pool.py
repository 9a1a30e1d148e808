"""Signature checks of large batches on every core.

Why this module exists: ingest at the hub is bound by Ed25519 verification (about
100 µs per signature, over half of the hub's CPU per record). Python runs it on one
core, and on the event loop's thread, which a 500-entry push would block for tens
of milliseconds. This pool runs the signature part of ``verify_envelope`` in worker
processes, chunk by chunk, while the loop serves other partners; the hub then
completes the cheap part (schema, authority, partnership) in-process with
``trust.verify_record(..., verified=...)`` as for any other record.

Rules:

1. A worker returns, per envelope, the key ids that signed it or the error that
   refused it (class name, message, location); nothing else crosses the process
   boundary, so no exception or key object has to be pickled.
2. The parent rebuilds the same typed error from ``jcm_sync.errors`` (or the module
   that defines it), so a refused push answers exactly as it would without the pool.
3. Small batches are not worth the inter-process cost and are verified in-process.
4. Workers are started with ``spawn``: the hub runs threads (the SQLite store's), which
   ``fork`` would copy in an undefined state.
5. The cheap part of a pooled batch (decode, schema, authority: some 40 µs a record) is
   done for the whole batch on a thread before the verify function is returned, not
   record by record inside the store's append on the event loop (ADR 0010): a 1,000-entry
   push would otherwise hold the loop for tens of milliseconds. The function returned
   then only looks results up, raising a record's error when the store asks for it, in
   the store's order, so a refused batch answers as before.
6. Revocation is judged at receipt (trust rule 3): at ``now``, the hub's clock when the
   push arrived, except for entries the replica already holds, which the caller maps to
   the time they were appended (a re-sent batch stays idempotent after a revocation).
7. Each envelope is hashed once per purpose in the parent: its record id when its
   ``VerifiedEnvelope`` is built (then used for the revocation lookup and by
   ``verify_record``), its leaf hash on the same thread (then used by the hub's root
   check and the store, ``log_sync`` rule 4). The parent opens the envelope again after
   the worker did: only key ids cross the process boundary (rule 1), and opening
   (about 2 µs) is cheaper than pickling the decoded envelope back.
8. A worker keeps nothing between calls: it builds the chunk's public keys from their
   raw bytes (microseconds, against milliseconds of signatures per chunk), so there is
   no per-process cache and no module-level state.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from jcm_sync import errors
from jcm_sync.core import checkpoint
from jcm_sync.core.envelope import PublicKey, VerifiedEnvelope, open_envelope, verify_envelope
from jcm_sync.core.trust import TrustRoot, Verification, verify_record
from jcm_sync.errors import JcmSyncError, UntrustedError
from jcm_sync.services.log_service import record_verifier
from jcm_sync.services.log_sync import VerifiedBatch, verify_batch

MIN_POOLED_BATCH = 64

Outcome = tuple[str, ...]
"""("ok", keyid, ...) or ("error", class name, message, where)."""


def check_signatures(keys: tuple[tuple[str, bytes], ...], envelopes: list[bytes]) -> list[Outcome]:
    """Worker side (rules 1 and 8): verify every envelope's signatures under ``keys``."""
    pubs = {kid: PublicKey.from_raw(raw) for kid, raw in keys}
    out: list[Outcome] = []
    for raw in envelopes:
        try:
            v = verify_envelope(raw, pubs)
        except JcmSyncError as exc:
            out.append(("error", type(exc).__name__, exc.message, exc.where or ""))
        else:
            out.append(("ok", *v.signer_ids))
    return out


def _error(name: str, message: str, where: str) -> JcmSyncError:
    """Rule 2: the typed error a worker reported."""
    for module in (errors, checkpoint):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, JcmSyncError):
            try:
                return cls(message, where=where or None)
            except TypeError:
                break
    return UntrustedError(message, where=where or None)


class VerifyPool:
    """A process pool that checks signatures of large batches."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def verifier(
        self,
        root: TrustRoot,
        envelopes: Sequence[bytes],
        now: datetime,
        received: Mapping[str, datetime] | None = None,
    ) -> VerifiedBatch:
        """The batch verified, as a verify function for ``store.append_entries`` that
        also gives the root check its leaf hashes (``log_sync`` rule 4).

        Records are judged as received at ``now`` (rule 6), except those ``received``
        maps (by record id) to the time this node first received them.
        """
        single = record_verifier(root, now, received)
        if len(envelopes) < MIN_POOLED_BATCH or self.workers < 2:
            return verify_batch(single, envelopes)  # rule 3
        keys = tuple((k.keyid, k.public_key) for k in root.keys)
        step = -(-len(envelopes) // self.workers)
        chunks = [list(envelopes[i : i + step]) for i in range(0, len(envelopes), step)]
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor(), check_signatures, keys, c) for c in chunks)
        )
        outcomes: dict[bytes, Outcome] = {}
        for chunk, result in zip(chunks, results, strict=True):
            outcomes.update(zip(chunk, result, strict=True))
        pubs = root.public_keys()

        def complete(raw: bytes, outcome: Outcome) -> Verification:
            if outcome[0] == "error":
                raise _error(outcome[1], outcome[2], outcome[3])
            ve = VerifiedEnvelope(
                raw=raw, envelope=open_envelope(raw), signers=tuple(pubs[k] for k in outcome[1:])
            )
            at = received.get(ve.record_id) if received else None  # rule 7: hashed once
            v = verify_record(root, raw, now, verified=ve, received=at)
            v.leaf_hash  # noqa: B018 (rule 7: hashed here, on the thread, not on the loop)
            return v

        def complete_all() -> dict[bytes, Verification | JcmSyncError]:
            done: dict[bytes, Verification | JcmSyncError] = {}
            for raw, outcome in outcomes.items():
                try:
                    done[raw] = complete(raw, outcome)
                except JcmSyncError as exc:
                    done[raw] = exc
            return done

        return VerifiedBatch(await asyncio.to_thread(complete_all), single)  # rule 5

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
