"""Auditor evidence bundles: a partnership's history as files, verifiable from files alone.

Why this module exists: an Article 6 technical expert review, or a court, years later,
must be able to check what both registries held and what reconciliation found, with no
node, no store and no network. ``jcm-sync evidence export`` writes that bundle from a
node's store and configuration; ``services.evidence_verify`` (``jcm-sync evidence
verify``) checks it. The layout and the manifest are defined here, once, for both.

Rules:

1. **Layout** (docs/adr/0034-evidence-bundles-and-offline-receipts.md)::

       manifest.json                        what the bundle is, and SHA-256 of every file
       trust/root-v<N>.json                 the trust-root chain, each envelope as configured
       logs/<NODE>.entries.jsonl            every entry [0, size): index, appended_at, envelope
       checkpoints/<NODE>/<SIZE>.note       every stored checkpoint of size <= the snapshot's:
                                            the signed note as stored, with the counterpart's
                                            cosignature lines kept for it (ADR 0032)
       reconciliation/runs.json             the runs recorded on snapshots within the bundle's
       reconciliation/runs/<SEQ>.json       each of those runs' report as stored (its number
                                            is the run's ``report_seq``)
       reconciliation/report.json           the last report as stored, if its snapshot is within

   Envelopes are the stored bytes (base64 in the JSON line), so their record ids and
   Merkle leaves are recomputed from exactly what the store holds.
2. **Snapshot.** Both logs are taken where reconciliation takes them
   (``reconciliation.snapshot_position``): the newest checkpoint the trust root's
   cosignature quorum agrees (ADR 0035; any stored one under quorum 0, the head of a log
   never checkpointed, empty while a quorum has agreed none), or at the sizes given
   (``--at``): one size for both, or one per node. A size past a log's head is refused.
   The manifest says, per log, where it was cut and why (``LogInfo.cut``, ``reason``)
   and names the checkpoint of that size (``LogInfo.checkpoint``) when there is one.
3. **Refusals before writing.** A partnership the configuration does not serve, a chain
   that does not verify (or is older than the store's, ADR 0017), a size past a log, or
   an output folder that exists and is not empty is refused, and nothing is written.
4. **The manifest is written last**, after every file it lists, so a bundle cut short
   by a crash has no manifest and is never taken for a whole one. The manifest is not
   signed: what binds the bundle are the signatures inside it (records, checkpoints,
   cosignatures, roots); the manifest only says which files belong and lets a reader
   see at once that one was changed or lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

from jcm_sync.core.note import add_signature_lines
from jcm_sync.core.reconcile import Report
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.local.config import Config
from jcm_sync.services.node import check_roots, load_chain, log_pair
from jcm_sync.services.reconcile_state import run_report_key
from jcm_sync.services.reconciliation import Snapshot, snapshot_position
from jcm_sync.services.run_history import RunRecord, read_history, report_key
from jcm_sync.services.witness import cosigner_name
from jcm_sync.store import LogRef, Store

__all__ = [
    "FORMAT",
    "MANIFEST",
    "EntryLine",
    "ExportSummary",
    "LogInfo",
    "Manifest",
    "checkpoint_path",
    "entries_path",
    "export_evidence",
    "parse_sizes",
    "run_report_path",
    "sha256_file",
    "witness_name",
]

FORMAT: Final = "jcm-sync/evidence@v1"
MANIFEST: Final = "manifest.json"
RUNS: Final = "reconciliation/runs.json"
RUN_REPORTS: Final = "reconciliation/runs/"
REPORT: Final = "reconciliation/report.json"
CHUNK: Final = 2000
"""Entries read from the store and written at a time."""


class LogInfo(msgspec.Struct, frozen=True):
    """One log of the bundle: whose, its checkpoint origin, and the snapshot's size and root."""

    node: str
    origin: str
    size: int
    root: str  # hex
    cut: str = ""  # rule 2: "agreed", "checkpoint", "head", "empty" or "given" (--at)
    reason: str = ""  # rule 2, in words
    checkpoint: str = ""  # rule 2: the note of the snapshot's size in the bundle, if any


