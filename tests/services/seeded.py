"""Japan's hub and Indonesia's agent with both logs filled from the builders' dataset:
the Japan-Indonesia partnership of the May 2016 issuance, replicated both ways with
checkpoints, for the stored-record, endorse and export tests (services and CLI).

``seed`` leaves some of Indonesia's Joint Committee records without Japan's signature
(``unendorsed``), so that Japan has something to endorse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jcm_sync.core.envelope import record_id
from jcm_sync.core.records import JC_KINDS
from jcm_sync.local.config import load_config
from jcm_sync.services.log_service import accept_checkpoint, checkpoint_verifiers, record_verifier
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import Network, provision
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID


@dataclass
class Seeded:
    net: Network
    logs: dict[str, list[bytes]]
    unendorsed: list[str] = field(default_factory=list)  # ids of ID's JC records JP lacks

    def config(self, node: str) -> Path:
        return self.net.configs[node]

    async def open(self, node: str) -> Node:
        return await open_node(load_config(self.net.configs[node], env={}))


async def replicate(src: Node, dst: Node, now: datetime | None = None) -> None:
    """Copy ``src``'s own log to ``dst``'s replica, with its signed checkpoint, verified
    as of ``now`` (default: the wall clock)."""
    own, rep = src.logs(PID).own, dst.logs(PID).replica
    cp = await src.store.latest_checkpoint(own)
    assert cp is not None
    held = (await dst.store.tree_head(rep)).size
    entries = await src.store.entries(own, held, cp.size)
    root, now = dst.logs(PID).root, now or datetime.now(UTC)
    if entries:
        envelopes = [e.envelope for e in entries]
        await dst.store.append_entries(rep, held, envelopes, record_verifier(root, now))
    await accept_checkpoint(dst.store, rep, cp.note, checkpoint_verifiers(root, rep, now))


def dataset(unendorsed: int = 2) -> builders.Dataset:
    """The clean dataset, with the first ``unendorsed`` co-signed JC records of
    Indonesia's log signed by Indonesia alone."""
    ds = builders.build(created=datetime.now(UTC) - timedelta(hours=1))
    left = unendorsed
    for item in ds.logs["ID"]:
        if left and item.cosign and item.record is not None and item.record.kind in JC_KINDS:
            item.cosign = False
            left -= 1
    return ds


async def seed(directory: Path, unendorsed: int = 2) -> Seeded:
    """Provision JP and ID, fill both own logs, replicate both ways, close the nodes."""
    net = provision(directory, ["ID"], hub_port=0, now=datetime.now(UTC))
    ds = dataset(unendorsed)
    logs = builders.envelopes(ds, net.keys)
    seeded = Seeded(net, logs)
    jp, id_ = await seeded.open("JP"), await seeded.open("ID")
    try:
        await append_own(jp, PID, logs["JP"])
        await append_own(id_, PID, logs["ID"])
        await replicate(jp, id_)
        await replicate(id_, jp)
    finally:
        await jp.close()
        await id_.close()
    for item, env in zip(ds.logs["ID"], logs["ID"], strict=True):
        rec = item.record
        endorsed = any(i.endorses is item for i in ds.logs["JP"])
        if rec is not None and rec.kind in JC_KINDS and not item.cosign and not endorsed:
            seeded.unendorsed.append(record_id(env))
    return seeded
