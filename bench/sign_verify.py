"""How much our envelope code costs on top of Ed25519 itself.

Measures records signed per second (``envelope.sign_record``: encode the record, PAE,
sign, lay out the envelope) and verified per second (``envelope.verify_envelope``:
parse the envelope, check it is canonical, PAE, verify every signature), against bare
``cryptography`` Ed25519 sign and verify of the same PAE bytes. A third, informational
row adds ``.record()`` (decode and validate the record, records.py's share). A last table
gives the microseconds of one Ed25519 verification under the project's one rule
(``core/ed25519.py``, ADR 0038) on libsodium and on its ``cryptography`` fallback, against
bare ``cryptography`` in the same run: the gain of verifying on libsodium. Rounds
interleave the measurements so that machine noise hits them alike, and the best round
of each counts. The target is ours / bare >= 0.9; the figure
is informational, so the script always exits 0.

    python bench/sign_verify.py [--n N] [--rounds R]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from functools import partial

from jcm_sync.core import ed25519
from jcm_sync.core.envelope import PrivateKey, PublicKey, pae, sign_record, verify_envelope
from jcm_sync.core.records import (
    Account,
    DecisionRef,
    IssuanceRecord,
    Period,
    SerialBlock,
    encode_record,
    payload_type,
)

TARGET = 0.9


def issuance() -> IssuanceRecord:
    """Japan's issuance of May 2016: 27 credits to the government account, in 3 blocks."""
    return IssuanceRecord(
        partnership="JP-ID",
        author="JP",
        created=datetime(2016, 5, 13, 9, 0, tzinfo=timezone(timedelta(hours=9))),
        registry="JP",
        issuance_id="JP-2016-0001",
        decision=DecisionRef(
            project_id="ID002",
            monitoring_period=Period(start=date(2015, 1, 1), end=date(2015, 12, 31)),
        ),
        issued_on=date(2016, 5, 13),
        amount=27,
        account=Account(id="JP-GOV-0001", type="government_holding"),
        blocks=(
            SerialBlock(start="JP-ID002-2015-000001", end="JP-ID002-2015-000010", quantity=10),
            SerialBlock(start="JP-ID002-2015-000011", end="JP-ID002-2015-000020", quantity=10),
            SerialBlock(
                start="JP-ID002-2015-000021", end="JP-ID002-2015-000027", quantity=7, vintage=2015
            ),
        ),
    )


def elapsed(
    op: Callable[[], object], n: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds on ``clock`` of ``n`` calls of ``op``, garbage collection paused."""
    gc.disable()
    try:
        start = clock()
        for _ in range(n):
            op()
        return clock() - start
    finally:
        gc.enable()


def rate(op: Callable[[], object], n: int) -> float:
    """Operations per second of ``n`` calls of ``op``."""
    return n / elapsed(op, n)


def cpu_us(op: Callable[[], object], n: int) -> float:
    """CPU microseconds of this thread per call of ``op``, over ``n`` calls."""
    return elapsed(op, n, time.thread_time) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; best counts")
    args = parser.parse_args(argv)

    key = PrivateKey.from_seed(bytes(range(32)))
    public = key.public
    trusted: dict[str, PublicKey] = {public.key_id: public}
    record = issuance()
    message = pae(payload_type(record.kind), encode_record(record))
    envelope = sign_record(record, [key])
    signature = key.sign(message)
    assert verify_envelope(envelope, trusted).record() == record

    ops: dict[str, Callable[[], object]] = {
        "sign ours": lambda: sign_record(record, [key]),
        "sign bare": lambda: key.key.sign(message),
        "verify ours": lambda: verify_envelope(envelope, trusted),
        "verify bare": lambda: public.key.verify(signature, message),
        "verify+decode ours": lambda: verify_envelope(envelope, trusted).record(),
    }
    raw = public.raw
    verifies: dict[str, Callable[[], object]] = {  # ADR 0038: the rule on each library
        "bare cryptography (baseline)": lambda: public.key.verify(signature, message),
        **{  # the library alone, without the rule's pre-checks: their cost is the difference
            f"bare {name}": partial(ed25519.BACKENDS[name], raw, signature, message)
            for name in ed25519.BACKENDS
            if name != "cryptography"
        },
        **{
            f"rule on {name}": partial(ed25519.verify_with, name, raw, signature, message)
            for name in ed25519.BACKENDS
        },
    }
    for op in ops.values():  # warm up caches and lazy imports
        rate(op, max(args.n // 10, 1))

    best = dict.fromkeys(ops, 0.0)
    for _ in range(args.rounds):
        for name, op in ops.items():
            best[name] = max(best[name], rate(op, args.n))

    print(
        f"record: issuance, payload {len(message)} B of PAE, envelope {len(envelope)} B; "
        f"best of {args.rounds} rounds x {args.n} ops"
    )
    print(f"{'':8} {'ours ops/s':>12} {'bare ops/s':>12} {'ratio':>7} {'target':>7}")
    for what in ("sign", "verify"):
        ours, bare = best[f"{what} ours"], best[f"{what} bare"]
        ratio = ours / bare
        verdict = "ok" if ratio >= TARGET else "MISS"
        print(f"{what:8} {ours:12,.0f} {bare:12,.0f} {ratio:7.2f} {'>= 0.9':>7} {verdict}")
    # informational: decoding and validating the record (schema, identifiers, serial
    # spans) is records.py's work on top of the envelope's, paid once per record
    ours, bare = best["verify+decode ours"], best["verify bare"]
    print(f"{'+decode':8} {ours:12,.0f} {bare:12,.0f} {ours / bare:7.2f} {'(info)':>7}")

    # ADR 0038: one Ed25519 verification in CPU microseconds of this thread (other
    # processes on the machine do not inflate it), same run, same signature, interleaved
    cpu = dict.fromkeys(verifies, float("inf"))
    for _ in range(args.rounds):
        for name, op in verifies.items():
            cpu[name] = min(cpu[name], cpu_us(op, args.n))
    base = cpu["bare cryptography (baseline)"]
    print(f"\nEd25519 verify, {len(message)} B message (default: rule on {ed25519.BACKEND})")
    print(f"{'':30} {'CPU us/op':>10} {'gain':>6}")
    for name, us in cpu.items():
        print(f"{name:30} {us:10.1f} {base / us:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
