"""Tests for jcm_sync.errors: the one error tree, its drawing, and the operator's next step."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest

from jcm_sync import errors
from jcm_sync.cli import build_parser


def _classes() -> list[type[errors.JcmSyncError]]:
    return [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, errors.JcmSyncError)
    ]


def test_every_error_class_is_drawn_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    drawn: dict[str, int] = {}
    for line in doc.splitlines():
        m = re.match(r"^\s{4}([│ ]*)([├└]── )?(\w+Error)\b", line)
        if m:
            drawn[m.group(3)] = len(m.group(1)) + (4 if m.group(2) else 0)
    for cls in _classes():
        assert cls.__name__ in drawn, f"{cls.__name__} is missing from the drawing"
        if cls is not errors.JcmSyncError:
            parent = cls.__mro__[1].__name__
            assert drawn[cls.__name__] == drawn[parent] + 4, (
                f"{cls.__name__} is not drawn under {parent}"
            )
    assert set(drawn) == {c.__name__ for c in _classes()}


def test_no_error_class_is_defined_outside_errors() -> None:
    import importlib
    import pkgutil

    import jcm_sync

    strays = []
    for info in pkgutil.walk_packages(jcm_sync.__path__, "jcm_sync."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == info.name
                and info.name != "jcm_sync.errors"
                and not obj.__name__.startswith("_")  # private control flow, never raised out
            ):
                strays.append(f"{info.name}.{obj.__name__}")
    assert strays == []


def test_codes_are_unique_per_class_that_sets_one() -> None:
    own = {}
    for cls in _classes():
        if "code" in vars(cls):
            assert cls.code not in own, f"{cls.__name__} reuses {own.get(cls.code)}'s code"
            own[cls.code] = cls.__name__


def test_diagnostics_ends_with_the_next_step_and_keeps_the_cause() -> None:
    try:
        try:
            raise ValueError("root hash differs at size 12")
        except ValueError as exc:
            raise errors.ForkError("log JP forked", where="hub") from exc
    except errors.ForkError as err:
        text = err.diagnostics()
    lines = text.splitlines()
    assert lines[0] == "hub: log JP forked"
    assert lines[1] == "  caused by: ValueError: root hash differs at size 12"
    assert lines[-1].startswith("  next step: ")
    assert "jcm-sync alarm list" in lines[-1]


def test_an_error_without_a_next_step_prints_none() -> None:
    assert "next step" not in errors.JcmSyncError("plain").diagnostics()


def _commands(parser: argparse.ArgumentParser, prefix: str = "jcm-sync") -> set[str]:
    found = {prefix}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, f"{prefix} {name}")
    return found


@pytest.mark.parametrize("cls", [c for c in _classes() if c.next_step], ids=lambda c: c.__name__)
def test_every_command_a_next_step_names_exists(cls: type[errors.JcmSyncError]) -> None:
    commands = _commands(build_parser())
    for named in re.findall(r"`(jcm-sync [a-z -]+?)(?: [A-Z]+)?`", cls.next_step):
        assert named.strip() in commands, f"{cls.__name__} names {named!r}, which does not exist"


def test_a_cell_problem_is_one_line_whatever_the_input_names() -> None:
    """A field name from the input holding a newline (found by the import fuzzer, seed
    3302393154: ``e\\nd``) is shown escaped, so each problem stays one line of stderr."""
    p = errors.CellProblem("blocks[0].e\nd", "e\nd", "unknown field `e\nd`", "f.jsonl", "", 3)
    line = p.line()
    assert "\n" not in line
    assert line == "f.jsonl:3 column blocks[0].e\\nd = 'e\\nd': unknown field `e\\nd`"
    assert errors.one_line("プロジェクト\tA\x00") == "プロジェクト\\tA\\x00"
    assert errors.one_line("Ulaanbaatar") == "Ulaanbaatar"
