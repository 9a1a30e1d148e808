"""Headless Chromium for the console tests: Playwright for Python driving Debian's
``chromium`` (no ``playwright install``), and where screenshots go.

Without a Chromium or without Playwright the tests skip with the reason, unless the
environment variable ``CI`` is set: there a missing browser is a failure (``.ci/run``
installs both).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the browser tests must run (see .ci/run)")
    pytest.skip(f"{reason} (set CI to make this a failure)")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium on PATH (``chromium``, else ``chromium-browser``)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _unavailable("no chromium on PATH (apt-get install chromium)")
    assert path is not None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    return path


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    """A headless Chromium; ``--no-sandbox`` only when running as root (a container)."""
    from playwright.async_api import async_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path, headless=True, args=args)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def artifacts() -> Path:
    """``$JCM_SYNC_ARTIFACTS``, else ``test-artifacts/browser`` in the repository."""
    given = os.environ.get("JCM_SYNC_ARTIFACTS")
    out = Path(given) / "browser" if given else ROOT / "test-artifacts" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out
