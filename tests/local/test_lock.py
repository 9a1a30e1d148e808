"""The data-directory lock: one daemon per folder, named when it refuses another."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.errors import ConfigError, ConflictError, StoreError
from jcm_sync.local.lock import (
    LOCK_NAME,
    DaemonLock,
    _probe,
    check_writable,
    daemon_holder,
    read_holder,
)

# A second process that takes the lock, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from jcm_sync.local.lock import DaemonLock
lock = DaemonLock(Path(sys.argv[1]), "jcm-sync agent run").acquire()
print("locked", flush=True)
sys.stdin.read()
"""

# A second process that tries the lock and reports the refusal it gets.
CONTENDER = """
import json, sys
from pathlib import Path
from jcm_sync.errors import ConflictError
from jcm_sync.local.lock import DaemonLock
try:
    DaemonLock(Path(sys.argv[1]), "jcm-sync registry serve").acquire()
except ConflictError as exc:
    print(json.dumps({"message": exc.message, "where": exc.where}))
    sys.exit(3)
print("acquired")
"""


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real second process holding the lock of ``tmp_path``."""
    proc = subprocess.Popen(
        python(HOLDER, str(tmp_path)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_the_holder_writes_who_it_is(tmp_path: Path) -> None:
    """After acquiring, the lock file names this pid, command, host and start time."""
    before = datetime.now(UTC).replace(microsecond=0)
    with DaemonLock(tmp_path, "jcm-sync agent run") as lock:
        info = read_holder(tmp_path / LOCK_NAME)
        assert lock.path == tmp_path / LOCK_NAME
    assert info["pid"] == os.getpid()
    assert info["command"] == "jcm-sync agent run"
    assert info["host"] == socket.gethostname()
    assert before <= datetime.fromisoformat(info["since"]) <= datetime.now(UTC)


def test_the_default_command_is_taken_from_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a command, the lock names the first two CLI words the process was started with."""
    monkeypatch.setattr(sys, "argv", ["jcm-sync", "agent", "run", "--config", "x"])
    assert DaemonLock(Path("unused")).command == "jcm-sync agent run"


def test_a_second_process_is_refused_with_the_holders_name(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """While one process holds the lock, another is refused naming the holder's pid and command."""
    with pytest.raises(ConflictError) as got:
        DaemonLock(tmp_path, "jcm-sync registry serve").acquire()
    message = got.value.message
    assert f"pid {holder.pid} (jcm-sync agent run) on {socket.gethostname()}" in message
    assert "stop it first" in message
    assert got.value.where == str(tmp_path)
    assert read_holder(tmp_path / LOCK_NAME)["pid"] == holder.pid  # the refusal wrote nothing


def test_a_lock_held_here_refuses_a_real_second_process(tmp_path: Path) -> None:
    """The lock held in this process refuses another process started on the same folder."""
    with DaemonLock(tmp_path, "jcm-sync agent run"):
        proc = subprocess.run(
            python(CONTENDER, str(tmp_path)),
            capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[2],
        )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    refusal = json.loads(proc.stdout)
    assert f"pid {os.getpid()} (jcm-sync agent run)" in refusal["message"]
    assert refusal["where"] == str(tmp_path)


def test_a_killed_holder_does_not_block_a_restart(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """`kill -9` of the holder frees the lock; the file stays and names the new holder."""
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).exists()
    with DaemonLock(tmp_path, "jcm-sync registry serve"):
        assert read_holder(tmp_path / LOCK_NAME)["pid"] == os.getpid()


def test_a_second_open_in_one_process_is_refused_too(tmp_path: Path) -> None:
    """The lock is on the open file, so even a second DaemonLock in this process is refused."""
    with (
        DaemonLock(tmp_path, "first"),
        pytest.raises(ConflictError, match=rf"pid {os.getpid()} \(first\)"),
    ):
        DaemonLock(tmp_path, "second").acquire()


def test_release_frees_the_lock_and_empties_the_file(tmp_path: Path) -> None:
    """After release another may lock; the file is emptied but never deleted."""
    lock = DaemonLock(tmp_path, "first").acquire()
    lock.release()
    lock.release()  # a second release is harmless
    assert (tmp_path / LOCK_NAME).read_bytes() == b""
    with DaemonLock(tmp_path, "second"):
        assert read_holder(tmp_path / LOCK_NAME)["command"] == "second"


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[1, 2]"], ids=["empty", "garbage", "not-an-object"]
)
def test_an_unreadable_holder_still_refuses(tmp_path: Path, content: bytes) -> None:
    """A lock file that says nothing readable refuses all the same, naming an unknown pid."""
    with DaemonLock(tmp_path, "first"):
        (tmp_path / LOCK_NAME).write_bytes(content)
        with pytest.raises(ConflictError, match=r"daemon uses this data directory: pid \?;"):
            DaemonLock(tmp_path, "second").acquire()


