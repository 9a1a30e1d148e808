"""Reconciliation stays linear in corrections and in findings per serial prefix (ADR 0010).

Corrections (superseded issuances) make a registry's fold be replayed; it must be replayed
once per report, not once per correction. (Stage 3 trails of many findings in one prefix
use an interval index: ``test_ledger`` checks it against a scan of every claim.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import Reconciler, iter_stored, signer_nodes
from jcm_sync.services.sample import partnership_records
from tests.builders import build_root
from tests.exchange.test_responsive import Scale, faults

KEYS = {"JP": PrivateKey.from_seed(b"J" * 32), "ID": PrivateKey.from_seed(b"I" * 32)}
SMALL = Scale(projects=6, periods=3, corrections=12, strays=40, min_records=0, min_open=0)


@pytest.fixture(scope="module")
def logs() -> tuple[object, dict[str, list[bytes]]]:
    root = build_root("JP-ID", KEYS, expires=datetime.now(UTC) + timedelta(days=365))
    recs = partnership_records("ID", KEYS, projects=SMALL.projects, periods=SMALL.periods)
    cc = recs.by_node["ID"]
    return root, {"JP": recs.by_node["JP"], "ID": cc + faults(KEYS, cc, SMALL)}


def test_corrections_replay_the_fold_once(
    logs: tuple[object, dict[str, list[bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 corrections folded in one chunk replay Indonesia's fold once, at the report."""
    root, by_node = logs
    replays: list[str] = []
    original = Reconciler._replay_ledger

    def counted(self: Reconciler, registry: str) -> None:
        replays.append(registry)
        original(self, registry)

    monkeypatch.setattr(Reconciler, "_replay_ledger", counted)
    rec = Reconciler(root)  # type: ignore[arg-type]
    nodes = signer_nodes(root)  # type: ignore[arg-type]
    for node, envs in by_node.items():
        rec.apply(node, iter_stored(root, envs, nodes=nodes))  # type: ignore[arg-type]
    assert replays == []
    report = rec.report()
    assert replays == ["ID"]
    assert sum(1 for d in report.discrepancies if d.status == "open") >= 2 * SMALL.corrections


def test_a_deferred_replay_reports_what_replaying_at_once_reports(
    logs: tuple[object, dict[str, list[bytes]]],
) -> None:
    """Folding everything then reporting equals reporting after every entry (which
    replays at each correction, as the fold did before)."""
    root, by_node = logs
    nodes = signer_nodes(root)  # type: ignore[arg-type]
    at_once = Reconciler(root)  # type: ignore[arg-type]
    for node, envs in by_node.items():
        at_once.apply(node, iter_stored(root, envs, nodes=nodes))  # type: ignore[arg-type]
    step = Reconciler(root)  # type: ignore[arg-type]
    for node, envs in by_node.items():
        for i, env in enumerate(envs):
            step.apply(node, iter_stored(root, [env], nodes=nodes), start=i)  # type: ignore[arg-type]
            if node == "ID" and i >= len(envs) - SMALL.corrections - SMALL.strays:
                step.report()
    a, b = at_once.report(), step.report()
    assert msgspec.json.encode(a) == msgspec.json.encode(b)
    assert any(len(t.steps) > 0 for t in a.trails)
