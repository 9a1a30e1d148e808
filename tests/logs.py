"""A log record as an operator reads it: its event and every field, in one string."""

from __future__ import annotations

import json
import logging

_STD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra=`` fields of a record (what ``local/logging_setup.py`` adds to its line)."""
    return {k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")}


def rendered(record: logging.LogRecord) -> str:
    """The event and its fields as the JSON line would carry them (for ``in`` checks)."""
    return record.getMessage() + " " + json.dumps(fields(record), default=str)
