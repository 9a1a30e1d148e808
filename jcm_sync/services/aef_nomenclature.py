"""The UNFCCC common nomenclatures the Article 6.2 AEF report draws its values from.

Why this module exists: every controlled value of the Agreed Electronic Format (action
types, purposes, registry and approach id formats, the underlying unit registry ``JCM``)
must be what the UNFCCC platform accepts, spelt as the nomenclature spells it. They live
in one committed table, ``jcm_sync/data/aef-nomenclature.toml``, shipped in the wheel,
which names the version and date of the list it follows; this module reads it once per
report and answers questions about it.

Rules (docs/adr/0026-article-6-2-aef-report.md):

1. The table is package data, read with ``importlib.resources``; a missing or malformed
   table is a ``BadDataError`` naming it, never a silent default.
2. Every jcm-sync value the report maps (an action, a purpose set, a Party) maps through
   the ``[jcm]`` section, and every value a mapping yields must itself be in the list of
   its field (``Nomenclature.load`` checks this), so a typo in the table fails at once.
3. A Party's ITMO registry id is its alpha-3 code followed by ``registry_suffix``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from jcm_sync.errors import BadDataError

TABLE = "aef-nomenclature.toml"


@dataclass(frozen=True)
class Nomenclature:
    """The controlled values and patterns of one version of the common nomenclatures."""

    version: str
    date: date
    values: dict[str, tuple[str, ...]]
    patterns: dict[str, re.Pattern[str]]
    jcm: dict[str, Any]

    @classmethod
    def load(cls, text: str | None = None) -> Nomenclature:
        """Read the packaged table (or ``text``, for tests) and check it (rules 1-2)."""
        where = f"jcm_sync/data/{TABLE}"
        if text is None:
            try:
                text = resources.files("jcm_sync").joinpath("data", TABLE).read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise BadDataError(
                    f"cannot read the AEF nomenclature: {exc}", where=where
                ) from None
        try:
            doc = tomllib.loads(text)
            src, jcm = doc["source"], doc["jcm"]
            values = {k: tuple(v) for k, v in doc["values"].items()}
            patterns = {k: re.compile(v) for k, v in doc["patterns"].items()}
            made = cls(str(src["version"]), src["date"], values, patterns, jcm)
            if not isinstance(made.date, date):
                raise BadDataError("the nomenclature's date is not a date", where=where)
            made._check(where)
        except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, re.error) as exc:
            raise BadDataError(f"malformed AEF nomenclature: {exc!r}", where=where) from None
        return made

    def _check(self, where: str) -> None:
        """Rule 2: every mapped value is in its field's list."""
        jcm = self.jcm
        pairs: list[tuple[str, Iterable[str]]] = [
            ("underlying_unit_registry", [jcm["underlying_unit_registry"]]),
            ("metric", [jcm["metric"]]),
            ("mitigation_type", [jcm["mitigation_type"]]),
            ("action_subtype", [jcm["first_transfer_subtype"]]),
            ("action_type", jcm["action_type"].values()),
            ("purpose_for_authorization", jcm["purposes"].values()),
        ]
        for field, mapped in pairs:
            for value in mapped:
                if value not in self.values.get(field, ()):
                    raise BadDataError(
                        f"the nomenclature maps to {value!r}, which is not a {field} value",
                        where=where,
                    )
        for cc, alpha3 in jcm["parties"].items():
            if not self.matches("party", alpha3):
                raise BadDataError(f"party {cc} maps to {alpha3!r}, not alpha-3", where=where)

    def matches(self, pattern: str, value: str) -> bool:
        return self.patterns[pattern].fullmatch(value) is not None

    def allowed(self, field: str, value: str) -> bool:
        return value in self.values[field]

    def party(self, node: str) -> str | None:
        """ISO 3166-1 alpha-3 of a node id (alpha-2), or None if the table lacks it."""
        found = self.jcm["parties"].get(node)
        return str(found) if found is not None else None

    def registry(self, node: str) -> str | None:
        """Rule 3: the Party ITMO registry id of a node's registry (``JPN01``)."""
        alpha3 = self.party(node)
        return None if alpha3 is None else alpha3 + str(self.jcm["registry_suffix"])

    def action_type(self, action: str) -> str:
        return str(self.jcm["action_type"][action])

    def purposes(self, purposes: Iterable[str]) -> str | None:
        """The nomenclature's purpose for a set of record purposes, or None if it has none."""
        found = self.jcm["purposes"].get("+".join(sorted(set(purposes))))
        return str(found) if found is not None else None
