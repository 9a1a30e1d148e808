"""Seeded mutation of HTTP requests and import files, and the checks every answer must pass.

Why this exists: the hub faces partners' agents over the network and its operators feed
files to ``jcm-sync import``; neither may answer malformed input with a 500, a traceback
or a half-stored batch (ADR 0014). ``test_fuzz.py`` drives a real hub and a real node
with what this module makes:

* ``Mutator`` mutates bytes (bit flips, truncation, insertion, deletion, duplication,
  splices of tokens that have broken parsers before), decoded JSON (wrong types, huge
  numbers, deep nesting, odd unicode, missing and extra keys) and URLs (paths and query
  strings). Every choice comes from one ``random.Random``, so a seed replays a run.
* ``Snapshot`` is what a store holds, read through the ``Store`` API: per log the head
  (size, root) and every checkpoint note, and with ``entries=True`` every envelope.
  A refused input must leave it exactly as it was.
* ``check_refusal`` is what every 4xx/5xx answer must look like (problem+json whose
  ``status`` is the HTTP status).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from jcm_sync.core.wire import Problem
from jcm_sync.store import Store

SEED_ENV = "JCM_SYNC_FUZZ_SEED"
PROBLEM = "application/problem+json"

#: tokens that have broken parsers and number handling elsewhere
TOKENS: list[bytes] = [
    b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\\ud800", b"\\u0000", b'"', b"\\",
    b"{", b"}", b"[", b"]", b",", b":", b"null", b"true", b"-0", b"1e999", b"-1",
    b"18446744073709551616", b"9223372036854775808", b"NaN", b"Infinity", b"\n", b"\r\n",
    b"\xef\xbb\xbf", b"%00", b"%ff", b"..", b"/", b"?", b"&", b"=", b"#",
]  # fmt: skip

#: strings for fields, path segments and query values
STRINGS: list[str] = [
    "", " ", "0", "-1", "+1", "1.5", "1e3", "0x10", "00", "٣", "²", "１２", "Ⅻ", "𝟗",
    "9223372036854775807", "9223372036854775808", "99999999999999999999999", "null",
    "JP-MN", "JP-ID", "JP-XX", "jp-mn", "MN", "JP", "ID", "..", ".", "%2e%2e", "%2F",
    "\u202e", "\u0000", "é", "日本", "🇯🇵", "\ufeff", "a" * 300, "JP-MN/../JP-ID",
]  # fmt: skip

INTERESTING_NUMBERS: list[Any] = [
    0, 1, -1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308,
]  # fmt: skip


def run_seed() -> int:
    """``JCM_SYNC_FUZZ_SEED`` to replay a run, else a fresh seed (the test prints it)."""
    env = os.environ.get(SEED_ENV)
    return int(env) if env else random.SystemRandom().randrange(2**32)


class _Deep:
    """A placeholder for ``depth`` nested arrays, written textually (json cannot)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


