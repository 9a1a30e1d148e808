"""Daemon logs: one JSON object per line on stderr, with the caller's extra fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jcm_sync.local.logging_setup import configure

QUIETED = ("aiohttp.access", "apscheduler")


@contextmanager
def configured(level: str = "INFO", *, json: bool = True) -> Iterator[None]:
    """``configure`` for the length of a block; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, [logging.getLogger(n).level for n in QUIETED]
    try:
        configure(level, json=json)
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, old in zip(QUIETED, saved[2], strict=True):
            logging.getLogger(name).setLevel(old)


def lines(err: str) -> list[dict[str, Any]]:
    """Each stderr line parsed as JSON; a line that is not one object fails the test."""
    parsed = [json.loads(line) for line in err.splitlines()]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def test_a_log_call_is_one_json_line_with_the_promised_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """timestamp (UTC ISO), level, logger, event (formatted) and each extra field."""
    before = datetime.now(UTC)
    with configured():
        logging.getLogger("jcm_sync.agent").info(
            "pushed %d entries", 3, extra={"origin": "jcm-sync.example/JP-MN/MN", "size": 12}
        )
    after = datetime.now(UTC)
    (line,) = lines(capsys.readouterr().err)
    assert line["event"] == "pushed 3 entries"
    assert line["level"] == "info"
    assert line["logger"] == "jcm_sync.agent"
    assert line["origin"] == "jcm-sync.example/JP-MN/MN"
    assert line["size"] == 12
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= after


def test_only_extra_fields_are_added(capsys: pytest.CaptureFixture[str]) -> None:
    """LogRecord internals (pathname, lineno, …) and private ``_`` fields stay out of the line."""
    with configured():
        logging.getLogger("jcm_sync.node").warning(
            "x", extra={"partnership": "JP-MN", "_hidden": 1}
        )
    (line,) = lines(capsys.readouterr().err)
    assert set(line) == {"event", "level", "logger", "timestamp", "partnership"}


def test_the_level_filters_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Below the configured level nothing is written; at or above it, it is."""
    with configured("WARNING"):
        log = logging.getLogger("jcm_sync.hub")
        log.info("not shown")
        log.warning("shown")
        log.error("also shown")
    got = lines(capsys.readouterr().err)
    assert [(g["level"], g["event"]) for g in got] == [
        ("warning", "shown"),
        ("error", "also shown"),
    ]


def test_an_exception_is_rendered_into_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`log.exception` keeps the traceback inside the one JSON object, not on extra lines."""
    with configured():
        try:
            raise ValueError("bad checkpoint 42")
        except ValueError:
            logging.getLogger("jcm_sync.agent").exception("job failed")
    (line,) = lines(capsys.readouterr().err)
    assert line["event"] == "job failed"
    assert line["level"] == "error"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad checkpoint 42" in line["exception"]


def test_configuring_twice_does_not_double_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """`configure` replaces the root handlers, so a second call still writes each event once."""
    with configured():
        configure()
        logging.getLogger("jcm_sync").info("once")
        assert len(logging.getLogger().handlers) == 1
    assert [g["event"] for g in lines(capsys.readouterr().err)] == ["once"]


def test_chatty_libraries_are_quieted(capsys: pytest.CaptureFixture[str]) -> None:
    """aiohttp's access log and APScheduler log warnings only, even at DEBUG."""
    with configured("DEBUG"):
        for name in QUIETED:
            assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
            logging.getLogger(name).info("noise")
        logging.getLogger("jcm_sync").debug("kept")
    assert [g["event"] for g in lines(capsys.readouterr().err)] == ["kept"]


def test_console_format_is_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    """With ``json=False`` the line is readable text carrying the event and fields, not JSON."""
    with configured(json=False):
        logging.getLogger("jcm_sync.agent").info("pulled", extra={"origin": "o-1"})
    (text,) = capsys.readouterr().err.splitlines()
    assert "pulled" in text
    assert "o-1" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
