"""The files an export writes: an XLSX workbook, a folder of CSV files, a JSON-lines file,
each written a row at a time.

Why this module exists: an export of a large partnership (100,000 records and more)
must never hold a workbook or a list of rows in memory, and a failed or interrupted
export must not leave a file that looks complete. ``services.export`` decides what the
rows are; this module only writes them (docs/adr/0024-export-record-show-and-endorse.md).

Rules:

1. **Streaming.** XLSX is written with openpyxl's write-only workbook (each sheet goes
   to a temporary file as rows arrive, so every kind's sheet can be open at once); CSV
   with the csv module, one file per kind; JSON lines one line per record. Memory does
   not grow with the number of rows.
2. **Layout.** One sheet (XLSX) or file (CSV, ``<kind>.csv``) per kind asked for, in
   the order asked, each with its header row, even when the kind has no record, so a
   reader finds every sheet it expects. CSV is UTF-8 with a byte-order mark, which
   spreadsheet programs need to read it as UTF-8 (the importer accepts it).
3. **All or nothing.** Everything is written under a temporary name beside the target
   and renamed into place only when complete (``commit``); ``abort`` removes it. A
   target that exists is refused unless ``overwrite``.
4. **Nothing changed without a word.** A value XLSX cannot hold as it is (a control
   character, refused by openpyxl; a carriage return, which XML reading turns into a
   line feed) is refused, naming the record, rather than written altered.
5. **Refusals are one line.** A folder that does not exist, no permission, a full disk:
   a ``BadDataError`` or ``NotFoundError`` naming the path and the cause.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Protocol

import msgspec

from jcm_sync.errors import BadDataError, NoOutputFolderError

Cell = str | int | None

CSV_SUFFIX: Final = ".csv"
_TMP: Final = ".partial"
_FLUSH: Final = 256 * 1024
"""Bytes of JSON lines gathered before they are written."""


class Sink(Protocol):
    """Where export rows go: ``begin`` once, ``write`` per row, then ``commit`` or
    ``abort``."""

    target: Path

    def begin(self, sheets: Mapping[str, Sequence[str]]) -> None: ...

    def write(self, sheet: str, row: Sequence[Cell]) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def _tmp(target: Path) -> Path:
    return target.with_name(f".{target.name}{_TMP}")


def _os_error(what: str, path: Path, exc: OSError) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return NoOutputFolderError(
            f"cannot write the {what}: folder {path.parent} does not exist", where=str(path)
        )
    return BadDataError(f"cannot write the {what}: {exc.strerror or exc}", where=str(path))


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        err = BadDataError("the export's target exists already", where=str(target))
        err.next_step = "name another --out, or give --force to replace it"
        raise err
    if not target.parent.is_dir():
        raise NoOutputFolderError(
            f"cannot write the export: folder {target.parent} does not exist", where=str(target)
        )


def _replace(tmp: Path, target: Path) -> None:
    if target.is_dir() and not tmp.is_dir():
        raise BadDataError("cannot write the export: it is a folder", where=str(target))
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists() and tmp.is_dir():
        target.unlink()
    os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_NOT_IN_XLSX: Final = (
    "a value holds {what}, which XLSX cannot store as it is; export as csv or jsonl"
)


class XlsxSink:
    """Rule 1: one write-only workbook, a sheet per kind."""

    def __init__(self, target: Path, *, overwrite: bool = False, description: str = "") -> None:
        _check_target(target, overwrite)
        self.target = target
        self._tmp = _tmp(target)
        self._description = description
        self._sheets: dict[str, Any] = {}
        self._book: Any = None
        self._illegal: type[Exception] = Exception

    def begin(self, sheets: Mapping[str, Sequence[str]]) -> None:
        from openpyxl import Workbook
        from openpyxl.utils.exceptions import IllegalCharacterError

        self._illegal = IllegalCharacterError
        self._book = Workbook(write_only=True)
        if self._description:
            self._book.properties.description = self._description
        self._book.properties.creator = "jcm-sync export"
        for name, header in sheets.items():
            ws = self._book.create_sheet(title=name)
            ws.append(list(header))
            self._sheets[name] = ws

    def write(self, sheet: str, row: Sequence[Cell]) -> None:
        for v in row:
            if isinstance(v, str) and "\r" in v:
                raise BadDataError(_NOT_IN_XLSX.format(what="a carriage return"))
        try:
            self._sheets[sheet].append(row)
        except self._illegal:
            raise BadDataError(_NOT_IN_XLSX.format(what="a control character")) from None

    def commit(self) -> None:
        try:
            self._book.save(self._tmp)
            _replace(self._tmp, self.target)
        except OSError as exc:
            self.abort()
            raise _os_error("export", self.target, exc) from None

    def abort(self) -> None:
        # close each sheet's stream and remove its temporary file (openpyxl keeps them
        # until the interpreter exits otherwise); best effort: a sheet whose stream a
        # refused cell broke may not close cleanly
        for ws in self._sheets.values():
            with contextlib.suppress(Exception):
                ws.close()
            with contextlib.suppress(Exception):
                ws._writer.cleanup()
        self._sheets.clear()
        _remove(self._tmp)


class CsvSink:
    """Rule 1: a folder of ``<kind>.csv`` files, UTF-8 with a byte-order mark."""

    def __init__(self, target: Path, *, overwrite: bool = False) -> None:
        _check_target(target, overwrite)
        self.target = target
        self._tmp = _tmp(target)
        self._files: dict[str, IO[str]] = {}
        self._writers: dict[str, Any] = {}

    def begin(self, sheets: Mapping[str, Sequence[str]]) -> None:
        try:
            _remove(self._tmp)
            self._tmp.mkdir()
            for name, header in sheets.items():
                path = self._tmp / f"{name}{CSV_SUFFIX}"
                f = open(path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed by commit/abort)
                self._files[name] = f
                self._writers[name] = csv.writer(f)
                self._writers[name].writerow(header)
        except OSError as exc:
            self.abort()
            raise _os_error("export", self.target, exc) from None

    def write(self, sheet: str, row: Sequence[Cell]) -> None:
        self._writers[sheet].writerow(row)

    def _close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def commit(self) -> None:
        try:
            self._close()
            _replace(self._tmp, self.target)
        except OSError as exc:
            self.abort()
            raise _os_error("export", self.target, exc) from None

    def abort(self) -> None:
        self._close()
        _remove(self._tmp)


class JsonlSink:
    """Rule 1: one JSON object per line, written in row order (sheets only name the
    kinds; every line carries its own members). ``target`` ``-`` is stdout."""

    def __init__(self, target: Path, *, overwrite: bool = False, stdout: IO[bytes] | None = None):
        self.target = target
        self._stdout = stdout
        if stdout is None:
            _check_target(target, overwrite)
        self._tmp = _tmp(target)
        self._file: IO[bytes] | None = None
        self._headers: dict[str, Sequence[str]] = {}
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()

    def begin(self, sheets: Mapping[str, Sequence[str]]) -> None:
        self._headers = dict(sheets)
        if self._stdout is not None:
            self._file = self._stdout
            return
        try:
            self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit/abort)
        except OSError as exc:
            raise _os_error("export", self.target, exc) from None

    def write_object(self, obj: Any) -> None:
        assert self._file is not None
        self._encoder.encode_into(obj, self._buffer, -1)
        self._buffer.extend(b"\n")
        if len(self._buffer) > _FLUSH:
            self._flush()

    def write(self, sheet: str, row: Sequence[Cell]) -> None:
        self.write_object(dict(zip(self._headers[sheet], row, strict=True)))

    def _flush(self) -> None:
        assert self._file is not None
        try:
            self._file.write(self._buffer)
        except OSError as exc:
            raise _os_error("export", self.target, exc) from None
        self._buffer.clear()

    def commit(self) -> None:
        self._flush()
        if self._stdout is not None:
            self._stdout.flush()
            return
        assert self._file is not None
        try:
            self._file.close()
            _replace(self._tmp, self.target)
        except OSError as exc:
            self.abort()
            raise _os_error("export", self.target, exc) from None

    def abort(self) -> None:
        if self._stdout is not None:
            return
        if self._file is not None and not self._file.closed:
            self._file.close()
        _remove(self._tmp)
