"""One witnessed test network for every test that needs a real hub and its agents.

A hub (aiohttp on 127.0.0.1, port 0) on SQLite or on a PostgreSQL schema of its own, and
the partners' agents opened on demand (``Running.agent``), from ``provision``: keys,
roots (with ``cosign=True``, each requiring the mutual cosignature, ADR 0035) and
configurations. Used by the witness endpoint's, agreement's and volume tests, which each
built the same thing by hand.

``BACKENDS`` parametrises a fixture over both stores (PostgreSQL marked ``postgres`` and
skipped when it cannot be reached); ``witnessed_net`` makes, starts and tears one down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.net.server import ServerSettings
from jcm_sync.services.sample import provision
from tests.exchange.conftest import Running
from tests.store.conftest import PG_URL, drop_schema, make_schema, with_param

BACKENDS: list[Any] = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""``@pytest.fixture(params=BACKENDS)``: the hub's store on SQLite, then PostgreSQL."""


@asynccontextmanager
async def witnessed_net(
    tmp_path: Path,
    backend: str = "sqlite",
    pg_reachable: str | None = None,
    *,
    partners: Sequence[str] = ("MN",),
    cosign: bool = False,
    seed: int | None = None,
    settings: ServerSettings | None = None,
) -> AsyncIterator[Running]:
    """A started hub over ``provision(tmp_path / "net", partners, cosign=cosign)``, its
    store on ``backend`` (``pg_reachable``: the reason PostgreSQL cannot be used, which
    skips the test); ``seed``: projects seeded in Japan's and the first partner's own logs;
    ``settings``: the hub's (default: no background jobs). Everything is closed after."""
    hub_store = schema = None
    if backend == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schema = await make_schema()
        hub_store = with_param(PG_URL, "search_path", schema)
    try:
        net = provision(
            tmp_path / "net", list(partners), hub_port=0, cosign=cosign, hub_store=hub_store
        )
        running = Running(net, settings or ServerSettings(run_jobs=False), hub_store)
        try:
            await running.start_hub()
            if seed is not None:
                await running.seed(partners[0], projects=seed)
            yield running
        finally:
            await running.close()
    finally:
        if schema is not None:
            await drop_schema(schema)
