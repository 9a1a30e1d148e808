"""Daemon logs: one event per line on stderr (JSON unless on a terminal), with the
caller's extra fields; a real ``registry serve`` from its first line to its last."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jcm_sync import __version__
from jcm_sync.local.logging_setup import configure
from jcm_sync.services.sample import free_port, provision
from tests.local.daemon_proc import Daemon

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


def test_a_plain_records_line_is_what_structlogs_chain_writes() -> None:
    """Rule 5: the JSON line written without structlog's chain is, byte for byte but the
    time it was written, the line the chain writes, for records of every level with
    extras of many kinds, names and characters (and records with a traceback or a stack,
    which take the chain)."""
    import re
    import sys

    import structlog

    when = re.compile(r'"timestamp": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)"')
    extras: list[dict[str, Any]] = [
        {},
        {"partnership": "JP-MN", "start": 100, "appended": 50, "size": 150},
        {"level": "x", "logger": "y", "timestamp": "z", "event": "w"},  # the chain's own keys
        {"when": datetime(2026, 1, 2, tzinfo=UTC), "raw": b"\x00\xff", "none": None},
        {"text": 'quote " back \\ ünïcödé 日本 \u2028 \n', "f": 1.5, "big": 2**70},
        {"nested": {"a": [1, {"b": (2, 3)}]}, "flag": True, "_private": 1},
        {"obj": ValueError("x"), "nan": float("nan")},
    ]
    with configured():
        formatter = logging.getLogger().handlers[0].formatter
        assert formatter is not None
        compared = 0
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 50, 5):
            for extra in extras:
                for msg, args in (("push-accepted", ()), ("%s of %d", ("a", 3))):
                    record = logging.getLogger("jcm_sync.x.y").makeRecord(
                        "jcm_sync.x.y", level, "f.py", 1, msg, args, None, extra=extra
                    )
                    chain = structlog.stdlib.ProcessorFormatter.format(formatter, record)
                    fast = formatter.format(record)
                    stamps = when.findall(chain), when.findall(fast)
                    assert [len(found) for found in stamps] == [1, 1], (chain, fast)
                    assert when.sub("T", fast) == when.sub("T", chain)
                    compared += 1
        try:
            raise ValueError("boom")
        except ValueError:
            failed = logging.getLogger("x").makeRecord(
                "x", 40, "f.py", 1, "failed", (), sys.exc_info(), extra={"a": 1}
            )
        line = json.loads(formatter.format(failed))
        assert "ValueError: boom" in line["exception"]
        assert line["a"] == 1
    assert compared == 6 * len(extras) * 2


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


# --- formats and levels (rules 2, 3) ---------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_on_a_pipe_and_coloured_console_on_a_terminal() -> None:
    """Rule 2: ``auto`` writes JSON to a stream that is not a terminal, and coloured text
    to one that is; ``console`` on a pipe has no escape codes."""
    pipe, tty, plain = io.StringIO(), FakeTerminal(), io.StringIO()
    for stream, fmt in ((pipe, "auto"), (tty, "auto"), (plain, "console")):
        with configured_to(stream, fmt):
            logging.getLogger("jcm_sync.hub").info("push-accepted", extra={"entries": 3})
    assert json.loads(pipe.getvalue())["entries"] == 3
    assert "\x1b[" in tty.getvalue()
    assert "push-accepted" in plain.getvalue()
    assert "entries=3" in plain.getvalue()
    assert "\x1b" not in plain.getvalue()


def test_unknown_levels_and_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="TRACE"):
        configure("TRACE")
    with pytest.raises(ValueError, match="xml"):
        configure(fmt="xml")


@contextmanager
def configured_to(stream: io.StringIO, fmt: str) -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", fmt=fmt, stream=stream)
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# --- a real daemon's stderr ------------------------------------------------------------


async def test_registry_serve_writes_json_events_from_its_first_line(tmp_path: Path) -> None:
    """stderr a pipe, no ``--log-format``: every line from the first to the last is one
    JSON object; the first is ``listening`` with the addresses, role, node and version;
    the log level is INFO."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    async with Daemon("registry", "serve", "--config", net.configs["JP"]) as hub:
        first = json.loads(await hub.line() or "null")
        assert first["event"] == "listening", first
        assert first["address"] == net.hub_url
        assert first["ops_address"].startswith("http://127.0.0.1:")
        assert (first["role"], first["node"], first["version"]) == ("registry", "JP", __version__)
        assert first["level"] == "info"
        assert await hub.stop() == 0
    events = hub.events()  # parses every line, or fails
    assert len(events) == len(hub.lines)


async def test_console_format_on_a_pipe_has_no_colour_codes(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    argv = ("registry", "serve", "--config", net.configs["JP"], "--log-format", "console")
    async with Daemon(*argv) as hub:
        first = await hub.line()
        assert first is not None
        assert "listening" in first
        assert f"address={net.hub_url}" in first
        assert await hub.stop() == 0
    assert hub.lines
    assert not [line for line in hub.lines if "\x1b" in line]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


async def test_log_level_warning_hides_info_events(tmp_path: Path) -> None:
    """``--log-level WARNING``: the hub serves (``/livez``) without a single INFO line;
    a refusal at start is still one ERROR event."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    argv = ("registry", "serve", "--config", net.configs["JP"], "--log-level", "WARNING")
    async with Daemon(*argv) as hub, aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{net.hub_url}/livez") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the hub never answered /livez")
        assert await hub.stop() == 0
    assert [e for e in hub.events() if e["level"] == "info"] == []

    agent_cfg = net.configs["MN"]
    async with Daemon("registry", "serve", "--config", agent_cfg, "--log-level", "warning") as bad:
        refused = await bad.event("start-refused")
        assert await bad.finish() == 1
    assert (refused["level"], refused["reason"]) == ("error", "config")
    assert "not the registry hub" in refused["error"]
