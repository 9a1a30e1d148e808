"""Structured logs for the daemons (structlog over the standard library's logging).

Why this module exists: an operator's log shipper reads the daemons' stderr, and a
person reads it on a terminal. Both need the same events: a constant name
(``push-accepted``, ``refused``, ``listening``) with key/value fields, never a sentence
with the values formatted into it. Library code logs through
``logging.getLogger("jcm_sync.…")`` with ``extra=`` fields; the daemons call
``configure`` once, before anything else is written, so the first line of their
stderr is already an event.

Rules:

1. An event is a constant, lower-case, hyphenated name; every value that varies is a
   field in ``extra=`` (``log.info("push-accepted", extra={"entries": 3})``), named
   so as not to clash with ``logging.LogRecord``'s own attributes (``name``,
   ``module``, ``process``, …: ``logging`` refuses those).
2. ``--log-format json`` writes one JSON object per line: ``timestamp`` (UTC, ISO
   8601), ``level``, ``logger``, ``event`` and the fields. ``console`` writes one
   readable line per event, with colours only when the stream is a terminal.
   ``auto`` (the default) is ``console`` on a terminal and ``json`` otherwise, so a
   pipe or the journal never receives escape codes.
3. ``--log-level`` is one of ``LEVELS``; the default is INFO. aiohttp's access log
   and APScheduler log warnings only, whatever the level.
4. ``configure`` replaces the root logger's handlers: calling it again does not
   double the lines. Python's warnings go through logging (``py.warnings``), so nothing
   else reaches stderr.
5. A JSON line of a standard-library record without a traceback or stack (every
   ``push-accepted`` line) is written by ``_JsonFormatter`` directly: the same keys in
   the same order with the same values as structlog's chain below writes them
   (``tests/local/test_logging_setup.py`` compares both), without its copy of the
   record and its processor calls (ADR 0063: the hub writes one per push); any other
   record goes through structlog's chain.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

import structlog

_STD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The levels ``--log-level`` accepts (rule 3)."""
FORMATS: Final = ("auto", "json", "console")
"""The formats ``--log-format`` accepts (rule 2)."""
Format = Literal["auto", "json", "console"]
_LEVEL_NAMES: Final = {"warn": "warning", "exception": "error"}
"""structlog's ``add_log_level`` names (rule 5)."""
QUIETED: Final = ("aiohttp.access", "apscheduler")
"""Loggers kept at WARNING whatever the level (rule 3)."""


def _extra_fields(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                event.setdefault(key, value)
    return event


class _JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """Rule 5: structlog's formatter, with the JSON line of a plain record written here."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.stack_info or "_logger" in record.__dict__:
            return super().format(record)
        event = {
            "event": record.getMessage(),  # the chain's keys, in its order
            "level": _LEVEL_NAMES.get(level := record.levelname.lower(), level),
            "logger": record.name,
            "timestamp": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"),
        }
        for key, value in vars(record).items():  # _extra_fields
            if key not in _STD_ATTRS and not key.startswith("_"):
                event.setdefault(key, value)
        return json.dumps(event, default=str)


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wants_json(fmt: str, stream: TextIO) -> bool:
    """Rule 2: whether ``fmt`` renders JSON on ``stream`` (``auto``: not a terminal)."""
    if fmt not in FORMATS:
        raise ValueError(f"a log format is one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt == "json" or (fmt == "auto" and not is_terminal(stream))


def configure(
    level: str = "INFO",
    *,
    json: bool | None = None,
    fmt: str = "json",
    stream: TextIO | None = None,
) -> None:
    """Send every log record to ``stream`` (stderr) as one event per line.

    ``fmt`` is ``auto``, ``json`` or ``console`` (rule 2); ``json`` given overrides it
    (True: JSON, False: console). Colours only when ``stream`` is a terminal.
    """
    out = sys.stderr if stream is None else stream
    if level.upper() not in LEVELS:
        raise ValueError(f"a log level is one of {', '.join(LEVELS)}, not {level!r}")
    as_json = json if json is not None else wants_json(fmt, out)
    colors = not as_json and is_terminal(out)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(default=str)
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=colors,
            exception_formatter=(
                structlog.dev.rich_traceback if colors else structlog.dev.plain_traceback
            ),
        )
    )
    # JSON carries the traceback as a string field; the console renders it itself
    tracebacks = [structlog.processors.format_exc_info] if as_json else []
    formatter = (_JsonFormatter if as_json else structlog.stdlib.ProcessorFormatter)(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _extra_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tracebacks,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a Python warning is an event too, not a raw line