def test_read_holder_of_nothing_is_empty(tmp_path: Path) -> None:
    """A missing lock file has no holder to describe."""
    assert read_holder(tmp_path / LOCK_NAME) == {}


def test_check_writable_creates_the_folder_and_leaves_nothing(tmp_path: Path) -> None:
    """A missing data directory is created, and the write probe is removed."""
    data = tmp_path / "a" / "b"
    check_writable(data)
    assert data.is_dir()
    assert list(data.iterdir()) == []


def test_a_data_directory_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    """A file where the data directory belongs is a configuration mistake, named."""
    path = tmp_path / "data"
    path.write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory") as got:
        check_writable(path)
    assert got.value.where == str(path)
    with pytest.raises(ConfigError):
        DaemonLock(path).acquire()


def test_a_data_directory_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    """A data directory whose parent is a file is a StoreError with the system's reason."""
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create the data directory: Not a directory"):
        check_writable(tmp_path / "file" / "data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the mode")
def test_a_read_only_data_directory_is_refused(tmp_path: Path) -> None:
    """A data directory this process cannot write is refused before the lock is tried."""
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable") as got:
            DaemonLock(data).acquire()
        assert got.value.where == str(data)
    finally:
        data.chmod(0o700)


def test_the_lock_times_are_utc_seconds(tmp_path: Path) -> None:
    """`since` is an ISO time in UTC to the second, so it reads the same on every host."""
    with DaemonLock(tmp_path, "x"):
        since = datetime.fromisoformat(read_holder(tmp_path / LOCK_NAME)["since"])
    assert since.utcoffset() == timedelta(0)
    assert since.microsecond == 0


# --- the read-only probe (rule 5) ------------------------------------------------------------


def test_daemon_holder_names_a_running_holder_and_none_after_it_dies(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """A live holder is named from its lock file; once killed (the file stays, still naming
    it) no daemon holds the folder; the probe never took the lock from the holder."""
    found = daemon_holder(tmp_path)
    assert found is not None
    assert found["pid"] == holder.pid
    with pytest.raises(ConflictError):  # still the holder's
        DaemonLock(tmp_path, "x").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert read_holder(tmp_path / LOCK_NAME)["pid"] == holder.pid
    assert daemon_holder(tmp_path) is None


def test_daemon_holder_of_a_folder_never_locked_is_none(tmp_path: Path) -> None:
    assert daemon_holder(tmp_path) is None
    with DaemonLock(tmp_path, "here"):
        assert daemon_holder(tmp_path) is not None
    assert daemon_holder(tmp_path) is None


def test_the_fallback_probe_agrees_and_lets_go(tmp_path: Path) -> None:
    """Without /proc/locks the shared-lock probe says the same and leaves the lock free."""
    path = tmp_path / LOCK_NAME
    with DaemonLock(tmp_path, "here"):
        assert _probe(path)
    assert not _probe(path)
    with DaemonLock(tmp_path, "again"):  # the probe left nothing behind
        pass


# --- hub processes sharing one PostgreSQL database (rule 6, ADR 0042) -------------------


def test_hubs_on_one_postgresql_share_the_lock_and_an_agent_is_refused(tmp_path: Path) -> None:
    first = DaemonLock(tmp_path, "jcm-sync registry serve (a long command name)", shared=True)
    second = DaemonLock(tmp_path, "jcm-sync registry serve", shared=True)
    with first, second:
        holder = read_holder(tmp_path / LOCK_NAME)  # the last to start, its line whole
        assert holder["command"] == "jcm-sync registry serve"
        assert holder["pid"] == os.getpid()
        assert daemon_holder(tmp_path) is not None
        with pytest.raises(ConflictError, match="only on a PostgreSQL store"):
            DaemonLock(tmp_path, "jcm-sync agent run").acquire()
        first.release()  # one hub stops; the other still holds the directory
        assert read_holder(tmp_path / LOCK_NAME)["command"] == "jcm-sync registry serve"
        with pytest.raises(ConflictError):
            DaemonLock(tmp_path, "jcm-sync agent run").acquire()
    assert daemon_holder(tmp_path) is None
    DaemonLock(tmp_path, "jcm-sync agent run").acquire().release()


def test_a_postgresql_hub_is_refused_beside_an_exclusive_daemon(tmp_path: Path) -> None:
    with (
        DaemonLock(tmp_path, "jcm-sync registry serve"),
        pytest.raises(ConflictError, match=r"registry serve.*only on a PostgreSQL store"),
    ):
        DaemonLock(tmp_path, "jcm-sync registry serve", shared=True).acquire()
