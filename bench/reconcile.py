"""How long a full 3-stage reconciliation of a large partnership takes, in how much memory,
and how much faster an incremental run is.

The partnership is ``jcm_sync.services.sample.partnership_records`` at scale: 999 projects with 20
monitoring periods each, every decision co-signed by both secretariats, each side issuing
its government and participant shares and Indonesia retiring part of its own: about
100,000 issuance and transaction records (plus the decisions and projects). After the full
run, 100 new records arrive (transfers in both registries) and are reconciled
incrementally (``Reconciler.apply`` on the new suffix, then ``report``), then 1,000 more:
an incremental run costs O(k) in the k new records when the second takes about ten times
the first, and far less than a full run.

The 5 s target is 50 µs a record. Its physical floor on a machine is decoding the
records at all (``iter_stored``: the envelope, then the payload into msgspec Structs,
which every fold must do once), so the child also times that alone, after the runs and
on the same records, exactly as the runs decode them (``validate=False``, as the service
reads its store: the payloads' shape only, ADR 0052): the fold's own cost is the full
run less the decode, and the report prints both per record. The digests of the reports
(SHA-256 of their JSON) are printed, so two versions of the code can be checked to give
the same reports. The garbage collector's passes during the full run are counted and
timed too: its full passes scan the whole index, and per-record containers it keeps
tracking set them off (ADR 0055).

The measurement runs in a fresh subprocess, so its peak RSS is the reconciliation's own
(``VmHWM`` on Linux, else ``resource.getrusage``): it reads the logs' envelopes from files
in chunks, as the service reads them from the store, and decodes them without
re-verifying signatures (the store holds only verified entries:
``jcm_sync.core.reconcile.inputs``); verifying signatures would add about 100 µs a record.
Targets: full <= 5 s, peak RSS <= 300 MB, incremental >= 50x faster than full.

Then the same partnership with faults in Indonesia's log (``--faults N``): N issuances
superseded by a version issuing one credit more (corrections: each makes the registry's
fold be replayed) and N transfers of serials never issued, all in one serial prefix
(findings whose stage 3 trails share a prefix). Its full run (fold, report, history
merge and JSON encoding, each timed) is compared with the clean full run of the same
process, the same-run baseline: a fold that replays once per correction, or trails
that scan a prefix once per finding, show up as a ratio far above 1 (ADR 0010).
The figures are informational: the script always exits 0.

    python bench/reconcile.py [--projects N] [--periods K] [--faults N]
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

CHUNK = 2000
TARGET_FULL_S = 5.0
TARGET_RSS_MB = 300.0
TARGET_SPEEDUP = 50.0
CREATED = datetime(2026, 1, 15, tzinfo=UTC)


def write_log(path: Path, envelopes: list[bytes]) -> None:
    """Length-prefixed envelopes, so the child can stream them."""
    with open(path, "wb") as f:
        for e in envelopes:
            f.write(struct.pack(">I", len(e)))
            f.write(e)


def read_log(path: Path, chunk: int = CHUNK) -> Iterator[list[bytes]]:
    with open(path, "rb") as f:
        out: list[bytes] = []
        while header := f.read(4):
            (n,) = struct.unpack(">I", header)
            out.append(f.read(n))
            if len(out) == chunk:
                yield out
                out = []
        if out:
            yield out


# --- the parent: generate, then measure in a child ------------------------------------------


def generate(directory: Path, projects: int, periods: int, faults: int) -> dict[str, int]:
    from jcm_sync.core import merkle
    from jcm_sync.core.envelope import PrivateKey, open_envelope, sign_record
    from jcm_sync.core.records import Account, IssuanceRecord, SerialBlock, TransactionRecord
    from jcm_sync.core.trust import encode_root
    from jcm_sync.services.sample import partnership_records
    from tests.builders import build_root

    keys = {"JP": PrivateKey.from_seed(b"J" * 32), "ID": PrivateKey.from_seed(b"I" * 32)}
    root = build_root("JP-ID", keys, expires=datetime(2029, 1, 1, tzinfo=UTC))
    (directory / "root.json").write_bytes(encode_root(root))
    recs = partnership_records("ID", keys, projects=projects, periods=periods, created=CREATED)
    counts: dict[str, int] = {"records": 0, "issuance_and_transaction": 0}
    suffix: dict[str, list[bytes]] = {"JP": [], "ID": []}
    from jcm_sync.core.records import decode_record

    for node, envs in recs.by_node.items():
        write_log(directory / f"{node}.log", envs)
        leaves = [merkle.leaf_hash(e) for e in envs]
        counts[f"{node}_size"] = len(envs)
        counts["records"] += len(envs)
        # 50 new transfers per registry: the last serial of a government issuance moves to
        # the participant's account; then 500 more, of the next issuances, for the second
        # incremental run
        n = 0
        more: list[bytes] = []
        for env in envs:
            payload = open_envelope(env)
            kind = payload.payloadType.rsplit(".", 1)[-1].split("+")[0]
            if kind in ("issuance", "transaction"):
                counts["issuance_and_transaction"] += 1
            if kind != "issuance" or n >= 550:
                continue
            rec = decode_record(payload.payload, "issuance")
            assert isinstance(rec, IssuanceRecord)
            if rec.account.type != "government_holding" or not rec.blocks:
                continue
            last = rec.blocks[-1].end
            n += 1
            txn = TransactionRecord(
                partnership="JP-ID", author=node, created=CREATED + timedelta(days=1),
                registry=node, txn_id=f"{node}-BENCH-{n:04d}", type="transfer",
                executed_on=rec.issued_on + timedelta(days=1), source=rec.account,
                destination=Account(f"{node}-PP-BENCH", "participant_holding"), amount=1,
                blocks=(SerialBlock(last, last, 1, rec.blocks[-1].vintage),),
            )  # fmt: skip
            (suffix[node] if n <= 50 else more).append(sign_record(txn, [keys[node]]))
        write_log(directory / f"{node}.suffix", suffix[node])
        write_log(directory / f"{node}.suffix2", more)
        counts["suffix2"] = counts.get("suffix2", 0) + len(more)
        (directory / f"{node}.root").write_bytes(merkle.root(leaves))
    counts["suffix"] = sum(len(s) for s in suffix.values())
    write_log(directory / "ID.faults", fault_records(recs.by_node["ID"], keys["ID"], faults))
    counts["faults"] = faults
    return counts


def fault_records(envelopes: list[bytes], key: Any, n: int) -> list[bytes]:
    """``n`` corrections of Indonesia's government issuances, then ``n`` stray transfers."""
    from jcm_sync.services.sample import over_issuance_corrections, stray_transfers

    created = CREATED + timedelta(days=2)
    return over_issuance_corrections(envelopes, key, n, created) + stray_transfers(
        "JP-ID", key, n, created, date(2026, 1, 17)
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB.

    ``VmHWM`` from ``/proc/self/status`` where there is one (Linux): ``ru_maxrss`` keeps
    the high-water mark of the parent across fork and exec, so in a child started from a
    parent that just generated the data it would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


class GcPasses:
    """The garbage collector's passes while installed: how many of the full (oldest
    generation) ones and of the others, and the seconds each kind took."""

    def __init__(self) -> None:
        self.full = self.young = 0
        self.full_seconds = self.young_seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        took = time.perf_counter() - self._start
        if info["generation"] == 2:
            self.full, self.full_seconds = self.full + 1, self.full_seconds + took
        else:
            self.young, self.young_seconds = self.young + 1, self.young_seconds + took


def child(directory: Path) -> dict[str, float | int | str]:
    """Measured in a fresh process: full run, then the incremental run."""
    import gc

    from jcm_sync.core.reconcile import Reconciler, check_position, iter_stored, signer_nodes
    from jcm_sync.core.trust import decode_root

    baseline = peak_rss_mb()
    root = decode_root((directory / "root.json").read_bytes())
    nodes = signer_nodes(root)
    passes = GcPasses()
    gc.callbacks.append(passes)
    t0, c0 = time.perf_counter(), time.process_time()
    rec = Reconciler(root)
    for node in ("JP", "ID"):
        size = 0
        for envs in read_log(directory / f"{node}.log"):
            size = rec.apply(node, iter_stored(root, envs, nodes=nodes, validate=False), start=size)
        check_position(rec, node, size, (directory / f"{node}.root").read_bytes())
    report = rec.report()
    full = time.perf_counter() - t0
    full_cpu = time.process_time() - c0
    gc.callbacks.remove(passes)
    peak = peak_rss_mb()
    t1 = time.perf_counter()
    for node in ("JP", "ID"):
        for envs in read_log(directory / f"{node}.suffix"):
            rec.apply(node, iter_stored(root, envs, nodes=nodes, validate=False))
    after = rec.report()
    incremental = time.perf_counter() - t1
    t2 = time.perf_counter()
    for node in ("JP", "ID"):
        for envs in read_log(directory / f"{node}.suffix2"):
            rec.apply(node, iter_stored(root, envs, nodes=nodes, validate=False))
    after2 = rec.report()
    incremental2 = time.perf_counter() - t2
    del rec  # the faulty run folds from scratch
    t3, c3 = time.perf_counter(), time.process_time()
    decoded = 0
    for node in ("JP", "ID"):  # the floor: decoding every record, folding none
        for envs in read_log(directory / f"{node}.log"):
            decoded += sum(1 for _ in iter_stored(root, envs, nodes=nodes, validate=False))
    decode = time.perf_counter() - t3
    decode_cpu = time.process_time() - c3
    faulty = faulty_run(directory, root, nodes)
    return {
        "full_seconds": full,
        "full_cpu_seconds": full_cpu,
        "gc_full_passes": passes.full,
        "gc_full_seconds": passes.full_seconds,
        "gc_young_passes": passes.young,
        "gc_young_seconds": passes.young_seconds,
        "decode_cpu_seconds": decode_cpu,
        "incremental_seconds": incremental,
        "incremental2_seconds": incremental2,
        "discrepancies_after2": len(after2.discrepancies),
        "decode_seconds": decode,
        "decoded": decoded,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "status": report.status,
        "discrepancies": len(report.discrepancies),
        "status_after": after.status,
        "discrepancies_after": len(after.discrepancies),
        "decisions": report.totals.decisions,
        "issued_blocks": report.blocks.issued_blocks,
        "report_digest": _digest(report),
        "report_after2_digest": _digest(after2),
        **faulty,
    }


def _digest(value: Any) -> str:
    import hashlib

    import msgspec

    return hashlib.sha256(msgspec.json.encode(value)).hexdigest()[:16]


def faulty_run(directory: Path, root: Any, nodes: dict[str, str]) -> dict[str, float | int]:
    """The full run over the logs with Indonesia's faults appended, phase by phase."""
    import msgspec

    from jcm_sync.core.reconcile import Reconciler, iter_stored
    from jcm_sync.services.reconciliation import History, merge_history

    t0 = time.perf_counter()
    rec = Reconciler(root)
    for node, files in (("JP", ["JP.log"]), ("ID", ["ID.log", "ID.faults"])):
        size = 0
        for name in files:
            for envs in read_log(directory / name):
                entries = iter_stored(root, envs, nodes=nodes, validate=False)
                size = rec.apply(node, entries, start=size)
    t1 = time.perf_counter()
    report = rec.report()
    t2 = time.perf_counter()
    history = History(partnership="JP-ID")
    merge_history(history, report, datetime.now(UTC))
    encoded = len(msgspec.json.encode(report)) + len(msgspec.json.encode(history))
    t3 = time.perf_counter()
    return {
        "faulty_report_digest": _digest(report),
        "faulty_fold_seconds": t1 - t0,
        "faulty_report_seconds": t2 - t1,
        "faulty_history_seconds": t3 - t2,
        "faulty_open": sum(1 for d in report.discrepancies if d.status == "open"),
        "faulty_json_bytes": encoded,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=999, help="projects (at most 999)")
    parser.add_argument("--periods", type=int, default=20, help="monitoring periods each")
    parser.add_argument("--faults", type=int, default=500,
                        help="corrections and stray transfers each, in the faulty run")  # fmt: skip
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        directory = Path(tmp)
        t = time.perf_counter()
        counts = generate(directory, args.projects, args.periods, args.faults)
        print(
            f"generated and signed {counts['records']:,} records "
            f"({counts['issuance_and_transaction']:,} issuance and transaction) in "
            f"{time.perf_counter() - t:.1f} s; JP log {counts['JP_size']:,}, "
            f"ID log {counts['ID_size']:,}; {counts['suffix']} new records for the "
            "incremental run",
            flush=True,
        )
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(directory)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        m = json.loads(out.stdout)
    full, inc, rss = m["full_seconds"], m["incremental_seconds"], m["peak_rss_mb"]
    speedup = full / inc if inc else float("inf")
    print(f"report: {m['status']}, {m['discrepancies']} discrepancies, {m['decisions']:,} "
          f"decisions, {m['issued_blocks']:,} issued blocks; after the new records: "
          f"{m['status_after']}, {m['discrepancies_after']} discrepancies")  # fmt: skip
    print(f"{'measure':<34}{'value':>12}  {'target':>14}  {'ratio':>8}")
    print(f"{'full 3-stage reconcile':<34}{full:>10.2f} s  {'<= 5 s':>14}  "
          f"{full / TARGET_FULL_S:>8.2f}")  # fmt: skip
    print(f"{'peak RSS (interpreter ' + format(m['baseline_rss_mb'], '.0f') + ' MB)':<34}"
          f"{rss:>9.0f} MB  {'<= 300 MB':>14}  {rss / TARGET_RSS_MB:>8.2f}")  # fmt: skip
    print(f"{'incremental run, 100 new records':<34}{inc * 1000:>9.1f} ms  "
          f"{'>= 50x faster':>14}  {speedup:>7.0f}x")  # fmt: skip
    inc2 = m["incremental2_seconds"]
    print(f"{'incremental run, ' + format(counts['suffix2'], ',') + ' new records':<34}"
          f"{inc2 * 1000:>9.1f} ms  {'O(k): ~10x 100':>14}  {inc2 / inc:>7.1f}x")  # fmt: skip
    n, dec = m["decoded"], m["decode_seconds"]
    print(f"{'per record: full run':<34}{full / n * 1e6:>9.1f} µs  {'<= 50 µs':>14}  "
          f"{full / n * 1e6 / 50:>8.2f}")  # fmt: skip
    print(f"{'  of which decoding alone (floor)':<34}{dec / n * 1e6:>9.1f} µs  "
          f"{'':>14}  {dec / full:>8.2f}")  # fmt: skip
    print(f"{'  folding and the 4 stages':<34}{(full - dec) / n * 1e6:>9.1f} µs")
    # CPU time: steadier than wall time on a shared machine, which a busy neighbour stretches
    cpu, dec_cpu = m["full_cpu_seconds"], m["decode_cpu_seconds"]
    print(f"{'per record, CPU: full run':<34}{cpu / n * 1e6:>9.1f} µs  {'':>14}  "
          f"{cpu / n * 1e6 / 50:>8.2f}")  # fmt: skip
    print(f"{'  of which decoding alone (floor)':<34}{dec_cpu / n * 1e6:>9.1f} µs  "
          f"{'':>14}  {dec_cpu / cpu:>8.2f}")  # fmt: skip
    print(f"garbage collector in the full run: {m['gc_full_passes']} full passes "
          f"({m['gc_full_seconds']:.2f} s), {m['gc_young_passes']} younger "
          f"({m['gc_young_seconds']:.2f} s)")  # fmt: skip
    fold, rep = m["faulty_fold_seconds"], m["faulty_report_seconds"]
    hist = m["faulty_history_seconds"]
    faulty = fold + rep + hist
    print(f"with {counts['faults']} corrections and {counts['faults']} stray transfers: "
          f"{m['faulty_open']:,} open discrepancies, report and history "
          f"{m['faulty_json_bytes'] / 1e6:.1f} MB of JSON")  # fmt: skip
    print(f"{'  fold':<34}{fold:>10.2f} s")
    print(f"{'  report (stages, trails)':<34}{rep:>10.2f} s")
    print(f"{'  history merge, JSON encoding':<34}{hist:>10.2f} s")
    print(f"{'full run with faults':<34}{faulty:>10.2f} s  {'vs clean full':>14}  "
          f"{faulty / full:>7.2f}x")  # fmt: skip
    print(f"report digests: full {m['report_digest']}, after the new records "
          f"{m['report_after2_digest']}, with faults {m['faulty_report_digest']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
