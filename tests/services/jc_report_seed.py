"""A reconciled, faulty Japan-Indonesia partnership on real nodes, for the Joint
Committee report's tests (``services.jc_report*``, ``jcm-sync reconcile report``).

Two runs on Indonesia's node, as a secretariat would see them:

1. The partnership with a fault in every stage: Indonesia issued a tenth ID002 credit
   where nine were notified (totals), dated its ID002 issuances before the JC's
   decision (records), Japan numbered Mayekawa's ID001 credits inside the government's
   block (blocks), reported the use of 19 credits where it retired 20 (Article 6.2), and
   issued its ID003 share before Indonesia endorsed the decision (blocks; the first
   transfers of it are pending).
2. Indonesia then endorses the ID003 decision (that finding is resolved) and both
   secretariats sign an explanation of the overlapping blocks (explained).

Indonesia's node is given a long ``a6-first-transfer-mirror`` grace, so the first
transfers awaited since 2019 stay pending, with their age and deadline, on any day of
the tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.local.config import load_config
from jcm_sync.services.log_service import accept_checkpoint, checkpoint_verifiers, record_verifier
from jcm_sync.services.node import open_node
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import Network, provision
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.core.reconcile.builders import Dataset
from tests.core.reconcile.test_rules_dependencies import issued_before_decision
from tests.core.reconcile.test_scenarios import (
    japan_issues_before_endorsement,
    overlapping_blocks,
    partner_over_issues,
    use_reported_short,
)

GRACE_DAYS = 3650
"""Indonesia's ``[reconcile.grace] a6-first-transfer-mirror``: the most the config allows."""


@dataclass
class Seeded:
    net: Network
    config: Path
    """Indonesia's node configuration."""
    explained: str
    """The id of the finding both sides explained."""
    resolved: str
    """The id of the finding the endorsement resolved."""


def _faulty(now: datetime, keys: dict[str, PrivateKey]) -> Dataset:
    ds = builders.build(created=now)
    for fault in (japan_issues_before_endorsement, partner_over_issues, overlapping_blocks,
                  use_reported_short):  # fmt: skip
        fault(ds)
    issued_before_decision(ds, keys)
    for item in ds.items():  # the faults' own records carry the builders' 2020 date
        if item.record is not None and item.record.created != now:
            ds.replace(item, created=now)
    return ds


async def _load(net: Network, logs: dict[str, list[bytes]], start: dict[str, int]) -> None:
    """Append each node's records from ``start`` and replicate Japan's to Indonesia."""
    now = datetime.now(UTC)
    nodes = {n: await open_node(load_config(net.configs[n], env={})) for n in ("JP", "ID")}
    try:
        for n, node in nodes.items():
            await node.logs(PID).service.append(logs[n][start[n] :])
        s, d = nodes["JP"], nodes["ID"]
        cp = await s.store.latest_checkpoint(s.logs(PID).own)
        assert cp is not None
        rep, root = d.logs(PID).replica, d.logs(PID).root
        suffix = logs["JP"][start["JP"] :]
        await d.store.append_entries(rep, start["JP"], suffix, record_verifier(root, now))
        await accept_checkpoint(d.store, rep, cp.note, checkpoint_verifiers(root, rep, now))
    finally:
        for node in nodes.values():
            await node.close()


async def _reconcile(config: Path) -> list[str]:
    """One run on the node of ``config``; the ids of what it found, by rule."""
    node = await open_node(load_config(config, env={}))
    try:
        report = (await ReconcileService(node).reconcile(PID)).report
    finally:
        await node.close()
    return [f"{d.rule} {d.id}" for d in report.discrepancies]


def seed(tmp_path: Path) -> Seeded:
    """Provision JP and ID, load the faulty partnership, reconcile, endorse and explain,
    reconcile again (see the module docstring)."""
    now = datetime.now(UTC)
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=now)
    config = net.configs["ID"]
    with open(config, "a", encoding="utf-8") as f:
        f.write(f'\n[reconcile.grace]\n"a6-first-transfer-mirror" = {GRACE_DAYS}\n')
    ds = _faulty(now, net.keys)
    first = builders.envelopes(ds, net.keys)
    asyncio.run(_load(net, first, dict.fromkeys(first, 0)))
    found = dict(line.split() for line in asyncio.run(_reconcile(config)))
    overlap, early = found["overlapping-blocks"], found["issuance-before-decision-effective"]

    ds.endorse("ID", ds.find("issuance_decision", project_id="ID003"))
    text = "Mayekawa's block was renumbered by JP's registry on 2016-05-24; same credits"
    for side in ("JP", "ID"):
        ds.add(side, builders.resolution(side, overlap, text, created=now))
    second = builders.envelopes(ds, net.keys)
    asyncio.run(_load(net, second, {n: len(e) for n, e in first.items()}))
    asyncio.run(_reconcile(config))
    return Seeded(net=net, config=config, explained=overlap, resolved=early)