@dataclass
class Mutator:
    rng: random.Random

    # --- bytes -------------------------------------------------------------------------

    def raw(self, data: bytes) -> bytes:
        """One to four byte-level mutations of ``data``."""
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            out = bytearray(self._raw_once(bytes(out)))
        return bytes(out)

    def _raw_once(self, data: bytes) -> bytes:
        r = self.rng
        n = len(data)
        op = r.randrange(8)
        if op == 0 and n:  # bit flips
            b = bytearray(data)
            for _ in range(r.randint(1, 8)):
                b[r.randrange(n)] ^= 1 << r.randrange(8)
            return bytes(b)
        if op == 1:  # truncation
            return data[: r.randint(0, n)]
        if op == 2:  # a token spliced in
            i = r.randint(0, n)
            return data[:i] + r.choice(TOKENS) + data[i:]
        if op == 3 and n:  # a slice deleted
            i = r.randrange(n)
            return data[:i] + data[i + r.randint(1, 64) :]
        if op == 4 and n:  # a slice duplicated
            i = r.randrange(n)
            j = min(n, i + r.randint(1, 256))
            return data[:j] + data[i:j] * r.randint(1, 3) + data[j:]
        if op == 5:  # random bytes
            i = r.randint(0, n)
            return data[:i] + r.randbytes(r.randint(1, 32)) + data[i:]
        if op == 6 and n:  # a byte replaced by a structural one
            i = r.randrange(n)
            return data[:i] + r.choice(b'{}[]",:0\\').to_bytes(1, "big") + data[i + 1 :]
        return data + r.choice(TOKENS)

    # --- JSON values -------------------------------------------------------------------

    def scalar(self) -> Any:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:
            return r.choice(INTERESTING_NUMBERS)
        if kind == 1:
            return r.choice(STRINGS)
        if kind == 2:
            return r.choice([None, True, False])
        if kind == 3:
            return r.choice([[], {}, [None], {"": None}])
        if kind == 4:
            return _Deep(r.choice([2, 64, 1000, 5000, 100_000]))
        return "".join(chr(r.choice([r.randrange(0x20, 0x7F), r.randrange(0x80, 0x2FFFF)]))
                       for _ in range(r.randint(0, 40)))  # fmt: skip

    def value(self, v: Any, depth: int = 0) -> Any:
        """``v`` with one mutation somewhere inside it."""
        r = self.rng
        if depth > 6 or r.random() < 0.25:
            return self.scalar()
        if isinstance(v, dict) and v:
            v = dict(v)
            op = r.randrange(4)
            key = r.choice(sorted(v))
            if op == 0:
                del v[key]
            elif op == 1:
                v[r.choice(STRINGS)] = self.scalar()
            elif op == 2:
                v[key] = self.scalar()
            else:
                v[key] = self.value(v[key], depth + 1)
            return v
        if isinstance(v, list) and v:
            v = list(v)
            op = r.randrange(4)
            i = r.randrange(len(v))
            if op == 0:
                del v[i]
            elif op == 1:
                v.insert(i, self.scalar())
            elif op == 2:
                v = v * r.randint(2, 4)
            else:
                v[i] = self.value(v[i], depth + 1)
            return v
        if isinstance(v, bool):
            return not v if r.random() < 0.5 else self.scalar()
        if isinstance(v, int):
            return r.choice([v + 1, v - 1, -v, v * 2**40, self.scalar()])
        if isinstance(v, str) and v:
            s = list(v)
            i = r.randrange(len(s))
            s[i] = r.choice([chr(r.randrange(0x20, 0x2FFFF)), "\ud800", '"', "\\", ""])
            return "".join(s)
        return self.scalar()

    def encode(self, v: Any) -> bytes:
        """JSON text of ``v``, NaN and lone surrogates included, deep nesting expanded."""
        deep: list[int] = []

        def default(o: object) -> str:
            if isinstance(o, _Deep):
                deep.append(o.depth)
                return f"\x00DEEP{len(deep) - 1}\x00"
            raise TypeError(type(o).__name__)

        text = json.dumps(v, default=default, ensure_ascii=self.rng.random() < 0.5)
        data = text.encode("utf-8", "surrogatepass")
        for i, depth in enumerate(deep):
            data = data.replace(f'"\\u0000DEEP{i}\\u0000"'.encode(), b"[" * depth + b"]" * depth)
            data = data.replace(f'"\x00DEEP{i}\x00"'.encode(), b"[" * depth + b"]" * depth)
        return data

    def json_body(self, doc: Any) -> bytes:
        """A mutated body: structural (decoded JSON) or byte-level, or both."""
        r = self.rng.random()
        if r < 0.55:
            return self.encode(self.value(doc))
        if r < 0.9:
            return self.raw(self.encode(doc))
        return self.raw(self.encode(self.value(doc)))

    # --- URLs --------------------------------------------------------------------------

    def segment(self) -> str:
        s = self.rng.choice(STRINGS)
        return s if self.rng.random() < 0.3 else quote(s, safe="")

    def path(self, path: str) -> str:
        segs = path.split("/")
        r = self.rng
        op = r.randrange(5)
        i = r.randrange(1, len(segs)) if len(segs) > 1 else 0
        if op == 0:
            segs[i] = self.segment()
        elif op == 1:
            segs.insert(i, self.segment())
        elif op == 2 and len(segs) > 2:
            del segs[i]
        elif op == 3:
            segs[i] = segs[i] + r.choice(["/", "//", "%00", "%2F", ";x=1", "..", "%"])
        else:
            segs[i] = segs[i] * r.randint(2, 50)
        out = "/".join(segs)
        return out if out.startswith("/") else "/" + out

    def query(self, params: dict[str, str]) -> str:
        r = self.rng
        items = list(params.items())
        op = r.randrange(5)
        if op == 0 and items:
            k, _ = items[r.randrange(len(items))]
            items = [(k, self.segment()) if kk == k else (kk, vv) for kk, vv in items]
        elif op == 1:
            items.append((r.choice(["start", "limit", "have", "old", "new", "index", "size",
                                    self.segment()]), self.segment()))  # fmt: skip
        elif op == 2 and items:
            items.pop(r.randrange(len(items)))
        elif op == 3 and items:
            items.append(items[0])  # a repeated parameter
        else:
            return r.choice(["&&", "=", "start", "start=", "%zz", "a=%", "&=&", "\u00e9=1"])
        return "&".join(f"{k}={v}" if r.random() < 0.9 else k for k, v in items)


