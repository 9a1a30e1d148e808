"""``jcm_sync.cli`` itself: ``main(argv)``, the parser it builds, and how errors become
exit codes. (Each command group is tested in ``test_<module>.py``.)"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

import pytest

from jcm_sync.cli import build_parser, describe_os_error, keys, main
from jcm_sync.core.wire import PROTOCOL_VERSION
from jcm_sync.store.sql import SCHEMA_VERSION
from tests.cli.conftest import run


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands and missing arguments exit 2."""
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "key", "generate")[0] == 2
    assert run(capsys, "--help")[0] == 0


def test_usage_goes_to_stderr_and_names_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's message for a missing required option, on stderr, stdout untouched."""
    code, out, err = run(capsys, "key", "generate")
    assert code == 2
    assert out == ""
    assert "usage: jcm-sync key generate" in err
    assert "--name" in err


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the distribution's version and exits 0."""
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == (
        f"jcm-sync {metadata.version('jcm-sync')} "
        f"(schema {SCHEMA_VERSION}, protocol {PROTOCOL_VERSION})"
    )


def test_the_parser_offers_every_command_group() -> None:
    """The commands of README's reference, each with a handler."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {
        "key", "trust", "record", "log", "registry", "agent", "sync", "status", "import",
        "alarm", "reconcile", "conformance", "demo", "template", "export", "endorse", "report",
        "init", "config", "backup", "restore", "evidence", "receipt", "tiles",
    }  # fmt: skip
    for name in ("sync", "status", "import", "demo"):
        assert callable(parser.parse_args([name, *ARGS[name]]).func)


ARGS = {
    "sync": ["--config", "c.toml"],
    "status": ["--config", "c.toml"],
    "import": ["--config", "c.toml", "f.json"],
    "demo": [],
}


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [(None, False, False), ("1", False, True), ("0", False, False), ("", False, False),
     (None, True, True)],
    ids=["unset", "env-1", "env-0", "env-empty", "flag"],
)  # fmt: skip
def test_debug_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, flag: bool, expected: bool
) -> None:
    """--debug, or JCM_SYNC_DEBUG set to anything but empty or 0."""
    if env is None:
        monkeypatch.delenv("JCM_SYNC_DEBUG", raising=False)
    else:
        monkeypatch.setenv("JCM_SYNC_DEBUG", env)
    argv = [*(["--debug"] if flag else []), "key", "show", "k.pub"]
    assert build_parser().parse_args(argv).debug is expected


def test_a_refusal_is_exit_1_with_its_diagnostics_printed_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JcmSyncError becomes 'refused:' and its text on stderr; brackets in a file name
    are printed as they are, not read as markup."""
    name = tmp_path / "[red]no-such.pub"
    code, out, err = run(capsys, "key", "show", name)
    assert code == 1
    assert out == ""
    assert err.startswith("refused:")
    assert str(name) in err


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [(KeyboardInterrupt(), 130, "interrupted"), (BrokenPipeError(), 1, "")],
    ids=["ctrl-c", "closed-pipe"],
)
def test_an_interrupt_and_a_closed_pipe_have_their_own_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    code: int,
    message: str,
) -> None:
    """Ctrl-C exits 130 saying so; a reader that went away (``| head``) exits 1 quietly."""

    def raising(args: object) -> int:
        raise exc

    monkeypatch.setattr(keys, "cmd_show", raising)
    got, out, err = run(capsys, "key", "show", "k.pub")
    assert (got, out, err.strip()) == (code, "", message)


def test_a_command_returning_nothing_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler's None is success; its int is the exit code."""
    monkeypatch.setattr(keys, "cmd_show", lambda args: None)
    assert main(["key", "show", "k.pub"]) == 0
    monkeypatch.setattr(keys, "cmd_show", lambda args: 3)
    assert main(["key", "show", "k.pub"]) == 3


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (OSError(28, "No space left on device", "/d/f"), "/d/f: No space left on device"),
        (OSError(18, "Invalid cross-device link", "/a", None, "/b"),
         "/a -> /b: Invalid cross-device link"),
        (OSError(13, "Permission denied"), "Permission denied"),
        (OSError("something odd"), "something odd"),
        (OSError(), "OSError"),
    ],
    ids=["one-file", "two-files", "no-file", "message-only", "nothing"],
)  # fmt: skip
def test_an_os_error_is_described_by_its_files_and_cause(exc: OSError, text: str) -> None:
    """describe_os_error: the file(s) the error names, then its cause, on one line."""
    assert describe_os_error(exc) == text
