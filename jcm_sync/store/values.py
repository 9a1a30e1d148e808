"""The values a store takes and returns: which log, its head, its entries, its marks.

Why this module exists: the services, the server and every store adapter speak in these
values, and nothing in them does I/O; keeping them apart from the ``Store`` protocol and
the adapters lets a caller name a log or read an entry without importing a database.

Every value is a frozen dataclass: a store hands out what it checked, and nobody changes
it afterwards. Hashes are raw 32-byte SHA-256; record ids and trust-root digests are
64 lowercase hex digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from jcm_sync.core import merkle
from jcm_sync.core.trust import Verification

__all__ = [
    "MAX_INDEX",
    "AppendResult",
    "Coord",
    "Entry",
    "IndexedRecord",
    "LogRef",
    "RecordQuery",
    "StoredCheckpoint",
    "TreeHead",
    "TrustMark",
    "Verify",
]

#: Largest index or size a store accepts: both SQL backends keep them in signed 64-bit ints.
MAX_INDEX: Final = 2**63 - 1

Coord = tuple[int, int]
"""A perfect-subtree coordinate ``(level, index)``, see ``subtrees``."""

Verify = Callable[[bytes], Verification]
"""Verifies one envelope (signatures, schema, authority); typically
``lambda b: trust.verify_record(root, b, now)``."""


@dataclass(frozen=True, slots=True)
class LogRef:
    """Names one log: the records ``node`` authored in ``partnership``, under ``origin``."""

    partnership: str
    node: str
    origin: str

    def __str__(self) -> str:
        return self.origin


@dataclass(frozen=True, slots=True)
class TreeHead:
    """Size and root of a log's tree."""

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: the exact envelope bytes at ``index``."""

    index: int
    record_id: str
    envelope: bytes
    appended_at: datetime

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.envelope)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append did: ``appended`` new entries, ``present`` already held."""

    log: LogRef
    start: int
    appended: int
    present: int
    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored, with the size and root it commits to."""

    size: int
    root: bytes
    note: bytes


@dataclass(frozen=True, slots=True)
class TrustMark:
    """A partnership's trust-root version and the SHA-256 (hex) of that root document."""

    partnership: str
    version: int
    digest: str

    def describe(self) -> str:
        return f"version {self.version} (sha256 {self.digest[:12]})"


@dataclass(frozen=True, slots=True)
class IndexedRecord:
    """A row of the record index: where a record sits and what it is."""

    record_id: str
    kind: str
    key: str
    author: str
    supersedes: str | None
    partnership: str
    log: LogRef
    index: int


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """A lookup in the record index; the set fields are ANDed together."""

    record_id: str | None = None
    kind: str | None = None
    key: str | None = None
    partnership: str | None = None
    supersedes: str | None = None
