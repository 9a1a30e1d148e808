"""systemd's service notifications (``sd_notify``) for the daemons.

Why this module exists: the units in ``deploy/systemd`` are ``Type=notify`` with a
watchdog, so systemd starts a hub's dependants only once it really listens, restarts a
daemon whose event loop hangs, and shows what it is doing in ``systemctl status``. The
protocol (datagrams of ``KEY=value`` lines to the socket named by ``NOTIFY_SOCKET``) is
spoken by the maintained ``sdnotify`` package; this module says when to speak.

Rules:

1. Without ``NOTIFY_SOCKET`` every call is a no-op, so the same daemon runs under a
   shell, a container or a test. A notification that cannot be sent (systemd gone, its
   queue full) is dropped, never raised and never waited for: the socket does not
   block the event loop.
2. ``ready`` (READY=1 with a STATUS= line) is sent once the daemon serves: the hub
   after its app started and its operations listener is up, the agent after its node
   opened and its scheduler started.
3. The watchdog (WATCHDOG=1) is petted from the event loop itself, every
   ``WATCHDOG_USEC``/2, only when systemd asked for it (``WATCHDOG_USEC`` set, and
   ``WATCHDOG_PID`` unset or this process): a loop that blocks stops petting, and
   systemd restarts the daemon. That is the point; never pet from a thread.
4. ``stopping`` (STOPPING=1) is sent as soon as a stop begins (SIGTERM), before the
   in-flight requests are drained; ``reloading`` (RELOADING=1 with MONOTONIC_USEC=)
   before a SIGHUP reload, and ``ready`` again after it, whether or not it applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping

import sdnotify


class Notifier:
    """The daemon's side of systemd's notification socket (rules 1-4)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.enabled = bool(address)
        self._sd: _SdNotifier | None = None
        if self.enabled:
            self._sd = _SdNotifier(_connect(address))
        self.watchdog_seconds = watchdog_interval(env)
        self._watchdog: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Close the socket (the daemon's exit does it too)."""
        if self._sd is not None and self._sd.socket is not None:
            self._sd.socket.close()
            self._sd.socket = None

    def send(self, *lines: str) -> None:
        """One datagram of ``lines`` (rule 1: dropped when it cannot be sent)."""
        if self._sd is not None and lines:
            self._sd.notify("\n".join(lines))

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def reloading(self, status: str = "reloading") -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Rule 3: pet the watchdog from the running loop until ``stop_watchdog``."""
        if self._sd is None or self.watchdog_seconds is None or self._watchdog is not None:
            return None
        self._watchdog = asyncio.get_running_loop().create_task(self._pet(self.watchdog_seconds))
        return self._watchdog

    async def stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pet(self, every: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)


class _SdNotifier(sdnotify.SystemdNotifier):  # type: ignore[misc]
    """``sdnotify``'s notifier over a socket connected here: to the given environment's
    ``NOTIFY_SOCKET`` (sdnotify reads only ``os.environ``), non-blocking (rule 1)."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.debug = False  # sdnotify then swallows a failed send (rule 1)
        self.socket = sock


def _connect(address: str) -> socket.socket | None:
    """A non-blocking datagram socket connected to ``address`` (``@`` for an abstract
    one), as ``sdnotify`` connects; None when nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect("\0" + address[1:] if address.startswith("@") else address)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when systemd asked for no watchdog
    for this process (rule 3)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000
