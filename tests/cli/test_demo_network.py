"""The network half of ``make run``: real hub and agents, one large partnership.

Checks what the demo shows rather than how it prints it: every log converged at both
sides (read from the stores the demo leaves behind), JP–ID holds more than 1,000
Japan-side records, the over-issued credit is caught with the same discrepancy id on
both sides, and moving it is refused while the discrepancy is open.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.cli.demo_network import DEMO_PARTNERS
from jcm_sync.local.config import load_config
from jcm_sync.services.node import log_ref
from jcm_sync.store import open_store


async def _sizes(config: Path, partnership: str) -> dict[str, int]:
    cfg = load_config(config, env={})
    async with await open_store(cfg.store_url) as store:
        return {
            node: (await store.tree_head(log_ref(cfg, partnership, node))).size
            for node in ("JP", partnership[3:])
        }


def test_network_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    code = main(["demo", "--part", "network", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    work = tmp_path / "network"
    for cc in DEMO_PARTNERS:
        pid = f"JP-{cc}"
        hub = asyncio.run(_sizes(work / "jp" / "config.toml", pid))
        agent = asyncio.run(_sizes(work / cc.lower() / "config.toml", pid))
        assert hub == agent, (pid, hub, agent)
        if cc == "ID":
            assert hub["JP"] > 1000, hub
            assert hub["ID"] > 1000, hub
    assert "both sides found the same discrepancy ids" in out
    assert "a move of quarantined serials was accepted" not in out
    assert out.rstrip().splitlines()[-1].startswith("ok:")
    print(f"network demo: {time.monotonic() - t0:.1f} s")
