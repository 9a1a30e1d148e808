"""Tests of the stores, plus a small world of signed records the log tests share.

``World`` is plain values (keys, a JP-ID trust root, log names, envelopes), importable
as ``tests.store.World`` by tests outside this folder and by the durability child.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

import msgspec

from jcm_sync.core import checkpoint, trust
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.records import Record
from jcm_sync.store import LogRef, Store, open_store
from tests import builders

ORIGIN_PREFIX = "jcm-sync.example"


def log_ref(node: str, partnership: str = builders.PARTNERSHIP) -> LogRef:
    return LogRef(partnership, node, checkpoint.origin_for(ORIGIN_PREFIX, partnership, node))


@dataclass
class World:
    """Keys of JP and ID, their trust root, their two logs and envelopes to append."""

    now: datetime = builders.NOW
    keys: builders.KeyRing = field(default_factory=builders.KeyRing)
    _envelopes: dict[str, list[bytes]] = field(default_factory=dict)

    @cached_property
    def root(self) -> trust.TrustRoot:
        return builders.build_root(
            builders.PARTNERSHIP, {"JP": self.keys["jp1"], "ID": self.keys["id1"]}
        )

    @cached_property
    def root_envelope(self) -> bytes:
        return builders.signed_root(self.root, [self.keys["jp1"], self.keys["id1"]])

    @property
    def jp_log(self) -> LogRef:
        return log_ref("JP")

    @property
    def id_log(self) -> LogRef:
        return log_ref("ID")

    def key_of(self, node: str) -> PrivateKey:
        return self.keys[f"{node.lower()}1"]

    def verify(self, raw: bytes) -> trust.Verification:
        return trust.verify_record(self.root, raw, self.now)

    def sign(self, record: Record, node: str | None = None) -> bytes:
        return builders.signed(record, self.key_of(node or record.author))

    def issuance(self, node: str, i: int, *, supersedes: str | None = None) -> Record:
        """The ``i``-th distinct issuance record of ``node``'s registry."""
        rec = builders.issuance(node, created=builders.DECISION_CREATED + timedelta(seconds=i))
        return msgspec.structs.replace(rec, issuance_id=f"{node}-{i:06d}", supersedes=supersedes)

    def envelopes(self, node: str, n: int, start: int = 0) -> list[bytes]:
        """Envelopes ``start .. start+n-1`` of ``node``'s log; the same bytes on every call."""
        have = self._envelopes.setdefault(node, [])
        while len(have) < start + n:
            have.append(self.sign(self.issuance(node, len(have))))
        return have[start : start + n]


@contextlib.asynccontextmanager
async def traced_pair(
    url: str, log: LogRef, first: Sequence[bytes], verify: Callable[[bytes], trust.Verification]
) -> AsyncIterator[tuple[Store, Store, list[str]]]:
    """Two stores on one SQLite file: the first has appended ``first`` to ``log`` and then
    traces every statement it runs into the list; both are closed on the way out."""
    from jcm_sync.store.sqlite import SqliteStore

    a, b = await open_store(url), await open_store(url)
    try:
        assert isinstance(a, SqliteStore)
        await a.append_entries(log, 0, first, verify)
        statements: list[str] = []
        await a._call(lambda: a._db().set_trace_callback(statements.append))
        yield a, b, statements
    finally:
        await a.close()
        await b.close()
