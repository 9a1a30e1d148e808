"""Reading a node's state from its store in a synchronous test (a CLI test, after the command).

Node state (job status, alarms, reconciliation history and reports) lives in the store
(ADR 0027), read through coroutines; a test that drives the CLI opens the store the
configuration names, runs one read and closes it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from jcm_sync.local.config import load_config
from jcm_sync.store import Store, open_store

T = TypeVar("T")


def with_store(config: Path | str, work: Callable[[Store], Awaitable[T]]) -> T:
    """``await work(store)`` on the store of the node ``config`` configures."""
    cfg = load_config(Path(config), env={})

    async def main() -> T:
        store = await open_store(cfg.store_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())
