"""The README's CLI reference (``cli/reference.py``): generated from the argparse tree,
spliced between its markers, and ``--check`` catching drift, on a temporary README."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from jcm_sync.cli import build_parser
from jcm_sync.cli.reference import END, START, main, reference, splice

README = f"# Title\n\nIntro.\n\n{START}\n\nold text\n{END}\n\n## After\n\nMore.\n"


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """reference() fixes COLUMNS for stable wrapping; undo it after each test."""
    monkeypatch.setenv("COLUMNS", "100")


def leaf_commands(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(path)]
    out = []
    for name, child in subs[0].choices.items():
        out += leaf_commands(child, [*path, name])
    return out


def test_the_reference_has_one_section_per_command_with_its_help() -> None:
    """The top page and every leaf command, each with the help argparse prints for it."""
    text = reference()
    titles = re.findall(r"^### `(.+)`$", text, re.M)
    leaves = leaf_commands(build_parser(), ["jcm-sync"])
    assert titles == ["jcm-sync", *leaves]
    assert {"jcm-sync key generate", "jcm-sync trust rotate", "jcm-sync sync"} <= set(leaves)
    parser = build_parser()
    help_of_import = (
        next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        .choices["import"]
        .format_help()
    )
    assert help_of_import.rstrip() in text
    assert reference() == text


def test_splice_replaces_only_the_block_between_the_markers() -> None:
    """Head and tail stay; the block is replaced; splicing again changes nothing."""
    out = splice(README, "NEW BLOCK")
    assert out.startswith("# Title\n\nIntro.\n\n" + START)
    assert out.endswith(END + "\n\n## After\n\nMore.\n")
    assert "NEW BLOCK" in out
    assert "old text" not in out
    assert splice(out, "NEW BLOCK") == out
    with pytest.raises(SystemExit, match="markers not found"):
        splice("# no markers\n", "x")
    with pytest.raises(SystemExit, match="markers not found"):
        splice(f"{START}\nno end\n", "x")


def test_write_then_check_passes_and_an_edit_in_the_block_is_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 0 on a README --write made, 1 (naming the file) once the generated
    block is edited; edits outside the block are not drift."""
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["--check", str(readme)]) == 1
    assert f"{readme}: CLI reference is stale" in capsys.readouterr().err
    assert main(["--write", str(readme)]) == 0
    written = readme.read_text()
    assert reference() in written
    assert main(["--check", str(readme)]) == 0
    readme.write_text(written.replace("## After", "## After, edited by hand"))
    assert main(["--check", str(readme)]) == 0
    readme.write_text(written.replace("usage: jcm-sync key generate", "usage: jcm-sync keygen"))
    assert main(["--check", str(readme)]) == 1
    assert main(["--write", str(readme)]) == 0
    assert readme.read_text() == written


def test_without_options_the_reference_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """The bare module prints the block (``python -m jcm_sync.cli.reference``)."""
    assert main([]) == 0
    assert capsys.readouterr().out == reference() + "\n"


def test_write_and_check_together_are_a_usage_error(tmp_path: Path) -> None:
    """The two options exclude each other."""
    with pytest.raises(SystemExit) as exc:
        main(["--write", str(tmp_path / "a"), "--check", str(tmp_path / "b")])
    assert exc.value.code == 2