class Manifest(msgspec.Struct, frozen=True):
    """``manifest.json`` (rule 4)."""

    format: str
    partnership: str
    exported_at: datetime
    exported_by: str
    logs: tuple[LogInfo, ...]
    trust: tuple[str, ...]
    grace: dict[str, int]
    files: dict[str, str]  # relative path -> SHA-256 hex


class EntryLine(msgspec.Struct, frozen=True):
    """One line of ``logs/<NODE>.entries.jsonl``: the stored entry."""

    index: int
    appended_at: datetime
    envelope: bytes


@dataclass(frozen=True)
class ExportSummary:
    """What ``export_evidence`` wrote."""

    directory: Path
    partnership: str
    logs: tuple[LogInfo, ...]
    checkpoints: int
    runs: int
    report: bool
    files: int


def entries_path(node: str) -> str:
    return f"logs/{node}.entries.jsonl"


def checkpoint_path(node: str, size: int) -> str:
    return f"checkpoints/{node}/{size:012d}.note"


def run_report_path(seq: int) -> str:
    """Rule 1: where run ``seq``'s report is in a bundle."""
    return f"{RUN_REPORTS}{seq:012d}.json"


def witness_name(origin: str, partnership: str, log_node: str, witness: str) -> str:
    """The cosigner name under which ``witness`` cosigns (ADR 0032):
    ``<origin prefix>/witness/<node>``, the prefix read from the log's origin."""
    return cosigner_name(origin.removesuffix(f"/{partnership}/{log_node}"), witness)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_sizes(text: str) -> int | dict[str, int]:
    """``--at``: ``SIZE`` (both logs) or ``NODE=SIZE,NODE=SIZE``; ``BadDataError`` otherwise."""
    text = text.strip()
    if "=" not in text:
        if not text.isdigit():
            raise BadDataError(f"--at {text!r}: give a size, or NODE=SIZE,NODE=SIZE")
        return int(text)
    sizes: dict[str, int] = {}
    for part in text.split(","):
        node, sep, size = part.strip().partition("=")
        if not sep or not node or not size.strip().isdigit():
            raise BadDataError(f"--at {text!r}: {part!r} is not NODE=SIZE")
        if node in sizes:
            raise BadDataError(f"--at {text!r}: {node} is given twice")
        sizes[node] = int(size)
    return sizes


def _check_out(out: Path) -> None:
    """Rule 3: the output folder is new or empty."""
    if out.exists():
        if not out.is_dir():
            raise BadDataError("the output exists and is not a folder", where=str(out))
        if any(out.iterdir()):
            raise BadDataError(
                "the output folder is not empty; give a new or empty folder", where=str(out)
            )


async def _targets(
    store: Store, root: TrustRoot, logs: tuple[LogRef, ...], at: int | Mapping[str, int] | None
) -> dict[str, Snapshot]:
    """Rule 2: where each log is cut, and why."""
    nodes = {ref.node for ref in logs}
    if isinstance(at, Mapping):
        unknown = sorted(set(at) - nodes)
        if unknown:
            raise BadDataError(
                f"--at names {', '.join(unknown)}; this partnership's logs are those of "
                f"{' and '.join(sorted(nodes))}"
            )
        missing = sorted(nodes - set(at))
        if missing:
            raise BadDataError(f"--at gives no size for {', '.join(missing)}'s log")
    out: dict[str, Snapshot] = {}
    for ref in logs:
        if at is None:
            out[ref.node] = await snapshot_position(store, root, ref)
            continue
        head = await store.tree_head(ref)
        size = at if isinstance(at, int) else at[ref.node]
        if size > head.size:
            raise BadDataError(
                f"size {size} is past {ref.node}'s log, which has {head.size} entries",
                where=ref.origin,
            )
        out[ref.node] = Snapshot(size, await store.root_at(ref, size), "given", "given with --at")
    return out


