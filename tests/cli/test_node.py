"""The node commands (``cli/node.py``): ``registry serve``, ``agent run``, ``sync``,
``status``, ``import`` and ``alarm``, on provisioned nodes with real SQLite stores.

The CLI's own job only: arguments, exit codes, ``--json`` shapes and refusal messages.
A sync with a real hub on 127.0.0.1 is the exchange suite's (``tests/exchange``)."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.cli.node import _bind_cause
from jcm_sync.local.alarms import AlarmBook, new_alarm
from jcm_sync.local.config import load_config
from jcm_sync.local.lock import LOCK_NAME
from jcm_sync.services.sample import Network, free_port, provision
from tests.cli.conftest import run
from tests.store.state import with_store


@pytest.fixture
def net(tmp_path: Path) -> Network:
    """A hub serving JP-ID and JP-MN, and their agents; nobody listens at the hub's URL."""
    return provision(tmp_path / "net", ["ID", "MN"], hub_port=free_port(), now=datetime.now(UTC))


def one_line(err: str) -> str:
    """The refusal line (an operator's next step may follow it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, err
    assert len(lines) == 1 or lines[1].lstrip().startswith("next step:"), err
    assert "Traceback" not in err
    return lines[0]


# --- arguments and roles ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["sync"], ["status"], ["import", "f.json"], ["alarm", "list"], ["alarm", "clear", "o"],
     ["registry", "serve"], ["agent", "run"], ["import", "--config", "c.toml"], ["alarm"]],
    ids=["sync", "status", "import", "alarm-list", "alarm-clear", "serve", "agent-run",
         "import-without-files", "alarm-without-command"],
)  # fmt: skip
def test_missing_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--config is required everywhere, import needs a file, alarm a subcommand: exit 2."""
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "usage:" in err


def test_a_missing_configuration_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config that does not exist: exit 1, one line naming the file."""
    path = tmp_path / "nope.toml"
    code, _, err = run(capsys, "status", "--config", path)
    assert code == 1
    assert str(path) in one_line(err)


@pytest.mark.parametrize(
    ("argv", "node", "message"),
    [
        (["registry", "serve"], "ID", "configures an agent, not the registry hub"),
        (["agent", "run"], "JP", "configures the registry, not an agent"),
        (["sync"], "JP", "sync runs on an agent; the hub is synced by its agents"),
    ],
    ids=["serve-on-an-agent", "agent-run-on-the-hub", "sync-on-the-hub"],
)
def test_a_command_for_the_other_role_is_refused(
    net: Network, argv: list[str], node: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each daemon and the one-pass sync check the node's role before doing anything."""
    code, out, err = run(capsys, *argv, "--config", net.configs[node])
    assert code == 1
    assert out == ""
    assert message in one_line(err)
    assert not (net.configs[node].parent / LOCK_NAME).exists()  # refused before locking


# --- serve: binding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OSError(errno.EADDRINUSE, "Address already in use"), "already in use"),
        (OSError(errno.EACCES, "Permission denied"), "ports below 1024 need privileges"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "not one of this machine's"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
         "unknown host (Name or service not known)"),
    ],
    ids=["in-use", "privileged", "not-ours", "unknown-host"],
)  # fmt: skip
def test_a_bind_failure_is_said_in_words(exc: OSError, words: str) -> None:
    """The cause of a failed listen, as the refusal prints it."""
    assert words in _bind_cause(exc)


