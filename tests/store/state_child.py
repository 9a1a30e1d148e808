"""The victim of the node-state kill test: replaces one large value until it is killed.

Usage: ``state_child.py URL KEY``

It opens the store, prints ``ready``, then writes generation 1, 2, 3, ... of the value
under KEY (``generation_value``), printing ``ack G`` once ``put_state`` has returned. The
parent kills it with SIGKILL at a random moment and checks that the stored value is one
whole generation, never a mix or a prefix, and not older than the last acknowledged one.
"""

from __future__ import annotations

import asyncio
import sys

from jcm_sync.store import open_store

MIB = 1024 * 1024


def generation_value(g: int) -> bytes:
    """Generation ``g``: its number, then one byte repeated; over two 8 MiB chunks long."""
    head = f"{g:08d}".encode()
    return head + bytes([g % 251]) * (12 * MIB + g * 4097)


def check_value(value: bytes) -> int:
    """The generation ``value`` is, whole; ``AssertionError`` if it is not one."""
    g = int(value[:8])
    assert value == generation_value(g), f"generation {g} is not whole ({len(value)} bytes)"
    return g


async def main(url: str, key: str) -> int:
    store = await open_store(url)
    g = 0
    print("ready", flush=True)
    while True:
        g += 1
        await store.put_state(key, generation_value(g))
        print("ack", g, flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