def _within(positions: tuple[object, ...], sizes: Mapping[str, int]) -> bool:
    """A run's or report's snapshot lies within the bundle's (every log at or below)."""
    for p in positions:
        node, size = getattr(p, "node", None), getattr(p, "size", None)
        if not isinstance(node, str) or not isinstance(size, int):
            return False
        if node not in sizes or size > sizes[node]:
            return False
    return True


async def export_evidence(
    cfg: Config,
    store: Store,
    partnership: str,
    out: Path,
    *,
    now: datetime,
    at: int | Mapping[str, int] | None = None,
) -> ExportSummary:
    """Write the evidence bundle of ``partnership`` from ``store`` into ``out`` (rules 1-4)."""
    if partnership not in {p.id for p in cfg.partnerships}:
        raise NotFoundError(f"this node's configuration serves no partnership {partnership}")
    chain = load_chain(cfg, partnership, now)
    await check_roots(store, {partnership: chain})
    logs = log_pair(cfg, partnership)
    _check_out(out)
    targets = await _targets(store, chain[-1].root, logs, at)
    sizes = {node: snap.size for node, snap in targets.items()}
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def write(rel: str, data: bytes) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    trust = []
    for t in chain:
        rel = f"trust/root-v{t.version}.json"
        write(rel, t.raw)
        trust.append(rel)
    encoder = msgspec.json.Encoder()
    n_checkpoints = 0
    infos = []
    for ref in logs:
        size, root, cut, why = targets[ref.node]
        rel = entries_path(ref.node)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for lo in range(0, size, CHUNK):
                for e in await store.entries(ref, lo, min(size, lo + CHUNK)):
                    f.write(encoder.encode(EntryLine(e.index, e.appended_at, e.envelope)) + b"\n")
        files[rel] = sha256_file(path)
        for cp in await store.checkpoints(ref):
            if cp.size <= size:
                cosigned = await store.cosignatures(ref, cp.size)
                note = add_signature_lines(cp.note, cosigned) if cosigned else cp.note
                write(checkpoint_path(ref.node, cp.size), note)
                n_checkpoints += 1
        at_cut = checkpoint_path(ref.node, size)
        at_cut = at_cut if at_cut in files else ""
        infos.append(LogInfo(ref.node, ref.origin, size, root.hex(), cut, why, at_cut))
    history = await read_history(store, partnership)
    runs = [r for r in history.runs if _within(r.logs, sizes)]
    write(RUNS, msgspec.json.encode(runs))
    for r in runs:
        if r.report_seq is not None:
            data = await store.get_state(run_report_key(partnership, r.report_seq))
            if data is not None:  # one dropped since is named missing by the verifier
                write(run_report_path(r.report_seq), data)
    raw_report = await store.get_state(report_key(partnership))
    has_report = False
    if raw_report is not None:
        try:
            report = msgspec.json.decode(raw_report, type=Report)
        except msgspec.MsgspecError as exc:
            raise BadDataError(f"the stored report cannot be read: {exc}") from None
        if _within(report.logs, sizes):
            write(REPORT, raw_report)
            has_report = True
    manifest = Manifest(
        format=FORMAT,
        partnership=partnership,
        exported_at=now,
        exported_by=cfg.node.id,
        logs=tuple(infos),
        trust=tuple(trust),
        grace=cfg.reconcile.grace_days(),
        files=dict(sorted(files.items())),
    )
    (out / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return ExportSummary(
        out, partnership, tuple(infos), n_checkpoints, len(runs), has_report, len(files) + 1
    )


def decode_runs(data: bytes) -> list[RunRecord]:
    """``reconciliation/runs.json`` (``BadDataError`` if it is not a list of runs)."""
    try:
        return msgspec.json.decode(data, type=list[RunRecord])
    except msgspec.MsgspecError as exc:
        raise BadDataError(f"{RUNS} is not a list of reconciliation runs: {exc}") from None