def test_serve_on_an_address_not_of_this_machine_is_one_line(net: Network) -> None:
    """`registry serve` with [server] host on TEST-NET-1: exit 1, naming the address.
    (A subprocess: serve configures the process's logging.)"""
    cfg = net.configs["JP"]
    text = cfg.read_text()
    cfg.write_text(text.replace('[server]\nhost = "127.0.0.1"', '[server]\nhost = "192.0.2.1"'))
    assert load_config(cfg, env={}).server.host == "192.0.2.1"
    proc = subprocess.run(
        [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert "cannot listen on http://192.0.2.1:" in line
    assert "not one of this machine's" in line


# --- sync -------------------------------------------------------------------------------


def test_sync_with_no_hub_listening_is_a_one_line_refusal_and_shows_in_status(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub unreachable: exit 1 naming its URL, nothing on stdout; status then shows
    the error on both logs and exits 1 too (the last sync failed; cli/status.py)."""
    code, out, err = run(capsys, "sync", "--config", net.configs["ID"], "--json")
    assert code == 1
    assert out == ""
    assert f"hub unreachable at {net.hub_url}" in one_line(err)
    code, out, _ = run(capsys, "status", "--config", net.configs["ID"], "--json")
    assert code == 1
    (p,) = json.loads(out)["partnerships"]
    assert all(net.hub_url in lg["last_error"] for lg in p["logs"])


# --- status -----------------------------------------------------------------------------


def test_status_json_lists_each_partnerships_two_logs(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub serves two partnerships: for each, its own log and the partner's replica,
    empty, never synced; exit 0 without alarms."""
    code, out, _ = run(capsys, "status", "--config", net.configs["JP"], "--json")
    assert code == 0
    data = json.loads(out)
    assert data["node"] == "JP"
    assert [p["partnership"] for p in data["partnerships"]] == ["JP-ID", "JP-MN"]
    for p in data["partnerships"]:
        partner = p["partnership"][3:]
        assert [(lg["node"], lg["own"]) for lg in p["logs"]] == [("JP", True), (partner, False)]
        for lg in p["logs"]:
            assert (lg["local_size"], lg["checkpoint"], lg["last_sync"], lg["alarm"]) == (
                0, None, None, None,
            )  # fmt: skip


def test_status_human_is_a_table_per_partnership(
    net: Network, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each partnership's table names both logs, own and replica, never synced."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(capsys, "status", "--config", net.configs["JP"])
    assert code == 0
    for pid, cc in (("JP-ID", "ID"), ("JP-MN", "MN")):
        assert f"{pid} (JP)" in out
        assert f"{cc} (replica)" in out
    assert out.count("JP (own)") == 2
    assert "never" in out


# --- alarms -----------------------------------------------------------------------------


def test_alarm_list_clear_and_their_exit_codes(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """No alarm: exit 0. A raised alarm: listed with its evidence, exit 1. Cleared: a
    note, exit 0, and the list is empty again; clearing it twice is refused."""
    cfg = net.configs["ID"]
    code, out, _ = run(capsys, "alarm", "list", "--config", cfg)
    assert (code, out.strip()) == (0, "no fork alarms")
    assert run(capsys, "alarm", "list", "--config", cfg, "--json")[:2] == (0, "[]\n")

    alarm = new_alarm("jcm-sync/JP-ID/JP", "JP-ID", "JP", "two roots at size 3",
                      held=b"held note\n", offered=b"offered note\n")  # fmt: skip
    assert with_store(cfg, lambda store: AlarmBook(store).raise_alarm(alarm))
    code, out, _ = run(capsys, "alarm", "list", "--config", cfg, "--json")
    assert code == 1
    assert json.loads(out) == [alarm.summary()]
    code, out, _ = run(capsys, "alarm", "list", "--config", cfg)
    assert code == 1
    assert "FORK jcm-sync/JP-ID/JP at" in out
    assert "two roots at size 3" in out
    assert "held note" in out
    assert "offered note" in out

    code, out, err = run(capsys, "alarm", "clear", "--config", cfg, "jcm-sync/JP-ID/JP")
    assert (code, out) == (0, "")
    assert "cleared the alarm of jcm-sync/JP-ID/JP" in err
    assert with_store(cfg, lambda store: AlarmBook(store).active()) == []
    assert run(capsys, "alarm", "list", "--config", cfg)[0] == 0
    code, _, err = run(capsys, "alarm", "clear", "--config", cfg, "jcm-sync/JP-ID/JP")
    assert code == 1
    assert "no alarm for jcm-sync/JP-ID/JP" in one_line(err)
