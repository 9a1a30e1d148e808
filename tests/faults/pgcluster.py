"""A throwaway PostgreSQL cluster for fault tests: its own folder, port and socket.

Why this exists: restarting PostgreSQL under a running hub is the fault under test, and
the shared server on 5432 belongs to every other test; so each test that needs it starts
a cluster of its own with Debian's ``initdb`` and ``pg_ctl`` (found on ``PATH`` or under
``/usr/lib/postgresql/<version>/bin``), trust authentication, listening on 127.0.0.1 at
a free port with its socket in the cluster's folder. ``initdb`` refuses to run as root,
so as root every server command runs as the ``postgres`` user (``runuser``/``setpriv``)
and the folder is handed to that user.

Where the binaries are missing the tests skip, unless ``JCM_SYNC_REQUIRE_PG=1`` (CI),
where that is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jcm_sync.services.sample import free_port

REQUIRE_PG = os.environ.get("JCM_SYNC_REQUIRE_PG") == "1"
START_TIMEOUT_S = 60


def find_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version first)."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    for path in candidates:
        if (Path(path).parent / "pg_ctl").exists():
            return Path(path).parent
    return None


def unavailable() -> str | None:
    """None if a throwaway cluster can be started here, else why not."""
    if find_binaries() is None:
        return "no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
        if not (shutil.which("runuser") or shutil.which("setpriv")):
            return "running as root without runuser or setpriv to drop to postgres"
    return None


@dataclass
class PgCluster:
    """``initdb`` + ``pg_ctl`` on a temporary folder; ``url`` is its ``postgres`` database."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jcm-pg-")))
    port: int = field(default_factory=free_port)
    restarts: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        if shutil.which("runuser"):
            return ["runuser", "-u", "postgres", "--", *cmd]
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        cmd = self._as_owner([str(self.bindir / args[0]), *args[1:]])
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def init(self) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")  # fmt: skip
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# jcm-sync fault tests: a private, loopback-only cluster\n"
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 40\n"
                "shared_buffers = 32MB\nlogging_collector = off\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", str(START_TIMEOUT_S), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(START_TIMEOUT_S), "-l", log, "restart")  # fmt: skip
        self.restarts += 1

    def running(self) -> bool:
        cmd = self._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"])
        return subprocess.run(cmd, capture_output=True, check=False, cwd=self.root).returncode == 0

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...), from ``/proc``."""
        head = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [head]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == head:
                pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster: a server that hangs, not one that is down."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server (immediately) and remove its folder."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            for _ in range(3):
                shutil.rmtree(self.root, ignore_errors=True)
                if not self.root.exists():
                    break
                time.sleep(0.2)


def start_cluster() -> PgCluster:
    """Initialise and start a throwaway cluster (the caller ``destroy()``s it)."""
    bindir = find_binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries")
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
