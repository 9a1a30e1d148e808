"""The metric children an accepted push updates, looked up once per replica.

Why this module exists: ``labels(...)`` finds a labelled child by formatting and
hashing its label values under the metric's lock, and an accepted push updated four
such children (entries, pushes, the replica's size and lag) of the same replica on every
push: a fixed cost of each push of 50 in a fan-in as of each push of 500 alone (ADR 0063).
A child is the same object on every call of ``labels`` with the same values (nothing in
the project removes a child), so it is kept here.

Rules:

1. ``PushMetrics.of(partnership, log_node)`` gives the children of
   ``jcm_sync_entries_total{outcome="accepted",reason=""}``, ``jcm_sync_pushes_total
   {outcome="accepted"}`` and ``jcm_sync_log_size_entries`` for that log, and
   ``PushMetrics.lag`` the child of ``jcm_sync_replica_lag_entries``, taken only when a
   push sets it (a child is exported from the moment it is made): exactly what
   ``labels`` gives.
2. They are kept per log (bounded by the partnerships served) and taken again when the
   node's ``Metrics`` object is another than the one they were taken from.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from jcm_sync.services.metrics import Metrics
from jcm_sync.services.node import Node

__all__ = ["PushChildren", "PushMetrics"]


@dataclass(frozen=True)
class PushChildren:
    """Rule 1's children of one log."""

    entries_accepted: Counter
    pushes_accepted: Counter
    log_size: Gauge

    @classmethod
    def of(cls, m: Metrics, partnership: str, log_node: str) -> PushChildren:
        return cls(
            entries_accepted=m.entries.labels(partnership, "accepted", ""),
            pushes_accepted=m.pushes.labels(partnership, "accepted"),
            log_size=m.log_size.labels(partnership, log_node),
        )


class PushMetrics:
    """Rules 1-2 for the logs of ``node``."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._kept: dict[tuple[str, str], tuple[Metrics, PushChildren]] = {}
        self._lags: dict[tuple[str, str], tuple[Metrics, Gauge]] = {}

    def of(self, partnership: str, log_node: str) -> PushChildren:
        m = self._node.metrics
        kept = self._kept.get((partnership, log_node))
        if kept is None or kept[0] is not m:
            kept = (m, PushChildren.of(m, partnership, log_node))
            self._kept[(partnership, log_node)] = kept
        return kept[1]

    def lag(self, partnership: str, log_node: str) -> Gauge:
        m = self._node.metrics
        kept = self._lags.get((partnership, log_node))
        if kept is None or kept[0] is not m:
            kept = (m, m.replica_lag.labels(partnership, log_node))
            self._lags[(partnership, log_node)] = kept
        return kept[1]
