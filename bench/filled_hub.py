"""A provisioned JP-ID network whose hub (Japan, SQLite store) holds N signed issuance
records in its own log, checkpointed: the starting point of the benchmarks that read a
full store back (``backup.py``, ``export_xlsx.py``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, fill_own_log, provision, signed_issuances

PID = "JP-ID"


async def fill(cfg: Path, n: int) -> list[bytes]:
    """N issuances in the own log of the node of ``cfg``, checkpointed; their envelopes."""
    node = await open_node(load_config(cfg, env={}))
    try:
        created = datetime.now(UTC) - timedelta(hours=1)
        envs, checked = signed_issuances(PID, "JP", node.keys.signing, n, created)
        await fill_own_log(node, PID, envs, checked)
        await node.logs(PID).service.sign_checkpoint()
    finally:
        await node.close()
    return envs


def filled_hub(tmp: Path, n: int) -> tuple[Network, list[bytes]]:
    """The network under ``tmp/net`` with Japan's log filled (the time it took printed);
    Japan's configuration is ``net.configs["JP"]``."""
    net = provision(tmp / "net", ["ID"], hub_port=0, now=datetime.now(UTC))
    t0 = time.perf_counter()
    envs = asyncio.run(fill(net.configs["JP"], n))
    print(f"filled Japan's log with {n:,} issuances in {time.perf_counter() - t0:.1f} s")
    return net, envs
