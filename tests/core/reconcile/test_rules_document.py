"""docs/reconciliation-rules.md lists every rule the reconciler knows, as the code has it.

The document is the rules' reference for both secretariats (issue 11): each rule's id,
stage, the JCM or Article 6.2 text it comes from, what it checks, its grace period, an
example finding, what it holds and the scenario test that builds it from a realistic case.
This test keeps the document and ``RULES`` equal, so a rule cannot be added, renamed or
moved to another stage without its entry following."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jcm_sync.core.reconcile import RULES

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "reconciliation-rules.md"
FIELDS = ("Stage", "Source", "Checks", "Grace", "Example finding", "Holds", "Scenario test")
_ENTRY = re.compile(r"^### `(?P<rule>[a-z0-9-]+)`\n(?P<body>(?:(?!^#).*\n?)*)", re.M)
_FIELD = re.compile(r"^- \*\*(?P<name>[A-Za-z ]+):\*\* (?P<value>(?:.*\n?)(?:^  .*\n?)*)", re.M)


def entries() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for m in _ENTRY.finditer(DOC.read_text(encoding="utf-8")):
        assert m["rule"] not in out, f"rule {m['rule']} is documented twice"
        out[m["rule"]] = {
            f["name"]: " ".join(f["value"].split()) for f in _FIELD.finditer(m["body"])
        }
    return out


def test_every_rule_is_documented_and_every_entry_is_a_rule() -> None:
    documented = set(entries())
    assert sorted(set(RULES) - documented) == [], "rules without an entry"
    assert sorted(documented - set(RULES)) == [], "entries naming no rule"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_entry_has_every_field_and_the_stage_the_code_gives(rule: str) -> None:
    entry = entries().get(rule, {})
    missing = [f for f in FIELDS if not entry.get(f)]
    assert missing == [], f"{rule} lacks {missing}"
    stage = entry["Stage"].split()[0]
    assert stage == RULES[rule].stage
    level = f"{RULES[rule].level}_inconsistent"
    assert level in entry["Stage"], f"{rule}: the run status is {level}"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_entry_names_a_scenario_test_that_exists(rule: str) -> None:
    ref = entries().get(rule, {}).get("Scenario test", "")
    m = re.fullmatch(
        r"`(?P<file>tests/[\w/]+\.py)::(?P<func>test_\w+)(\[(?P<param>[^\]]+)\])?`", ref
    )
    assert m is not None, f"{rule}: {ref!r} is not `tests/...py::test_name[param]`"
    source = (ROOT / m["file"]).read_text(encoding="utf-8")
    assert re.search(rf"^(async )?def {m['func']}\(", source, re.M), f"{rule}: no {m['func']}"
    if m["param"]:
        assert f'"{m["param"]}"' in source, f"{rule}: no scenario {m['param']} in {m['file']}"


def test_the_parser_reads_what_it_checks() -> None:
    """The checks above are only as good as the parser: it finds the entries and fields of
    a known entry, and an entry without a field is caught."""
    assert entries()["issued-vs-notified"]["Stage"].startswith("totals")
    text = "### `x-rule`\n- **Stage:** totals\n- **Checks:** a\n  b\n"
    m = _ENTRY.search(text)
    assert m is not None
    fields = {f["name"]: " ".join(f["value"].split()) for f in _FIELD.finditer(m["body"])}
    assert fields == {"Stage": "totals", "Checks": "a b"}
