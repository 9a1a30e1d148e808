"""Fixtures of the tests of a node's local state: a real SQLite store on a file in the
test's folder, where the job status and the fork alarms live (ADR 0027). The one-time
import of the older JSON files (``tests/store/test_legacy.py``) uses it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.store import Store, open_store


def node_db_url(tmp_path: Path) -> str:
    """The URL of the SQLite store the ``store`` fixture opens (``node.db``)."""
    return f"sqlite:///{tmp_path / 'node.db'}"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real SQLite store, closed after the test."""
    s = await open_store(node_db_url(tmp_path))
    try:
        yield s
    finally:
        await s.close()
