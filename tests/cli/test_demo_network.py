"""The network half of ``make run``: real hub and agents, one large partnership.

Checks what the demo shows rather than how it prints it: every log converged at both
sides (read from the stores the demo leaves behind), JP–ID holds more than 1,000
Japan-side records, the over-issued credit is caught with the same discrepancy id on
both sides, and moving it is refused while the discrepancy is open.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from jcm_sync.cli import main
from jcm_sync.cli.demo_network import (
    DEMO_PARTNERS,
    _run_cli,
    _wait_for,
    _wait_ready,
    stop_processes,
)
from jcm_sync.local.config import load_config
from jcm_sync.services.node import log_ref
from jcm_sync.services.sample import free_port
from jcm_sync.store import open_store


async def _sizes(config: Path, partnership: str) -> dict[str, int]:
    cfg = load_config(config, env={})
    async with await open_store(cfg.store_url) as store:
        return {
            node: (await store.tree_head(log_ref(cfg, partnership, node))).size
            for node in ("JP", partnership[3:])
        }


def test_network_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every log converges at both ends, the fault is caught alike and its move refused."""
    t0 = time.monotonic()
    code = main(["demo", "--part", "network", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    work = tmp_path / "network"
    for cc in DEMO_PARTNERS:
        pid = f"JP-{cc}"
        hub = asyncio.run(_sizes(work / "jp" / "config.toml", pid))
        agent = asyncio.run(_sizes(work / cc.lower() / "config.toml", pid))
        assert hub == agent, (pid, hub, agent)
        if cc == "ID":
            assert hub["JP"] > 1000, hub
            assert hub["ID"] > 1000, hub
    assert "both sides found the same discrepancy ids" in out
    # Article 6.2 records imported once the issuances arrived: no run on a half-pulled
    # replica found anything; the one finding ever is the demo's over-issued credit
    assert "history: 1 discrepancies ever found: 1 open" in out
    assert "a move of quarantined serials was accepted" not in out
    # step 7: the go-live suite against the demo hub's sandbox, reports in a new folder
    assert "PASSED: " in out
    assert (work / "conformance" / "conformance-JP-MN.json").is_file()
    assert out.rstrip().splitlines()[-1].startswith("ok:")
    print(f"network demo: {time.monotonic() - t0:.1f} s")


def test_each_step_shows_its_command_and_messages_and_keeps_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A demo step runs the real CLI: the console shows the command line and what it
    said on stderr; stdout comes back to the demo, not to the console."""
    shown = io.StringIO()
    console = Console(file=shown, width=200)
    code, out = _run_cli(console, main, "key", "generate", "--name", "k", "--out", str(tmp_path),
                         "--json")  # fmt: skip
    assert code == 0
    assert set(json.loads(out)) == {"algorithm", "key_id", "private", "public"}
    assert f"$ jcm-sync key generate --name k --out {tmp_path} --json" in shown.getvalue()
    assert json.loads(out)["key_id"] not in shown.getvalue()
    code, out = _run_cli(console, main, "key", "show", str(tmp_path / "none.pub"))
    assert (code, out) == (1, "")
    assert "refused:" in shown.getvalue().split("key show")[1]
    assert capsys.readouterr() == ("", "")


def test_waiting_for_a_condition_gives_up_after_its_timeout() -> None:
    """True as soon as the predicate holds; False once the time is spent."""
    calls: list[float] = []

    def second_call() -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 2

    assert _wait_for(second_call, timeout=5.0)
    assert len(calls) == 2
    t0 = time.monotonic()
    assert not _wait_for(lambda: False, timeout=0.4)
    assert time.monotonic() - t0 >= 0.4


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that stays up, as a hub would."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_hub_is_ready_when_readyz_answers_200(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """_wait_ready returns once GET /readyz is 200 (a real server on 127.0.0.1 port 0)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _wait_ready(f"http://127.0.0.1:{server.server_address[1]}", sleeper, timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def test_a_hub_that_exits_or_never_answers_is_an_error(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """The hub's exit code is reported at once; a silent hub, after the timeout."""
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(RuntimeError, match="the hub exited with code 3"):
        _wait_ready("http://127.0.0.1:9", dead)
    port = free_port()
    with pytest.raises(RuntimeError, match="did not become ready in time"):
        _wait_ready(f"http://127.0.0.1:{port}", sleeper, timeout=0.5)


def test_stop_processes_terminates_then_kills_what_ignores_sigterm() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"  # its handler is in place
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    started = time.monotonic()
    stop_processes([polite, stubborn, done], timeout=1)
    assert (polite.returncode, stubborn.returncode, done.returncode) == (-15, -9, 0)
    assert time.monotonic() - started < 30
    stubborn.stdout.close()
