"""Signed Article 6.2 records for the AEF tests: the demo's JP-ID partnership.

The records are ``sample.partnership_records`` with its opt-in Article 6.2 part, signed
with fixed keys and a fixed creation time, so record ids (and the golden file that
quotes them) are the same on every run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache

import msgspec

from jcm_sync.cli.demo_network import DEMO_SCALE
from jcm_sync.core.envelope import PrivateKey, record_id, sign_record
from jcm_sync.core.records import Record, RecordBase
from jcm_sync.services.aef_nomenclature import Nomenclature
from jcm_sync.services.aef_rows import AefOptions, Held, held_from_envelopes
from jcm_sync.services.sample import partnership_records

KEYS = {"JP": PrivateKey.from_seed(b"J" * 32), "ID": PrivateKey.from_seed(b"I" * 32)}
CREATED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
APPROACH = {"JCM Indonesia-Japan": "CA0001"}
"""A CARP id for the test: CARP has published none for the JCM (ADR 0026)."""


def options(year: int, **kw: object) -> AefOptions:
    base: dict[str, object] = {"submitted": date(2026, 4, 10), "approach_ids": APPROACH}
    base.update(kw)
    return AefOptions(year=year, **base)  # type: ignore[arg-type]


@cache
def nomenclature() -> Nomenclature:
    return Nomenclature.load()


def envelopes(
    projects: int = 3, periods: int = 2, jp_participants: int = 1
) -> dict[str, list[bytes]]:
    recs = partnership_records("ID", KEYS, projects=projects, periods=periods,
                               jp_participants=jp_participants, created=CREATED,
                               article6=True)  # fmt: skip
    return recs.by_node


@cache
def demo_envelopes() -> dict[str, list[bytes]]:
    """The demo's JP-ID partnership (``DEMO_SCALE``)."""
    return envelopes(*DEMO_SCALE["ID"])


def held(logs: dict[str, list[bytes]]) -> list[Held]:
    out: list[Held] = []
    for node in ("ID", "JP"):
        envs = logs[node]
        out += held_from_envelopes("JP-ID", node, envs, [record_id(e) for e in envs])
    return out


def sign(record: RecordBase) -> bytes:
    return sign_record(record, [KEYS[record.author]])


def append(logs: dict[str, list[bytes]], record: Record) -> dict[str, list[bytes]]:
    """A copy of ``logs`` with ``record`` signed onto its author's log."""
    out = {k: list(v) for k, v in logs.items()}
    out[record.author].append(sign(record))
    return out


def replace(record: Record, **changes: object) -> Record:
    return msgspec.structs.replace(record, **changes)
