"""``jcm-sync demo`` (``cli/demo.py``): the in-process half of ``make run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import run


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The make-run demo accepts the signed decision and refuses every bad copy."""
    code, out, _ = run(capsys, "demo", "--dir", tmp_path / "demo")
    assert code == 0, out
    assert out.count("refused") >= 4
    assert "ACCEPTED" not in out
