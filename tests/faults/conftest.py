"""The fault suite's counts (kills, requests, faults, records) in the terminal summary.

Each test of ``tests/faults`` reports one line through ``harness.summary``; pytest
captures output of passing tests, so the lines are printed again here, where a
``make test`` run shows them.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("fault suite")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
