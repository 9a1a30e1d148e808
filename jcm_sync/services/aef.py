"""``jcm-sync report aef``: a Party's Article 6.2 AEF for a year, from its node's store.

Why this module exists: the CLI and the tests need one call that reads the signed
records a node holds, builds the five tables (``aef_rows``, ``aef_checks``) and writes
them (``aef_write``), so that what is tested is what the secretariat runs.

Rules (docs/adr/0026-article-6-2-aef-report.md):

1. Records are read from the store, both logs of each partnership asked for (all the
   node serves by default), in chunks, so only records whose signatures verified on
   append are reported (rule 1 of ``aef_rows``).
2. The files are written even when a check fails, with the failures on their own
   sheet (and CSV), so the secretariat sees the rows to correct; the caller turns
   failures into exit 1, and nothing with a failure should be submitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jcm_sync.services.aef_checks import check_report, holding_rows
from jcm_sync.services.aef_nomenclature import Nomenclature
from jcm_sync.services.aef_rows import (
    T1,
    T2,
    T3,
    T4,
    T5,
    AefOptions,
    AefReport,
    Held,
    action_rows,
    authorization_rows,
    context,
    held_from_envelopes,
    submission_row,
)
from jcm_sync.services.aef_write import write_report
from jcm_sync.services.node import Node

CHUNK = 10_000


def build_report(
    nom: Nomenclature, opts: AefOptions, party: str, held: Sequence[Held]
) -> AefReport:
    """The AEF of ``party`` (a node id) for ``opts.year`` from ``held``, checked."""
    ctx = context(nom, opts, party, held)
    tables = {
        T1: [submission_row(ctx)],
        T2: authorization_rows(ctx, held),
        T3: action_rows(ctx),
        T4: holding_rows(ctx),
        T5: [],
    }
    report = AefReport(party, opts.year, nom.version, tables, ctx.problems)
    check_report(ctx, report)
    return report


async def read_held(node: Node, partnerships: Sequence[str]) -> list[Held]:
    """Rule 1: the records the report reads, from both logs of each partnership."""
    out: list[Held] = []
    for pid in partnerships:
        logs = node.logs(pid)
        for ref in (logs.own, logs.replica):
            size = (await node.store.tree_head(ref)).size
            for start in range(0, size, CHUNK):
                entries = await node.store.entries(ref, start, min(size, start + CHUNK))
                out.extend(held_from_envelopes(
                    pid, ref.node, [e.envelope for e in entries],
                    [e.record_id for e in entries], start,
                ))  # fmt: skip
    return out


async def aef_report(
    node: Node, opts: AefOptions, partnerships: Sequence[str] | None = None
) -> AefReport:
    """Build the node's Party's AEF for ``opts.year`` from what its store holds."""
    pids = list(partnerships) if partnerships else sorted(node.partnerships)
    for pid in pids:
        node.logs(pid)  # NotFoundError if the node serves no such partnership
    return build_report(Nomenclature.load(), opts, node.id, await read_held(node, pids))


def write_aef(report: AefReport, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Rule 2: write ``report`` into ``out_dir`` as ``formats`` (xlsx, csv)."""
    return write_report(report, out_dir, formats)
