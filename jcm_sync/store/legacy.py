"""The one-time import of the JSON files earlier versions kept beside the store.

Why this module exists: before schema version 3 a node kept part of its state in files
under ``data_dir`` (job status, fork alarms, reconciliation history and reports), which a
backup of the store missed. Now it all lives in the store (ADR 0027); a node upgraded in
place must not lose it, so the first open after the upgrade moves each file in.

Rules:

1. The files and their keys: ``status-<pid>.json`` -> ``status/<pid>``;
   ``alarms/*.json`` -> ``alarm/<origin>`` (the origin read from the file);
   ``reconcile/<pid>.json`` -> ``reconcile/<pid>/history``;
   ``reconcile/<pid>.report.json`` -> ``reconcile/<pid>/report``. The bytes move as they
   are: the stored values are the same msgspec JSON the files held.
2. Each file is put (atomically, durably), then renamed ``<name>.imported``, so it is
   never imported twice and is still there for an operator to compare. A crash between
   the two leaves the file to import again at the next open: a key already in the store
   is not overwritten (the store's value is at least as new), the file is just renamed.
3. An alarm file whose origin cannot be read is a ``CorruptStoreError`` naming the file,
   and nothing of it is imported: a fork alarm is never silently dropped.
4. Nothing else under ``data_dir`` is touched: keys, trust roots, the config, the daemon
   lock and the sandbox sessions (``conformance/``) stay where they are.
5. This module moves bytes only; it knows the shapes of the files no better than the
   origin field of an alarm, so it needs nothing above the store layer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from jcm_sync.errors import CorruptStoreError, StoreError
from jcm_sync.store.protocol import Store

__all__ = ["IMPORTED_SUFFIX", "import_legacy_files", "legacy_files"]

IMPORTED_SUFFIX: Final = ".imported"

_STATUS = re.compile(r"^status-(?P<pid>[A-Za-z0-9_.-]+)\.json$")
_REPORT = re.compile(r"^(?P<pid>[A-Za-z0-9_-][A-Za-z0-9_.-]*)\.report\.json$")
_HISTORY = re.compile(r"^(?P<pid>[A-Za-z0-9_-][A-Za-z0-9_.-]*)\.json$")


def _alarm_origin(path: Path, data: bytes) -> str:
    try:
        origin = json.loads(data)["origin"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptStoreError(
            f"the alarm file cannot be imported: no origin ({type(exc).__name__})",
            where=str(path),
        ) from None
    if not isinstance(origin, str) or not origin or not origin.isprintable():
        raise CorruptStoreError("the alarm file names no usable origin", where=str(path))
    return origin


def legacy_files(data_dir: Path) -> list[tuple[Path, str | None]]:
    """The files to import with their key (None for an alarm: read from the file)."""
    found: list[tuple[Path, str | None]] = []
    if not data_dir.is_dir():
        return found
    for path in sorted(data_dir.glob("status-*.json")):
        m = _STATUS.match(path.name)
        if m and path.is_file():
            found.append((path, f"status/{m['pid']}"))
    alarms = data_dir / "alarms"
    if alarms.is_dir():
        found += [(p, None) for p in sorted(alarms.glob("*.json")) if p.is_file()]
    reconcile = data_dir / "reconcile"
    if reconcile.is_dir():
        for path in sorted(reconcile.glob("*.json")):
            if not path.is_file():
                continue
            if m := _REPORT.match(path.name):
                found.append((path, f"reconcile/{m['pid']}/report"))
            elif m := _HISTORY.match(path.name):
                found.append((path, f"reconcile/{m['pid']}/history"))
    return found


async def import_legacy_files(store: Store, data_dir: Path) -> list[str]:
    """Move every legacy file under ``data_dir`` into ``store`` (rules 1-3); return the
    keys imported (a key already held is skipped, its file renamed all the same)."""
    imported: list[str] = []
    for path, key in legacy_files(data_dir):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot import {path.name}: {exc}", where=str(path)) from None
        key = key if key is not None else f"alarm/{_alarm_origin(path, data)}"
        if await store.get_state(key) is None:
            await store.put_state(key, data)
            imported.append(key)
        try:
            path.rename(path.with_name(path.name + IMPORTED_SUFFIX))
        except OSError as exc:
            raise StoreError(
                f"imported {path.name} into the store but cannot rename it: {exc}",
                where=str(path),
            ) from None
    return imported
