"""Tests for jcm_sync.core.sheet_template: description and example rows, skipped on import."""

from __future__ import annotations

import pytest

from jcm_sync.core import sheet_template as tpl
from jcm_sync.core import tabular
from jcm_sync.core.records import KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_the_example_row_is_a_valid_record_and_both_rows_are_skipped(kind: str) -> None:
    row = tpl.example_row(kind)
    assert tabular.row_to_record(kind, row) == tpl.example_record(kind)
    assert tpl.is_template_row(kind, row)
    assert tpl.is_template_row(kind, tpl.describe(kind))
    assert list(tpl.describe(kind)) == tabular.headers(kind)


def test_an_edited_example_row_is_data() -> None:
    row = tpl.example_row("transaction")
    row["amount"] = 21
    assert not tpl.is_template_row("transaction", row)
    assert not tpl.is_template_row("transaction", {})


def test_descriptions_name_type_pattern_and_allowed_values() -> None:
    d = tpl.describe("transaction")
    assert d["type"] == "one of: transfer, cancellation, retirement; required"
    assert d["executed_on"].startswith("date: 2017-01-25, 25 Jan 17, 25 January 2017")
    assert d["registry"] == "text ^[A-Z]{2}$; required"
    assert d["purpose"] == "one of: ndc, oimp, other; optional"
    assert d["blocks"].startswith("serial blocks START..END (VINTAGE)")
    assert "time of import" in d["created"]
    assert "of: ndc, oimp, other" in tpl.describe("authorization")["purposes"]
