"""Operational refusals (ADR 0012): one line and exit 1, never a traceback, and one
daemon per data directory. Daemons run as real subprocesses; the rest through
``jcm_sync.cli.main``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.local import spreadsheets
from jcm_sync.local.lock import LOCK_NAME
from jcm_sync.services.sample import Network, free_port, provision


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_refusal(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    # the refusal, then at most the operator's next step (errors.JcmSyncError.next_step)
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].lstrip().startswith("next step:")), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def cli(*argv: object) -> list[str]:
    return [sys.executable, "-m", "jcm_sync", *map(str, argv)]


@pytest.fixture
def net(tmp_path: Path) -> Network:
    # the hub URL points at a port nobody listens on: agents run and retry
    return provision(tmp_path / "net", ["ID"], hub_port=free_port(), now=datetime.now(UTC))


# --- 1. refusals -------------------------------------------------------------------------


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """`registry serve` on a taken port: exit 1, one line naming the address and the cause."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        net = provision(tmp_path / "net", ["ID"], hub_port=port)
        proc = subprocess.run(
            cli("registry", "serve", "--config", net.configs["JP"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert_one_line_refusal(
        proc.returncode, proc.stderr, f"127.0.0.1:{port}", "port is already in use"
    )


def test_import_of_deeply_nested_json_is_refused(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deep nesting (msgspec raises RecursionError) is bad input, in each import form."""
    deep = 100_000
    nest = b"[" * deep + b"]" * deep
    forms = {
        "array": (nest, "nested too deeply to hold records"),
        "line": (b'{"kind":"project","x":' + nest + b"}", "nested too deeply to be a record"),
        "envelope": (b'{"payloadType":"x","x":' + nest + b"}", "nested too deeply to be an"),
    }
    for name, (data, message) in forms.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        code, _, err = run(capsys, "import", "--config", net.configs["ID"], path)
        if name == "array":  # the file cannot be read at all: one line
            assert_one_line_refusal(code, err, message)
            continue
        # a bad record is a problem of its line, listed before the refusal (ADR 0023)
        assert code == 1, err
        assert "Traceback" not in err, err
        lines = err.splitlines()
        assert lines[0].startswith(f"{path}:1 ")
        assert message in lines[0]
        assert lines[1].startswith("refused: 1 problem(s)")


def test_import_of_huge_json_is_refused(
    net: Network,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A .json file over its documented limit is refused by size before it is parsed."""
    monkeypatch.setattr(spreadsheets, "MAX_JSON_FILE", 4096)
    path = tmp_path / "huge.json"
    path.write_bytes(b"[" + b"1," * 4096 + b"1]")
    code, _, err = run(capsys, "import", "--config", net.configs["ID"], path)
    assert_one_line_refusal(code, err, "may hold at most 4096 bytes", str(path))


def test_output_into_a_missing_folder_is_one_line(
    net: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trust init --out` (and `trust sign --out`) into a missing folder: one line."""
    keys = net.directory / "keys"
    out = tmp_path / "no-such-dir" / "root.json"
    code, _, err = run(
        capsys, "trust", "init", "--partnership", "JP-ID",
        "--node", f"JP={keys / 'jp-registry.pub'}", "--node", f"ID={keys / 'id-secretariat.pub'}",
        "--sign", keys / "jp-registry.key", "--out", out,
    )  # fmt: skip
    assert_one_line_refusal(code, err, str(out), "does not exist")
    assert run(capsys, "key", "generate", "--name", "w", "--out", tmp_path / "k")[0] == 0
    code, _, err = run(
        capsys, "trust", "sign", net.roots["JP-ID"], "--key", tmp_path / "k" / "w.key",
        "--out", tmp_path,
    )  # fmt: skip
    assert_one_line_refusal(code, err, str(tmp_path), "is a folder")
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    code, _, err = run(capsys, "key", "generate", "--name", "k", "--out", a_file / "sub")
    assert_one_line_refusal(code, err, str(a_file / "sub"))


def test_unexpected_os_error_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The last-resort guard: an untranslated OSError is one line; --debug shows it."""
    from jcm_sync.cli import keys

    def broken(args: object) -> int:
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(keys, "cmd_show", broken)
    code, _, err = run(capsys, "key", "show", "whatever")
    assert_one_line_refusal(code, err, "No space left on device", str(tmp_path / "x"))
    with pytest.raises(OSError, match="No space left"):
        main(["--debug", "key", "show", "whatever"])
    monkeypatch.setenv("JCM_SYNC_DEBUG", "1")
    with pytest.raises(OSError, match="No space left"):
        main(["key", "show", "whatever"])


def test_a_genuine_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anything but OSError and JcmSyncError is a bug: it is not swallowed."""
    from jcm_sync.cli import keys

    def buggy(args: object) -> int:
        raise KeyError("oops")

    monkeypatch.setattr(keys, "cmd_show", buggy)
    with pytest.raises(KeyError):
        main(["key", "show", "whatever"])


DROP_DAC = "-dac_override,-dac_read_search"


def as_plain_user(argv: list[str]) -> list[str]:
    """Root ignores file modes; without CAP_DAC_OVERRIDE it obeys them like anyone."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only")
    return [setpriv, f"--inh-caps={DROP_DAC}", f"--bounding-set={DROP_DAC}", "--", *argv]


def test_read_only_data_directory_is_named(net: Network) -> None:
    """Hub, agent and import on a data directory they cannot write: one line naming it."""
    ro = net.directory / "ro-data"
    ro.mkdir()
    ro.chmod(0o555)
    env = {**os.environ, "JCM_SYNC_NODE_DATA_DIR": str(ro)}
    records = net.directory / "none.json"
    records.write_text("[]")
    try:
        for node, argv in (
            ("JP", ["registry", "serve"]),
            ("ID", ["agent", "run"]),
            ("ID", ["import", records]),
        ):
            proc = subprocess.run(
                as_plain_user(cli(*argv, "--config", net.configs[node])),
                capture_output=True, text=True, timeout=60, env=env,
            )  # fmt: skip
            assert_one_line_refusal(proc.returncode, proc.stderr, str(ro), "not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_sqlite_names_a_read_only_directory(tmp_path: Path) -> None:
    """The store itself says which directory it cannot write (not SQLite's wording)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    code = (
        "import asyncio, sys\n"
        "from jcm_sync.store.sqlite import SqliteStore\n"
        "from jcm_sync.errors import StoreError\n"
        "try:\n"
        f"    asyncio.run(SqliteStore.open('sqlite:///{d}/x.db'))\n"
        "except StoreError as exc:\n"
        "    print(exc); sys.exit(1)\n"
    )
    try:
        proc = subprocess.run(
            as_plain_user([sys.executable, "-c", code]), capture_output=True, text=True, timeout=60
        )
    finally:
        d.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert f"directory {d} is not writable" in proc.stdout, proc.stdout


# --- 2. one daemon per data directory ------------------------------------------------------


def _start_agent(net: Network) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli("agent", "run", "--config", net.configs["ID"], "--log-format", "console"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _wait_for_lock(net: Network, pid: int, timeout: float = 30.0) -> None:
    path = net.configs["ID"].parent / LOCK_NAME
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text() or "{}").get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took the lock")


def test_second_agent_is_refused_naming_the_first_and_kill_9_frees_the_lock(
    net: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `agent run` on one data directory exits 1 naming the first's pid; admin
    commands still work beside the first; after kill -9 of the first a new one starts."""
    first = _start_agent(net)
    try:
        _wait_for_lock(net, first.pid)
        second = subprocess.run(
            cli("agent", "run", "--config", net.configs["ID"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert_one_line_refusal(
            second.returncode, second.stderr, f"pid {first.pid}", "agent run", "another"
        )
        # one-shot commands do not take the daemon lock
        code, out, err = run(capsys, "status", "--config", net.configs["ID"], "--json")
        assert code in (0, 1), err  # 1 once a sync failed: nobody listens at the hub's URL
        assert json.loads(out)["node"] == "ID"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = _start_agent(net)
        try:
            _wait_for_lock(net, third.pid)
            assert third.poll() is None
        finally:
            third.terminate()  # even before the agent's own handlers: a clean stop
            assert third.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_sigterm_while_the_agent_starts_is_a_clean_stop(net: Network) -> None:
    """A SIGTERM that lands while the agent is still starting (it holds its lock but its
    event loop's handlers may not be installed yet) ends it with exit 0, never with the
    default action's death by signal (-15), however early it comes."""
    codes = []
    for delay in (0.0, 0.05, 0.2):
        proc = _start_agent(net)
        try:
            _wait_for_lock(net, proc.pid)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            codes.append(proc.wait(timeout=60))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == [0, 0, 0]


def test_hub_takes_the_lock_too(net: Network) -> None:
    """`registry serve` refuses a data directory an agent... or a hub already holds."""
    from jcm_sync.local.lock import DaemonLock

    with DaemonLock(net.configs["JP"].parent, "jcm-sync registry serve"):
        proc = subprocess.run(
            cli("registry", "serve", "--config", net.configs["JP"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert_one_line_refusal(proc.returncode, proc.stderr, f"pid {os.getpid()}", "registry serve")


def test_deeply_nested_trust_root_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trust show` of a root whose payload nests past msgspec's limit: one line."""
    import base64

    deep = 100_000
    payload = b'{"type":"jcm-sync/trust-root","x":' + b"[" * deep + b"]" * deep + b"}"
    envelope = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": "application/vnd.jcm-sync.trust-root+json",
        "signatures": [{"keyid": "a" * 64, "sig": base64.b64encode(b"x" * 64).decode()}],
    }
    path = tmp_path / "root.json"
    path.write_text(json.dumps(envelope, separators=(",", ":")))
    code, _, err = run(capsys, "trust", "show", path)
    assert_one_line_refusal(code, err, "nested too deeply to be a trust root")


# --- 3. the agent's operations listener ---------------------------------------------------


def test_agent_serves_its_console_and_metrics(net: Network, tmp_path: Path) -> None:
    """`agent run` logs its ops listener's address (``[ops] port = 0``: a free port) and
    serves the console of its partnership and its metrics there, until SIGTERM."""
    import urllib.request

    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cli("agent", "run", "--config", net.configs["ID"], "--log-format", "json"),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            for line in log.read_text().splitlines():
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("event") == "ops-listening":
                    address = event["ops_address"]
        assert address is not None, log.read_text()
        assert address.startswith("http://127.0.0.1:")
        assert not address.endswith(":0")
        with urllib.request.urlopen(address + "/", timeout=10) as r:
            page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html")
        assert 'data-partnership="JP-ID"' in page
        assert "ID (agent)" in page
        with urllib.request.urlopen(address + "/metrics", timeout=10) as r:
            assert "jcm_sync_build_info" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()


def test_agent_on_a_taken_ops_port_is_refused(net: Network) -> None:
    """A taken ``[ops]`` port stops the agent at start: exit 1, the address and the cause."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = net.configs["ID"]
        ops = '[ops]\nhost = "127.0.0.1"\nport = '
        cfg.write_text(cfg.read_text().replace(ops + "0\n", f"{ops}{port}\n"))
        proc = subprocess.run(
            cli("agent", "run", "--config", cfg, "--log-format", "json"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cannot listen on http://127.0.0.1:{port}" in proc.stderr
    assert "already in use" in proc.stderr
    assert "[ops]" in proc.stderr
