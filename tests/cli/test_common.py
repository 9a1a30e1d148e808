"""The CLI's shared parts (``cli/common.py``): the input size limit, times on the command
line, output to a file or stdout, and ``--json`` against human rendering."""

from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from jcm_sync.cli.common import (
    MAX_INPUT,
    add_at,
    add_json,
    emit,
    note,
    now_of,
    parse_time,
    read_input,
    write_output,
)
from jcm_sync.errors import BadDataError, NotFoundError
from tests.cli.conftest import run


def stdin_of(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# --- input ------------------------------------------------------------------------------


def test_the_input_limit_is_four_mebibytes() -> None:
    """The documented limit on any file a command reads."""
    assert MAX_INPUT == 4 * 2**20


def test_a_file_up_to_the_limit_is_read_whole_and_one_byte_more_is_refused(
    tmp_path: Path,
) -> None:
    """Exactly MAX_INPUT bytes is fine; MAX_INPUT + 1 is refused naming the file."""
    path = tmp_path / "in.json"
    data = bytes(range(256)) * (MAX_INPUT // 256)
    path.write_bytes(data)
    assert read_input(str(path)) == data
    path.write_bytes(data + b"x")
    with pytest.raises(BadDataError, match=f"records is larger than {MAX_INPUT} bytes") as exc:
        read_input(str(path), "records")
    assert exc.value.where == str(path)


def test_stdin_is_read_with_the_same_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-`` reads stdin's bytes, up to the limit; over it, refused as stdin."""
    stdin_of(monkeypatch, b"\x00\xffbytes, not text")
    assert read_input("-") == b"\x00\xffbytes, not text"
    stdin_of(monkeypatch, b"b" * MAX_INPUT)
    assert len(read_input("-")) == MAX_INPUT
    stdin_of(monkeypatch, b"a" * (MAX_INPUT + 1))
    with pytest.raises(BadDataError, match=f"envelope is larger than {MAX_INPUT}") as exc:
        read_input("-", "envelope")
    assert exc.value.where == "stdin"


def test_a_missing_input_file_is_not_found_naming_it(tmp_path: Path) -> None:
    """The refusal says what was being read and where."""
    with pytest.raises(NotFoundError, match="trust root not found") as exc:
        read_input(str(tmp_path / "nope.json"), "trust root")
    assert exc.value.where == str(tmp_path / "nope.json")


# --- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T12:04:05+09:00",
         datetime(2026, 1, 2, 12, 4, 5, tzinfo=timezone(timedelta(hours=9)))),
        ("2026-01-02 03:04:05.250+00:00", datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
    ],
    ids=["zulu", "offset", "space-and-fraction"],
)  # fmt: skip
def test_a_time_with_a_zone_is_parsed(text: str, expected: datetime) -> None:
    """ISO 8601 with Z or an offset, as --at and --received take it."""
    got = parse_time(text)
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("text", "message"),
    [("2026-01-02T03:04:05", "time needs a zone"), ("yesterday", "not an ISO 8601 time")],
    ids=["naive", "not-a-time"],
)
def test_a_time_without_a_zone_or_not_a_time_is_a_usage_error(
    text: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Refused by argparse: exit 2 with the reason, before any file is read."""
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_time(text)
    code, _, err = run(capsys, "trust", "verify", tmp_path / "none.json", "--at", text)
    assert code == 2
    assert message in err


def test_now_is_at_when_given_and_the_current_utc_time_otherwise() -> None:
    """now_of reads --at; a command without it judges at the present time."""
    p = argparse.ArgumentParser()
    add_at(p)
    at = datetime(2030, 5, 1, tzinfo=UTC)
    assert now_of(p.parse_args(["--at", "2030-05-01T00:00:00Z"])) == at
    before = datetime.now(UTC)
    got = now_of(p.parse_args([]))
    assert before <= got <= datetime.now(UTC)
    assert now_of(argparse.Namespace()) >= before


# --- output -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "-"], ids=["no-out", "dash"])
def test_output_without_a_file_goes_to_stdout_ending_in_one_newline(
    name: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes are printed as text, with a newline added only when missing."""
    write_output(name, b'{"a":1}')
    write_output(name, b"line\n")
    assert capsys.readouterr().out == '{"a":1}\nline\n'


def test_output_to_a_file_is_the_exact_bytes(tmp_path: Path) -> None:
    """No newline is added to a file: an envelope's bytes are its identity."""
    path = tmp_path / "env.json"
    write_output(path, b"\x00{}")
    assert path.read_bytes() == b"\x00{}"


def test_output_into_a_missing_folder_or_onto_a_folder_is_refused(tmp_path: Path) -> None:
    """Each refusal names the file and the cause, as one error, not an OSError."""
    missing = tmp_path / "nope" / "out.json"
    with pytest.raises(NotFoundError, match=f"folder {missing.parent} does not exist") as e1:
        write_output(missing, b"{}", "trust root")
    assert e1.value.where == str(missing)
    with pytest.raises(BadDataError, match="cannot write the output: it is a folder") as e2:
        write_output(tmp_path, b"{}")
    assert e2.value.where == str(tmp_path)


def test_json_goes_to_stdout_sorted_and_human_output_is_rendered_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--json prints the data, keys sorted, on one line, and never calls the renderer."""
    p = argparse.ArgumentParser()
    add_json(p)
    rendered: list[Console] = []
    data = {"b": [1, 2], "a": {"z": None, "y": "é"}}
    emit(p.parse_args(["--json"]), data, rendered.append)
    out = capsys.readouterr().out
    assert rendered == []
    assert out.endswith("\n")
    assert out.count("\n") == 1
    assert json.loads(out) == data
    assert out.index('"a"') < out.index('"b"')
    assert out.index('"y"') < out.index('"z"')

    emit(p.parse_args([]), data, lambda c: c.print("[bold]human[/] view"))
    emit(argparse.Namespace(), data, lambda c: c.print("no --json option at all"))
    assert capsys.readouterr().out == "human view\nno --json option at all\n"


def test_notes_go_to_stderr_so_stdout_stays_data(capsys: pytest.CaptureFixture[str]) -> None:
    """Progress and status messages never mix with the data."""
    note("wrote x")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "wrote x\n")
