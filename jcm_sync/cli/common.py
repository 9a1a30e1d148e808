"""Shared parts of the CLI: output on stdout (human or ``--json``), messages on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from rich.console import Console

from jcm_sync.errors import BadDataError, NoOutputFolderError
from jcm_sync.local.keyfiles import read_small_file

EXIT_OK: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2

MAX_INPUT: Final = 4 * 1024 * 1024

_json = msgspec.json.Encoder(order="sorted")


def stdout() -> Console:
    # made per call so tests that capture sys.stdout see the output
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_at(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--at",
        metavar="TIME",
        type=parse_time,
        default=None,
        help="judge validity at this ISO 8601 time instead of now",
    )


def parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # argparse prints only the message; the ValueError says the same in other words
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs a zone, e.g. {text}Z")
    return t


def now_of(args: argparse.Namespace) -> datetime:
    at = getattr(args, "at", None)
    return at if isinstance(at, datetime) else datetime.now(UTC)


def read_input(name: str, what: str = "input") -> bytes:
    """Read a file argument (``-`` is stdin) with a size limit."""
    if name == "-":
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        if len(data) > MAX_INPUT:
            raise BadDataError(f"{what} is larger than {MAX_INPUT} bytes", where="stdin")
        return data
    return read_small_file(Path(name), limit=MAX_INPUT, what=what)


def write_output(name: str | Path | None, data: bytes, what: str = "output") -> None:
    """Write bytes to a file, or to stdout when no file is named.

    A file that cannot be written is a one-line refusal naming it and the cause (a
    folder that does not exist, no permission, a full disk), never a traceback.
    """
    if name is None or name == "-":
        text = data.decode("utf-8", "replace")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    path = Path(name)
    try:
        path.write_bytes(data)
    # each message names the file and the cause; the OSError would repeat them
    except FileNotFoundError:
        raise NoOutputFolderError(
            f"cannot write the {what}: folder {path.parent} does not exist", where=str(path)
        ) from None
    except IsADirectoryError:
        raise BadDataError(f"cannot write the {what}: it is a folder", where=str(path)) from None
    except OSError as exc:
        raise BadDataError(f"cannot write the {what}: {exc.strerror}", where=str(path)) from None


def emit(args: argparse.Namespace, data: Any, human: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON with ``--json``, otherwise let ``human`` render it."""
    if getattr(args, "json", False):
        sys.stdout.write(_json.encode(data).decode("utf-8") + "\n")
        sys.stdout.flush()
    else:
        human(stdout())


def note(message: str) -> None:
    """A progress or status message: stderr, so stdout stays data."""
    stderr().print(message)
