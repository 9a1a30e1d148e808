"""A ``jcm-sync`` daemon (``registry serve``, ``agent run``) as a real subprocess, its
stderr read line by line as the JSON events an operator's log shipper would read."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``JCM_SYNC_*`` overrides or systemd's variables."""
    drop = ("JCM_SYNC_", "NOTIFY_SOCKET", "WATCHDOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | extra


class Daemon:
    """``python -m jcm_sync ARGV`` with stderr a pipe; ``lines`` keeps every line read."""

    def __init__(self, *argv: str | Path, env: dict[str, str] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.env = clean_env() if env is None else env
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Daemon:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jcm_sync", *self.argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=self.env,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def line(self, timeout: float = 30) -> str | None:
        """The next stderr line, or None at its end."""
        assert self.proc is not None
        assert self.proc.stderr is not None
        raw = await asyncio.wait_for(self.proc.stderr.readline(), timeout)
        if not raw:
            return None
        text = raw.decode("utf-8").rstrip("\n")
        self.lines.append(text)
        return text

    async def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """Read JSON lines until the event ``name``; a line that is not one JSON object,
        or the end of stderr first, fails the test."""
        async with asyncio.timeout(timeout):
            while True:
                text = await self.line()
                assert text is not None, f"stderr ended before {name!r}:\n" + "\n".join(self.lines)
                found = json.loads(text)
                assert isinstance(found, dict), text
                if found.get("event") == name:
                    return found

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the rest of stderr; the exit code."""
        self.signal(signal.SIGTERM)
        return await self.finish(timeout)

    async def finish(self, timeout: float = 30) -> int:
        """The rest of stderr, and the exit code once the process ended by itself."""
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            while await self.line() is not None:
                pass
            return await self.proc.wait()

    def events(self) -> list[dict[str, Any]]:
        """Every line read so far, each parsed as one JSON object."""
        return [json.loads(text) for text in self.lines]
