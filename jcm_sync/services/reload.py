"""SIGHUP: re-read a running node's configuration and trust roots, keep serving.

Why this module exists: a partnership's trust root is rotated (a key added, another
revoked) while the hub serves every partner and the agents sync; a restart would drop
every connection and every in-flight push. ``systemctl reload`` (``ExecReload=``, the
units in ``deploy/systemd``) sends SIGHUP instead, and the daemons call ``reload_node``.

Rules:

1. The configuration file is re-read and checked as at start (``load_config``, the
   keys it names load, each partnership's chain verifies, no rollback against the
   store's trust marks, ADR 0017). On any failure nothing changes: one ERROR event
   ``reload-failed`` names the cause, and the node keeps serving what it had.
2. Applied: each partnership's trust-root chain, swapped in at once by
   ``Node.reload``; the hub's request verifier, its push checks and the agent's next
   sync read the roots live, on the same sockets and connections.
3. Not applied: every other changed setting (listen addresses, the store, keys and
   their files, schedule, limits, partnerships added or removed). One WARNING event
   ``reload-needs-restart`` lists them by dotted name; they take effect at the next
   start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from jcm_sync.errors import JcmSyncError
from jcm_sync.local.config import Config, load_config
from jcm_sync.local.notify import Notifier
from jcm_sync.services.node import Node, load_keys

log = logging.getLogger("jcm_sync.reload")


@dataclass(frozen=True)
class Reloaded:
    """What a reload did: roots changed (old and new version), settings left for a restart."""

    roots: dict[str, tuple[int, int]] = field(default_factory=dict)
    needs_restart: list[str] = field(default_factory=list)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flat(item, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def _settings(cfg: Config) -> dict[str, Any]:
    raw = msgspec.to_builtins(cfg)
    raw["partnerships"] = {p.pop("id"): p for p in raw["partnerships"]}
    return _flat(raw)


def restart_settings(old: Config, new: Config) -> list[str]:
    """Rule 3: the dotted names of settings that differ, other than the trust roots."""
    a, b = _settings(old), _settings(new)
    return sorted(
        key
        for key in a.keys() | b.keys()
        if a.get(key) != b.get(key)
        and not (key.startswith("partnerships.") and key.endswith(".trust_root") and key in a)
    )


def _key_changes(node: Node, cfg: Config) -> list[str]:
    """The key files whose key is no longer the one the node runs with (rule 3)."""
    keys = load_keys(cfg)  # rule 1: a key that does not load refuses the reload
    return [
        f"keys.{role} (file content)"
        for role in ("signing", "transport", "checkpoint")
        if getattr(keys, role).key_id != getattr(node.keys, role).key_id
    ]


async def reload_node(node: Node, path: Path | str) -> Reloaded | None:
    """Rules 1-3 for ``node``, whose configuration file is ``path``. None when refused."""
    try:
        cfg = load_config(path)
        later = restart_settings(node.cfg, cfg)
        if not any(k.startswith("keys.") for k in later):
            later += _key_changes(node, cfg)
        roots = await node.reload(cfg)
    except (JcmSyncError, OSError) as exc:
        cause = exc.diagnostics() if isinstance(exc, JcmSyncError) else str(exc)
        reason = exc.code if isinstance(exc, JcmSyncError) else "os-error"
        log.error(
            "reload-failed",
            extra={"config": str(path), "reason": reason, "error": cause, "kept": "running"},
        )
        return None
    if later:
        log.warning("reload-needs-restart", extra={"config": str(path), "settings": later})
    log.info(
        "reloaded",
        extra={
            "config": str(path),
            "roots_changed": {pid: {"from": a, "to": b} for pid, (a, b) in roots.items()},
            "trust_root_versions": {pid: p.root.version for pid, p in node.partnerships.items()},
        },
    )
    return Reloaded(roots, later)


class Supervisor:
    """A daemon's SIGHUP handler, with systemd's notifications around it (``local/notify``).

    ``start`` (inside the running loop) installs the handler and the watchdog; a SIGHUP
    during a reload runs one more reload after it, never two at once; ``close`` undoes
    both. ``checks`` run at start, after each reload and every ``check_every`` seconds
    (the expiry warnings).
    """

    def __init__(
        self,
        node: Node,
        path: Path | str,
        notifier: Notifier,
        *,
        checks: Callable[[Node], Awaitable[None]] | None = None,
        check_every: float = 24 * 3600.0,
    ) -> None:
        self.node = node
        self.path = path
        self.notifier = notifier
        self.checks = checks
        self.check_every = check_every
        self.reloads = 0
        self._again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.hup)
        self.notifier.start_watchdog()
        if self.checks is not None:
            self._spawn(self._check_daily())

    def hup(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            self._again = True
            return
        self._again = False
        self._reloading = self._spawn(self._reload())

    async def _reload(self) -> None:
        while True:
            self.notifier.reloading()
            done = await reload_node(self.node, self.path)
            self.reloads += 1
            self.notifier.ready(self.summary("reloaded" if done else "reload refused"))
            if self.checks is not None:
                await self._check()
            if not self._again:
                return
            self._again = False

    def summary(self, what: str) -> str:
        versions = ", ".join(
            f"{pid} root v{p.root.version}" for pid, p in sorted(self.node.partnerships.items())
        )
        return f"{what}; {versions}" if versions else what

    async def _check(self) -> None:
        assert self.checks is not None
        try:
            await self.checks(self.node)
        except Exception:  # a failing check must not end the daemon
            log.exception("check-failed")

    async def _check_daily(self) -> None:
        while True:
            await self._check()
            await asyncio.sleep(self.check_every)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # the loop may be closing
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.notifier.stop_watchdog()
        self.notifier.close()


async def warn_expiries(node: Node) -> None:
    """The ``expiry-soon`` warnings (``services/expiry.py``): the daemons' ``checks``."""
    from jcm_sync.services.expiry import log_expiries, node_expiries

    log_expiries(node_expiries(node))
