"""docs/operator-guide.md: every ```console block runs, in order, in one empty folder.

The guide sets up both sides of a partnership with its own commands (init on both
sides, countersigning, config check), starts a hub and an agent from its
```console background blocks, and goes on with status, rotation, an alarm list, a
backup restored into a scratch copy, and --version. Each ``$ `` line is run by bash
with the virtualenv's ``jcm-sync`` first on the PATH; a trailing ``# exit N`` is the
exit code it must give, otherwise 0. A line ending in ``\\`` continues on the next.

The guide uses the default ports 8700 (hub), 8701 (hub's console) and 8702 (the
agent's console on the same machine); the test replaces them in each command with free
ports, so that runs never collide with each other or with a real node.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from jcm_sync.cli.demo_network import stop_processes

GUIDE = Path(__file__).parents[2] / "docs" / "operator-guide.md"
BIN = Path(sys.executable).parent
PORTS = ("8700", "8701", "8702")
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    exit_code: int
    background: bool


def parse(markdown: str) -> list[Command]:
    """Every ``$ `` command of every ```console block, in order."""
    commands: list[Command] = []
    info: str | None = None
    pending: tuple[int, str] | None = None
    for n, raw in enumerate(markdown.splitlines(), 1):
        if raw.startswith("```"):
            if info is None:
                info = raw[3:].strip()
            else:
                assert pending is None, f"line {pending[0]}: a command ends in \\ at the fence"
                info = None
            continue
        if info is None or not info.startswith("console"):
            continue
        if pending is not None:
            start, text = pending
            text += " " + raw.strip()
        elif raw.startswith("$ "):
            start, text = n, raw[2:]
        else:
            continue  # expected output, shown for the reader
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        m = EXIT.search(text)
        code = int(m.group(1)) if m else 0
        commands.append(
            Command(start, EXIT.sub("", text), code, info.split()[1:] == ["background"])
        )
    return commands


def free_ports(n: int) -> list[str]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def test_the_guide_parses_as_the_test_reads_it() -> None:
    """The parser: exit codes, continuation lines, background blocks, text blocks skipped."""
    md = (
        "```console\n$ a --x \\\n    --y   # exit 3\nan output line\n$ b\n```\n"
        "```text\n$ not run\n```\n```console background\n$ serve\n```\n"
    )
    assert parse(md) == [
        Command(2, "a --x --y", 3, False),
        Command(5, "b", 0, False),
        Command(11, "serve", 0, True),
    ]


def test_the_guide_covers_each_operation() -> None:
    """The guide keeps a runnable command for every operation it must cover."""
    texts = [c.text for c in parse(GUIDE.read_text())]
    for needle in ("init --role registry", "init --role partner", "trust sign",
                   "--import-root", "config check", "registry serve", "agent run", "status",
                   "trust rotate", "alarm list", "backup", "restore", "--version"):  # fmt: skip
        assert any(needle in t for t in texts), f"no command with {needle!r}"
    assert [c.text.split()[1:3] for c in parse(GUIDE.read_text()) if c.background] == [
        ["registry", "serve"],
        ["agent", "run"],
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the guide waits for readiness with curl")
@pytest.mark.skipif(shutil.which("jq") is None, reason="the guide reads a key id with jq")
def test_every_console_block_of_the_guide_runs(tmp_path: Path) -> None:
    ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JCM_SYNC_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    background: list[tuple[Command, subprocess.Popen[bytes], Path]] = []
    commands = parse(GUIDE.read_text())
    assert len(commands) >= 20
    try:
        for i, cmd in enumerate(commands):
            text = re.sub(r"\b(870[0-2])\b", lambda m: ports[m.group(1)], cmd.text)
            for started, proc, log in background:
                assert proc.poll() is None, (
                    f"line {started.line}: {started.text!r} exited with {proc.returncode}:\n"
                    + log.read_text()[-3000:]
                )
            if cmd.background:
                log = tmp_path / f"background-{i}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        ["bash", "-c", f"exec {text}"], cwd=tmp_path, env=env,
                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                background.append((cmd, proc, log))
                continue
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", text], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == cmd.exit_code, (
                f"docs/operator-guide.md line {cmd.line}: {text!r} exited with "
                f"{done.returncode}, not {cmd.exit_code}\n--- stdout\n{done.stdout[-3000:]}"
                f"\n--- stderr\n{done.stderr[-3000:]}"
            )
    finally:
        stop_processes([proc for _, proc, _ in background], timeout=30)
    for started, proc, log in background:  # a graceful stop at SIGTERM
        assert proc.returncode == 0, (
            f"{started.text!r}: exit {proc.returncode}\n{log.read_text()[-3000:]}"
        )
