"""What the ML-DSA-44 option costs: hybrid records and checkpoints against Ed25519 alone.

Every figure has its baseline measured in the same run, on the same records:

* **record**: signing an issuance record into a DSSE envelope with the Ed25519 key alone
  and with the Ed25519 and ML-DSA-44 keys (hybrid); verifying it under a trust root
  that requires ``ed25519`` and one that requires ``both`` (``trust.verify_record``:
  every signature, schema, authority, the algorithm requirement); bytes per envelope.
* **checkpoint**: cosigning a checkpoint with Ed25519 ``cosignature/v1`` (type 0x04)
  and ML-DSA-44 ``subtree/v1`` (type 0x06); verifying the Ed25519 log signature alone
  against verifying it and an ML-DSA-44 signature line (``core/cosignature.py``).
* **ingest**: ``--n`` records appended into a SQLite log through ``append_entries``
  with ``verify_record`` as its verification, in batches of ``--batch``: Ed25519 records
  into one store, hybrid records (root requiring ``both``) into another.

Rates are the best of ``--rounds`` interleaved rounds, garbage collection paused. The
figures are informational: the script always exits 0.

    python bench/pq.py [--n N] [--ops K] [--rounds R] [--batch B]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from jcm_sync.core import cosignature
from jcm_sync.core.checkpoint import Checkpoint, format_body, open_checkpoint, sign_checkpoint
from jcm_sync.core.envelope import AnyPrivateKey, PrivateKey, sign_record
from jcm_sync.core.note import Verifier, add_signature_lines
from jcm_sync.core.pq import MLDSA44PrivateKey, Requirement, require_mldsa
from jcm_sync.core.records import (
    Account,
    DecisionRef,
    IssuanceRecord,
    Period,
    SerialBlock,
)
from jcm_sync.core.trust import KeyEntry, NodeEntry, TrustRoot, key_entry, verify_record
from jcm_sync.store import open_store
from jcm_sync.store.values import LogRef

NOW = datetime.now(UTC)
CREATED = NOW - timedelta(hours=1)
ORIGIN = "jcm-sync.example/JP-ID/JP"


def issuance(i: int) -> IssuanceRecord:
    return IssuanceRecord(
        partnership="JP-ID", author="JP", created=CREATED, registry="JP",
        issuance_id=f"JP-ISS-{i:07d}",
        decision=DecisionRef("ID002", Period(date(2015, 1, 1), date(2015, 12, 31))),
        issued_on=date(2016, 5, 20), amount=10,
        account=Account("JP-GOV-0001", "government_holding"),
        blocks=(SerialBlock(f"JP-{i:07d}-001", f"JP-{i:07d}-010", 10, 2015),),
    )  # fmt: skip


def root(keys: Sequence[AnyPrivateKey], id_key: PrivateKey, need: Requirement) -> TrustRoot:
    nb, na = NOW - timedelta(days=1), NOW + timedelta(days=365)
    entries: list[KeyEntry] = [key_entry(k.public, "JP", not_before=nb, not_after=na) for k in keys]
    entries.append(key_entry(id_key.public, "ID", not_before=nb, not_after=na))
    return TrustRoot(
        type="jcm-sync/trust-root", partnership="JP-ID", version=1,
        expires=NOW + timedelta(days=30), root_threshold=1,
        nodes=(NodeEntry(id="JP"), NodeEntry(id="ID")), keys=tuple(entries),
        required_algorithms={} if need == "ed25519" else {"issuance": need},
    )  # fmt: skip


def rate(op: Callable[[], object], n: int) -> float:
    """Operations per second of ``n`` calls of ``op``, garbage collection paused."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            op()
        return n / (time.perf_counter() - start)
    finally:
        gc.enable()


