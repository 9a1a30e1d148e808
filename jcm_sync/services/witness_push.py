"""The hub asks each partner agent's witness listener to cosign Japan's log (ADR 0037).

Why this module exists: without it, Japan's log of a partnership is cosigned only when
the partner's agent next pulls (``witness.witness_counterpart``), so it stays "not yet
agreed" (ADR 0035) for up to a pull interval, and for as long as the agent does not
pull. An agent that serves ``[witness] listen`` can be asked directly: the hub submits
its newest checkpoint of Japan's log with a consistency proof from the size the agent
last cosigned, exactly as an agent asks the hub after a push (``witness.cosign_own_log``,
the same function, so the same 409 recovery and the same checks of the answer), and
keeps the cosignature with the checkpoint it publishes.

Rules:

1. Only partnerships whose ``[[partnerships]] witness_url`` is set are asked; the others
   keep pull-side witnessing alone (an agent behind NAT has no reachable listener). Both
   stay on: whichever cosigns first is kept, the other is a no-op (``cosign_own_log`` and
   ``witness_counterpart`` skip what is already cosigned).
2. ``submit(pid)`` signs a checkpoint of what Japan's log holds now (imports append from
   other processes, so the hub learns of new entries from its store), then asks the
   agent to cosign it unless the agent already has. A 409 is retried from the size the
   agent says it holds (tlog-witness); a refusal or an outage is logged
   (``witness-failed``) and the next run tries again: it never raises.
3. The hub runs ``submit`` for each such partnership every ``[schedule] push_seconds``
   (with jitter, never overlapping itself); a run with nothing new sends no request.
4. Nothing is asked for a log a fork alarm has stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from jcm_sync.errors import JcmSyncError
from jcm_sync.services.daemon import IntervalJob
from jcm_sync.services.log_sync import is_stopped
from jcm_sync.services.node import Node
from jcm_sync.services.witness import WitnessPort, cosign_own_log

__all__ = ["Connect", "WitnessPusher"]

log = logging.getLogger("jcm_sync.services.witness_push")

Connect = Callable[[str], AbstractAsyncContextManager[WitnessPort]]
"""A client of the witness listener at a URL, signed with the hub's transport key
(``net/witness.py``'s ``witness_client`` over HTTP)."""


@dataclass
class WitnessPusher:
    """Rules 1-4 for the hub ``node``."""

    node: Node
    connect: Connect
    _turns: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)

    def urls(self) -> dict[str, str]:
        """Rule 1: the witness listener of each partnership that has one."""
        return {p.id: p.witness_url for p in self.node.cfg.partnerships if p.witness_url}

    def jobs(self) -> list[IntervalJob]:
        """Rule 3: one interval job per partnership with a witness listener."""
        seconds = self.node.cfg.schedule.push_seconds
        grace = max(1, int(seconds))
        return [
            IntervalJob(f"witness-{pid}", seconds, self.submit, (pid,), misfire_grace_time=grace)
            for pid in sorted(self.urls())
        ]

    async def submit(self, pid: str) -> int | None:
        """Rule 2: the size of Japan's log the agent has now cosigned, or None."""
        url = self.urls().get(pid)
        if url is None or pid not in self.node.partnerships:
            return None
        turn = self._turns.setdefault(pid, asyncio.Lock())
        async with turn:
            logs = self.node.logs(pid)
            if await is_stopped(self.node, logs.own):  # rule 4
                return None
            try:
                await logs.service.sign_checkpoint()
                async with self.connect(url) as client:
                    size = await cosign_own_log(self.node, client, pid)
            except JcmSyncError as exc:  # the store, or the client's configuration
                log.warning("witness-failed", extra={"partnership": pid, "log": logs.own.origin,
                                                     "error": exc.diagnostics()})  # fmt: skip
                return None
        if size is not None:
            log.debug("witnessed-by-partner", extra={"partnership": pid, "size": size})
        return size