# --- what a store holds ----------------------------------------------------------------


Snapshot = dict[str, tuple[Any, ...]]


async def snapshot(store: Store, *, entries: bool = False) -> Snapshot:
    """Every log's head and checkpoints (and, with ``entries``, every envelope)."""
    out: Snapshot = {}
    for ref in await store.logs():
        head = await store.tree_head(ref)
        cps = tuple((c.size, c.note) for c in await store.checkpoints(ref))
        held: tuple[bytes, ...] = ()
        if entries:
            held = tuple(e.envelope for e in await store.entries(ref, 0, head.size))
        out[ref.origin] = (head.size, head.root, cps, held)
    return out


# --- answers ---------------------------------------------------------------------------


def check_refusal(status: int, content_type: str, body: bytes, method: str) -> str | None:
    """None if a 4xx/5xx answer is a proper problem+json, else what is wrong with it."""
    if content_type != PROBLEM:
        return f"{status} refusal as {content_type!r}: {body[:120]!r}"
    if method == "HEAD":
        return None
    try:
        p = msgspec.json.decode(body, type=Problem)
    except msgspec.MsgspecError as exc:
        return f"{status} problem body does not decode: {exc}"
    if p.status != status or not p.type.startswith("urn:jcm-sync:problem:"):
        return f"{status} problem says status {p.status}, type {p.type!r}"
    return None


class Captured(logging.Handler):
    """Every record of the ``jcm_sync``, ``aiohttp`` and ``asyncpg`` loggers."""

    NAMES = ("jcm_sync", "aiohttp", "asyncpg")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> Captured:
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self._levels.append(lg.level)
            lg.addHandler(self)
            lg.setLevel(logging.INFO)
        return self

    def remove(self) -> None:
        for name, level in zip(self.NAMES, self._levels, strict=True):
            lg = logging.getLogger(name)
            lg.removeHandler(self)
            lg.setLevel(level)

    def tracebacks(self) -> list[str]:
        return [self.format(r) for r in self.records if r.exc_info or "Traceback" in r.getMessage()]

    def errors(self, allowed: Callable[[logging.LogRecord], bool] = lambda r: False) -> list[str]:
        return [
            self.format(r) for r in self.records if r.levelno >= logging.ERROR and not allowed(r)
        ]