def best(pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]], n: int,
         rounds: int) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Best rate of each (baseline, candidate) pair over interleaved rounds."""
    out = dict.fromkeys(pairs, (0.0, 0.0))
    for _ in range(rounds):
        for name, (base, cand) in pairs.items():
            b, c = rate(base, n), rate(cand, n)
            out[name] = (max(out[name][0], b), max(out[name][1], c))
    return out


async def ingest(envs: list[bytes], tr: TrustRoot, store_url: str, batch: int) -> float:
    """Records per second appended through ``append_entries`` with ``verify_record``."""
    log = LogRef("JP-ID", "JP", ORIGIN)
    async with await open_store(store_url) as store:
        await store.ensure_log(log)
        start = time.perf_counter()
        for i in range(0, len(envs), batch):
            await store.append_entries(
                log, None, envs[i : i + batch], lambda raw: verify_record(tr, raw, NOW)
            )
        elapsed = time.perf_counter() - start
        assert (await store.tree_head(log)).size == len(envs)
    return len(envs) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="records per ingest run")
    parser.add_argument("--ops", type=int, default=300, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best counts")
    parser.add_argument("--batch", type=int, default=500, help="entries per append_entries")
    args = parser.parse_args(argv)
    require_mldsa()

    ed, pq, id_key = (
        PrivateKey.from_seed(b"\x01" * 32),
        MLDSA44PrivateKey.generate(),
        (PrivateKey.from_seed(b"\x02" * 32)),
    )
    root_ed, root_both = root([ed], id_key, "ed25519"), root([ed, pq], id_key, "both")
    rec = issuance(0)
    env_ed, env_hy = sign_record(rec, [ed]), sign_record(rec, [ed, pq])
    verify_record(root_both, env_hy, NOW)  # the hybrid envelope passes "both"

    cp = Checkpoint(ORIGIN, 10_000, hashlib.sha256(b"root").digest())
    text = format_body(cp)
    note_ed = sign_checkpoint(cp, ed.key)
    pq_name = ORIGIN + "/ml-dsa-44"
    note_hy = add_signature_lines(note_ed, [cosignature.cosign(text, pq_name, pq.key, 1)])
    log_v = [Verifier(ORIGIN, ed.public.key)]
    pq_v = [cosignature.CosignatureVerifier.from_vkey(
        cosignature.cosigner_vkey(pq_name, pq.public.key))]  # fmt: skip

    def open_hybrid() -> object:
        open_checkpoint(note_hy, log_v, origin=ORIGIN)
        return cosignature.verify_cosignatures(note_hy, pq_v)

    pairs = {
        "record sign": (lambda: sign_record(rec, [ed]), lambda: sign_record(rec, [ed, pq])),
        "record verify": (
            lambda: verify_record(root_ed, env_ed, NOW),
            lambda: verify_record(root_both, env_hy, NOW),
        ),
        "checkpoint cosign": (
            lambda: cosignature.cosign(text, ORIGIN + "/w", ed.key, 1),
            lambda: cosignature.cosign(text, pq_name, pq.key, 1),
        ),
        "checkpoint verify": (
            lambda: open_checkpoint(note_ed, log_v, origin=ORIGIN),
            open_hybrid,
        ),
    }
    rates = best(pairs, args.ops, args.rounds)

    t = time.perf_counter()
    records = [issuance(i) for i in range(args.n)]
    envs_ed = [sign_record(r, [ed]) for r in records]
    envs_hy = [sign_record(r, [ed, pq]) for r in records]
    setup = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        ing_ed = asyncio.run(
            ingest(envs_ed, root_ed, f"sqlite:///{Path(tmp) / 'ed.db'}", args.batch)
        )
        ing_hy = asyncio.run(
            ingest(envs_hy, root_both, f"sqlite:///{Path(tmp) / 'hy.db'}", args.batch)
        )

    print(f"ML-DSA-44 hybrid vs Ed25519 alone (same run; best of {args.rounds} rounds of "
          f"{args.ops} ops; ingest of {args.n} records, batches of {args.batch}, SQLite; "
          f"{setup:.1f} s signing set-up not timed)")  # fmt: skip
    print(f"{'measure':22} {'Ed25519 /s':>12} {'hybrid /s':>12} {'hybrid/Ed25519':>15}")
    for name, (b, c) in rates.items():
        print(f"{name:22} {b:12,.0f} {c:12,.0f} {c / b:15.3f}")
    print(f"{'ingest (records)':22} {ing_ed:12,.0f} {ing_hy:12,.0f} {ing_hy / ing_ed:15.3f}")
    b_ed = sum(map(len, envs_ed)) / len(envs_ed)
    b_hy = sum(map(len, envs_hy)) / len(envs_hy)
    print(f"{'bytes per record':22} {b_ed:12,.0f} {b_hy:12,.0f} {b_hy / b_ed:15.3f}")
    c_ed, c_hy = len(note_ed), len(note_hy)
    print(f"{'bytes per checkpoint':22} {c_ed:12,} {c_hy:12,} {c_hy / c_ed:15.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
