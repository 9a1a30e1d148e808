"""A log in a real SQLite store, grown in steps with a signed checkpoint at each, for the
tlog-tiles tests (writer, reader, pull from tiles, the HTTP and S3 adapters, the CLI)."""

from __future__ import annotations

from pathlib import Path

from jcm_sync.services.log_service import append_checked
from jcm_sync.store import LogRef, Store, open_store
from tests.store import World


async def grow(store: Store, world: World, ref: LogRef, to: int) -> None:
    """Append ``ref``'s envelopes up to ``to`` entries and sign a checkpoint there."""
    head = await store.tree_head(ref)
    if to > head.size:
        envelopes = world.envelopes(ref.node, to - head.size, head.size)
        await append_checked(store, ref, envelopes, root=world.root, now=world.now,
                             checkpoint_key=world.key_of(ref.node))  # fmt: skip


async def make_store(path: Path, world: World, size: int, node: str = "JP") -> str:
    """A SQLite store at ``path`` holding ``size`` entries of ``node``'s log; its URL."""
    return await fill(f"sqlite:///{path}", world, size, node)


async def fill(url: str, world: World, size: int, node: str = "JP") -> str:
    """The store at ``url`` (any backend) made to hold ``size`` entries of ``node``'s
    log; its URL."""
    async with await open_store(url) as store:
        ref = world.jp_log if node == "JP" else world.id_log
        await store.ensure_log(ref)
        await grow(store, world, ref, size)
    return url
