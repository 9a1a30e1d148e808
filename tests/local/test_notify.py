"""``local/notify.py``: systemd's notifications, received on a real ``AF_UNIX`` datagram
socket standing in for systemd's, from real ``registry serve`` and ``agent run``
processes: READY once serving, WATCHDOG every ``WATCHDOG_USEC``/2, RELOADING then READY
around a SIGHUP, STOPPING at SIGTERM; and nothing at all without ``NOTIFY_SOCKET``."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jcm_sync.local.notify import Notifier, watchdog_interval
from jcm_sync.services.sample import free_port, provision
from tests.local.daemon_proc import Daemon, clean_env

WATCHDOG_USEC = 200_000


class FakeSystemd:
    """The receiving end of ``NOTIFY_SOCKET``: each datagram as its list of lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[tuple[float, list[str]]] = []

    async def until(self, line: str, timeout: float = 30) -> list[str]:
        """Datagrams until one holding ``line``; that one is returned."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(self.sock, 4096)
                lines = data.decode().split("\n")
                self.received.append((time.monotonic(), lines))
                if line in lines:
                    return lines

    def all_lines(self) -> list[str]:
        return [line for _, lines in self.received for line in lines]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    try:
        yield fake
    finally:
        fake.close()


def unit_env(systemd: FakeSystemd) -> dict[str, str]:
    return clean_env(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC=str(WATCHDOG_USEC))


async def check_lifecycle(daemon: Daemon, systemd: FakeSystemd) -> None:
    """READY (with a STATUS); WATCHDOG about every 0.1 s; SIGHUP: RELOADING (with
    MONOTONIC_USEC) then READY; SIGTERM: STOPPING, then a clean exit."""
    ready = await systemd.until("READY=1")
    assert any(line.startswith("STATUS=") for line in ready)
    first = len(systemd.received)
    for _ in range(4):
        await systemd.until("WATCHDOG=1", timeout=2)
    pets = [t for t, lines in systemd.received[first:] if "WATCHDOG=1" in lines]
    assert len(pets) >= 4
    gaps = [b - a for a, b in itertools.pairwise(pets)]
    assert statistics.median(gaps) < WATCHDOG_USEC / 1e6  # at half the interval, not at it

    daemon.signal(signal.SIGHUP)
    reloading = await systemd.until("RELOADING=1")
    assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
    again = await systemd.until("READY=1")
    assert any(line.startswith("STATUS=reloaded") for line in again), again

    daemon.signal(signal.SIGTERM)
    await systemd.until("STOPPING=1")
    assert await daemon.finish() == 0


async def test_registry_serve_notifies_systemd(tmp_path: Path, systemd: FakeSystemd) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    argv = ("registry", "serve", "--config", net.configs["JP"])
    async with Daemon(*argv, env=unit_env(systemd)) as hub:
        await check_lifecycle(hub, systemd)
    assert hub.events()[0]["event"] == "listening"  # READY came with the listeners up


async def test_agent_run_notifies_systemd(tmp_path: Path, systemd: FakeSystemd) -> None:
    """The agent is ready once its node opened and its jobs are scheduled, whether or not
    the hub answers (here it does not run: the jobs back off)."""
    net = provision(tmp_path / "net", ["MN"], hub_port=free_port())
    async with Daemon("agent", "run", "--config", net.configs["MN"], env=unit_env(systemd)) as a:
        await check_lifecycle(a, systemd)
    assert "started" in [e["event"] for e in a.events()]


async def test_without_notify_socket_nothing_is_sent(systemd: FakeSystemd) -> None:
    """Rule 1: no NOTIFY_SOCKET, no socket, no datagram, no watchdog task."""
    n = Notifier(env={"WATCHDOG_USEC": "200000"})
    assert not n.enabled
    n.ready("x")
    n.stopping()
    n.reloading()
    assert n.start_watchdog() is None
    n.close()
    with pytest.raises(BlockingIOError):
        systemd.sock.recv(4096)


async def test_a_notifier_sends_its_lines_as_one_datagram(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(systemd.path)})
    n.ready("serving on 127.0.0.1:8700")
    assert await systemd.until("READY=1") == ["READY=1", "STATUS=serving on 127.0.0.1:8700"]
    assert n.start_watchdog() is None  # no WATCHDOG_USEC: no watchdog
    n.close()
    n.send("WATCHDOG=1")  # closed: dropped


def test_a_notification_nobody_receives_is_dropped(tmp_path: Path) -> None:
    """Rule 1: a socket path with no systemd behind it raises nothing."""
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    n.ready()
    n.send("WATCHDOG=1")
    n.close()


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_half_of_what_systemd_asked(
    env: dict[str, str], seconds: float | None
) -> None:
    """Rule 3: only for this process, at half the interval."""
    assert watchdog_interval(env) == seconds


async def test_a_blocked_event_loop_stops_petting_the_watchdog(systemd: FakeSystemd) -> None:
    """Rule 3: the pets come from the loop itself, so while it is blocked none is sent
    and systemd's watchdog would fire; once it runs again, they resume."""
    n = Notifier(env={"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "100000"})
    assert n.start_watchdog() is not None
    try:
        await systemd.until("WATCHDOG=1", timeout=2)
        time.sleep(0.5)  # the loop blocked: ten intervals
        await asyncio.sleep(0.2)
        drained: list[float] = []
        while True:
            try:
                systemd.sock.recv(4096)
            except BlockingIOError:
                break
            drained.append(time.monotonic())
    finally:
        await n.stop_watchdog()
        n.close()
    # a thread would have sent ~10 during the block; the loop sends none then, ~4 after
    assert 1 <= len(drained) <= 1 + 0.2 / 0.05 + 1
