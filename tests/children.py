"""Child processes started together: the harness of the tests that race two processes
over one store (run numbers, run history).

A child (``python -m tests.services.<module> URL ...``) opens the store, prints
``ready``, waits for a line on stdin, does its work and prints the integers it got on
one line (``child_main``). The parent starts one child per name, waits until every one
is ready, releases them together and collects what each printed (``run_together``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from jcm_sync.store import Store, open_store
from tests.store.conftest import pg_schema_url

REPO = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def backend_url(backend: str, tmp_path: Path, pg_why: str | None) -> AsyncIterator[str]:
    """The URL of one store the children share: a SQLite file in ``tmp_path``, or a
    throwaway schema of the test PostgreSQL (``pg_why``: why it cannot be reached)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        async with pg_schema_url(pg_why) as url:
            yield url


async def run_together(
    module: str, argv: Mapping[str, Sequence[str]], timeout: float = 120.0
) -> dict[str, list[int]]:
    """Start ``python -m MODULE *argv[name]`` per name from this checkout (its
    ``jcm_sync``, not another one installed), release them at once once all are ready,
    and return the integers each printed; a child failing fails the test."""
    children = {
        name: await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO,
        )
        for name, args in argv.items()
    }  # fmt: skip
    for child in children.values():
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
    for child in children.values():
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    got: dict[str, list[int]] = {}
    for name, child in children.items():
        out, _ = await asyncio.wait_for(child.communicate(), timeout)
        assert child.returncode == 0, f"child {name} exited {child.returncode}"
        got[name] = [int(n) for n in out.split()]
    return got


async def child_main(url: str, work: Callable[[Store], Awaitable[list[int]]]) -> int:
    """A child's life: open the store at ``url``, say ``ready``, wait for the go, run
    ``work`` and print the integers it returns on one line."""
    store = await open_store(url)
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        got = await work(store)
        print(" ".join(map(str, got)), flush=True)
    finally:
        await store.close()
    return 0
