"""The committed table of UNFCCC common nomenclatures (``services.aef_nomenclature``)."""

from __future__ import annotations

import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from jcm_sync.errors import BadDataError
from jcm_sync.services.aef_nomenclature import TABLE, Nomenclature
from jcm_sync.services.sample import PARTNERS

ROOT = Path(__file__).resolve().parents[2]


def table_text() -> str:
    return resources.files("jcm_sync").joinpath("data", TABLE).read_text("utf-8")


def test_the_packaged_table_names_the_version_it_follows() -> None:
    nom = Nomenclature.load()
    assert (nom.version, nom.date) == ("17 February 2026", date(2026, 2, 17))
    assert "JCM" in nom.values["underlying_unit_registry"]
    assert nom.values["action_type"][:6] == (
        "Authorization", "First transfer", "Transfer", "Acquisition", "Use", "Cancellation",
    )  # fmt: skip


def test_the_wheel_carries_the_table() -> None:
    """pyproject's package data names the table's folder, so an installed wheel has it."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    globs = doc["tool"]["setuptools"]["package-data"]["jcm_sync"]
    assert any(Path("data", TABLE).match(g) for g in globs)


def test_every_jcm_party_has_an_alpha3_code_and_a_registry_id() -> None:
    nom = Nomenclature.load()
    for cc in ["JP", *PARTNERS]:
        alpha3 = nom.party(cc)
        assert alpha3 is not None, cc
        assert nom.matches("party", alpha3), cc
        registry = nom.registry(cc)
        assert registry == f"{alpha3}01"
        assert nom.matches("party_itmo_registry", registry)
    assert (nom.party("ID"), nom.party("MN"), nom.party("VN")) == ("IDN", "MNG", "VNM")
    assert nom.party("XX") is None
    assert nom.registry("XX") is None


@pytest.mark.parametrize(
    ("purposes", "expected"),
    [(["ndc"], "NDC"), (["oimp", "ndc"], "NDC and OIMP"), (["other"], "OP"),
     (["ndc", "ndc"], "NDC"), (["oimp", "other"], None)],
)  # fmt: skip
def test_purposes_map_to_the_nomenclature(purposes: list[str], expected: str | None) -> None:
    assert Nomenclature.load().purposes(purposes) == expected


def test_patterns_hold_the_formats_of_the_aef() -> None:
    nom = Nomenclature.load()
    assert nom.matches("cooperative_approach", "CA0012")
    for bad in ("CA12", "ca0012", "CA00123", "JCM Indonesia-Japan"):
        assert not nom.matches("cooperative_approach", bad)
    assert nom.matches("authorization_id", "ID-A62-0001")
    assert not nom.matches("authorization_id", "ID/A62.0001")
    assert nom.matches("submission_version", "1.0")
    assert not nom.matches("submission_version", "0.1")


def test_a_mapping_to_a_value_outside_its_list_is_refused() -> None:
    text = table_text().replace('use = "Use"', 'use = "Used"')
    with pytest.raises(BadDataError, match="'Used', which is not a action_type value"):
        Nomenclature.load(text)


def test_a_party_that_is_not_alpha3_is_refused() -> None:
    with pytest.raises(BadDataError, match="party ID maps to 'IDNN'"):
        Nomenclature.load(table_text().replace('ID = "IDN"', 'ID = "IDNN"'))


@pytest.mark.parametrize("cut", ["[source]", "[jcm.parties]", "date = 2026-02-17"])
def test_a_malformed_table_is_refused_by_name(cut: str) -> None:
    text = table_text().replace(cut, "date = 1" if cut.startswith("date") else "[x]")
    with pytest.raises(BadDataError) as info:
        Nomenclature.load(text)
    assert info.value.where == "jcm_sync/data/aef-nomenclature.toml"
