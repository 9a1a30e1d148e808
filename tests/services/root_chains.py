"""What the trust-root rotation tests share: a generated configuration pointed at another
chain of JP-MN root files (``test_node``: no rollback across a restart; ``test_reload``:
SIGHUP swaps a newer root in), and the hub's store on each backend they run over.

The test modules import ``hub_store`` (a fixture) and ``pg_reachable``, which it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store.conftest import PG_URL, drop_schema, make_schema, with_param

PID = "JP-MN"


def set_chain(config: Path, paths: list[Path]) -> None:
    """Point the JP-MN partnership of a generated config at ``paths`` (oldest first)."""
    text = config.read_text()
    start = text.index("trust_root = [", text.index(f'id = "{PID}"'))
    end = text.index("]", start) + 1
    listed = ", ".join(f'"../roots/{p.name}"' for p in paths)
    config.write_text(text[:start] + f"trust_root = [{listed}]" + text[end:])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hub_store(
    request: pytest.FixtureRequest, pg_reachable: str | None
) -> AsyncIterator[str | None]:
    """None (the hub's default SQLite file) or a PostgreSQL URL in a schema of its own."""
    if request.param == "sqlite":
        yield None
        return
    if pg_reachable is not None:
        pytest.skip(pg_reachable)
    schema = await make_schema()
    try:
        yield with_param(PG_URL, "search_path", schema)
    finally:
        await drop_schema(schema)
