"""The cell values of an XLSX workbook's sheets, streamed with expat, row by row.

Why this module exists: an import of 100,000 rows spends most of its time reading the
workbook. openpyxl's read-only mode builds a cell object through its descriptors for
every cell; an import only needs each cell's value. This reader parses the sheet XML
with expat (C) and keeps only values, a few times faster, and openpyxl remains the
writer and the reference the tests compare against (``bench/import_xlsx.py`` measures
both on the same file).

Rules:

1. **Values as openpyxl's read-only ``values_only`` gives them**: shared and inline
   strings as text (runs joined, phonetic runs left out), numbers as int or float,
   booleans, error codes as text, ISO dates (``t="d"``) and numbers in a date format
   (the workbook's styles, ``openpyxl.styles.numbers.is_date_format``; the 1904 date
   system honoured) as datetimes. A formula's cached value is its value.
2. **Sheets** in workbook order, by name, with each row's number as the sheet says it
   (empty rows are absent, not renumbered) and each cell at its column (``r="C7"``).
3. **Streaming**: the sheet is fed to expat in 64 KiB chunks; shared strings and styles
   are read first, whole (they are small next to the sheets).
4. Anything that is not such a workbook is ``ValueError``; the caller names the file.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final
from xml.etree import ElementTree
from xml.parsers import expat

from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format
from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel

_MAIN: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_CHUNK: Final = 64 * 1024

Row = tuple[int, list[object]]


def _column(ref: str) -> int:
    """0-based column of a cell reference (``AB12`` -> 27)."""
    n = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            n = n * 26 + ord(ch) - 64
        else:
            break
    return n - 1


class Workbook:
    """An open XLSX file: its sheet names, shared strings and date styles."""

    def __init__(self, path: str) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
            self._read_parts()
        except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError) as exc:
            raise ValueError(f"not an XLSX workbook ({exc})") from exc

    def close(self) -> None:
        self.zip.close()

    def _xml(self, name: str) -> ElementTree.Element:
        with self.zip.open(name) as f:
            return ElementTree.parse(f).getroot()

    def _read_parts(self) -> None:
        book = self._xml("xl/workbook.xml")
        rels = {
            r.get("Id"): r.get("Target", "")
            for r in self._xml("xl/_rels/workbook.xml.rels").iter(f"{{{_PKG_REL}}}Relationship")
        }
        pr = book.find(f"{{{_MAIN}}}workbookPr")
        mac = pr is not None and pr.get("date1904", "").lower() in ("1", "true")
        self.epoch = CALENDAR_MAC_1904 if mac else CALENDAR_WINDOWS_1900
        self.sheets: list[tuple[str, str]] = []
        for s in book.iter(f"{{{_MAIN}}}sheet"):
            target = rels.get(s.get(f"{{{_REL}}}id"), "")
            part = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join("xl", target))
            )
            self.sheets.append((s.get("name", ""), part))
        names = set(self.zip.namelist())
        self.strings: list[str] = []
        if "xl/sharedStrings.xml" in names:
            for si in self._xml("xl/sharedStrings.xml").iter(f"{{{_MAIN}}}si"):
                self.strings.append(_text_of(si))
        self.date_styles: frozenset[int] = frozenset()
        if "xl/styles.xml" in names:
            styles = self._xml("xl/styles.xml")
            custom = {
                int(f.get("numFmtId", "0")): f.get("formatCode", "")
                for f in styles.iter(f"{{{_MAIN}}}numFmt")
            }
            xfs = styles.find(f"{{{_MAIN}}}cellXfs")
            dates = set()
            for i, xf in enumerate(xfs if xfs is not None else ()):
                fid = int(xf.get("numFmtId", "0"))
                code = custom.get(fid) or BUILTIN_FORMATS.get(fid, "")
                if code and is_date_format(code):
                    dates.add(i)
            self.date_styles = frozenset(dates)

    def rows(self, part: str) -> Iterator[Row]:
        """Rule 2-3: the rows of one sheet part."""
        reader = _SheetReader(self)
        try:
            with self.zip.open(part) as f:
                while chunk := f.read(_CHUNK):
                    reader.parser.Parse(chunk, False)
                    yield from reader.take()
                reader.parser.Parse(b"", True)
                yield from reader.take()
        except (expat.ExpatError, KeyError) as exc:
            raise ValueError(f"a sheet is not readable XML ({exc})") from exc


def _text_of(si: ElementTree.Element) -> str:
    """A shared string: its ``t`` elements joined, phonetic runs (``rPh``) left out."""
    out = []
    for child in si:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "t":
            out.append(child.text or "")
        elif tag == "r":
            out.extend(t.text or "" for t in child.iter(f"{{{_MAIN}}}t"))
    return "".join(out)


class _SheetReader:
    """expat handlers collecting the values of ``c`` elements into rows."""

    def __init__(self, book: Workbook) -> None:
        self.book = book
        self.done: list[Row] = []
        self.values: list[object] = []
        self.row = 0
        self.col = 0
        self.type = ""
        self.style = 0
        self.text: list[str] = []
        self.collect = False
        self.in_phonetic = False
        p = expat.ParserCreate(namespace_separator=" ")
        p.buffer_text = True
        p.StartElementHandler = self.start
        p.EndElementHandler = self.end
        p.CharacterDataHandler = self.data
        self.parser = p

    def take(self) -> list[Row]:
        out, self.done = self.done, []
        return out

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = name.rsplit(" ", 1)[-1]
        if tag == "c":
            ref = attrs.get("r")
            self.col = _column(ref) if ref else len(self.values)
            self.type = attrs.get("t", "n")
            self.style = int(attrs.get("s", "0"))
            self.text = []
        elif tag == "v" or (tag == "t" and not self.in_phonetic):
            self.collect = True
        elif tag == "rPh":
            self.in_phonetic = True
        elif tag == "row":
            r = attrs.get("r")
            self.row = int(r) if r else self.row + 1
            self.values = []

    def data(self, text: str) -> None:
        if self.collect:
            self.text.append(text)

    def end(self, name: str) -> None:
        tag = name.rsplit(" ", 1)[-1]
        if tag in ("v", "t"):
            self.collect = False
        elif tag == "rPh":
            self.in_phonetic = False
        elif tag == "c":
            if self.text:
                values = self.values
                while len(values) < self.col:
                    values.append(None)
                value = self.value("".join(self.text))
                if len(values) == self.col:
                    values.append(value)
                else:
                    values[self.col] = value
        elif tag == "row":
            self.done.append((self.row, self.values))

    def value(self, text: str) -> Any:
        t = self.type
        if t == "s":
            return self.book.strings[int(text)]
        if t in ("inlineStr", "str", "e"):
            return text
        if t == "b":
            return text.strip() in ("1", "true")
        if t == "d":
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        if self.style in self.book.date_styles:
            return from_excel(float(text), self.book.epoch)
        if "." in text or "E" in text or "e" in text:  # as openpyxl casts numbers
            return float(text)
        return int(text)
